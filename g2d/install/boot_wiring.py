"""The disk side's boot hook: the kernel's modules into the root, its initramfs, and the ESP
with one entry per installed generation, the current one the default and the previous one
beside it to fall back to.

``install_disk(plan, yes=True, boot_hook=BootHook(request))`` calls the hook with the root
mounted read-write; the hook writes the ESP through mtools at ``facts.esp_device`` (this
lab's kernel has no vfat: nothing is mounted), reads it back (``verify_esp``) and keeps what
it did in ``hook.result``. The kernel comes from a kernels repository
(``kernels/current/<version>/``: the dom0's, the lab's in tests); its initramfs is built once
and published beside it, rebuilt only when what it is made of changed.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from g2d.core.boot_entries import (
    DEFAULT_CMDLINE,
    DEFAULT_LOADER,
    BootSet,
    Generation,
    KernelCommandLine,
    LoaderSettings,
    RootFs,
    RootIdentity,
    entry_path,
)
from g2d.hosts.local import LocalHost
from g2d.install.boot import BootSetupFailed, KernelFiles, install_boot, install_modules_plan
from g2d.install.boot import verify_esp as read_back
from g2d.install.configure import InstallFacts
from g2d.install.esp import Esp, EspImage
from g2d.install.initramfs import BUSYBOX, publish_initramfs
from g2d.install.initramfs_init import INIT
from g2d.storage.apply import apply_plan

INPUTS = "initramfs.inputs"  # beside the initramfs: what it was built from (a digest)
_VERSION_PART = re.compile(r"(\d+)")


@dataclass(frozen=True)
class BootRequest:
    """What the hook writes: the generations on the target (oldest first), which one boots
    by default, which one is the fallback, the kernel, the menu and the command line."""

    kernel_dir: Path  # kernels/current/<version>
    generations: tuple[str, ...]
    current: str
    previous: str | None = None
    cmdline: KernelCommandLine = DEFAULT_CMDLINE
    settings: LoaderSettings = DEFAULT_LOADER
    esp: Esp | None = None  # default: the new disk's ESP (facts.esp_device) through mtools

    @property
    def version(self) -> str:
        return self.kernel_dir.name


@dataclass(frozen=True)
class BootResult:
    kernel: str
    entries: tuple[str, ...]  # ESP-relative paths, menu order
    default: str
    fallback: str | None
    cmdlines: dict[str, str]  # generation -> its kernel command line
    initramfs: str  # "built" or "reused"
    warnings: tuple[str, ...]  # entries g2d's initramfs cannot boot (a ZFS root)
    esp: str | None  # where the ESP was written; None: no ESP (an existing pool)

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def pick_kernel(kernels: Path, version: str | None = None) -> Path:
    """``kernels/current/<version>``: the one named, else the newest published."""
    current = kernels / "current"
    found = sorted((p for p in current.iterdir() if (p / "vmlinuz").is_file()),
                   key=lambda p: _version_key(p.name)) if current.is_dir() else []  # fmt: skip
    if version is not None:
        chosen = current / version
        if chosen not in found:
            raise BootSetupFailed(
                f"kernel {version} is not published in {current}",
                hint=f"published: {', '.join(p.name for p in found) or 'none'}",
            )
        return chosen
    if not found:
        raise BootSetupFailed(
            f"no kernel is published in {current}",
            hint="build or import one (kernels/current/<version>/vmlinuz)",
        )
    return found[-1]


def _version_key(name: str) -> list[object]:
    return [(0, int(w)) if w.isdigit() else (1, w) for w in _VERSION_PART.split(name) if w]


def _inputs_digest(kernel_dir: Path, require: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(INIT.encode())
    h.update(BUSYBOX.read_bytes() if BUSYBOX.is_file() else b"")
    for name in ("modules.tar.gz", "config"):
        st = (kernel_dir / name).stat()
        h.update(f"{name} {st.st_size} {st.st_mtime_ns}\n".encode())
    h.update(json.dumps(sorted(require)).encode())
    return h.hexdigest()


def ensure_initramfs(kernel_dir: Path, require: Sequence[str] = ()) -> str:
    """Publish ``kernel_dir/initramfs`` unless the one there was built from the same inputs
    (init script, busybox, modules, config); "built" or "reused"."""
    digest = _inputs_digest(kernel_dir, require)
    stamp = kernel_dir / INPUTS
    if (kernel_dir / "initramfs").is_file() and stamp.is_file() and stamp.read_text() == digest:
        return "reused"
    publish_initramfs(kernel_dir, require=tuple(require))
    stamp.write_text(digest)
    return "built"


def sibling_root(facts: InstallFacts, name: str) -> RootIdentity:
    """The root of generation ``name`` beside the installed one (a lineage install brings
    its generations as siblings: pool/g1 beside pool/g2, subvolume /g1 beside /g2)."""
    own = facts.root_identity()
    if own.fs is RootFs.zfs:
        return RootIdentity.zfs(posixpath.join(posixpath.dirname(own.dataset), name))
    if own.subvolume:
        return replace(own, subvolume=posixpath.join(posixpath.dirname(own.subvolume), name))
    if own.directory:
        return replace(own, directory=posixpath.join(posixpath.dirname(own.directory), name))
    return own


def boot_set(facts: InstallFacts, request: BootRequest, installed: str) -> BootSet:
    """Entries for ``request.generations``; ``installed`` is the one ``facts`` describes."""
    gens = tuple(
        Generation(name, facts.root_identity() if name == installed else sibling_root(facts, name),
                   request.version)
        for name in request.generations
    )  # fmt: skip
    return BootSet(gens, request.current, request.previous)


@dataclass
class BootHook:
    """``boot_hook`` for ``install_disk``; ``installed`` is the generation the install puts
    at ``facts`` (its entry name); ``result`` holds what was written once it ran."""

    request: BootRequest
    installed: str
    result: BootResult | None = field(default=None, init=False)

    def __call__(self, facts: InstallFacts) -> None:
        self.result = write_boot(facts, self.request, self.installed)


def write_boot(facts: InstallFacts, request: BootRequest, installed: str) -> BootResult:
    """Modules into the root, the initramfs, the ESP; then the ESP read back."""
    kernel_dir, version = request.kernel_dir, request.version
    tree = Path(facts.tree)
    if not (tree / "lib/modules" / version / "modules.dep").is_file():
        apply_plan(install_modules_plan(tree, kernel_dir), {"local": LocalHost()})
    boot = boot_set(facts, request, installed)
    fs = {g.root.fs for g in boot.generations} - {RootFs.zfs}  # it cannot mount ZFS anyway
    built = ensure_initramfs(kernel_dir, sorted(m for f in fs for m in f.kernel_modules()))
    esp = request.esp
    if esp is None and facts.esp_device is not None:
        esp = EspImage(Path(facts.esp_device))
    cmdlines = {g.name: request.cmdline.render(g.root) for g in boot.generations}
    entries = tuple(entry_path(g) for g in boot.menu_order())
    if esp is None:  # into an existing pool: the machine's own ESP is the user's to name
        warn = ("no ESP written: the install made no disk; name the machine's ESP",)
        return BootResult(version, (), boot.default.name, boot.previous, cmdlines, built, warn,
                          None)  # fmt: skip
    kernels = {version: KernelFiles.in_dir(kernel_dir)}
    warnings = install_boot(esp, boot, kernels, cmdline=request.cmdline,
                            settings=request.settings)  # fmt: skip
    problems = read_back(esp, boot, cmdline=request.cmdline, settings=request.settings)
    if problems:
        raise BootSetupFailed(f"the ESP {esp} does not hold what was written: "
                              + "; ".join(problems))  # fmt: skip
    return BootResult(version, entries, boot.default.name, boot.previous, cmdlines, built,
                      warnings, str(esp))  # fmt: skip
