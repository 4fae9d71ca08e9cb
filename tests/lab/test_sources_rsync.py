"""Syncing the lab's signed repository over rsync: verified, never back in time, and a bad
tree never replaces a good one. Mirrors: the session's `lab_mirror`, and an `rsync_daemon`
serving a modified copy of the lab repository."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from g2d.hosts.local import LocalHost
from g2d.lab.daemons import RsyncDaemon
from g2d.lab.keys import ensure_keys
from g2d.lab.loopdev import LoopMount
from g2d.lab.mirror_served import LabMirror
from g2d.sources.errors import MirrorBehind, NoSignature, TransferError
from g2d.sources.manifest import ManifestMismatchError
from g2d.sources.rsync import RsyncStats
from g2d.sources.tree_sync import TreeBusy, staging_dir, sync_lock, sync_repository

LAB_TIME = "Wed, 01 Jan 2025 00:00:00 +0000\n"


@pytest.fixture(scope="module")
def release_key(lab_world, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The lab release key, exported as a dom0 would hold Gentoo's."""
    keys = ensure_keys(lab_world.gnupg)
    key = tmp_path_factory.mktemp("keys") / "release.asc"
    try:
        keys.export_public(keys.release, key)
    finally:
        LocalHost().run(["gpgconf", "--homedir", str(lab_world.gnupg), "--kill", "gpg-agent"])
    yield key


def tree_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file's (inode, mtime, size): equal before and after means nothing was touched."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            found[os.path.relpath(os.path.join(dirpath, name), root)] = (
                st.st_ino, st.st_mtime_ns, st.st_size,
            )  # fmt: skip
    return found


def serve_copy(lab_world, daemon: RsyncDaemon) -> Path:
    """The lab repository copied into the daemon's `gentoo-portage` module, to modify."""
    served = daemon.modules["gentoo-portage"]
    shutil.copytree(lab_world.gentoo_repo, served, dirs_exist_ok=True)
    return served


