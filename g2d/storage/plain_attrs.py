"""Extended attributes through ``getfattr``/``setfattr`` (the ``attr`` package), as argv.

Reading parses ``getfattr --absolute-names -d -e base64`` (values as ``0s<base64>``, file
names with ``\\ooo`` escapes). Writing builds argv for plan steps; ``setfattr -v`` reads a
value starting with ``0x``/``0s`` as hex/base64, so anything but plain words is passed as
base64, and plans still show readable words where they can.

Two checks stand in for a shell's ``||`` in ``done_if``, because a step has one argv:
``absent`` (exit 0 when a file lacks an attribute) and ``missing_or_has`` (exit 0 when a
directory entry is missing or has an attribute), both with ``find``'s ``-exec ... {} +``,
whose failure becomes find's exit status.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from g2d.hosts.base import Host
from g2d.storage.plain_layout import XATTR_MATCH

Attrs = dict[str, str]

_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.:/@+=,-]+")
_ESCAPE = re.compile(rb"\\([0-7]{3})")


def encode_value(value: str) -> str:
    """The ``setfattr -v`` form of a value: plain words as they are, else ``0s<base64>``."""
    if value == "" or (_PLAIN_VALUE.fullmatch(value) and value[:2].lower() not in ("0x", "0s")):
        return value
    return "0s" + base64.b64encode(value.encode()).decode()


def _decode_value(text: str) -> str:
    if text.startswith("0s"):
        return base64.b64decode(text[2:]).decode("utf-8", "replace")
    if text.startswith("0x"):
        return bytes.fromhex(text[2:]).decode("utf-8", "replace")
    return text.strip('"')


def _unescape(name: bytes) -> str:
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), name).decode("utf-8", "replace")


def parse_getfattr(out: bytes) -> dict[str, Attrs]:
    """``{path: {xattr: value}}``; a file without matching attributes is not listed."""
    found: dict[str, Attrs] = {}
    current: Attrs | None = None
    for line in out.split(b"\n"):
        if line.startswith(b"# file: "):
            current = found.setdefault(_unescape(line[len(b"# file: ") :]), {})
        elif line and current is not None and b"=" in line:
            name, _, value = line.partition(b"=")
            current[name.decode()] = _decode_value(value.decode())
    return found


def getfattr_argv(paths: Iterable[str]) -> list[str]:
    return [
        "getfattr", "--absolute-names", "--no-dereference",
        "--dump", f"--match={XATTR_MATCH}", "--encoding=base64",
        "--", *paths,
    ]  # fmt: skip


def read_attrs(host: Host, paths: Iterable[str]) -> dict[str, Attrs]:
    """Attributes per path (``{}`` for a path without any, or missing: check existence apart)."""
    paths = list(paths)
    if not paths:
        return {}
    found = parse_getfattr(host.run(getfattr_argv(paths), check=False).out)
    return {p: found.get(p, {}) for p in paths}


def set_argv(path: str, name: str, value: str) -> list[str]:
    return ["setfattr", "--no-dereference", "-n", name, "-v", encode_value(value), "--", path]


def remove_argv(path: str, name: str) -> list[str]:
    return ["setfattr", "--no-dereference", "-x", name, "--", path]


def has_argv(path: str, name: str) -> list[str]:
    """Exit 0 when ``path`` has the attribute."""
    return ["getfattr", "--no-dereference", "--absolute-names", "-n", name, "--", path]


def absent_argv(path: str, name: str) -> list[str]:
    """Exit 0 when ``path`` exists and lacks the attribute (``false`` runs only for holders)."""
    return [
        "find", path, "-maxdepth", "0",
        "-exec", "getfattr", "--no-dereference", "-n", name, "--", "{}", ";",
        "-exec", "false", "{}", "+",
    ]  # fmt: skip


def missing_or_has_argv(parent: str, leaf: str, name: str) -> list[str]:
    """Exit 0 when ``parent/leaf`` is missing, or present with the attribute."""
    return [
        "find", parent, "-mindepth", "1", "-maxdepth", "1", "-name", leaf,
        "-exec", "getfattr", "--no-dereference", "-n", name, "--", "{}", "+",
    ]  # fmt: skip
