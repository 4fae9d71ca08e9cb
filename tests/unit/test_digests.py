""".DIGESTS bodies (block order not fixed, bsd and linux forms), the one-pass Hasher, and the
GLEP 75 distfiles layout."""

from __future__ import annotations

import hashlib

import pytest

from g2d.core.digests import Algo, DigestsFormatError, FileDigests, Hasher, parse_digests
from g2d.core.distfiles_layout import FLAT, GENTOO, Layout, LayoutError, parse_layout_conf

DATA = b"stage3 bytes\n" * 1000
B2 = hashlib.blake2b(DATA).hexdigest()
S5 = hashlib.sha512(DATA).hexdigest()
C_B2 = hashlib.blake2b(b"contents").hexdigest()
C_S5 = hashlib.sha512(b"contents").hexdigest()
TAR = "stage3-amd64-openrc-20240519T170104Z.tar.xz"


def test_blocks_in_any_order_and_other_algorithms_ignored() -> None:
    text = (
        f"# SHA512 HASH\n{S5}  {TAR}\n"
        f"# MD5 HASH\n{'0' * 32}  {TAR}\n"
        f"# BLAKE2B HASH\n{C_B2}  {TAR}.CONTENTS.gz\n"
        f"# BLAKE2B HASH\n{B2.upper()}  {TAR}\n"
        f"\n# SHA512 HASH\n{C_S5}  {TAR}.CONTENTS.gz\n"
    )
    digests = parse_digests(text)
    assert digests.for_file(TAR) == FileDigests(TAR, {Algo.blake2b: B2, Algo.sha512: S5})
    assert digests.for_file(f"{TAR}.CONTENTS.gz").hashes == {
        Algo.blake2b: C_B2,
        Algo.sha512: C_S5,
    }


def test_bsd_form() -> None:
    text = f"BLAKE2B ({TAR}) = {B2}\nSHA512 ({TAR}) = {S5}\n"
    assert parse_digests(text).for_file(TAR).hashes == {Algo.blake2b: B2, Algo.sha512: S5}


HOSTILE = [
    (f"{S5}  {TAR}\n", "x.DIGESTS line 1: digest line without a '# <ALGO> HASH' above it"),
    (
        f"# SHA512 HASH\n{S5[:-2]}  {TAR}\n",
        f"x.DIGESTS line 2: SHA512 digest of '{TAR}' has 126 hex digits",
    ),
    (
        f"# SHA512 HASH\n{S5}  {TAR}\n# SHA512 HASH\n{C_S5}  {TAR}\n",
        f"x.DIGESTS line 4: two different SHA512 digests for '{TAR}'",
    ),
    (
        f"# SHA512 HASH\n{S5}  ../{TAR}\n",
        f"x.DIGESTS line 2: file name '../{TAR}' is not a base name",
    ),
    ("# SHA512 HASH\nnot hex at all\n", "x.DIGESTS line 2: not a digest line: 'not hex at all'"),
    (f"# MD5 HASH\n{'0' * 32}  {TAR}\n", "x.DIGESTS: holds no BLAKE2B or SHA512 digest"),
    (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n",
        "x.DIGESTS line 1: is clear-signed; parse the text gpg verified, not the armored file",
    ),
]


@pytest.mark.parametrize(("text", "message"), HOSTILE)
def test_hostile_digests(text: str, message: str) -> None:
    with pytest.raises(DigestsFormatError) as e:
        parse_digests(text, "x.DIGESTS")
    assert str(e.value) == message


def test_file_not_listed() -> None:
    digests = parse_digests(f"# SHA512 HASH\n{S5}  {TAR}\n", "x.DIGESTS")
    with pytest.raises(DigestsFormatError) as e:
        digests.for_file("other.tar.xz")
    assert str(e.value) == (
        f"x.DIGESTS: no BLAKE2B or SHA512 digest for 'other.tar.xz' (listed: {TAR})"
    )


def test_hasher_one_pass_matches_hashlib() -> None:
    h = Hasher()
    for i in range(0, len(DATA), 4096):
        h.update(memoryview(DATA)[i : i + 4096])
    assert h.result(TAR) == FileDigests(TAR, {Algo.blake2b: B2, Algo.sha512: S5}, len(DATA))
    assert FileDigests(TAR, {Algo.sha512: S5}).mismatches(h.hexdigests()) == []
    assert FileDigests(TAR, {Algo.sha512: C_S5}).mismatches(h.hexdigests()) == [Algo.sha512]


@pytest.mark.parametrize("bad", [S5.upper(), "g" * 128, S5[:-1] + "\n", S5[:-1] + " "])
def test_file_digests_check_themselves(bad: str) -> None:
    with pytest.raises(ValueError) as e:
        FileDigests(TAR, {Algo.sha512: bad})
    assert str(e.value) == f"SHA512 digest of '{TAR}' is not 128 lowercase hex"


@pytest.mark.parametrize(
    ("name", "path"),
    [  # the paths portage's FilenameHashLayout gives (gentoo-formats.md section 3.1)
        ("linux-6.6.tar.xz", "d5/linux-6.6.tar.xz"),
        ("bash-5.2.tar.gz", "a4/bash-5.2.tar.gz"),
        ("which-2.23.tar.gz", "80/which-2.23.tar.gz"),
        ("psmisc-23.7.tar.xz", "28/psmisc-23.7.tar.xz"),
    ],
)
def test_glep75_paths(name: str, path: str) -> None:
    assert GENTOO.path(name) == path
    assert FLAT.path(name) == name


def test_layout_conf_first_supported_entry() -> None:
    assert parse_layout_conf("[structure]\n0=filename-hash BLAKE2B 8\n") == GENTOO
    assert parse_layout_conf("[structure]\n0=content-hash SHA512 8:8\n1=flat\n") == FLAT
    assert parse_layout_conf("[structure]\n0=filename-hash blake2b 8\n1=flat\n") == FLAT
    assert parse_layout_conf("") == FLAT
    nested = parse_layout_conf("[structure]\n0=filename-hash BLAKE2B 4:8\n")
    assert nested == Layout("BLAKE2B", (4, 8))
    h = hashlib.blake2b(b"linux-6.6.tar.xz").hexdigest()
    assert nested.path("linux-6.6.tar.xz") == f"{h[0]}/{h[1:3]}/linux-6.6.tar.xz"


def test_hostile_distfile_names() -> None:
    for name in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(LayoutError) as e:
            GENTOO.path(name)
        assert str(e.value) == f"not a distfile name: {name!r}"
