"""A whole deploy: the ``deploy`` flow against the same steps as a bare shell script.

Both sides deploy the lab's ``openrc`` profile from the same dom0 tree (laid out from the
built lab like tests/flows/test_deploy_flow.py: releases fetched and verified from the lab
over file://, the repository, binhost, distfiles, kernels and patchfiles linked, packages
copied; the lab itself is never written) into a fresh zfs-fuse pool of their own, made
before the clock starts and destroyed after it stops. The Prefect server (a test harness)
starts once, before any timing: a deploy does not include starting Prefect.

Why ZFS (zfs-fuse) and not btrfs on a loop device: on ZFS every lineage change g2d makes
(create with origin, record ``g2d:*``, snapshot, hold, mark sealed) is a ``zfs`` command a
shell script runs just the same, so both sides pay the same backend for the same changes.
On btrfs g2d keeps its metadata in its own layout (xattrs and sidecar files,
``storage.btrfs_layout``), which the baseline would have to reimplement rather than call.
ZFS is also the backend the issue's flow test and docs/deploy.md's cost figures use.

The baseline (``SCRIPT``, run with bash) does what the handbook and the old deploy.sh do:
zfs create with the origin properties; gpg --verify of the DIGESTS and the .asc, BLAKE2B
and SHA512 checked with b2sum/sha512sum; ``tar xpf --xattrs-include='*.*' --numeric-owner``;
patchfiles copied with cp -a; package sets concatenated into /etc/portage and make.conf;
the binpkg keyring; profile, timezone and locale links and files; then, in one
``unshare --mount --pid`` namespace with the flow's mounts and read-only binds, ``chroot``
emerge with the flow's exact options and environment, the site's .patches, locale-gen and
env-update; services links; useradd/chpasswd --root and authorized_keys; the kernel (tar x
of the modules, install of the boot files); then zfs set of the g2d:* results, snapshot,
hold and state sealed. What the script leaves out is what g2d adds on purpose: the member
check of the tarball, atom checks, the lineage journal and locks, the run's records.

Target (issue 6): overhead at most 10 % or 15 s, whichever is larger, i.e.
``g2d_s <= max(1.10 * base_s, base_s + 15)``. As a minimum speed ratio (bench/common.py:
baseline time / g2d time) that is ``min(1 / 1.10, base_s / (base_s + 15))``, computed from
the measured baseline. ``python -m bench deploy`` from the repository root (as root).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from bench.common import Comparison
from g2d.core.errors import CommandFailed
from g2d.core.lineage import SEAL_HOLD
from g2d.core.package_sets import SetFile
from g2d.core.service_lines import InitSystem, ServiceVerb
from g2d.hosts.chroot import BASE_ENV as CHROOT_ENV
from g2d.lab.build import build_lab
from g2d.lab.keys import ensure_keys
from g2d.lab.layout import LabLayout
from g2d.lab.zfs_fuse import ZfsFuse, create_pool, ensure_zfs_fuse, pool_names
from g2d.rootfs.deploy_work import DeployInputs, DeployOptions, preflight
from g2d.rootfs.dom0_tree import Dom0Tree
from g2d.rootfs.emerge import BASE_ENV as EMERGE_ENV
from g2d.rootfs.emerge import EMERGE_OPTIONS
from g2d.rootfs.portage_sources import (
    DISTFILES_MIRROR_IN_ROOT,
    PKGDIR_IN_ROOT,
    REPOS_IN_ROOT,
)
from g2d.sources.keyring import Keyring
from g2d.sources.stage3 import fetch_stage3

REPO = Path(__file__).resolve().parent.parent
PROFILE = "openrc"
POOL_MIB = 1024  # sparse: the lab root and its snapshot fit, as in the flow test
TARGET_PERCENT = 0.10
TARGET_SECONDS = 15.0
LINKED = ("binpkgs", "distfiles", "kernels")
# package-set file -> /etc/portage entry, as g2d.core.package_sets renders them
PORTAGE_FILES = {
    SetFile.uses: "package.use",
    SetFile.keys: "package.accept_keywords",
    SetFile.license: "package.license",
    SetFile.mask: "package.mask",
    SetFile.unmask: "package.unmask",
}


def lab() -> LabLayout:
    layout = LabLayout(Path(os.environ.get("G2D_TEST_LAB") or REPO / "state" / "test-lab"))
    build_lab(layout)  # a second or so when the tests' lab is built already
    return layout


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kw)  # type: ignore[call-overload]


def _kill_agent(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False,
                   capture_output=True)  # fmt: skip


# --- the dom0 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dom0:
    root: Path
    release_key: Path
    binpkg_key: Path


def make_dom0(layout: LabLayout, where: Path) -> Dom0:
    """The flow test's dom0: nothing of the lab is written, only read or linked."""
    keys_dir = where / "keys"
    keys_dir.mkdir(parents=True)
    keys = ensure_keys(layout.gnupg)
    try:
        keys.export_public(keys.binpkg, keys_dir / "binpkg.asc")
        keys.export_public(keys.release, keys_dir / "release.asc")
    finally:
        _kill_agent(layout.gnupg)
    root = where / "dom0"
    root.mkdir()
    ring = root / ".keyring"
    try:
        with Keyring.from_key_files(ring, [keys_dir / "release.asc"]) as keyring:
            fetch_stage3(f"file://{layout.releases}/", root / "releases", variant=PROFILE,
                         keyring=keyring)  # fmt: skip
    finally:
        _kill_agent(ring)
        shutil.rmtree(ring, ignore_errors=True)
    (root / "repos").mkdir()
    (root / "repos/gentoo").symlink_to(layout.gentoo_repo)
    for part in LINKED:
        (root / part).symlink_to(layout.mirror / part)
    (root / "patchfiles").symlink_to(layout.patchfiles)
    shutil.copytree(layout.packages, root / "packages")
    (root / "meta/keys/binpkg").mkdir(parents=True)
    shutil.copy(keys_dir / "binpkg.asc", root / "meta/keys/binpkg/lab.asc")
    hashed = _run(["openssl", "passwd", "-6", "-stdin"], input=os.urandom(12).hex()).stdout
    (root / "meta/users.toml").write_text(
        f'[[user]]\nname = "sysop"\ngroups = ["users", "portage"]\nshell = "/bin/sh"\n'
        f'password_hash = "{hashed.strip()}"\n'
        'ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2d sysop@dom0"]\n'
    )
    return Dom0(root, keys_dir / "release.asc", root / "meta/keys/binpkg/lab.asc")


