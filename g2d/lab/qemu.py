"""Boot a disk image in qemu (software emulation, UEFI) and watch its serial console.

OVMF is the firmware: its code read-only, its variables in a fresh copy per boot, so the
firmware finds no boot entries and starts the removable-media path (``EFI/BOOT/BOOTX64.EFI``)
as it would on a new machine. No network (``-nic none``), no display; the serial console
goes to a file that is read while the guest runs. The boot ends at the first of: the
marker line, a line that means failure (a kernel panic, g2d's initramfs giving up), qemu
exiting, or the timeout. qemu runs in its own process group and is always stopped.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.process import Daemon, find_program, spawn, tail

OVMF_DIR = Path("/usr/share/OVMF")  # Debian's ovmf
OVMF_CODE = "OVMF_CODE.fd"
OVMF_VARS = "OVMF_VARS.fd"
FAILURE_LINES = ("Kernel panic - not syncing", "g2d-initramfs: FAILED:")
POLL = 0.05  # seconds between reads of the console file


class BootFailed(G2dUserError):
    """The guest did not print the marker; carries how it ended and the console's tail."""


@dataclass(frozen=True, slots=True)
class BootRun:
    """How one boot ended: ``marker``, ``failure``, ``exited`` or ``timeout``."""

    ended: str
    seconds: float  # from starting qemu to the end
    console: str  # everything the guest wrote to its serial console
    line: str = ""  # the marker or failure line that ended it

    @property
    def ok(self) -> bool:
        return self.ended == "marker"

    def require(self) -> BootRun:
        if not self.ok:
            raise BootFailed(
                f"the guest did not print its marker ({self.ended} after {self.seconds:.1f} s)"
                f"{': ' + self.line if self.line else ''}\n{tail(self.console, 30)}"
            )
        return self


def machine_argv(qemu: str, console: Path, *, memory_mib: int) -> list[str]:
    return [
        qemu,
        "-machine", "q35,accel=tcg",
        "-m", str(memory_mib),
        "-smp", "1",
        "-nodefaults",
        "-display", "none",
        "-monitor", "none",
        "-serial", f"file:{console}",
        "-nic", "none",
        "-no-reboot",  # a guest that reboots or panics ends the run instead of looping
    ]  # fmt: skip


def disk_argv(image: Path) -> list[str]:
    return [
        "-drive", f"if=none,id=disk0,format=raw,file={image}",
        "-device", "virtio-blk-pci,drive=disk0,bootindex=1",
    ]  # fmt: skip


def uefi_argv(code: Path, vars_copy: Path) -> list[str]:
    return [
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
    ]  # fmt: skip


def _firmware(ovmf_dir: Path) -> tuple[Path, Path]:
    code, vars_ = ovmf_dir / OVMF_CODE, ovmf_dir / OVMF_VARS
    for path in (code, vars_):
        if not path.is_file():
            raise ComponentUnavailable(
                "qemu UEFI boot", f"{path} is missing", hint="apt-get install ovmf"
            )
    return code, vars_


def boot_image(
    image: Path,
    workdir: Path,
    *,
    marker: str,
    timeout: float = 120.0,
    memory_mib: int = 512,
    failures: Sequence[str] = FAILURE_LINES,
    ovmf_dir: Path = OVMF_DIR,
) -> BootRun:
    """Boot ``image`` through UEFI until a console line contains ``marker`` (or a failure
    line): the firmware, the boot loader and the entries on the image's ESP decide the rest."""
    code, vars_template = _firmware(ovmf_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    vars_copy = workdir / "OVMF_VARS.fd"
    shutil.copyfile(vars_template, vars_copy)
    extra = [*uefi_argv(code, vars_copy), *disk_argv(image)]
    return _run(workdir, extra, marker, timeout, memory_mib, failures)


def boot_kernel(
    kernel: Path,
    initramfs: Path,
    cmdline: str,
    workdir: Path,
    *,
    marker: str,
    image: Path | None = None,
    timeout: float = 120.0,
    memory_mib: int = 512,
    failures: Sequence[str] = FAILURE_LINES,
) -> BootRun:
    """Boot ``kernel`` + ``initramfs`` directly (qemu's own loader, no firmware, no ESP):
    the quick way to try an initramfs, with ``image`` (if any) as the virtio disk."""
    extra = ["-kernel", str(kernel), "-initrd", str(initramfs), "-append", cmdline]
    extra += disk_argv(image) if image else []
    return _run(workdir, extra, marker, timeout, memory_mib, failures)


def _run(
    workdir: Path,
    extra: list[str],
    marker: str,
    timeout: float,
    memory_mib: int,
    failures: Sequence[str],
) -> BootRun:
    qemu = find_program("qemu-system-x86_64", component="qemu", package="qemu-system-x86")
    workdir.mkdir(parents=True, exist_ok=True)
    console = workdir / "console.log"
    console.write_bytes(b"")
    argv = [*machine_argv(qemu, console, memory_mib=memory_mib), *extra]
    start = time.monotonic()
    daemon = spawn("qemu", argv, log=workdir / "qemu.log")
    try:
        ended, line = _watch(daemon, console, marker, failures, start + timeout)
        seconds = time.monotonic() - start
    finally:
        daemon.stop(grace=2.0)
    text = console.read_text(errors="replace")
    if ended == "exited" and daemon.log_tail():
        text += f"\n[qemu] {daemon.log_tail()}"
    return BootRun(ended, seconds, text, line)


def _watch(
    daemon: Daemon, console: Path, marker: str, failures: Sequence[str], deadline: float
) -> tuple[str, str]:
    pending = ""
    with open(console, "rb") as f:
        while True:
            exited = not daemon.alive()  # read once more after exit: the last words count
            lines = (pending + f.read().decode(errors="replace")).split("\n")
            pending = lines.pop()  # a line still being written, unless qemu is gone
            for line in (*lines, pending) if exited else lines:
                if marker in line:
                    return "marker", line.strip()
                if any(fail in line for fail in failures):
                    return "failure", line.strip()
            if exited:
                return "exited", ""
            if time.monotonic() > deadline:
                return "timeout", ""
            time.sleep(POLL)
