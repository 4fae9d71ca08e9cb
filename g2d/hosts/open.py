"""The host a target lives on: this machine, or an ``SshHost`` whose key is pinned.

A remote target (``zfs://root@10.1.0.1:2222:/pool/sys``) is reached over ssh with its host
key pinned from a known_hosts file: ``known_hosts`` when given, else ``$G2D_SSH_KNOWN_HOSTS``,
else ``~/.ssh/known_hosts``. Only the entries for that host and port count; an unknown or
changed key is refused (``HostKeyRejected``), never added. The client key is ``key``, else
``$G2D_SSH_IDENTITY``, else the ssh agent's keys. Without ``user@`` the local user name is
used, as ssh does (g2d reads no ssh_config).
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.core.uri import HostAddress
from g2d.hosts.base import Host

KNOWN_HOSTS_ENV = "G2D_SSH_KNOWN_HOSTS"
IDENTITY_ENV = "G2D_SSH_IDENTITY"


class NoKnownHosts(G2dUserError):
    """A remote target needs a known_hosts file that pins its host key."""


def known_hosts_file(known_hosts: str | os.PathLike[str] | None = None) -> Path:
    named = known_hosts or os.environ.get(KNOWN_HOSTS_ENV) or "~/.ssh/known_hosts"
    path = Path(named).expanduser()
    if not path.is_file():
        raise NoKnownHosts(
            f"no known_hosts file at {path}: a remote host's key must be pinned",
            hint=f"pass --known-hosts FILE or set {KNOWN_HOSTS_ENV}; a line is "
            "`[host]:port ssh-ed25519 AAAA...` (ssh-keyscan prints them; check the "
            "fingerprint on the host)",
        )
    return path


def host_for(
    address: HostAddress | None,
    *,
    known_hosts: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
) -> Host:
    """``LocalHost()`` for no address; else an ``SshHost`` pinned from known_hosts."""
    if address is None:
        from g2d.hosts.local import LocalHost

        return LocalHost()
    from g2d.hosts.ssh import SshHost

    identity = key or os.environ.get(IDENTITY_ENV) or None
    return SshHost(
        address.name,
        known_hosts=known_hosts_file(known_hosts),
        user=address.user or getpass.getuser(),
        port=address.port or 22,
        key=Path(identity).expanduser() if identity else None,
    )
