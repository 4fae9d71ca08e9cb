"""Make an installed generation bootable: kernel, initramfs, systemd-boot and its entries.

The disk side hands over a mounted ESP, the mounted root and a ``BootSet``; this module
turns them into a ``Plan`` of plain commands (``install -D``, ``tar``), each skipped when
its effect is already there (``cmp -s``), so a second run changes nothing and a run with
one more generation adds its entry and keeps the others. Order matters on a vfat ESP
without transactions: boot loader binaries, then kernels and initramfs images, then the
entries, and ``loader.conf`` (which names the default entry) last, so that at no point does
the default name an entry whose files are not there yet.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from g2d.core.boot_entries import (
    DEFAULT_CMDLINE,
    DEFAULT_LOADER,
    LOADER_CONF,
    BootSet,
    KernelCommandLine,
    LoaderSettings,
    initramfs_cannot_boot,
    initramfs_path,
    kernel_path,
    systemd_boot_files,
)
from g2d.core.errors import G2dUserError
from g2d.core.plan import Plan, Step
from g2d.core.refind_conf import REFIND_CONF, refind_conf
from g2d.hosts.local import LocalHost
from g2d.install.esp import HOST, Esp, copy_steps, exists, read_text
from g2d.storage.apply import apply_plan

SYSTEMD_BOOT_EFI = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")  # systemd-boot-efi
REMOVABLE_PATH = "EFI/BOOT/BOOTX64.EFI"  # what firmware boots with no boot entry in NVRAM
SYSTEMD_BOOT_PATH = "EFI/systemd/systemd-bootx64.efi"


class BootSetupFailed(G2dUserError):
    """The ESP cannot be made bootable; names the missing file or the mismatch."""


@dataclass(frozen=True, slots=True)
class KernelFiles:
    """A kernel image and the initramfs that goes with it."""

    vmlinuz: Path
    initramfs: Path

    @classmethod
    def in_dir(cls, kernel_dir: Path) -> KernelFiles:
        """From a kernels repository directory (``kernels/current/<version>/``)."""
        return cls(kernel_dir / "vmlinuz", kernel_dir / "initramfs")


def boot_plan(
    esp: Esp,
    boot: BootSet,
    kernels: Mapping[str, KernelFiles],
    staged: Mapping[str, Path],
    *,
    loader_efi: Path = SYSTEMD_BOOT_EFI,
) -> Plan:
    """The steps that put ``boot`` onto the ESP (a mounted directory, or an ``EspImage``).

    ``staged``: ESP-relative path -> a local file holding the rendered text
    (``stage_texts``); ``kernels``: kernel version -> its files.
    """
    missing = [v for v in boot.kernels if v not in kernels]
    if missing:
        raise BootSetupFailed(f"no kernel files given for {', '.join(missing)}")
    made: set[str] = set()
    copies = [
        (loader_efi, REMOVABLE_PATH, "systemd-boot at the removable-media path"),
        (loader_efi, SYSTEMD_BOOT_PATH, "systemd-boot at its own path"),
    ]
    for version in boot.kernels:
        copies.append((kernels[version].vmlinuz, kernel_path(version), f"kernel {version}"))
        copies.append(
            (kernels[version].initramfs, initramfs_path(version), f"initramfs for {version}")
        )
    for rel in sorted(r for r in staged if r != LOADER_CONF):
        copies.append((staged[rel], rel, f"boot entry {rel}"))
    copies.append((staged[LOADER_CONF], LOADER_CONF, f"default entry: {boot.default.name}"))
    steps = [step for src, rel, why in copies for step in copy_steps(esp, src, rel, why, made)]
    return Plan.of(f"make {boot.current} bootable from {esp}", steps)


def stage_texts(texts: Mapping[str, str], staging: Path) -> dict[str, Path]:
    """Write each rendered file under ``staging``; ESP-relative path -> staged file."""
    staged = {}
    for rel, text in texts.items():
        path = staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        staged[rel] = path
    return staged


def check_sources(kernels: Mapping[str, KernelFiles], loader_efi: Path) -> None:
    for need in (loader_efi, *(p for k in kernels.values() for p in (k.vmlinuz, k.initramfs))):
        if not need.is_file():
            hint = (
                "apt-get install systemd-boot-efi"
                if need == loader_efi
                else "build it with g2d.install.initramfs.publish_initramfs"
                if need.name == "initramfs"
                else None
            )
            raise BootSetupFailed(f"{need} is missing", hint=hint)


def install_boot(
    esp: Esp,
    boot: BootSet,
    kernels: Mapping[str, KernelFiles],
    *,
    cmdline: KernelCommandLine = DEFAULT_CMDLINE,
    settings: LoaderSettings = DEFAULT_LOADER,
    refind: bool = False,
    loader_efi: Path = SYSTEMD_BOOT_EFI,
) -> tuple[str, ...]:
    """Render, stage and apply ``boot_plan``; return warnings (entries that will not boot)."""
    check_sources({v: kernels[v] for v in boot.kernels if v in kernels}, loader_efi)
    texts = systemd_boot_files(boot, cmdline, settings)
    if refind:  # the configuration only: rEFInd itself is the user's to install
        texts[REFIND_CONF] = refind_conf(boot, cmdline, settings)
    with tempfile.TemporaryDirectory(prefix="g2d-esp-") as tmp:
        staged = stage_texts(texts, Path(tmp))
        plan = boot_plan(esp, boot, kernels, staged, loader_efi=loader_efi)
        apply_plan(plan, {HOST: LocalHost()})
    return tuple(
        f"{g.name}: {why}" for g in boot.generations if (why := initramfs_cannot_boot(g.root))
    )


def verify_esp(
    esp: Esp,
    boot: BootSet,
    *,
    cmdline: KernelCommandLine = DEFAULT_CMDLINE,
    settings: LoaderSettings = DEFAULT_LOADER,
) -> tuple[str, ...]:
    """What on the ESP disagrees with ``boot`` (empty when all agrees): read-only."""
    problems = []
    binaries = [REMOVABLE_PATH, SYSTEMD_BOOT_PATH]
    binaries += [p.lstrip("/") for v in boot.kernels for p in (kernel_path(v), initramfs_path(v))]
    problems += [f"{rel} is missing" for rel in binaries if not exists(esp, rel)]
    for rel, text in sorted(systemd_boot_files(boot, cmdline, settings).items()):
        found = read_text(esp, rel)
        if found is None:
            problems.append(f"{rel} is missing")
        elif found != text:
            problems.append(f"{rel} differs from what g2d would write")
    return tuple(problems)


def install_modules_plan(root: Path, kernel_dir: Path) -> Plan:
    """Unpack ``modules.tar.gz`` (``lib/modules/<version>/...``) into the installed root."""
    version = kernel_dir.name
    argv = [
        "tar", "-xzf", str(kernel_dir / "modules.tar.gz"), "-C", str(root),
        "--keep-directory-symlink",  # a merged-/usr root keeps /lib -> usr/lib
    ]  # fmt: skip
    step = Step.run(HOST, argv, f"modules of kernel {version} into {root}")
    return Plan.of(f"install kernel modules {version}", [step])
