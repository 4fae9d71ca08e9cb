"""``update``: bring a root's installed packages and kernel up to the dom0's, binaries first.

``emerge --update --deep --newuse @world`` (with the options of ``g2d.rootfs.emerge``:
binpkgs from the dom0's binhost, signatures verified, --keep-going), then the dom0's current
kernel (``g2d.rootfs.kernel``). The snapshot before and the rollback after a failure are
the flow's, around this function.

What changes: a newer version in the repository (with its binpkg on the binhost, or built),
a changed USE (package.use rendered again from the site's sets: ``--newuse`` takes the
binpkg instance built with the new USE), a newer current kernel. Nothing changes when the
root already matches; the result then lists no merge and an unchanged kernel.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from g2d.hosts.base import Host
from g2d.rootfs.emerge import EmergeResult, emerge
from g2d.rootfs.kernel import KernelInstall, install_kernel
from g2d.rootfs.portage_sources import PortageSources

WORLD = "@world"


@dataclass(frozen=True)
class UpdateResult:
    emerge: EmergeResult
    kernel: KernelInstall | None  # None: no kernels repository given

    def metadata(self) -> dict[str, str]:
        found = self.emerge.metadata("g2d:update")
        if self.kernel is not None:
            found.update(self.kernel.metadata())
        return found


def update_world(
    root: str | os.PathLike[str],
    *,
    sources: PortageSources,
    logs: Path,
    exclude: Sequence[str] = (),
    timeout: float | None = None,
    parent: Host | None = None,
) -> EmergeResult:
    """``emerge -uDN @world`` in ``root``; raises ``EmergeFailed`` as ``emerge`` does.

    exclude: atoms never touched by the update (``--exclude``), as the old tool kept
    kernel sources and ZFS out of it.
    """
    return emerge(
        root,
        [WORLD],
        sources=sources,
        logs=logs,
        oneshot=True,  # @world itself; the world file is not changed by an update
        options=[f"--exclude={atom}" for atom in exclude],
        timeout=timeout,
        parent=parent,
    )


def update_root(
    root: str | os.PathLike[str],
    *,
    sources: PortageSources,
    logs: Path,
    kernels: Path | None = None,
    exclude: Sequence[str] = (),
    timeout: float | None = None,
    parent: Host | None = None,
) -> UpdateResult:
    """Update the packages, then (if ``kernels`` is given) install the current kernel."""
    result = update_world(
        root, sources=sources, logs=logs, exclude=exclude, timeout=timeout, parent=parent
    )
    kernel = install_kernel(root, kernels, parent=parent) if kernels is not None else None
    return UpdateResult(result, kernel)
