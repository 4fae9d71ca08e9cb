"""``chained``: plain steps on one host become one ``sh -c`` step; anything else is kept."""

from __future__ import annotations

import subprocess

from g2d.core.plan import Step, chained


def test_a_run_of_plain_steps_on_one_host_becomes_one_shell_step() -> None:
    steps = [
        Step.run("saturn", ["zfs", "set", "g2d:holds=g2d-sealed", "p/a@s"], "record the tag"),
        Step.run("saturn", ["zfs", "hold", "g2d-sealed", "p/a@s"], "hold"),
    ]
    (one,) = chained(steps)
    assert one.pipeline[0].host == "saturn" and one.why == "record the tag; hold"
    assert one.pipeline[0].argv == (
        "sh", "-c", "zfs set g2d:holds=g2d-sealed p/a@s && zfs hold g2d-sealed p/a@s",
    )  # fmt: skip


def test_hosts_checks_pipelines_and_undo_break_the_runs() -> None:
    a = Step.run("local", ["zfs", "set", "x=1", "p/a"], "a")
    b = Step.run("saturn", ["zfs", "set", "x=1", "p/b"], "b")
    c = Step.run("saturn", ["zfs", "mount", "p/b"], "c", done_if=["findmnt", "--source", "p/b"])
    d = Step.run("saturn", ["zfs", "set", "y=1", "p/b"], "d")
    e = Step.run("saturn", ["zfs", "set", "z=1", "p/b"], "e", undo=["zfs", "inherit", "z", "p/b"])
    assert chained([a, b, c, d, e]) == [a, b, c, d, e]
    assert chained([]) == []


def test_the_chain_stops_at_the_first_failure_and_keeps_odd_words_whole(tmp_path) -> None:
    odd = tmp_path / "it's a file; rm -rf"
    steps = [Step.run("local", ["touch", str(odd)], "make"),
             Step.run("local", ["false"], "fail"),
             Step.run("local", ["rm", str(odd)], "never")]  # fmt: skip
    (one,) = chained(steps)
    done = subprocess.run(list(one.pipeline[0].argv), check=False)
    assert done.returncode == 1 and odd.exists()