def warm(dom0: Dom0) -> None:
    """Read what both sides read, so neither pays the first cold read; flush writeback."""
    for part in ("releases", "binpkgs", "kernels"):
        for dirpath, _dirs, files in os.walk(dom0.root / part, followlinks=True):
            for name in files:
                with open(os.path.join(dirpath, name), "rb") as f:
                    while f.read(1 << 20):
                        pass
    subprocess.run(["sync"], check=True)


# --- the baseline script -------------------------------------------------------------------

SCRIPT = r"""#!/bin/bash
# The same deploy as g2d's flow, as a bare script. Parameters come from params.sh.
set -euo pipefail
. "$(dirname "$0")/params.sh"
step() { printf '%s %s\n' "$EPOCHREALTIME" "$1" >> "$STEPS"; }

if [ "${1:-}" = in-namespace ]; then
    # pid 1 of a new PID and mount namespace (a slave of the parent's): every mount below
    # goes when this shell exits, as with g2d's Chroot
    mount -t proc -o nosuid,nodev,noexec proc "$ROOT/proc"
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$ROOT/sys"
    mount --rbind /dev "$ROOT/dev"
    mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs "$ROOT/run"
    bind_ro() {
        mkdir -p "$ROOT$2"
        mount --bind "$1" "$ROOT$2"
        mount -o remount,bind,ro "$ROOT$2"
    }
    bind_ro "$DOM0/repos/gentoo" "$REPOS_IN_ROOT/gentoo"
    bind_ro "$DOM0/binpkgs" "$PKGDIR_IN_ROOT"
    bind_ro "$DOM0/distfiles" "$DISTFILES_IN_ROOT"
    in_root() { env -i "${CHROOT_ENV[@]}" chroot "$ROOT" "$@"; }
    env -i "${CHROOT_ENV[@]}" "${EMERGE_ENV[@]}" chroot "$ROOT" \
        emerge "${EMERGE_OPTS[@]}" -- "${TARGETS[@]}" > "$LOGS/emerge.out"
    step patches
    in_root /bin/sh -s < "$WORK/patches.sh" > "$LOGS/patches.out"
    step chroot
    for tool in locale-gen env-update; do
        in_root "$tool" || [ $? -eq 127 ]   # 127: not in the root (the lab's musl)
    done
    exit 0
fi

step create
zfs create -p "${CREATE_PROPS[@]}" "$DATASET"
ROOT=$(zfs get -H -o value mountpoint "$DATASET")
printf 'ROOT=%q\n' "$ROOT" >> "$(dirname "$0")/params.sh"

step verify
export GNUPGHOME=$(mktemp -d /tmp/g2d-base-gpg-XXXXXX)
trap 'gpgconf --homedir "$GNUPGHOME" --kill gpg-agent; rm -rf "$GNUPGHOME"' EXIT
gpg --batch --quiet --import "$RELEASE_KEY"
gpg --batch --quiet --output "$WORK/digests.txt" --decrypt "$STAGE3.DIGESTS"
listed() {  # the line for the tarball under "# $1 HASH" in the verified text
    awk -v f="$(basename "$STAGE3")" -v h="# $1 HASH" '$0==h {p=1; next} p && $2==f {print; exit}' \
        "$WORK/digests.txt"
}
(cd "$(dirname "$STAGE3")" &&
    listed BLAKE2B | b2sum -c --quiet && listed SHA512 | sha512sum -c --quiet)
gpg --batch --quiet --verify "$STAGE3.asc" "$STAGE3"

step extract
tar xpf "$STAGE3" --xattrs-include='*.*' --numeric-owner -C "$ROOT"
zfs set g2d:deploy-done=extract "$DATASET"

step patchfiles
for top in etc var usr root home srv portage; do
    [ -d "$PATCHFILES/$top" ] || continue
    dest="$ROOT/$top"; [ "$top" = portage ] && dest="$ROOT/etc/portage"
    mkdir -p "$dest"
    find "$PATCHFILES/$top" -mindepth 1 -maxdepth 1 -exec cp -a -t "$dest" {} +
done

step portage
for kind in "${!PORTAGE_FILES[@]}"; do
    dir="$ROOT/etc/portage/${PORTAGE_FILES[$kind]}"
    if [ -f "$dir" ]; then mv "$dir" "$dir.local"; mkdir "$dir"; mv "$dir.local" "$dir/00-local"; fi
    mkdir -p "$dir"
    for f in "$PACKAGES/common.$kind" "$PACKAGES/$STEM.$kind"; do
        [ -f "$f" ] && cat "$f"
    done > "$dir/g2d-site"
done
for f in "$PACKAGES/common.conf" "$PACKAGES/$STEM.conf"; do
    [ -f "$f" ] && cat "$f"
done >> "$ROOT/etc/portage/make.conf"
echo "MAKEOPTS=\"$MAKEOPTS\"" >> "$ROOT/etc/portage/make.conf"
keys=$(mktemp -d /tmp/g2d-base-keys-XXXXXX)
gpg --homedir "$keys" --batch --quiet --import "$BINPKG_KEY"
gpg --homedir "$keys" --batch --with-colons --list-keys |
    awk -F: '/^pub:/{p=1; next} p && /^fpr:/{print $10 ":6:"; p=0}' |
    gpg --homedir "$keys" --batch --quiet --import-ownertrust
gpg --homedir "$keys" --batch --quiet --check-trustdb
gpgconf --homedir "$keys" --kill gpg-agent
rm -rf "$ROOT/etc/portage/gnupg" "$keys"/S.* "$keys"/*~
cp -r "$keys" "$ROOT/etc/portage/gnupg"
rm -rf "$keys"
find "$ROOT/etc/portage/gnupg" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +

step system
ln -sfn "../../$REPOS_IN_ROOT_REL/gentoo/profiles/$SYSTEM_PROFILE" "$ROOT/etc/portage/make.profile"
ln -sfn "../usr/share/zoneinfo/$TIMEZONE" "$ROOT/etc/localtime"
echo "$TIMEZONE" > "$ROOT/etc/timezone"
printf '%s %s\n' "$LOCALE" "${LOCALE#*.}" > "$ROOT/etc/locale.gen"
mkdir -p "$ROOT/etc/env.d"
echo "LANG=\"$LANG_NAME\"" > "$ROOT/etc/env.d/02locale"
echo "LANG=$LANG_NAME" > "$ROOT/etc/locale.conf"

step emerge
unshare --mount --propagation slave --pid --fork --kill-child -- bash "$0" in-namespace
merged=$(grep -c '::: completed emerge' "$ROOT/var/log/emerge.log" || true)
# zfs-fuse's zfs set takes one property a command (g2d's plans do the same)
for prop in g2d:deploy-done=extract,patchfiles,portage,system,emerge "g2d:emerge-merged=$merged" \
            "g2d:emerge-binary=$merged" g2d:emerge-built=0 "g2d:emerge-seconds=$SECONDS"; do
    zfs set "$prop" "$DATASET"
done

step services
while read -r level service; do
    mkdir -p "$ROOT/etc/runlevels/$level"
    ln -sfn "/etc/init.d/$service" "$ROOT/etc/runlevels/$level/$service"
done < "$WORK/services"

step users
useradd --root "$ROOT" --create-home --groups "$USER_GROUPS" --shell "$USER_SHELL" "$USER_NAME"
chpasswd --root "$ROOT" --encrypted < "$WORK/chpasswd"
ids=$(awk -F: -v u="$USER_NAME" '$1==u {print $3 ":" $4 ":" $6}' "$ROOT/etc/passwd")
IFS=: read -r uid gid home <<< "$ids"
install -d -m 0700 -o "$uid" -g "$gid" "$ROOT$home/.ssh"
install -m 0600 -o "$uid" -g "$gid" "$WORK/authorized_keys" "$ROOT$home/.ssh/authorized_keys"

step kernel
for f in vmlinuz System.map config; do
    install -D -m 0644 "$KERNEL_DIR/$f" "$ROOT/boot/$f-$KERNEL"
done
mkdir -p "$ROOT/lib/modules"
tar -x -z -f "$KERNEL_DIR/modules.tar.gz" -C "$ROOT" --numeric-owner \
    --keep-directory-symlink --no-overwrite-dir
sha256sum < "$KERNEL_DIR/modules.tar.gz" | cut -d' ' -f1 \
    > "$ROOT/lib/modules/$KERNEL/.g2d-modules.sha256"

step seal
zfs set "g2d:deploy-done=$ALL_STEPS" "$DATASET"
zfs set "g2d:kernel=$KERNEL" "$DATASET"
snap="$DATASET@$SNAPSHOT"
zfs snapshot -o "g2d:gen=$GEN" -o "g2d:sealed=$SEALED" "$snap"
zfs hold "$SEAL_HOLD" "$snap"
zfs set g2d:state=sealed "$DATASET"
step end
"""


