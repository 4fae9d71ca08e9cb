"""The lab's build steps, in order: one adapter per builder, saying what it reads and writes.

An adapter's source is part of its step's key (see `g2d.lab.build.step_key`), so keep each
one about its own builder. Builders are imported inside the adapters: `g2d lab status`
reads this table without importing gemato, portage or the stage3 machinery.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from g2d.lab.build import Step, StepContext

# Release build times: fixed, so the same inputs give the same media (and the same keys).
# The older openrc build exists so that "latest" has something to be newer than.
STAGE3_BUILDS = {
    "stage3-openrc-old": ("openrc", "20250101T120000Z"),
    "stage3-openrc": ("openrc", "20250108T120000Z"),
    "stage3-systemd": ("systemd", "20250108T120000Z"),
}
STAGE3_CACHE = "cache/stage3"
REPO_TIMESTAMP = "2025-01-01T00:00:00+00:00"  # the repository's metadata/timestamp


def _keys(ctx: StepContext) -> Any:
    from g2d.lab.keys import ensure_keys

    return ensure_keys(ctx.out("gnupg"))


def _repo(ctx: StepContext) -> Any:
    from g2d.lab.repo import build_repo

    timestamp = datetime.fromisoformat(ctx.params["timestamp"])
    return build_repo(ctx.out("mirror/repos/gentoo"), keys=ctx.inputs["keys"], timestamp=timestamp)


def _package_sets(ctx: StepContext) -> Any:
    from g2d.lab.packagesets import write_package_sets

    return write_package_sets(ctx.out("site/packages"), ctx.inputs["repo"])


def _patchfiles(ctx: StepContext) -> Any:
    from g2d.lab.patchfiles import write_patchfiles

    return write_patchfiles(ctx.out("site/patchfiles"))


def _binhost(ctx: StepContext) -> Any:
    from g2d.lab.binhost import build_binhost

    work = ctx.layout.cache / "binhost-work"
    repo, keys = ctx.inputs["repo"], ctx.inputs["keys"]
    return build_binhost(repo.path, ctx.out("mirror/binpkgs"), keys, work)


def _stage3(ctx: StepContext) -> Any:
    from g2d.lab.lab_names import Stamp, Variant
    from g2d.lab.stage3 import build_stage3_root

    repo = ctx.inputs["repo"]
    return build_stage3_root(
        ctx.out(ctx.params["root"]),
        variant=Variant(ctx.params["variant"]),
        stamp=Stamp(ctx.params["stamp"]),
        repo=repo.path,
        cache_dir=ctx.layout.cache / "debootstrap",
        distfiles=repo.distfiles,
    )


def _releases(ctx: StepContext) -> Any:
    from g2d.lab.releases import pack_stage3, publish_latest

    releases, keys = ctx.out("mirror/releases"), ctx.inputs["keys"]
    packed = [pack_stage3(ctx.inputs[name], releases, keys) for name in STAGE3_BUILDS]
    return packed, publish_latest(releases, keys)


def _snapshots(ctx: StepContext) -> Any:
    from g2d.lab.snapshots import publish_snapshot

    repo, keys = ctx.inputs["repo"], ctx.inputs["keys"]
    return publish_snapshot(repo.path, ctx.out("mirror/snapshots"), keys)


def _distfiles(ctx: StepContext) -> Any:
    from g2d.lab.distfiles import publish_distfiles

    return publish_distfiles(ctx.out("mirror/distfiles"), ctx.inputs["repo"].distfiles)


def _kernel(ctx: StepContext) -> Any:
    from g2d.lab.kernel import import_kernel

    # the Debian package is downloaded once into the cache; apt's candidate decides which
    return import_kernel(ctx.out("mirror/kernels"), ctx.layout.cache / "kernel")


def _stage3_step(name: str, variant: str, stamp: str) -> Step:
    root = f"{STAGE3_CACHE}/{variant}-{stamp}"
    return Step(
        name,
        "g2d.lab.stage3",
        _stage3,
        outputs=(root,),
        deps=("repo",),
        params={"variant": variant, "stamp": stamp, "root": root},
    )


LAB_STEPS: tuple[Step, ...] = (
    # gpg's agent and trust database change files in gnupg/ on every use; the keys do not
    Step(
        "keys",
        "g2d.lab.keys",
        _keys,
        outputs=("gnupg",),
        atomic=False,
        watch=("gnupg/pubring.kbx", "gnupg/private-keys-v1.d"),
    ),
    # build_repo replaces the repository atomically itself
    Step(
        "repo",
        "g2d.lab.repo",
        _repo,
        outputs=("mirror/repos/gentoo",),
        deps=("keys",),
        params={"timestamp": REPO_TIMESTAMP},
        atomic=False,
    ),
    # write_package_sets replaces the tree atomically, and only a tree it wrote
    Step(
        "package-sets",
        "g2d.lab.packagesets",
        _package_sets,
        outputs=("site/packages",),
        deps=("repo",),
        atomic=False,
    ),
    Step("patchfiles", "g2d.lab.patchfiles", _patchfiles, outputs=("site/patchfiles",)),
    # build_binhost replaces the binhost atomically, and reuses one built from the same inputs
    Step(
        "binhost",
        "g2d.lab.binhost",
        _binhost,
        outputs=("mirror/binpkgs",),
        deps=("keys", "repo"),
        atomic=False,
    ),
    *(_stage3_step(name, variant, stamp) for name, (variant, stamp) in STAGE3_BUILDS.items()),
    Step(
        "releases",
        "g2d.lab.releases",
        _releases,
        outputs=("mirror/releases",),
        deps=("keys", *STAGE3_BUILDS),
    ),
    Step(
        "snapshots",
        "g2d.lab.snapshots",
        _snapshots,
        outputs=("mirror/snapshots",),
        deps=("keys", "repo"),
    ),
    Step(
        "distfiles", "g2d.lab.distfiles", _distfiles, outputs=("mirror/distfiles",), deps=("repo",)
    ),
    Step("kernel", "g2d.lab.kernel", _kernel, outputs=("mirror/kernels",)),
)
