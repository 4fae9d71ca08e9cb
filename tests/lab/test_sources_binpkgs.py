"""fetch_binpkgs against the lab's binhost (real Portage-written Packages index and signed
GPKGs) over http and rsync, and the bad inputs: a package whose bytes differ from the index,
an index older than ours, a package the index no longer lists."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from g2d.core.packages_index import parse_packages
from g2d.lab.daemons import HttpServer
from g2d.lab.mirror_served import LabMirror
from g2d.sources.binpkgs import FilesRejected, fetch_binpkgs
from g2d.sources.errors import MirrorBehind, is_retryable

TAMPERED = "app-misc/hello/hello-1.0-2.gpkg.tar"


def served_copy(lab: LabMirror, http: HttpServer) -> str:
    """The lab's binhost copied under the http server's root; its URL."""
    www = http.root / "binpkgs"
    shutil.copytree(lab.layout.binpkgs, www)
    return f"{http.url}binpkgs/"


def rewrite_index(www: Path, *, drop: str | None = None, seconds: int = 0) -> None:
    """Drop one package from the index and move its TIMESTAMP, as a newer (or older) index."""
    text = (www / "Packages").read_text()
    head, *blocks = text.split("\n\n")
    blocks = [b for b in blocks if b and f"\nPATH: {drop}\n" not in f"\n{b}\n"]
    stamp = int(re.search(r"^TIMESTAMP: (\d+)$", head, re.M)[1])  # type: ignore[index]
    head = re.sub(r"^TIMESTAMP: \d+$", f"TIMESTAMP: {stamp + seconds}", head, flags=re.M)
    head = re.sub(r"^PACKAGES: \d+$", f"PACKAGES: {len(blocks)}", head, flags=re.M)
    (www / "Packages").write_text("\n\n".join([head, *blocks, ""]))


def test_http_binhost_then_nothing_to_do(lab_mirror: LabMirror, tmp_path: Path) -> None:
    url, pkgdir = f"{lab_mirror.http.url}binpkgs/", tmp_path / "binpkgs"
    index = parse_packages((lab_mirror.layout.binpkgs / "Packages").read_text())
    got = fetch_binpkgs(url, pkgdir)
    assert (got.files, got.bytes, got.checked) == (
        len(index.entries), sum(e.size or 0 for e in index.entries), ("MD5", "SHA1")
    )  # fmt: skip
    assert (pkgdir / "Packages").read_bytes() == (
        lab_mirror.layout.binpkgs / "Packages"
    ).read_bytes()
    again = fetch_binpkgs(url, pkgdir)
    assert (again.files, again.bytes, len(again.present), again.index_changed) == (
        0, 0, len(index.entries), False
    )  # fmt: skip


def test_rsync_binhost(lab_mirror: LabMirror, tmp_path: Path) -> None:
    url, pkgdir = lab_mirror.rsync.url("gentoo") + "binpkgs/", tmp_path / "binpkgs"
    index = parse_packages((lab_mirror.layout.binpkgs / "Packages").read_text())
    assert (
        fetch_binpkgs(url, pkgdir).files == len(index.entries) + 3
    )  # and Packages, Packages.gz, the lab's .json
    assert all((pkgdir / e.path).stat().st_size == e.size for e in index.entries)
    assert fetch_binpkgs(url, pkgdir).files == 0
    assert not pkgdir.with_name(".binpkgs.g2d-sync").exists()


def test_a_package_that_differs_from_the_index_is_refused(
    lab_mirror: LabMirror, http_server: HttpServer, tmp_path: Path
) -> None:
    url = served_copy(lab_mirror, http_server)
    bad = http_server.root / "binpkgs" / TAMPERED
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    bad.write_bytes(bytes(data))
    pkgdir = tmp_path / "binpkgs"
    with pytest.raises(FilesRejected) as e:
        fetch_binpkgs(url, pkgdir)
    assert str(e.value) == (
        f"{url}: 1 binary package(s) differ from the Packages index: "
        f"{url}{TAMPERED}: MD5 and SHA1 differ from the Packages index"
    )
    assert not is_retryable(e.value)
    assert not (pkgdir / "Packages").exists()  # no index names what is not here
    assert not (pkgdir / TAMPERED).exists()
    assert not list(pkgdir.rglob(".*.part"))


def test_an_older_index_is_refused(
    lab_mirror: LabMirror, http_server: HttpServer, tmp_path: Path
) -> None:
    pkgdir = tmp_path / "binpkgs"
    fetch_binpkgs(f"{lab_mirror.http.url}binpkgs/", pkgdir)
    before = (pkgdir / "Packages").read_bytes()
    url = served_copy(lab_mirror, http_server)
    rewrite_index(http_server.root / "binpkgs", seconds=-86400)
    with pytest.raises(MirrorBehind) as e:
        fetch_binpkgs(url, pkgdir)
    ours = parse_packages(before.decode()).timestamp
    assert ours is not None
    theirs = ours.timestamp() - 86400
    show = "%Y-%m-%d %H:%M:%S UTC"
    assert str(e.value) == (
        f"{url}Packages: offers {datetime.fromtimestamp(theirs, UTC).strftime(show)}, "
        f"older than {ours.strftime(show)} here; not going back"
    )
    assert (pkgdir / "Packages").read_bytes() == before


def test_a_package_no_longer_listed_is_removed(
    lab_mirror: LabMirror, http_server: HttpServer, tmp_path: Path
) -> None:
    pkgdir = tmp_path / "binpkgs"
    fetch_binpkgs(f"{lab_mirror.http.url}binpkgs/", pkgdir)
    url = served_copy(lab_mirror, http_server)
    rewrite_index(http_server.root / "binpkgs", drop=TAMPERED, seconds=60)
    got = fetch_binpkgs(url, pkgdir)
    assert (got.files, got.removed, got.index_changed) == (0, (TAMPERED,), True)
    assert not (pkgdir / TAMPERED).exists()
    assert (pkgdir / "Packages").read_bytes() == (
        http_server.root / "binpkgs/Packages"
    ).read_bytes()
