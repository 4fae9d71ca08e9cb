"""Put the site's users into a root: the host's shadow tools with ``--root``, keys as files.

``useradd --root``, ``usermod --root`` and ``chpasswd --root -e`` chroot into the root and
edit its passwd, shadow and group with the locking and the ``/etc/skel`` copy the root's
own tools would do; nothing runs from the root itself. Hashes go to chpasswd on stdin, so
they never show in a process list. Missing groups are reported together before any change.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from g2d.core.errors import G2dUserError
from g2d.core.site_users import SiteUser
from g2d.hosts.base import Host
from g2d.hosts.local import LocalHost
from g2d.rootfs.inroot import make_dirs, resolve_in_root, write_file


class UsersFailed(G2dUserError):
    def __init__(self, root: str, problems: Sequence[str]) -> None:
        super().__init__(
            root, tuple(problems), hint="add the groups to the root, or fix the users file"
        )
        self.root = root
        self.problems = tuple(problems)

    def __str__(self) -> str:
        return f"{self.root}: cannot add the site's users:" + "".join(
            f"\n  {p}" for p in self.problems
        )


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def read_accounts(root: Path) -> dict[str, Account]:
    """The root's /etc/passwd."""
    found = {}
    for line in resolve_in_root(root, "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 7:
            found[fields[0]] = Account(fields[0], int(fields[2]), int(fields[3]), fields[5])
    return found


def read_groups(root: Path) -> set[str]:
    text = resolve_in_root(root, "etc/group").read_text()
    return {line.split(":", 1)[0] for line in text.splitlines() if line.strip()}


def add_users(root: Path, users: Sequence[SiteUser], *, host: Host | None = None) -> list[Account]:
    """Create (or update) each user in the root; their accounts as the root now has them."""
    host = host or LocalHost()
    groups = read_groups(root)
    problems = [
        f"{u.name}: group {g} does not exist in the root"
        for u in users
        for g in u.groups
        if g not in groups
    ]
    problems += [
        f"{u.name}: shell {u.shell} does not exist in the root"
        for u in users
        if u.shell and not resolve_in_root(root, u.shell).exists()
    ]
    if problems:
        raise UsersFailed(os.fspath(root), problems)
    rootarg = f"--root={os.fspath(root)}"
    for user in users:
        exists = user.name in read_accounts(root)
        argv = [
            "usermod" if exists else "useradd",
            rootarg,
            *([] if exists else ["--create-home"]),
            *(["--groups", ",".join(user.groups)] if user.groups else []),
            *(["--append"] if exists and user.groups else []),
            *(["--shell", user.shell] if user.shell else []),
            *(["--home", user.home] if user.home and not exists else []),
            user.name,
        ]
        if exists and len(argv) == 3:  # nothing to change but the password or the keys
            argv = []
        if argv:
            host.run(argv)
        if user.password_hash is not None:
            line = f"{user.name}:{user.password_hash}\n".encode()
            host.run(["chpasswd", rootarg, "--encrypted"], stdin=line)
    accounts = read_accounts(root)
    for user in users:
        if user.ssh_authorized_keys:
            _write_keys(root, accounts[user.name], user.ssh_authorized_keys)
    return [accounts[u.name] for u in users]


def _write_keys(root: Path, account: Account, keys: Sequence[str]) -> None:
    """~/.ssh/authorized_keys, as sshd's StrictModes wants it: owned by the user, 0700/0600."""
    ssh = PurePosixPath(account.home) / ".ssh"
    if not resolve_in_root(root, account.home).exists():  # a user made without one
        home = make_dirs(root, account.home, mode=0o700)
        os.chown(home, account.uid, account.gid)
    directory = make_dirs(root, ssh, mode=0o700)
    os.chown(directory, account.uid, account.gid)
    text = "".join(f"{k.strip()}\n" for k in keys)
    write_file(root, ssh / "authorized_keys", text, mode=0o600, uid=account.uid, gid=account.gid)
