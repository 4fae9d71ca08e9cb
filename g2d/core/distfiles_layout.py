"""GLEP 75: where a distfiles mirror keeps a file, from its ``layout.conf``.

``[structure]`` lists layouts by preference (``0=filename-hash BLAKE2B 8``, ``1=flat``);
a client uses the first it supports. ``filename-hash <ALGO> <cutoffs>`` puts a file under
directories named by the leading hex digits of the hash of its *name* (cutoffs in bits,
multiples of 4, ``:``-separated for nested levels).
"""

from __future__ import annotations

import configparser
import hashlib
from dataclasses import dataclass

from g2d.core.errors import G2dUserError

_ALGOS = {
    "BLAKE2B": "blake2b",
    "SHA512": "sha512",
    "SHA256": "sha256",
    "SHA1": "sha1",
    "MD5": "md5",
}


class LayoutError(G2dUserError):
    """A layout.conf or distfile name g2d refuses."""


@dataclass(frozen=True, slots=True)
class Layout:
    """``flat`` (algo None) or ``filename-hash <algo> <cutoffs>``."""

    algo: str | None = None
    cutoffs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.algo is not None and self.algo not in _ALGOS:
            raise LayoutError(f"unsupported filename-hash algorithm {self.algo!r}")
        if any(c <= 0 or c % 4 for c in self.cutoffs):
            raise LayoutError(f"cutoffs {self.cutoffs} are not positive multiples of 4 bits")

    def path(self, name: str) -> str:
        """``<hh>/<name>`` (or ``<name>`` for flat): where the mirror keeps ``name``."""
        check_distfile_name(name)
        if self.algo is None:
            return name
        digest = hashlib.new(_ALGOS[self.algo], name.encode("utf-8")).hexdigest()
        parts, start = [], 0
        for bits in self.cutoffs:
            parts.append(digest[start : start + bits // 4])
            start += bits // 4
        return "/".join([*parts, name])

    def conf_line(self) -> str:
        if self.algo is None:
            return "flat"
        return f"filename-hash {self.algo} {':'.join(str(c) for c in self.cutoffs)}"


FLAT = Layout()
GENTOO = Layout("BLAKE2B", (8,))  # what Gentoo's master mirror serves


def check_distfile_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or name.startswith(".") or "\0" in name:
        raise LayoutError(f"not a distfile name: {name!r}")
    return name


def parse_layout_conf(text: str, source: str = "layout.conf") -> Layout:
    """The first supported layout of ``[structure]``; ``flat`` if the file lists none."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source)
    except configparser.Error as e:
        raise LayoutError(f"{source}: not an INI file: {e}") from e
    if not parser.has_section("structure"):
        return FLAT
    entries = sorted(
        ((int(k), v) for k, v in parser.items("structure") if k.isdigit()), key=lambda kv: kv[0]
    )
    for _, value in entries:
        words = value.split()
        if words == ["flat"]:
            return FLAT
        if len(words) == 3 and words[0] == "filename-hash" and words[1] in _ALGOS:
            try:
                return Layout(words[1], tuple(int(c) for c in words[2].split(":")))
            except (ValueError, LayoutError):
                continue  # a later entry may still be usable, as portage does
    return FLAT


def render_layout_conf(layout: Layout) -> str:
    return f"[structure]\n0={layout.conf_line()}\n"