def _array(name: str, words: list[str]) -> str:
    return f"{name}=({' '.join(shlex.quote(w) for w in words)})\n"


def _scalar(name: str, value: object) -> str:
    return f"{name}={shlex.quote(str(value))}\n"


def write_script(work: Path, inputs: DeployInputs, dom0: Dom0, dataset: str) -> Path:
    """The script, its params.sh and data files, from the inputs the flow checks too."""
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stage3 = inputs.stage3.stage3.path
    logs = work / "logs"
    logs.mkdir(parents=True)
    (user,) = inputs.users  # the dom0's users file holds one
    (work / "chpasswd").write_text(f"{user.name}:{user.password_hash}\n")
    (work / "authorized_keys").write_text("".join(f"{k}\n" for k in user.ssh_authorized_keys))
    (work / "patches.sh").write_text(inputs.package_set.script(SetFile.patches))
    services = [a for a in inputs.package_set.services() if a.init is InitSystem.openrc]
    if any(a.verb is not ServiceVerb.enable for a in services):
        raise RuntimeError("the baseline enables services only; the lab's profile changed")
    (work / "services").write_text("".join(f"{a.runlevel} {a.name}\n" for a in services))
    lang = inputs.options.locales[0]
    create_props = {
        "g2d:gen": "g1", "g2d:state": "building", "g2d:created": now,
        "g2d:stage3": stage3.name, "g2d:profile": inputs.system_profile,
        "g2d:kernel": inputs.kernel, "g2d:flow-run": "baseline",
        "g2d:site-profile": inputs.profile,
    }  # fmt: skip
    env = {**CHROOT_ENV}
    emerge_env = {**EMERGE_ENV, "PKGDIR": PKGDIR_IN_ROOT,
                  "GENTOO_MIRRORS": DISTFILES_MIRROR_IN_ROOT,
                  "FEATURES": "binpkg-request-signature"}  # fmt: skip
    name, _, enc = lang.partition(".")
    params = "".join([
        _scalar("WORK", work), _scalar("LOGS", logs), _scalar("STEPS", work / "steps"),
        _scalar("DATASET", dataset), _scalar("DOM0", dom0.root), _scalar("STAGE3", stage3),
        _scalar("RELEASE_KEY", dom0.release_key), _scalar("BINPKG_KEY", dom0.binpkg_key),
        _scalar("PATCHFILES", dom0.root / "patchfiles"),
        _scalar("PACKAGES", dom0.root / "packages"),
        _scalar("STEM", inputs.profile), _scalar("MAKEOPTS", inputs.options.makeopts),
        _scalar("SYSTEM_PROFILE", inputs.system_profile),
        _scalar("REPOS_IN_ROOT", REPOS_IN_ROOT), _scalar("REPOS_IN_ROOT_REL", REPOS_IN_ROOT[1:]),
        _scalar("PKGDIR_IN_ROOT", PKGDIR_IN_ROOT),
        _scalar("DISTFILES_IN_ROOT", DISTFILES_MIRROR_IN_ROOT),
        _scalar("TIMEZONE", inputs.options.timezone), _scalar("LOCALE", lang),
        _scalar("LANG_NAME", f"{name}.{enc.lower().replace('-', '')}"),
        _scalar("USER_NAME", user.name), _scalar("USER_GROUPS", ",".join(user.groups)),
        _scalar("USER_SHELL", user.shell or "/bin/bash"),
        _scalar("KERNEL", inputs.kernel),
        _scalar("KERNEL_DIR", inputs.dom0.kernels / "current" / inputs.kernel),
        _scalar("ALL_STEPS", "extract,patchfiles,portage,system,emerge,patches,chroot,"
                             "services,users,kernel"),
        _scalar("SNAPSHOT", f"g1-{now}"), _scalar("SEALED", now), _scalar("GEN", "g1"),
        _scalar("SEAL_HOLD", SEAL_HOLD),
        _array("CREATE_PROPS", [w for k, v in create_props.items() for w in ("-o", f"{k}={v}")]),
        _array("CHROOT_ENV", [f"{k}={v}" for k, v in env.items()]),
        _array("EMERGE_ENV", [f"{k}={v}" for k, v in emerge_env.items()]),
        _array("EMERGE_OPTS", [*EMERGE_OPTIONS, f"--jobs={inputs.options.jobs}"]),
        _array("TARGETS", list(inputs.targets)),
        "declare -A PORTAGE_FILES=("
        + " ".join(f"[{k}]={v}" for k, v in PORTAGE_FILES.items()) + ")\n",
    ])  # fmt: skip
    (work / "params.sh").write_text(params)
    script = work / "deploy.sh"
    script.write_text(SCRIPT)
    return script


