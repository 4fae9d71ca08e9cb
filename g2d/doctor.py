"""``g2d doctor``: what this host can do, found by running the real tools.

Each check yields one typed ``Finding`` (ok, missing or broken, with the version the tool
reports and how to get it). Checks run concurrently, each command under a short timeout, so
a hung tool (a wedged zfs-fuse daemon, say) shows as broken instead of hanging the doctor.
"""

from __future__ import annotations

import dataclasses
import enum
import glob
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import stat
import struct
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from g2d.core.errors import CommandTimeout, G2dUserError
from g2d.hosts.local import LocalHost
from g2d.hosts.runner import Completed

TIMEOUT = 5.0  # seconds per command; every tool here answers --version in well under one
IMPORT_TIMEOUT = 20.0  # importing prefect takes seconds on a cold cache
SETUP = "make setup"
PY_FIX = f"{SETUP} (installs g2d's Python dependencies into .venv)"
VERSION_RE = re.compile(r"(\d+(?:\.\d+)+[\w.+~-]*)")
OVMF_GLOBS = (
    "/usr/share/OVMF/OVMF_CODE*.fd",
    "/usr/share/ovmf/OVMF*.fd",
    "/usr/share/qemu/OVMF*.fd",
)


class Status(enum.StrEnum):
    ok = enum.auto()
    missing = enum.auto()
    broken = enum.auto()

    def is_ok(self) -> bool:
        return self is Status.ok


@dataclass(frozen=True, slots=True)
class Finding:
    """One component of this host: its status, the version it reports, and how to fix it."""

    name: str
    status: Status
    version: str = ""
    detail: str = ""
    fix: str = ""
    required: bool = True

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": str(self.status)}


@dataclass(frozen=True, slots=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """Every required component works."""
        return all(f.status.is_ok() for f in self.findings if f.required)

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.status.is_ok())

    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        counts = {s: [f.name for f in self.findings if f.status is s] for s in Status}
        parts = [f"{len(counts[Status.ok])} ok"]
        parts += [
            f"{len(names)} {s} ({', '.join(names)})"
            for s, names in counts.items()
            if names and s is not Status.ok
        ]
        return f"{len(self.findings)} checks: " + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [f.to_json() for f in self.findings]}


def format_table(report: Report) -> str:
    """Aligned columns; a row that is not ok is followed by its fix."""
    head = ("COMPONENT", "STATUS", "VERSION", "DETAIL")
    rows = [(f.name, str(f.status), f.version or "-", f.detail) for f in report.findings]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    indent = " " * (sum(widths) + 2 * len(widths))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + "  " + cells[3]

    out = [line(head).rstrip()]
    for finding, row in zip(report.findings, rows, strict=True):
        out.append(line(row).rstrip())
        if finding.fix and not finding.status.is_ok():
            out.append(f"{indent}fix: {finding.fix}")
    out.append(report.summary())
    return "\n".join(out) + "\n"


def format_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"


def version_in(text: str) -> str:
    """The first dotted version number in ``text`` (``gpg (GnuPG) 2.2.40`` -> ``2.2.40``)."""
    found = VERSION_RE.search(text)
    return found[1] if found else ""


def first_line(result: Completed) -> str:
    """The first non-empty output line; tools print versions to stdout or stderr."""
    for text in (result.stdout, result.stderr):
        for line in text.splitlines():
            if line.strip():
                return line.strip()
    return ""


def apt_fix(package: str) -> str:
    return f"apt-get install {package}, or {SETUP}"


