"""The steps of ``g2d lab demo`` after the lab is up, in order; ``pipeline.py`` runs them.

Each step is a flow run on the lab's Prefect server (esync, stage3, deploy, lineage,
update, install) or a piece of lab machinery (the dom0's site inputs, the btrfs home on a
loop device, the qemu boot), and returns what it made and one line saying so.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from g2d.core.lineage_tree import human_size, render_tree
from g2d.core.uri import parse_boot
from g2d.install.plan import journal_path
from g2d.lab.demo_disks import loop_disk, release_under
from g2d.lab.demo_site import HELLO, add_deploy_inputs, flip_hello_use
from g2d.lab.lab_names import Stamp, Variant, boot_marker
from g2d.lab.layout import LabLayout
from g2d.lab.loopdev import mount_loop
from g2d.lab.pipeline import DISK_MIB, HOME_MIB, DemoFailed, DemoPaths, Steps, fresh
from g2d.lab.qemu import boot_image
from g2d.lab.services import LabState
from g2d.rootfs.dom0_tree import Dom0Tree
from g2d.storage.lineage_site import open_site

PROFILE = "openrc"  # a lab profile (23.0/openrc); its stage3 variant is openrc
HOSTNAME = "g2d-demo"
ROOT_LINE = "g2d-initramfs: root "  # the initramfs's line naming the root it switched into


def pipeline(steps: Steps, layout: LabLayout, lab: LabState, paths: DemoPaths, undo: ExitStack,
             boot_timeout: float) -> None:  # fmt: skip
    from g2d.flows.deploy import deploy
    from g2d.flows.esync import esync
    from g2d.flows.install import install
    from g2d.flows.lineage import lineage
    from g2d.flows.stage3 import stage3
    from g2d.flows.update import update

    dom0 = Dom0Tree(paths.dom0)

    def sync() -> tuple[None, str]:
        rows = steps.flow("esync", esync)["parts"]
        names = ", ".join(r["part"] for r in rows)
        total = human_size(sum(r["bytes"] for r in rows))
        return None, f"{len(rows)} parts ({names}) into {paths.dom0}: {total}, all verified"

    def fetch_stage3() -> tuple[None, str]:
        row = steps.flow("stage3", stage3, arch="amd64", variant="openrc")
        return None, f"amd64 openrc from {row['mirror']}: {row['verification']}"

    def site_inputs() -> tuple[None, str]:
        if lab.ssh is None:
            raise DemoFailed("the lab's sshd is not up: its client key is the demo user's key",
                             hint="g2d lab down, then g2d lab up")  # fmt: skip
        wrote = add_deploy_inputs(layout, dom0, lab.ssh.client_key)
        return None, f"esync brings no site meta; wrote {' and '.join(wrote)}"

    def home() -> tuple[str, str]:
        released = release_under(paths.home)
        had = paths.home.is_dir() and any(paths.home.iterdir())  # a killed run's home
        fresh(paths.home)
        mount = mount_loop(paths.home, "btrfs", size_mib=HOME_MIB)
        undo.callback(mount.close)  # unmount, detach, delete: the demo's data, made each run
        root = mount.mountpoint / "sys"
        root.mkdir()
        before = "the previous one torn down" + (f" ({len(released)} released)" if released else "")
        return f"btrfs://{root}", (f"{before + '; ' if had else ''}btrfs ({HOME_MIB} MiB sparse) "
                                   f"on {mount.device}, lineage btrfs://{root}")  # fmt: skip

    steps.run("esync", sync)
    steps.run("stage3", fetch_stage3)
    steps.run("dom0 site inputs", site_inputs)
    work = steps.run("lineage home", home)

    def deploy_g1() -> tuple[dict, str]:
        out = steps.flow("deploy g1", deploy, build=PROFILE, work=work)
        merged = out["meta"].get("g2d:emerge-merged", "?")
        return out, (f"{_short(out['sealed'])} sealed ({out['stage3']}, {merged} binpkgs "
                     f"merged, kernel {out['kernel']})")  # fmt: skip

    g1 = steps.run("deploy g1", deploy_g1)

    def branch_g2() -> tuple[str, str]:
        steps.flow("branch g2", lineage, operation="branch", target=f"{work}/g1@safe")
        tree = open_site(work).load()
        g2 = max(tree.generations, key=lambda g: g.gen.number if g.gen else 0)
        parent = tree.parent(g2)
        name = Path(g2.key).name
        return g2.key, f"{name} from {_short(str(parent.ref)) if parent else '?'} ({g2.state})"

    g2 = steps.run("branch g2", branch_g2)

    def update_g2() -> tuple[None, str]:
        change = flip_hello_use(dom0)
        out = steps.flow("update g2", update, work=f"{work}/{Path(g2).name}")
        if not any(cpv.startswith(f"{HELLO}-") for cpv in out["merged"]):
            raise DemoFailed(
                f"update g2 did not take the site's change ({change}): merged "
                f"{', '.join(out['merged']) or 'nothing'}",
                hint=f"the update's report: {steps.report.ui}artifacts",
            )
        merged = ", ".join(out["merged"])
        return None, f"site's USE {change}; merged {merged}; {_short(out['sealed'])} sealed"

    steps.run("update g2", update_g2)

    def install_g2() -> tuple[None, str]:
        fresh(paths.disk, paths.qemu)
        with loop_disk(paths.disk, DISK_MIB) as device:
            boot = f"boot=btrfs://{device}:/g2"
            journal = journal_path(paths.state, parse_boot(boot))
            journal.unlink(missing_ok=True)  # a new disk: nothing of an earlier run is done
            try:
                out = steps.flow("install g2", install, work=f"{work}/g2@safe", boot=boot,
                                 lineage=True, approve=True, hostname=HOSTNAME)  # fmt: skip
            finally:  # where the install mounts the new root while it writes
                release_under(Path(f"/run/g2d/install/{journal.stem}"))
        done = out["boot"]
        return None, (f"{paths.disk.name} ({DISK_MIB} MiB sparse, via {device}): "
                      f"{', '.join(out['esp_entries'])}; default {done['default']}, fallback "
                      f"{done['fallback'] or '-'}; kernel {done['kernel']}")  # fmt: skip

    steps.run("install g2", install_g2)

    def boot() -> tuple[str, str]:
        stamp = Stamp(g1["stage3"].removeprefix("stage3-amd64-openrc-").removesuffix(".tar.xz"))
        marker = boot_marker(Variant.openrc, stamp)
        run = boot_image(paths.disk, paths.qemu, marker=marker, timeout=boot_timeout).require()
        root = next((ln.strip() for ln in run.console.splitlines() if ROOT_LINE in ln), "")
        steps.report.marker = run.line
        return None, f"UEFI boot in qemu: {root or '?'}\n    console: {run.line}"

    steps.run("boot", boot)

    def tree() -> tuple[None, str]:
        text = render_tree(open_site(work).load(), sizes=True)
        steps.report.tree = text
        return None, f"g2d lineage list {work}\n{text.rstrip()}"

    steps.run("lineage tree", tree)


def _short(ref: str) -> str:
    """``.../sys/g1@g1-2026...`` as ``g1@g1-2026...``: the lineage's path is said once."""
    return ref.rpartition("/")[2]