# --- one run of each side ------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    seconds: float
    steps: list[tuple[str, float]]  # (what, seconds), in order


@contextmanager
def fresh_pool(where: Path) -> Iterator[tuple[str, Path]]:
    mnt = where / "zfs-mnt"
    pool = create_pool(where / "vdevs", size_mib=POOL_MIB, mountpoint=mnt)
    try:
        yield pool.name, mnt
    finally:
        try:
            pool.destroy()
        except CommandFailed:  # zfs-fuse under load: "pool is busy" may outlast its retries
            _destroy_late(pool.name)
        shutil.rmtree(where, ignore_errors=True)


def _destroy_late(name: str, patience: float = 300.0) -> None:
    deadline = time.monotonic() + patience
    while name in pool_names():
        if time.monotonic() > deadline:
            raise RuntimeError(f"zpool {name} stays busy; destroy it: zpool destroy -f {name}")
        subprocess.run(["zpool", "destroy", "-f", name], capture_output=True, check=False)
        time.sleep(2)


def run_flow(dom0: Dom0, where: Path) -> Run:
    from g2d.flows.deploy import deploy

    with fresh_pool(where) as (pool, _mnt):
        warm(dom0)
        started = time.perf_counter()
        state = deploy(PROFILE, f"zfs://{pool}/sys", dom0_root=str(dom0.root),
                       release_keys=[str(dom0.release_key)], return_state=True)  # fmt: skip
        seconds = time.perf_counter() - started
        if not state.is_completed():
            raise RuntimeError(f"the deploy flow failed: {state.message}")
        out = state.result()
        if out["state"] != "sealed":
            raise RuntimeError(f"the deploy flow left {out['generation']} {out['state']}")
        steps = _task_times(state.state_details.flow_run_id, seconds)
    return Run(seconds, steps)


