"""Profile, timezone and locales of a root, written as Gentoo's tools would write them.

- profile: ``eselect profile set P`` is the relative symlink
  ``/etc/portage/make.profile -> ../../var/db/repos/gentoo/profiles/P``;
- timezone: ``/etc/localtime -> ../usr/share/zoneinfo/Z`` (what the handbook and
  ``timedatectl`` make) and ``/etc/timezone`` holding Z (read by older tools);
- locales: ``/etc/locale.gen`` lists what ``locale-gen`` builds, ``/etc/env.d/02locale`` is
  what ``eselect locale set`` writes for OpenRC, ``/etc/locale.conf`` what systemd reads.
  ``locale-gen`` and ``env-update`` still have to run in the chroot (``CHROOT_STEPS``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.rootfs.inroot import resolve_in_root, symlink, write_file

REPO_IN_ROOT = "var/db/repos/gentoo"
CHROOT_STEPS = (("locale-gen",), ("env-update",))  # after set_locales, inside the root
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(_[A-Z]{2})?\.[A-Za-z0-9-]+(@[A-Za-z0-9]+)?$")
_ZONE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")


class SystemConfigError(G2dUserError):
    def __init__(self, what: str, value: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(what, value, reason, hint=hint)
        self.what = what
        self.value = value
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.what} {self.value!r}: {self.reason}"


def set_profile(
    root: Path, profile: str, *, repo: Path | None = None, repo_in_root: str = REPO_IN_ROOT
) -> Path:
    """Point make.profile at ``profile``; it must exist in ``repo`` (the host's copy of the
    repository that will be mounted at ``repo_in_root``), or in the root's own copy."""
    where = repo if repo is not None else resolve_in_root(root, repo_in_root)
    if ".." in profile.split("/") or not (where / "profiles" / profile).is_dir():
        raise SystemConfigError(
            "profile", profile, f"is not a profile of the repository at {where}",
            hint="eselect profile list shows the repository's profiles",
        )  # fmt: skip
    target = f"../../{repo_in_root.strip('/')}/profiles/{profile}"
    return symlink(root, "etc/portage/make.profile", target)


def set_timezone(root: Path, zone: str) -> None:
    if not _ZONE.match(zone) or not resolve_in_root(root, f"usr/share/zoneinfo/{zone}").is_file():
        raise SystemConfigError(
            "timezone", zone, "is not in the root's /usr/share/zoneinfo",
            hint="zones are named like Europe/Berlin or UTC (sys-libs/timezone-data)",
        )  # fmt: skip
    symlink(root, "etc/localtime", f"../usr/share/zoneinfo/{zone}")
    write_file(root, "etc/timezone", f"{zone}\n")


def set_locales(root: Path, locales: Sequence[str], *, lang: str | None = None) -> None:
    """Locales to build (``en_US.UTF-8``), and LANG (default: the first one)."""
    bad = [loc for loc in locales if not _LOCALE.match(loc)]
    if bad or not locales:
        raise SystemConfigError("locales", ", ".join(bad), "want names like en_US.UTF-8")
    supported = resolve_in_root(root, "usr/share/i18n/SUPPORTED")
    if supported.is_file():  # glibc's list; a root without it is checked by locale-gen
        known = {line.split()[0] for line in supported.read_text().splitlines() if line.strip()}
        missing = [loc for loc in locales if loc not in known]
        if missing:
            raise SystemConfigError(
                "locales", ", ".join(missing), "are not in /usr/share/i18n/SUPPORTED"
            )
    lang = lang or _env_name(locales[0])
    lines = "".join(f"{loc} {loc.split('.', 1)[1].split('@')[0]}\n" for loc in locales)
    write_file(root, "etc/locale.gen", "# locales locale-gen builds; written by g2d\n" + lines)
    write_file(root, "etc/env.d/02locale", f'LANG="{lang}"\n')
    write_file(root, "etc/locale.conf", f"LANG={lang}\n")


def _env_name(locale: str) -> str:
    """en_US.UTF-8 -> en_US.utf8, the spelling ``locale -a`` and eselect use."""
    name, _, charset = locale.partition(".")
    charset, at, modifier = charset.partition("@")
    return f"{name}.{charset.lower().replace('-', '')}{at}{modifier}"


def profile_link(root: Path) -> str | None:
    """What make.profile points at, or None."""
    link = resolve_in_root(root, "etc/portage/make.profile", follow_last=False)
    return os.readlink(link) if link.is_symlink() else None
