"""The lineage as a tree of text: generations under the snapshots they were branched from.

Pure rendering, no I/O. Parents come from metadata (``Lineage.parent``), so the tree reads
the same before and after ``zfs promote``. Each generation line shows its state, size and
origin record; each snapshot line its seal, size (where the backend knows it), holds, and
where it lives when promote moved it to another volume. The snapshot ``@safe`` resolves to
is marked ``<- @safe``.
"""

from __future__ import annotations

from g2d.core.lineage import SAFE, Generation, Lineage, LineageError, Meta, Snap

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: int | None) -> str:
    """``512 B``, ``1.5 KiB``, ``12.0 MiB``; ``?`` when the backend cannot say."""
    if size is None:
        return "?"
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def render_tree(lineage: Lineage, *, sizes: bool = True) -> str:
    """The whole lineage, one line per generation and snapshot, ending with a newline."""
    lines = [lineage.root]
    placed: set[str] = set()
    parented = {g.key for g in lineage.generations if lineage.parent(g) is not None}
    tops = [g for g in lineage.generations if g.key not in parented]
    _children(lineage, tops, "", lines, placed, sizes)
    # a parent link that loops (hand-edited metadata) leaves generations unplaced
    rest = [g for g in lineage.generations if g.key not in placed]
    _children(lineage, rest, "", lines, placed, sizes)
    return "\n".join(lines) + "\n"


def _children(
    lineage: Lineage,
    gens: list[Generation],
    prefix: str,
    lines: list[str],
    placed: set[str],
    sizes: bool,
) -> None:
    gens = [g for g in gens if g.key not in placed]
    for i, gen in enumerate(gens):
        last = i == len(gens) - 1
        placed.add(gen.key)
        lines.append(f"{prefix}{'└── ' if last else '├── '}{_gen_line(lineage, gen, sizes)}")
        inner = prefix + ("    " if last else "│   ")
        safe = _safe_of(lineage, gen)
        for j, snap in enumerate(gen.snapshots):
            snap_last = j == len(gen.snapshots) - 1
            lines.append(
                f"{inner}{'└── ' if snap_last else '├── '}"
                f"{_snap_line(gen, snap, snap is safe, sizes)}"
            )
            below = inner + ("    " if snap_last else "│   ")
            _children(lineage, lineage.children(snap), below, lines, placed, sizes)


def _safe_of(lineage: Lineage, gen: Generation) -> Snap | None:
    if gen.volume is None:
        return None
    try:
        return lineage.resolve_ref(gen.volume.name, SAFE)
    except LineageError:
        return None


def _gen_line(lineage: Lineage, gen: Generation, sizes: bool) -> str:
    if gen.gen is None:
        words = [gen.key, "(not a generation)"]
    else:
        words = [str(gen.gen), gen.state.value if gen.state else "state unknown"]
    if gen.volume is None:
        words.append("(volume destroyed)")
    elif gen.gen is not None and gen.volume.name != f"{lineage.root}/{gen.gen}":
        words.append(f"on {gen.volume.name}")
    if sizes and gen.volume is not None and gen.volume.used is not None:
        words.append(human_size(gen.volume.used))
    parent = lineage.parent(gen)
    recorded = gen.meta.get(Meta.parent)
    if parent is None and recorded:
        words.append(f"parent {recorded} (gone)")
    origin = gen.volume.origin if gen.volume else None
    if origin is not None and (parent is None or parent.ref != origin):
        words.append(f"origin {origin}")  # the storage origin, where it differs (promote)
    words += [f"{k.removeprefix('g2d:')}={v}" for k, v in gen.origin.to_meta().items()]
    return "  ".join(words)


def _snap_line(gen: Generation, snap: Snap, is_safe: bool, sizes: bool) -> str:
    words = [f"@{snap.name}"]
    if snap.sealed:
        words.append(f"sealed {snap.info.meta.get(Meta.sealed, '')}".rstrip())
    if sizes and snap.info.used is not None:
        words.append(human_size(snap.info.used))
    if gen.volume is None or snap.ref.volume != gen.volume.name:
        words.append(f"on {snap.ref.volume}")
    if snap.held:
        words.append(f"held by {','.join(sorted(snap.held))}")
    if is_safe:
        words.append(f"<- @{SAFE}")
    return "  ".join(words)
