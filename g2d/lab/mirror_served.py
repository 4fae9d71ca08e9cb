"""The built lab's mirror tree served on 127.0.0.1 by an http and an rsync daemon.

What the test fixture ``lab_mirror`` yields (and what a test names in its signature): a
plain value, importable from every test tier.
"""

from __future__ import annotations

from dataclasses import dataclass

from g2d.lab.daemons import HttpServer, RsyncDaemon
from g2d.lab.layout import LabLayout


@dataclass(frozen=True)
class LabMirror:
    """The built lab's mirror tree served on 127.0.0.1, as a dom0's upstream would be."""

    layout: LabLayout
    http: HttpServer
    rsync: RsyncDaemon

    def mirrors(self) -> dict[str, list[str]]:
        """g2d's `mirrors` setting pointing at this lab (same shape as `LabState.mirrors`)."""
        found = {
            part: [f"{self.http.url}{part}/"]
            for part in ("releases", "snapshots", "distfiles", "binpkgs", "kernels")
        }
        found["repos"] = [self.rsync.url("gentoo-portage")]
        return found
