"""Lineage operations on real storage: branch time against generation size (O(1) on ZFS and
btrfs), replication against the raw ``zfs send | zfs recv`` of the same chain (locally and
to the lab sshd on 127.0.0.1), and an unchanged re-replication against its 2 s budget.

``python -m bench lineage`` from the repository root (root, zfs-fuse, loop devices).

Fairness of the replication pair, printed with the results (``# baseline ...`` lines): both
sides start from the same chain, send the same streams (``zfs send -p``, the clones from
their origins) and receive them with ``zfs receive -u`` (nothing mounted), creating the
target root first; for the remote pair both go over the same OpenSSH client with the same
options (``SshHost.ssh_options``) to the same sshd. g2d also reads both sides, checks what
arrived and holds the seals on the target: that is the fixed cost measured. The target's
ZFS capabilities are probed before the clock starts (once per host and tool version, kept
in the state dir), as a real dom0 has them from its first run.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Comparison, compare
from g2d.core.lineage import Origin
from g2d.hosts.base import Host
from g2d.hosts.local import LocalHost
from g2d.hosts.ssh import SshHost
from g2d.lab.loopdev import FsType, mount_loop
from g2d.lab.sshd import start_sshd
from g2d.lab.zfs_fuse import create_pool, ensure_zfs_fuse
from g2d.storage.base import Backend, BackendKind
from g2d.storage.lineage import branch_op, create_op, seal_op
from g2d.storage.lineage_run import LineageWriter, Phases
from g2d.storage.replicate import replicate
from g2d.storage.sense import backend_class, pool_of

MIB = 1 << 20
SMALL, LARGE = 10 * MIB, 2048 * MIB


class Lineage:
    def __init__(self, backend: Backend, root: str, state: Path) -> None:
        self.backend, self.root, self.state = backend, root, state

    def run(self, intent: str, phases: Phases) -> None:
        b = self.backend
        LineageWriter(b, self.root, pool_of(b, self.root), self.state).run(intent, phases)

    def base(self, size: int) -> None:
        """g1 holding ``size`` bytes (zeros: no compression is on), sealed."""
        self.run("create", create_op(self.backend, None, Origin(), datetime.now(UTC)))
        path = self.backend.mountpoint(f"{self.root}/g1")
        assert path is not None
        with open(Path(path, "data"), "wb") as f:
            for _ in range(size // MIB):
                f.write(bytes(MIB))
        self.seal("g1")

    def seal(self, gen: str) -> None:
        self.run("seal", seal_op(self.backend, f"{self.root}/{gen}", datetime.now(UTC)))

    def branch(self) -> None:
        now = datetime.now(UTC)
        self.run("branch", branch_op(self.backend, f"{self.root}/g1@safe", None, Origin(), now))


def _branch_pair(kind: BackendKind, small: Lineage, large: Lineage) -> Comparison:
    small.base(SMALL)
    large.base(LARGE)
    # g2d = the 2 GiB generation, baseline = the 10 MiB one: 1.0 means the same time
    return compare(f"branch 2 GiB vs 10 MiB generation ({kind})", large.branch, small.branch)


def _chain(lineage: Lineage, size: int) -> None:
    """g1 (size) -> g2 (+size/2) -> g3 (+size/2), each sealed."""
    lineage.base(size)
    for parent, gen in (("g1", "g2"), ("g2", "g3")):
        now = datetime.now(UTC)
        lineage.run("branch", branch_op(lineage.backend, f"{lineage.root}/{parent}@safe", None,
                                        Origin(), now))  # fmt: skip
        path = lineage.backend.mountpoint(f"{lineage.root}/{gen}")
        assert path is not None
        Path(path, gen).write_bytes(os.urandom(size // 2))
        lineage.seal(gen)


def _raw_script(source: Lineage, target_root: str, recv: list[str]) -> str:
    """The same chain by hand: the target root, full g1, then each clone from its origin."""
    src = source.backend
    lines = [shlex.join([*recv[:-1], "zfs", "create", "-p", target_root]) if recv[:-1] else
             shlex.join(["zfs", "create", "-p", target_root])]  # fmt: skip
    prev = None
    for gen in ("g1", "g2", "g3"):
        snap = src.snapshots(f"{source.root}/{gen}")[-1].ref
        base = ["-i", str(prev)] if prev else []
        receive = shlex.join([*recv[:-1], "zfs", "receive", "-u", f"{target_root}/{gen}"])
        lines.append(f"zfs send -p {shlex.join([*base, str(snap)])} | {receive}")
        prev = snap
    return "\n".join(lines)


def _replication(source: Lineage, target: Backend, pool: str, via: list[str], label: str,
                 state: Path, repeat: int = 4) -> list[Comparison]:  # fmt: skip
    """Alternating runs into fresh roots; each copy is destroyed before the next run, since
    two copies in one pool share guids and a clone's origin would be ambiguous. The best of
    four on each side: a zfs-fuse stream's time varies by +-10 % from run to run (its
    transaction group syncs), as much as g2d's fixed cost, which the ratio is meant to show."""
    local = backend_class(BackendKind.zfs)(LocalHost())
    g2d_s, raw_s = float("inf"), float("inf")
    target.caps  # noqa: B018 - probed (or read from the state dir) before the clock starts
    shown = _raw_script(source, f"{pool}/r0", [*via, "zfs"])
    if via:
        shown = shown.replace(shlex.join(via), "ssh …")
    print(f"# baseline ({label}), run as one `sh -c`:", flush=True)
    for line in shown.splitlines():
        print(f"#   {line}", flush=True)
    if via:
        print(f"#   where ssh … is {shlex.join(via)}", flush=True)
    for i in range(repeat):
        root = f"{pool}/g{i}"
        g2d_s = min(g2d_s, _timed(lambda root=root: replicate(
            source.backend, source.root, target, root, state_dir=state), 1))  # fmt: skip
        if i + 1 < repeat:
            local.apply(local.destroy_plan(root, force=True))
        raw = f"{pool}/r{i}"
        script = _raw_script(source, raw, [*via, "zfs"])
        raw_s = min(raw_s, _timed(lambda s=script: subprocess.run(["sh", "-c", s], check=True), 1))
        local.apply(local.destroy_plan(raw, force=True))
    versus = Comparison(f"replicate 3 generations vs raw zfs send|recv ({label})", g2d_s,
                        raw_s, target=0.9)  # fmt: skip
    last = f"{pool}/g{repeat - 1}"
    unchanged = _timed(lambda: replicate(source.backend, source.root, target, last,
                                         state_dir=state), 3)  # fmt: skip
    local.apply(local.destroy_plan(last, force=True))
    budget = Comparison(f"unchanged re-replication vs 2 s budget ({label})", unchanged, 2.0,
                        target=1.0)  # fmt: skip
    return [versus, budget]


