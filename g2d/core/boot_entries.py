"""What boots an installed generation: its root, its kernel command line, its loader entries.

Pure: values in, file texts out. The disk side of ``install`` hands over a ``BootSet`` (every
generation that gets an entry, which one is current and which one is the fallback); this
module renders systemd-boot's files (Boot Loader Specification type #1 entries);
``refind_conf`` renders the same set as rEFInd stanzas, as the old tool used. Paths inside
the ESP are written with forward slashes from the ESP's root, as both loaders read them.

ESP layout (one directory per kernel version, shared by the generations that boot it, as the
old tool's ``LINUX/<version>/``)::

    EFI/BOOT/BOOTX64.EFI                 systemd-boot at the removable-media path
    EFI/systemd/systemd-bootx64.efi      and at its own path
    loader/loader.conf                   default entry = the current generation
    loader/entries/g2d-<gen>.conf        one per generation
    g2d/<kernel version>/vmlinuz
    g2d/<kernel version>/initramfs
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from g2d.core.errors import G2dUserError

ESP_KERNELS = "g2d"  # top directory on the ESP for kernels and initramfs images
ENTRY_PREFIX = "g2d-"
LOADER_CONF = "loader/loader.conf"
ENTRIES_DIR = "loader/entries"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ZFS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*(/[A-Za-z0-9_.:-]+)*")
_SUBVOL = re.compile(r"/?[A-Za-z0-9_.:@-]+(/[A-Za-z0-9_.:@-]+)*")
_DIRECTORY = re.compile(r"(/[A-Za-z0-9_.:@+-]+)+")
# generation names become entry file names; '+' is taken by boot counting (name+3-0.conf)
_GEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_KERNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_ARG = re.compile(r"[^\s\"'\\]+")


class InvalidBootSpec(G2dUserError):
    """A root, generation or command line that cannot make a boot entry; names the value."""


class RootFs(enum.StrEnum):
    """The file system a generation's root lives on."""

    ext4 = enum.auto()
    btrfs = enum.auto()
    xfs = enum.auto()
    zfs = enum.auto()

    def kernel_modules(self) -> tuple[str, ...]:
        """Modules an initramfs loads to mount a root of this type (built-ins are skipped)."""
        return {"ext4": ("ext4",), "btrfs": ("btrfs",), "xfs": ("xfs",), "zfs": ("zfs",)}[self]


