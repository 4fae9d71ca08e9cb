"""The one error a lab starter raises when its component cannot exist on this machine."""

from __future__ import annotations

from g2d.core.errors import G2dUserError


class ComponentUnavailable(G2dUserError):
    """A real component (sshd, zfs-fuse, a loop device, ...) cannot start here.

    Raised only for causes outside g2d: a missing program, device or kernel file system, no
    root, a daemon that exits at once. Tests skip on it (and fail under ``CI=true``); any other
    exception from a starter is a bug and propagates.
    """

    def __init__(self, component: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(component, reason, hint=hint)
        self.component = component
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.component}: {self.reason}"
