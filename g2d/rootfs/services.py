"""Enable a profile's services in a root, offline, for the init system the root has.

OpenRC: ``rc-update add S L`` is the symlink ``/etc/runlevels/L/S -> /etc/init.d/S``.
systemd: ``systemctl enable U`` links U into the ``.wants``/``.requires``/``.upholds``
directories its ``[Install]`` section names, adds its ``Alias=`` links and enables its
``Also=`` units; ``mask`` links it to /dev/null. Done here rather than by the host's
``systemctl --root`` (which does the same offline) because a dom0 need not run systemd;
the lab tests compare the two. The init system is read from the root: ``/sbin/init`` that
is systemd means systemd, any other init means OpenRC (Gentoo's two).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from g2d.core.errors import G2dUserError
from g2d.core.service_lines import InitSystem, ServiceAction, ServiceVerb
from g2d.rootfs.inroot import make_dirs, resolve_in_root, symlink

RUNLEVELS = ("sysinit", "boot", "default", "nonetwork", "shutdown")  # what OpenRC ships
UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")
SYSTEMD_ETC = PurePosixPath("etc/systemd/system")
_DEPENDENCY_DIRS = {"WantedBy": ".wants", "RequiredBy": ".requires", "UpheldBy": ".upholds"}


class ServicesFailed(G2dUserError):
    def __init__(self, root: str, init: InitSystem, problems: Sequence[str]) -> None:
        hint = "install the packages first, or fix .services"
        super().__init__(root, init, tuple(problems), hint=hint)
        self.root = root
        self.init = init
        self.problems = tuple(problems)

    def __str__(self) -> str:
        rows = "".join(f"\n  {p}" for p in self.problems)
        return f"{self.root}: cannot apply the {self.init} services:{rows}"


@dataclass(frozen=True)
class ServicesApplied:
    init: InitSystem
    applied: tuple[str, ...]  # the actions taken, as the commands they stand for


def detect_init(root: Path) -> InitSystem:
    init = resolve_in_root(root, "sbin/init")
    if init.exists():
        return InitSystem.systemd if init.name == "systemd" else InitSystem.openrc
    if resolve_in_root(root, "usr/lib/systemd/systemd").exists():
        return InitSystem.systemd
    raise ServicesFailed(os.fspath(root), InitSystem.openrc, ["the root has no /sbin/init"])


def apply_services(root: Path, actions: Sequence[ServiceAction]) -> ServicesApplied:
    """Apply the actions of the root's init system (the others are for the other one).
    Every problem is collected first; nothing is changed unless all can be applied."""
    init = detect_init(root)
    mine = [a for a in actions if a.init is init]
    if init is InitSystem.openrc:
        problems = [p for a in mine if (p := _openrc_problem(root, a))]
        plan = [] if problems else [_openrc_step(root, a) for a in mine]
    else:
        plan, problems = _systemd_plan(root, mine)
    if problems:
        raise ServicesFailed(os.fspath(root), init, problems)
    for step in plan:
        step()
    return ServicesApplied(init, tuple(str(a) for a in mine))


def _openrc_problem(root: Path, action: ServiceAction) -> str | None:
    script = resolve_in_root(root, f"etc/init.d/{action.name}")
    if action.verb is ServiceVerb.enable and not script.exists():
        return f"{action.source}: {action}: /etc/init.d/{action.name} does not exist"
    level = resolve_in_root(root, f"etc/runlevels/{action.runlevel}")
    if action.runlevel not in RUNLEVELS and not level.is_dir():
        return f"{action.source}: {action}: runlevel {action.runlevel} does not exist"
    return None


Step = Callable[[], object]


def _openrc_step(root: Path, action: ServiceAction) -> Step:
    link = PurePosixPath("etc/runlevels", str(action.runlevel), action.name)
    if action.verb is ServiceVerb.enable:
        target = f"/etc/init.d/{action.name}"
        return lambda: (make_dirs(root, link.parent), symlink(root, link, target))
    return lambda: resolve_in_root(root, link, follow_last=False).unlink(missing_ok=True)


def _systemd_plan(root: Path, actions: Sequence[ServiceAction]) -> tuple[list[Step], list[str]]:
    plan: list[Step] = []
    problems: list[str] = []
    done: set[tuple[ServiceVerb, str]] = set()
    todo = [(a.verb, a.name, a.source) for a in actions]
    while todo:
        verb, unit, source = todo.pop(0)
        if (verb, unit) in done:
            continue
        done.add((verb, unit))
        if verb is ServiceVerb.mask:
            plan.append(lambda u=unit: symlink(root, SYSTEMD_ETC / u, "/dev/null"))
            continue
        found = _find_unit(root, unit)
        if found is None:
            problems.append(f"{source}: systemctl {verb} {unit}: no such unit file")
            continue
        if verb is ServiceVerb.disable:
            plan.append(lambda u=unit, f=found: _disable(root, u, f.name))
            continue
        install = _install_section(root, found)
        links = _links(unit, found, install)
        if not links and not install.get("Also"):
            problems.append(f"{source}: systemctl enable {unit}: it has no [Install] section")
        for name, target in links:
            plan.append(lambda n=name, t=target: symlink(root, n, t))
        todo += [(ServiceVerb.enable, also, f"Also= of {unit}") for also in install.get("Also", [])]
    return plan, problems


def _find_unit(root: Path, unit: str) -> PurePosixPath | None:
    """The unit's file as the root names it; a template for an instance ``a@b.service``."""
    names = [unit]
    if "@" in unit and not unit.split("@", 1)[1].startswith("."):
        names.append(unit.split("@", 1)[0] + "@" + "." + unit.rsplit(".", 1)[1])
    for name in names:
        for directory in UNIT_DIRS:
            rel = PurePosixPath("/", directory, name)
            if resolve_in_root(root, rel).is_file():
                return rel
    return None


