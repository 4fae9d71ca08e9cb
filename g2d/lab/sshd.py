"""An OpenSSH server on 127.0.0.1, in a directory of its own, reachable only with its own keys.

Everything lives in the directory: the ed25519 host key, `sshd_config`, the client key pair,
`authorized_keys`, a `known_hosts` that pins the host key, the pid file and the log. Login is
by key only; the system's sshd configuration and keys are never read.
"""

from __future__ import annotations

import contextlib
import getpass
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from g2d.core.errors import CommandFailed
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.process import (
    HOST,
    Daemon,
    address_in_use,
    find_program,
    free_port,
    run,
    spawn,
    wait_for_banner,
)

_PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it
_PORT_ATTEMPTS = 3


@dataclass
class SshServer:
    directory: Path
    port: int
    user: str
    host_public_key: str  # "ssh-ed25519 AAAA...", no comment
    client_key: Path  # private key; its public half is in authorized_keys
    known_hosts: Path  # holds exactly known_hosts_line
    daemon: Daemon
    _undo: ExitStack = field(default_factory=ExitStack, repr=False)

    host = HOST

    @property
    def pid(self) -> int:
        return self.daemon.pid

    @property
    def known_hosts_line(self) -> str:
        return f"[{HOST}]:{self.port} {self.host_public_key}"

    @property
    def destination(self) -> str:
        return f"{self.user}@{HOST}"

    def ssh_argv(self, *, known_hosts: Path | None = None) -> list[str]:
        """`ssh` options that trust only the pinned key; append the remote command."""
        return [
            "ssh",
            "-F", "none",                                    # no user or system ssh_config
            "-p", str(self.port),
            "-i", os.fspath(self.client_key),
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",                           # never prompt
            "-o", "StrictHostKeyChecking=yes",               # unknown or changed key: refuse
            "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "UpdateHostKeys=no",
            "-o", "ConnectTimeout=10",
            "-l", self.user,
            HOST,
        ]  # fmt: skip

    def stop(self) -> None:
        self._undo.close()

    def __enter__(self) -> SshServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _quoted(path: Path) -> str:
    text = os.fspath(path)
    # sshd_config takes a double-quoted word; '%' would be expanded as a token
    if any(c in text for c in '"%\n'):
        raise ValueError(f"sshd directory {text!r} may not contain '\"', '%' or a newline")
    return f'"{text}"'


def _render_config(directory: Path, port: int, user: str) -> str:
    return "\n".join(
        [
            f"ListenAddress {HOST}:{port}",
            f"HostKey {_quoted(directory / 'ssh_host_ed25519_key')}",
            f"PidFile {_quoted(directory / 'sshd.pid')}",
            f"AuthorizedKeysFile {_quoted(directory / 'authorized_keys')}",
            f"AllowUsers {user}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # the directory may be group-writable (a tmp dir)
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "Subsystem sftp internal-sftp",  # for sshfs and paramiko's SFTP
            "MaxStartups 64:30:128",  # benchmarks open many connections at once
            "MaxSessions 64",
            "LogLevel VERBOSE",
            "",
        ]
    )


def _keygen(ssh_keygen: str, path: Path, comment: str) -> str:
    run([ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
    kind, blob, *_ = path.with_suffix(".pub").read_text().split()
    return f"{kind} {blob}"


def start_sshd(directory: Path, *, user: str | None = None, timeout: float = 10.0) -> SshServer:
    """Start sshd on 127.0.0.1 at a free port; return once it accepts connections."""
    sshd = find_program("sshd", component="sshd", package="openssh-server")
    ssh_keygen = find_program("ssh-keygen", component="sshd", package="openssh-client")
    user = user or getpass.getuser()
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # not root: sshd will say what it needs
        _PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)

    host_key = directory / "ssh_host_ed25519_key"
    client_key = directory / "id_ed25519"
    host_public_key = _keygen(ssh_keygen, host_key, "g2d-lab-host")
    client_public_key = _keygen(ssh_keygen, client_key, "g2d-lab-client")
    (directory / "authorized_keys").write_text(client_public_key + "\n")
    config = directory / "sshd_config"
    log = directory / "sshd.log"

    with ExitStack() as undo:
        for _ in range(_PORT_ATTEMPTS):
            port = free_port()
            config.write_text(_render_config(directory, port, user))
            log.unlink(missing_ok=True)  # so the log tail speaks of this attempt only
            try:
                run([sshd, "-t", "-f", config])  # a bad config fails here, with its message
            except CommandFailed as exc:
                raise ComponentUnavailable("sshd", f"rejects its config: {exc.tail}") from exc
            # sshd re-executes itself, so it must be started by its absolute path
            daemon = spawn("sshd", [sshd, "-D", "-e", "-f", config], log=log)
            undo.callback(daemon.stop)
            try:
                wait_for_banner(daemon, port, b"SSH-2.0-", timeout)
            except ComponentUnavailable:
                if address_in_use(daemon):
                    continue  # another process took the port between free_port() and bind
                raise
            known_hosts = directory / "known_hosts"
            server = SshServer(
                directory=directory,
                port=port,
                user=user,
                host_public_key=host_public_key,
                client_key=client_key,
                known_hosts=known_hosts,
                daemon=daemon,
            )
            known_hosts.write_text(server.known_hosts_line + "\n")
            server._undo = undo.pop_all()
            return server
    raise ComponentUnavailable("sshd", f"no free port after {_PORT_ATTEMPTS} attempts")
