"""``g2d lineage``: list, show, create, branch, seal, roll back, promote, retire, prune and
replicate generations, on ZFS, btrfs or plain directories (the backend is sensed from the
target), here or on a host reached over ssh (``zfs://root@host:2222:/pool/sys``; its key
pinned from ``--known-hosts``).

Every change prints its plan; ``--dry-run`` prints it and changes nothing. A run that was
cut off is finished by running the same command again. Registered on ``g2d.cli.app`` by
one import line in cli.py.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from g2d.cli import G2dGroup, app
from g2d.core.errors import G2dUserError
from g2d.core.lineage import SAFE, GenName, GenState, Lineage, Meta, Origin
from g2d.core.uri import Target, parse_target

if TYPE_CHECKING:
    from g2d.hosts.ssh import SshHost
    from g2d.storage.base import Backend
    from g2d.storage.lineage_run import LineageWriter, Phases

lineage_app = typer.Typer(
    cls=G2dGroup,
    help="Generations of system roots: g1@safe -> g2 -> g3, on ZFS, btrfs or directories.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.add_typer(lineage_app, name="lineage")

TargetArg = Annotated[str, typer.Argument(help="zfs://pool/sys/g1, /srv/sys/g2, btrfs://...")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]
Wait = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for another writer on the pool.")
]
Stage3 = Annotated[str | None, typer.Option("--stage3", help="Record the stage3 it came from.")]
Profile = Annotated[str | None, typer.Option("--profile", help="Record its Portage profile.")]
Kernel = Annotated[str | None, typer.Option("--kernel", help="Record its kernel version.")]
FlowRun = Annotated[str | None, typer.Option("--flow-run", help="Record the flow run id.")]


@dataclass
class _Ssh:
    """How remote targets are reached: set by the group's options, for every command."""

    known_hosts: str | None = None
    identity: str | None = None
    opened: list[SshHost] = field(default_factory=list)

    def close(self) -> None:
        while self.opened:
            self.opened.pop().close()


_ssh = _Ssh()


@lineage_app.callback()
def _options(
    ctx: typer.Context,
    known_hosts: Annotated[str | None, typer.Option(
        "--known-hosts", envvar="G2D_SSH_KNOWN_HOSTS", metavar="FILE",
        help="Remote targets: the known_hosts file pinning their host keys "
        "(default ~/.ssh/known_hosts). Unknown or changed keys are refused.")] = None,
    identity: Annotated[str | None, typer.Option(
        "--identity", envvar="G2D_SSH_IDENTITY", metavar="FILE",
        help="Remote targets: the ssh client key (default: the ssh agent's keys).")] = None,
) -> None:  # fmt: skip
    _ssh.known_hosts, _ssh.identity = known_hosts, identity
    ctx.call_on_close(_ssh.close)


def _open(text: str) -> tuple[Target, Backend]:
    from g2d.hosts.open import host_for
    from g2d.hosts.ssh import SshHost
    from g2d.storage.sense import backend_for

    target = parse_target(text)
    host = host_for(target.host, known_hosts=_ssh.known_hosts, key=_ssh.identity)
    if isinstance(host, SshHost):
        _ssh.opened.append(host)
    return target, backend_for(target, host)


def _writer(backend: Backend, root: str, wait: float) -> LineageWriter:
    from g2d.settings import load_settings
    from g2d.storage.lineage_run import LineageWriter
    from g2d.storage.sense import pool_of

    state_dir = load_settings().state_dir
    return LineageWriter(backend, root, pool_of(backend, root), state_dir, wait)


def _root_of(name: str) -> str:
    return posixpath.dirname(name) if name.startswith("/") else name.rpartition("/")[0]


def _lineage_root(backend: Backend, name: str) -> str:
    """``name`` is a generation (named gN, or with g2d:gen): its parent; else the root."""
    leaf = name.rstrip("/").rpartition("/")[2]
    if GenName.find(leaf) is not None:
        return _root_of(name)
    from g2d.storage.base import NotFound

    try:
        if Meta.gen in backend.volume(name).meta:
            return _root_of(name)
    except NotFound:
        pass  # a directory that holds volumes, or nothing yet
    return name


def _intent(verb: str, target: Target, *words: str | None) -> str:
    return shlex.join([verb, str(target), *(w for w in words if w is not None)])


def _opt(name: str, value: object) -> str | None:
    return None if value in (None, False) else f"{name}={value}" if value is not True else name


def _run(writer: LineageWriter, intent: str, phases: Phases, dry_run: bool) -> None:
    if dry_run:
        outcome = writer.preview(intent, phases)
        if outcome.resumed:
            typer.echo(f"an interrupted `g2d lineage {intent}` would be finished:")
        for plan in outcome.plans:
            typer.echo(plan.render())
        if outcome.done:
            done = ", ".join(str(i + 1) for i in outcome.done)
            typer.echo(f"  (steps {done} are done already)")
        for why in outcome.later:
            typer.echo(f"  then: {why} (planned once the steps above have run)")
        typer.echo("dry run: nothing changed")
        return
    outcome = writer.run(intent, phases)
    if outcome.resumed:
        typer.echo(f"finished the interrupted `g2d lineage {intent}`")
    for plan, ran in zip(outcome.plans, outcome.ran, strict=True):
        typer.echo(plan.render())
        skipped = len(plan.steps) - len(ran)
        if skipped:
            typer.echo(f"  ({skipped} step(s) were done already and skipped)")


