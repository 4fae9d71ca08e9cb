"""What btrfs can do on a host, asked from the tool and the kernel, never assumed."""

from __future__ import annotations

from g2d.hosts.base import Host
from g2d.storage.base import Caps


def probe_btrfs(host: Host) -> Caps:
    version = host.run(["btrfs", "--version"]).stdout.strip()
    send_help = host.run(["btrfs", "send", "--help"], check=False).stdout
    features = host.run(["ls", "/sys/fs/btrfs/features"], check=False).stdout.split()
    stream = host.run(["cat", "/sys/fs/btrfs/features/send_stream_version"], check=False)
    kernel_proto = int(stream.stdout.strip()) if stream.ok and stream.stdout.strip() else 1
    proto = min(kernel_proto, 2) if "--proto" in send_help else 1
    compressed = proto >= 2 and "--compressed-data" in send_help
    return Caps(
        version=version,
        compression=("zlib", *(c for c in ("lzo", "zstd") if f"compress_{c}" in features)),
        list_holds=True,  # holds are ours (xattrs on the snapshot's home), so always listed
        incremental_send=True,
        extra={
            "send_proto": proto,
            "compressed_send": compressed,
            "kernel_send_proto": kernel_proto,
        },
    )
