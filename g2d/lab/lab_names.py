"""Names the lab's release media share: stage3 variants and build timestamps."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

BASE_PROFILE = "default/linux/amd64/23.0"
BOOT_MARKER = "G2D-LAB-BOOT-OK"
_STAMP = re.compile(r"20[0-9]{6}T[0-9]{6}Z")


class Variant(enum.StrEnum):
    """A stage3 flavour; the lab makes the two unsuffixed amd64 ones."""

    openrc = enum.auto()
    systemd = enum.auto()

    def profile(self) -> str:
        """The profile (relative to ``profiles/``) a stage3 of this variant links to."""
        return BASE_PROFILE if self is Variant.openrc else f"{BASE_PROFILE}/systemd"

    def init_path(self) -> str:
        """Where the variant's init lives in the root (Debian's merged /usr layout)."""
        return "usr/sbin/init" if self is Variant.openrc else "usr/lib/systemd/systemd"


@dataclass(frozen=True, slots=True, order=True)
class Stamp:
    """A release build time as Gentoo writes it: ``20240519T170104Z`` (UTC)."""

    text: str

    def __post_init__(self) -> None:
        if not _STAMP.fullmatch(self.text):
            raise ValueError(f"release stamp {self.text!r} is not YYYYMMDDTHHMMSSZ")
        self.datetime  # noqa: B018 - a date that does not exist (Feb 30) fails here

    @classmethod
    def of(cls, when: datetime) -> Stamp:
        return cls(when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"))

    @property
    def datetime(self) -> datetime:
        return datetime.strptime(self.text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    @property
    def epoch(self) -> int:
        return int(self.datetime.timestamp())

    @property
    def day(self) -> date:
        return self.datetime.date()

    def __str__(self) -> str:
        return self.text


def boot_marker(variant: Variant, stamp: Stamp) -> str:
    """The line a lab stage3's init prints on the console once a kernel has booted it."""
    return f"{BOOT_MARKER} {variant} {stamp}"
