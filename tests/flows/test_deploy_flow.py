"""The deploy and update flows on real storage, from a dom0 tree made of the lab's parts.

The dom0 is a temporary directory: its releases/ are fetched from the lab's mirror over
file:// (verified), its repository, binhost, distfiles and kernels are links to the lab's
(bound read-only by emerge), and its packages/ are a copy the tests may change. lab_world
is never modified. Each bad input is checked for its whole message, an untouched previous
generation and no mount left anywhere.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from g2d.core.deploy_steps import DeployStep
from g2d.core.lineage import GenState
from g2d.hosts.local import LocalHost
from g2d.lab.keys import ensure_keys
from g2d.lab.layout import LabLayout
from g2d.lab.loopdev import FsType, mount_loop
from g2d.lab.releases import digests_text
from g2d.lab.zfs_fuse import ZfsFuse, create_pool
from g2d.rootfs.kernel import current_kernel
from g2d.sources.keyring import Keyring
from g2d.sources.stage3 import fetch_stage3
from g2d.storage.lineage_site import open_site

HOST = LocalHost()
LINKED = ("binpkgs", "distfiles", "kernels", "patchfiles")
ALL_STEPS = [str(s) for s in DeployStep]


@dataclass(frozen=True)
class Dom0:
    root: Path
    release_key: Path

    @property
    def packages(self) -> Path:
        return self.root / "packages"


def artifacts_of(flow_run_id: uuid.UUID) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {f"{a.type}:{a.key}": a.data for a in found}  # type: ignore[misc]


def mounts_under(path: Path) -> list[str]:
    """Mount points inside the generations below ``path`` (a chroot's /proc, a bind), in
    the mount table of any process; the generations' own mounts (ZFS) do not count."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            lines = Path(f"/proc/{entry.name}/mountinfo").read_text().splitlines()
        except OSError:
            continue
        points = (line.split()[4] for line in lines)
        found += [p for p in points if p.startswith(f"{path}/") and "/" in p[len(f"{path}/") :]]
    return sorted(set(found))


@pytest.fixture(scope="module")
def keys_dir(lab_world: LabLayout, tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = ensure_keys(lab_world.gnupg)
    out = tmp_path_factory.mktemp("keys")
    try:
        keys.export_public(keys.binpkg, out / "binpkg.asc")
        keys.export_public(keys.release, out / "release.asc")
    finally:
        HOST.run(["gpgconf", "--homedir", lab_world.gnupg, "--kill", "gpg-agent"])
    return out


@pytest.fixture(scope="module")
def dom0_base(lab_world: LabLayout, keys_dir: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Dom0:  # fmt: skip
    """releases/ fetched (verified) from the lab over file://; the rest linked or copied."""
    root = tmp_path_factory.mktemp("dom0")
    with Keyring.from_key_files(root / ".keyring", [keys_dir / "release.asc"]) as keyring:
        fetch_stage3(f"file://{lab_world.releases}/", root / "releases", variant="openrc",
                     keyring=keyring)  # fmt: skip
    shutil.rmtree(root / ".keyring")
    (root / "repos").mkdir()
    (root / "repos/gentoo").symlink_to(lab_world.gentoo_repo)
    for part in LINKED:
        (root / part).symlink_to(lab_world.mirror / part if part != "patchfiles"
                                 else lab_world.patchfiles)  # fmt: skip
    shutil.copytree(lab_world.packages, root / "packages")
    (root / "meta/keys/binpkg").mkdir(parents=True)
    shutil.copy(keys_dir / "binpkg.asc", root / "meta/keys/binpkg/lab.asc")
    hashed = HOST.run(["openssl", "passwd", "-6", "-stdin"],
                      stdin=os.urandom(12).hex().encode()).stdout.strip()  # fmt: skip
    (root / "meta/users.toml").write_text(
        f'[[user]]\nname = "sysop"\ngroups = ["users", "portage"]\nshell = "/bin/sh"\n'
        f'password_hash = "{hashed}"\n'
        'ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2d sysop@dom0"]\n'
    )
    return Dom0(root, keys_dir / "release.asc")


def variant_dom0(base: Dom0, where: Path) -> Dom0:
    """A dom0 sharing base's parts by links, with its own packages/ and releases/ copies."""
    where.mkdir()
    for entry in base.root.iterdir():
        if entry.name in ("packages",):
            shutil.copytree(entry, where / entry.name)
        elif entry.name == "releases":
            HOST.run(["cp", "-a", "--reflink=auto", entry, where / entry.name])
        else:
            (where / entry.name).symlink_to(entry.resolve())
    return Dom0(where, base.release_key)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "state"
    monkeypatch.setenv("G2D_STATE_DIR", str(state))
    return state


@pytest.fixture
def big_pool(zfs_fuse: ZfsFuse, tmp_path: Path, start_component: Any) -> Iterator[str]:
    """A 1 GiB pool (sparse): two generations of the lab root and their snapshots fit."""
    pool = start_component("zfs pool", lambda: create_pool(
        tmp_path / "vdevs", size_mib=1024, mountpoint=tmp_path / "zfs-mnt"))  # fmt: skip
    with pool:
        yield pool.name


def run_deploy(dom0: Dom0, build: str, work: str, **kw: object):
    from g2d.flows.deploy import deploy

    return deploy(build, work, dom0_root=str(dom0.root), release_keys=[str(dom0.release_key)],
                  return_state=True, **kw)  # fmt: skip


def retry_flow_run(run_id: uuid.UUID):
    """Run a failed flow run again under the same id, as a runner does after the UI's Retry
    (the run is set to AwaitingRetry, then executed with its stored parameters)."""
    from prefect.flow_engine import run_flow
    from prefect.states import AwaitingRetry

    from g2d.flows.deploy import deploy

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, AwaitingRetry(), force=True)
        flow_run = client.read_flow_run(run_id)
    return run_flow(deploy, flow_run=flow_run, parameters=flow_run.parameters,
                    return_type="state")  # fmt: skip


def latest_report(run_id: uuid.UUID) -> str:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    reports = [a for a in found if (a.key or "").startswith("deploy-")]
    return str(max(reports, key=lambda a: a.created).data)


def failure(state) -> str:
    assert state.is_failed(), state
    with pytest.raises(Exception) as caught:
        state.result()
    return str(caught.value)


def installed(root: Path) -> set[str]:
    vdb = root / "var/db/pkg"
    return {f"{c.name}/{p.name}" for c in vdb.iterdir() for p in c.iterdir()}


def snapshot_state(state_dir: Path, uri: str) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """Each generation's volume, state and snapshots: what must not change."""
    lineage = open_site(uri, state_dir=state_dir).load()
    return [(g.key, str(g.state), tuple(s.name for s in g.snapshots))
            for g in lineage.generations]  # fmt: skip


def test_deploy_seals_a_generation_an_update_changes_it_and_bad_input_leaves_it(
    dom0_base: Dom0, big_pool: str, env: Path, lab_world: LabLayout, tmp_path: Path
) -> None:
    dom0 = variant_dom0(dom0_base, tmp_path / "dom0")
    lineage = f"zfs://{big_pool}/sys"
    state = run_deploy(dom0, "openrc", lineage)
    assert state.is_completed(), state.message
    out = state.result()
    g1 = f"{big_pool}/sys/g1"
    root = tmp_path / "zfs-mnt/sys/g1"
    version = current_kernel(lab_world.kernels).version
    assert out["generation"] == g1 and out["state"] == "sealed"
    assert out["stage3"] == "stage3-amd64-openrc-20250108T120000Z.tar.xz"
    meta = out["meta"]
    assert {k: meta[k] for k in ("g2d:state", "g2d:gen", "g2d:profile", "g2d:site-profile",
                                 "g2d:kernel", "g2d:stage3", "g2d:deploy-done")} == {
        "g2d:state": "sealed", "g2d:gen": "g1", "g2d:profile": "default/linux/amd64/23.0",
        "g2d:site-profile": "23.0/openrc", "g2d:kernel": version, "g2d:stage3": out["stage3"],
        "g2d:deploy-done": "extract,patchfiles,portage,system,emerge,patches,chroot,services,"
                           "users,kernel",
    }  # fmt: skip
    assert meta["g2d:flow-run"] == str(state.state_details.flow_run_id)
    assert (meta["g2d:emerge-built"], "g2d:emerge-failed" in meta) == ("0", False)
    assert {"app-misc/hello-1.0", "app-misc/greeter-1.0", "app-misc/eula-lab-1.0",
            "sys-apps/openrc-lab-0.56"} <= installed(root)  # fmt: skip
    assert (root / "usr/share/hello/build-flags").read_text() == "nls=no doc=yes\n"
    assert (root / f"boot/vmlinuz-{version}").is_file()
    assert os.readlink(root / "etc/runlevels/default/greeter") == "/etc/init.d/greeter"
    assert "sysop:" in (root / "etc/passwd").read_text()
    assert (root / "home/sysop/.ssh/authorized_keys").read_text().startswith("ssh-ed25519 ")
    assert os.readlink(root / "etc/portage/make.profile") == (
        "../../var/db/repos/gentoo/profiles/default/linux/amd64/23.0"
    )
    site = open_site(lineage, state_dir=env)
    gen = site.load().generation(g1)
    assert gen.state is GenState.sealed and gen.newest_sealed is not None
    assert out["sealed"] == str(gen.newest_sealed.ref)
    artifacts = artifacts_of(state.state_details.flow_run_id)
    report = next(v for k, v in artifacts.items() if k.startswith("markdown:deploy-local-"))
    assert "| app-misc/hello-1.0 | binary | 2 |" in report
    assert report.rstrip().endswith(f"**sealed: {out['sealed']}**")
    assert mounts_under(tmp_path / "zfs-mnt/sys") == []
    before = snapshot_state(env, lineage)

    # bad input: nothing made, g1 as it was, no mount left
    def refused(message: str, state) -> None:
        assert failure(state) == message
        assert snapshot_state(env, lineage) == before
        assert mounts_under(tmp_path / "zfs-mnt/sys") == []

    refused("no such profile: 'musl'; the site's profiles are: gnome (23.0/desktop/gnome), "
            "gnome/systemd (23.0/desktop/gnome/systemd), plasma (23.0/desktop/plasma), "
            "plasma/systemd (23.0/desktop/plasma/systemd), hardened (23.0/hardened), "
            "hardened/selinux (23.0/hardened/selinux), openrc (23.0/openrc), selinux "
            "(23.0/selinux), systemd (23.0/systemd)",
            run_deploy(dom0, "musl", lineage))  # fmt: skip
    refused(
        f"invalid target 'zfs://{big_pool}-gone/sys': ZFS pool {big_pool}-gone does not exist",
        run_deploy(dom0, "openrc", f"zfs://{big_pool}-gone/sys"),
    )
    refused(
        f"zfs://{big_pool}/sys/g1 exists; a deploy makes a new generation and never changes one",
        run_deploy(dom0, "openrc", f"zfs://{big_pool}/sys/g1"),
    )
    (dom0.packages / "23.0/openrc.pkgs").write_text("sys-apps/openrc-lab\napp-misc/nosuch\n")
    (dom0.packages / "common.uses").write_text("app-misc/hello doc -nls\n=app-misc/greeter-9\n")
    refused(f"2 unknown atoms (repositories: {dom0.root}/repos/gentoo):\n"
            "  packages/23.0/openrc.pkgs:2: app-misc/nosuch: no such package\n"
            "  packages/common.uses:2: =app-misc/greeter-9: no version matches "
            "(the repository has 1.0)", run_deploy(dom0, "openrc", lineage))  # fmt: skip
    shutil.rmtree(dom0.packages)
    shutil.copytree(lab_world.packages, dom0.packages)
    tarball = next((dom0.root / "releases/amd64/autobuilds").glob("20*/stage3-*.tar.xz"))
    good = tarball.read_bytes()
    with open(tarball, "r+b") as f:  # one byte changed, size kept
        f.seek(len(good) // 2)
        f.write(bytes([good[len(good) // 2] ^ 1]))
    refused(
        f"{tarball}: BLAKE2B and SHA512 differ from the signed .DIGESTS",
        run_deploy(dom0, "openrc", lineage),
    )
    tarball.write_bytes(good)

    # update: the site's package.use changed; emerge takes the binhost's other build of hello
    (dom0.packages / "common.uses").write_text("app-misc/hello nls -doc\n")
    from g2d.flows.update import update

    up = update(f"zfs://{g1}", dom0_root=str(dom0.root), return_state=True)
    assert up.is_completed(), up.message
    result = up.result()
    assert result["merged"] == ["app-misc/hello-1.0"]
    assert (root / "usr/share/hello/build-flags").read_text() == "nls=yes doc=no\n"
    after_update = open_site(lineage, state_dir=env).load().generation(g1)
    assert str(after_update.newest_sealed.ref) == result["sealed"]
    assert after_update.meta["g2d:update-merged"] == "1"

    # a failed update (no kernel to install, after emerge changed hello) rolls back to the
    # snapshot taken first
    (dom0.packages / "common.uses").write_text("app-misc/hello doc -nls\n")
    (dom0.root / "kernels").unlink()
    (dom0.root / "kernels/current").mkdir(parents=True)
    sealed_before = snapshot_state(env, lineage)
    down = update(f"zfs://{g1}", dom0_root=str(dom0.root), return_state=True)
    assert failure(down) == (
        f"{dom0.root}/kernels/current holds 0 kernels (none); expected exactly one"
    )
    assert (root / "usr/share/hello/build-flags").read_text() == "nls=yes doc=no\n"
    rendered = (root / "etc/portage/package.use/g2d-site").read_text().splitlines()
    assert "app-misc/hello nls -doc" in rendered  # the earlier render, not the failed run's
    now = snapshot_state(env, lineage)
    assert [(k, s) for k, s, _ in now] == [(k, s) for k, s, _ in sealed_before]
    assert len(now[0][2]) == len(sealed_before[0][2]) + 1  # the snapshot taken first stays
    assert mounts_under(tmp_path / "zfs-mnt/sys") == []


def hostile_release(dom0: Dom0, gnupg: Path) -> Dom0:
    """dom0's releases/ replaced by a stage3 with a `../` member, signed by a key of its own
    (the lab's keys stay untouched): it passes every signature and digest check."""
    keys = ensure_keys(gnupg)
    build = dom0.root / "releases/amd64/autobuilds/20250201T120000Z"
    build.mkdir()
    tarball = build / "stage3-amd64-openrc-20250201T120000Z.tar.xz"
    with tarfile.open(tarball, "w:xz") as tar:
        for name in ("./etc/os-release", "../escaped"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"x\n"))
    with tempfile.NamedTemporaryFile("w", dir=build) as payload:
        payload.write(digests_text([tarball], ("blake2b", "sha512")))
        payload.flush()
        keys.clearsign(Path(payload.name), Path(f"{tarball}.DIGESTS"))
    keys.detach_sign(tarball, Path(f"{tarball}.asc"))
    link = dom0.root / "releases/amd64/autobuilds/current-stage3-amd64-openrc"
    link.unlink()
    link.symlink_to(build.name)
    keys.export_public(keys.release, gnupg.parent / "hostile-release.asc")
    HOST.run(["gpgconf", "--homedir", gnupg, "--kill", "gpg-agent"])
    return Dom0(dom0.root, gnupg.parent / "hostile-release.asc")


def test_a_failed_deploy_is_marked_failed_and_kept_in_a_plain_directory(
    dom0_base: Dom0, env: Path, tmp_path: Path
) -> None:
    lineage = tmp_path / "roots"
    lineage.mkdir()
    dom0 = variant_dom0(dom0_base, tmp_path / "dom0")
    # a package whose build dies: listed with its build log; the generation failed, kept
    (dom0.packages / "23.0/openrc.pkgs").write_text("app-misc/breakme\n")
    (dom0.packages / "23.0/openrc.uses").write_text("app-misc/breakme broken\n")
    state = run_deploy(dom0, "openrc", str(lineage))
    run_id = state.state_details.flow_run_id
    log = env / f"logs/deploy/{run_id}/emerge/app-misc/breakme-1.0.log"
    message = failure(state)
    assert message.startswith(f"emerge in {lineage}/g1 failed for 1 of ")
    assert message.endswith(f" packages: app-misc/breakme-1.0 (build log: {log})")
    assert " *   breakme fails on purpose when USE=broken is set" in log.read_text().splitlines()
    site = open_site(str(lineage), state_dir=env)
    g1 = site.load().generation("g1")
    assert (g1.state, g1.meta["g2d:deploy-done"]) == (GenState.failed, "extract")
    assert (lineage / "g1/etc/portage/make.profile").is_symlink()  # kept for inspection
    report = next(v for k, v in artifacts_of(run_id).items() if k.startswith("markdown:deploy-"))
    assert "| app-misc/breakme-1.0 | built |  |  | **failed** |" in report
    assert mounts_under(lineage) == []

    # the site fixes its package set and retries the same flow run (the UI's Retry): the run
    # finds its own g1, goes on after extract, and seals it; nothing else is created
    (dom0.packages / "23.0/openrc.uses").write_text("")
    state = retry_flow_run(run_id)
    assert state.is_completed(), state
    g1 = open_site(str(lineage), state_dir=env).load().generation("g1")
    assert (g1.state, g1.meta["g2d:deploy-done"], g1.meta["g2d:flow-run"]) == (
        GenState.sealed,
        ",".join(ALL_STEPS),
        str(run_id),
    )
    assert "app-misc/breakme-1.0" in installed(lineage / "g1")
    assert [g.key for g in open_site(str(lineage), state_dir=env).load().generations] == ["g1"]
    report = latest_report(run_id)
    assert "| extract | skipped (done before) |" in report, report
    assert mounts_under(lineage) == []

    # a stage3 with a `../` member, signed and listed: refused before anything is written
    bad = hostile_release(variant_dom0(dom0_base, tmp_path / "dom0-hostile"), tmp_path / "gpg")
    state = run_deploy(bad, "openrc", str(lineage))
    tarball = bad.root / "releases/amd64/autobuilds/20250201T120000Z"
    assert failure(state) == (
        f"{tarball}/stage3-amd64-openrc-20250201T120000Z.tar.xz: refused, 1 member would land "
        "outside the root:\n  ../escaped: a '..' component"
    )
    g2 = open_site(str(lineage), state_dir=env).load().generation("g2")
    assert g2.state is GenState.failed and list((lineage / "g2").iterdir()) == []
    assert not (tmp_path / "escaped").exists() and not (lineage / "escaped").exists()
    assert open_site(str(lineage), state_dir=env).load().generation("g1").state is GenState.sealed
    assert mounts_under(lineage) == []


def test_a_deploy_onto_btrfs_seals_a_read_only_snapshot(
    dom0_base: Dom0, env: Path, tmp_path: Path, start_component: Any
) -> None:
    """The third backend: the generation a subvolume, its seal a read-only snapshot."""
    mounted = start_component("btrfs on a loop device", lambda: mount_loop(
        tmp_path / "btrfs", FsType.btrfs, size_mib=2048))  # fmt: skip
    with mounted:
        lineage = mounted.mountpoint / "sys"
        lineage.mkdir()
        state = run_deploy(dom0_base, "openrc", str(lineage))
        assert state.is_completed(), state.message
        out = state.result()
        assert (out["generation"], out["state"]) == (f"{lineage}/g1", "sealed")
        gen = open_site(str(lineage), state_dir=env).load().generation("g1")
        assert gen.state is GenState.sealed and gen.newest_sealed is not None
        assert gen.meta["g2d:deploy-done"] == ",".join(ALL_STEPS)
        read_only = HOST.run(["btrfs", "subvolume", "list", "-r", mounted.mountpoint]).stdout
        paths = [line.rpartition(" path ")[2] for line in read_only.splitlines()]
        assert [p for p in paths if p.endswith(f"/{gen.newest_sealed.ref.name}")] != [], paths
        assert "sys/g1" not in paths  # the generation itself stays writable
        assert "app-misc/hello-1.0" in installed(lineage / "g1")
        assert mounts_under(lineage) == []


def test_the_cli_dry_run_checks_the_inputs_and_prints_the_plan(
    dom0_base: Dom0, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import g2d.cli_deploy  # noqa: F401  (registers deploy and update; cli.py imports it too)
    from g2d.cli import app

    monkeypatch.setenv("G2D_DOM0_ROOT", str(dom0_base.root))
    monkeypatch.setenv("G2D_ESYNC__RELEASE_KEYS", str(dom0_base.release_key))
    (tmp_path / "roots").mkdir()
    work = f"work={tmp_path}/roots"
    done = CliRunner().invoke(app, ["deploy", "build=openrc", work, "--dry-run"])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0] == f"plan: deploy 23.0/openrc as {tmp_path}/roots/g1 (plain)"
    assert lines[1] == "  profile: 23.0/openrc (default/linux/amd64/23.0)"
    assert lines[3:7] == [
        "  emerge: @world app-misc/hello app-misc/greeter app-misc/eula-lab sys-apps/openrc-lab",
        "  services: 3 action(s)",
        "  users: sysop",
        f"  kernel: {current_kernel(dom0_base.root / 'kernels').version}",
    ]
    assert lines[7:9] == [f"  0. create {tmp_path}/roots/g1, state building",
                          "  1. extract: extract the verified stage3 (owners, modes, xattrs, "
                          "ACLs, devices)"]  # fmt: skip
    assert lines[-3:] == [
        "  10. kernel: install the dom0's current kernel",
        f"  11. seal {tmp_path}/roots/g1 (the new @safe)",
        "dry run: nothing changed",
    ]
    assert list((tmp_path / "roots").iterdir()) == []
    bad = CliRunner().invoke(app, ["deploy", "--build", "nope", "--work", f"{tmp_path}/roots",
                                   "--dry-run"])  # fmt: skip
    assert bad.exit_code == 1
    assert bad.stderr.splitlines()[-1] == "(name a profile by its stem or selection word)"