class Probe:
    """Runs this host's real tools, each command under a short timeout."""

    def __init__(self, timeout: float = TIMEOUT, path: str | None = None) -> None:
        self.host = LocalHost()
        self.timeout = timeout
        # the venv's bin (emerge, gemato) and sbin (zfs, mkfs.*) count even when not on PATH
        dirs = [
            *(path or os.environ.get("PATH", "")).split(os.pathsep),
            os.path.dirname(sys.executable),
            "/usr/local/sbin",
            "/usr/sbin",
            "/sbin",
        ]
        self.path = os.pathsep.join(dict.fromkeys(d for d in dirs if d))

    def which(self, program: str) -> str | None:
        return shutil.which(program, path=self.path)

    def run(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        return self.host.run(argv, stdin=stdin, timeout=timeout or self.timeout, check=False)

    def package_version(self, package: str) -> str:
        """The installed Debian package's version, or "" where there is no dpkg."""
        dpkg = self.which("dpkg-query")
        if dpkg is None:
            return ""
        r = self.run([dpkg, "-W", "-f=${Version}", package])
        return r.stdout.strip() if r.ok else ""

    def tool(self, name: str, program: str, args: Sequence[str], package: str) -> Finding:
        """Is ``program`` there, and which version does ``program args`` report?

        An ok finding's detail is the program's path, for checks that go on to use it.
        """
        exe = self.which(program)
        if exe is None:
            return Finding(
                name, Status.missing, detail=f"{program} not found", fix=apt_fix(package)
            )
        r = self.run([exe, *args])
        line = first_line(r)
        version = version_in(line)
        # some tools exit non-zero after printing their version; the version is the fact
        if not version:
            why = f"exit {r.returncode}" + (f": {line}" if line else "")
            return Finding(
                name,
                Status.broken,
                detail=f"{shlex.join([exe, *args])}: {why}",
                fix=f"reinstall {package}: apt-get install --reinstall {package}",
            )
        return Finding(name, Status.ok, version=version, detail=exe)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    run: Callable[[Probe], Finding]


def run_check(check: Check, probe: Probe) -> Finding:
    """One check; a tool that times out or cannot be run is broken, not a crash."""
    try:
        return check.run(probe)
    except CommandTimeout as e:
        what = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(e.argv))
        return Finding(
            check.name,
            Status.broken,
            detail=f"{what} hung for {e.timeout:g} s",
            fix="find out what the tool waits for (a daemon, a lock, a device)",
        )
    except G2dUserError as e:
        return Finding(check.name, Status.broken, detail=str(e).splitlines()[0], fix=e.hint or "")


def run_checks(checks: Iterable[Check] | None = None, probe: Probe | None = None) -> Report:
    """Run the checks concurrently; the report keeps their order."""
    checks = tuple(CHECKS if checks is None else checks)
    probe = probe or Probe()
    if not checks:
        return Report(())
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        found = pool.map(lambda c: run_check(c, probe), checks)
        return Report(tuple(found))


def tool_check(name: str, program: str, args: Sequence[str], package: str) -> Check:
    """A check that a program is present and reports a version."""
    return Check(name, lambda p: p.tool(name, program, args, package))


# --- checks with more to them than a version -------------------------------------------


def kernel_mounts(fs: str) -> str | None:
    """How this kernel can mount ``fs``: built in or loaded, or as a module; None if not."""
    try:
        with open("/proc/filesystems") as f:
            if fs in (line.split()[-1] for line in f if line.strip()):
                return f"the kernel mounts {fs}"
    except OSError:
        pass
    try:
        with open(f"/lib/modules/{platform.release()}/modules.dep") as f:
            if any(f"/{fs}.ko" in line.split(":", 1)[0] for line in f):
                return f"{fs} is a kernel module (loaded on first mount)"
    except OSError:
        pass
    return None


def with_kernel_fs(finding: Finding, fs: str) -> Finding:
    if not finding.status.is_ok():
        return finding
    how = kernel_mounts(fs)
    if how is None:
        return dataclasses.replace(
            finding,
            status=Status.broken,
            detail=f"kernel {platform.release()} cannot mount {fs}",
            fix=f"modprobe {fs}, or boot a kernel with {fs}",
        )
    return dataclasses.replace(finding, detail=f"{finding.detail}; {how}")