def _load(backend: Backend, root: str) -> Lineage:
    from g2d.storage.lineage import load_lineage

    return load_lineage(backend, root)


@lineage_app.command("list")
def list_(
    target: TargetArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the lineage as JSON.")] = False,
    sizes: Annotated[bool, typer.Option("--sizes/--no-sizes", help="Show sizes.")] = True,
) -> None:
    """Print the lineage as a tree: states, sizes, seals, origins."""
    import json

    from g2d.core.lineage_tree import render_tree

    t, backend = _open(target)
    lineage = _load(backend, _lineage_root(backend, t.name))
    if as_json:
        typer.echo(json.dumps(lineage.to_json(), indent=2))
    else:
        typer.echo(render_tree(lineage, sizes=sizes), nl=False)


@lineage_app.command("show")
def show(target: TargetArg) -> None:
    """Show one generation (or what a snapshot name resolves to) with its metadata."""
    from g2d.core.lineage_tree import human_size

    t, backend = _open(target)
    lineage = _load(backend, _root_of(t.name))
    gen = lineage.generation(t.name)
    lines = [f"generation: {gen.key}", f"volume: {gen.volume.name if gen.volume else '-'}"]
    lines.append(f"state: {gen.state.value if gen.state else 'unknown'}")
    parent = lineage.parent(gen)
    lines.append(f"parent: {parent.ref if parent else gen.meta.get(Meta.parent, '-')}")
    if gen.volume is not None:
        lines.append(f"origin: {gen.volume.origin or '-'}  used: {human_size(gen.volume.used)}")
    lines += [f"{k}: {v}" for k, v in sorted(gen.meta.items())]
    if gen.volume is not None:
        snap = t.snapshot or SAFE
        try:
            lines.append(f"@{snap}: {lineage.resolve_ref(gen.volume.name, snap).ref}")
        except G2dUserError as e:
            lines.append(f"@{snap}: {e}")
    for s in gen.snapshots:
        mark = " sealed" if s.sealed else ""
        holds = f" holds={','.join(sorted(s.info.holds))}" if s.info.holds else ""
        lines.append(f"  {s.ref}{mark}{holds}")
    typer.echo("\n".join(lines))


@lineage_app.command("create")
def create(
    target: TargetArg, dry_run: DryRun = False, wait: Wait = 0.0, stage3: Stage3 = None,
    profile: Profile = None, kernel: Kernel = None, flow_run: FlowRun = None,
) -> None:  # fmt: skip
    """Create a base generation: TARGET is root/gN, or the root (then the next gN)."""
    from g2d.storage.lineage import create_op

    t, backend = _open(target)
    leaf = GenName.find(t.name.rpartition("/")[2])
    root = _root_of(t.name) if leaf else t.name
    origin = Origin(stage3, profile, kernel, flow_run)
    intent = _intent("create", t, *(_opt(f"--{k}", v) for k, v in _origin_words(origin)))
    ops = create_op(backend, leaf, origin, datetime.now(UTC))
    _run(_writer(backend, root, wait), intent, ops, dry_run)


def _origin_words(origin: Origin) -> list[tuple[str, str | None]]:
    return [("stage3", origin.stage3), ("profile", origin.profile), ("kernel", origin.kernel),
            ("flow-run", origin.flow_run)]  # fmt: skip


@lineage_app.command("branch")
def branch(
    source: Annotated[str, typer.Argument(help="gN@snap to branch from; no @snap means @safe.")],
    name: Annotated[str | None, typer.Argument(help="The new generation (default: next gN).")]
    = None,
    dry_run: DryRun = False, wait: Wait = 0.0, stage3: Stage3 = None, profile: Profile = None,
    kernel: Kernel = None, flow_run: FlowRun = None,
) -> None:  # fmt: skip
    """Clone a sealed snapshot into the next generation (gN@snap -> gN+1)."""
    from g2d.storage.lineage import branch_op

    t, backend = _open(source)
    t = t if t.snapshot else t.with_snapshot(SAFE)
    new = GenName.parse(name) if name else None
    origin = Origin(stage3, profile, kernel, flow_run)
    words = [str(new) if new else None, *(_opt(f"--{k}", v) for k, v in _origin_words(origin))]
    ops = branch_op(backend, f"{t.name}@{t.snapshot}", new, origin, datetime.now(UTC))
    _run(_writer(backend, _root_of(t.name), wait), _intent("branch", t, *words), ops, dry_run)


@lineage_app.command("seal")
def seal(target: TargetArg, dry_run: DryRun = False, wait: Wait = 0.0) -> None:
    """Snapshot a generation with a unique name, mark it sealed and hold it."""
    from g2d.storage.lineage import seal_op

    t, backend = _open(target)
    ops = seal_op(backend, t.name, datetime.now(UTC))
    _run(_writer(backend, _root_of(t.name), wait), _intent("seal", t), ops, dry_run)


