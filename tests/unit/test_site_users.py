"""The site's users file: hashes only, keys that look like keys, whole messages."""

from __future__ import annotations

import secrets

import pytest

from g2d.core.site_users import SiteUser, SiteUsersError, parse_site_users

# a well-formed crypt(3) text made at run time; it is the hash of nothing in particular
HASH = f"$6${secrets.token_hex(8)}${secrets.token_hex(43)}"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 sysop@dom0"


def test_users_file() -> None:
    text = f"""
[[user]]
name = "sysop"
groups = ["users", "portage"]
shell = "/bin/bash"
password_hash = "{HASH}"
ssh_authorized_keys = ["{KEY}"]

[[user]]
name = "root"
password_hash = "!"
"""
    assert parse_site_users(text) == (
        SiteUser("sysop", ("users", "portage"), "/bin/bash", HASH, (KEY,)),
        SiteUser("root", password_hash="!"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[user]]\nname = "sysop"\npassword_hash = "hunter-two"\n',
            "user sysop: password_hash is not a crypt(3) hash (give `openssl passwd -6` output)",
        ),
        ('[[user]]\nname = "Sys Op"\n', "user 'Sys Op': not a valid user name"),
        ('[[user]]\nname = "a"\nshell = "bash"\n', "user a: 'bash' is not an absolute path"),
        (
            '[[user]]\nname = "a"\nssh_authorized_keys = ["AAAA"]\n',
            "user a: not an ssh public key line: 'AAAA'",
        ),
        (
            '[[user]]\nname = "a"\npassword = "x"\n',
            "users.toml: user #1: unknown keys ['password']",
        ),
        ('[[user]]\nname = "a"\n[[user]]\nname = "a"\n', "users.toml: users listed twice: ['a']"),
        ("[[group]]\n", "users.toml: unknown tables ['group']; only [[user]]"),
    ],
)
def test_bad_users_files(text: str, message: str) -> None:
    with pytest.raises(SiteUsersError) as err:
        parse_site_users(text)
    assert str(err.value) == message