def is_char_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def pids_named(comm: str) -> list[int]:
    """Pids whose command name (``/proc/<pid>/comm``) is ``comm``."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as f:
                    if f.read().strip() == comm[:15]:
                        pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def check_zfs(p: Probe) -> Finding:
    zfs, zpool, daemon = p.which("zfs"), p.which("zpool"), p.which("zfs-fuse")
    if zfs is None and daemon is None:
        return Finding(
            "zfs",
            Status.missing,
            detail="neither OpenZFS nor zfs-fuse found",
            fix=apt_fix("zfs-fuse") + " (or zfsutils-linux with OpenZFS's module)",
        )
    said = ""
    if zfs is not None:
        r = p.run([zfs, "version"])
        if r.ok and r.stdout.startswith("zfs-"):  # OpenZFS >= 0.8; zfs-fuse has no `version`
            kmod = r.lines()[1] if len(r.lines()) > 1 else "no kernel module line"
            openzfs = Finding("zfs", Status.ok, version_in(r.lines()[0]), f"OpenZFS, {kmod}")
            return zpool_answers(p, zpool, openzfs)
        said = first_line(r) or f"exit {r.returncode}"
    if daemon is None:  # OpenZFS commands without a working kernel module
        return Finding(
            "zfs",
            Status.broken,
            detail=f"zfs version: {said}",
            fix="modprobe zfs (OpenZFS), or " + apt_fix("zfs-fuse"),
        )
    if zfs is None or zpool is None:
        return Finding(
            "zfs",
            Status.broken,
            detail="zfs-fuse without its zfs and zpool commands",
            fix="apt-get install --reinstall zfs-fuse",
        )
    found = Finding("zfs", Status.ok, version=p.package_version("zfs-fuse"), detail="zfs-fuse")
    if not is_char_device("/dev/fuse"):
        return dataclasses.replace(
            found,
            status=Status.broken,
            detail="zfs-fuse, but /dev/fuse is missing",
            fix="modprobe fuse",
        )
    pids = pids_named("zfs-fuse")
    if not pids:
        # nothing to ask; the lab starts a daemon of its own for its pools
        return dataclasses.replace(
            found,
            detail="zfs-fuse, /dev/fuse; daemon not running "
            "(the lab starts its own; `zfs-fuse` starts one)",
        )
    return zpool_answers(
        p, zpool, dataclasses.replace(found, detail=f"zfs-fuse, /dev/fuse, daemon pid {pids[0]}")
    )


def zpool_answers(p: Probe, zpool: str | None, found: Finding) -> Finding:
    if zpool is None:
        return dataclasses.replace(
            found, status=Status.broken, detail="zpool not found", fix="reinstall the zfs tools"
        )
    r = p.run([zpool, "list", "-H", "-o", "name"])
    if not r.ok:
        return dataclasses.replace(
            found,
            status=Status.broken,
            detail=f"{found.detail}; zpool list: {first_line(r) or f'exit {r.returncode}'}",
            fix="restart the zfs daemon (zfs-fuse) or load the zfs module",
        )
    # zfs-fuse prints "no pools available" on stdout
    pools = ", ".join(n for n in r.lines() if n and n != "no pools available") or "none"
    return dataclasses.replace(found, detail=f"{found.detail}; zpool list answers, pools: {pools}")


def check_btrfs(p: Probe) -> Finding:
    return with_kernel_fs(p.tool("btrfs", "btrfs", ["--version"], "btrfs-progs"), "btrfs")


def check_xfs(p: Probe) -> Finding:
    found = p.tool("xfs", "mkfs.xfs", ["-V"], "xfsprogs")
    if not found.status.is_ok():
        return found
    with tempfile.TemporaryDirectory(prefix="g2d-doctor-") as tmp:
        image = Path(tmp, "xfs.img")
        with open(image, "wb") as f:
            f.truncate(512 << 20)  # sparse; -N below only prints what it would make
        r = p.run([found.detail, "-N", "-m", "reflink=1", os.fspath(image)])
    if not r.ok or "reflink=1" not in r.stdout:
        return dataclasses.replace(
            found,
            status=Status.broken,
            detail=f"mkfs.xfs cannot make reflink file systems: {first_line(r)}",
            fix="install xfsprogs >= 5.1",
        )
    return with_kernel_fs(dataclasses.replace(found, detail=f"{found.detail} (reflink)"), "xfs")


def check_ext4(p: Probe) -> Finding:
    return with_kernel_fs(p.tool("ext4", "mkfs.ext4", ["-V"], "e2fsprogs"), "ext4")


def check_loop(p: Probe) -> Finding:
    found = p.tool("loop", "losetup", ["--version"], "util-linux")
    if not found.status.is_ok():
        return found
    if not is_char_device("/dev/loop-control"):
        return dataclasses.replace(
            found, status=Status.broken, detail="no /dev/loop-control", fix="modprobe loop"
        )
    r = p.run([found.detail, "--find"])  # names the next free device; attaches nothing
    if not r.ok:
        return dataclasses.replace(
            found,
            status=Status.broken,
            detail=f"losetup --find: {first_line(r) or f'exit {r.returncode}'}",
            fix="run as root, with loop devices available",
        )
    return dataclasses.replace(found, detail=f"{found.detail}; next free {r.stdout.strip()}")


def import_failed(name: str, r: Completed) -> Finding:
    """A Python package that g2d's interpreter cannot import: not installed, or broken."""
    lines = r.stderr.strip().splitlines()
    last = lines[-1] if lines else f"exit {r.returncode}"
    status = Status.missing if last.startswith("ModuleNotFoundError") else Status.broken
    return Finding(name, status, detail=f"import {name}: {last}", fix=PY_FIX)