@dataclass(frozen=True, slots=True)
class RootIdentity:
    """How the kernel finds a generation's root.

    ext4/xfs/btrfs: by file system ``uuid`` (``blkid -s UUID``) or GPT ``partuuid``; btrfs may
    add the ``subvolume`` (path from the top level) that holds the root; any of them may
    instead keep the root in a plain ``directory`` of the file system (``/g1``: install puts
    a plain generation there; g2d's initramfs switches into it, ``g2d.rootdir=``). zfs:
    ``dataset`` (``pool/ds``), nothing else.
    """

    fs: RootFs
    uuid: str = ""
    partuuid: str = ""
    subvolume: str = ""
    dataset: str = ""
    directory: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fs", RootFs(self.fs))
        if self.fs is RootFs.zfs:
            if not _ZFS_NAME.fullmatch(self.dataset) or self.uuid or self.partuuid:
                raise InvalidBootSpec(
                    "a root on zfs is named by its dataset (pool/ds) alone, "
                    f"got {self.describe()!r}"
                )
        else:
            if self.dataset:
                raise InvalidBootSpec(f"a root on {self.fs} has no dataset, got {self.dataset!r}")
            if bool(self.uuid) == bool(self.partuuid):
                raise InvalidBootSpec(
                    f"a root on {self.fs} needs exactly one of uuid or partuuid, got "
                    f"{self.describe()!r}"
                )
            ident = self.uuid or self.partuuid
            if not _UUID.fullmatch(ident):
                raise InvalidBootSpec(f"{ident!r} is not a UUID (8-4-4-4-12 hex digits)")
        if self.subvolume and (
            self.fs is not RootFs.btrfs or not _SUBVOL.fullmatch(self.subvolume)
        ):
            raise InvalidBootSpec(
                f"subvolume {self.subvolume!r} is not a btrfs subvolume path of a btrfs root"
            )
        if self.directory and (
            self.fs is RootFs.zfs or self.subvolume or not _DIRECTORY.fullmatch(self.directory)
        ):
            raise InvalidBootSpec(
                f"directory {self.directory!r} is not an absolute path in an ext4, xfs or "
                "btrfs root without a subvolume"
            )

    @classmethod
    def by_uuid(
        cls, fs: RootFs | str, uuid: str, *, subvolume: str = "", directory: str = ""
    ) -> RootIdentity:
        return cls(RootFs(fs), uuid=uuid.lower(), subvolume=subvolume, directory=directory)

    @classmethod
    def by_partuuid(cls, fs: RootFs | str, partuuid: str, *, subvolume: str = "") -> RootIdentity:
        return cls(RootFs(fs), partuuid=partuuid.lower(), subvolume=subvolume)

    @classmethod
    def zfs(cls, dataset: str) -> RootIdentity:
        return cls(RootFs.zfs, dataset=dataset)

    def kernel_args(self) -> tuple[str, ...]:
        if self.fs is RootFs.zfs:
            return (f"root=ZFS={self.dataset}",)
        root = f"root=UUID={self.uuid}" if self.uuid else f"root=PARTUUID={self.partuuid}"
        flags = (f"rootflags=subvol={self.subvolume}",) if self.subvolume else ()
        inside = (f"g2d.rootdir={self.directory}",) if self.directory else ()
        return (root, f"rootfstype={self.fs}", *flags, *inside)

    def describe(self) -> str:
        keys = ("uuid", "partuuid", "subvolume", "directory", "dataset")
        parts = [f"{k}={getattr(self, k)}" for k in keys]
        return f"{self.fs} " + " ".join(p for p in parts if not p.endswith("="))


@dataclass(frozen=True, slots=True)
class Generation:
    """One installed generation: its name (``g2``), its root, the kernel release it boots."""

    name: str
    root: RootIdentity
    kernel: str  # ``uname -r`` of the kernel, the directory name under kernels/current/

    def __post_init__(self) -> None:
        if not _GEN_NAME.fullmatch(self.name):
            raise InvalidBootSpec(
                f"generation name {self.name!r} cannot name a boot entry",
                hint="use letters, digits, '_', '.', '-' (no '+': boot counting uses it)",
            )
        if not _KERNEL.fullmatch(self.kernel):
            raise InvalidBootSpec(f"kernel version {self.kernel!r} is not a kernel release name")

    @property
    def entry_id(self) -> str:
        return f"{ENTRY_PREFIX}{self.name}"

    @property
    def title(self) -> str:
        return f"Gentoo {self.name} ({self.kernel})"


@dataclass(frozen=True, slots=True)
class BootSet:
    """What the disk side hands the boot side: the generations to boot, oldest first; which
    is ``current`` (the default entry) and which is ``previous`` (the fallback entry)."""

    generations: tuple[Generation, ...]
    current: str
    previous: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "generations", tuple(self.generations))
        names = [g.name for g in self.generations]
        if not names:
            raise InvalidBootSpec("a boot set needs at least one generation")
        if len(set(names)) != len(names):
            raise InvalidBootSpec(f"generation names repeat: {', '.join(names)}")
        if self.current not in names:
            raise InvalidBootSpec(f"current generation {self.current!r} is not in {names}")
        if self.previous is not None and (
            self.previous not in names or self.previous == self.current
        ):
            raise InvalidBootSpec(
                f"previous generation {self.previous!r} must be another one of {names}"
            )

    def generation(self, name: str) -> Generation:
        return next(g for g in self.generations if g.name == name)

    @property
    def default(self) -> Generation:
        return self.generation(self.current)

    @property
    def fallback(self) -> Generation | None:
        return self.generation(self.previous) if self.previous else None

    def menu_order(self) -> tuple[Generation, ...]:
        """Current first, then the fallback, then the others newest first."""
        rest = [
            g for g in reversed(self.generations) if g.name not in (self.current, self.previous)
        ]
        head = [self.default, *([self.fallback] if self.fallback else [])]
        return (*head, *rest)

    @property
    def kernels(self) -> tuple[str, ...]:
        return tuple(sorted({g.kernel for g in self.generations}))


