"""How esync reaches one mirror: the transports for its URL, and for an ``ssh://`` mirror the
pinned ``SshHost`` they and rsync go through.

The host key is pinned as for every remote g2d reaches: from ``$G2D_SSH_KNOWN_HOSTS``, else
``~/.ssh/known_hosts`` (only that host and port's entries count); the client key from
``$G2D_SSH_IDENTITY``, else the ssh agent's (``g2d.hosts.open.host_for``). A mirror whose key
is not pinned is refused before a byte is read. The connection is closed after the part.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from g2d.core.uri import HostAddress
from g2d.hosts.open import host_for
from g2d.hosts.ssh import SshHost
from g2d.sources.transports import Transports


@dataclass(frozen=True)
class Access:
    transports: Transports
    ssh: SshHost | None  # an ssh:// mirror's host; None for any other URL


@contextmanager
def mirror_access(url: str) -> Iterator[Access]:
    """The way to ``url`` for as long as the block runs."""
    parts = urlsplit(url)
    with ExitStack() as undo:
        ssh = None
        if parts.scheme == "ssh" and parts.hostname:
            address = HostAddress(parts.hostname, parts.username, parts.port)
            host = host_for(address)
            assert isinstance(host, SshHost)
            ssh = undo.enter_context(host)
        transports = undo.enter_context(Transports([ssh] if ssh else []))
        yield Access(transports, ssh)
