"""latest-*.txt payloads: good and hostile inputs, whole error messages."""

from __future__ import annotations

import pytest

from g2d.core.release_files import (
    LatestEntry,
    ReleaseFileError,
    Stage3Ref,
    UnsafePath,
    check_relative_path,
    latest_name,
    parse_latest,
    stage3_of,
    stamp_key,
    variant_for,
)

SRC = "latest-stage3-amd64-openrc.txt"
PAYLOAD = """\
# Latest as of Sun, 19 May 2024 17:48:03 +0000
# ts=1716140883
20240519T170104Z/stage3-amd64-openrc-20240519T170104Z.tar.xz 276384796
"""
AGGREGATE = """\
# Latest as of Sun, 19 May 2024 17:48:03 +0000
# ts=1716140883
20240519T170104Z/stage3-amd64-desktop-openrc-20240519T170104Z.tar.xz 300000000
20240519T170104Z/stage3-amd64-openrc-splitusr-20240519T170104Z.tar.xz 270000000
20240519T170104Z/stage3-amd64-openrc-20240519T170104Z.tar.xz 276384796
20240512T170101Z/stage3-amd64-systemd-20240512T170101Z.tar.xz 280000000
"""


def test_per_variant_file() -> None:
    latest = parse_latest(PAYLOAD, SRC)
    assert latest.ts == 1716140883
    assert latest.entries == (
        LatestEntry("20240519T170104Z/stage3-amd64-openrc-20240519T170104Z.tar.xz", 276384796),
    )
    assert stage3_of(latest, "amd64", "openrc") == Stage3Ref(
        "amd64",
        "openrc",
        "20240519T170104Z",
        "stage3-amd64-openrc-20240519T170104Z.tar.xz",
        276384796,
    )


@pytest.mark.parametrize(
    ("variant", "stamp", "size"),
    [
        ("openrc", "20240519T170104Z", 276384796),  # not desktop-openrc, not openrc-splitusr
        ("desktop-openrc", "20240519T170104Z", 300000000),
        ("systemd", "20240512T170101Z", 280000000),
    ],
)
def test_aggregate_picks_exactly_the_variant(variant: str, stamp: str, size: int) -> None:
    ref = stage3_of(parse_latest(AGGREGATE, "latest-stage3.txt"), "amd64", variant)
    assert (ref.stamp, ref.size, ref.name) == (
        stamp,
        size,
        f"stage3-amd64-{variant}-{stamp}.tar.xz",
    )
    assert ref.flavour == f"stage3-amd64-{variant}"


def test_dash_escaped_line_and_old_stamp_forms() -> None:
    text = "- 20231203/stage3-amd64-openrc-20231203.tar.bz2 12\n"
    ref = stage3_of(parse_latest(text, SRC), "amd64", "openrc")
    assert (ref.stamp, ref.path) == ("20231203", "20231203/stage3-amd64-openrc-20231203.tar.bz2")


def test_missing_variant_names_what_is_there() -> None:
    with pytest.raises(ReleaseFileError) as e:
        stage3_of(parse_latest(AGGREGATE, "latest-stage3.txt"), "amd64", "musl")
    assert str(e.value) == (
        "latest-stage3.txt: names no stage3-amd64-musl build (it lists: "
        "stage3-amd64-desktop-openrc-20240519T170104Z.tar.xz, "
        "stage3-amd64-openrc-splitusr-20240519T170104Z.tar.xz, "
        "stage3-amd64-openrc-20240519T170104Z.tar.xz, "
        "stage3-amd64-systemd-20240512T170101Z.tar.xz)"
    )
    assert (
        e.value.hint == "check --arch and --variant against the mirror's latest-stage3-*.txt files"
    )


HOSTILE = [
    (
        "../../etc/shadow 10\n",
        UnsafePath,
        f"{SRC} line 1: path '../../etc/shadow' leaves the mirror (a '..' component)",
    ),
    (
        "# x\n20240519T170104Z/../../x.tar.xz 10\n",
        UnsafePath,
        f"{SRC} line 2: path '20240519T170104Z/../../x.tar.xz' leaves the mirror"
        " (a '..' component)",
    ),
    (
        "/etc/passwd 10\n",
        UnsafePath,
        f"{SRC} line 1: path '/etc/passwd' is absolute; it must stay inside the mirror",
    ),
    (
        "a//b 10\n",
        UnsafePath,
        f"{SRC} line 1: path 'a//b' has an empty, '.' or unexpected component ''",
    ),
    (
        "x/%2e%2e/y 10\n",
        UnsafePath,
        f"{SRC} line 1: path 'x/%2e%2e/y' has an empty, '.' or unexpected component '%2e%2e'",
    ),
    (
        "only-a-path\n",
        ReleaseFileError,
        f"{SRC} line 1: not '<path> <size>': 'only-a-path'",
    ),
    ("a 12 13\n", ReleaseFileError, f"{SRC} line 1: not '<path> <size>': 'a 12 13'"),
    ("# just a comment\n", ReleaseFileError, f"{SRC}: names no file"),
    (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nx 1\n",
        ReleaseFileError,
        f"{SRC} line 1: is clear-signed; parse the text gpg verified, not the armored file",
    ),
]


@pytest.mark.parametrize(("text", "error", "message"), HOSTILE)
def test_hostile_latest_files(text: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as e:
        parse_latest(text, SRC)
    assert type(e.value) is error
    assert str(e.value) == message


def test_stage3_must_sit_in_its_own_stamp_directory() -> None:
    text = "20240101T000000Z/stage3-amd64-openrc-20240519T170104Z.tar.xz 5\n"
    with pytest.raises(UnsafePath) as e:
        stage3_of(parse_latest(text, SRC), "amd64", "openrc")
    assert str(e.value) == (
        f"{SRC} line 1: path '20240101T000000Z/stage3-amd64-openrc-20240519T170104Z.tar.xz' "
        "is not '<stamp>/<file>' with the stamp of the file name"
    )


def test_relative_path_is_returned_when_good() -> None:
    assert check_relative_path("20240519T170104Z/a+b_c-1.0.tar.xz") == (
        "20240519T170104Z/a+b_c-1.0.tar.xz"
    )


@pytest.mark.parametrize(
    ("selection", "variant"),
    [
        ("openrc", "openrc"),
        ("plasma", "desktop-openrc"),
        ("gnome/systemd", "desktop-systemd"),
        ("kde/systemd", "desktop-systemd"),
        ("selinux", "hardened-selinux-openrc"),
        ("nomultilib-openrc", "nomultilib-openrc"),
    ],
)
def test_variant_for_selection(selection: str, variant: str) -> None:
    assert variant_for(selection) == variant


def test_bad_names() -> None:
    with pytest.raises(ValueError) as e:
        latest_name("amd64", "Open RC")
    assert str(e.value) == "invalid stage3 variant 'Open RC' (openrc, systemd, desktop-openrc...)"
    with pytest.raises(ValueError) as e:
        latest_name("../x", "openrc")
    assert str(e.value) == "invalid arch '../x': lowercase letters, digits and '_' only"
    assert latest_name("arm64", "openrc") == "latest-stage3-arm64-openrc.txt"


def test_stamp_key_orders_old_and_new_forms() -> None:
    stamps = ["20240519T170104Z", "20231203", "20240101120000"]
    assert sorted(stamps, key=stamp_key) == ["20231203", "20240101120000", "20240519T170104Z"]
