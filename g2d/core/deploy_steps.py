"""The steps of a deploy, in order, and what a generation's metadata says about them.

A deploy writes ``g2d:deploy-done`` on its generation after its long steps and at the end
(the steps done so far, comma-separated). A retried flow run finds its generation by
``g2d:flow-run`` and starts after the last step recorded; emerge resumes by itself
(``--update`` skips what is merged). Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

DONE_KEY = "g2d:deploy-done"
SITE_PROFILE_KEY = "g2d:site-profile"  # the package-set stem an update renders again


class DeployStep(enum.StrEnum):
    extract = enum.auto()
    patchfiles = enum.auto()
    portage = enum.auto()
    system = enum.auto()
    emerge = enum.auto()
    patches = enum.auto()
    chroot = enum.auto()
    services = enum.auto()
    users = enum.auto()
    kernel = enum.auto()

    def describe(self) -> str:
        return _WHAT[self]

    def is_checkpoint(self) -> bool:
        """Recorded on the generation when done: the two long steps. The others are quick
        and may run again on a resume (each leaves the root as one run would), so they are
        not worth a metadata write each (seconds on a busy pool)."""
        return self in (DeployStep.extract, DeployStep.emerge)


_WHAT = {
    DeployStep.extract: "extract the verified stage3 (owners, modes, xattrs, ACLs, devices)",
    DeployStep.patchfiles: "copy the site's patchfiles overlay into the root",
    DeployStep.portage: "render the package sets into /etc/portage; binpkg keyring",
    DeployStep.system: "set the Portage profile, timezone and locales",
    DeployStep.emerge: "emerge @world and the profile's packages, binary packages first",
    DeployStep.patches: "run the site's .patches script in the chroot",
    DeployStep.chroot: "locale-gen and env-update in the chroot",
    DeployStep.services: "enable the profile's services",
    DeployStep.users: "add the site's users",
    DeployStep.kernel: "install the dom0's current kernel",
}


def parse_done(text: str | None) -> tuple[DeployStep, ...]:
    """The steps a ``g2d:deploy-done`` value lists (unknown words are ignored)."""
    words = (w.strip() for w in (text or "").split(","))
    return tuple(DeployStep(w) for w in words if w in DeployStep.__members__)


def render_done(done: Iterable[DeployStep]) -> str:
    chosen = set(done)
    return ",".join(s.value for s in DeployStep if s in chosen)


def remaining(done: Iterable[DeployStep]) -> tuple[DeployStep, ...]:
    """The steps still to run, in order."""
    finished = set(done)
    return tuple(s for s in DeployStep if s not in finished)
