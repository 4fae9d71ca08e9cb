"""A Debian minbase root from debootstrap, cached as a tarball keyed by its inputs.

debootstrap is the slow part of a lab stage3 (about 40 s and a download from the Debian
mirror apt is configured for), so its result is kept in a cache directory and reused by
every later build with the same suite, variant, package list and mirror.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.hosts.local import LocalHost
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.lab_tar import extract_argv, root_archive_argv

# What emerge needs in a root besides Debian's minbase: bzip2 (vdb environment.bz2), xz and
# zstd (stages, gpkg), gpg and its agent (binpkg and snapshot signatures), wget (portage's
# FETCHCOMMAND), rsync (emerge --sync), patch (eapply), /usr/bin/python as on Gentoo
# (portage's helpers start with it), and a static busybox for the boot marker's poweroff.
# Left out on purpose, for size: pax-utils (pulls in binutils; scanelf only adds NEEDED
# metadata of ELF files, which lab packages have none of) and ca-certificates (no https).
DEFAULT_PACKAGES = (
    "python3",
    "python-is-python3",
    "patch",
    "busybox-static",
    "bzip2",
    "xz-utils",
    "zstd",
    "gpg",
    "gpg-agent",
    "wget",
    "rsync",
)
FALLBACK_MIRROR = "http://deb.debian.org/debian"
CACHE_FORMAT = 1  # bump when the cached tarball's shape changes
DEBOOTSTRAP_TIMEOUT = 1800.0


class DebootstrapFailed(G2dUserError):
    """debootstrap could not make the base root; names the suite and the log to read."""


@dataclass(frozen=True, slots=True)
class DebootstrapSpec:
    """The inputs of one debootstrap run; equal specs give interchangeable roots."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    mirror: str = ""  # empty: the mirror apt is configured with for this suite
    arch: str = "amd64"

    def __post_init__(self) -> None:
        if not self.suite.isalnum():
            raise ValueError(f"debootstrap suite {self.suite!r} is not a plain name")
        object.__setattr__(self, "packages", tuple(sorted(set(self.packages))))

    def resolved(self) -> DebootstrapSpec:
        """This spec with the mirror filled in, so the cache key names a real source."""
        if self.mirror:
            return self
        return DebootstrapSpec(
            self.suite, self.variant, self.packages, apt_mirror(self.suite), self.arch
        )

    def key(self) -> str:
        fields = {
            "format": CACHE_FORMAT,
            "suite": self.suite,
            "variant": self.variant,
            "packages": list(self.packages),
            "mirror": self.mirror.rstrip("/"),
            "arch": self.arch,
        }
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
        return digest[:16]

    def tarball_name(self) -> str:
        return f"debootstrap-{self.suite}-{self.variant}-{self.arch}-{self.key()}.tar.zst"


def apt_mirror(suite: str) -> str:
    """The Debian archive URI apt uses for ``suite``, or deb.debian.org if apt has none."""
    fmt = "$(REPO_URI) $(CODENAME) $(ORIGIN) $(IDENTIFIER)"
    out = LocalHost().run(["apt-get", "indextargets", "--format", fmt], check=False)
    for line in out.lines():
        words = line.split()
        if words[1:] == [suite, "Debian", "Packages"]:
            return words[0].rstrip("/")
    return FALLBACK_MIRROR


def base_tarball(cache_dir: Path, spec: DebootstrapSpec | None = None) -> Path:
    """The cached tarball of a debootstrapped root; runs debootstrap only on a cache miss."""
    spec = (spec or DebootstrapSpec()).resolved()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / spec.tarball_name()
    if tarball.is_file():
        return tarball
    if shutil.which("debootstrap", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        raise ComponentUnavailable(
            "debootstrap", "not installed", hint="apt-get install debootstrap"
        )
    if os.geteuid() != 0:
        raise ComponentUnavailable("debootstrap", "needs root (it makes device nodes, chroots)")
    host = LocalHost()
    with tempfile.TemporaryDirectory(prefix=".debootstrap-", dir=cache_dir) as tmp:
        root = Path(tmp) / "root"
        argv = [
            "debootstrap",
            f"--variant={spec.variant}",
            f"--arch={spec.arch}",
            f"--include={','.join(spec.packages)}",
            spec.suite, root, spec.mirror,
        ]  # fmt: skip
        done = host.run(argv, check=False, capture=False, timeout=DEBOOTSTRAP_TIMEOUT)
        if not done.ok:
            log = root / "debootstrap" / "debootstrap.log"
            kept = cache_dir / "debootstrap-failed.log"
            if log.exists():  # the temporary root goes away with this exception
                shutil.copyfile(log, kept)
            raise DebootstrapFailed(
                f"debootstrap {spec.suite} from {spec.mirror} exited with {done.returncode}",
                hint=f"read {kept}" if log.exists() else "is the Debian mirror reachable?",
            )
        _slim(root)
        partial = tarball.with_name(f".{tarball.name}.partial")
        host.run(root_archive_argv(root, partial, compress="--zstd"))
        os.replace(partial, tarball)
    return tarball


def _slim(root: Path) -> None:
    """Drop what a stage3 does not ship and what makes archives differ between runs."""
    for rel in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                "usr/share/info", "usr/share/locale", "var/log"):  # fmt: skip
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            path.mkdir(mode=0o755)
    for rel in ("var/cache/apt/archives/partial", "var/lib/apt/lists/partial"):
        (root / rel).mkdir(mode=0o700, exist_ok=True)
    for cache in root.glob("var/cache/apt/*.bin"):
        cache.unlink()


def unpack_base(tarball: Path, dest: Path) -> None:
    """Unpack a cached base tarball into the empty directory ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty")
    LocalHost().run(extract_argv(tarball, dest))
