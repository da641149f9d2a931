"""``make photos``: the training photographs, gathered from Debian packages into one folder.

The photos (real scene photographs under free licences, chosen by looking at every image of the
wallpaper, game and education packages checked; see ``candidates.tsv`` beside this file) are
listed with their package, version, path in the package, licence, size and sha256 in
``data/photos_manifest.tsv``. This script downloads exactly those package versions with
``apt-get download`` through a private apt configuration per suite (the host's ``/etc/apt`` is never
read for packages nor written), unpacks only the members it needs, cuts out the photos that live
inside containers (Enlightenment ``.edj`` files, Qt ``.rcc`` resource bundles) byte for byte,
checks every sha256 against the manifest and writes the files atomically. A rerun whose output
already matches the manifest downloads nothing.

    get_debian_photos.py OUT                    photos of the manifest -> OUT (about 550 MB download)
    get_debian_photos.py OUT --update-manifest  rebuild the manifest from candidates.tsv and the
                                                mirror's current versions (licences: debian/copyright)

Only the Python standard library is needed (``--update-manifest`` also needs Pillow for the sizes).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CANDIDATES = HERE / "candidates.tsv"
MANIFEST = REPO / "data" / "photos_manifest.tsv"
COLUMNS = (
    "file",
    "package",
    "version",
    "suite",
    "member",
    "licence",
    "licence_basis",
    "size_px",
    "bytes",
    "sha256",
)
SUITES = ("bookworm", "trixie")
# They hold the evaluation photos (benchmarks / the README's gate): never trained on.
EXCLUDED = ("lomiri-wallpapers*", "palapeli-data", "sddm-theme-maldives", "plasma-workspace-wallpapers")
EET_MAGIC = 0x1EE70F42
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class PhotoError(Exception):
    """A one-line reason the photos could not be gathered."""


def is_excluded(package: str) -> bool:
    return any(fnmatch.fnmatchcase(package, pattern) for pattern in EXCLUDED)


def read_tsv(path: Path) -> list[dict[str, str]]:
    lines = [line for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))


def write_tsv(path: Path, rows: list[dict[str, str]], columns=COLUMNS) -> None:
    text = "\t".join(columns) + "\n" + "".join("\t".join(r[c] for c in columns) + "\n" for r in rows)
    tmp = Path(f"{path}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- containers ------------------------------------------------------------------------------


def eet_largest_jpeg(data: bytes) -> bytes:
    """The largest uncompressed JPEG among an Enlightenment EET file's ``edje/images/`` entries (the
    wallpaper at its full size; the smaller ones are its previews)."""
    magic, count, _ = struct.unpack(">III", data[:12])
    if magic != EET_MAGIC:
        raise PhotoError("not an EET (.edj) file")
    best = b""
    for i in range(count):
        off, size, _, name_off, name_size, flags = struct.unpack(">6I", data[12 + 24 * i : 36 + 24 * i])
        blob = data[off : off + size]
        name = data[name_off : name_off + name_size]
        if (
            name.startswith(b"edje/images/")
            and flags == 0
            and blob[:2] == b"\xff\xd8"
            and len(blob) > len(best)
        ):
            best = blob
    if not best:
        raise PhotoError("no JPEG image in the EET file")
    return best


def rcc_entries(data: bytes) -> dict[str, tuple[int, bytes]]:
    """{path: (flags, stored bytes)} of a Qt binary resource file (``rcc -binary``, format 1-3)."""
    if data[:4] != b"qres":
        raise PhotoError("not a Qt resource (.rcc) file")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    node = 22 if version >= 2 else 14

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", data[names + offset : names + offset + 2])
        return data[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    out: dict[str, tuple[int, bytes]] = {}
    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        p = tree + index * node
        name_off, flags = struct.unpack(">IH", data[p : p + 6])
        here = f"{prefix}{name(name_off)}" if index else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", data[p + 6 : p + 14])
            stack.extend((c, f"{here}/" if index else "") for c in range(first, first + count))
        else:
            (offset,) = struct.unpack(">I", data[p + 10 : p + 14])
            start = payload + offset
            (length,) = struct.unpack(">I", data[start : start + 4])
            out[here] = (flags, data[start + 4 : start + 4 + length])
    return out


def rcc_file(data: bytes, path: str) -> bytes:
    entries = rcc_entries(data)
    if path not in entries:
        raise PhotoError(f"{path} is not in the resource file")
    flags, blob = entries[path]
    if flags & 4:
        raise PhotoError(f"{path} is zstd-compressed in the resource file (not supported)")
    return zlib.decompress(blob[4:]) if flags & 1 else blob  # qCompress: 4-byte length + zlib


def member_bytes(root: Path, member: str) -> bytes:
    """The bytes a manifest ``member`` names under an unpacked package ``root``."""
    path, _, inner = member.partition("#")
    try:
        data = (root / path).read_bytes()
    except OSError as e:
        raise PhotoError(f"{path}: {e.strerror}") from None
    if not inner:
        return data
    if inner == "eet-largest-jpeg":
        return eet_largest_jpeg(data)
    if inner.startswith("rcc:"):
        return rcc_file(data, inner[4:])
    raise PhotoError(f"unknown container in member {member!r}")


# --- debian/copyright ------------------------------------------------------------------------


def parse_copyright(text: str) -> list[tuple[list[str], str, str]] | None:
    """[(Files patterns, licence name, first Copyright line)] of a machine-readable (DEP-5)
    debian/copyright, in file order; ``None`` for a free-form one."""
    if not text.startswith("Format:"):
        return None
    out = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Files" in fields and "License" in fields:
            patterns = fields["Files"].split()
            holder = fields.get("Copyright", "").strip().splitlines()
            out.append(
                (patterns, fields["License"].splitlines()[0].strip(), holder[0] if holder else "")
            )
    return out


def licence_for(
    paragraphs: list[tuple[list[str], str, str]], source_path: str
) -> tuple[str, str] | None:
    """(licence, basis) of the last paragraph whose Files patterns match ``source_path`` (DEP-5: the
    last match wins, ``*`` also matches ``/``). A file that only ``Files: *`` matches is tried under
    its other names (upstream converted e.g. ``kangaroo.jpg`` to ``kangaroo.webp``, the copyright
    file still names the JPEG)."""

    def match(path: str):
        found = None
        for patterns, licence, holder in paragraphs:
            hit = next((p for p in patterns if fnmatch.fnmatchcase(path, p)), None)
            if hit is not None:
                found = (licence, holder, hit)
        return found

    found = match(source_path)
    if found is not None and found[2] == "*":
        stem = source_path.rsplit(".", 1)[0]
        for ext in (".jpg", ".jpeg", ".png", ".JPG"):
            other = match(stem + ext)
            if other is not None and other[2] != "*":
                licence, holder, hit = other
                note = "stanza for the same name as .jpg: upstream converted its images to WebP"
                return licence, f"Files: {hit} ({holder}; {note})"
    if found is None:
        return None
    licence, holder, hit = found
    return licence, f"Files: {hit} ({holder})"


# --- apt -------------------------------------------------------------------------------------


def host_mirror() -> str:
    """The Debian mirror the host's own apt sources name (only read, for its address)."""
    text = ""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text += path.read_text() + "\n"
        except OSError:
            pass
    m = re.search(r"^(?:URIs:|deb)(?: \[[^]]*\])? *([a-z]+://\S+/debian)/?(?:\s|$)", text, re.M)
    return m.group(1) if m else DEFAULT_MIRROR


