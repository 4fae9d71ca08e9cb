"""The lab repository's profiles, shaped like Gentoo's 23.0 tree, as data.

Leaf profiles sit under `default/linux/amd64/23.0` as on Gentoo; what they add comes, as on
Gentoo, from mix-ins they name in `parent`: `base` (USE_EXPAND, licenses, the @system
stand-ins), `arch/amd64` (ARCH, keywords, CHOST), `features/{systemd,selinux,hardened}` and
`targets/desktop[/plasma|/gnome]`. OpenRC is the unsuffixed default; `features/systemd`
swaps it out of @system (`-*`) for the systemd stand-in.
"""

from __future__ import annotations

import os
from textwrap import dedent

PROFILE_EAPI = "8"
ROOT_PROFILE = "default/linux/amd64/23.0"

# profile path (under profiles/) -> its parents (also paths under profiles/), in order
_23 = ROOT_PROFILE
PARENTS: dict[str, tuple[str, ...]] = {
    "base": (),
    "arch/amd64": (),
    "features/systemd": (),
    "features/selinux": (),
    "features/hardened": (),
    "targets/desktop": (),
    "targets/desktop/plasma": (),
    "targets/desktop/gnome": (),
    "default/linux": ("base",),
    "default/linux/amd64": ("default/linux", "arch/amd64"),
    _23: ("default/linux/amd64",),
    f"{_23}/systemd": (_23, "features/systemd"),
    f"{_23}/desktop": (_23, "targets/desktop"),
    f"{_23}/desktop/systemd": (f"{_23}/desktop", "features/systemd"),
    f"{_23}/desktop/plasma": (f"{_23}/desktop", "targets/desktop/plasma"),
    f"{_23}/desktop/plasma/systemd": (f"{_23}/desktop/plasma", "features/systemd"),
    f"{_23}/desktop/gnome": (f"{_23}/desktop", "targets/desktop/gnome"),
    f"{_23}/desktop/gnome/systemd": (f"{_23}/desktop/gnome", "features/systemd"),
    f"{_23}/selinux": (_23, "features/selinux"),
    f"{_23}/hardened": (_23, "features/hardened"),
    f"{_23}/hardened/selinux": (f"{_23}/hardened", "features/selinux"),
}

# The profiles `eselect profile list` shows (profiles.desc): every leaf above, all stable.
SELECTABLE: tuple[str, ...] = tuple(p for p in PARENTS if p.startswith(f"{_23}"))

_BASE_MAKE_DEFAULTS = """\
    # The lab's stand-in for Gentoo's profiles/base/make.defaults.
    ACCEPT_LICENSE="-* @FREE"
    USE="nls"
    ELIBC="glibc"
    KERNEL="linux"
    USE_EXPAND="ELIBC KERNEL"
    USE_EXPAND_HIDDEN="ELIBC KERNEL"
    USE_EXPAND_IMPLICIT="ARCH ELIBC KERNEL"
    USE_EXPAND_UNPREFIXED="ARCH"
    USE_EXPAND_VALUES_ARCH="amd64"
    USE_EXPAND_VALUES_ELIBC="glibc"
    USE_EXPAND_VALUES_KERNEL="linux"
    IUSE_IMPLICIT="prefix prefix-guest prefix-stack"
    CONFIG_PROTECT="/etc"
    CONFIG_PROTECT_MASK="/etc/env.d"
    PROFILE_ONLY_VARIABLES="ARCH ELIBC IUSE_IMPLICIT KERNEL USE_EXPAND_IMPLICIT
        USE_EXPAND_UNPREFIXED USE_EXPAND_VALUES_ARCH USE_EXPAND_VALUES_ELIBC
        USE_EXPAND_VALUES_KERNEL"
"""

_AMD64_MAKE_DEFAULTS = """\
    ARCH="amd64"
    ACCEPT_KEYWORDS="amd64"
    CHOST="x86_64-pc-linux-gnu"
    CFLAGS="-O2 -pipe"
    CXXFLAGS="${CFLAGS}"
    FCFLAGS="${CFLAGS}"
    FFLAGS="${CFLAGS}"
"""

# (profile, file) -> text; every profile also gets `eapi`, and `parent` when it has parents
FILES: dict[tuple[str, str], str] = {
    ("base", "make.defaults"): _BASE_MAKE_DEFAULTS,
    ("base", "packages"): """\
        # @system of every lab profile (a leading * marks a @system member)
        *sys-apps/baselayout-lab
        *virtual/service-manager
        *sys-apps/openrc-lab
    """,
    ("base", "use.mask"): """\
        # Only the selinux profiles unmask it
        selinux
    """,
    ("arch/amd64", "make.defaults"): _AMD64_MAKE_DEFAULTS,
    ("features/systemd", "make.defaults"): 'USE="systemd"\n',
    ("features/systemd", "packages"): """\
        -*sys-apps/openrc-lab
        *sys-apps/systemd-lab
    """,
    ("features/selinux", "make.defaults"): 'USE="selinux"\n',
    ("features/selinux", "use.mask"): "-selinux\n",
    ("features/selinux", "packages"): "*sec-policy/selinux-base-lab\n",
    ("features/hardened", "make.defaults"): 'USE="hardened"\n',
    ("targets/desktop", "make.defaults"): 'USE="X dbus wayland"\n',
    ("targets/desktop/plasma", "make.defaults"): 'USE="kde"\n',
    ("targets/desktop/gnome", "make.defaults"): 'USE="gnome"\n',
}

GLOBAL_FLAGS: dict[str, str] = {
    "X": "Add support for X11",
    "dbus": "Enable dbus support",
    "doc": "Add extra documentation",
    "gnome": "Add GNOME support",
    "hardened": "Activate default security enhancements for toolchain",
    "kde": "Add support for KDE software",
    "nls": "Add Native Language Support",
    "selinux": "Enable SELinux support",
    "systemd": "Enable use of systemd-specific libraries and features",
    "wayland": "Enable dev-libs/wayland backend",
}


def profile_files() -> dict[str, str]:
    """Every file under profiles/ that belongs to a profile, by path under profiles/."""
    out: dict[str, str] = {}
    for profile, parents in PARENTS.items():
        out[f"{profile}/eapi"] = PROFILE_EAPI + "\n"
        if parents:
            rel = [os.path.relpath(p, profile) for p in parents]
            out[f"{profile}/parent"] = "".join(f"{r}\n" for r in rel)
    for (profile, name), text in FILES.items():
        out[f"{profile}/{name}"] = dedent(text)
    return out


def profiles_desc() -> str:
    rows = "".join(f"amd64\t{p}\tstable\n" for p in SELECTABLE)
    return "# g2d lab profiles: arch, profile directory, status\n" + rows


def use_desc() -> str:
    rows = "".join(f"{flag} - {text}\n" for flag, text in sorted(GLOBAL_FLAGS.items()))
    return "# Global USE flags of the g2d lab repository\n" + rows
