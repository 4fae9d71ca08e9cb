"""Clean-mode Portage for the lab: an `/etc/portage` to lay over `/etc`, and a runner for it.

EPREFIX is "" (binpkgs hold `image/usr/bin/...`, not a build prefix), so Portage reads
`/etc/portage`; `portage_ns` lays this configuration over `/etc` inside a private mount
namespace. Everything Portage writes goes under `work` (or PKGDIR and ROOT, which the
caller names as writable); `/` is read-only there. Settings follow
research/real-emerge-recipe.md: no sandbox (Debian has none), no userpriv (all as root),
every make.globals host path moved into `work`, no trust helper (no getuto here).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.hosts.local import LocalHost
from g2d.hosts.runner import Completed
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.portage_ns import BASE_ENV, namespace_argv, overlay_upper
from g2d.lab.process import find_program

# No sandbox binary on Debian, everything as root, and no fsync after each merge (the lab
# is rebuilt rather than recovered after a crash)
FEATURES_OFF = (
    "-sandbox -usersandbox -userpriv -userfetch -usersync -pid-sandbox -network-sandbox "
    "-ipc-sandbox -news -merge-sync"
)
# The lab never downloads a distfile: they are put into DISTDIR first. A fetch that is
# attempted anyway fails at once instead of reaching for the network.
NO_FETCH = 'false "${URI}" "${DISTDIR}" "${FILE}"'
EMERGE_TIMEOUT = 900.0


class PortageMissing(G2dUserError):
    """The Portage package (from PyPI) is not installed next to g2d."""


def portage_share() -> Path:
    """Portage's shipped defaults (make.globals, sets/portage.conf) in g2d's environment."""
    share = Path(sys.prefix) / "share" / "portage" / "config"
    if not (share / "make.globals").is_file():
        raise PortageMissing(
            f"{share / 'make.globals'} not found", hint="pip install portage (see pyproject.toml)"
        )
    return share


def portage_program(name: str) -> Path:
    """emerge, emaint, gpkg-sign ... from the Portage installed next to g2d."""
    return Path(sys.prefix) / "bin" / name


@dataclass(frozen=True)
class PortageConfig:
    """The settings of one `/etc/portage` that `write_config` renders."""

    repo: Path
    profile: str
    pkgdir: Path
    distdir: Path
    state: Path  # depcache, logs, build directories, the signing lock
    signing_home: Path | None = None  # BINPKG_GPG_SIGNING_GPG_HOME
    signing_key: str | None = None  # fingerprint
    verify_home: Path | None = None  # BINPKG_GPG_VERIFY_GPG_HOME
    accept_license: str | None = None  # None: the profile's (-* @FREE)
    package_files: Mapping[str, str] | None = None  # package.mask, package.use ... -> text

    def make_conf(self) -> str:
        share = portage_share()
        lines = [
            '# Written by g2d.lab for clean-mode Portage (EPREFIX="") in a mount namespace.',
            f"source {share / 'make.globals'}",
            f'FEATURES="${{FEATURES}} {FEATURES_OFF}"',
            f'PKGDIR="{self.pkgdir}"',
            f'DISTDIR="{self.distdir}"',
            f'PORTAGE_TMPDIR="{self.state / "tmp"}"',
            f'PORTAGE_DEPCACHEDIR="{self.state / "cache" / "dep"}"',
            f'EMERGE_LOG_DIR="{self.state / "log"}"',
            'NOCOLOR="true"',
            'PORTAGE_USERNAME="root"',
            'PORTAGE_GRPNAME="root"',
            'CLEAN_DELAY="0"',
            'EMERGE_WARNING_DELAY="0"',
            'PORTAGE_TRUST_HELPER=""',
            'GENTOO_MIRRORS=""',
            f"FETCHCOMMAND='{NO_FETCH}'",
            f"RESUMECOMMAND='{NO_FETCH}'",
            'MAKEOPTS="-j2"',
            # the signing lock of make.globals lives in /run/lock; keep it in the lab
            'BINPKG_GPG_SIGNING_BASE_COMMAND="flock '
            f'{self.state / "binpkg-gpg.lock"} gpg --sign --armor [PORTAGE_CONFIG]"',
        ]
        if self.accept_license is not None:
            lines += [f'ACCEPT_LICENSE="{self.accept_license}"']
        if self.signing_home and self.signing_key:
            lines += [
                f'BINPKG_GPG_SIGNING_GPG_HOME="{self.signing_home}"',
                f'BINPKG_GPG_SIGNING_KEY="0x{self.signing_key}"',
            ]
        if self.verify_home:
            lines += [
                f'BINPKG_GPG_VERIFY_GPG_HOME="{self.verify_home}"',
                # Portage verifies as nobody:nogroup when run as root; the lab's keyrings
                # may sit below a directory only root can enter (pytest's are 0700)
                'GPG_VERIFY_USER_DROP=""',
                'GPG_VERIFY_GROUP_DROP=""',
            ]
        return "\n".join(lines) + "\n"


def write_config(etc_portage: Path, config: PortageConfig) -> None:
    """Render `config` into `etc_portage` (replacing what an earlier call wrote there)."""
    if etc_portage.exists():
        shutil.rmtree(etc_portage)
    etc_portage.mkdir(parents=True)
    for sub in ("tmp", "cache", "log"):
        (config.state / sub).mkdir(parents=True, exist_ok=True)
    config.pkgdir.mkdir(parents=True, exist_ok=True)
    config.distdir.mkdir(parents=True, exist_ok=True)
    (etc_portage / "make.conf").write_text(config.make_conf())
    (etc_portage / "repos.conf").write_text(
        f"[DEFAULT]\nmain-repo = gentoo\n\n[gentoo]\nlocation = {config.repo}\n"
    )
    # with EPREFIX="" Portage looks for the set definitions in /usr/share/portage: bring them
    shutil.copyfile(portage_share() / "sets" / "portage.conf", etc_portage / "sets.conf")
    os.symlink(config.repo / "profiles" / config.profile, etc_portage / "make.profile")
    for name, text in sorted((config.package_files or {}).items()):
        (etc_portage / name).write_text(text)


def _shims(work: Path) -> Path:
    """A bin directory with `gtar`: Portage's unpack calls GNU tar by that name (Gentoo's)."""
    shims = work / "bin"
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    shims.mkdir(parents=True, exist_ok=True)
    gtar = shims / "gtar"
    tar = shutil.which("tar", path=BASE_ENV["PATH"])
    if tar is None:
        raise PortageMissing("tar not found", hint="apt-get install tar")
    if not gtar.is_symlink() or os.readlink(gtar) != tar:
        gtar.unlink(missing_ok=True)
        gtar.symlink_to(tar)
    return shims


def etc_portage(work: Path) -> Path:
    """Where `write_config` renders the `/etc/portage` that `run_portage` commands see."""
    return overlay_upper(work / "ns", "etc") / "portage"


def run_portage(
    argv: Sequence[str | os.PathLike[str]],
    *,
    work: Path,
    keep: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = EMERGE_TIMEOUT,
) -> Completed:
    """Run a Portage command in the lab's namespace, `/etc/portage` from `etc_portage(work)`.

    `keep` names the directories besides `work` the command reads or writes (PKGDIR, ROOT,
    the repository, GnuPG homes): inside they are the real ones, and writable.
    """
    ns = namespace_argv(
        argv,
        overlays=work / "ns",
        keep=[work, *keep],
        env={
            "TMPDIR": os.fspath(work / "tmp"),  # python's and gpg's temporary files stay here
            "PATH": f"{_shims(work)}:{BASE_ENV['PATH']}",
            **(env or {}),
        },
    )
    return LocalHost().run(ns, check=check, timeout=timeout)


def check_namespace(work: Path) -> None:
    """Raise ComponentUnavailable unless clean-mode Portage can run here (root, unshare,
    overlayfs): the one probe callers use before building or installing binpkgs."""
    component = "clean-mode portage"
    if os.geteuid() != 0:
        raise ComponentUnavailable(component, "needs root (a private mount namespace)")
    find_program("unshare", component=component, package="util-linux")
    portage_share()
    done = run_portage(["true"], work=work, check=False, timeout=60)
    if not done.ok:
        raise ComponentUnavailable(component, f"the mount namespace failed: {done.stderr}")