def _install_section(root: Path, unit_file: PurePosixPath) -> dict[str, list[str]]:
    text = resolve_in_root(root, unit_file).read_text()
    install: dict[str, list[str]] = {}
    # a key may repeat and its values accumulate; an empty value resets it (systemd.unit(5))
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Install]" and "=" in line and not line.startswith(("#", ";")):
            key, value = (s.strip() for s in line.split("=", 1))
            install[key] = [] if not value else install.get(key, []) + value.split()
    return install


def _links(
    unit: str, unit_file: PurePosixPath, install: dict[str, list[str]]
) -> list[tuple[PurePosixPath, str]]:
    name = unit
    if unit_file.name != unit and "@." in unit_file.name:
        pass  # an instance of a template: links carry the instance name
    elif "@." in unit:  # a template enabled as such: its DefaultInstance, if it has one
        default = install.get("DefaultInstance", [])
        if not default:
            return []
        name = unit.replace("@.", f"@{default[0]}.")
    links = []
    for key, suffix in _DEPENDENCY_DIRS.items():
        for target in install.get(key, []):
            links.append((SYSTEMD_ETC / f"{target}{suffix}" / name, os.fspath(unit_file)))
    for alias in install.get("Alias", []):
        links.append((SYSTEMD_ETC / alias, os.fspath(unit_file)))
    return links


def _disable(root: Path, unit: str, file_name: str) -> None:
    etc = resolve_in_root(root, SYSTEMD_ETC)
    if not etc.is_dir():
        return
    for top, dirs, files in os.walk(etc):
        for name in dirs + files:
            path = Path(top, name)
            if not path.is_symlink():
                continue
            in_deps = Path(top).suffix in _DEPENDENCY_DIRS.values()
            alias = top == os.fspath(etc) and os.readlink(path).endswith(f"/{file_name}")
            if (in_deps and name == unit) or alias:
                path.unlink()
