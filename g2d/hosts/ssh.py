"""A machine reached over ssh: paramiko for commands, OpenSSH for pipeline stages, sshfs for files.

The server's host key must be one of the pinned keys, on every path: paramiko compares the key
itself, and the OpenSSH client and sshfs (asyncssh) read a known_hosts file that g2d writes
with exactly the pinned keys. An unknown or changed key is refused with ``HostKeyRejected``
naming the presented key's SHA256 fingerprint; no key is ever added.

Remote argv is quoted once, here, with ``shlex.join``. The user's login shell must be a POSIX
shell (sh, bash, dash, zsh): it runs ``echo <marker>$$ >&2; exec <argv>``. sshd makes that
shell a session leader, so ``$$`` is the process group to kill on timeout or cancellation.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import select
import shlex
import shutil
import socket
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import paramiko

from g2d.core.errors import (
    CommandFailed,
    CommandNotFound,
    CommandTimeout,
    G2dUserError,
    HostKeyRejected,
)
from g2d.hosts.base import Argv, Host, env_prefix
from g2d.hosts.output import OutputCollector
from g2d.hosts.runner import (
    DEFAULT_KEEP,
    KILL_GRACE,
    WAKE_EVERY,
    Completed,
    Logger,
    StdinSpec,
    StdoutSpec,
)

if TYPE_CHECKING:
    import fsspec

log = logging.getLogger("g2d.cmd")

_Writer = Callable[[bytes], None]

_CHUNK = 1 << 20
_MARK = b"g2d-pid-"
_MARK_SEARCH_MAX = 1 << 16  # stderr bytes searched for the marker before giving up
# Measured on 127.0.0.1 (bench/bench_ssh.py): AES-GCM is fastest for both clients where the
# CPU has AES instructions; chacha20 stays as the fallback for CPUs without them.
OPENSSH_CIPHERS = ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr")
_PARAMIKO_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr")
_WINDOW = 4 << 20  # measured on 127.0.0.1: 2 MiB stalls, 16 MiB is no faster
_MAX_PACKET = 1 << 15
_RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256")

# Run in the login shell for a timeout: TERM the group, poll, KILL after the grace ticks.
# `kill -TERM -PID`, not `kill -TERM -- -PID`: dash's kill builtin refuses the `--`. Alive
# means a member that is not a zombie: an init that reaps slowly must not stretch the wait.
_KILL_SCRIPT = """\
alive() {
  t=$(ps -e -o pgid= -o stat= 2>/dev/null) && [ -n "$t" ] && command -v awk >/dev/null ||
    { kill -0 -"$1" 2>/dev/null; return; }
  printf '%s\n' "$t" | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'
}
g=$1 n=$2 i=0
kill -TERM -"$g" 2>/dev/null || exit 0
while alive "$g"; do
  i=$((i+1))
  if [ "$i" -eq "$n" ]; then kill -KILL -"$g" 2>/dev/null; fi
  if [ "$i" -gt $((n+50)) ]; then exit 1; fi
  sleep 0.1
done
"""


class SshConnectFailed(G2dUserError):
    """The ssh connection could not be made or authenticated (not a host key problem)."""

    def __init__(self, host: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(host, reason, hint=hint)
        self.host = host
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.host}: ssh connection failed: {self.reason}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:<base64, no padding>`` form, as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_public_key(line: str) -> paramiko.PKey:
    """A public key from ``ssh-ed25519 AAAA... [comment]`` or a known_hosts line."""
    words = line.split()
    # a known_hosts line starts with host patterns; the key type is the first word paramiko knows
    for i, word in enumerate(words[:3]):
        if i + 1 < len(words) and _is_key_type(word):
            try:
                blob = base64.b64decode(words[i + 1], validate=True)
                key = paramiko.PKey.from_type_string(word, blob)
            except (ValueError, paramiko.SSHException) as e:
                raise ValueError(f"invalid {word} public key in {line!r}: {e}") from e
            if key.get_name() != word and word not in _RSA_ALGORITHMS:
                raise ValueError(f"key type {word} does not match the key in {line!r}")
            return key
    raise ValueError(f"not a public key line: {line!r}")


def _is_key_type(word: str) -> bool:
    return any(word in cls.identifiers() for cls in paramiko.key_classes)


def known_hosts_name(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: ``[host]:port`` unless the port is 22."""
    return host if port == 22 else f"[{host}]:{port}"


