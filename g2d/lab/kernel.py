"""An already built kernel for the lab: Debian's cloud kernel, imported as g2d publishes one.

``kernels/current/<version>/{vmlinuz,System.map,config,modules.tar.gz}``, where
``<version>`` is the kernel's own release string (``uname -r``, e.g. ``6.1.0-56-cloud-amd64``)
and ``modules.tar.gz`` holds ``lib/modules/<version>/...`` (with depmod's files) as
``tar cfz ... /lib/modules/<v>`` stores it after ``make modules_install``. The package is
fetched with ``apt-get download`` into a cache directory and unpacked with ``dpkg-deb -x``;
nothing is installed on the host.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.lab.lab_tar import create_argv

METAPACKAGE = "linux-image-cloud-amd64"
KERNEL_FILES = ("vmlinuz", "System.map", "config", "modules.tar.gz")
MODULES_MTIME = 0  # modules.tar.gz members: fixed mtime, so a re-import is byte-identical
_IMAGE_DEP = re.compile(r"(linux-image-[0-9][^\s,|()]*)")


class KernelImportFailed(G2dUserError):
    """The Debian kernel package could not be found, fetched or unpacked."""


@dataclass(frozen=True)
class KernelImport:
    version: str  # uname -r
    directory: Path  # kernels/current/<version>
    package: str  # the versioned Debian package, e.g. linux-image-6.1.0-56-cloud-amd64
    package_version: str  # its Debian version, e.g. 6.1.192-2 (upstream 6.1.192)

    def file(self, name: str) -> Path:
        if name not in KERNEL_FILES:
            raise ValueError(f"{name!r} is not one of {KERNEL_FILES}")
        return self.directory / name


def image_package(metapackage: str = METAPACKAGE) -> tuple[str, str]:
    """(versioned image package, its version) that apt's candidate of ``metapackage`` needs."""
    host = LocalHost()
    meta = host.run(["apt-cache", "show", "--no-all-versions", metapackage], check=False)
    depends = next((ln for ln in meta.lines() if ln.startswith("Depends:")), "")
    m = _IMAGE_DEP.search(depends)
    if not meta.ok or m is None:
        raise KernelImportFailed(
            f"apt knows no {metapackage} that depends on a linux-image package",
            hint="run apt-get update",
        )
    package = m.group(1)
    show = host.run(["apt-cache", "show", "--no-all-versions", package]).lines()
    version = next(ln.split(":", 1)[1].strip() for ln in show if ln.startswith("Version:"))
    return package, version


def download_package(package: str, version: str, cache_dir: Path) -> Path:
    """The .deb of ``package=version`` in ``cache_dir``; fetched by apt-get only if missing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    want = f"{package}_{version.replace(':', '%3a')}_amd64.deb"
    deb = cache_dir / want
    if deb.is_file():
        return deb
    with tempfile.TemporaryDirectory(prefix=".apt-download-", dir=cache_dir) as tmp:
        done = LocalHost().run(
            ["apt-get", "download", f"{package}={version}"], cwd=tmp, check=False
        )
        got = Path(tmp) / want
        if not done.ok or not got.is_file():
            raise KernelImportFailed(
                f"apt-get download {package}={version} failed: {done.stderr.strip()}",
                hint="run apt-get update; the mirror may have dropped that version",
            )
        os.replace(got, deb)
    return deb


def import_kernel(
    kernels: Path, cache_dir: Path, *, metapackage: str = METAPACKAGE
) -> KernelImport:
    """Publish the kernel ``metapackage`` stands for under ``kernels/current/``."""
    package, pkg_version = image_package(metapackage)
    deb = download_package(package, pkg_version, cache_dir)
    host = LocalHost()
    with tempfile.TemporaryDirectory(prefix=".kernel-", dir=cache_dir) as tmp:
        tree = Path(tmp) / "tree"
        host.run(["dpkg-deb", "-x", deb, tree])
        version = _release_of(tree)
        # stored as lib/modules/<v>/ whether Debian ships it under /lib or /usr/lib
        modules_parent = next(
            p for p in (tree / "lib", tree / "usr/lib") if (p / "modules" / version).is_dir()
        )
        # Debian's postinst runs depmod; `make modules_install` does too, so a published
        # modules.tar.gz carries modules.dep, modules.alias, ... Make them here, in the copy.
        host.run(["depmod", "--basedir", modules_parent.parent, version])
        target = kernels / "current" / version
        staging = Path(tmp) / version
        staging.mkdir()
        shutil.copyfile(tree / f"boot/vmlinuz-{version}", staging / "vmlinuz")
        shutil.copyfile(tree / f"boot/System.map-{version}", staging / "System.map")
        shutil.copyfile(tree / f"boot/config-{version}", staging / "config")
        tar = create_argv(
            modules_parent.parent,
            [f"{modules_parent.name}/modules/{version}"],
            mtime=MODULES_MTIME,
            root_fs=False,
        )
        run_pipeline(
            [Stage.of(host, tar), Stage.of(host, ["gzip", "-n", "-6"])],
            stdout=staging / "modules.tar.gz",
        )
        for path in staging.iterdir():
            os.chmod(path, 0o644)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return KernelImport(version, target, package, pkg_version)


def _release_of(tree: Path) -> str:
    images = sorted((tree / "boot").glob("vmlinuz-*"))
    if len(images) != 1:
        raise KernelImportFailed(f"expected one boot/vmlinuz-* in the package, found {len(images)}")
    return images[0].name.removeprefix("vmlinuz-")
