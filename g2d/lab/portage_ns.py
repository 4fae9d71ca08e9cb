"""Run one Portage command with EPREFIX="" (clean binpkg paths) without touching this host.

Portage from PyPI on Debian reads `/etc/portage`, and with ROOT elsewhere it still keeps a
configuration, a package database and caches for the running root `/` (`/var/db/pkg`,
`/var/cache/edb`, `/var/lib/portage`; see research/real-emerge-recipe.md). This entry
module runs inside `unshare --mount --propagation private` (a mount namespace that dies
with the command) and, before it execs the command:

1. bind-mounts every `--keep` directory onto itself, so each is its own writable mount;
2. remounts `/` read-only, so a stray write anywhere else fails instead of changing the
   host;
3. lays an overlay over `/etc` and one over `/var`; the upper directory of `/etc` is
   `<overlays>/etc/upper` (its `portage/` is the `/etc/portage` Portage reads), that of
   `/var` a tmpfs, thrown away with the namespace;
4. binds the `--keep` directories under `/etc` or `/var` back over the overlays (through
   file descriptors opened before, since their paths are covered by then), so a lab kept
   in `/var/lib/g2d` is the real one inside.

Nothing of this is visible outside the namespace. `namespace_argv` builds the argv; the
caller runs it through the g2d runner.

    python -m g2d.lab.portage_ns --overlays DIR [--keep DIR]... [--env K=V]... -- argv...
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from g2d.hosts.local import LocalHost

OVERLAID = (Path("/etc"), Path("/var"))

# The command's whole environment: nothing of the caller's (ROOT, USE, FEATURES, a venv's
# PYTHONPATH ...) may reach Portage unasked.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {
    "PATH": f"{Path(sys.prefix) / 'bin'}:{SYSTEM_PATH}",
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",
    "PORTAGE_OVERRIDE_EPREFIX": "/",  # "/" means EPREFIX=""
}


def overlay_upper(overlays: Path, top: str) -> Path:
    """Where files of `top` ("etc" or "var") written inside the namespace end up."""
    return overlays / top / "upper"


def namespace_argv(
    argv: Sequence[str | os.PathLike[str]],
    *,
    overlays: Path,
    keep: Sequence[Path],
    env: Mapping[str, str],
) -> list[str]:
    """The argv that runs `argv` in a private mount namespace set up as described above."""
    return [
        # slave, not private: an unmount on the host (a test's loop device) reaches inside
        "unshare", "--mount", "--propagation", "slave", "--",
        sys.executable, "-m", "g2d.lab.portage_ns",
        "--overlays", os.fspath(overlays),
        *(a for d in keep for a in ("--keep", os.fspath(d))),
        *(a for k, v in env.items() for a in ("--env", f"{k}={v}")),
        "--", *(os.fspath(a) for a in argv),
    ]  # fmt: skip


def _mount(argv: list[str]) -> None:
    LocalHost().run(["mount", *argv], timeout=30)


def _covered(path: Path) -> bool:
    return any(path == top or top in path.parents for top in OVERLAID)


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m g2d.lab.portage_ns")
    parser.add_argument("--overlays", type=Path, required=True)
    parser.add_argument("--keep", type=Path, action="append", default=[])
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("argv", nargs="+")
    opts = parser.parse_args(args)
    if os.readlink("/proc/self/ns/mnt") == os.readlink(f"/proc/{os.getppid()}/ns/mnt"):
        sys.exit("portage_ns: refusing to mount in the caller's mount namespace; use unshare")
    keep: list[Path] = []
    for directory in [opts.overlays, *opts.keep]:
        directory.mkdir(parents=True, exist_ok=True)
        keep.append(directory.resolve())
    keep.sort(key=lambda p: len(p.parts))  # a parent before what it holds
    handles = {d: os.open(d, os.O_PATH | os.O_DIRECTORY) for d in keep}
    for directory in keep:
        _mount(["--bind", os.fspath(directory), os.fspath(directory)])
    _mount(["-o", "remount,bind,ro", "/"])
    overlays = opts.overlays.resolve()
    # What Portage keeps for the running root in /var is thrown away: a tmpfs holds that
    # upper layer (also because an upper directory inside /var itself would overlap its lower)
    (overlays / "var").mkdir(exist_ok=True)
    _mount(["-t", "tmpfs", "-o", "mode=0755", "g2d-lab-var", os.fspath(overlays / "var")])
    for top in OVERLAID:
        upper, work = overlay_upper(overlays, top.name), overlays / top.name / "work"
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        _mount([
            "-t", "overlay", f"g2d-lab-{top.name}",
            "-o", f"lowerdir={top},upperdir={upper},workdir={work}",
            os.fspath(top),
        ])  # fmt: skip
    for directory in keep:
        if _covered(directory):
            _mount(["--bind", f"/proc/{os.getpid()}/fd/{handles[directory]}", os.fspath(directory)])
    env = dict(BASE_ENV)
    env.update(item.split("=", 1) for item in opts.env)
    os.execvpe(opts.argv[0], opts.argv, env)


if __name__ == "__main__":
    main()
