"""What a deploy checks before it creates anything, and each of its steps as one function.

``preflight`` reads the dom0 tree and refuses bad input before a generation exists: the
profile (unknown ones list the site's profiles), every atom of its package sets (all unknown
ones together), its services file, the stage3 of its variant (signed digests and signature
checked again), the current kernel, the binpkg keys and the site's users file. Then
``run_step`` does one ``DeployStep`` in the new root; every step but ``extract`` may run
again on the same root (a resumed deploy), leaving it as one run would.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from g2d.core.deploy_steps import DeployStep
from g2d.core.errors import CommandNotFound, G2dUserError
from g2d.core.package_sets import PackageSet, SetFile
from g2d.core.release_files import variant_for
from g2d.core.site_users import SiteUser, parse_site_users
from g2d.hosts.chroot import Chroot
from g2d.hosts.local import LocalHost
from g2d.rootfs.atoms import check_atoms
from g2d.rootfs.binpkg_keys import install_binpkg_keys
from g2d.rootfs.dom0_tree import Dom0Tree
from g2d.rootfs.emerge import emerge
from g2d.rootfs.extract import extract_stage3
from g2d.rootfs.kernel import current_kernel, install_kernel
from g2d.rootfs.patchfiles import copy_patchfiles
from g2d.rootfs.portage_files import load_package_tree, write_portage_files
from g2d.rootfs.services import apply_services
from g2d.rootfs.stage3_local import Stage3Check, current_stage3, verify_stage3
from g2d.rootfs.system_config import CHROOT_STEPS, set_locales, set_profile, set_timezone
from g2d.rootfs.users import add_users
from g2d.sources.keyring import Keyring

log = logging.getLogger("g2d.rootfs.deploy")

WORLD = "@world"


class ProfileUnusable(G2dUserError):
    """The profile's package sets name something the dom0 does not have."""


@dataclass(frozen=True)
class DeployOptions:
    """What a site may choose per deploy; the defaults are a plain server."""

    arch: str = "amd64"
    timezone: str = "UTC"
    locales: tuple[str, ...] = ("en_US.UTF-8",)
    jobs: int = 1  # emerge --jobs
    makeopts: str = field(default_factory=lambda: f"-j{os.cpu_count() or 1}")
    emerge_timeout: float | None = None  # seconds; emerge is killed after that


@dataclass(frozen=True)
class DeployInputs:
    """Everything a deploy takes from the dom0, checked."""

    dom0: Dom0Tree
    profile: str  # the site's stem, 23.0/desktop/plasma
    package_set: PackageSet
    system_profile: str  # default/linux/amd64/23.0/desktop/plasma
    stage3: Stage3Check
    kernel: str
    users: tuple[SiteUser, ...]
    binpkg_keys: tuple[Path, ...]
    options: DeployOptions

    @property
    def targets(self) -> tuple[str, ...]:
        return (WORLD, *self.package_set.targets())

    def plan_lines(self) -> list[str]:
        """What the deploy will use, for the dry run and the artifact."""
        users = ", ".join(u.name for u in self.users) or f"none ({self.dom0.users_file} absent)"
        return [
            f"profile: {self.profile} ({self.system_profile})",
            f"stage3: {self.stage3.stage3.path} (signed by {self.stage3.signed_by})",
            f"emerge: {' '.join(self.targets)}",
            f"services: {len(self.package_set.services())} action(s)",
            f"users: {users}",
            f"kernel: {self.kernel}",
        ]


def preflight(
    dom0: Dom0Tree, profile: str, release_keys: Sequence[Path], options: DeployOptions,
    *, scratch: Path,
) -> DeployInputs:  # fmt: skip
    """Check every input of a deploy of ``profile``; nothing is written but ``scratch``
    (a temporary keyring)."""
    tree = load_package_tree(dom0.packages)
    pset = tree.select(profile)  # UnknownProfile lists the site's profiles
    system_profile = pset.system_profile(options.arch)
    if not (dom0.main_repo / "profiles" / system_profile).is_dir():
        raise ProfileUnusable(
            f"profile {pset.stem}: {system_profile} is not a profile of {dom0.main_repo}",
            hint="sync the repository, or fix the site's package-set tree",
        )
    repos = dom0.repos()
    check_atoms(pset.atom_lines(), list(repos.values()))
    pset.services()  # a services file g2d cannot read fails here, not after the emerge
    try:
        variant = variant_for(pset.selection)
    except ValueError as e:
        raise ProfileUnusable(f"profile {pset.stem}: {e}") from None
    stage3 = current_stage3(dom0.releases, options.arch, variant)
    if not release_keys:
        raise ProfileUnusable("no release keys to verify the stage3 with",
                              hint="set [esync] release_keys in g2d.toml")  # fmt: skip
    with Keyring.from_key_files(scratch / "release-keyring", release_keys) as keyring:
        checked = verify_stage3(stage3, keyring)
    kernel = current_kernel(dom0.kernels).version
    users: tuple[SiteUser, ...] = ()
    if dom0.users_file.is_file():
        users = parse_site_users(dom0.users_file.read_text(), os.fspath(dom0.users_file))
    return DeployInputs(dom0, pset.stem, pset, system_profile, checked, kernel, users,
                        tuple(dom0.binpkg_keys()), options)  # fmt: skip


