"""A g2d.toml for esync from the running lab: its mirrors and its release key.

``g2d lab up`` can write it beside the lab (``<lab>/g2d.toml``); ``G2D_CONFIG=<lab>/g2d.toml
g2d esync`` then syncs a dom0 tree from the lab as it would from Gentoo's mirrors. The lab's
release public key is exported to ``<lab>/release.asc`` (a real dom0 holds Gentoo's). Trees
go by rsync (repos, kernels, from the lab's rsync daemon) or file:// (the site's packages,
patchfiles, profiles and meta, which no daemon serves); files by http.

``python -m g2d.lab.esync_config`` writes both for the lab of the settings and prints the
path of the g2d.toml.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from g2d.lab.keys import ensure_keys
from g2d.lab.layout import LabLayout
from g2d.lab.services import LabState, Service, read_state

CONFIG_NAME = "g2d.toml"
RELEASE_KEY = "release.asc"
VARIANTS = ("openrc", "systemd")  # the lab's stage3 variants


def lab_mirrors(layout: LabLayout, state: LabState) -> dict[str, list[str]]:
    """Every part's mirror URL in the running lab."""
    http, rsync = state.get(Service.http), state.get(Service.rsync)
    found: dict[str, list[str]] = {}
    if http:
        for part in ("releases", "snapshots", "distfiles", "binpkgs"):
            found[part] = [f"{http.url}{part}/"]
    if rsync:
        found["repos"] = [f"{rsync.url}gentoo-portage/"]
        found["kernels"] = [f"{rsync.url}gentoo/kernels/"]
    for part in ("packages", "patchfiles", "meta"):
        if (layout.site / part).is_dir():
            found[part] = [(layout.site / part).as_uri() + "/"]
    return found


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def lab_esync_toml(layout: LabLayout, state: LabState, release_key: Path) -> str:
    lines = ["# esync from the g2d lab (written by g2d lab up)", "[mirrors]"]
    lines += [f"{part} = {_toml_list(urls)}" for part, urls in lab_mirrors(layout, state).items()]
    lines += ["", "[esync]", f"stage3_variants = {_toml_list(list(VARIANTS))}",
              f"release_keys = {_toml_list([os.fspath(release_key)])}"]  # fmt: skip
    if layout.profiles.is_dir():
        lines.append(f"profiles = {_toml_list([layout.profiles.as_uri() + '/'])}")
    return "\n".join(lines) + "\n"


def write_lab_config(layout: LabLayout, state: LabState) -> Path:
    """Export the lab's release key and write ``<lab>/g2d.toml``; its path."""
    keys = ensure_keys(layout.gnupg)
    key = layout.root / RELEASE_KEY
    keys.export_public(keys.release, key)
    config = layout.root / CONFIG_NAME
    tmp = config.with_name(f".{CONFIG_NAME}.new")
    tmp.write_text(lab_esync_toml(layout, state, key))
    os.replace(tmp, config)
    return config


def main() -> None:
    from g2d.core.errors import G2dUserError
    from g2d.hosts.local import LocalHost

    layout = LabLayout.from_settings()
    state = read_state(layout)
    if state is None:
        raise SystemExit(f"error: the lab in {layout.root} is not up (run g2d lab up)")
    try:
        print(write_lab_config(layout, state))
    except G2dUserError as e:
        raise SystemExit(f"error: {e}") from None
    finally:  # python-gnupg started an agent for the lab's keyring
        LocalHost().run(["gpgconf", "--homedir", layout.gnupg, "--kill", "gpg-agent"], check=False)


if __name__ == "__main__":
    main()
