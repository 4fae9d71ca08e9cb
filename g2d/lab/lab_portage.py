"""Portage (and gemato) installed into a lab root as a system package, as on Gentoo.

The PyPI wheel is built as a *module* install: ``EPREFIX`` is ``sys.prefix`` and the config
lives under it. Inside a root that would be ``/usr`` (``/usr/etc/portage``). Gentoo's own
ebuild builds portage as a *system* install (``EPREFIX=""``, configuration in
``/usr/share/portage/config``, helpers in ``/usr/lib/portage/pythonX.Y``), which is what the
files copied here are turned into: the two placeholders the wheel left empty are filled in
and ``installation.TYPE`` says SYSTEM. The files come from this interpreter's installed
distribution (the venv's), so the root carries exactly the portage g2d was tested with.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import sys
from pathlib import Path, PurePosixPath

from g2d.core.errors import G2dUserError

SITE = PurePosixPath("usr/lib/python3/dist-packages")  # Debian's python3 looks here
PORTAGE_BASE = PurePosixPath("usr/lib/portage")
SHEBANG = b"#!/usr/bin/python3\n"


class PortageInstallFailed(G2dUserError):
    """The portage files could not be placed into the root as a system install."""


def root_python(root: Path) -> str:
    """``python3.11``: the interpreter the root's /usr/bin/python3 points at."""
    link = root / "usr/bin/python3"
    name = os.readlink(link) if link.is_symlink() else ""
    if not name.startswith("python3."):
        raise PortageInstallFailed(f"{link} is not a link to python3.X", hint="debootstrap python3")
    return PurePosixPath(name).name


def _target(rel_to_prefix: PurePosixPath, python: str) -> PurePosixPath | None:
    """Where a file of the venv (relative to its prefix) goes in the root; None: not copied."""
    parts = rel_to_prefix.parts
    if parts[:3] == ("lib", "portage", "bin"):
        return PORTAGE_BASE / python / PurePosixPath(*parts[3:])
    if parts[0] == "bin":
        return PurePosixPath("usr/bin", *parts[1:])
    if parts[0] == "share":
        return PurePosixPath("usr", *parts)
    if parts[0] == "etc":
        return rel_to_prefix
    return None


def install_distribution(name: str, root: Path) -> str:
    """Copy the installed distribution ``name`` into the root; returns its version."""
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError as e:
        raise PortageInstallFailed(f"{name} is not installed in {sys.prefix}") from e
    python = root_python(root)
    site = Path(dist.locate_file("")).resolve()
    prefix = site.parents[2]  # <prefix>/lib/pythonX.Y/site-packages
    for file in dist.files or ():
        src = Path(dist.locate_file(file)).resolve()
        if "__pycache__" in src.parts or src.suffix == ".pyc" or not src.is_file():
            continue
        if src.is_relative_to(site):
            rel = PurePosixPath(src.relative_to(site).as_posix())
            if rel.name in ("RECORD", "INSTALLER", "direct_url.json", "REQUESTED"):
                continue  # pip's bookkeeping for the venv, wrong for the root
            dest = SITE / rel
        else:
            dest = _target(PurePosixPath(src.relative_to(prefix).as_posix()), python)
            if dest is None:
                raise PortageInstallFailed(f"{name}: no place in the root for {src}")
        _copy(src, root / dest)
    return dist.version


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
        data = SHEBANG + data.split(b"\n", 1)[1]  # as meson rewrites them for a system install
    dest.write_bytes(data)
    os.chmod(dest, 0o755 if os.access(src, os.X_OK) else 0o644)


def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise PortageInstallFailed(
            f"{path}: expected one {old!r} to make a system install",
            hint="this portage release is laid out differently; update g2d.lab.lab_portage",
        )
    path.write_text(text.replace(old, new))


def install_portage(root: Path) -> str:
    """Portage as a system install in the root, plus gemato; returns portage's version."""
    version = install_distribution("portage", root)
    install_distribution("gemato", root)
    python = root_python(root)
    pkg = root / SITE / "portage"
    _replace_once(pkg / "installation.py", 'if "MODULE" == "MODULE":', "if False:")
    _replace_once(pkg / "installation.py", 'elif "MODULE" == "SYSTEM":', "elif True:")
    const = pkg / "const.py"
    _replace_once(const, 'PORTAGE_BASE_PATH = """"""', f'PORTAGE_BASE_PATH = "/{PORTAGE_BASE}"')
    _replace_once(
        const, 'PORTAGE_BIN_PATH = """"""', f'PORTAGE_BIN_PATH = "/{PORTAGE_BASE}/{python}"'
    )
    gtar = root / "usr/bin/gtar"  # portage's shell code calls GNU tar by this name
    if not gtar.exists():
        gtar.symlink_to("tar")
    shutil.rmtree(root / "usr/lib/python3/dist-packages/portage/tests", ignore_errors=True)
    return version
