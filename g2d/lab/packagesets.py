"""The dom0's site package sets (`packages/`) for the lab, in the old tool's names and suffixes.

Each flavour the old tool knew (research/g2deploy-spec.md §3.1) has a stem under
`packages/<version>/`, and `packages/common` applies to all; a `/systemd` variant is a
directory next to its flavour's files (`23.0/desktop/plasma.pkgs` and
`23.0/desktop/plasma/systemd.pkgs`). The version directory is the lab profiles' `23.0`
(the old tool always used `17.1`). Suffixes (§3.2): `.pkgs` emerge targets, `.uses`
package.use, `.keys` package.accept_keywords, `.license` package.license, `.mask`
package.mask, `.unmask` package.unmask, `.conf` make.conf values, `.patches` and
`.updates` shell run in the chroot during deploy and update, `.services` shell that enables
services. A missing file counts as empty, so, as in the old tree, not every stem has every
suffix (`hardened/selinux` has only .conf .patches .pkgs .services).

Every atom and USE flag named here exists in the lab repository; `write_package_sets`
refuses to write a set that names anything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

from g2d.lab.repo import RepoInfo
from g2d.lab.repo_profiles import ROOT_PROFILE
from g2d.lab.staging import LabTreeError, staged

SET_VERSION = "23.0"
SUFFIXES = (
    "pkgs", "uses", "conf", "keys", "license", "mask", "unmask", "services", "patches", "updates",
)  # fmt: skip
ATOM_SUFFIXES = ("pkgs", "uses", "keys", "license", "mask", "unmask")
README = "README.txt"
MARKER = "g2d lab package sets"


@dataclass(frozen=True)
class Flavour:
    """A selection word of the old tool, its package-set stem and its lab profile."""

    selection: str
    stem: str  # under packages/, without suffix
    profile: str  # under the repository's profiles/


_P = ROOT_PROFILE
_V = SET_VERSION
FLAVOURS: tuple[Flavour, ...] = (
    Flavour("openrc", f"{_V}/openrc", _P),
    Flavour("systemd", f"{_V}/systemd", f"{_P}/systemd"),
    Flavour("plasma", f"{_V}/desktop/plasma", f"{_P}/desktop/plasma"),
    Flavour("plasma/systemd", f"{_V}/desktop/plasma/systemd", f"{_P}/desktop/plasma/systemd"),
    Flavour("gnome", f"{_V}/desktop/gnome", f"{_P}/desktop/gnome"),
    Flavour("gnome/systemd", f"{_V}/desktop/gnome/systemd", f"{_P}/desktop/gnome/systemd"),
    Flavour("hardened", f"{_V}/hardened", f"{_P}/hardened"),
    Flavour("selinux", f"{_V}/selinux", f"{_P}/selinux"),
    Flavour("hardened/selinux", f"{_V}/hardened/selinux", f"{_P}/hardened/selinux"),
)

_OPENRC_SERVICE = "rc-update add {} default\n"
_SYSTEMD_SERVICE = "systemctl enable {}.service\n"

COMMON: dict[str, str] = {
    "pkgs": """\
        # Tools every lab system gets (the old tree's common.pkgs held ~365 such atoms)
        app-misc/hello
        app-misc/greeter
        app-misc/eula-lab
    """,
    # matches the binhost's second build of hello, so clients take that binpkg
    "uses": "app-misc/hello doc -nls\n",
    "conf": """\
        # Merged by key into /etc/portage/make.conf
        BINPKG_FORMAT="gpkg"
        EMERGE_DEFAULT_OPTS="--binpkg-respect-use=y"
    """,
    "keys": "=dev-libs/libdemo-1.5 ~amd64\n",
    "license": "app-misc/eula-lab lab-EULA\n",
    "mask": """\
        # caps the libdemo 2 series, as the old common.mask capped the kernel series
        >=dev-libs/libdemo-2.1
    """,
    "unmask": "",
    "services": """\
        # Enable the lab's services for the init system the root runs
        if [ -d /run/systemd/system ] || command -v systemctl >/dev/null 2>&1; then
            systemctl enable greeter.service
        else
            rc-update add greeter default
        fi
    """,
    "patches": 'echo "end of common patches..."\n',
    "updates": "",
}

SETS: dict[str, dict[str, str]] = {
    f"{_V}/openrc": {
        "pkgs": "sys-apps/openrc-lab\n",
        "uses": "sys-apps/openrc-lab netifrc\n",
        "conf": 'USE="-systemd"\n',
        "services": _OPENRC_SERVICE.format("greeter"),
    },
    f"{_V}/systemd": {
        "pkgs": "sys-apps/systemd-lab\n",
        "uses": "sys-apps/systemd-lab resolved\n",
        "conf": 'USE="systemd"\n',
        "services": _SYSTEMD_SERVICE.format("greeter"),
    },
    f"{_V}/desktop/plasma": {
        "pkgs": "kde-plasma/plasma-lab\nx11-misc/sddm-lab\n",
        "uses": "kde-plasma/plasma-lab X wayland\n",
        "unmask": "=kde-plasma/plasma-lab-6.1\n",
        "conf": 'USE="wayland -gnome"\n',
        "services": _OPENRC_SERVICE.format("sddm-lab"),
        "patches": 'echo "plasma patches..."\n',
    },
    f"{_V}/desktop/plasma/systemd": {
        "pkgs": "kde-plasma/plasma-lab\nx11-misc/sddm-lab\nsys-apps/systemd-lab\n",
        "uses": "kde-plasma/plasma-lab X wayland\n",
        "unmask": "=kde-plasma/plasma-lab-6.1\n",
        "conf": 'USE="wayland -gnome systemd"\n',
        "services": _SYSTEMD_SERVICE.format("sddm-lab"),
    },
    f"{_V}/desktop/gnome": {
        "pkgs": "gnome-base/gnome-lab\ngnome-base/gdm-lab\n",
        "uses": "gnome-base/gnome-lab wayland\n",
        "conf": 'USE="wayland -kde"\n',
        "services": _OPENRC_SERVICE.format("gdm-lab"),
    },
    f"{_V}/desktop/gnome/systemd": {
        "pkgs": "gnome-base/gnome-lab\ngnome-base/gdm-lab\nsys-apps/systemd-lab\n",
        "uses": "gnome-base/gnome-lab wayland\n",
        "conf": 'USE="wayland -kde systemd"\n',
        "services": _SYSTEMD_SERVICE.format("gdm-lab"),
    },
    f"{_V}/hardened": {
        "pkgs": "app-admin/checksec-lab\n",
        "conf": 'USE="hardened"\n',
        "services": _OPENRC_SERVICE.format("greeter"),
    },
    f"{_V}/selinux": {
        "pkgs": "sec-policy/selinux-base-lab\n",
        "uses": "sec-policy/selinux-base-lab unconfined\n",
        "conf": 'USE="selinux"\n',
        "services": _OPENRC_SERVICE.format("greeter"),
    },
    f"{_V}/hardened/selinux": {  # the old tree's coverage gap: only four suffixes
        "pkgs": "app-admin/checksec-lab\nsec-policy/selinux-base-lab\n",
        "conf": 'USE="hardened selinux"\n',
        "patches": 'echo "hardened/selinux patches..."\n',
        "services": _OPENRC_SERVICE.format("greeter"),
    },
}

_ATOM = re.compile(
    r"^[<>=~]*(?P<cp>[A-Za-z0-9+_.-]+/[A-Za-z0-9+_-]+?)"
    r"(?:-\d[\w.]*(?:-r\d+)?\*?)?(?::[\w+./*=-]+)?$"
)


def set_files() -> dict[str, str]:
    """Every file of the package-set tree, by path under packages/."""
    files = {f"common.{sfx}": dedent(text) for sfx, text in COMMON.items()}
    for stem, parts in SETS.items():
        files.update({f"{stem}.{sfx}": dedent(text) for sfx, text in parts.items()})
    table = "".join(f"  {f.selection:<17} {f.stem:<28} {f.profile}\n" for f in FLAVOURS)
    files[README] = (
        f"{MARKER}: common.* apply to every flavour, <stem>.* to one.\n\n"
        f"  selection         stem                         profile\n{table}"
    )
    return files


def check_names(files: Mapping[str, str], repo: RepoInfo) -> None:
    """Refuse a set naming a package or a USE flag the lab repository does not have."""
    unknown: list[str] = []
    for path, text in files.items():
        if path.rsplit(".", 1)[-1] not in ATOM_SUFFIXES:
            continue
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            match = _ATOM.match(words[0])
            if match is None or not repo.has_package(match["cp"]):
                unknown.append(f"{path}: {words[0]}")
                continue
            if path.endswith(".uses"):
                iuse = repo.flags[match["cp"]]
                bad = [w for w in words[1:] if w.lstrip("-") not in iuse]
                unknown += [f"{path}: {words[0]} {w}" for w in bad]
    if unknown:
        raise LabTreeError(f"package sets name what the lab repository lacks: {unknown}")


def write_package_sets(dest: Path, repo: RepoInfo) -> None:
    """Write the site `packages/` tree at `dest` (replacing one written earlier)."""
    files = set_files()
    check_names(files, repo)
    with staged(dest.absolute(), ours=_is_lab_sets, what="package-set tree") as new:
        for rel, text in sorted(files.items()):
            path = new / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


def _is_lab_sets(path: Path) -> bool:
    try:
        return (path / README).read_text().startswith(MARKER)
    except OSError:
        return False
