"""Where mirror lists come from: the ``mirrors`` setting, and list files in ``mirror_lists``.

A list file wins over the setting for its type, so a site can keep the old tool's
``config/mirrors/`` directory as it is. Gentoo's official mirrors stay the default for a type
that neither names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.core.mirrors import OLD_LIST_NAMES, Resource, list_resource, parse_mirror_list
from g2d.settings import SiteConfig


class MirrorListsUnreadable(G2dUserError):
    """The ``mirror_lists`` directory, or a file in it, cannot be used."""

    def __init__(self, path: Path, reason: str, *, hint: str | None = None) -> None:
        super().__init__(os.fspath(path), reason, hint=hint)
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"{os.fspath(self.path)}: {self.reason}"


def read_mirror_lists(directory: Path) -> dict[Resource, tuple[str, ...]]:
    """The lists in ``directory`` by resource. Dotfiles are skipped; any other name that is
    not a resource is refused (a typo like ``repo`` would otherwise be silently ignored)."""
    if not directory.is_dir():
        raise MirrorListsUnreadable(
            directory, "is not a directory", hint="create it, or unset mirror_lists"
        )
    names = ", ".join([*Resource.__members__, *OLD_LIST_NAMES])
    found: dict[Resource, tuple[str, ...]] = {}
    origin: dict[Resource, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        resource = list_resource(path.name)
        if resource is None:
            raise MirrorListsUnreadable(
                path, "is not named for a resource type", hint=f"name list files {names}"
            )
        if resource in origin:
            raise MirrorListsUnreadable(
                path, f"lists {resource} mirrors, as {origin[resource].name} does; keep one"
            )
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise MirrorListsUnreadable(path, f"cannot be read: {e}") from e
        found[resource] = parse_mirror_list(text, os.fspath(path))
        origin[resource] = path
    return found


def mirror_table(config: SiteConfig) -> Mapping[Resource, tuple[str, ...]]:
    """Every resource's mirror URLs, in the order configured."""
    table = {r: tuple(config.mirrors.get(r, ())) for r in Resource}
    if config.mirror_lists is not None:
        table.update(read_mirror_lists(config.mirror_lists))
    return table


def mirrors_for(config: SiteConfig, resource: Resource | str) -> tuple[str, ...]:
    return mirror_table(config)[Resource(resource)]
