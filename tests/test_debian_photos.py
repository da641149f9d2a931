"""tools/debian_photos: the committed photo manifest and the offline parts of its script (container
parsing, debian/copyright matching, the idempotent skip) on fake data."""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from pathlib import Path

import pytest

from hrinpaint_jax.commands.prepare_photos import HOLDOUT
from tools.debian_photos import get_debian_photos as gdp

MANIFEST = gdp.MANIFEST


@pytest.fixture(scope="module")
def rows():
    return gdp.read_tsv(MANIFEST)


def test_manifest_well_formed(rows):
    assert len(rows) >= 59
    header = MANIFEST.read_text().splitlines()[0].split("\t")
    assert tuple(header) == gdp.COLUMNS
    names = [r["file"] for r in rows]
    assert len(set(names)) == len(names)
    assert len({r["sha256"] for r in rows}) == len(rows), "the same photo under two names"
    for r in rows:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+__[A-Za-z0-9_.@-]+\.(jpg|png|webp)", r["file"]), r["file"]
        assert r["suite"] in gdp.SUITES
        assert re.fullmatch(r"[0-9a-f]{64}", r["sha256"])
        assert int(r["bytes"]) > 0
        w, h = map(int, r["size_px"].split("x"))
        assert min(w, h) >= 425 and r["licence"] and r["licence_basis"] and r["version"]
        assert not r["member"].startswith("/")


def test_manifest_matches_candidates(rows):
    cands = gdp.read_tsv(gdp.CANDIDATES)
    assert [c["file"] for c in cands] == [r["file"] for r in rows]
    for c, r in zip(cands, rows, strict=True):
        assert (c["package"], c["suite"], c["member"]) == (r["package"], r["suite"], r["member"])


def test_evaluation_packages_never_used(rows):
    for pkg in ("lomiri-wallpapers", "lomiri-wallpapers-20.04", "palapeli-data", "sddm-theme-maldives"):
        assert gdp.is_excluded(pkg)
    assert not gdp.is_excluded("budgie-backgrounds")
    assert not [r["file"] for r in rows if gdp.is_excluded(r["package"])]
    assert not [c["file"] for c in gdp.read_tsv(gdp.CANDIDATES) if gdp.is_excluded(c["package"])]


def test_holdout_kept_and_distinct(rows):
    by_name = {r["file"]: r for r in rows}
    assert all(h in by_name for h in HOLDOUT)
    held = {by_name[h]["sha256"] for h in HOLDOUT}
    assert not [r["file"] for r in rows if r["file"] not in HOLDOUT and r["sha256"] in held]


def test_first_set_unchanged(rows):
    """The 59 photos of ../shared/data/train_photos keep their names and bytes (the holdout split)."""
    shared = Path(__file__).resolve().parents[2] / "shared/data/train_photos/manifest.tsv"
    if not shared.exists():  # CI and every checkout have ../shared beside the repository
        pytest.fail(f"{shared} not found: the first photo set cannot be checked", pytrace=False)
    by_name = {r["file"]: r["sha256"] for r in rows}
    for r in gdp.read_tsv(shared):
        assert by_name.get(r["file"]) == r["sha256"], r["file"]


def _eet(entries: list[tuple[bytes, bytes, int]]) -> bytes:
    head = 12 + 24 * len(entries)
    names = b"".join(n for n, _, _ in entries)
    blobs, dirs, name_off, off = b"", b"", head, head + len(names)
    for name, blob, flags in entries:
        dirs += struct.pack(">6I", off + len(blobs), len(blob), len(blob), name_off, len(name), flags)
        name_off += len(name)
        blobs += blob
    return struct.pack(">III", gdp.EET_MAGIC, len(entries), 0) + dirs + names + blobs


def test_eet_largest_jpeg():
    small, big = b"\xff\xd8small", b"\xff\xd8the-big-one"
    data = _eet(
        [(b"edje/images/0", small, 0), (b"edje/images/1", big, 0), (b"edje/other", b"\xff\xd8" * 20, 0)]
    )
    assert gdp.eet_largest_jpeg(data) == big
    with pytest.raises(gdp.PhotoError):
        gdp.eet_largest_jpeg(b"\0" * 16)


