"""stage3 fetch + verify from the lab mirror over 127.0.0.1: g2d's one pass (BLAKE2B, SHA512
and the .asc signature computed while the bytes arrive) against curl -o, then sha512sum -c
and gpg --verify over the same files, one after the other.

Both sides fetch the latest file, .DIGESTS, .asc and the tarball, and check both clear
signatures and the tarball's signature. The baseline does less: SHA512 only (g2d also
BLAKE2B) and no fsync (g2d syncs the tarball before its rename). Where the time goes, for
37 MiB: gpg --verify ~0.15 s of CPU (its hashing is cheap; the rest is its I/O layers),
sha512sum ~0.2 s, BLAKE2B and SHA512 in hashlib ~0.07 s each, the fsync 0.03-0.08 s. g2d
runs the three checks on separate threads fed by one read, so gpg sets its pace.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import Comparison, compare
from g2d.lab.build import build_lab
from g2d.lab.daemons import start_http_server
from g2d.lab.keys import ensure_keys
from g2d.lab.layout import LabLayout
from g2d.sources.keyring import Keyring
from g2d.sources.stage3 import fetch_stage3

REPO = Path(__file__).resolve().parent.parent
AB = "releases/amd64/autobuilds"


def lab() -> LabLayout:
    layout = LabLayout(Path(os.environ.get("G2D_TEST_LAB") or REPO / "state" / "test-lab"))
    build_lab(layout)  # a second or so when the tests' lab is built already
    return layout


def main(repeat: int = 3) -> list[Comparison]:
    logging.getLogger("g2d").setLevel(logging.WARNING)
    layout = lab()
    latest = (layout.mirror / AB / "latest-stage3-amd64-openrc.txt").read_text()
    rel = next(line.split()[0] for line in latest.splitlines() if "/stage3-" in line)
    with tempfile.TemporaryDirectory(prefix="g2d-bench-stage3-") as tmp_name:
        tmp = Path(tmp_name)
        keys = ensure_keys(layout.gnupg)
        keys.export_public(keys.release, tmp / "release.asc")
        subprocess.run(["gpgconf", "--homedir", layout.gnupg, "--kill", "gpg-agent"], check=False)
        server = start_http_server(layout.mirror, state_dir=tmp / "httpd")
        with server, Keyring.from_key_files(tmp / "keyring", [tmp / "release.asc"]) as keyring:
            base = f"{server.url}{AB}/"
            dest = tmp / "releases"
            work = tmp / "curl"

            def g2d() -> None:
                shutil.rmtree(dest, ignore_errors=True)
                fetch_stage3(server.url + "releases/", dest, keyring=keyring)

            def baseline() -> None:
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir()
                name = rel.rsplit("/", 1)[1]
                gpg = ["gpg", "--homedir", keyring.home, "--batch", "-q", "--trust-model", "always"]
                files = {
                    "latest.txt": base + "latest-stage3-amd64-openrc.txt",
                    f"{name}.DIGESTS": base + rel + ".DIGESTS",
                    f"{name}.asc": base + rel + ".asc",
                    name: base + rel,
                }
                for out, url in files.items():
                    subprocess.run(["curl", "-sSf", "-o", work / out, url], check=True)
                quiet = {"check": True, "stderr": subprocess.DEVNULL}
                subprocess.run([*gpg, "--verify", work / "latest.txt"], **quiet)
                subprocess.run([*gpg, "--verify", work / f"{name}.DIGESTS"], **quiet)
                lines = (work / f"{name}.DIGESTS").read_text().splitlines()
                sha = [
                    lines[i + 1]
                    for i, x in enumerate(lines)
                    if x == "# SHA512 HASH" and lines[i + 1].endswith("  " + name)
                ]
                (work / "SHA512").write_text("\n".join(sha) + "\n")
                subprocess.run(["sha512sum", "-c", "--quiet", "SHA512"], cwd=work, check=True)
                subprocess.run([*gpg, "--verify", work / f"{name}.asc", work / name], **quiet)

            size = (layout.mirror / AB / rel).stat().st_size >> 20
            return [
                compare(
                    f"stage3 {size} MiB fetch+verify vs curl+sha512sum+gpg",
                    g2d,
                    baseline,
                    repeat=repeat,
                    target=1.0,
                )
            ]
