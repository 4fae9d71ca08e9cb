"""200 small distfiles from a GLEP 75 mirror on 127.0.0.1: g2d's bounded concurrent fetch
(8 workers, each file checked against its BLAKE2B and SHA512, made durable by one syncfs
before the renames) against a sequential `wget` of the same files, which checks nothing.

The issue asks for "a sequential wget"; it can mean two things, and both are measured:
- one `wget -i urls.txt`: one process that would reuse its connection where the server
  allows it (the stronger baseline);
- 200 `wget URL` processes, one after the other (what a shell loop does).

And on two servers:
- the lab's http server as it is (g2d.lab.httpd: HTTP/1.0, the connection closed after
  every response, Python's default listen backlog of 5);
- the same server code speaking HTTP/1.1 with keep-alive and TCP_NODELAY and a backlog of
  128, as real mirrors do (nginx: keep-alive, tcp_nodelay, backlog 511). Only there can
  `wget -i` reuse its connection (and g2d its 8), so this is the fair test of "one
  connection for everything" against "several at once".

The lab server's two quirks cost each side about 1 s when they strike, at random: with 8
clients connecting at once its 5-deep accept queue overflows now and then (the kernel drops
the SYN, the client sends it again after 1 s); `wget -i` sends its next request on a
connection the server is about to close (it announced no "Connection: close"), gets EOF
and waits 1 s before it tries again. The keep-alive server has neither.
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import Comparison, compare
from g2d.core.digests import Algo, FileDigests
from g2d.lab.daemons import start_http_server
from g2d.lab.distfiles import hashed_path, publish_distfiles
from g2d.lab.process import port_open, spawn
from g2d.sources.distfiles import fetch_distfiles

COUNT = 200
WORKERS = 8
REPO = Path(__file__).resolve().parent.parent

# the lab's range-serving handler, as a real mirror's server would be configured
_KEEPALIVE_SERVER = """
import socketserver, sys
from g2d.lab import httpd
socketserver.TCPServer.request_queue_size = 128
httpd.RangeRequestHandler.protocol_version = "HTTP/1.1"
httpd.RangeRequestHandler.disable_nagle_algorithm = True
httpd.main(sys.argv[1:])
"""


@contextmanager
def keepalive_server(root: Path, state: Path) -> Iterator[str]:
    """The lab handler with HTTP/1.1 keep-alive, TCP_NODELAY and a backlog of 128; its URL."""
    state.mkdir(parents=True)
    port_file = state / "port"
    argv = [sys.executable, "-c", _KEEPALIVE_SERVER, "--port-file", port_file, root]
    daemon = spawn("keep-alive http server", argv, log=state / "log", cwd=REPO)
    try:
        for _ in range(200):
            if port_file.exists() and port_open(port := int(port_file.read_text())):
                break
            if not daemon.alive():
                raise RuntimeError(f"the keep-alive server exited:\n{daemon.log_tail()}")
            time.sleep(0.05)
        else:
            raise RuntimeError("the keep-alive server did not start")
        yield f"http://127.0.0.1:{port}/"
    finally:
        daemon.stop()


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
    results: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="g2d-bench-distfiles-") as tmp_name:
        tmp = Path(tmp_name)
        publish_distfiles(tmp / "www" / "distfiles", files)
        g2d_dir, wget_dir = tmp / "g2d", tmp / "wget"

        def runs(server_url: str) -> tuple[Callable[[], None], ...]:
            mirror = server_url + "distfiles/"
            urls = [f"{mirror}{hashed_path(n)}" for n in files]
            url_file = tmp / "urls.txt"
            url_file.write_text("".join(u + "\n" for u in urls))
            wget = ["wget", "-q", "--no-proxy", "-x", "-nH", "-P", wget_dir]

            def g2d() -> None:
                shutil.rmtree(g2d_dir, ignore_errors=True)
                result = fetch_distfiles(mirror, g2d_dir, specs, workers=WORKERS)
                assert len(result.fetched) == COUNT, result.failed

            def wget_list() -> None:
                shutil.rmtree(wget_dir, ignore_errors=True)
                subprocess.run([*wget, "-i", url_file], check=True)

            def wget_each() -> None:
                shutil.rmtree(wget_dir, ignore_errors=True)
                for url in urls:
                    subprocess.run([*wget, url], check=True)

            return g2d, wget_list, wget_each

        with start_http_server(tmp / "www", state_dir=tmp / "httpd") as server:
            g2d, wget_list, wget_each = runs(server.url)
            name = f"{COUNT} distfiles, {WORKERS} verified"
            results.append(compare(f"{name} vs wget -i (lab)", g2d, wget_list, repeat=repeat,
                                   target=1.0))  # fmt: skip
            results.append(compare(f"{name} vs {COUNT} wget (lab)", g2d, wget_each, repeat=repeat,
                                   target=1.0))  # fmt: skip
        with keepalive_server(tmp / "www", tmp / "keepalive") as url:
            g2d, wget_list, _ = runs(url)
            results.append(compare(f"{name} vs wget -i (keep-alive)", g2d, wget_list,
                                   repeat=repeat, target=1.0))  # fmt: skip
    return results
