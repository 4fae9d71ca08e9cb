"""The users a site puts into every root it deploys, as a small TOML file.

```toml
[[user]]
name = "sysop"
groups = ["wheel", "portage"]        # must exist in the root
shell = "/bin/bash"
password_hash = "$6$..."             # crypt(3) text, e.g. from `openssl passwd -6`
ssh_authorized_keys = ["ssh-ed25519 AAAA... sysop@dom0"]
```

Only hashes are accepted: a value that is not a crypt(3) hash (or ``!``/``*``, locked) is
refused, so a clear-text password cannot slip into a site file. ``root`` may appear, to set
its shell, hash and keys; it is never created.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from g2d.core.errors import G2dUserError

_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# $id$[params$]salt$hash for the schemes glibc and libxcrypt know, or a locked account
_HASH = re.compile(r"^(\$(1|5|6|y|gy|7|2[abxy]|sha1|md5)\$[./A-Za-z0-9$=,]+|[!*].*)$")
_KEY_TYPES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")
_FIELDS = {"name", "groups", "shell", "password_hash", "ssh_authorized_keys", "home"}


class SiteUsersError(G2dUserError):
    def __init__(self, where: str, reason: str) -> None:
        super().__init__(where, reason, hint="see docs/rootfs.md for the users file")
        self.where = where
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class SiteUser:
    name: str
    groups: tuple[str, ...] = ()
    shell: str | None = None
    password_hash: str | None = None
    ssh_authorized_keys: tuple[str, ...] = ()
    home: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise SiteUsersError(f"user {self.name!r}", "not a valid user name")
        if self.password_hash is not None and not _HASH.match(self.password_hash):
            raise SiteUsersError(
                f"user {self.name}",
                "password_hash is not a crypt(3) hash (give `openssl passwd -6` output)",
            )
        for key in self.ssh_authorized_keys:
            if not key.startswith(_KEY_TYPES) or "\n" in key or len(key.split()) < 2:
                raise SiteUsersError(
                    f"user {self.name}", f"not an ssh public key line: {key[:40]!r}"
                )
        for path in (self.shell, self.home):
            if path is not None and not path.startswith("/"):
                raise SiteUsersError(f"user {self.name}", f"{path!r} is not an absolute path")
        bad = [g for g in self.groups if not _NAME.match(g)]
        if bad:
            raise SiteUsersError(f"user {self.name}", f"not valid group names: {bad}")


def parse_site_users(text: str, source: str = "users.toml") -> tuple[SiteUser, ...]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SiteUsersError(source, f"not valid TOML: {e}") from None
    extra = set(data) - {"user"}
    if extra:
        raise SiteUsersError(source, f"unknown tables {sorted(extra)}; only [[user]]")
    users = tuple(_user(source, i, entry) for i, entry in enumerate(data.get("user", []), 1))
    names = [u.name for u in users]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SiteUsersError(source, f"users listed twice: {dupes}")
    return users


def _user(source: str, index: int, entry: Mapping[str, Any]) -> SiteUser:
    where = f"{source}: user #{index}"
    unknown = set(entry) - _FIELDS
    if unknown:
        raise SiteUsersError(where, f"unknown keys {sorted(unknown)}")
    if not isinstance(entry.get("name"), str):
        raise SiteUsersError(where, "needs a name")
    return SiteUser(
        name=entry["name"],
        groups=tuple(entry.get("groups", ())),
        shell=entry.get("shell"),
        password_hash=entry.get("password_hash"),
        ssh_authorized_keys=tuple(entry.get("ssh_authorized_keys", ())),
        home=entry.get("home"),
    )
