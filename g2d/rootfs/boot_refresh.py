"""Put an updated kernel (and its initramfs, when the dom0 published one) on a boot partition.

``bootpart`` is a mounted ESP (a directory) or the vfat partition itself (a block device or
an image file, written through mtools without mounting it, so no mount can be left behind).
The files go where ``g2d install`` puts them (``core.boot_entries``: ``/g2d/<v>/vmlinuz``,
``/g2d/<v>/initramfs``); a file already there with the same bytes is skipped. Boot entries
are the install side's (``g2d.install.boot.install_boot`` with the machine's ``BootSet``):
this step does not rewrite them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from g2d.core.boot_entries import initramfs_path, kernel_path
from g2d.core.plan import Plan
from g2d.hosts.local import LocalHost
from g2d.install.esp import HOST, copy_steps, open_esp
from g2d.storage.apply import apply_plan


@dataclass(frozen=True)
class BootRefresh:
    bootpart: str
    version: str
    copied: tuple[str, ...]  # ESP paths written or already equal


def refresh_boot(bootpart: str, kernel_dir: Path) -> BootRefresh:
    """Copy ``kernel_dir``'s vmlinuz (and initramfs) to the boot partition."""
    esp = open_esp(bootpart)
    version = kernel_dir.name
    files = [(kernel_dir / "vmlinuz", kernel_path(version), f"kernel {version}")]
    if (kernel_dir / "initramfs").is_file():
        files.append((kernel_dir / "initramfs", initramfs_path(version), f"initramfs {version}"))
    made: set[str] = set()
    steps = [s for src, rel, why in files for s in copy_steps(esp, src, rel, why, made)]
    apply_plan(Plan.of(f"kernel {version} onto {os.fspath(bootpart)}", steps), {HOST: LocalHost()})
    return BootRefresh(bootpart, version, tuple(rel for _, rel, _ in files))
