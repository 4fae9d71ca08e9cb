"""Install the dom0's current kernel into a target root, as ``make install modules_install``
and Gentoo's installkernel would leave it.

The dom0 publishes ``kernels/current/<version>/{vmlinuz,System.map,config,modules.tar.gz}``
(``modules.tar.gz`` holds ``lib/modules/<version>/...``). In the target:

- ``/boot/vmlinuz-<v>``, ``/boot/System.map-<v>``, ``/boot/config-<v>`` (installkernel's
  names). A file of that name with other bytes is kept as ``<name>.old`` first, as
  installkernel does when the same version is installed again.
- ``/lib/modules/<v>/``: ``kernel/`` is removed first and the archive unpacked over the
  rest, as ``make modules_install`` does (``rm -rf $(MODLIB)/kernel``), so modules a
  package installed under ``extra/`` or ``updates/`` stay. ``.g2d-modules.sha256`` there
  names the archive unpacked; the same archive again is not unpacked again.
- Other kernel versions already in the root are kept, as installkernel keeps them: the one
  the machine boots today is the fallback if the new one fails. Removing old kernels is an
  admin's choice (eclean-kernel), not an update's.

Everything happens inside a ``Chroot`` with the kernel's directory bound read-only, so the
root's own symlinks (``/lib -> usr/lib``) resolve inside the root, never on the host. The
archive is listed first; a member outside ``lib/modules/<v>/`` (or through a symlink the
archive itself makes) is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from g2d.core.errors import G2dUserError
from g2d.hosts.base import Host
from g2d.hosts.chroot import Bind, Chroot
from g2d.hosts.local import LocalHost

KERNEL_FILES = ("vmlinuz", "System.map", "config", "modules.tar.gz")
BOOT_FILES = ("vmlinuz", "System.map", "config")  # each becomes /boot/<name>-<version>
SOURCE_IN_ROOT = "/var/cache/g2d/kernel"
MODULES_STAMP = ".g2d-modules.sha256"  # the archive a modules directory was unpacked from


class KernelUnavailable(G2dUserError):
    """The dom0's kernels repository has no usable current kernel."""


class KernelArchiveRefused(G2dUserError):
    """modules.tar.gz holds a member that would land outside /lib/modules/<version>."""


@dataclass(frozen=True)
class PublishedKernel:
    """One kernel as the dom0 publishes it."""

    version: str
    directory: Path

    def file(self, name: str) -> Path:
        if name not in KERNEL_FILES:
            raise ValueError(f"{name!r} is not one of {KERNEL_FILES}")
        return self.directory / name


@dataclass(frozen=True)
class KernelInstall:
    """What ``install_kernel`` left in the root."""

    version: str
    boot_files: tuple[str, ...]  # paths inside the root
    replaced: tuple[str, ...]  # boot files whose earlier bytes are now <name>.old
    changed: bool  # False: the root already had exactly this kernel
    other_versions: tuple[str, ...]  # other kernels in /boot, kept

    def metadata(self) -> dict[str, str]:
        return {"g2d:kernel": self.version}


def current_kernel(kernels: Path, version: str | None = None) -> PublishedKernel:
    """The kernel under ``kernels/current/``: the one named, or the only one there."""
    current = kernels / "current"
    found = sorted(p.name for p in current.iterdir() if p.is_dir()) if current.is_dir() else []
    if version is None:
        if len(found) != 1:
            raise KernelUnavailable(
                f"{current} holds {len(found)} kernels ({', '.join(found) or 'none'}); "
                "expected exactly one",
                hint="name the version to install, or move older ones to kernels/deprecated",
            )
        version = found[0]
    elif version not in found:
        raise KernelUnavailable(
            f"{current} has no kernel {version!r} (it has: {', '.join(found) or 'none'})"
        )
    kernel = PublishedKernel(version, current / version)
    missing = [n for n in KERNEL_FILES if not kernel.file(n).is_file()]
    if missing:
        raise KernelUnavailable(f"{kernel.directory} lacks {', '.join(missing)}")
    return kernel


def check_modules_archive(archive: Path, version: str) -> int:
    """Refuse an archive with a member outside ``lib/modules/<version>``; return the count."""
    top = PurePosixPath("lib/modules") / version
    links: set[PurePosixPath] = set()
    count = 0
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            name = PurePosixPath(member.name.removeprefix("./"))
            inside = name == top or top in name.parents
            through = next((link for link in links if link in name.parents), None)
            if name.is_absolute() or ".." in name.parts or not inside or through:
                why = f"passes through the symlink {through}" if through else f"is outside {top}"
                raise KernelArchiveRefused(f"{archive}: member {member.name!r} {why}")
            if member.issym() or member.islnk():
                links.add(name)
            count += 1
    if count == 0:
        raise KernelArchiveRefused(f"{archive} is empty")
    return count


def install_kernel(
    root: str | os.PathLike[str],
    kernels: Path,
    *,
    version: str | None = None,
    parent: Host | None = None,
) -> KernelInstall:
    """Install ``kernels/current/<version>`` into ``root`` (idempotent; see the module doc)."""
    kernel = current_kernel(kernels, version)
    v = kernel.version
    check_modules_archive(kernel.file("modules.tar.gz"), v)
    digest = _sha256(kernel.file("modules.tar.gz"))
    bind = Bind(kernel.directory, SOURCE_IN_ROOT, readonly=True)
    replaced: list[str] = []
    changed = False
    with Chroot(root, binds=[bind], parent=parent or LocalHost(), resolv_conf=False) as ch:
        ch.run(["mkdir", "-p", "/boot"])
        for name in BOOT_FILES:
            src, dest = f"{SOURCE_IN_ROOT}/{name}", f"/boot/{name}-{v}"
            same = ch.run(["cmp", "-s", "--", src, dest], check=False)
            if same.returncode == 0:
                continue
            changed = True
            if same.returncode == 1:  # exists with other bytes (2: missing)
                ch.run(["mv", "-f", "--", dest, f"{dest}.old"])
                replaced.append(dest)
            ch.run(["install", "-m", "0644", "-T", "--", src, f"{dest}.g2d-new"])
            ch.run(["mv", "-f", "-T", "--", f"{dest}.g2d-new", dest])
        modules = f"/lib/modules/{v}"
        stamp = f"{modules}/{MODULES_STAMP}"
        had = ch.run(["cat", "--", stamp], check=False)
        if not had.ok or had.stdout.strip() != digest:
            changed = True
            ch.run(["rm", "-rf", "--", f"{modules}/kernel", stamp])
            ch.run(["mkdir", "-p", "/lib/modules"])
            ch.run([
                "tar", "-x", "-z", "-f", f"{SOURCE_IN_ROOT}/modules.tar.gz", "-C", "/",
                "--numeric-owner",
                "--keep-directory-symlink",   # /lib -> usr/lib stays a link (merged /usr)
                "--no-overwrite-dir",         # existing directories keep their owner and mode
            ])  # fmt: skip
            # written last: a run killed half-way unpacks again next time
            ch.run(["tee", "--", stamp], stdin=f"{digest}\n".encode())
        found = ch.run(["find", "/boot", "-maxdepth", "1", "-name", "vmlinuz-*", "-printf", "%f\n"])
    others = sorted(
        {n.removeprefix("vmlinuz-") for n in found.lines() if not n.endswith((".old", ".g2d-new"))}
        - {v}
    )
    return KernelInstall(
        version=v,
        boot_files=tuple(f"/boot/{name}-{v}" for name in BOOT_FILES),
        replaced=tuple(replaced),
        changed=changed,
        other_versions=tuple(others),
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
