"""The lab's binhost: signed GPKG binpkgs of the lab packages, built by real `emerge`.

Portage from PyPI runs in clean mode (EPREFIX="", see `portage_ns`), so binpkgs hold
`image/usr/...` as on Gentoo. Every target is built and signed with the lab's binpkg key
(FEATURES=binpkg-signing), then `app-misc/hello-1.0` is built a second time with the
opposite USE, so the index holds two instances of it (BUILD_ID 1 and 2). Portage writes
`Packages` (and `Packages.gz`) itself.

The binhost is built in a staging directory next to `dest` and moved into place when
complete, with a stamp naming its inputs (the repository's bytes, the key, the plan,
Portage's version): called again with the same inputs, `build_binhost` returns at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from textwrap import dedent

from portage.getbinpkg import PackageIndex

from g2d.core.errors import G2dUserError
from g2d.hosts.local import LocalHost
from g2d.hosts.runner import Completed
from g2d.lab.keys import LabKeys
from g2d.lab.packagesets import COMMON
from g2d.lab.portage_config import (
    PortageConfig,
    etc_portage,
    portage_program,
    run_portage,
    write_config,
)
from g2d.lab.process import random_token
from g2d.lab.repo import lab_distfiles
from g2d.lab.repo_ebuilds import FAILING_PACKAGE, MULTI_INSTANCE_CPV, MULTI_INSTANCE_USE
from g2d.lab.repo_profiles import ROOT_PROFILE

PLAN_VERSION = 1  # bump whenever what is built, or how, changes
STAMP = ".g2d-lab-binhost.json"
UNBUILT = ("Manifest", "Manifest.gz")  # repository files no build reads (distfiles are ours)
BUILD_TARGETS = (
    "sys-apps/baselayout-lab",
    "sys-apps/openrc-lab",
    "sys-apps/systemd-lab",
    "virtual/service-manager",
    "dev-libs/libdemo:1",
    f"={MULTI_INSTANCE_CPV}",
    "app-misc/greeter",
    FAILING_PACKAGE,  # built without its failing flag
    "app-misc/eula-lab",
    "x11-misc/sddm-lab",
    "kde-plasma/plasma-lab",
    "gnome-base/gdm-lab",
    "gnome-base/gnome-lab",
    "app-admin/checksec-lab",
    "sec-policy/selinux-base-lab",
)
BUILD_DEPENDENCY = "dev-libs/libdemo:2"  # merged first: hello needs it to build
# The builder's /etc/portage says what the site's common sets say about masks, keywords
# and licenses, so clients find binpkgs of the versions they select. Not common.uses: USE
# comes from the environment, to build the two instances of hello.
BUILDER_FILES = {
    "package.mask": dedent(COMMON["mask"]),
    "package.accept_keywords": dedent(COMMON["keys"]),
    "package.license": dedent(COMMON["license"]),
}


class BinhostBuildFailed(G2dUserError):
    """emerge failed while building the lab binhost; carries the end of its output."""


@dataclass(frozen=True)
class BinhostInfo:
    """A complete lab binhost (a PKGDIR with `Packages`) and how clients verify it."""

    path: Path
    signing_key: str  # fingerprint of the binpkg key
    public_key: Path  # the binpkg key, armoured
    verify_gnupghome: Path  # a keyring trusting it: BINPKG_GPG_VERIFY_GPG_HOME for clients
    binpkgs: tuple[str, ...]  # PATH of every entry in Packages, sorted
    multi_instance_cpv: str
    inputs: str  # digest of everything the binhost was built from
    reused: bool  # True when an earlier build with the same inputs was found complete

    @property
    def packages_index(self) -> Path:
        return self.path / "Packages"


def binhost_inputs(repo: Path, keys: LabKeys) -> str:
    """A digest of the repository's files (not its Manifests and timestamps), the signing
    key, the plan and Portage's version."""
    h = hashlib.sha256()
    plan = {
        "plan": PLAN_VERSION,
        "targets": (BUILD_DEPENDENCY, *BUILD_TARGETS),
        "use": MULTI_INSTANCE_USE,
        "files": BUILDER_FILES,
        "key": keys.binpkg,
        "portage": version("portage"),
    }
    h.update(json.dumps(plan, sort_keys=True).encode())
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if name in UNBUILT or name.startswith("timestamp."):
                continue  # a new signature or timestamp changes no binpkg
            h.update(os.fsencode(path.relative_to(repo)) + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def read_index(pkgdir: Path) -> PackageIndex:
    """`Packages` as Portage itself reads it."""
    index = PackageIndex()
    with open(pkgdir / "Packages", encoding="utf-8") as f:
        index.read(f)
    return index


def _complete_paths(pkgdir: Path, inputs: str) -> tuple[str, ...] | None:
    """The binpkg paths if `pkgdir` holds a finished build of `inputs`, else None."""
    try:
        stamp = json.loads((pkgdir / STAMP).read_text())
        index = read_index(pkgdir)
    except (OSError, ValueError):
        return None
    if stamp.get("inputs") != inputs:
        return None
    for entry in index.packages:
        path = pkgdir / entry["PATH"]
        if not path.is_file() or path.stat().st_size != int(entry["SIZE"]):
            return None
    return tuple(sorted(entry["PATH"] for entry in index.packages))


def _verify_keyring(keys: LabKeys, work: Path) -> tuple[Path, Path]:
    """(the binpkg public key, a keyring that trusts only it) for binpkg clients."""
    public = work / "binpkg-key.asc"
    home = work / "gnupg-verify"
    keys.export_public(keys.binpkg, public)
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(mode=0o700, parents=True)
    gpg = ["gpg", "--homedir", os.fspath(home), "--batch", "--no-tty", "--quiet"]
    host = LocalHost()
    try:
        host.run([*gpg, "--import", os.fspath(public)])
        # Portage accepts a binpkg signature only from a fully or ultimately trusted key
        host.run([*gpg, "--import-ownertrust"], stdin=f"{keys.binpkg}:6:\n".encode())
        host.run([*gpg, "--check-trustdb"])
    finally:
        _stop_agent(home)
    for dirpath, _dirs, files in os.walk(home):  # verification may run as nobody
        os.chmod(dirpath, 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return public, home


def _stop_agent(gnupghome: Path) -> None:
    LocalHost().run(
        ["gpgconf", "--homedir", os.fspath(gnupghome), "--kill", "gpg-agent"], check=False
    )


def _emerge(args: list[str], *, work: Path, keep: list[Path], env: dict[str, str]) -> Completed:
    emerge = portage_program("emerge")
    done = run_portage([emerge, *args], work=work, keep=keep, env=env, check=False)
    if not done.ok:
        tail = "\n".join(done.lines()[-25:])
        raise BinhostBuildFailed(
            f"emerge {' '.join(args)} exited with {done.returncode}:\n{tail}",
            hint=f"build logs are under {work / 'var' / 'tmp' / 'portage'}",
        )
    return done


def _build(repo: Path, pkgdir: Path, keys: LabKeys, verify_home: Path, work: Path) -> None:
    root = work / "root"  # ROOT of the builder: build deps and the built packages land here
    distdir = work / "distfiles"
    write_config(
        etc_portage(work),
        PortageConfig(
            repo=repo,
            profile=ROOT_PROFILE,
            pkgdir=pkgdir,
            distdir=distdir,
            state=work / "var",
            signing_home=keys.gnupghome,
            signing_key=keys.binpkg,
            verify_home=verify_home,  # --buildpkg installs from the binpkg: verified too
            package_files=BUILDER_FILES,
        ),
    )
    for name, data in lab_distfiles().items():
        (distdir / name).write_bytes(data)
    keep = [repo, pkgdir, keys.gnupghome, verify_home]
    # binpkg-signing goes in the environment, not make.conf (recipe pitfall 4); SYSROOT=ROOT
    # puts build-time deps into ROOT, not into the running system
    # nostrip: the lab's packages hold no ELF files, and estrip costs a second per package
    env = {
        "ROOT": os.fspath(root),
        "SYSROOT": os.fspath(root),
        "FEATURES": "binpkg-signing nostrip",
    }
    first, second = MULTI_INSTANCE_USE
    # Only hello needs something at build time (dev-libs/libdemo:2): merge that one into
    # ROOT, then build the rest as binpkgs only, sparing a merge (and a verify) per package
    _emerge(
        ["--oneshot", "--buildpkg", "--usepkg=n", BUILD_DEPENDENCY],
        work=work, keep=keep, env=env,
    )  # fmt: skip
    _emerge(
        ["--oneshot", "--buildpkgonly", "--usepkg=n", "--jobs=2", *BUILD_TARGETS],
        work=work, keep=keep, env={**env, "USE": first},
    )  # fmt: skip
    _emerge(
        ["--oneshot", "--buildpkgonly", "--usepkg=n", f"={MULTI_INSTANCE_CPV}"],
        work=work, keep=keep, env={**env, "USE": second},
    )  # fmt: skip


def _replace(dest: Path, new: Path) -> None:
    """Put `new` at `dest`; an existing `dest` must be empty or an earlier lab binhost."""
    if dest.exists():
        if any(dest.iterdir()) and not (dest / STAMP).is_file():
            raise BinhostBuildFailed(
                f"{dest} is not empty and is not a g2d lab binhost",
                hint="the lab replaces only a binhost it built; pick an empty directory",
            )
        old = dest.with_name(f".{dest.name}.{random_token()}.old")
        os.rename(dest, old)
        os.rename(new, dest)
        shutil.rmtree(old)
    else:
        os.rename(new, dest)


def _refuse_overlaid(work: Path) -> None:
    # The build namespace lays overlays over /etc and /var (portage_ns.py). With the builder's
    # ROOT below them, emerge's dependencies did not persist between its runs and the build
    # failed with "--buildpkgonly requires all dependencies to be merged" (seen with a lab in
    # /var/lib/g2d/lab); until that is fixed, say so up front instead.
    real = work.resolve()
    for top in ("/etc", "/var"):
        if real.is_relative_to(top):
            raise BinhostBuildFailed(
                f"the binhost cannot be built under {top}: {real}",
                hint="put the lab elsewhere, e.g. G2D_LAB_DIR=/srv/g2d-lab (make demo: state/lab)",
            )


def build_binhost(repo: Path, dest: Path, keys: LabKeys, work: Path) -> BinhostInfo:
    """Build (or find complete) the lab binhost at `dest` from the repository at `repo`."""
    repo, dest, work = repo.absolute(), dest.absolute(), work.absolute()
    _refuse_overlaid(work)
    work.mkdir(parents=True, exist_ok=True)
    inputs = binhost_inputs(repo, keys)
    public, verify_home = _verify_keyring(keys, work)
    paths = _complete_paths(dest, inputs)
    reused = paths is not None
    if paths is None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = dest.with_name(f".{dest.name}.{random_token()}.new")
        build_work = work / "build"
        if build_work.exists():
            shutil.rmtree(build_work)  # a fresh builder ROOT each time
        try:
            _build(repo, staging, keys, verify_home, build_work)
            (staging / STAMP).write_text(json.dumps({"inputs": inputs}) + "\n")
            paths = _complete_paths(staging, inputs)
            if paths is None:
                raise BinhostBuildFailed(f"emerge left no complete Packages index in {staging}")
            _replace(dest, staging)
        finally:
            _stop_agent(keys.gnupghome)
            if staging.exists():
                shutil.rmtree(staging)
    return BinhostInfo(
        path=dest,
        signing_key=keys.binpkg,
        public_key=public,
        verify_gnupghome=verify_home,
        binpkgs=paths,
        multi_instance_cpv=MULTI_INSTANCE_CPV,
        inputs=inputs,
        reused=reused,
    )
