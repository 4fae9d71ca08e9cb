"""The pieces of ``g2d lab demo`` that are not flows (the flows have their own tiers; the
whole demo takes ~2 min and runs as ``make demo``): releasing what a killed run left under
the demo directory, the deploy inputs esync does not bring, and the site change the update
shows."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from g2d.core.site_users import parse_site_users
from g2d.hosts.local import LocalHost
from g2d.lab.demo_disks import loop_disk, loops_backed_under, mounts_under, release_under
from g2d.lab.demo_site import DemoSiteError, add_deploy_inputs, flip_hello_use
from g2d.lab.keys import ensure_keys
from g2d.lab.layout import LabLayout
from g2d.lab.loopdev import FsType, mount_loop
from g2d.lab.sshd import SshServer
from g2d.rootfs.dom0_tree import Dom0Tree

LOCAL = LocalHost()


def test_what_a_killed_run_left_is_released(tmp_path: Path, start_component: Callable) -> None:
    demo = tmp_path / "demo"
    home = start_component("btrfs on a loop device",
                           lambda: mount_loop(demo / "home", FsType.btrfs))  # fmt: skip
    # as a killed run leaves them: the home mounted, the disk image still on its loop device
    disk = loop_disk(demo / "disk.img", 64)
    device = disk.__enter__()
    try:
        assert mounts_under(demo) == [home.mountpoint, home.mountpoint.parent]
        looped = loops_backed_under(demo)
        assert sorted(looped) == sorted([home.device, device])
        assert release_under(demo) == [
            f"unmounted {home.mountpoint}",
            f"unmounted {home.mountpoint.parent}",
            *(f"detached {d}" for d in looped),
        ]
        assert (mounts_under(demo), loops_backed_under(demo)) == ([], [])
        assert release_under(demo) == []
        assert (demo / "disk.img").stat().st_size == 64 << 20  # the image itself is kept
    finally:
        LOCAL.run(["losetup", "--detach", device], check=False)
        LOCAL.run(["losetup", "--detach", home.device], check=False)
        shutil.rmtree(demo, ignore_errors=True)


def test_hello_use_flips_each_way_and_a_missing_line_is_an_error(tmp_path: Path) -> None:
    dom0 = Dom0Tree(tmp_path)
    uses = tmp_path / "packages/common.uses"
    uses.parent.mkdir()
    uses.write_text("dev-libs/libdemo static\napp-misc/hello doc -nls\n")
    assert flip_hello_use(dom0) == "app-misc/hello: doc -nls -> nls -doc"
    assert uses.read_text() == "dev-libs/libdemo static\napp-misc/hello nls -doc\n"
    assert flip_hello_use(dom0) == "app-misc/hello: nls -doc -> doc -nls"
    uses.write_text("app-misc/hellox doc\n")
    with pytest.raises(DemoSiteError) as caught:
        flip_hello_use(dom0)
    assert str(caught.value) == f"{uses} sets no USE for app-misc/hello"


def test_the_deploy_inputs_are_the_labs_binpkg_key_and_a_key_only_user(
    lab_world: LabLayout, sshd: SshServer, tmp_path: Path
) -> None:
    dom0 = Dom0Tree(tmp_path / "dom0")
    wrote = add_deploy_inputs(lab_world, dom0, sshd.client_key)
    binpkg = ensure_keys(lab_world.gnupg).binpkg
    LOCAL.run(["gpgconf", "--homedir", lab_world.gnupg, "--kill", "gpg-agent"])
    assert wrote == [f"meta/keys/binpkg/lab.asc (binpkg key {binpkg[-16:]})",
                     "meta/users.toml (sysop, ssh key only)"]  # fmt: skip
    home = tmp_path / "gpg"  # --show-keys reads the file only; no keyring of the user's
    home.mkdir(mode=0o700)
    shown = LOCAL.run(["gpg", "--homedir", home, "--show-keys", "--with-colons",
                       dom0.binpkg_keys()[0]]).stdout  # fmt: skip
    assert next(ln.split(":")[9] for ln in shown.splitlines() if ln.startswith("fpr:")) == binpkg
    (user,) = parse_site_users(dom0.users_file.read_text())
    public = Path(f"{sshd.client_key}.pub").read_text().split()[:2]
    assert (user.name, user.groups, user.password_hash) == ("sysop", ("users",), None)
    assert user.ssh_authorized_keys == (" ".join([*public, "sysop@g2d-demo"]),)
