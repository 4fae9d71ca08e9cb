"""Checks of the lab's published files with the formats' own rules and gpg itself.

Each check returns what is wrong as plain sentences (an empty list means sound), so
`g2d.lab.status` can turn them into findings. Signatures are verified by `gpg --verify`
against the lab's keyring; a clear-signed file's payload is taken from gpg's ``--output``,
never by stripping the armour ourselves.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import tempfile
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from g2d.core.packages_index import read_blocks
from g2d.hosts.local import LocalHost

CLEARSIGNED = b"-----BEGIN PGP SIGNED MESSAGE-----"
DETACHED = b"-----BEGIN PGP SIGNATURE-----"
DETACHED_SUFFIXES = (".asc", ".gpgsig", ".sig")
# the names checksum files use for hashlib's algorithms
ALGORITHMS = {"BLAKE2B": "blake2b", "SHA512": "sha512", "SHA256": "sha256", "SHA1": "sha1",
              "MD5": "md5"}  # fmt: skip
CHECKSUM_SUFFIXES = {".DIGESTS": "", ".sha256": "SHA256", ".md5sum": "MD5", ".sha512": "SHA512"}
_HEADER = re.compile(r"#\s*(\w+)\s+HASH\s*")
_BSD = re.compile(r"(\w+) \((.+)\) = ([0-9a-fA-F]+)")
_LINUX = re.compile(r"([0-9a-fA-F]+) [ *](.+)")
GPG_TIMEOUT = 60.0


@dataclass(frozen=True)
class Signature:
    """What gpg said about one signature."""

    good: bool
    problem: str = ""  # why it is not good, as a sentence
    signer: str = ""  # primary key fingerprint of a good signature
    payload: bytes = b""  # the signed text of a clear-signed file


def signature_kind(path: Path) -> str | None:
    """ "clearsigned", "detached" or None, from the file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(CLEARSIGNED))
    except OSError:
        return None
    if head.startswith(CLEARSIGNED):
        return "clearsigned"
    if head.startswith(DETACHED) and path.suffix in DETACHED_SUFFIXES:
        return "detached"
    return None


def verify(
    gnupghome: Path, signature: Path, data: Path | None = None, *, keys: Collection[str] = ()
) -> Signature:
    """`gpg --verify` a detached (`data` given) or clear-signed signature.

    `keys`: the fingerprints allowed to sign; empty allows any key in the keyring.
    """
    with tempfile.TemporaryDirectory(prefix="g2d-verify-") as tmp:
        payload = Path(tmp, "payload")
        argv = [
            "gpg", "--homedir", gnupghome,
            "--batch", "--no-tty", "--no-auto-check-trustdb",
            "--status-fd", "1",
            *(["--output", payload] if data is None else []),
            "--verify", signature,
            *([data] if data is not None else []),
        ]  # fmt: skip
        done = LocalHost().run(argv, check=False, timeout=GPG_TIMEOUT)
        text = payload.read_bytes() if payload.exists() else b""
    status = {}
    for line in done.lines():
        if line.startswith("[GNUPG:] "):
            word, _, rest = line[9:].partition(" ")
            status.setdefault(word, rest)
    if "VALIDSIG" in status and "GOODSIG" in status and done.ok:
        signer = status["VALIDSIG"].split()[-1]
        if keys and signer not in keys:
            return Signature(False, f"signed by {signer}, which is not a lab key", signer)
        return Signature(True, signer=signer, payload=text)
    return Signature(False, _why_bad(status, done.stderr))


def _why_bad(status: Mapping[str, str], stderr: str) -> str:
    if "BADSIG" in status:
        who = status["BADSIG"].split(" ", 1)[-1]
        return f"bad signature from {who}: the signed bytes were changed"
    if "EXPKEYSIG" in status:
        return f"signed by an expired key: {status['EXPKEYSIG'].split(' ', 1)[-1]}"
    if "REVKEYSIG" in status:
        return f"signed by a revoked key: {status['REVKEYSIG'].split(' ', 1)[-1]}"
    if "NO_PUBKEY" in status:
        return f"signed by key {status['NO_PUBKEY']}, which is not in the lab keyring"
    if "NODATA" in status or "BADARMOR" in status:
        return "holds no readable OpenPGP signature"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no status from gpg"
    return f"gpg could not verify it: {last}"


def parse_checksums(text: str, default_algo: str = "") -> dict[tuple[str, str], str]:
    """(file name, ALGO) -> hex digest, from a .DIGESTS, .sha256 or .md5sum payload.

    The `# <ALGO> HASH` line names the algorithm of the lines after it (catalyst's block
    order varies, so nothing depends on position); BSD-style lines name their own.
    """
    found: dict[tuple[str, str], str] = {}
    algo = default_algo
    for line in text.splitlines():
        header = _HEADER.fullmatch(line)
        if header:
            algo = header[1].upper()
            continue
        if not line.strip() or line.startswith("#"):
            continue
        bsd = _BSD.fullmatch(line)
        if bsd:
            found[(bsd[2], bsd[1].upper())] = bsd[3].lower()
            continue
        linux = _LINUX.fullmatch(line)
        if linux and algo:
            found[(linux[2], algo)] = linux[1].lower()
    return found


