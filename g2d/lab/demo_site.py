"""What the demo's dom0 needs beyond what esync brings, and the site change its update shows.

esync brings every part a mirror serves; two inputs of a deploy are the site's own and no
lab mirror has them (docs/deploy.md): the public key that signs the binhost's packages
(``meta/keys/binpkg/*.asc``) and the users every root gets (``meta/users.toml``). Here they
come from the lab: its binpkg key, and a user who logs in with the lab's ssh client key
(a key, never a password). The update then shows a site change: ``app-misc/hello``'s USE
flipped in ``packages/common.uses``, so ``emerge --newuse`` takes the binhost's other build.
"""

from __future__ import annotations

import json
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.core.site_users import parse_site_users
from g2d.lab.keys import ensure_keys
from g2d.lab.layout import LabLayout
from g2d.lab.process import run
from g2d.rootfs.dom0_tree import Dom0Tree

DEMO_USER = "sysop"
HELLO = "app-misc/hello"
HELLO_USE = ("doc -nls", "nls -doc")  # the binhost has one build of hello for each


class DemoSiteError(G2dUserError):
    """The dom0 lacks what the demo changes."""


def add_deploy_inputs(layout: LabLayout, dom0: Dom0Tree, client_key: Path) -> list[str]:
    """The lab's binpkg key and a users file into ``dom0``; what was written."""
    keys = ensure_keys(layout.gnupg)
    key = dom0.binpkg_keys_dir / "lab.asc"
    key.parent.mkdir(parents=True, exist_ok=True)
    try:
        keys.export_public(keys.binpkg, key)
    finally:  # python-gnupg started an agent for the lab's keyring
        run(["gpgconf", "--homedir", layout.gnupg, "--kill", "gpg-agent"], check=False)
    public = run(["ssh-keygen", "-y", "-f", client_key]).stdout.split()
    authorized = " ".join([*public[:2], f"{DEMO_USER}@g2d-demo"])
    text = (f"# written by g2d lab demo: the lab's ssh client key logs in as {DEMO_USER}\n"
            f'[[user]]\nname = "{DEMO_USER}"\ngroups = ["users"]\nshell = "/bin/sh"\n'
            f"ssh_authorized_keys = [{json.dumps(authorized)}]\n")  # fmt: skip
    parse_site_users(text, source=str(dom0.users_file))  # the deploy's own check, before writing
    dom0.users_file.write_text(text)
    return [f"{key.relative_to(dom0.root)} (binpkg key {keys.binpkg[-16:]})",
            f"{dom0.users_file.relative_to(dom0.root)} ({DEMO_USER}, ssh key only)"]  # fmt: skip


def flip_hello_use(dom0: Dom0Tree) -> str:
    """Switch hello's USE in the site's ``common.uses``; ``old -> new``."""
    uses = dom0.packages / "common.uses"
    lines = uses.read_text().splitlines() if uses.is_file() else []
    at = next((i for i, ln in enumerate(lines) if ln.split()[:1] == [HELLO]), None)
    if at is None:
        raise DemoSiteError(f"{uses} sets no USE for {HELLO}", hint="run g2d esync again")
    old = " ".join(lines[at].split()[1:])
    new = HELLO_USE[1] if old == HELLO_USE[0] else HELLO_USE[0]
    lines[at] = f"{HELLO} {new}"
    uses.write_text("\n".join(lines) + "\n")
    return f"{HELLO}: {old} -> {new}"
