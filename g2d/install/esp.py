"""Where the boot side writes: an ESP mounted as a directory, or a vfat image reached
through mtools without mounting it (for a host whose kernel has no vfat, like the lab's).

Both give the same plan steps for the same files: copy a local file to an ESP-relative
path, creating its directories, skipped where the file is already there and equal.
``open_esp`` takes the machine's ESP as a user names it (``g2d update``'s boot partition,
``g2d install --esp`` into an existing pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.core.plan import Step
from g2d.hosts.local import LocalHost

HOST = "local"  # the ESP is attached to the installing host


@dataclass(frozen=True, slots=True)
class EspImage:
    """A vfat file system on a block device or in an image file, ``offset`` bytes in
    (where a partition starts in a whole-disk image; mtools' ``file@@offset``)."""

    path: Path
    offset: int = 0

    def __post_init__(self) -> None:
        if self.offset < 0 or self.offset % 512:
            raise ValueError(f"ESP offset {self.offset} is not a multiple of 512 bytes")

    @property
    def spec(self) -> str:
        return f"{self.path}@@{self.offset}" if self.offset else str(self.path)

    def __str__(self) -> str:
        return self.spec


Esp = Path | EspImage


def _parents(rel: str) -> list[str]:
    parts = rel.strip("/").split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def copy_steps(esp: Esp, src: Path, rel: str, why: str, made: set[str]) -> list[Step]:
    """Steps that put the local file ``src`` at ``rel`` on the ESP. ``made``: directories
    earlier steps create (updated), so each is made once."""
    rel = rel.strip("/")
    steps = []
    for d in _parents(rel):
        if d in made:
            continue
        made.add(d)
        why_dir = f"directory {d} on the ESP"
        if isinstance(esp, Path):
            target = str(esp / d)
            steps.append(Step.run(HOST, ["mkdir", target], why_dir, done_if=["test", "-d", target]))
        else:
            steps.append(
                Step.run(
                    HOST,
                    ["mmd", "-i", esp.spec, f"::/{d}"],
                    why_dir,
                    done_if=["mdir", "-b", "-i", esp.spec, f"::/{d}"],
                )
            )
    if isinstance(esp, Path):
        dst = str(esp / rel)
        # no chmod: vfat refuses modes its mount options cannot hold (EPERM)
        argv = ["cp", "--no-preserve=all", str(src), dst]
        steps.append(Step.run(HOST, argv, why, done_if=["cmp", "-s", str(src), dst]))
        return steps
    steps.append(Step.run(HOST, ["mcopy", "-o", "-i", esp.spec, str(src), f"::/{rel}"], why))
    return steps


def read_text(esp: Esp, rel: str) -> str | None:
    """The file's text, or None when it is not there."""
    rel = rel.strip("/")
    if isinstance(esp, Path):
        try:
            return (esp / rel).read_text()
        except OSError:
            return None
    done = LocalHost().run(["mtype", "-i", esp.spec, f"::/{rel}"], check=False)
    return done.out.decode(errors="replace") if done.ok else None


def exists(esp: Esp, rel: str) -> bool:
    rel = rel.strip("/")
    if isinstance(esp, Path):
        return (esp / rel).is_file()
    return LocalHost().run(["mdir", "-b", "-i", esp.spec, f"::/{rel}"], check=False).ok


def list_dir(esp: Esp, rel: str) -> list[str]:
    """Names in a directory of the ESP (empty when it is not there)."""
    rel = rel.strip("/")
    if isinstance(esp, Path):
        d = esp / rel
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []
    done = LocalHost().run(["mdir", "-b", "-i", esp.spec, f"::/{rel}"], check=False)
    names = (line.rstrip("/").rsplit("/", 1)[-1] for line in done.lines()) if done.ok else ()
    return sorted(n for n in names if n not in (".", ".."))


class BootPartitionRefused(G2dUserError):
    """``bootpart`` is not a directory or a vfat partition."""


def open_esp(bootpart: str) -> Esp:
    path = Path(bootpart)
    if path.is_dir():
        return path
    if not path.exists():
        raise BootPartitionRefused(f"boot partition {bootpart}: no such file or directory")
    found = LocalHost().run(["blkid", "-p", "-o", "value", "-s", "TYPE", "--", bootpart],
                            check=False).stdout.strip()  # fmt: skip
    if found != "vfat":
        raise BootPartitionRefused(
            f"boot partition {bootpart} holds {found or 'no known file system'}, not vfat",
            hint="name the EFI system partition, or the directory it is mounted on",
        )
    return EspImage(path)
