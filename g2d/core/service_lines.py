"""The `.services` files of the site's package sets, read as data instead of run as shell.

The old tool ran them with ``sh`` in the chroot; each branched on the init system itself
(``if systemctl ...; then systemctl enable X; else rc-update add X default; fi``). g2d
takes the commands that enable services, keeps those of the root's init system and applies
them offline (``rootfs.services``). Shell control lines (``if``/``then``/``else``/``fi``)
are skipped, since g2d makes that choice; any other command is refused with its place, so
nothing is silently dropped.
"""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from g2d.core.errors import G2dUserError

DEFAULT_RUNLEVEL = "default"
_CONTROL = re.compile(r"^(if|then|else|elif|fi)\b")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]*$")
_QUIET_FLAGS = {"--now", "--quiet", "-q", "--no-reload"}  # meaningless for an offline root


class InitSystem(enum.StrEnum):
    openrc = enum.auto()
    systemd = enum.auto()


class ServiceVerb(enum.StrEnum):
    enable = enum.auto()
    disable = enum.auto()
    mask = enum.auto()  # systemd only


@dataclass(frozen=True, slots=True)
class ServiceAction:
    init: InitSystem
    verb: ServiceVerb
    name: str  # openrc: the init.d script; systemd: the unit, with its suffix
    runlevel: str | None = None  # openrc only
    source: str = ""  # file:line it came from

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"bad service name {self.name!r}")
        if (self.runlevel is not None) != (self.init is InitSystem.openrc):
            raise ValueError(f"{self.name}: a runlevel goes with openrc, and only with it")

    def __str__(self) -> str:
        if self.init is InitSystem.openrc:
            word = {ServiceVerb.enable: "add", ServiceVerb.disable: "del"}[self.verb]
            return f"rc-update {word} {self.name} {self.runlevel}"
        return f"systemctl {self.verb} {self.name}"


class ServiceLineError(G2dUserError):
    def __init__(self, source: str, line: str, reason: str) -> None:
        super().__init__(
            source, line, reason,
            hint="a .services file holds `rc-update add|del NAME [LEVEL]` and "
            "`systemctl enable|disable|mask UNIT...` lines; other commands go in .patches",
        )  # fmt: skip
        self.source = source
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}: {self.line!r}"


def parse_services(lines: Iterable[tuple[str, str]]) -> tuple[ServiceAction, ...]:
    """Actions from (source "file:line", text) pairs, in order."""
    actions: list[ServiceAction] = []
    for source, raw in lines:
        text = raw.strip()
        if not text or text.startswith("#") or _CONTROL.match(text):
            continue
        try:
            words = shlex.split(text, comments=True)
        except ValueError as e:
            raise ServiceLineError(source, text, str(e)) from None
        actions += _actions(source, text, words)
    return tuple(actions)


def _actions(source: str, text: str, words: list[str]) -> list[ServiceAction]:
    if len(words) >= 3 and words[0] == "rc-update" and words[1] in ("add", "del", "delete"):
        if len(words) > 4:
            raise ServiceLineError(source, text, "rc-update takes one service and one runlevel")
        verb = ServiceVerb.enable if words[1] == "add" else ServiceVerb.disable
        level = words[3] if len(words) == 4 else DEFAULT_RUNLEVEL
        return [_make(source, text, InitSystem.openrc, verb, words[2], level)]
    if len(words) >= 3 and words[0] == "systemctl" and words[1] in ServiceVerb.__members__:
        units = [w for w in words[2:] if w not in _QUIET_FLAGS]
        flags = [u for u in units if u.startswith("-")]
        if flags or not units:
            raise ServiceLineError(source, text, f"unsupported systemctl options {flags}")
        verb = ServiceVerb(words[1])
        return [_make(source, text, InitSystem.systemd, verb, _unit(u), None) for u in units]
    raise ServiceLineError(source, text, "not a service command")


def _make(source: str, text: str, init: InitSystem, verb: ServiceVerb, name: str,
          level: str | None) -> ServiceAction:  # fmt: skip
    try:
        return ServiceAction(init, verb, name, level, source)
    except ValueError as e:
        raise ServiceLineError(source, text, str(e)) from None


def _unit(name: str) -> str:
    """systemctl's rule: a name without a unit suffix means a .service."""
    suffixes = (".service", ".socket", ".target", ".timer", ".path", ".mount", ".automount",
                ".swap", ".slice", ".scope", ".device")  # fmt: skip
    return name if name.endswith(suffixes) else f"{name}.service"
