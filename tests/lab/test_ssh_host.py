"""SshHost against the lab's real OpenSSH server on 127.0.0.1 (which is this machine, so the
process table here is the server's process table)."""

from __future__ import annotations

import _thread
import hashlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from g2d.core.errors import CommandFailed, CommandNotFound, CommandTimeout, HostKeyRejected
from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.hosts.runner import group_members
from g2d.hosts.ssh import (
    SshConnectFailed,
    SshHost,
    fingerprint,
    parse_destination,
    parse_public_key,
)
from g2d.lab.process import free_port, processes_with
from g2d.lab.sshd import SshServer

NASTY = "a b;c|d&e$(f)`g`'h\"i\\j*k?~l #m"
local = LocalHost()


def unique_sleep() -> str:
    """A sleep argument nobody else uses, so the process table can be searched for it."""
    return f"{1000 + uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 1000:03d}"


def keygen(path: Path, kind: str = "ed25519") -> str:
    """A fresh public key line, as ``ssh-keygen`` writes it."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", os.fspath(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def ssh_keygen_fingerprint(public_line: str, tmp_path: Path) -> str:
    """The fingerprint as OpenSSH computes it: the oracle for ours."""
    pub = tmp_path / f"fp-{uuid.uuid4().hex}.pub"
    pub.write_text(public_line + "\n")
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", os.fspath(pub)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1]


def make_host(sshd: SshServer, **kwargs: object) -> SshHost:
    options: dict[str, object] = {
        "port": sshd.port,
        "user": sshd.user,
        "key": sshd.client_key,
        "host_keys": [sshd.host_public_key],
    }
    options.update(kwargs)
    return SshHost(sshd.host, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def host(sshd: SshServer) -> Iterator[SshHost]:
    with make_host(sshd) as h:
        yield h


# -- commands --------------------------------------------------------------------------------


def test_name_is_user_host_port(host: SshHost, sshd: SshServer) -> None:
    assert host.name == f"{sshd.user}@127.0.0.1:{sshd.port}"


def test_stdout_stderr_and_exit_code(host: SshHost) -> None:
    r = host.run(["sh", "-c", "echo out; echo err >&2; exit 0"])
    assert (r.stdout, r.stderr, r.returncode, r.ok) == ("out\n", "err", 0, True)
    assert r.argv == ("sh", "-c", "echo out; echo err >&2; exit 0")
    assert r.host == host.name


def test_check_false_returns_the_code(host: SshHost) -> None:
    assert host.run(["sh", "-c", "exit 7"], check=False).returncode == 7


def test_failure_message_is_the_local_one_with_the_ssh_host(host: SshHost) -> None:
    with pytest.raises(CommandFailed) as info:
        host.run(["sh", "-c", "seq 1 3000 >&2; echo last words >&2; exit 3"])
    e = info.value
    assert (e.host, e.code) == (host.name, 3)
    assert e.tail.endswith("3000\nlast words")
    assert "g2d-pid" not in e.tail  # the marker line is never shown
    head = f"{host.name}: \"sh -c 'seq 1 3000 >&2; echo last words >&2; exit 3'\" exited with 3"
    assert str(e) == f"{head}\n{e.tail}"


def test_argv_survives_the_transport(host: SshHost) -> None:
    assert host.run(["printf", "%s", NASTY]).stdout == NASTY
    assert host.run(["printf", "%s\\n", NASTY, "", "-n", "$HOME"]).lines() == [
        NASTY,
        "",
        "-n",
        "$HOME",
    ]


def test_stdin_bytes_path_fd_and_stdout_path(host: SshHost, tmp_path: Path) -> None:
    blob = os.urandom(3 * 1024 * 1024 + 17)  # binary, bigger than any window or buffer
    assert host.run(["cat"], stdin=blob).out == blob
    src = tmp_path / "in"
    src.write_bytes(blob)
    dst = tmp_path / "out"
    host.run(["cat"], stdin=src, stdout=dst)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(blob).digest()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        host.run(["cat"], stdin=fin.fileno(), stdout=fout.fileno())
    assert dst.read_bytes() == blob


def test_stdin_ignored_by_the_remote_is_not_an_error(host: SshHost) -> None:
    assert host.run(["true"], stdin=os.urandom(8 << 20), timeout=30).ok


def test_stdin_is_empty_when_not_given(host: SshHost) -> None:
    assert host.run(["cat"], timeout=10).out == b""


def test_env_and_cwd(host: SshHost, tmp_path: Path) -> None:
    odd = tmp_path / "a dir; with $(odd) 'name'"
    odd.mkdir()
    r = host.run(["sh", "-c", 'echo "$G2D_X"; pwd'], env={"G2D_X": NASTY}, cwd=odd)
    assert r.lines() == [NASTY, str(odd)]


def test_locale_is_fixed_like_the_local_runner(host: SshHost) -> None:
    assert host.run(["sh", "-c", 'echo "$LC_ALL"']).stdout == "C.UTF-8\n"
    assert host.run(["sh", "-c", 'echo "$LC_ALL"'], env={"LC_ALL": "C"}).stdout == "C\n"


def test_missing_program_and_missing_cwd(host: SshHost, tmp_path: Path) -> None:
    with pytest.raises(CommandNotFound) as info:
        host.run(["g2d-no-such-program", "x"])
    assert str(info.value) == f"{host.name}: g2d-no-such-program not found"
    with pytest.raises(CommandNotFound) as info:
        host.run(["g2d-no-such-program"], env={"A": "1"})  # through `env`, not the shell
    assert str(info.value) == f"{host.name}: g2d-no-such-program not found"
    with pytest.raises(CommandNotFound):
        host.run(["/no/such/dir/prog"])
    with pytest.raises(CommandFailed) as failed:
        host.run(["true"], cwd=tmp_path / "missing")
    assert str(failed.value) == (
        f'{host.name}: "true" exited with 127\nworking directory {tmp_path / "missing"} missing'
    )


def test_output_is_capped_and_marked_truncated(host: SshHost) -> None:
    r = host.run(["head", "-c", "100000", "/dev/zero"], keep=1000)
    assert (len(r.out), r.truncated) == (1000, True)
    r = host.run(["head", "-c", "1000", "/dev/zero"], capture=False)
    assert (r.out, r.ok) == (b"", True)


# -- killing the remote group ----------------------------------------------------------------


def test_timeout_kills_the_remote_group(host: SshHost, tmp_path: Path) -> None:
    secs = unique_sleep()
    pgid_file = tmp_path / "pgid"
    script = f"echo $$ > {pgid_file}; sleep {secs} & sleep {secs} & echo started >&2; wait"
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        host.run(["sh", "-c", script], timeout=1)
    assert time.monotonic() - started < 6
    pgid = int(pgid_file.read_text())
    assert group_members(pgid) == []
    assert processes_with(secs) == []
    assert str(info.value) == (
        f'{host.name}: "sh -c {script!r}" timed out after 1 s and was killed\nstarted'
    )


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(sshd: SshServer) -> None:
    secs = unique_sleep()
    with make_host(sshd, grace=0.5) as quick:
        started = time.monotonic()
        with pytest.raises(CommandTimeout):
            quick.run(["sh", "-c", f"trap '' TERM; sleep {secs} & wait; wait"], timeout=0.5)
        assert time.monotonic() - started < 6
    assert processes_with(secs) == []


def _sigint_main() -> None:
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


@pytest.mark.parametrize(
    "interrupt", [_sigint_main, _thread.interrupt_main], ids=["signal", "injected-exception"]
)
def test_cancellation_kills_the_remote_group(host: SshHost, interrupt: Callable[[], None]) -> None:
    secs = unique_sleep()
    timer = threading.Timer(1.0, interrupt)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            host.run(["sh", "-c", f"sleep {secs} & sleep {secs}"], timeout=60)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 6
    assert processes_with(secs) == []
    assert host.run(["true"]).ok  # the shared connection survives


# -- one connection --------------------------------------------------------------------------


def test_one_connection_serves_many_runs_and_threads(sshd: SshServer) -> None:
    log = sshd.directory / "sshd.log"
    before = log.read_text().count("Accepted publickey")
    with make_host(sshd) as h:
        for i in range(20):
            assert h.run(["echo", str(i)]).stdout == f"{i}\n"
        results: list[str] = []

        def work(i: int) -> None:
            results.append(h.run(["sh", "-c", f"sleep 0.2; echo {i}"]).stdout)

        # more threads than the host's session limit (8): the rest wait their turn
        threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == sorted(f"{i}\n" for i in range(12))
        assert h.connects == 1
    assert log.read_text().count("Accepted publickey") == before + 1


def test_nobody_listening_is_a_connect_failure(sshd: SshServer) -> None:
    port = free_port()
    with make_host(sshd, port=port) as h, pytest.raises(SshConnectFailed) as info:
        h.run(["true"])
    assert str(info.value) == (
        f"{sshd.user}@127.0.0.1:{port}: ssh connection failed: [Errno 111] Connection refused"
    )


def test_a_client_key_the_server_refuses(sshd: SshServer, tmp_path: Path) -> None:
    keygen(tmp_path / "stranger")
    with (
        make_host(sshd, key=tmp_path / "stranger") as h,
        pytest.raises(SshConnectFailed) as info,
    ):
        h.run(["true"])
    assert str(info.value) == (
        f"{h.name}: ssh connection failed: the server refused the client key "
        f"({tmp_path / 'stranger'}) for user {sshd.user}"
    )


def test_close_and_reconnect(sshd: SshServer) -> None:
    h = make_host(sshd)
    known_hosts = h.known_hosts_file()
    h.run(["true"])
    h.close()
    assert not known_hosts.exists()
    assert h.run(["true"]).ok  # a closed host connects again on use
    assert h.connects == 2
    h.close()


# -- host keys -------------------------------------------------------------------------------


def test_fingerprint_matches_ssh_keygen(sshd: SshServer, tmp_path: Path) -> None:
    ours = fingerprint(parse_public_key(sshd.host_public_key))
    assert ours == ssh_keygen_fingerprint(sshd.host_public_key, tmp_path)
    assert parse_public_key(sshd.known_hosts_line).asbytes() == (
        parse_public_key(sshd.host_public_key).asbytes()
    )


def test_a_changed_host_key_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other")
    server_fp = ssh_keygen_fingerprint(sshd.host_public_key, tmp_path)
    other_fp = ssh_keygen_fingerprint(other, tmp_path)
    with make_host(sshd, host_keys=[other]) as h:
        with pytest.raises(HostKeyRejected) as info:
            h.run(["true"])
        assert str(info.value) == (
            f"{h.name}: host key {server_fp} refused: it does not match the pinned key {other_fp}"
        )
        assert info.value.fingerprint == server_fp
        # every path refuses: pipeline stages and the file system check the pin first
        with pytest.raises(HostKeyRejected):
            h.command(["true"])
        with pytest.raises(HostKeyRejected):
            h.filesystem()
        assert h.connects == 0


def test_an_unknown_host_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    # the right key, but for another port: OpenSSH would not use it either
    known_hosts.write_text(f"[127.0.0.1]:1 {sshd.host_public_key}\n")
    server_fp = ssh_keygen_fingerprint(sshd.host_public_key, tmp_path)
    h = SshHost.from_known_hosts(
        f"{sshd.user}@127.0.0.1:{sshd.port}", known_hosts, key=sshd.client_key
    )
    with h, pytest.raises(HostKeyRejected) as info:
        h.run(["true"])
    assert str(info.value) == (
        f"{h.name}: host key {server_fp} refused: unknown host: no key is pinned for "
        f"[127.0.0.1]:{sshd.port} in {known_hosts}"
    )


def test_a_pin_of_another_key_type_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    ecdsa = keygen(tmp_path / "ecdsa", "ecdsa")
    server_fp = ssh_keygen_fingerprint(sshd.host_public_key, tmp_path)
    with make_host(sshd, host_keys=[ecdsa]) as h, pytest.raises(HostKeyRejected) as info:
        h.run(["true"])
    assert str(info.value) == (
        f"{h.name}: host key {server_fp} refused: "
        "the server has no key of the pinned type ecdsa-sha2-nistp256"
    )


def test_from_known_hosts_pins_the_entry(sshd: SshServer) -> None:
    with SshHost.from_known_hosts(
        f"{sshd.user}@127.0.0.1:{sshd.port}", sshd.known_hosts, key=sshd.client_key
    ) as h:
        assert h.run(["echo", "ok"]).stdout == "ok\n"


def test_the_openssh_client_enforces_the_pin_by_itself(sshd: SshServer, tmp_path: Path) -> None:
    """Even without g2d's own check, the argv a pipeline runs refuses a changed key."""
    with make_host(sshd, host_keys=[keygen(tmp_path / "other")]) as wrong:
        argv = [*wrong.ssh_options(), "--", wrong.host, "true"]
        r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 255
    assert "Host key verification failed." in r.stderr


