"""The lab site's patchfiles overlay: files a deploy copies into every root it builds.

Laid out as the old tool's ``patchfiles/`` tree (research/g2deploy-spec.md §1.1 steps 6-8):
``etc/``, ``root/``, ``srv/`` land at the same paths in the root and ``portage/`` is
``/etc/portage``. The files are small and say where they came from, so a test or a person
can see in a deployed root that the overlay arrived, with the modes given here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

MARKER = "g2d-lab-site"

# path in the overlay -> (content, mode)
FILES: Mapping[str, tuple[str, int]] = {
    "etc/motd": (f"This system root was deployed by g2d from the lab site ({MARKER}).\n", 0o644),
    "etc/g2d/site.conf": (f"site={MARKER}\n", 0o640),
    "etc/sysctl.d/90-g2d-lab.conf": ("kernel.panic = 10\n", 0o644),
    "root/.profile.d/g2d.sh": ("export G2D_SITE=" + MARKER + "\n", 0o600),
    "srv/.keep": ("", 0o644),
    "portage/repos.conf/.keep": ("", 0o644),
}


def write_patchfiles(dest: Path) -> dict[str, int]:
    """Write the overlay into `dest` (replaced whole); returns path -> mode."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel, (content, mode) in FILES.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        os.chmod(path, mode)
    os.chmod(dest / "root", 0o700)  # as /root is in a real root
    return {rel: mode for rel, (_content, mode) in FILES.items()}
