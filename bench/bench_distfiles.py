"""200 small distfiles from a GLEP 75 mirror on 127.0.0.1: g2d's bounded concurrent fetch
(each file checked against its BLAKE2B and SHA512) against one sequential `wget -i`."""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import Comparison, compare
from g2d.core.digests import Algo, FileDigests
from g2d.lab.daemons import start_http_server
from g2d.lab.distfiles import hashed_path, publish_distfiles
from g2d.sources.distfiles import fetch_distfiles

COUNT = 200


def main(repeat: int = 3) -> list[Comparison]:
    logging.getLogger("g2d").setLevel(logging.WARNING)
    rng = random.Random(75)
    files = {
        f"pkg{i:03d}-1.0.tar.gz": rng.randbytes(rng.randint(4 << 10, 64 << 10))
        for i in range(COUNT)
    }
    specs = [
        FileDigests(
            name,
            {
                Algo.blake2b: hashlib.blake2b(data).hexdigest(),
                Algo.sha512: hashlib.sha512(data).hexdigest(),
            },
            len(data),
        )
        for name, data in files.items()
    ]
    with tempfile.TemporaryDirectory(prefix="g2d-bench-distfiles-") as tmp_name:
        tmp = Path(tmp_name)
        publish_distfiles(tmp / "www" / "distfiles", files)
        server = start_http_server(tmp / "www", state_dir=tmp / "httpd")
        with server:
            mirror = server.url + "distfiles/"
            urls = tmp / "urls.txt"
            urls.write_text("".join(f"{mirror}{hashed_path(n)}\n" for n in files))
            g2d_dir, wget_dir = tmp / "g2d", tmp / "wget"

            def g2d() -> None:
                shutil.rmtree(g2d_dir, ignore_errors=True)
                result = fetch_distfiles(mirror, g2d_dir, specs, workers=8)
                assert len(result.fetched) == COUNT, result.failed

            def baseline() -> None:
                shutil.rmtree(wget_dir, ignore_errors=True)
                subprocess.run(
                    ["wget", "-q", "--no-proxy", "-x", "-nH", "-P", wget_dir, "-i", urls],
                    check=True,
                )

            return [
                compare(
                    f"{COUNT} distfiles: 8 concurrent, verified vs wget -i",
                    g2d,
                    baseline,
                    repeat=repeat,
                    target=1.0,
                )
            ]