@lineage_app.command("rollback")
def rollback(
    target: Annotated[str, typer.Argument(help="gN (to its newest sealed snapshot) or gN@snap.")],
    destroy_newer: Annotated[
        bool, typer.Option("--destroy-newer", help="Destroy snapshots newer than the target.")
    ] = False,
    dry_run: DryRun = False,
    wait: Wait = 0.0,
) -> None:
    """Roll a generation back to its newest sealed snapshot (or the one named)."""
    from g2d.storage.lineage import rollback_op

    t, backend = _open(target)
    ops = rollback_op(backend, t.name, t.snapshot, destroy_newer=destroy_newer)
    intent = _intent("rollback", t, _opt("--destroy-newer", destroy_newer))
    _run(_writer(backend, _root_of(t.name), wait), intent, ops, dry_run)


@lineage_app.command("promote")
def promote(target: TargetArg, dry_run: DryRun = False, wait: Wait = 0.0) -> None:
    """Make a generation independent of the one it was cloned from (parents stay)."""
    from g2d.storage.lineage import promote_op

    t, backend = _open(target)
    ops = promote_op(backend, t.name)
    _run(_writer(backend, _root_of(t.name), wait), _intent("promote", t), ops, dry_run)


@lineage_app.command("retire")
def retire(target: TargetArg, dry_run: DryRun = False, wait: Wait = 0.0) -> None:
    """Mark a generation retired; the next prune destroys what nothing kept needs."""
    from g2d.storage.lineage import set_state_op

    t, backend = _open(target)
    ops = set_state_op(backend, t.name, GenState.retired)
    _run(_writer(backend, _root_of(t.name), wait), _intent("retire", t), ops, dry_run)


@lineage_app.command("prune")
def prune(
    target: Annotated[str, typer.Argument(help="The lineage root, or any generation in it.")],
    keep: Annotated[int, typer.Option("--keep", help="Sealed snapshots kept per generation.")]
    = 3,
    keep_unsealed: Annotated[int | None, typer.Option(
        "--keep-unsealed", help="Unsealed snapshots kept per generation (default: all).")] = None,
    protect: Annotated[list[str] | None, typer.Option(
        "--protect", help="Never destroy this (volume, vol@snap, snapshot or gN); repeatable."
    )] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Destroy failed generations too.")]
    = False,
    building: Annotated[bool, typer.Option(
        "--building", help="Apply the counts to building generations too.")] = False,
    keep_retired: Annotated[bool, typer.Option(
        "--keep-retired", help="Keep retired generations whole.")] = False,
    dry_run: DryRun = False,
    wait: Wait = 0.0,
) -> None:  # fmt: skip
    """Destroy old sealed snapshots and retired generations; never what a kept one needs."""
    from g2d.core.retention import RetentionPolicy, prune_selection
    from g2d.storage.lineage import prune_op

    t, backend = _open(target)
    root = _lineage_root(backend, t.name)
    policy = RetentionPolicy(keep, keep_unsealed, not keep_retired, failed, building)
    protected = sorted(set(protect or ()))
    words = [f"--keep={keep}", _opt("--keep-unsealed", keep_unsealed),
             *(f"--protect={p}" for p in protected), _opt("--failed", failed),
             _opt("--building", building), _opt("--keep-retired", keep_retired)]  # fmt: skip
    intent = _intent("prune", t, *words)
    selection = prune_selection(_load(backend, root), policy, protected)
    for item in selection.destroy:
        typer.echo(f"destroy {item}  # {selection.reasons[str(item)]}")
    for item in selection.keep:
        typer.echo(f"keep    {item}  # {selection.reasons[str(item)]}")
    _run(_writer(backend, root, wait), intent, prune_op(backend, policy, protected), dry_run)


@lineage_app.command("replicate")
def replicate(
    source: Annotated[str, typer.Argument(help="The lineage (its root, or a generation in it).")],
    target: Annotated[str, typer.Argument(help="The root to copy it to: another pool or host.")],
    dry_run: DryRun = False,
    wait: Wait = 0.0,
) -> None:  # fmt: skip
    """Copy a lineage to another pool or host: clones arrive as clones, metadata and seals
    travel, later runs send only what is new."""
    from g2d.settings import load_settings
    from g2d.storage.replicate import describe, plan_replication
    from g2d.storage.replicate import replicate as run

    s, src = _open(source)
    t, dst = _open(target)
    root = _lineage_root(src, s.name)
    if dry_run:
        typer.echo(plan_replication(src, root, dst, t.name).render())
        typer.echo("dry run: nothing changed")
        return
    intent = _intent("replicate", s, str(t))
    state_dir = load_settings().state_dir
    result = run(src, root, dst, t.name, state_dir=state_dir, intent=intent, wait=wait)
    typer.echo(result.replication.render())
    for line in describe(result):
        typer.echo(line)
