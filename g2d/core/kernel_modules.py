"""Which kernel module files to load, in which order, read from depmod's own index files.

Pure: the texts of ``modules.dep``, ``modules.builtin``, ``modules.softdep`` and
``modules.alias`` in, an ordered tuple of module paths (relative to ``lib/modules/<v>/``)
out. Every module comes after the modules it needs, as modprobe would load them; soft
dependencies (``softdep btrfs pre: xxhash64``) are taken where they resolve to a module and
left out where they do not (they are optional by definition).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from g2d.core.errors import G2dUserError

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


class UnknownModule(G2dUserError):
    """A wanted module is neither a loadable module nor built into the kernel."""


def module_name(path: str) -> str:
    """``kernel/fs/btrfs/btrfs.ko`` -> ``btrfs``; ``-`` and ``_`` are the same to the kernel."""
    base = path.rsplit("/", 1)[-1]
    for suffix in MODULE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


@dataclass(frozen=True, slots=True)
class ModuleIndex:
    paths: dict[str, str]  # name -> path of every loadable module
    deps: dict[str, tuple[str, ...]]  # name -> names it needs (modules.dep)
    builtin: frozenset[str]
    softdeps: dict[str, tuple[str, ...]]  # name -> "pre:" names, as written (may be aliases)
    aliases: dict[str, str]  # exact (non-glob) alias -> module name

    @classmethod
    def parse(cls, dep: str, builtin: str = "", softdep: str = "", alias: str = "") -> ModuleIndex:
        paths: dict[str, str] = {}
        deps: dict[str, tuple[str, ...]] = {}
        for line in dep.splitlines():
            if ":" not in line:
                continue
            path, rest = line.split(":", 1)
            name = module_name(path)
            paths[name] = path.strip()
            deps[name] = tuple(module_name(p) for p in rest.split())
        soft: dict[str, tuple[str, ...]] = {}
        for line in softdep.splitlines():
            words = line.split()
            if len(words) < 3 or words[0] != "softdep":
                continue
            # "softdep mod pre: a b post: c": only what must come before matters for a root
            pre, taking = [], False
            for word in words[2:]:
                if word.endswith(":"):
                    taking = word == "pre:"
                elif taking:
                    pre.append(word)
            name = module_name(words[1])
            soft[name] = soft.get(name, ()) + tuple(pre)
        aliases = {}
        for line in alias.splitlines():
            words = line.split()
            if len(words) == 3 and words[0] == "alias" and not _is_glob(words[1]):
                aliases.setdefault(words[1], module_name(words[2]))
        return cls(
            paths,
            deps,
            frozenset(module_name(p) for p in builtin.split()),
            soft,
            aliases,
        )

    def resolve(self, word: str) -> str | None:
        """A module name for a name or an alias; None for a built-in or an unknown one."""
        name = word.replace("-", "_")
        if name in self.builtin:
            return None
        if name in self.paths:
            return name
        for key in (word, f"crypto-{word}"):
            target = self.aliases.get(key)
            if target in self.paths:
                return target
        return None

    def load_order(self, wanted: Iterable[str], *, optional: Iterable[str] = ()) -> tuple[str, ...]:
        """Paths to load, dependencies first. ``wanted`` must each exist (or be built in);
        ``optional`` names are taken where the kernel has them."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for soft in self.softdeps.get(name, ()):
                target = self.resolve(soft)
                if target:
                    visit(target)
            for dep in self.deps.get(name, ()):
                visit(dep)
            order.append(self.paths[name])

        for word in wanted:
            name = word.replace("-", "_")
            if name in self.builtin:
                continue
            if name not in self.paths:
                raise UnknownModule(
                    f"the kernel has no module {word!r} and does not build it in",
                    hint="check the kernel config, or leave the module out",
                )
            visit(name)
        for word in optional:
            target = self.resolve(word)
            if target:
                visit(target)
        return tuple(order)


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")