def file_digests(path: Path, algos: Iterable[str]) -> dict[str, str]:
    """Hex digests of `path` in one read, for the supported ALGO names among `algos`."""
    hashers = {a: hashlib.new(ALGORITHMS[a]) for a in set(algos) if a in ALGORITHMS}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def check_checksums(listing: Path, payload: str) -> list[tuple[str, str]]:
    """(file name, problem) for the files a checksum file lists (they sit beside it)."""
    default = next((a for s, a in CHECKSUM_SUFFIXES.items() if listing.name.endswith(s)), "")
    wanted = parse_checksums(payload, default)
    if not wanted:
        return [(listing.name, f"{listing.name} lists no checksums")]
    problems = []
    for name in sorted({n for n, _ in wanted}):
        target = listing.parent / name
        if not target.is_file():
            problems.append((name, f"{name} is missing, yet {listing.name} lists it"))
            continue
        algos = [a for (n, a) in wanted if n == name]
        have = file_digests(target, algos)
        for algo in sorted(a for a in algos if a in have and have[a] != wanted[(name, a)]):
            problems.append((name, f"{name}: {algo} differs from {listing.name}"))
    return problems


def read_packages(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The header and the entries of a binhost `Packages` index, as portage reads it (the
    raw fields: ``check_packages`` reports every problem, where ``parse_packages`` stops)."""
    blocks = read_blocks(text)
    if not blocks:
        raise ValueError("the index is empty")
    header, *entries = blocks
    return header, [e for e in entries if "CPV" in e]


def check_packages(index: Path) -> list[str]:
    """Problems with a `Packages` index and the binpkgs it names (sizes, MD5/SHA1)."""
    try:
        header, entries = read_packages(index.read_text())
    except (UnicodeDecodeError, ValueError) as e:
        return [f"unreadable: {e}"]
    problems = []
    if "VERSION" not in header:
        problems.append("its header has no VERSION (clients refuse such an index)")
    if header.get("PACKAGES") != str(len(entries)):
        problems.append(f"PACKAGES says {header.get('PACKAGES')}, it has {len(entries)} entries")
    for entry in entries:
        rel = entry.get("PATH") or f"{entry['CPV']}.tbz2"
        binpkg = index.parent / rel
        if not binpkg.is_file():
            problems.append(f"{rel} ({entry['CPV']}) is missing")
            continue
        if entry.get("SIZE") and int(entry["SIZE"]) != binpkg.stat().st_size:
            problems.append(f"{rel}: {binpkg.stat().st_size} bytes, the index says {entry['SIZE']}")
        algos = [a for a in ("MD5", "SHA1") if a in entry]
        have = file_digests(binpkg, algos)
        problems += [f"{rel}: {a} differs from the index" for a in algos if have[a] != entry[a]]
    return problems


def check_gpkg(path: Path, gnupghome: Path, keys: Collection[str] = ()) -> list[str]:
    """Problems with a GPKG binpkg: its Manifest signature, member digests, member .sigs."""
    try:
        with tarfile.open(path, "r:") as outer:
            members = {
                m.name.split("/", 1)[-1]: outer.extractfile(m).read()  # type: ignore[union-attr]
                for m in outer.getmembers()
                if m.isfile()
            }
    except (tarfile.TarError, OSError) as e:
        return [f"not a readable GPKG: {e}"]
    if "gpkg-1" not in members or "Manifest" not in members:
        return ["not a GPKG: gpkg-1 or Manifest is missing"]
    problems = []
    with tempfile.TemporaryDirectory(prefix="g2d-gpkg-") as tmp:

        def saved(name: str) -> Path:
            out = Path(tmp, name.replace("/", "_"))
            out.write_bytes(members[name])
            return out

        manifest = members["Manifest"].decode(errors="replace")
        if members["Manifest"].startswith(CLEARSIGNED):
            sig = verify(gnupghome, saved("Manifest"), keys=keys)
            if not sig.good:
                problems.append(f"Manifest: {sig.problem}")
            manifest = sig.payload.decode(errors="replace")
        for name in sorted(n for n in members if n.endswith(".sig")):
            data = name.removesuffix(".sig")
            if data not in members:
                problems.append(f"{name} signs {data}, which is missing")
                continue
            sig = verify(gnupghome, saved(name), saved(data), keys=keys)
            if not sig.good:
                problems.append(f"{name}: {sig.problem}")
    for line in manifest.splitlines():
        words = line.split()
        if len(words) < 3 or words[0] != "DATA":
            continue
        name, size, pairs = (
            words[1],
            int(words[2]),
            dict(zip(words[3::2], words[4::2], strict=False)),
        )
        if name not in members:
            problems.append(f"{name} is missing, yet its Manifest lists it")
        elif len(members[name]) != size:
            problems.append(f"{name}: {len(members[name])} bytes, its Manifest says {size}")
        else:
            for algo in sorted(a for a in pairs if a in ALGORITHMS):
                if hashlib.new(ALGORITHMS[algo], members[name]).hexdigest() != pairs[algo].lower():
                    problems.append(f"{name}: {algo} differs from its Manifest")
    return problems