class Apt:
    """One private apt configuration per suite under ``work`` (lists, cache, sources of its own)."""

    def __init__(self, work: Path, mirror: str):
        self.work, self.mirror, self.ready = work, mirror, set()

    def _env(self, suite: str) -> dict[str, str]:
        d = self.work / f"apt-{suite}"
        if suite not in self.ready:
            for sub in ("lists/partial", "cache/archives/partial"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
            (d / "sources.list").write_text(f"deb [signed-by={keyring}] {self.mirror} {suite} main\n")
            (d / "apt.conf").write_text(
                f'Dir::Etc::SourceList "{d}/sources.list";\nDir::Etc::SourceParts "/dev/null";\n'
                f'Dir::State::Lists "{d}/lists";\nDir::Cache "{d}/cache";\n'
            )
        env = {**os.environ, "APT_CONFIG": str(d / "apt.conf")}
        if suite not in self.ready:
            print(f"photos: apt-get update ({suite}, {self.mirror})", flush=True)
            run(["apt-get", "-qq", "update"], env=env)
            self.ready.add(suite)
        return env

    def version(self, suite: str, package: str) -> str:
        out = run(["apt-cache", "show", "--no-all-versions", package], env=self._env(suite))
        m = re.search(r"^Version: (\S+)", out, re.M)
        if not m:
            raise PhotoError(f"{package} is not in Debian {suite}")
        return m.group(1)

    def download(self, suite: str, package: str, version: str, dest: Path) -> Path:
        env = self._env(suite)
        try:
            run(["apt-get", "-qq", "download", f"{package}={version}"], env=env, cwd=dest)
        except PhotoError as e:
            raise PhotoError(
                f"{package} {version} is no longer on the {suite} mirror ({e}): "
                "run with --update-manifest and review the changes"
            ) from None
        debs = sorted(dest.glob(f"{package}_*.deb"))
        if not debs:
            raise PhotoError(f"apt-get download {package}={version} left no .deb")
        return debs[-1]


def run(cmd: list[str], **kw) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        lines = (p.stderr or p.stdout).strip().splitlines()
        raise PhotoError(f"{' '.join(cmd[:3])} failed: {lines[-1] if lines else p.returncode}")
    return p.stdout


def unpack(deb: Path, dest: Path, paths: list[str]) -> None:
    """Only ``paths`` (and nothing else) of the package's data, under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    p = subprocess.run(
        ["tar", "-x", "-C", str(dest), *sorted({f"./{x}" for x in paths})],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
    )
    tar.wait()
    if p.returncode != 0 or tar.returncode != 0:
        lines = p.stderr.strip().splitlines()
        raise PhotoError(f"unpacking {deb.name} failed: {lines[0] if lines else tar.returncode}")


# --- the two modes ---------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def missing(out: Path, rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Manifest rows whose file in ``out`` is absent or differs from the manifest."""
    todo = []
    for r in rows:
        p = out / r["file"]
        if not (
            p.is_file() and p.stat().st_size == int(r["bytes"]) and sha256(p.read_bytes()) == r["sha256"]
        ):
            todo.append(r)
    return todo


def gather(out: Path, rows: list[dict[str, str]], apt: Apt, work: Path) -> int:
    """Writes the manifest's photos into ``out``; returns how many were fetched."""
    for r in rows:
        if is_excluded(r["package"]):
            raise PhotoError(f"{r['file']}: package {r['package']} holds evaluation photos")
    out.mkdir(parents=True, exist_ok=True)
    todo = missing(out, rows)
    if not todo:
        print(f"photos: all {len(rows)} photos of the manifest are in {out}")
        return 0
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    for r in todo:
        groups[(r["suite"], r["package"], r["version"])].append(r)
    done = 0
    for (suite, package, version), items in sorted(groups.items()):
        print(f"photos: {package} {version} ({suite}): {len(items)} photos", flush=True)
        pdir = work / "debs" / package
        pdir.mkdir(parents=True, exist_ok=True)
        deb = apt.download(suite, package, version, pdir)
        root = work / "root" / package
        unpack(deb, root, [r["member"].partition("#")[0] for r in items])
        for r in items:
            data = member_bytes(root, r["member"])
            if sha256(data) != r["sha256"]:
                raise PhotoError(f"{r['file']}: sha256 differs from the manifest ({package} {version})")
            _write(out / r["file"], data)
            done += 1
        deb.unlink()
    print(f"photos: {done} fetched, {len(rows)} in {out}")
    return done


def update_manifest(
    candidates: Path, manifest: Path, out: Path, apt: Apt, work: Path
) -> list[dict[str, str]]:
    """Rebuilds the manifest from ``candidates`` (current versions, licences, sizes, sha256) and
    writes the photos into ``out`` on the way."""
    import io

    from PIL import Image

    cands = read_tsv(candidates)
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for c in cands:
        if is_excluded(c["package"]):
            raise PhotoError(f"{c['file']}: package {c['package']} holds evaluation photos")
        groups[(c["suite"], c["package"])].append(c)
    rows = {}
    out.mkdir(parents=True, exist_ok=True)
    for (suite, package), items in sorted(groups.items()):
        version = apt.version(suite, package)
        print(f"photos: {package} {version} ({suite}): {len(items)} candidates", flush=True)
        pdir = work / "debs" / package
        pdir.mkdir(parents=True, exist_ok=True)
        deb = apt.download(suite, package, version, pdir)
        root = work / "root" / package
        doc = f"usr/share/doc/{package}/copyright"
        unpack(deb, root, [c["member"].partition("#")[0] for c in items] + [doc])
        paragraphs = parse_copyright((root / doc).read_text(errors="replace"))
        for c in items:
            data = member_bytes(root, c["member"])
            if c["source_path"] != "-":
                found = licence_for(paragraphs or [], c["source_path"])
                if found is None:
                    raise PhotoError(
                        f"{c['file']}: no debian/copyright paragraph covers {c['source_path']}"
                    )
                licence, basis = found
            else:
                licence, basis = c["licence"], "copyright file without per-file stanzas (see licence)"
            w, h = Image.open(io.BytesIO(data)).size
            _write(out / c["file"], data)
            rows[c["file"]] = {
                "file": c["file"],
                "package": package,
                "version": version,
                "suite": suite,
                "member": c["member"],
                "licence": licence,
                "licence_basis": basis,
                "size_px": f"{w}x{h}",
                "bytes": str(len(data)),
                "sha256": sha256(data),
            }
        deb.unlink()
    ordered = [rows[c["file"]] for c in cands]
    write_tsv(manifest, ordered)
    print(f"photos: wrote {manifest} ({len(ordered)} photos)")
    return ordered


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="output folder (e.g. data/photos_src)")
    p.add_argument("--manifest", default=str(MANIFEST))
    p.add_argument("--candidates", default=str(CANDIDATES))
    p.add_argument("--update-manifest", action="store_true", help="rebuild the manifest first")
    p.add_argument("--mirror", default=None, help="Debian mirror (default: the host's own)")
    p.add_argument("--work", default=None, help="download folder (default: a temporary one)")
    args = p.parse_args(argv)
    manifest = Path(args.manifest)
    try:
        rows = None if args.update_manifest else read_tsv(manifest)
        if rows is not None and not missing(Path(args.out), rows):
            print(f"photos: all {len(rows)} photos of the manifest are in {args.out}")
            return 0
        with tempfile.TemporaryDirectory(dir=args.work) as tmp:
            work = Path(tmp)
            apt = Apt(work, args.mirror or host_mirror())
            if rows is None:
                rows = update_manifest(Path(args.candidates), manifest, Path(args.out), apt, work)
            gather(Path(args.out), rows, apt, work)
    except (PhotoError, OSError) as e:
        print(f"photos: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