@dataclass(frozen=True)
class StepResult:
    step: DeployStep
    summary: str
    detail: object = None  # EmergeResult, KernelInstall, ... for the artifact
    metadata: dict[str, str] = field(default_factory=dict)


def run_step(step: DeployStep, inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    """Do ``step`` in ``root``; logs: where emerge's transcript and build logs go (its
    parent holds the stage3's uncompressed scratch copy while it is extracted)."""
    logs.mkdir(parents=True, exist_ok=True)
    return _STEPS[step](inputs, root, logs)


def _extract(inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    done = extract_stage3(inputs.stage3.stage3.path, root, scratch=logs.parent)
    return StepResult(DeployStep.extract, f"{done.members} members in {done.seconds:.1f} s")


def _patchfiles(inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    report = copy_patchfiles(inputs.dom0.patchfiles, root)
    skipped = f", skipped {', '.join(report.skipped)}" if report.skipped else ""
    counts = f"{report.files} files, {report.directories} directories, {report.symlinks} symlinks"
    return StepResult(DeployStep.patchfiles, counts + skipped)


def _portage(inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    written = write_portage_files(root, inputs.package_set,
                                  extra={"MAKEOPTS": inputs.options.makeopts})  # fmt: skip
    keys = install_binpkg_keys(root, inputs.binpkg_keys)
    return StepResult(DeployStep.portage,
                      f"{len(written)} files; binpkgs trusted from {', '.join(keys)}")  # fmt: skip


def _system(inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    set_profile(root, inputs.system_profile, repo=inputs.dom0.main_repo)
    set_timezone(root, inputs.options.timezone)
    set_locales(root, inputs.options.locales)
    return StepResult(DeployStep.system, f"{inputs.system_profile}, {inputs.options.timezone}, "
                      f"{' '.join(inputs.options.locales)}")  # fmt: skip


def _emerge(inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    result = emerge(root, inputs.targets, sources=inputs.dom0.sources(), logs=logs / "emerge",
                    jobs=inputs.options.jobs, timeout=inputs.options.emerge_timeout)  # fmt: skip
    return StepResult(DeployStep.emerge, f"{len(result.merged)} merged in {result.seconds:.0f} s",
                      result, result.metadata())  # fmt: skip


def _patches(inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    script = inputs.package_set.script(SetFile.patches)
    if not script:
        return StepResult(DeployStep.patches, "no .patches script")
    logs.mkdir(parents=True, exist_ok=True)
    with Chroot(root, resolv_conf=False) as ch:
        # the site's own shell, fed on stdin: g2d builds no shell text of its own
        ch.run(["/bin/sh", "-s"], stdin=script.encode(), stdout=logs / "patches.out")
    return StepResult(DeployStep.patches, f"ran ({len(script.splitlines())} lines)")


def _chroot(inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    ran, missing = [], []
    with Chroot(root, resolv_conf=False) as ch:
        for argv in CHROOT_STEPS:
            try:
                ch.run(list(argv))
                ran.append(argv[0])
            except CommandNotFound:
                missing.append(argv[0])  # a root without glibc's locale-gen (musl, the lab)
    summary = f"ran {', '.join(ran) or 'nothing'}"
    return StepResult(DeployStep.chroot, summary + (f"; not in the root: {', '.join(missing)}"
                                                    if missing else ""))  # fmt: skip


def _services(inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    done = apply_services(root, inputs.package_set.services())
    return StepResult(DeployStep.services, f"{done.init}: {'; '.join(done.applied) or 'none'}",
                      done)  # fmt: skip


def _users(inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    if not inputs.users:
        return StepResult(DeployStep.users, f"none ({inputs.dom0.users_file} absent or empty)")
    accounts = add_users(root, inputs.users, host=LocalHost())
    return StepResult(DeployStep.users, ", ".join(f"{a.name} ({a.uid})" for a in accounts))


def _kernel(inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    done = install_kernel(root, inputs.dom0.kernels, version=inputs.kernel)
    return StepResult(DeployStep.kernel, f"{done.version} in /boot and /lib/modules", done,
                      done.metadata())  # fmt: skip


_STEPS = {
    DeployStep.extract: _extract,
    DeployStep.patchfiles: _patchfiles,
    DeployStep.portage: _portage,
    DeployStep.system: _system,
    DeployStep.emerge: _emerge,
    DeployStep.patches: _patches,
    DeployStep.chroot: _chroot,
    DeployStep.services: _services,
    DeployStep.users: _users,
    DeployStep.kernel: _kernel,
}
