"""Bulk bytes over ssh to the lab sshd on 127.0.0.1: g2d's pipeline against a shell pipe,
and paramiko's channel against the OpenSSH client (which one should carry bulk streams).

``python -m bench.bench_ssh [MiB]`` from the repository root; 1024 MiB by default.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Comparison, compare
from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.hosts.ssh import SshHost
from g2d.lab.sshd import start_sshd

MIB = 1 << 20
DEVNULL_SINK = ["sh", "-c", "cat > /dev/null"]  # the remote end of every upload


def _with_cipher(options: list[str], cipher: str) -> list[str]:
    # ssh takes the first value of an option, so replace ours rather than append another
    return [f"Ciphers={cipher}" if o.startswith("Ciphers=") else o for o in options]


def _shell(script: str) -> None:
    subprocess.run(["sh", "-c", script], check=True, stdin=subprocess.DEVNULL)


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main(size: int = 1024 * MIB, repeat: int = 3) -> dict[str, object]:
    """Measure, print a table, and return every number (seconds and MB/s per transfer)."""
    logging.getLogger("g2d").setLevel(logging.WARNING)  # measure the work, not the console
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    local = LocalHost()
    with tempfile.TemporaryDirectory(prefix="g2d-bench-ssh-") as tmp:
        server = start_sshd(Path(tmp) / "sshd")
        with (
            server,
            SshHost(
                server.host,
                port=server.port,
                user=server.user,
                key=server.client_key,
                host_keys=[server.host_public_key],
            ) as host,
        ):
            host.connect()  # connection setup is not what is measured
            options = host.ssh_options()
            head = shlex.join(["head", "-c", str(size), "/dev/zero"])

            def openssh(opts: list[str], remote: str) -> str:
                return shlex.join([*opts, "--", host.host, remote])

            def g2d_pipeline() -> None:
                run_pipeline(
                    [
                        Stage.of(local, ["head", "-c", str(size), "/dev/zero"]),
                        Stage.of(host, DEVNULL_SINK),
                    ]
                )

            def shell_pipeline() -> None:
                _shell(f"{head} | {openssh(options, 'cat > /dev/null')}")

            def paramiko_upload() -> None:
                feeder = subprocess.Popen(
                    ["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE
                )
                assert feeder.stdout is not None
                try:
                    host.run(DEVNULL_SINK, stdin=feeder.stdout.fileno())
                finally:
                    feeder.stdout.close()
                    feeder.wait()

            def paramiko_download() -> None:
                sink = os.open(os.devnull, os.O_WRONLY)
                try:
                    host.run(["head", "-c", str(size), "/dev/zero"], stdout=sink)
                finally:
                    os.close(sink)

            def openssh_download(opts: list[str]) -> Callable[[], None]:
                return lambda: _shell(f"{openssh(opts, head)} > /dev/null")

            def openssh_upload(opts: list[str]) -> Callable[[], None]:
                return lambda: _shell(f"{head} | {openssh(opts, 'cat > /dev/null')}")

            ratio = compare(
                f"{size // MIB} MiB run_pipeline local->ssh vs sh pipe",
                g2d_pipeline,
                shell_pipeline,
                repeat=repeat,
                target=0.9,
            )
            seconds = {
                "g2d pipeline (OpenSSH client), upload": ratio.g2d_s,
                "sh | ssh, upload": ratio.baseline_s,
                "paramiko channel, upload": _best(paramiko_upload, repeat),
                "paramiko channel, download": _best(paramiko_download, repeat),
                "OpenSSH client, download": _best(openssh_download(options), repeat),
            }
            for cipher in (
                "aes128-gcm@openssh.com",
                "chacha20-poly1305@openssh.com",
                "aes128-ctr",
            ):
                opts = _with_cipher(options, cipher)
                seconds[f"OpenSSH {cipher}, upload"] = _best(openssh_upload(opts), repeat)
            paramiko_vs_openssh = Comparison(
                "paramiko channel vs OpenSSH client, upload",
                seconds["paramiko channel, upload"],
                seconds["sh | ssh, upload"],
            )
    rates = {name: size / s / 1e6 for name, s in seconds.items()}
    results: dict[str, object] = {
        "bytes": size,
        "seconds": seconds,
        "mb_per_s": rates,
        "pipeline_ratio": ratio.ratio,
        "pipeline_meets_target": ratio.meets_target,
        "paramiko_vs_openssh": paramiko_vs_openssh.ratio,
        "comparisons": [ratio, paramiko_vs_openssh],
    }
    print(f"{size // MIB} MiB to 127.0.0.1 over ssh, best of {repeat}")
    print(f"{'transfer':<52} {'s':>8} {'MB/s':>8}")
    for name, s in seconds.items():
        print(f"{name:<52} {s:>8.2f} {rates[name]:>8.0f}")
    print(f"{'':<52} {'g2d s':>8} {'base s':>8} {'ratio':>7}")
    for c in (ratio, paramiko_vs_openssh):
        verdict = {None: "", True: "ok (>= 0.9)", False: "BELOW TARGET 0.9"}[c.meets_target]
        print(f"{c.name:<52} {c.g2d_s:>8.2f} {c.baseline_s:>8.2f} {c.ratio:>7.2f} {verdict}")
    return results


if __name__ == "__main__":
    main(int(sys.argv[1]) * MIB if len(sys.argv) > 1 else 1024 * MIB)
