"""The esync flow against the lab mirror (http, rsync, file://) into a fresh dom0 tree, read
back from the Prefect API: the verified tree, the summary artifact, a second run that
fetches nothing, a part whose mirror serves a bad signature (only that part fails, the good
tree stays), a dead first mirror, and `prefect deployment run esync/nightly` through
`g2d serve`. Settings come from G2D_* variables, as a deployed run gets them."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_API_URL
from prefect.states import State
from test_deployments import PREFECT, SERVE, _wait_for_deployment

from g2d.core.distfiles_layout import parse_layout_conf
from g2d.core.packages_index import parse_packages
from g2d.flows.esync import esync
from g2d.hosts.local import LocalHost
from g2d.lab.daemons import HttpServer
from g2d.lab.keys import ensure_keys
from g2d.lab.process import free_port
from g2d.lab.sshd import SshServer
from g2d.sources.manifest import verify_tree
from g2d.sources.mirror_health import HealthStore
from g2d.sources.tree_sync import sync_lock
from g2d.tasks.artifacts import artifact_key

STAMP = "20250108T120000Z"
AUTOBUILDS = "releases/amd64/autobuilds"
ALL = ["releases", "repos", "snapshots", "distfiles", "binpkgs", "kernels", "packages"]
HEADER = "| part | result | mirror | bytes | files | seconds | verification | error |"
sh = LocalHost()
LabMirror = Any  # tests/conftest.py's LabMirror (this tier's conftest shadows the name)
LAB_KEY_UID = "g2d lab release engineering <releng@lab.g2d.invalid>"


def tarball(variant: str) -> str:
    return f"stage3-amd64-{variant}-{STAMP}.tar.xz"


def lab_env(lab: LabMirror, root: Path, key: Path, **mirrors: list[str]) -> dict[str, str]:
    """G2D_* settings of a dom0 in ``root`` syncing from the lab."""
    table = lab.mirrors()
    table["kernels"] = [lab.rsync.url("gentoo") + "kernels/"]  # a tree: rsync, not http
    table["packages"] = [lab.layout.packages.as_uri() + "/"]  # no daemon serves site parts
    table.update(mirrors)
    return {
        "G2D_DOM0_ROOT": str(root / "dom0"),
        "G2D_STATE_DIR": str(root / "state"),
        "G2D_MIRRORS": json.dumps(table),
        "G2D_ESYNC__RELEASE_KEYS": str(key),
        "G2D_ESYNC__STAGE3_VARIANTS": "openrc systemd",
    }


def run_esync(env: dict[str, str], **params: Any) -> State[Any]:
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("G2D_")]:
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        return esync(**params, return_state=True)


def summary_rows(state: State[Any]) -> list[dict[str, str]]:
    """The rows of the run's summary artifact, as the API holds it."""
    flow_run_id: uuid.UUID = state.state_details.flow_run_id  # type: ignore[assignment]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    by_key = {f"{a.type}:{a.key}": a.data for a in found}
    assert f"progress:{artifact_key('esync-progress', socket.gethostname())}" in by_key
    markdown = by_key[f"markdown:{artifact_key('esync', socket.gethostname())}"]
    lines = [line for line in str(markdown).splitlines() if line.startswith("| ")]
    assert lines[0] == HEADER

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split(" | ")]

    return [dict(zip(cells(HEADER), cells(line), strict=True)) for line in lines[1:]]


def tree_state(root: Path) -> dict[str, object]:
    """Every path under ``root``: a link's target, a file's digest (small) or size and mtime."""
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_file():
            st = path.stat()
            small = st.st_size <= 1 << 20
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if small else (
                st.st_size, st.st_mtime_ns)  # fmt: skip
    return found