def test_known_hosts_file_holds_exactly_the_pin(host: SshHost, sshd: SshServer) -> None:
    assert host.known_hosts_file().read_text() == sshd.known_hosts_line + "\n"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("root@10.1.0.1:2222", ("root", "10.1.0.1", 2222)),
        ("10.1.0.1", (None, "10.1.0.1", None)),
        ("admin@dom0.example", ("admin", "dom0.example", None)),
        ("root@[::1]:2200", ("root", "::1", 2200)),
        ("::1", (None, "::1", None)),
    ],
)
def test_parse_destination(text: str, parsed: tuple[str | None, str, int | None]) -> None:
    assert parse_destination(text) == parsed


@pytest.mark.parametrize("bad", ["-oProxyCommand=x", "a b", ""])
def test_option_like_or_blank_hosts_are_refused(bad: str, sshd: SshServer) -> None:
    with pytest.raises(ValueError):
        SshHost(bad, host_keys=[sshd.host_public_key])


def test_a_host_without_any_pin_is_refused() -> None:
    with pytest.raises(ValueError, match="no host key pinned"):
        SshHost("127.0.0.1")


# -- pipelines and files ---------------------------------------------------------------------


def test_command_runs_through_the_openssh_client(host: SshHost) -> None:
    argv = host.command(["printf", "%s", NASTY])
    r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout) == (0, NASTY)


