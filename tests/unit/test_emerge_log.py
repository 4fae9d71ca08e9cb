# ruff: noqa: E501  (emerge.log lines are kept verbatim)
"""emerge.log as Portage 3.0.83 writes it (lines taken from runs in the lab)."""

from __future__ import annotations

import pytest

from g2d.rootfs.emerge_log import Merge, MergeKind, parse_emerge_log

OK_RUN = """\
1795646386: Started emerge on: Nov 25, 2026 22:39:46
1795646386:  *** emerge --newuse --update --usepkg --verbose app-misc/hello
1795646386:  >>> emerge (1 of 2) dev-libs/libdemo-2.0 to /
1795646386:  === (1 of 2) Merging Binary (dev-libs/libdemo-2.0::/var/cache/binpkgs/dev-libs/libdemo/libdemo-2.0-1.gpkg.tar)
1795646387:  >>> AUTOCLEAN: dev-libs/libdemo:2
1795646389:  ::: completed emerge (1 of 2) dev-libs/libdemo-2.0 to /
1795646389:  >>> emerge (2 of 2) app-misc/hello-1.0 to /
1795646389:  === (2 of 2) Merging Binary (app-misc/hello-1.0::/var/cache/binpkgs/app-misc/hello/hello-1.0-2.gpkg.tar)
1795646391:  ::: completed emerge (2 of 2) app-misc/hello-1.0 to /
1795646391:  *** Finished. Cleaning up...
1795646391:  *** exiting successfully.
1795646391:  *** terminating.
"""

FAILED_RUN = """\
1795646416:  >>> emerge (1 of 2) app-misc/breakme-1.0 to /
1795646416:  === (1 of 2) Cleaning (app-misc/breakme-1.0::/var/db/repos/gentoo/app-misc/breakme/breakme-1.0.ebuild)
1795646416:  === (1 of 2) Compiling/Merging (app-misc/breakme-1.0::/var/db/repos/gentoo/app-misc/breakme/breakme-1.0.ebuild)
1795646417:  >>> emerge (2 of 2) app-misc/greeter-1.0 to /
1795646417:  === (2 of 2) Merging Binary (app-misc/greeter-1.0::/var/cache/binpkgs/app-misc/greeter/greeter-1.0-1.gpkg.tar)
1795646419:  ::: completed emerge (2 of 2) app-misc/greeter-1.0 to /
1795646419:  *** Finished. Cleaning up...
1795646419:  *** exiting unsuccessfully with status '1'.
"""


def test_a_successful_run_lists_binary_merges_with_build_ids_and_times() -> None:
    run = parse_emerge_log(OK_RUN)
    assert run.merges == (
        Merge("dev-libs/libdemo-2.0", MergeKind.binary, 1, 1795646386, 1795646389),
        Merge("app-misc/hello-1.0", MergeKind.binary, 2, 1795646389, 1795646391),
    )
    assert (run.planned, run.exit_status, run.unfinished) == (2, 0, ())
    assert [m.seconds for m in run.completed] == [3, 2]


def test_a_build_without_a_completed_line_is_unfinished() -> None:
    run = parse_emerge_log(FAILED_RUN)
    assert [m.cpv for m in run.completed] == ["app-misc/greeter-1.0"]
    assert run.unfinished == (
        Merge("app-misc/breakme-1.0", MergeKind.built, None, 1795646416, None),
    )
    assert (run.planned, run.exit_status) == (2, 1)


def test_a_run_killed_before_it_said_how_leaves_the_kind_open() -> None:
    run = parse_emerge_log("1795646416:  >>> emerge (1 of 1) app-misc/sleeper-1 to /\n")
    assert run.merges == (Merge("app-misc/sleeper-1", None, None, 1795646416, None),)
    assert run.exit_status is None


def test_an_empty_log_is_a_run_that_merged_nothing() -> None:
    run = parse_emerge_log("")
    assert (run.merges, run.planned, run.exit_status) == ((), 0, None)


def test_a_merge_needs_a_category() -> None:
    with pytest.raises(ValueError) as caught:
        Merge("hello-1.0", MergeKind.built, None, 0, None)
    assert str(caught.value) == "not a category/package-version: 'hello-1.0'"
