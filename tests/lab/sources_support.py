"""Shared by the tests of g2d.sources: the verifying keyring, an expired key, and a tiny http
server that cuts a transfer short.

The cutting server is the one fake here: no real server can be made to die after exactly N
bytes on demand. It is the lab's own range-serving handler (g2d.lab.httpd) with the body
copy stopped early and the connection dropped, on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

from g2d.hosts.local import LocalHost
from g2d.lab.httpd import RangeRequestHandler
from g2d.lab.keys import LabKeys, ensure_keys
from g2d.lab.layout import LabLayout
from g2d.sources.keyring import Keyring

sh = LocalHost()


def kill_agent(home: Path) -> None:
    sh.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)


@contextmanager
def release_keyring(lab: LabLayout, where: Path) -> Iterator[tuple[LabKeys, Keyring]]:
    """The lab keys, and a keyring in ``where`` holding only the lab release public key
    (as a dom0 holds Gentoo's); every gpg-agent started for either is stopped after."""
    keys = ensure_keys(lab.gnupg)
    try:
        keys.export_public(keys.release, where / "release.asc")
        with Keyring.from_key_files(where / "keyring", [where / "release.asc"]) as keyring:
            yield keys, keyring
    finally:
        kill_agent(lab.gnupg)


@dataclass(frozen=True)
class ExpiredKey:
    home: Path
    fingerprint: str
    uid: str = "g2d test expired <expired@lab.g2d.invalid>"

    def clearsign(self, text: str) -> bytes:
        """``text`` clear-signed in 2020, while the key was still valid (it expired a day later)."""
        return sh.run(
            ["gpg", "--homedir", self.home, "--batch", "--faked-system-time", "20200101T010000",
             "--local-user", self.fingerprint, "--clearsign"],
            stdin=text.encode(),
        ).out  # fmt: skip

    def export(self, dst: Path) -> Path:
        sh.run(["gpg", "--homedir", self.home, "--armor", "--export", self.fingerprint], stdout=dst)
        return dst


@contextmanager
def expired_key(home: Path) -> Iterator[ExpiredKey]:
    """An ed25519 key made (by a faked clock) on 2020-01-01, valid for one day."""
    home.mkdir(mode=0o700)
    uid = ExpiredKey.__dataclass_fields__["uid"].default
    try:
        sh.run(
            ["gpg", "--homedir", home, "--batch", "--faked-system-time", "20200101T000000",
             "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "1d"],
        )  # fmt: skip
        listing = sh.run(["gpg", "--homedir", home, "--with-colons", "--list-keys"]).stdout
        fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        yield ExpiredKey(home, fpr)
    finally:
        kill_agent(home)


@dataclass
class CuttingServer:
    """Serves ``root`` with byte ranges; the next ``cuts`` GETs of ``path`` stop after
    ``after`` body bytes and drop the connection, as a server dying mid-transfer would."""

    root: Path
    path: str = ""
    after: int = 0
    cuts: int = 0
    ranges: list[str | None] = field(default_factory=list)  # Range header of each GET of path
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def cut(self, path: str, after: int, times: int = 1) -> None:
        self.path, self.after, self.cuts = path, after, times


@contextmanager
def cutting_server(root: Path) -> Iterator[CuttingServer]:
    state = CuttingServer(root)

    class Handler(RangeRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/" + state.path:
                state.ranges.append(self.headers.get("Range"))
            super().do_GET()

        def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
            if self.path != "/" + state.path or state.cuts <= 0:
                shutil.copyfileobj(source, outputfile)
                return
            state.cuts -= 1
            outputfile.write(source.read(state.after))
            outputfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the server "dies" here
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=os.fspath(root)))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
