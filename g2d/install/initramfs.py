"""An initramfs for a published kernel: static busybox, the modules a root needs, and /init.

Built from the kernel's own files (``kernels/<...>/<version>/modules.tar.gz`` and
``config``), so any machine that boots that kernel can use it; the root is read from the
kernel command line at boot, so one initramfs serves every generation on that kernel.
``publish_initramfs`` stores it beside the kernel as ``initramfs``, the name the kernels
repository layout gives it. ZFS roots cannot be mounted by it (see ``initramfs_init``).
"""

from __future__ import annotations

import gzip
import lzma
import os
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from g2d.core.cpio_newc import Entry, write_newc
from g2d.core.errors import G2dUserError
from g2d.core.kernel_modules import ModuleIndex
from g2d.hosts.local import LocalHost
from g2d.install.initramfs_init import INIT, module_list

BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
# disks a root may be on; crc32c_intel: faster ext4/btrfs checksums where the CPU has SSE4.2
DRIVER_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "sd_mod",
    "ahci",
    "nvme",
    "crc32c_intel",
)
ROOT_FS_MODULES = ("ext4", "btrfs", "xfs")
INDEX_FILES = ("modules.dep", "modules.builtin", "modules.softdep", "modules.alias")
# (kernel config option, compressor argv, name) in order of preference
COMPRESSORS = (
    ("CONFIG_RD_ZSTD", ("zstd", "-q", "-9", "-T0", "-c"), "zstd"),
    ("CONFIG_RD_XZ", ("xz", "-q", "-c", "--check=crc32", "-9"), "xz"),
    ("CONFIG_RD_GZIP", ("gzip", "-n", "-9", "-c"), "gzip"),
)
_DIRS = ("bin", "dev", "etc", "etc/g2d", "fsroot", "lib", "lib/modules", "newroot", "proc", "sys")


class InitramfsFailed(G2dUserError):
    """The initramfs could not be built; names the kernel directory and what is missing."""


@dataclass(frozen=True, slots=True)
class Initramfs:
    path: Path
    version: str
    compression: str
    modules: dict[str, tuple[str, ...]]  # "" (drivers) or fs -> paths under lib/modules/<v>/
    size: int


def pick_compressor(config: str) -> tuple[tuple[str, ...], str]:
    """The best compressor this kernel can unpack, from its ``config``."""
    enabled = {line.split("=", 1)[0] for line in config.splitlines() if line.endswith("=y")}
    for option, argv, name in COMPRESSORS:
        if option in enabled:
            return argv, name
    return ("cat",), "none"


