"""The binhost Packages index and the DIST entries of Manifests, as esync reads them."""

from __future__ import annotations

import pytest

from g2d.core.digests import Algo, FileDigests
from g2d.core.manifest_dist import DistConflict, ManifestDistError, merge_dist, parse_dist_lines
from g2d.core.packages_index import PackagesIndexError, parse_packages
from g2d.core.release_files import UnsafePath

B2 = "b" * 128
S5 = "5" * 128
HEADER = "ARCH: amd64\nPACKAGES: {n}\nTIMESTAMP: 1716170110\nVERSION: 0\n\n"
ENTRY = (
    "BUILD_ID: 2\nCPV: app-arch/xz-utils-5.6.2\nMD5: 9b8a7c6d5e4f30211203f4e5d6c7b8a9\n"
    "PATH: app-arch/xz-utils/xz-utils-5.6.2-2.gpkg.tar\n"
    "SHA1: B6D4F2A0C8E6D4B2A0F8E6D4C2B0A8F6E4D2C0B8\nSIZE: 706560\nMTIME: 1716170105\n\n"
)


def test_packages_index_as_portage_writes_it() -> None:
    index = parse_packages(HEADER.format(n=2) + ENTRY + "CPV: sys-libs/zlib-1.3.1\nSIZE: 10\n\n")
    assert index.timestamp is not None and int(index.timestamp.timestamp()) == 1716170110
    xz, zlib = index.entries
    assert (xz.cpv, xz.path, xz.size) == (
        "app-arch/xz-utils-5.6.2", "app-arch/xz-utils/xz-utils-5.6.2-2.gpkg.tar", 706560
    )  # fmt: skip
    assert xz.hashes == {"MD5": "9b8a7c6d5e4f30211203f4e5d6c7b8a9",
                         "SHA1": "b6d4f2a0c8e6d4b2a0f8e6d4c2b0a8f6e4d2c0b8"}  # fmt: skip
    assert (zlib.path, zlib.hashes) == ("sys-libs/zlib-1.3.1.tbz2", {})  # no PATH: <CPV>.tbz2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ARCH: amd64\n\n", "Packages: has no header with a VERSION (not a Packages index)"),
        (HEADER.format(n=3) + ENTRY, "Packages: PACKAGES says 3, it lists 1"),
        (HEADER.format(n=1) + ENTRY.replace("SIZE: 706560", "SIZE: big"),
         "Packages: app-arch/xz-utils-5.6.2: SIZE 'big' is not a number"),
        (HEADER.format(n=1) + ENTRY.replace("SHA1: B6D4", "SHA1: "),
         "Packages: app-arch/xz-utils-5.6.2: SHA1 'f2a0c8e6d4b2a0f8e6d4c2b0a8f6e4d2c0b8' "
         "is not 40 hex"),
        (HEADER.format(n=2) + ENTRY + ENTRY,
         "Packages: app-arch/xz-utils/xz-utils-5.6.2-2.gpkg.tar is listed twice"),
    ],
)  # fmt: skip
def test_bad_packages_index(text: str, message: str) -> None:
    with pytest.raises(PackagesIndexError) as e:
        parse_packages(text)
    assert str(e.value) == message


def test_a_path_leaving_the_binhost_is_refused() -> None:
    with pytest.raises(UnsafePath):
        parse_packages(HEADER.format(n=1) + ENTRY.replace("PATH: app-arch", "PATH: ../../etc"))


def test_dist_lines() -> None:
    text = (
        f"DIST hello-1.0.tar.gz 253 BLAKE2B {B2} SHA512 {S5}\n"
        f"EBUILD hello-1.0.ebuild 724 BLAKE2B {B2} SHA512 {S5}\n"
        f"DIST old.tar.gz 9 SHA256 {'2' * 64} SHA512 {S5}\n"
    )
    assert parse_dist_lines(text) == [
        FileDigests("hello-1.0.tar.gz", {Algo.blake2b: B2, Algo.sha512: S5}, 253),
        FileDigests("old.tar.gz", {Algo.sha512: S5}, 9),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("DIST a.tar.gz big SHA512 x",
         "Manifest line 1: not a DIST entry: 'DIST a.tar.gz big SHA512 x'"),
        ("DIST ../a 1 SHA512 " + S5, "Manifest line 1: distfile name '../a' is not a base name"),
        ("DIST a 1 SHA512 abc", "Manifest line 1: SHA512 digest of 'a' is not 128 lowercase hex"),
    ],
)  # fmt: skip
def test_bad_dist_lines(line: str, message: str) -> None:
    with pytest.raises(ManifestDistError) as e:
        parse_dist_lines(line)
    assert str(e.value) == message


def test_the_same_distfile_twice() -> None:
    same = FileDigests("a.tar.gz", {Algo.sha512: S5}, 1)
    assert merge_dist([("x/y/Manifest", same), ("x/z/Manifest", same)]) == [same]
    other = FileDigests("a.tar.gz", {Algo.sha512: S5}, 2)
    with pytest.raises(DistConflict) as e:
        merge_dist([("x/y/Manifest", same), ("x/z/Manifest", other)])
    assert (
        str(e.value) == "distfile 'a.tar.gz': x/y/Manifest and x/z/Manifest give different digests"
    )
