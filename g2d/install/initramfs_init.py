"""The /init of g2d's initramfs: a busybox shell script, kept apart from the builder.

It reads the root from the kernel command line the boot entry wrote (``root=UUID=...``,
``root=LABEL=...``, ``root=/dev/...``, ``rootfstype=``, ``rootflags=``, ``ro``/``rw``,
``init=``), loads modules, waits for the root device, mounts it and switches to it.
Drivers are loaded at every boot (/etc/g2d/modules); a file system's modules only for a
root of that type (/etc/g2d/modules.<fs>; all of them when no ``rootfstype=`` is given).
``root=ZFS=...`` and ``root=PARTUUID=...`` are refused with a message that says so: this
initramfs carries neither ZFS nor a partition table reader. Every line it prints starts
with ``g2d-initramfs:``; a failure prints ``g2d-initramfs: FAILED: <why>`` and then does
what ``g2d.onfail=`` says: ``shell`` (default, a rescue shell on the console), ``poweroff``
or ``reboot``.
``g2d.rootwait=<seconds>`` bounds the wait for the device (default 30).
``g2d.rootdir=/g1`` boots a root kept in a directory of its file system (install puts an
ext4/xfs generation there): the file system is mounted aside, the directory is bind-mounted
as the new root and the file system itself is let go (lazily: the bind keeps it mounted).
"""

from __future__ import annotations

MODULES_DIR = "etc/g2d"


def module_list(fs: str) -> str:
    """The list of module paths loaded always (``fs=""``) or for a root of type ``fs``."""
    return f"{MODULES_DIR}/modules{'.' + fs if fs else ''}"


FAILED = "g2d-initramfs: FAILED:"

INIT = r"""#!/bin/sh
# g2d initramfs: load modules, mount the root named on the kernel command line, switch to it.
PATH=/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "g2d-initramfs: $*" >/dev/console; }
fail() {
	say "FAILED: $*"
	case "$onfail" in
	poweroff) poweroff -f ;;
	reboot) reboot -f ;;
	esac
	say "starting a rescue shell"
	exec sh </dev/console >/dev/console 2>&1
}

root="" fstype="" flags="" init=/sbin/init mode=ro onfail=shell rootwait=30 rootdir=""
set -f # split the command line into words, never expand them as file names
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	root=*) root="${arg#root=}" ;;
	rootfstype=*) fstype="${arg#rootfstype=}" ;;
	rootflags=*) flags="${arg#rootflags=}" ;;
	init=*) init="${arg#init=}" ;;
	ro) mode=ro ;;
	rw) mode=rw ;;
	g2d.onfail=*) onfail="${arg#g2d.onfail=}" ;;
	g2d.rootwait=*) rootwait="${arg#g2d.rootwait=}" ;;
	g2d.rootdir=*) rootdir="${arg#g2d.rootdir=}" ;;
	esac
done
set +f

load() {
	while read -r module; do
		[ -n "$module" ] || continue
		insmod "/lib/modules/$(uname -r)/$module" 2>/dev/null || say "could not load $module"
	done <"$1"
}
load /@MODULES_DIR@/modules
if [ -z "$fstype" ]; then
	for list in /@MODULES_DIR@/modules.*; do load "$list"; done
elif [ -f "/@MODULES_DIR@/modules.$fstype" ]; then
	load "/@MODULES_DIR@/modules.$fstype"
else
	say "no $fstype modules in this initramfs; trying the kernel's own"
fi

case "$root" in
"") fail "no root= on the kernel command line" ;;
ZFS=*) fail "root=$root: this initramfs cannot import ZFS pools (it has no zfs module or zpool)" ;;
PARTUUID=*) fail "root=$root: this initramfs finds roots by UUID or LABEL, not PARTUUID" ;;
esac

find_root() {
	case "$root" in
	/dev/*) [ -b "$root" ] && echo "$root" ;;
	*) findfs "$root" 2>/dev/null ;;
	esac
}
dev=$(find_root)
tries=$((rootwait * 10))
while [ -z "$dev" ] && [ "$tries" -gt 0 ]; do
	usleep 100000
	tries=$((tries - 1))
	dev=$(find_root)
done
[ -n "$dev" ] || fail "no device for root=$root after ${rootwait}s"

mkdir -p /newroot /fsroot
options="$mode${flags:+,$flags}"
case "$rootdir" in
"" | /) top=/newroot rootdir="" ;;
/*) top=/fsroot ;;
*) fail "g2d.rootdir=$rootdir is not an absolute path" ;;
esac
if ! mount ${fstype:+-t "$fstype"} -o "$options" "$dev" "$top"; then
	fail "cannot mount $dev (root=$root${fstype:+ type $fstype}, options $options)"
fi
if [ -n "$rootdir" ]; then
	if [ ! -d "/fsroot$rootdir" ]; then
		umount /fsroot
		fail "the file system on $dev has no directory $rootdir"
	fi
	# the bind keeps the file system mounted once its own mount is let go
	mount --bind "/fsroot$rootdir" /newroot || fail "cannot bind $rootdir of $dev"
	umount -l /fsroot
fi
if [ ! -e "/newroot$init" ] && [ ! -L "/newroot$init" ]; then
	umount /newroot
	fail "the root on $dev${rootdir:+ in $rootdir} has no $init"
fi
say "root $dev${rootdir:+ directory $rootdir} mounted ($options), starting $init"
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
umount /sys
umount /proc
exec switch_root /newroot "$init"
""".replace("@MODULES_DIR@", MODULES_DIR)