def _task_times(flow_run_id: object, total: float) -> list[tuple[str, float]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    timed = sorted((r for r in runs if r.start_time and r.end_time), key=lambda r: r.start_time)
    steps = [(r.name, (r.end_time - r.start_time).total_seconds()) for r in timed]
    steps.append(("(flow outside its tasks)", total - sum(s for _, s in steps)))
    return steps


def run_script(dom0: Dom0, inputs: DeployInputs, where: Path) -> Run:
    with fresh_pool(where) as (pool, _mnt):
        work = where / "script"
        work.mkdir()
        script = write_script(work, inputs, dom0, f"{pool}/sys/g1")
        warm(dom0)
        started = time.perf_counter()
        done = subprocess.run(["bash", script], capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"the baseline script failed ({done.returncode}):\n{done.stderr}")
        marks = [line.split(" ", 1) for line in (work / "steps").read_text().splitlines()]
        steps = [(name, float(nxt[0]) - float(t)) for (t, name), nxt in pairwise(marks)]
    return Run(seconds, steps)


def check_inputs(dom0: Dom0, where: Path) -> DeployInputs:
    """The flow's own preflight, untimed: the baseline is written from what it found."""
    scratch = where / "preflight"
    scratch.mkdir()
    try:
        return preflight(Dom0Tree(dom0.root), PROFILE, [dom0.release_key], DeployOptions(),
                         scratch=scratch)  # fmt: skip
    finally:
        _kill_agent(scratch / "release-keyring")
        shutil.rmtree(scratch, ignore_errors=True)


def target_ratio(baseline_s: float) -> float:
    """The slowest g2d may be, as bench/common.py's minimum ratio baseline / g2d."""
    return baseline_s / max(baseline_s * (1 + TARGET_PERCENT), baseline_s + TARGET_SECONDS)


def _print_steps(title: str, run: Run) -> None:
    print(f"  {title}: {run.seconds:.1f} s")
    for what, seconds in run.steps:
        print(f"    {seconds:7.2f}  {what}")


def main(repeat: int = 2) -> dict[str, object]:
    from prefect.testing.utilities import prefect_test_harness

    layout = lab()
    with tempfile.TemporaryDirectory(prefix="g2d-bench-deploy-", dir="/var/tmp") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "g2d.toml").write_text("")  # no site file of this machine leaks in
        env = {
            "G2D_STATE_DIR": str(tmp / "state"),
            "G2D_CONFIG": str(tmp / "g2d.toml"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }  # 127.0.0.1 only: no telemetry
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        daemon: ZfsFuse = ensure_zfs_fuse(tmp / "zfs-fuse")
        try:
            dom0 = make_dom0(layout, tmp)
            inputs = check_inputs(dom0, tmp)
            flows: list[Run] = []
            scripts: list[Run] = []
            with prefect_test_harness(server_startup_timeout=120):  # started before timing
                for i in range(repeat):  # alternated: drift of the machine hits both alike
                    flows.append(run_flow(dom0, tmp / f"flow-{i}"))
                    scripts.append(run_script(dom0, inputs, tmp / f"script-{i}"))
                    print(f"run {i + 1}: flow {flows[-1].seconds:.1f} s, "
                          f"script {scripts[-1].seconds:.1f} s", flush=True)  # fmt: skip
        finally:
            daemon.stop()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    g = min(flows, key=lambda r: r.seconds)
    b = min(scripts, key=lambda r: r.seconds)
    _print_steps("deploy flow (best run)", g)
    _print_steps("bare script (best run)", b)
    overhead = g.seconds - b.seconds
    allowed = max(b.seconds * TARGET_PERCENT, TARGET_SECONDS)
    print(f"  overhead {overhead:+.1f} s ({overhead / b.seconds:+.1%}); allowed "
          f"{allowed:.1f} s (max of {TARGET_PERCENT:.0%} and {TARGET_SECONDS:.0f} s)")  # fmt: skip
    name = "deploy flow vs bare shell script (zfs-fuse)"
    comparison = Comparison(name, g.seconds, b.seconds, target=target_ratio(b.seconds))
    return {
        "comparisons": [comparison],
        "flow_s": [r.seconds for r in flows],
        "script_s": [r.seconds for r in scripts],
        "overhead_s": overhead,
        "overhead_pct": overhead / b.seconds * 100,
    }


if __name__ == "__main__":
    found = main()
    for c in found["comparisons"]:  # type: ignore[union-attr]
        print(c.row())
