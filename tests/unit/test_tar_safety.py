"""Which tar members would land outside the root: listings as GNU tar prints them."""

from __future__ import annotations

import pytest

from g2d.core.tar_safety import (
    Member,
    MemberKind,
    Refusal,
    UnreadableListing,
    UnsafeArchive,
    c_unquote,
    check_members,
    parse_listing,
)

F, D, L, H = MemberKind.file, MemberKind.directory, MemberKind.symlink, MemberKind.hardlink

LISTING = r"""drwxr-xr-x 0/0               0 2025-01-08 12:00 "./"
lrwxrwxrwx 0/0               0 2025-01-08 12:00 "./bin" -> "usr/bin"
crw-rw-rw- 0/0             5,1 2025-01-08 12:00 "./dev/console"
brw-rw---- 0/6            8,0 2025-01-08 12:00 "./dev/sda"
prw-r--r-- 0/0               0 2025-01-08 12:00 "./run/initctl"
-rwsr-xr-x 0/0           72000 2025-01-08 12:00 "./usr/bin/su"
-rwxr-xr-x 0/0           39224 2022-09-19 02:54 "./usr/bin/bunzip2"
hrwxr-xr-x 0/0               0 2022-09-19 02:54 "./usr/bin/bzcat" link to "./usr/bin/bunzip2"
-rw-r--r-- 0/0               1 1970-01-01 00:00 "a b\n\"c\\ -> d"
-rw-r--r-- 0/0               0 1970-01-01 00:00 "\303\274ber"
lrwxrwxrwx 0/0               0 2025-01-08 12:00 "./etc/mtab" -> "/proc/self/mounts"
"""


def test_listing_as_gnu_tar_prints_it() -> None:
    assert parse_listing("s.tar", LISTING) == [
        Member(D, "./"),
        Member(L, "./bin", "usr/bin"),
        Member(MemberKind.char, "./dev/console"),
        Member(MemberKind.block, "./dev/sda"),
        Member(MemberKind.fifo, "./run/initctl"),
        Member(F, "./usr/bin/su"),
        Member(F, "./usr/bin/bunzip2"),
        Member(H, "./usr/bin/bzcat", "./usr/bin/bunzip2"),
        Member(F, 'a b\n"c\\ -> d'),
        Member(F, "über"),
        Member(L, "./etc/mtab", "/proc/self/mounts"),
    ]
    assert c_unquote('"\\001\\?\\t"') == "\x01?\t"


@pytest.mark.parametrize(
    "line",
    [
        'V--------- 0/0 0 2025-01-08 12:00 "label--Volume Header--"',
        '-rw-r--r-- 0/0 0 2025-01-08 12:00 "a" -> "b"',  # a file with a link target
        "-rw-r--r-- 0/0 0 2025-01-08 12:00 unquoted",
        '-rw-r--r-- 0/0 0 2025-01-08 12:00 "bad \\q escape"',
    ],
)
def test_lines_not_understood_are_refused(line: str) -> None:
    with pytest.raises(UnreadableListing) as err:
        parse_listing("s.tar", line + "\n")
    assert str(err.value) == f"s.tar: refused, tar lists a member g2d cannot read: {line!r}"


def test_a_root_file_system_passes() -> None:
    assert check_members(parse_listing("s.tar", LISTING)) == []
    # through a relative link that stays inside: written where the root's own link leads
    assert (
        check_members([Member(L, "bin", "usr/bin"), Member(D, "usr/bin/"), Member(F, "bin/ls")])
        == []
    )
    assert check_members([Member(L, "usr/lib/x", "../share"), Member(F, "usr/lib/x/y")]) == []


@pytest.mark.parametrize(
    ("members", "refusals"),
    [
        ([Member(F, "../x")], [Refusal("../x", "a '..' component")]),
        ([Member(F, "./a/../../x")], [Refusal("./a/../../x", "a '..' component")]),
        ([Member(F, "/etc/x")], [Refusal("/etc/x", "an absolute path")]),
        (
            [Member(L, "evil", "/etc"), Member(F, "evil/passwd")],
            [
                Refusal(
                    "evil/passwd",
                    "goes through the symlink evil -> /etc, which leads out of the root",
                )
            ],
        ),
        (
            [Member(L, "a", "b"), Member(L, "b", "../.."), Member(F, "a/x")],
            [Refusal("a/x", "goes through the symlink b -> ../.., which leads out of the root")],
        ),
        (
            [Member(L, "l", "l"), Member(F, "l/x")],
            [Refusal("l/x", "goes through the symlink l -> l, which leads out of the root")],
        ),
        (
            [Member(H, "x", "/etc/shadow")],
            [Refusal("x", "a hard link to /etc/shadow (an absolute path)")],
        ),
        (
            [Member(L, "e", "/etc"), Member(H, "x", "e/shadow")],
            [
                Refusal(
                    "x", "a hard link to e/shadow, through the symlink e -> /etc, out of the root"
                )
            ],
        ),
        (
            [Member(H, "x", "etc/shadow")],
            [Refusal("x", "a hard link to etc/shadow, which no earlier member of the archive is")],
        ),
    ],
)
def test_members_that_would_land_outside_are_refused(
    members: list[Member], refusals: list[Refusal]
) -> None:
    assert check_members(members) == refusals


def test_a_member_replacing_a_symlink_ends_its_danger() -> None:
    # tar unlinks the symlink and makes the directory: what follows is inside
    assert check_members([Member(L, "d", "/etc"), Member(D, "d/"), Member(F, "d/x")]) == []


def test_the_message_names_every_member_up_to_twenty() -> None:
    refusals = [Refusal(f"/x{i}", "an absolute path") for i in range(22)]
    text = str(UnsafeArchive("s.tar.xz", refusals))
    assert text == (
        "s.tar.xz: refused, 22 members would land outside the root:"
        + "".join(f"\n  /x{i}: an absolute path" for i in range(20))
        + "\n  ... and 2 more"
    )