def parse_destination(destination: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (``[v6addr]:port`` for IPv6) -> (user, host, port)."""
    user, _, hostport = destination.rpartition("@")
    port: str | None = None
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest.removeprefix(":") or None
    elif hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
    else:
        host = hostport
    if port is not None and not port.isdigit():
        raise ValueError(f"invalid port in ssh destination {destination!r}")
    return user or None, host, int(port) if port is not None else None


class SshHost(Host):
    """Runs argv on a machine over ssh; the host key must match a pinned key.

    host_keys: public key lines (``ssh-ed25519 AAAA...``) pinned for this host.
    known_hosts: a known_hosts file; its entries for this host and port are pinned too.
    key: the client's private key file; without one the ssh agent's keys are tried.
    One paramiko connection is opened on first use and shared by all runs (thread-safe).
    """

    def __init__(
        self,
        host: str,
        *,
        host_keys: Sequence[str] = (),
        known_hosts: str | os.PathLike[str] | None = None,
        user: str = "root",
        port: int = 22,
        key: str | os.PathLike[str] | None = None,
        passphrase: str | None = None,
        name: str | None = None,
        connect_timeout: float = 15.0,
        keepalive: int = 15,
        grace: float = KILL_GRACE,
        max_sessions: int = 8,
    ) -> None:
        for what, value in (("host", host), ("user", user)):
            # both land on the ssh command line and in known_hosts
            if not value or value.startswith("-") or any(c.isspace() for c in value):
                raise ValueError(f"invalid ssh {what} {value!r}")
        if not 0 < port < 65536:
            raise ValueError(f"invalid ssh port {port}")
        self.host = host
        self.user = user
        self.port = port
        self.key = Path(key) if key is not None else None
        self.name = name or (f"{user}@{host}" if port == 22 else f"{user}@{host}:{port}")
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.grace = grace
        self.known_hosts_source = Path(known_hosts) if known_hosts is not None else None
        pins = [parse_public_key(line) for line in host_keys]
        if known_hosts is not None:
            found = paramiko.HostKeys(os.fspath(known_hosts)).lookup(known_hosts_name(host, port))
            pins += list(found.values()) if found else []
        if not host_keys and known_hosts is None:
            raise ValueError(f"{self.name}: no host key pinned (give host_keys or known_hosts)")
        self.pinned: tuple[paramiko.PKey, ...] = tuple(pins)
        self._passphrase = passphrase
        self._lock = threading.Lock()
        # sshd allows 10 sessions per connection (MaxSessions); keep room for kill channels
        self._sessions = threading.BoundedSemaphore(max_sessions)
        self._transport_: paramiko.Transport | None = None
        self._fs: fsspec.AbstractFileSystem | None = None
        self._known_hosts: Path | None = None
        self._tmpdir: str | None = None
        self._cleanup: Callable[[], object] | None = None
        self.connects = 0  # connections opened so far; one per host unless the link drops

    @classmethod
    def from_known_hosts(
        cls,
        destination: str,
        known_hosts: str | os.PathLike[str],
        *,
        key: str | os.PathLike[str] | None = None,
        **kwargs: object,
    ) -> SshHost:
        """``SshHost.from_known_hosts("root@10.1.0.1:2222", "~/.ssh/known_hosts", key=...)``."""
        user, host, port = parse_destination(destination)
        return cls(
            host,
            known_hosts=Path(known_hosts).expanduser(),
            user=user or "root",
            port=port or 22,
            key=key,
            **kwargs,  # type: ignore[arg-type]
        )

    # -- the connection ------------------------------------------------------------------

    def connect(self) -> None:
        """Open the shared connection now (checking the host key) instead of on first use."""
        self._transport()

    def _transport(self) -> paramiko.Transport:
        with self._lock:
            t = self._transport_
            if t is None or not t.is_active():
                if t is not None:
                    t.close()
                self._transport_ = t = self._connect()
                self.connects += 1
            return t

    def _pinned_key_types(self) -> list[str]:
        types: list[str] = []
        for pin in self.pinned:
            names = _RSA_ALGORITHMS if pin.get_name() == "ssh-rsa" else (pin.get_name(),)
            types += [n for n in names if n not in types]
        return types

    def _start(self, key_types: Sequence[str] | None) -> paramiko.Transport:
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout)
        except OSError as e:
            raise SshConnectFailed(self.name, str(e)) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = paramiko.Transport(
            sock, default_window_size=_WINDOW, default_max_packet_size=_MAX_PACKET
        )
        options = t.get_security_options()
        options.ciphers = [
            *_PARAMIKO_CIPHERS,
            *(c for c in options.ciphers if c not in _PARAMIKO_CIPHERS),
        ]
        if key_types:
            # offer only the pinned types, or the server may pick another key it also holds
            options.key_types = list(key_types)
        # paramiko's own rekey (every 512 MiB) can deadlock when a channel closes during it
        # (paramiko#822); OpenSSH servers rekey on their own limits, so leave it to them
        t.packetizer.REKEY_BYTES = t.packetizer.REKEY_PACKETS = 1 << 62
        try:
            t.start_client(timeout=self.connect_timeout)
        except (OSError, EOFError) as e:
            t.close()
            raise SshConnectFailed(self.name, f"{type(e).__name__}: {e}") from e
        except BaseException:
            t.close()
            raise
        return t

    def _connect(self) -> paramiko.Transport:
        key_types = self._pinned_key_types()
        try:
            t = self._start(key_types)
        except paramiko.SSHException as e:
            if not key_types or "host key" not in str(e):
                raise SshConnectFailed(self.name, str(e)) from e
            # connect again only to learn which key the server has, for the refusal
            t = self._start(None)
            presented = t.get_remote_server_key()
            t.close()
            raise HostKeyRejected(
                self.name,
                fingerprint(presented),
                f"the server has no key of the pinned type {', '.join(key_types)}",
                hint=_CHANGED_HINT,
            ) from None
        try:
            self._check_host_key(t.get_remote_server_key())
            self._authenticate(t)
            t.set_keepalive(self.keepalive)
        except BaseException:
            t.close()
            raise
        return t

    def _check_host_key(self, presented: paramiko.PKey) -> None:
        if any(presented.asbytes() == pin.asbytes() for pin in self.pinned):
            return
        if not self.pinned:
            where = f" in {self.known_hosts_source}" if self.known_hosts_source else ""
            reason = f"unknown host: no key is pinned for {self._kh_name()}{where}"
            hint = "check the fingerprint on the host (ssh-keygen -lf <host key>.pub), then pin it"
        else:
            pinned = ", ".join(fingerprint(p) for p in self.pinned)
            reason = f"it does not match the pinned key {pinned}"
            hint = _CHANGED_HINT
        raise HostKeyRejected(self.name, fingerprint(presented), reason, hint=hint)

    def _authenticate(self, t: paramiko.Transport) -> None:
        if self.key is not None:
            try:
                keys = [paramiko.PKey.from_path(self.key, self._passphrase)]
            except (OSError, paramiko.SSHException) as e:
                raise SshConnectFailed(self.name, f"cannot load key {self.key}: {e}") from e
        else:
            keys = list(paramiko.Agent().get_keys())
        for k in keys:
            try:
                t.auth_publickey(self.user, k)
                return
            except paramiko.AuthenticationException:
                continue
            except paramiko.SSHException as e:
                raise SshConnectFailed(self.name, str(e)) from e
        tried = str(self.key) if self.key else f"{len(keys)} agent key(s)"
        raise SshConnectFailed(
            self.name,
            f"the server refused the client key ({tried}) for user {self.user}",
            hint="add the client's public key to the user's authorized_keys on the host",
        )

    def _kh_name(self) -> str:
        return known_hosts_name(self.host, self.port)

    def close(self) -> None:
        """Close the connection and the sshfs session; remove the known_hosts g2d wrote."""
        with self._lock:
            if self._transport_ is not None:
                self._transport_.close()
                self._transport_ = None
            self._fs = None  # sshfs closes its connection when the instance is collected
            if self._cleanup is not None:
                self._cleanup()
            self._known_hosts = None
            self._tmpdir = None

    def __enter__(self) -> SshHost:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- commands ------------------------------------------------------------------------

    def remote_command(
        self,
        argv: Argv,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> str:
        """The one quoting pass: argv (with its env/cwd prefix) as text for the remote shell."""
        args = [os.fspath(a) for a in argv]
        if not args:
            raise ValueError("empty argv")
        return shlex.join([*env_prefix(env, cwd), *args])

    def run(
        self,
        argv: Argv,
        *,
        stdin: StdinSpec = None,
        stdout: StdoutSpec = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        check: bool = True,
        capture: bool = True,
        keep: int = DEFAULT_KEEP,
        logger: Logger | None = None,
    ) -> Completed:
        args = [os.fspath(a) for a in argv]
        if not args:
            raise ValueError("empty argv")
        logger = logger or log
        logger.info("%s$ %s", self.name, shlex.join(args))
        token = secrets.token_hex(6).encode()
        prefix = env_prefix(env, cwd)
        if not prefix and args[0].startswith("-"):
            prefix = ["env", "--"]  # `exec -x` would be read as an option of exec
        # LC_ALL as the local runner sets it, so messages parse the same; env may override it
        command = f"echo {(_MARK + token).decode()}:$$ >&2; LC_ALL=C.UTF-8 exec " + shlex.join(
            [*prefix, *args]
        )
        err = OutputCollector(logger, prefix=f"{self.name}: ", level=logging.INFO, keep=0)
        out = OutputCollector(
            logger,
            prefix=f"{self.name}> ",
            level=logging.DEBUG if capture else logging.INFO,
            keep=keep if capture else 0,
        )
        marked = _PidFilter(token, err)
        started = time.monotonic()
        deadline = started + timeout if timeout is not None else None
        source = _open_source(stdin)
        try:
            with (
                open(stdout, "wb") if isinstance(stdout, Path | str) else nullcontext() as sink,
                self._session() as chan,
            ):
                fd = sink.fileno() if sink else stdout if isinstance(stdout, int) else None
                write_out = _fd_writer(fd, out)
                timed_out = self._drive(chan, command, source, write_out, marked, deadline)
        except (paramiko.SSHException, EOFError) as e:
            raise SshConnectFailed(self.name, f"connection lost: {e}") from e
        finally:
            if isinstance(source, _Source):
                source.close()
        duration = time.monotonic() - started
        marked.close()
        out.close()
        tail = err.tail_text()
        if timed_out:
            raise CommandTimeout(self.name, args, float(timeout or 0), tail)
        # paramiko ignores exit-signal: no status means killed or cut off; OpenSSH says 255
        code = chan.exit_status if chan.exit_status != -1 else 255
        if code == 127 and _says_missing(tail, args[0]):
            raise CommandNotFound(self.name, args[0])
        if cwd is not None and code == 125 and "cannot change directory to" in tail:
            raise CommandFailed(self.name, args, 127, f"working directory {cwd} missing")
        result = Completed(
            host=self.name,
            argv=tuple(args),
            returncode=code,
            out=out.head,
            stderr=tail,
            duration=duration,
            truncated=out.truncated,
        )
        if check and code != 0:
            hint = None if chan.exit_status != -1 else _NO_STATUS_HINT
            raise CommandFailed(self.name, args, code, tail, hint=hint)
        return result

    @contextmanager
    def _session(self) -> Iterator[paramiko.Channel]:
        """A channel on the shared connection, within the host's session limit."""
        while not self._sessions.acquire(timeout=WAKE_EVERY):
            pass  # a bounded wait, so cancellation lands here too
        try:
            chan = self._open_channel()
            try:
                yield chan
            finally:
                chan.close()
        finally:
            self._sessions.release()

    def _drive(
        self,
        chan: paramiko.Channel,
        command: str,
        source: bytes | _Source | None,
        write_out: _Writer,
        marked: _PidFilter,
        deadline: float | None,
    ) -> bool:
        """Run ``command`` on ``chan`` to its end; True if it timed out (its group is dead)."""
        writer: threading.Thread | None = None
        try:
            chan.exec_command(command)
            if source is None:
                chan.shutdown_write()
            else:
                writer = threading.Thread(
                    target=_feed, args=(chan, source), name=f"g2d-ssh-stdin {self.name}"
                )
                writer.daemon = True  # a blocked read of a caller's fd must not pin exit
                writer.start()
            timed_out = _pump(chan, write_out, marked, deadline)
        except BaseException:
            self._kill_group(chan, marked)  # Ctrl-C, Prefect timeout or cancellation
            raise
        finally:
            if writer is not None and writer.is_alive():
                chan.close()  # unblocks a writer stuck on a full window
                writer.join(self.grace)
        if timed_out:
            self._kill_group(chan, marked)
        return timed_out

    def _open_channel(self) -> paramiko.Channel:
        t = self._transport()
        try:
            return t.open_session(timeout=self.connect_timeout)
        except paramiko.SSHException as e:
            raise SshConnectFailed(self.name, f"cannot open a session: {e}") from e

    def _kill_group(self, chan: paramiko.Channel, marked: _PidFilter) -> None:
        """Kill the remote process group over a second channel: TERM, grace, KILL."""
        deadline = time.monotonic() + 2.0
        while marked.pid is None and not chan.closed and time.monotonic() < deadline:
            # the marker may still be in flight; without it there is no group to name
            if chan.recv_stderr_ready():
                marked.feed(chan.recv_stderr(_CHUNK))
            else:
                time.sleep(0.01)
        if marked.pid is None:
            log.warning("%s: no process group id from the remote shell; closing only", self.name)
            return
        ticks = max(1, round(self.grace / 0.1))
        script = shlex.join(["sh", "-c", _KILL_SCRIPT, "g2d-kill", str(marked.pid), str(ticks)])
        try:
            killer = self._open_channel()
        except (G2dUserError, paramiko.SSHException, OSError) as e:
            log.warning("%s: cannot kill process group %d: %s", self.name, marked.pid, e)
            return
        try:
            killer.exec_command(script)
            killer.shutdown_write()
            killer.status_event.wait(self.grace + 10.0)
            if killer.exit_status != 0:
                log.warning("%s: process group %d may have survived", self.name, marked.pid)
        finally:
            killer.close()

    def command(
        self,
        argv: Argv,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> list[str]:
        """The OpenSSH client argv for a pipeline stage; the bytes never pass through Python.

        The pin is checked first over the shared connection, so a wrong key fails with the
        same HostKeyRejected as ``run``; the client then enforces it again on its own.
        """
        remote = self.remote_command(argv, env=env, cwd=cwd)
        self._transport()
        return [*self.ssh_options(), "--", self.host, remote]

    def ssh_options(self) -> list[str]:
        """``ssh`` and its options, up to (not including) the destination."""
        return [
            "ssh",
            "-F", "none",                                        # no ~/.ssh/config, no /etc/ssh
            "-T",                                                # no tty: binary-clean, no escapes
            "-o", "BatchMode=yes",                               # never prompt
            "-o", "StrictHostKeyChecking=yes",                   # unknown or changed key: refuse
            "-o", f"UserKnownHostsFile={self.known_hosts_file()}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "UpdateHostKeys=no",
            "-o", "Compression=no",                              # a win only on slow links
            "-o", f"Ciphers={','.join(OPENSSH_CIPHERS)}",
            "-o", f"ConnectTimeout={round(self.connect_timeout)}",
            "-o", f"ServerAliveInterval={self.keepalive}",
            "-o", "ServerAliveCountMax=4",
            *(["-o", "IdentitiesOnly=yes", "-i", os.fspath(self.key)] if self.key else []),
            "-p", str(self.port),
            "-l", self.user,
        ]  # fmt: skip

    def known_hosts_file(self) -> Path:
        """A known_hosts file holding exactly the pinned keys, for OpenSSH and asyncssh."""
        with self._lock:
            if self._known_hosts is None:
                self._tmpdir = tempfile.mkdtemp(prefix="g2d-ssh-")
                self._cleanup = weakref.finalize(
                    self, shutil.rmtree, self._tmpdir, ignore_errors=True
                )
                path = Path(self._tmpdir, "known_hosts")
                name = self._kh_name()
                path.write_text(
                    "".join(f"{name} {k.get_name()} {k.get_base64()}\n" for k in self.pinned)
                )
                self._known_hosts = path
            return self._known_hosts

    def filesystem(self) -> fsspec.AbstractFileSystem:
        """The host's files over SFTP (sshfs), checked against the same pin and client key."""
        from sshfs import SSHFileSystem  # asyncssh takes a while to import; only when used

        self._transport()  # a wrong key fails here with the fingerprint, as for run()
        known_hosts = self.known_hosts_file()
        with self._lock:
            if self._fs is None:
                self._fs = SSHFileSystem(
                    self.host,
                    port=self.port,
                    username=self.user,
                    known_hosts=os.fspath(known_hosts),
                    config=[],  # like -F none: no ~/.ssh/config
                    **(
                        {"client_keys": [os.fspath(self.key)], "agent_path": None}
                        if self.key
                        else {}
                    ),
                    passphrase=self._passphrase,
                    connect_timeout=self.connect_timeout,
                    keepalive_interval=self.keepalive,
                    skip_instance_cache=True,  # its lifetime is this host's, not fsspec's
                )
            return self._fs

    def __repr__(self) -> str:
        return f"SshHost({self.name!r})"


_CHANGED_HINT = (
    "if the host was reinstalled, check its new key out of band and update the pin; "
    "otherwise something may be intercepting the connection"
)
_NO_STATUS_HINT = "no exit status came back: killed by a signal, or the connection was lost"


def _says_missing(tail: str, program: str) -> bool:
    # shells: "exec: prog: not found"; bash for a path or env: "prog: No such file or directory"
    return program in tail and ("not found" in tail or "No such file or directory" in tail)


class _PidFilter:
    """Takes the marker line out of stderr, keeps the pid it names, passes the rest on."""

    def __init__(self, token: bytes, sink: OutputCollector) -> None:
        self._tag = _MARK + token + b":"
        self._sink = sink
        self._buf = b""
        self._searching = True
        self.pid: int | None = None

    def feed(self, data: bytes) -> None:
        if not self._searching:
            self._sink.feed(data)
            return
        self._buf += data
        # login scripts may write before the marker, so search rather than expect line one
        start = self._buf.find(self._tag)
        if start >= 0:
            end = self._buf.find(b"\n", start)
            if end < 0:
                return
            digits = self._buf[start + len(self._tag) : end]
            self.pid = int(digits) if digits.isdigit() else None
            rest = self._buf[:start] + self._buf[end + 1 :]
        elif len(self._buf) > _MARK_SEARCH_MAX:
            rest = self._buf
        else:
            return
        self._searching = False
        self._buf = b""
        if rest:
            self._sink.feed(rest)

    def close(self) -> None:
        if self._buf:
            self._sink.feed(self._buf)
            self._buf = b""
        self._searching = False
        self._sink.close()


class _Source:
    """A local file or fd that feeds the remote stdin."""

    def __init__(self, fd: int, owned: bool) -> None:
        self.fd = fd
        self.owned = owned

    def close(self) -> None:
        if self.owned:
            os.close(self.fd)


def _open_source(stdin: StdinSpec) -> bytes | _Source | None:
    if stdin is None or isinstance(stdin, bytes):
        return stdin
    if isinstance(stdin, int):
        return _Source(stdin, owned=False)
    # opened here, before the remote starts, so a missing file fails as it does locally
    return _Source(os.open(stdin, os.O_RDONLY | os.O_CLOEXEC), owned=True)


def _feed(chan: paramiko.Channel, source: bytes | _Source) -> None:
    try:
        if isinstance(source, bytes):
            view = memoryview(source)
            for i in range(0, len(view), _CHUNK):
                chan.sendall(view[i : i + _CHUNK])
        else:
            while data := os.read(source.fd, _CHUNK):
                chan.sendall(data)
        chan.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the remote stopped reading or the channel closed; its exit code tells


def _fd_writer(fd: int | None, out: OutputCollector) -> _Writer:
    if fd is None:
        return out.feed

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    return write


def _pump(
    chan: paramiko.Channel,
    write_out: _Writer,
    err: _PidFilter,
    deadline: float | None,
) -> bool:
    """Move output until the remote sends EOF and its exit status; True if the deadline passed."""
    ready = chan.fileno()  # readable while either stream has data, and after EOF
    while True:
        moved = _drain(chan, write_out, err)
        if deadline is not None and time.monotonic() >= deadline:
            return True
        if moved:
            continue
        if chan.eof_received or chan.closed:
            while _drain(chan, write_out, err):  # what arrived between the checks and the EOF
                pass
            break
        # bounded waits, so an exception injected into this thread (cancellation) lands
        wait = WAKE_EVERY if deadline is None else min(deadline - time.monotonic(), WAKE_EVERY)
        select.select([ready], [], [], max(wait, 0.0))
    while not chan.status_event.wait(WAKE_EVERY):
        if deadline is not None and time.monotonic() >= deadline:
            return True
    return False


def _drain(chan: paramiko.Channel, write_out: _Writer, err: _PidFilter) -> bool:
    """One read from each stream that has data; the caller loops and watches the clock."""
    moved = False
    if chan.recv_stderr_ready():
        err.feed(chan.recv_stderr(_CHUNK))
        moved = True
    if chan.recv_ready():
        # take the whole buffer: paramiko shifts what is left to the front on every read
        write_out(chan.recv(_WINDOW))
        moved = True
    return moved