def test_pipeline_local_ssh_local_moves_bytes_intact(host: SshHost, tmp_path: Path) -> None:
    blob = os.urandom(16 * 1024 * 1024 + 3)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(blob)
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    r = run_pipeline(
        [
            Stage.of(local, ["cat", src]),
            Stage.of(host, ["sh", "-c", 'cat; printf %s "$X"; pwd'], env={"X": NASTY}, cwd=workdir),
            Stage.of(local, ["cat"]),
        ],
        stdout=dst,
    )
    expected = blob + NASTY.encode() + f"{workdir}\n".encode()
    assert hashlib.sha256(dst.read_bytes()).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert r.nbytes is not None and r.nbytes >= len(blob)


def test_pipeline_blames_the_failing_ssh_stage(host: SshHost) -> None:
    with pytest.raises(CommandFailed) as info:
        run_pipeline(
            [
                Stage.of(local, ["printf", "x"]),
                Stage.of(host, ["sh", "-c", "cat >/dev/null; echo remote says no >&2; exit 4"]),
            ]
        )
    assert (info.value.host, info.value.code, info.value.tail) == (
        host.name,
        4,
        "remote says no",
    )


def test_filesystem_reads_and_writes(host: SshHost, tmp_path: Path) -> None:
    fs = host.filesystem()
    blob = os.urandom(300_000)
    written = tmp_path / "via-sftp"
    fs.pipe_file(os.fspath(written), blob)
    assert written.read_bytes() == blob  # the remote is this machine: check it directly
    local_file = tmp_path / "local"
    local_file.write_bytes(NASTY.encode())
    with fs.open(os.fspath(local_file), "rb") as f:
        assert f.read() == NASTY.encode()
    assert fs.info(os.fspath(written))["size"] == len(blob)
    assert host.filesystem() is fs


def test_asyncssh_enforces_the_pin_by_itself(sshd: SshServer, tmp_path: Path) -> None:
    """Even without g2d's own check, sshfs refuses a changed key from the file g2d writes."""
    from asyncssh import HostKeyNotVerifiable
    from sshfs import SSHFileSystem

    wrong = make_host(sshd, host_keys=[keygen(tmp_path / "other")])
    with wrong, pytest.raises(HostKeyNotVerifiable, match="Host key is not trusted"):
        SSHFileSystem(
            "127.0.0.1",
            port=sshd.port,
            username=sshd.user,
            client_keys=[os.fspath(sshd.client_key)],
            known_hosts=os.fspath(wrong.known_hosts_file()),
            config=[],
            skip_instance_cache=True,
        )