def check_portage(p: Probe) -> Finding:
    r = p.run([sys.executable, "-c", "import portage; print(portage.VERSION)"])
    if not r.ok:
        return import_failed("portage", r)
    version = r.stdout.strip()
    emerge = p.which("emerge")
    if emerge is None:
        return Finding("portage", Status.broken, version, "emerge not found", fix=PY_FIX)
    e = p.run([emerge, "--version"])
    said = version_in(first_line(e))
    if not e.ok or said != version:
        return Finding(
            "portage",
            Status.broken,
            version,
            f"emerge --version: {first_line(e) or f'exit {e.returncode}'}",
            fix=PY_FIX,
        )
    return Finding("portage", Status.ok, version, f"import portage; {emerge} --version runs")


def check_gemato(p: Probe) -> Finding:
    try:
        version = metadata.version("gemato")
    except metadata.PackageNotFoundError:
        return Finding("gemato", Status.missing, detail="python package not installed", fix=PY_FIX)
    exe = p.which("gemato")
    if exe is None:
        return Finding("gemato", Status.broken, version, "gemato program not found", fix=PY_FIX)
    data = b"g2d doctor\n"
    r = p.run([exe, "hash", "-H", "SHA512"], stdin=data)
    if hashlib.sha512(data).hexdigest() not in r.stdout.split():
        return Finding(
            "gemato",
            Status.broken,
            version,
            f"gemato hash: {first_line(r) or f'exit {r.returncode}'}",
            fix=PY_FIX,
        )
    return Finding("gemato", Status.ok, version, f"{exe} hash agrees with hashlib")


def check_prefect(p: Probe) -> Finding:
    r = p.run(
        [sys.executable, "-c", "import prefect; print(prefect.__version__)"], timeout=IMPORT_TIMEOUT
    )
    if not r.ok:
        return import_failed("prefect", r)
    return Finding("prefect", Status.ok, r.stdout.strip(), f"import prefect in {sys.executable}")


def check_qemu(p: Probe) -> Finding:
    found = p.tool("qemu", "qemu-system-x86_64", ["--version"], "qemu-system-x86")
    if not found.status.is_ok():
        return found
    kvm = is_char_device("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)
    accel = "kvm available" if kvm else "software emulation (no usable /dev/kvm)"
    return dataclasses.replace(found, detail=f"{found.detail}; {accel}")


def check_ovmf(p: Probe) -> Finding:
    files = sorted(f for pattern in OVMF_GLOBS for f in glob.glob(pattern))
    if not files:
        return Finding(
            "ovmf", Status.missing, detail="no OVMF firmware under /usr/share", fix=apt_fix("ovmf")
        )
    return Finding("ovmf", Status.ok, p.package_version("ovmf"), files[0])


def is_static_elf(path: str) -> bool:
    """No PT_INTERP program header: the binary needs no dynamic loader (64-bit ELF only)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:5] != b"\x7fELF\x02":
            return False
        end = "<" if head[5] == 1 else ">"
        (phoff,) = struct.unpack_from(end + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(
        struct.unpack_from(end + "I", table, i * phentsize)[0] != pt_interp for i in range(phnum)
    )


def check_busybox(p: Probe) -> Finding:
    found = p.tool("busybox", "busybox", ["--help"], "busybox-static")
    if not found.status.is_ok():
        return found
    if not is_static_elf(os.path.realpath(found.detail)):
        # it goes into initramfs images, where there is no dynamic loader
        return dataclasses.replace(
            found,
            status=Status.broken,
            detail=f"{found.detail} is dynamically linked",
            fix=apt_fix("busybox-static"),
        )
    return dataclasses.replace(found, detail=f"{found.detail} (static)")


CHECKS: tuple[Check, ...] = (
    Check("zfs", check_zfs),
    Check("btrfs", check_btrfs),
    Check("xfs", check_xfs),
    Check("ext4", check_ext4),
    Check("loop", check_loop),
    tool_check("ssh", "ssh", ["-V"], "openssh-client"),
    tool_check("sshd", "sshd", ["-V"], "openssh-server"),
    tool_check("rsync", "rsync", ["--version"], "rsync"),
    tool_check("gpg", "gpg", ["--version"], "gnupg"),
    Check("portage", check_portage),
    Check("gemato", check_gemato),
    Check("prefect", check_prefect),
    Check("qemu", check_qemu),
    Check("ovmf", check_ovmf),
    tool_check("debootstrap", "debootstrap", ["--version"], "debootstrap"),
    tool_check("mkfs.vfat", "mkfs.vfat", ["--help"], "dosfstools"),
    tool_check("sgdisk", "sgdisk", ["--version"], "gdisk"),
    Check("busybox", check_busybox),
)