@dataclass(frozen=True, slots=True)
class KernelCommandLine:
    """Everything on the command line besides the root: consoles, rw/ro, extra words.

    The last console is /dev/console, where init's output goes: serial by default, so that a
    headless machine (and the boot test) reads it.
    """

    consoles: tuple[str, ...] = ("tty0", "ttyS0,115200")
    read_write: bool = True
    extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for word in (*self.consoles, *self.extra):
            if not _ARG.fullmatch(word):
                raise InvalidBootSpec(f"kernel argument {word!r} must be one word without quotes")
        for word in self.extra:
            if word.split("=", 1)[0] in ("root", "rootfstype", "rootflags", "g2d.rootdir",
                                         "console"):  # fmt: skip
                raise InvalidBootSpec(
                    f"kernel argument {word!r} is set by g2d",
                    hint="the root comes from the generation; consoles from `consoles`",
                )

    def render(self, root: RootIdentity) -> str:
        words = [
            *root.kernel_args(),
            "rw" if self.read_write else "ro",
            *(f"console={c}" for c in self.consoles),
            *self.extra,
        ]
        return " ".join(words)


@dataclass(frozen=True, slots=True)
class LoaderSettings:
    """The menu: seconds shown (0 boots the default at once; a key press still shows it)."""

    timeout: int = 3
    editor: bool = False  # editing the command line at the menu is a root shell for anyone

    def __post_init__(self) -> None:
        if not 0 <= self.timeout <= 600:
            raise InvalidBootSpec(f"loader timeout {self.timeout} is not 0..600 seconds")


DEFAULT_CMDLINE = KernelCommandLine()
DEFAULT_LOADER = LoaderSettings()


def kernel_path(version: str) -> str:
    return f"/{ESP_KERNELS}/{version}/vmlinuz"


def initramfs_path(version: str) -> str:
    return f"/{ESP_KERNELS}/{version}/initramfs"


def entry_path(gen: Generation) -> str:
    return f"{ENTRIES_DIR}/{gen.entry_id}.conf"


def systemd_boot_entry(gen: Generation, cmdline: KernelCommandLine) -> str:
    """One Boot Loader Specification type #1 entry."""
    return (
        f"title      {gen.title}\n"
        f"linux      {kernel_path(gen.kernel)}\n"
        f"initrd     {initramfs_path(gen.kernel)}\n"
        f"options    {cmdline.render(gen.root)}\n"
    )


def loader_conf(boot: BootSet, settings: LoaderSettings) -> str:
    return (
        f"default {boot.default.entry_id}.conf\n"
        f"timeout {settings.timeout}\n"
        f"editor {'yes' if settings.editor else 'no'}\n"
        "console-mode keep\n"
    )


def systemd_boot_files(
    boot: BootSet,
    cmdline: KernelCommandLine = DEFAULT_CMDLINE,
    settings: LoaderSettings = DEFAULT_LOADER,
) -> dict[str, str]:
    """ESP-relative path -> text: loader.conf and one entry per generation of ``boot``."""
    files = {entry_path(g): systemd_boot_entry(g, cmdline) for g in boot.generations}
    files[LOADER_CONF] = loader_conf(boot, settings)
    return files


def initramfs_cannot_boot(root: RootIdentity) -> str | None:
    """Why g2d's initramfs cannot mount ``root``, or None when it can."""
    if root.fs is RootFs.zfs:
        return f"root=ZFS={root.dataset}: g2d's initramfs cannot import ZFS pools"
    if root.partuuid:
        return f"root=PARTUUID={root.partuuid}: g2d's initramfs finds roots by UUID only"
    return None
