"""The ``portage`` user and group in a lab root, with Gentoo's fixed ids (acct-user/portage)."""

from __future__ import annotations

import os
from pathlib import Path

from g2d.core.errors import G2dUserError

PORTAGE_ID = 250
_LINES = {
    "etc/passwd": (
        f"portage:x:{PORTAGE_ID}:{PORTAGE_ID}:System user; portage:"
        "/var/lib/portage/home:/sbin/nologin"
    ),
    "etc/shadow": "portage:!:19000::::::",
    "etc/group": f"portage:x:{PORTAGE_ID}:",
    "etc/gshadow": "portage:!::",
}


class IdTaken(G2dUserError):
    """Gentoo's fixed id for portage is already used by another name in the root."""


def _ids_in(path: Path, field: int) -> dict[int, str]:
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split(":")
        if len(parts) > field and parts[field].isdigit():
            out[int(parts[field])] = parts[0]
    return out


def add_portage_user(root: Path) -> None:
    """Add portage:portage (250:250) unless present; refuse if 250 belongs to someone else."""
    for rel, field in (("etc/passwd", 2), ("etc/group", 2)):
        owner = _ids_in(root / rel, field).get(PORTAGE_ID)
        if owner not in (None, "portage"):
            raise IdTaken(f"{root / rel}: id {PORTAGE_ID} belongs to {owner!r}, not portage")
    for rel, line in _LINES.items():
        path = root / rel
        text = path.read_text() if path.exists() else ""
        if any(entry.split(":", 1)[0] == "portage" for entry in text.splitlines()):
            continue
        path.write_text(text + ("" if text.endswith("\n") or not text else "\n") + line + "\n")
    home = root / "var/lib/portage/home"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, PORTAGE_ID, PORTAGE_ID)