def is_static_elf(data: bytes) -> bool:
    """True for a 64-bit little-endian ELF without an interpreter (PT_INTERP)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


def _extract(tarball: Path, dest: Path, members: Sequence[str]) -> None:
    LocalHost().run(["tar", "-xzf", tarball, "-C", dest, "--", *members], timeout=300)


def _plain_name(path: str) -> str:
    return path[: path.rindex(".ko") + 3]


def _module_bytes(path: Path) -> bytes:
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(path.read_bytes())
    if path.name.endswith(".ko.zst"):
        return LocalHost().run(["zstd", "-q", "-d", "-c", path]).out
    return path.read_bytes()


def _applets(busybox: Path) -> list[str]:
    names = LocalHost().run([busybox, "--list"]).lines()
    return sorted({n for n in names if n and "/" not in n and n != "busybox"})


def module_lists(
    index: ModuleIndex, filesystems: Sequence[str], drivers: Sequence[str], require: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """Module paths per list, in load order: ``""`` for the drivers (always loaded), one
    per file system (loaded only for a root of that type; empty when it is built in).

    ``require`` names must each be a module or built in; every other name is optional.
    """
    index.load_order(require)  # refuses a required module the kernel does not have
    lists = {"": index.load_order((), optional=drivers)}
    for fs in filesystems:
        if fs in index.builtin or index.resolve(fs) or fs in require:
            lists[fs] = tuple(p for p in index.load_order((fs,)) if p not in lists[""])
    return lists


def build_initramfs(
    kernel_dir: Path,
    dest: Path,
    *,
    filesystems: Sequence[str] = ROOT_FS_MODULES,
    drivers: Sequence[str] = DRIVER_MODULES,
    require: Sequence[str] = (),
    busybox: Path = BUSYBOX,
) -> Initramfs:
    """Write the initramfs for the kernel in ``kernel_dir`` (named by its version) to ``dest``.

    ``filesystems``: root file systems it can mount, where the kernel has them; ``drivers``:
    loaded at every boot, where the kernel has them; ``require``: names the kernel must have
    (``RootFs.kernel_modules()`` of the roots it will boot), else it is refused.
    """
    version = kernel_dir.name
    tarball = kernel_dir / "modules.tar.gz"
    for need in (tarball, kernel_dir / "config", busybox):
        if not need.is_file():
            raise InitramfsFailed(
                f"cannot build an initramfs for {kernel_dir}: {need} is missing",
                hint="apt-get install busybox-static" if need == busybox else None,
            )
    bb = busybox.read_bytes()
    if not is_static_elf(bb):
        raise InitramfsFailed(
            f"{busybox} is not a static x86-64 program; an initramfs has no libc for it",
            hint="apt-get install busybox-static",
        )
    compressor, compression = pick_compressor((kernel_dir / "config").read_text())
    moddir = f"lib/modules/{version}"
    with tempfile.TemporaryDirectory(prefix=".initramfs-", dir=dest.parent) as tmp:
        work = Path(tmp)
        _extract(tarball, work, [f"{moddir}/{name}" for name in INDEX_FILES])
        index = ModuleIndex.parse(*((work / moddir / n).read_text() for n in INDEX_FILES))
        stored = module_lists(index, filesystems, drivers, require)
        every = list(dict.fromkeys(p for paths in stored.values() for p in paths))
        if every:
            _extract(tarball, work, [f"{moddir}/{p}" for p in every])
        entries = [Entry.directory(d) for d in _DIRS]
        entries += [
            Entry.char_device("dev/console", 5, 1),
            Entry.char_device("dev/null", 1, 3, 0o666),
            Entry.file("bin/busybox", bb, 0o755),
            *(Entry.symlink(f"bin/{a}", "busybox") for a in _applets(busybox)),
            Entry.file("init", INIT.encode(), 0o755),
            # busybox insmod takes plain .ko files: compressed modules are unpacked here
            *(
                Entry.file(module_list(fs), "".join(f"{_plain_name(p)}\n" for p in paths).encode())
                for fs, paths in stored.items()
            ),
            *_module_entries(work, moddir, every),
        ]
        archive = work / "initramfs.cpio"
        archive.write_bytes(write_newc(entries))
        packed = work / "initramfs"
        LocalHost().run([*compressor, archive], stdout=packed, timeout=600)
        os.chmod(packed, 0o644)
        os.replace(packed, dest)
    lists = {fs: tuple(_plain_name(p) for p in paths) for fs, paths in stored.items()}
    return Initramfs(dest, version, compression, lists, dest.stat().st_size)


def _module_entries(work: Path, moddir: str, paths: Sequence[str]) -> list[Entry]:
    entries = [Entry.directory(moddir)]
    made = {moddir}
    for src in paths:
        parts = src.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            sub = f"{moddir}/{'/'.join(parts[:i])}"
            if sub not in made:
                made.add(sub)
                entries.append(Entry.directory(sub))
        plain = f"{moddir}/{_plain_name(src)}"
        entries.append(Entry.file(plain, _module_bytes(work / moddir / src)))
    return entries


def publish_initramfs(kernel_dir: Path, **options: object) -> Initramfs:
    """Build ``kernel_dir/initramfs`` (replaced atomically), for the kernels repository."""
    return build_initramfs(kernel_dir, kernel_dir / "initramfs", **options)  # type: ignore[arg-type]