@pytest.fixture(scope="module")
def release_key(lab_mirror: LabMirror, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's release public key, exported as a dom0 holds Gentoo's."""
    key = tmp_path_factory.mktemp("keys") / "release.asc"
    try:
        keys = ensure_keys(lab_mirror.layout.gnupg)
        keys.export_public(keys.release, key)
    finally:  # python-gnupg started an agent for the lab's keyring
        sh.run(["gpgconf", "--homedir", lab_mirror.layout.gnupg, "--kill", "gpg-agent"],
               check=False)  # fmt: skip
    return key


def signer_of(key: Path) -> str:
    """The fingerprint of the (one) primary key in an armored key file."""
    home = key.with_name("show-keys")  # not the user's ~/.gnupg
    home.mkdir(mode=0o700, exist_ok=True)
    listing = sh.run(["gpg", "--homedir", home, "--with-colons", "--show-keys", key]).stdout
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def first_run(
    lab_mirror: LabMirror, release_key: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, str], State[Any]]:
    env = lab_env(lab_mirror, tmp_path_factory.mktemp("esync-full"), release_key)
    return env, run_esync(env)


def test_full_esync_leaves_a_verified_tree_and_a_summary(
    lab_mirror: LabMirror, release_key: Path, first_run: tuple[dict[str, str], State[Any]]
) -> None:
    env, state = first_run
    assert state.is_completed(), state.message
    dom0, mirror = Path(env["G2D_DOM0_ROOT"]), lab_mirror.layout.mirror
    mirrors = json.loads(env["G2D_MIRRORS"])
    rows = summary_rows(state)
    assert [(r["part"], r["result"], r["mirror"], r["error"]) for r in rows] == [
        (part, "ok", mirrors[part][0], "") for part in ALL
    ]
    assert all(int(r["bytes"]) > 0 and int(r["files"]) > 0 for r in rows), rows
    verification = {r["part"]: r["verification"] for r in rows}
    signer = signer_of(release_key)[-16:]
    assert verification["releases"] == (
        f"stage3-amd64-openrc {STAMP}: signed latest, signed DIGESTS, .asc; "
        f"stage3-amd64-systemd {STAMP}: signed latest, signed DIGESTS, .asc"
    )
    assert verification["repos"] == f"Manifests verified by gemato, signed by {signer}"
    assert verification["snapshots"] == f"gentoo-20250101.tar.xz: .gpgsig by {signer}"
    assert verification["binpkgs"] == "17 packages: SIZE+MD5+SHA1 of the Packages index"

    # releases: both variants under <stamp>/ with their sidecars, current links to the stamp
    autobuilds = dom0 / "releases/amd64/autobuilds"
    for variant in ("openrc", "systemd"):
        built = autobuilds / STAMP / tarball(variant)
        assert built.stat().st_size == (mirror / AUTOBUILDS / STAMP / built.name).stat().st_size
        assert all(Path(f"{built}{s}").is_file() for s in (".DIGESTS", ".asc"))
        assert os.readlink(autobuilds / f"current-stage3-amd64-{variant}") == STAMP
    # repos: the tree verifies against the release key, as synced
    report = verify_tree(dom0 / "repos/gentoo", [release_key])
    assert report.signed_by == signer_of(release_key)
    # snapshots, with the latest links
    snapshots = dom0 / "snapshots"
    assert sorted(p.name for p in snapshots.iterdir()) == [
        "gentoo-20250101.tar.xz", "gentoo-20250101.tar.xz.gpgsig",
        "gentoo-latest.tar.xz", "gentoo-latest.tar.xz.gpgsig",
    ]  # fmt: skip
    assert os.readlink(snapshots / "gentoo-latest.tar.xz") == "gentoo-20250101.tar.xz"
    # distfiles at their GLEP 75 paths, as on the mirror
    layout = parse_layout_conf((mirror / "distfiles/layout.conf").read_text())
    served = sorted(p.relative_to(mirror / "distfiles").as_posix()
                    for p in (mirror / "distfiles").rglob("*.tar.gz"))  # fmt: skip
    assert served == ["ce/hello-1.0.tar.gz", "da/hello-1.1.tar.gz"]
    for rel in served:
        name = rel.split("/")[-1]
        assert layout.path(name) == rel
        assert (dom0 / "distfiles" / rel).read_bytes() == (mirror / "distfiles" / rel).read_bytes()
    # binpkgs: the index and every package it lists; Packages.gz holds the same bytes
    index = (dom0 / "binpkgs/Packages").read_bytes()
    assert index == (mirror / "binpkgs/Packages").read_bytes()
    assert gzip.decompress((dom0 / "binpkgs/Packages.gz").read_bytes()) == index
    for entry in parse_packages(index.decode()).entries:
        assert (dom0 / "binpkgs" / entry.path).stat().st_size == entry.size
    # site trees
    kernels = sorted(p.relative_to(mirror / "kernels") for p in (mirror / "kernels").rglob("*"))
    assert sorted(p.relative_to(dom0 / "kernels") for p in (dom0 / "kernels").rglob("*")) == (
        kernels
    )
    assert (dom0 / "packages/common.conf").read_bytes() == (
        lab_mirror.layout.packages / "common.conf"
    ).read_bytes()


def test_second_esync_fetches_nothing_and_changes_nothing(
    first_run: tuple[dict[str, str], State[Any]],
) -> None:
    env, state = first_run
    assert state.is_completed(), state.message
    dom0 = Path(env["G2D_DOM0_ROOT"])
    before = tree_state(dom0)
    again = run_esync(env)
    assert again.is_completed(), again.message
    rows = summary_rows(again)
    assert [(r["part"], r["result"], r["bytes"], r["files"]) for r in rows] == [
        (part, "ok", "0", "0") for part in ALL
    ]
    assert tree_state(dom0) == before


def test_a_bad_signature_fails_that_part_only_and_keeps_the_good_tree(
    lab_mirror: LabMirror, release_key: Path, first_run: tuple[dict[str, str], State[Any]],
    http_server: HttpServer, tmp_path: Path,
) -> None:  # fmt: skip
    env, state = first_run
    assert state.is_completed(), state.message
    # a snapshots mirror offering a newer snapshot whose bytes its signature does not sign
    www = http_server.root / "snapshots"
    www.mkdir()
    lab_snapshots = lab_mirror.layout.snapshots
    for name in ("gentoo-20250101.tar.xz", "gentoo-20250101.tar.xz.gpgsig"):
        shutil.copy(lab_snapshots / name, www / name)
    (www / "gentoo-20250102.tar.xz").write_bytes(
        (lab_snapshots / "gentoo-20250101.tar.xz").read_bytes() + b"tampered"
    )
    shutil.copy(
        lab_snapshots / "gentoo-20250101.tar.xz.gpgsig", www / "gentoo-20250102.tar.xz.gpgsig"
    )
    root = tmp_path / "site"
    root.mkdir()
    sh.run(["cp", "-al", env["G2D_DOM0_ROOT"], root / "dom0"])  # hard links: g2d only renames
    bad = lab_env(lab_mirror, root, release_key, snapshots=[f"{http_server.url}snapshots/"])
    snapshots = root / "dom0/snapshots"
    before = tree_state(snapshots)

    failed = run_esync(bad)

    assert failed.is_failed()
    signer = signer_of(release_key)[-16:]
    why = (
        f"{http_server.url}snapshots/gentoo-20250102.tar.xz.gpgsig: BAD signature from key "
        f"{signer} ({LAB_KEY_UID}): the data or the signature was altered"
    )
    assert failed.message == (
        "Flow run encountered an exception: EsyncFailed: "
        f"esync: 1 of {len(ALL)} part(s) failed: snapshots: {why}"
    )
    rows = summary_rows(failed)
    assert [(r["part"], r["result"], r["error"]) for r in rows] == [
        (part, "FAILED" if part == "snapshots" else "ok", why if part == "snapshots" else "")
        for part in ALL
    ]
    assert tree_state(snapshots) == before  # no new file, no .part left, links unchanged


def test_a_dead_first_mirror_is_skipped_and_remembered(
    lab_mirror: LabMirror, release_key: Path, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    dead_http, dead_rsync = (
        f"http://127.0.0.1:{port}/releases/",
        f"rsync://127.0.0.1:{port}/gentoo-portage/",
    )
    good = lab_mirror.mirrors()
    first = {"releases": [dead_http, *good["releases"]], "repos": [dead_rsync, *good["repos"]]}
    env = lab_env(lab_mirror, tmp_path, release_key, **first)
    env["G2D_ESYNC__STAGE3_VARIANTS"] = "openrc"

    state = run_esync(env, parts=["releases", "repos"])

    assert state.is_completed(), state.message
    rows = summary_rows(state)
    assert [(r["part"], r["mirror"]) for r in rows] == [
        ("releases", good["releases"][0]), ("repos", good["repos"][0])
    ]  # fmt: skip
    health = HealthStore.in_state_dir(tmp_path / "state").load()
    assert health[dead_http].error == (
        f"{dead_http}amd64/autobuilds/latest-stage3-amd64-openrc.txt: "
        "cannot connect: Connection refused"
    )
    assert not health[dead_rsync].reachable
    assert health[good["releases"][0]].reachable and health[good["repos"][0]].reachable
    assert os.readlink(tmp_path / "dom0" / AUTOBUILDS / "current-stage3-amd64-openrc") == STAMP


def test_a_part_another_esync_is_syncing_fails_alone(
    lab_mirror: LabMirror, release_key: Path, tmp_path: Path
) -> None:
    env = lab_env(lab_mirror, tmp_path, release_key)
    binpkgs = tmp_path / "dom0" / "binpkgs"
    with sync_lock(binpkgs):  # as an esync of the binhost started from the CLI holds it
        state = run_esync(env, parts=["binpkgs", "kernels"])
    assert state.is_failed()
    why = f"{binpkgs}: another sync of this tree is running"
    assert state.message == (
        f"Flow run encountered an exception: EsyncFailed: esync: 1 of 2 part(s) failed: "
        f"binpkgs: {why}"
    )
    rows = summary_rows(state)
    assert [(r["part"], r["result"], r["error"]) for r in rows] == [
        ("binpkgs", "FAILED", why), ("kernels", "ok", "")]  # fmt: skip
    assert not binpkgs.exists()  # nothing fetched beside the other sync
    assert (tmp_path / "dom0" / "kernels").is_dir()


def test_ssh_mirrors_through_their_pinned_host_key(
    lab_mirror: LabMirror, release_key: Path, sshd: SshServer, tmp_path: Path
) -> None:
    """releases (sshfs), binpkgs (sshfs) and a site tree (rsync over ssh) from ssh:// mirrors;
    the host key pinned by $G2D_SSH_KNOWN_HOSTS, as a dom0 pins its site server."""
    layout, at = lab_mirror.layout, f"ssh://{sshd.user}@{sshd.host}:{sshd.port}"
    urls = {"releases": f"{at}{layout.releases}/", "binpkgs": f"{at}{layout.binpkgs}/",
            "kernels": f"{at}{layout.kernels}/"}  # fmt: skip
    env = lab_env(lab_mirror, tmp_path, release_key, **{k: [v] for k, v in urls.items()})
    env["G2D_ESYNC__STAGE3_VARIANTS"] = "openrc"
    env["G2D_SSH_IDENTITY"] = str(sshd.client_key)
    other = tmp_path / "other_known_hosts"  # a key pinned for another port only
    other.write_text(f"[{sshd.host}]:{sshd.port + 1} {sshd.host_public_key}\n")

    refused = run_esync(env | {"G2D_SSH_KNOWN_HOSTS": str(other)}, parts=["binpkgs"])

    assert refused.is_failed()
    (row,) = summary_rows(refused)
    fingerprint = sh.run(["ssh-keygen", "-l", "-f", sshd.known_hosts]).stdout.split()[1]
    assert (row["result"], row["error"]) == ("FAILED", (
        f"{sshd.user}@{sshd.host}:{sshd.port}: host key {fingerprint} refused: unknown host: "
        f"no key is pinned for [{sshd.host}]:{sshd.port} in {other}"))  # fmt: skip
    assert not (tmp_path / "dom0" / "binpkgs" / "Packages").exists()

    pinned = tmp_path / "known_hosts"
    pinned.write_text(sshd.known_hosts_line + "\n")
    state = run_esync(env | {"G2D_SSH_KNOWN_HOSTS": str(pinned)},
                      parts=["releases", "binpkgs", "kernels"])  # fmt: skip

    assert state.is_completed(), state.message
    rows = summary_rows(state)
    assert [(r["part"], r["result"], r["mirror"]) for r in rows] == [
        (part, "ok", url) for part, url in urls.items()]  # fmt: skip
    dom0 = tmp_path / "dom0"
    assert os.readlink(dom0 / AUTOBUILDS / "current-stage3-amd64-openrc") == STAMP
    assert (dom0 / "binpkgs/Packages").read_bytes() == (layout.binpkgs / "Packages").read_bytes()
    assert tree_state(dom0 / "kernels") == tree_state(layout.kernels)


def test_prefect_deployment_run_esync_nightly(
    lab_mirror: LabMirror, release_key: Path, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("G2D_")},
        **lab_env(lab_mirror, tmp_path, release_key),
        "G2D_ESYNC__STAGE3_VARIANTS": "openrc",
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),  # the harness's server
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [*SERVE, "--only", "esync/nightly"], env=env, stdout=log, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_deployment("esync/nightly", serve, 120)
        run = subprocess.run(
            [PREFECT, "deployment", "run", "esync/nightly", "--watch", "--watch-timeout", "240"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        os.killpg(serve.pid, signal.SIGTERM)  # the serve process and the runs it started
        serve.wait(timeout=60)
        log.close()
    assert run.returncode == 0, run.stdout + run.stderr + (tmp_path / "serve.log").read_text()
    assert "Flow run finished successfully" in run.stdout, run.stdout
    dom0 = tmp_path / "dom0"
    assert os.readlink(dom0 / AUTOBUILDS / "current-stage3-amd64-openrc") == STAMP
    assert verify_tree(dom0 / "repos/gentoo", [release_key]).signed_by is not None
    assert (dom0 / "binpkgs/Packages").read_bytes() == (
        lab_mirror.layout.binpkgs / "Packages"
    ).read_bytes()