def _rcc(files: dict[str, tuple[int, bytes]]) -> bytes:
    """A format-2 .rcc with one folder ``a`` holding ``files``."""
    names, name_offs = b"", {}
    for n in ["a", *files]:
        name_offs[n] = len(names)
        names += struct.pack(">HI", len(n), 0) + n.encode("utf-16-be")
    payload, data_offs = b"", {}
    for n, (_, blob) in files.items():
        data_offs[n] = len(payload)
        payload += struct.pack(">I", len(blob)) + blob
    node = lambda f: f + b"\0" * (22 - len(f))  # noqa: E731
    tree = node(struct.pack(">IHII", 0, 2, 1, 1))  # root: 1 child at index 1
    tree += node(struct.pack(">IHII", name_offs["a"], 2, len(files), 2))
    for n, (flags, _) in files.items():
        tree += node(struct.pack(">IHHHI", name_offs[n], flags, 0, 0, data_offs[n]))
    t, p = 24, 24 + len(tree)
    return b"qres" + struct.pack(">IIIII", 2, t, p, p + len(payload), 0) + tree + payload + names


def test_rcc_members(tmp_path):
    text = b"hello world " * 10
    data = _rcc(
        {"x.webp": (0, b"RIFFwebp"), "y.txt": (1, struct.pack(">I", len(text)) + zlib.compress(text))}
    )
    assert sorted(gdp.rcc_entries(data)) == ["a/x.webp", "a/y.txt"]
    (tmp_path / "r.rcc").write_bytes(data)
    assert gdp.member_bytes(tmp_path, "r.rcc#rcc:a/x.webp") == b"RIFFwebp"
    assert gdp.member_bytes(tmp_path, "r.rcc#rcc:a/y.txt") == text
    with pytest.raises(gdp.PhotoError, match="not in the resource"):
        gdp.member_bytes(tmp_path, "r.rcc#rcc:a/missing")
    with pytest.raises(gdp.PhotoError):
        gdp.member_bytes(tmp_path, "absent.jpg")


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: 2020 Someone
License: GPL-3+

Files: src/animals/*
       src/extra.png
Copyright: 2021 Photographer
License: CC-BY-SA-4.0
 long text
 .
 more

Files: src/animals/kangaroo.jpg
Copyright: fir0002
License: GFDL-NIV-1.2
"""


def test_copyright_matching():
    paras = gdp.parse_copyright(COPYRIGHT)
    assert gdp.licence_for(paras, "src/animals/cow.webp")[0] == "CC-BY-SA-4.0"
    assert gdp.licence_for(paras, "src/extra.png")[0] == "CC-BY-SA-4.0"
    lic, basis = gdp.licence_for(paras, "src/other/photo.webp")
    assert lic == "GPL-3+" and basis.startswith("Files: * ")
    lic, basis = gdp.licence_for(paras, "src/animals/kangaroo.jpg")
    assert lic == "GFDL-NIV-1.2"
    # A converted file that only Files: * names falls back to the stanza of its .jpg name.
    paras2 = gdp.parse_copyright(
        COPYRIGHT.replace("src/animals/*\n       src/extra.png", "src/extra.png")
    )
    lic, basis = gdp.licence_for(paras2, "src/animals/kangaroo.webp")
    assert lic == "GFDL-NIV-1.2" and "kangaroo.jpg" in basis
    assert gdp.parse_copyright("This package was debianized by ...") is None


def test_rerun_skips_when_output_matches(tmp_path, capsys):
    data = b"photo bytes"
    rows = [
        {
            "file": "pkg__a.jpg",
            "package": "pkg",
            "version": "1",
            "suite": "trixie",
            "member": "usr/a.jpg",
            "licence": "CC0-1.0",
            "licence_basis": "x",
            "size_px": "600x600",
            "bytes": str(len(data)),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    ]
    manifest = tmp_path / "m.tsv"
    gdp.write_tsv(manifest, rows)
    out = tmp_path / "out"
    out.mkdir()
    (out / "pkg__a.jpg").write_bytes(data)
    # No apt call can happen: everything already matches.
    assert gdp.main([str(out), "--manifest", str(manifest), "--mirror", "http://invalid.invalid"]) == 0
    assert "all 1 photos" in capsys.readouterr().out
    (out / "pkg__a.jpg").write_bytes(b"changed")
    assert [r["file"] for r in gdp.missing(out, rows)] == ["pkg__a.jpg"]
    bad = [{**rows[0], "package": "palapeli-data"}]
    with pytest.raises(gdp.PhotoError, match="evaluation"):
        gdp.gather(out, bad, apt=None, work=tmp_path)