def _timed(fn: Callable[[], object], repeat: int) -> float:
    import time

    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> list[Comparison]:
    logging.getLogger("g2d").setLevel(logging.WARNING)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    out: list[Comparison] = []
    local: Host = LocalHost()
    zfs, btrfs = backend_class(BackendKind.zfs), backend_class(BackendKind.btrfs)
    with tempfile.TemporaryDirectory(prefix="g2d-bench-lineage-") as tmp, ExitStack() as undo:
        t = Path(tmp)
        state = t / "state"
        ensure_zfs_fuse(t / "zfs-fuse")
        a = undo.enter_context(create_pool(t / "a", size_mib=3072, mountpoint=t / "ma"))
        b = undo.enter_context(create_pool(t / "b", size_mib=3072, mountpoint=t / "mb"))
        for p in (f"{a.name}/small", f"{a.name}/large", f"{a.name}/chain"):
            local.run(["zfs", "create", p])
        out.append(_branch_pair(BackendKind.zfs, Lineage(zfs(local), f"{a.name}/small", state),
                                Lineage(zfs(local), f"{a.name}/large", state)))  # fmt: skip
        chain = Lineage(zfs(local), f"{a.name}/chain", state)
        _chain(chain, 128 * MIB)
        out += _replication(chain, zfs(local), b.name, [], "local", state)
        sshd = undo.enter_context(start_sshd(t / "sshd"))
        pin = [sshd.host_public_key]
        ssh = SshHost(sshd.host, port=sshd.port, user=sshd.user, key=sshd.client_key,
                      host_keys=pin)  # fmt: skip
        host = undo.enter_context(ssh)
        # the baseline's ssh: the very client and options g2d's pipeline stages use
        via = [*host.ssh_options(), "--", host.host]
        out += _replication(chain, zfs(host), b.name, via, "ssh 127.0.0.1", state)
        mnt = undo.enter_context(mount_loop(t / "btrfs", FsType.btrfs, size_mib=3072))
        for d in ("small", "large"):
            Path(mnt.mountpoint, d).mkdir()
        top = mnt.mountpoint
        out.append(_branch_pair(BackendKind.btrfs, Lineage(btrfs(local), f"{top}/small", state),
                                Lineage(btrfs(local), f"{top}/large", state)))  # fmt: skip
    return out


if __name__ == "__main__":
    for c in main():
        print(c.row())
