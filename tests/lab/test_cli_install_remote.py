"""``g2d install`` with a remote source: the sealed generation is pulled over ssh from the
lab's sshd (on 127.0.0.1, so "over there" is this machine's directory, reached only through
ssh) onto a loop-device disk; a host key that is not the pinned one is refused before
anything is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import g2d.cli_install  # noqa: F401  registers `g2d install` (until cli.py imports it)
from g2d.cli import app
from g2d.core.uri import parse_boot
from g2d.hosts.local import LocalHost
from g2d.lab.layout import LabLayout
from g2d.lab.process import random_token
from g2d.lab.sshd import SshServer
from g2d.storage.base import BackendKind
from g2d.storage.sense import backend_class

LOCAL = LocalHost()


def run(*argv: str) -> str:
    return LOCAL.run(list(argv)).stdout


@pytest.fixture
def disk(loop_disk) -> str:
    return loop_disk()  # type: ignore[no-any-return]


@pytest.fixture
def source(sealed_plain_g1) -> tuple[Path, str]:
    """A sealed plain generation made on this machine: (lineage root, snapshot name)."""
    files = {"etc/os-release": "NAME=Gentoo\n", "data": f"pulled over ssh {random_token()}\n"}
    return sealed_plain_g1(files)  # type: ignore[no-any-return]


def _g2d(lab_world: LabLayout, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {"G2D_STATE_DIR": str(tmp_path / "state"), "G2D_DOM0_ROOT": str(lab_world.mirror)}
    r = CliRunner().invoke(app, ["install", *args], env=env)
    return r.exit_code, r.stdout, r.stderr


def _signatures(disk: str) -> list[object]:
    return json.loads(run("wipefs", "--json", disk) or "{}").get("signatures", [])


def _fingerprint(public_key_line: str, tmp_path: Path) -> str:
    """``SHA256:...`` as OpenSSH's ssh-keygen prints it (not computed by g2d's own code)."""
    pub = tmp_path / f"key-{random_token()}.pub"
    pub.write_text(public_key_line + "\n")
    return run("ssh-keygen", "-l", "-f", str(pub)).split()[1]


def test_a_remote_plain_source_is_installed_through_the_cli(
    lab_world: LabLayout, sshd: SshServer, source: tuple[Path, str], disk: str, tmp_path: Path
) -> None:
    root, snap = source
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    remote = f"{sshd.user}@{sshd.host}:{sshd.port}"
    boot = f"ext4://{disk}:/g1"
    kernel = sorted(p.name for p in (lab_world.mirror / "kernels" / "current").iterdir())[-1]
    code, out, err = _g2d(lab_world, tmp_path, "--work", f"dir://{remote}:{root}/g1@safe",
                          "--boot", boot, "--yes", "--known-hosts", str(known_hosts),
                          "--identity", str(sshd.client_key), "--esp-mib", "40",
                          "--hostname", "saturn", "--kernel", kernel)  # fmt: skip
    assert (code, err) == (0, ""), f"{out}\n{err}"
    installed = f"{remote}:{root}/g1@{snap}"
    lines = out.splitlines()
    assert lines[0] == f"plan: install {installed} onto boot={boot}"
    # the bytes come from the remote host's tar, not from a local one
    (data,) = [ln for ln in lines if " tar --create " in ln]
    top = f"/run/g2d/install/{Path(disk).name}"
    assert re.match(rf"    \d+\. {re.escape(remote)}: tar --create --file=- ", data)
    assert " | local: tar --extract --file=- " in data
    assert data.endswith(f"  # send {installed} into {top}/g1")
    uuid = run("blkid", "-p", "-s", "UUID", "-o", "value", f"{disk}p2").strip()
    assert lines[-3:] == [
        f"installed {installed} onto boot={boot}",
        f"root: root=UUID={uuid} rootfstype=ext4 g2d.rootdir=/g1",
        f"boot entries: g2d-g1.conf; default g1, fallback -; kernel {kernel}",
    ]
    assert not Path(top).exists()  # unmounted, mount point removed

    check = tmp_path / "check"
    check.mkdir()
    run("mount", "-o", "ro", "-t", "ext4", f"{disk}p2", str(check))
    try:
        tree = check / "g1"
        assert (tree / "data").read_text() == (root / "g1" / "data").read_text()
        assert (tree / "etc/os-release").read_text() == "NAME=Gentoo\n"
        assert (tree / "etc/hostname").read_text() == "saturn\n"
        xattr = ("getfattr", "--only-values", "-n")
        assert run(*xattr, "user.g2d.installed-from", str(tree)) == installed
        stamp = run(*xattr, "user.g2d.installed", str(tree))
    finally:
        run("umount", str(check))
    assert re.fullmatch(r"\d{8}T\d{6}Z", stamp)
    # the source (reached over ssh) names the disk it went to, at the same time
    meta = backend_class(BackendKind.plain)(LOCAL).get_meta(f"{root}/g1")
    assert meta["g2d:installed-to"] == f"{stamp} {parse_boot(boot)}"


@pytest.mark.parametrize("pin", ["another key", "another port"])
def test_a_host_key_that_is_not_pinned_is_refused_and_nothing_is_written(
    pin: str,
    lab_world: LabLayout,
    sshd: SshServer,
    source: tuple[Path, str],
    disk: str,
    tmp_path: Path,
) -> None:
    root, _ = source
    known_hosts = tmp_path / "known_hosts"
    if pin == "another key":  # the host was reinstalled, or someone is in the middle
        other = tmp_path / "other_host_key"
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(other))
        other_key = " ".join(Path(f"{other}.pub").read_text().split()[:2])
        known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {other_key}\n")
    else:  # the right key, but for the same address on another port: it does not count
        known_hosts.write_text(f"[{sshd.host}]:{sshd.port + 1} {sshd.host_public_key}\n")
    remote = f"{sshd.user}@{sshd.host}:{sshd.port}"
    boot = f"ext4://{disk}:/g1"
    code, out, err = _g2d(lab_world, tmp_path, "--work", f"dir://{remote}:{root}/g1@safe",
                          "--boot", boot, "--yes", "--known-hosts", str(known_hosts),
                          "--identity", str(sshd.client_key), "--esp-mib", "40")  # fmt: skip
    presented = _fingerprint(sshd.host_public_key, tmp_path)
    if pin == "another key":
        reason = f"it does not match the pinned key {_fingerprint(other_key, tmp_path)}"
        hint = (
            "if the host was reinstalled, check its new key out of band and update the pin; "
            "otherwise something may be intercepting the connection"
        )
    else:
        reason = f"unknown host: no key is pinned for [{sshd.host}]:{sshd.port} in {known_hosts}"
        hint = "check the fingerprint on the host (ssh-keygen -lf <host key>.pub), then pin it"
    assert (code, out) == (1, "")
    assert err == f"error: {remote}: host key {presented} refused: {reason}\n({hint})\n"
    assert _signatures(disk) == []
    assert not (tmp_path / "state" / "install").exists()
    assert "user.g2d.installed-to" not in run("getfattr", "-d", "-m", "-", f"{root}/g1")
