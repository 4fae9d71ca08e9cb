"""The plain send stream: a GNU tar (pax) archive of one snapshot directory.

Members, in order:

- ``tree/...``: the snapshot's whole tree, with xattrs (all namespaces), POSIX ACLs, numeric
  owners, device nodes, hard links and holes. The top directory's ``user.g2d*`` xattrs carry
  the metadata and the snapshot's guid and creation time.
- ``g2d-end.<header>``: the snapshot's top directory once more, without its contents, as the
  last member. It says the stream was read to the end (a cut-off stream never reaches it)
  and what kind of stream it is: ``full``, or ``from.<guid>`` for a stream sent with a base.

A stream with a base still holds the whole tree (tar cannot say "this file was deleted");
the base only lets the receiver check it is continuing the same line of snapshots, and
lets a clone arrive as a clone. See docs/storage-plain.md for the trade-off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from g2d.storage.base import StorageError

TREE = "tree"
END_PREFIX = "g2d-end."
_GUID = re.compile(r"[0-9a-f]{32}")

# what tar keeps, on both ends
_KEEP = ["--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner"]


@dataclass(frozen=True, slots=True)
class Header:
    base_guid: str | None  # None: a full stream

    def __post_init__(self) -> None:
        if self.base_guid is not None and not _GUID.fullmatch(self.base_guid):
            raise StorageError(f"invalid base guid {self.base_guid!r} in a plain stream")

    def member(self) -> str:
        return END_PREFIX + ("full" if self.base_guid is None else f"from.{self.base_guid}")

    @classmethod
    def parse(cls, member: str) -> Header:
        kind = member.removeprefix(END_PREFIX)
        if kind == "full":
            return cls(None)
        if kind.startswith("from."):
            return cls(kind.removeprefix("from."))
        raise StorageError(f"unknown plain stream header {member!r}")


def send_argv(snapdir: str, snapshot: str, header: Header) -> list[str]:
    """tar argv writing ``<snapdir>/<snapshot>`` to stdout."""
    top = f"{snapdir}/{snapshot}"
    return [
        "tar", "--create", "--file=-", "--format=posix", *_KEEP,
        "--sparse",             # holes stay holes
        "--one-file-system",    # a mount inside a snapshot is not part of it
        # the last member (a name without '/' or leading '.') becomes the end marker, then
        # every "./x" becomes "tree/x"; 'S': symlink targets are data, never renamed
        f"--transform=s|^[^./][^/]*$|{header.member()}|S",
        f"--transform=s|^\\.|{TREE}|S",
        "-C", top, ".",
        "--no-recursion", "-C", snapdir, snapshot,
    ]  # fmt: skip


def receive_argv(into: str) -> list[str]:
    """tar argv extracting a stream from stdin into the existing directory ``into``."""
    return [
        "tar", "--extract", "--file=-", *_KEEP,
        "--preserve-permissions", "--same-owner",
        "-C", into,
    ]  # fmt: skip
