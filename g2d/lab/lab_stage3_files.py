"""The files that make a Debian root look and behave like a Gentoo stage3 to g2d and Portage."""

from __future__ import annotations

import os
from pathlib import Path

from g2d.lab.lab_names import Stamp, Variant, boot_marker

GENTOO_RELEASE = "Gentoo Base System release 2.17\n"

# As catalyst writes it into every stage3, plus what this userland needs (see the comments).
MAKE_CONF = """\
# These settings were set by the catalyst build script that automatically
# built this stage.
# Please consult /usr/share/portage/config/make.conf.example for a more
# detailed example.
COMMON_FLAGS="-O2 -pipe"
CFLAGS="${COMMON_FLAGS}"
CXXFLAGS="${COMMON_FLAGS}"
FCFLAGS="${COMMON_FLAGS}"
FFLAGS="${COMMON_FLAGS}"

# g2d lab: this stage3 is Debian's userland with Gentoo's Portage. It has no sandbox
# program, so the sandbox features are off; everything else is Portage's default.
FEATURES="-sandbox -usersandbox"
# No getuto here: g2d (or the user) fills /etc/portage/gnupg for binpkg signatures.
PORTAGE_TRUST_HELPER=""

# This sets the language of build output to English.
# Please keep this setting intact when reporting bugs.
LC_MESSAGES=C.utf8
"""

REPOS_CONF = """\
[DEFAULT]
main-repo = {name}

[{name}]
location = /var/db/repos/gentoo
sync-type = rsync
# the lab's rsync daemon listens on a port chosen by `g2d lab up`; g2d rewrites this line
sync-uri = rsync://rsync.lab.g2d.invalid/gentoo-portage
auto-sync = yes
"""

# Runs as pid 1. A real stage3 starts openrc-init or systemd here; the lab only proves that
# a kernel found and ran this root, on the console a boot test reads, and powers off. Run by
# anything but a kernel (not pid 1: a chroot, a test) it must not power off the host. No
# sysrq fallback either: if poweroff fails, init exits and the kernel panics, which a boot
# test (qemu -no-reboot) sees as the end just the same.
INIT = """\
#!/bin/sh
# g2d lab stage3 init ({variant}): print the boot marker on the console, then power off.
if [ "$$" != 1 ]; then
	echo "g2d lab init: not pid 1, not booting (would print: {marker})" >&2
	exit 2
fi
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "{marker}" >/dev/console
sync
busybox poweroff -f
sleep 10
"""


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    os.chmod(path, mode)


def _symlink(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def write_portage_config(root: Path, *, repo_name: str, profile: str) -> None:
    """/etc/portage as a stage3 has it: make.conf, repos.conf, the profile link."""
    etc = root / "etc/portage"
    _write(etc / "make.conf", MAKE_CONF)
    _write(etc / "repos.conf/gentoo.conf", REPOS_CONF.format(name=repo_name))
    _symlink(etc / "make.profile", f"../../var/db/repos/gentoo/profiles/{profile}")
    for rel in ("var/cache/distfiles", "var/cache/binpkgs", "var/db/pkg", "var/lib/portage"):
        (root / rel).mkdir(parents=True, exist_ok=True)
    world = root / "var/lib/portage/world"
    if not world.exists():
        world.write_text("")


def write_identity(root: Path, *, variant: Variant, stamp: Stamp) -> None:
    """/etc/gentoo-release and os-release: Gentoo's names, and what this root really is."""
    _write(root / "etc/gentoo-release", GENTOO_RELEASE)
    _write(
        root / "usr/lib/os-release",
        "NAME=Gentoo\n"
        "ID=gentoo\n"
        'PRETTY_NAME="Gentoo Linux"\n'
        'VERSION_ID="2.17"\n'
        'HOME_URL="https://www.gentoo.org/"\n'
        f'VARIANT="g2d lab stage3, {variant}, Debian userland"\n'
        f"VARIANT_ID=g2d-lab-{variant}\n"
        f"BUILD_ID={stamp}\n",
    )
    _symlink(root / "etc/os-release", "../usr/lib/os-release")


def write_init(root: Path, *, variant: Variant, stamp: Stamp) -> None:
    """The variant's init, printing ``boot_marker(variant, stamp)``; /sbin/init leads to it."""
    text = INIT.format(variant=variant, marker=boot_marker(variant, stamp))
    _write(root / variant.init_path(), text, 0o755)
    if variant is Variant.systemd:  # as Gentoo's systemd[sysv-utils] links it
        _symlink(root / "usr/sbin/init", "../lib/systemd/systemd")