@pytest.fixture
def synced(lab_mirror: LabMirror, release_key: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "repos" / "gentoo"
    sync_repository(lab_mirror.rsync.url("gentoo-portage"), dest, key_files=[release_key], jobs=1)
    return dest


def test_sync_verify_then_already_current(
    lab_mirror: LabMirror, release_key: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "repos" / "gentoo"
    url = lab_mirror.rsync.url("gentoo-portage")
    first = sync_repository(url, dest, key_files=[release_key], jobs=1)
    assert first.changed and first.previous is None
    assert first.remote.isoformat() == "2025-01-01T00:00:00+00:00"
    assert first.manifest is not None and first.manifest.tree == dest
    assert first.manifest.signed_by == ensure_keys(lab_mirror.layout.gnupg).release
    assert first.manifest.timestamp == first.remote
    mirror = tree_state(lab_mirror.layout.gentoo_repo)
    assert first.stats == RsyncStats(
        files=len(mirror), deleted=0,
        transferred_size=sum(s for _, _, s in mirror.values()),
        bytes_received=first.stats.bytes_received, bytes_sent=first.stats.bytes_sent,
        total_files=first.stats.total_files, total_size=sum(s for _, _, s in mirror.values()),
    )  # fmt: skip
    assert first.stats.bytes_received > 0
    assert tree_state(dest).keys() == mirror.keys()
    assert not staging_dir(dest).exists()
    before = tree_state(dest)
    again = sync_repository(url, dest, key_files=[release_key])
    assert not again.changed and again.stats is None and again.previous == again.remote
    assert tree_state(dest) == before


def test_changed_tree_fetches_only_the_change_and_keeps_local_dirs(
    lab_world, synced: Path, rsync_daemon: RsyncDaemon, release_key: Path
) -> None:
    served = serve_copy(lab_world, rsync_daemon)
    (served / "metadata" / "timestamp.chk").write_text("Thu, 02 Jan 2025 00:00:00 +0000\n")
    (synced / "distfiles").mkdir()
    (synced / "distfiles" / "kept.tar.gz").write_bytes(b"local")
    before = tree_state(synced)
    result = sync_repository(rsync_daemon.url("gentoo-portage"), synced, key_files=[release_key])
    assert result.stats is not None
    assert (result.stats.files, result.stats.deleted) == (1, 0)  # timestamp.chk alone
    after = tree_state(synced)
    assert (synced / "distfiles" / "kept.tar.gz").read_bytes() == b"local"
    # unchanged files are the same inodes: hard links, not copies
    same = [p for p in before if p != "metadata/timestamp.chk" and after[p][0] == before[p][0]]
    assert len(same) == len(before) - 1


def test_older_tree_is_refused_and_nothing_changes(
    lab_world, synced: Path, rsync_daemon: RsyncDaemon, release_key: Path
) -> None:
    served = serve_copy(lab_world, rsync_daemon)
    (served / "metadata" / "timestamp.chk").write_text("Sun, 01 Dec 2024 00:00:00 +0000\n")
    url = rsync_daemon.url("gentoo-portage")
    before = tree_state(synced)
    with pytest.raises(MirrorBehind) as caught:
        sync_repository(url, synced, key_files=[release_key])
    assert str(caught.value) == (
        f"{url}: offers 2024-12-01 00:00:00 UTC, older than 2025-01-01 00:00:00 UTC here; "
        "not going back"
    )
    assert caught.value.hint == "the mirror is behind; use another one, or wait for it"
    assert tree_state(synced) == before
    assert not staging_dir(synced).exists()


def test_tampered_file_is_named_and_the_good_tree_stays(
    lab_world, synced: Path, rsync_daemon: RsyncDaemon, release_key: Path
) -> None:
    served = serve_copy(lab_world, rsync_daemon)
    (served / "metadata" / "timestamp.chk").write_text("Thu, 02 Jan 2025 00:00:00 +0000\n")
    ebuild = next(served.glob("app-misc/hello/*.ebuild"))
    ebuild.write_text(ebuild.read_text() + 'src_install() { rm -rf "${ROOT}"/; }\n')
    (served / "app-misc" / "hello" / "files").mkdir(exist_ok=True)
    (served / "app-misc" / "hello" / "files" / "extra.patch").write_text("added\n")
    before = tree_state(synced)
    with pytest.raises(ManifestMismatchError) as caught:
        sync_repository(rsync_daemon.url("gentoo-portage"), synced, key_files=[release_key])
    tree = staging_dir(synced)
    rel = ebuild.relative_to(served)
    assert str(caught.value) == (
        f"{tree}: 2 files do not match the signed Manifests: "
        f"app-misc/hello/files/extra.patch, {rel}"
    )
    assert caught.value.hint == (
        "the mirror serves a damaged or altered tree; the tree in place was kept"
    )
    assert tree_state(synced) == before
    assert not tree.exists()  # a retry starts clean, never from bad bytes


def test_unsigned_tree_is_refused_when_a_key_is_given(
    lab_world, rsync_daemon: RsyncDaemon, release_key: Path, tmp_path: Path
) -> None:
    served = serve_copy(lab_world, rsync_daemon)
    top = served / "Manifest"
    lines = top.read_text().splitlines(keepends=True)
    body = lines[lines.index("\n") + 1 : lines.index("-----BEGIN PGP SIGNATURE-----\n")]
    top.write_text("".join(body))
    dest = tmp_path / "gentoo"
    with pytest.raises(NoSignature) as caught:
        sync_repository(rsync_daemon.url("gentoo-portage"), dest, key_files=[release_key])
    assert str(caught.value) == (
        f"{staging_dir(dest) / 'Manifest'}: is not OpenPGP-signed, and a signature is required"
    )
    assert not dest.exists() and not staging_dir(dest).exists()


def test_dead_mirror_is_a_transfer_error(tmp_path: Path, release_key: Path) -> None:
    dest = tmp_path / "gentoo"
    with pytest.raises(TransferError) as caught:
        sync_repository("rsync://127.0.0.1:1/gentoo-portage/", dest, key_files=[release_key])
    assert str(caught.value) == (
        "rsync://127.0.0.1:1/gentoo-portage/: connection failed ([Receiver] failed to connect "
        "to 127.0.0.1 (127.0.0.1): Connection refused (111))"
    )
    assert not dest.exists()


def test_one_sync_of_a_tree_at_a_time(lab_mirror: LabMirror, tmp_path: Path) -> None:
    dest = tmp_path / "gentoo"
    with sync_lock(dest), pytest.raises(TreeBusy) as caught:
        sync_repository(lab_mirror.rsync.url("gentoo-portage"), dest)
    assert str(caught.value) == f"{dest}: another sync of this tree is running"


def test_repository_on_its_own_mount_point(
    lab_mirror: LabMirror, ext4_mount: LoopMount, release_key: Path
) -> None:
    # a tree that is its own file system cannot be renamed: staged inside, copied over
    dest = ext4_mount.mountpoint
    url = lab_mirror.rsync.url("gentoo-portage")
    result = sync_repository(url, dest, key_files=[release_key], jobs=1)
    assert result.changed
    assert staging_dir(dest) == dest / ".g2d-sync" and not staging_dir(dest).exists()
    assert (
        tree_state(dest).keys() - {"lost+found"} == tree_state(lab_mirror.layout.gentoo_repo).keys()
    )


def test_replayed_old_tree_with_a_fresh_timestamp_chk_is_refused(
    lab_world, synced: Path, rsync_daemon: RsyncDaemon, release_key: Path
) -> None:
    # timestamp.chk is not signed; the Manifest's TIMESTAMP is. Pretend the tree in place
    # was signed in June (it was verified when synced; only its TIMESTAMP is read here).
    top = synced / "Manifest"
    top.write_text(
        top.read_text().replace("TIMESTAMP 2025-01-01T00:00:00Z", "TIMESTAMP 2025-06-01T00:00:00Z")
    )
    (synced / "metadata" / "timestamp.chk").write_text("Sun, 01 Jun 2025 00:00:00 +0000\n")
    served = serve_copy(lab_world, rsync_daemon)
    (served / "metadata" / "timestamp.chk").write_text("Tue, 01 Jul 2025 00:00:00 +0000\n")
    url = rsync_daemon.url("gentoo-portage")
    before = tree_state(synced)
    with pytest.raises(MirrorBehind) as caught:
        sync_repository(url, synced, key_files=[release_key])
    assert str(caught.value) == (
        f"{url}: offers 2025-01-01 00:00:00 UTC, older than 2025-06-01 00:00:00 UTC here; "
        "not going back"
    )
    assert tree_state(synced) == before


def test_sync_over_ssh_with_the_pinned_host_key(
    lab_world, sshd, release_key: Path, tmp_path: Path
) -> None:
    from g2d.hosts.ssh import SshHost

    with SshHost(
        sshd.host, port=sshd.port, user=sshd.user, key=sshd.client_key,
        host_keys=[sshd.host_public_key],
    ) as host:  # fmt: skip
        url = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{lab_world.gentoo_repo}/"
        dest = tmp_path / "gentoo"
        result = sync_repository(url, dest, key_files=[release_key], ssh=host, jobs=1)
    assert result.changed and result.manifest is not None
    assert tree_state(dest).keys() == tree_state(lab_world.gentoo_repo).keys()
