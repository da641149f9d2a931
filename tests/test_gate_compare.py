"""tools/gate_compare.py, the ship-or-keep decision after a GPU run: its verdict rule, the gate goals,
the merged weights folder and the install, on synthetic gate CSVs (no evaluation is run)."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest

from tools import gate_compare as gc

FIELDS = ["mask", "resolution", "image", "method", "hole_psnr", "hole_lpips", "psnr"]


def rows(method, psnr, lpips, images=("a", "b")):
    return [
        {"mask": m, "resolution": r, "image": i, "method": method, "hole_psnr": str(psnr),
         "hole_lpips": str(lpips), "psnr": "30"}
        for m, r in gc.SETTINGS for i in images
    ]  # fmt: skip


def write(path, all_rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(all_rows)


@pytest.fixture
def baseline(tmp_path):
    base = tmp_path / "gate"
    base.mkdir()
    write(base / "per_image_two_stage.csv",
          rows("two_stage", 20.0, 0.60) + rows("dfnet_only", 19.0, 0.80)
          + rows("opencv_telea", 18.0, 0.62) + rows("opencv_ns", 21.0, 0.65))  # fmt: skip
    write(base / "per_image_zoom.csv", rows("zoom", 17.0, 0.90) + rows("zoom_no_zoom", 17.1, 0.89))
    return base


def test_verdict_needs_lower_lpips_and_no_lower_psnr():
    old = gc.means(rows("two_stage", 20.0, 0.60))
    assert gc.verdict(old, gc.means(rows("two_stage", 20.0, 0.55)), "two_stage")[0]
    assert gc.verdict(old, gc.means(rows("two_stage", 20.5, 0.59)), "two_stage")[0]
    assert not gc.verdict(old, gc.means(rows("two_stage", 19.9, 0.50)), "two_stage")[0]  # PSNR fell
    assert not gc.verdict(old, gc.means(rows("two_stage", 21.0, 0.60)), "two_stage")[0]  # LPIPS same
    ok, d_psnr, d_lpips = gc.verdict(old, gc.means(rows("two_stage", 20.5, 0.58)), "two_stage")
    assert ok and d_psnr == pytest.approx(0.5) and d_lpips == pytest.approx(-0.02)
    with pytest.raises(SystemExit, match="other photos"):
        gc.verdict(old, gc.means(rows("two_stage", 21, 0.5, images=("a",))), "two_stage")
    with pytest.raises(SystemExit, match="no rows for zoom"):
        gc.verdict(old, old, "zoom")


def test_goals_name_each_setting():
    table = gc.means(rows("two_stage", 20.0, 0.60) + rows("dfnet_only", 19.0, 0.80)
                     + rows("opencv_telea", 18.0, 0.62) + rows("opencv_ns", 21.0, 0.58))  # fmt: skip
    lines = gc.goals(table, "two_stage")
    assert len(lines) == 4 and lines[0].strip().startswith("1024 centre")
    assert all("LPIPS < Telea: yes" in x and "LPIPS < Navier-Stokes: no" in x for x in lines)
    assert all("beats stage 1 (PSNR and LPIPS): yes" in x for x in lines)


def test_main_ships_only_the_winner(tmp_path, baseline, monkeypatch, capsys):
    """A candidate with a better two-stage pair and a worse zoom: --ship installs dfnet and
    shift_refine (atomically, the old ones gone), keeps zoom, and rewrites the two-stage rows."""
    bundled = tmp_path / "bundled"
    for name in gc.NETWORKS:
        (bundled / name).mkdir(parents=True)
        (bundled / name / "which").write_text("old")
    candidate = tmp_path / "cand"
    for name in gc.NETWORKS:
        (candidate / name).mkdir(parents=True)
        (candidate / name / "which").write_text("new")
    monkeypatch.setattr(gc, "BUNDLED", bundled)
    # the networks' identity (real paths and metadata hashes); these fakes have no metadata
    monkeypatch.setattr(gc, "identity", lambda w: {n: str((w / n).resolve()) for n in gc.NETWORKS})
    work = tmp_path / "work"
    work.mkdir()
    write(work / "per_image.csv",
          rows("two_stage", 20.3, 0.57) + rows("dfnet_only", 19.2, 0.78)
          + rows("zoom", 16.0, 0.95) + rows("zoom_no_zoom", 16.1, 0.94))  # fmt: skip
    argv = [str(candidate), "--workdir", str(work), "--baseline", str(baseline), "--reuse", "--ship"]
    with pytest.raises(SystemExit, match="was not made from these weights"):  # no candidate.json
        gc.main(argv)
    made_of = {n: str((candidate / n).resolve()) for n in gc.NETWORKS}
    (work / "candidate.json").write_text(json.dumps(made_of))
    assert gc.main(argv) == 0
    out = capsys.readouterr().out
    assert "-> SHIP" in out and "-> KEEP the bundled weights" in out
    assert [(bundled / n / "which").read_text() for n in gc.NETWORKS] == ["new", "new", "old"]
    assert sorted(p.name for p in bundled.iterdir()) == sorted(gc.NETWORKS)  # no staging left
    kept = gc.means(gc.read_rows(baseline / "per_image_two_stage.csv"))
    assert kept[("two_stage", "centre", "1024")]["hole_psnr"] == pytest.approx(20.3)
    assert kept[("opencv_ns", "centre", "1024")]["hole_psnr"] == pytest.approx(21.0)
    zoom = gc.means(gc.read_rows(baseline / "per_image_zoom.csv"))
    assert zoom[("zoom", "large", "2048")]["hole_lpips"] == pytest.approx(0.90)


def test_merged_weights_take_missing_networks_from_the_bundle(tmp_path, monkeypatch):
    bundled, candidate = tmp_path / "bundled", tmp_path / "cand"
    for name in gc.NETWORKS:
        (bundled / name).mkdir(parents=True)
    (candidate / "dfnet").mkdir(parents=True)
    monkeypatch.setattr(gc, "BUNDLED", bundled)
    gc.merged_weights(candidate, tmp_path / "merged")
    targets = {n: (tmp_path / "merged" / n).resolve() for n in gc.NETWORKS}
    assert targets == {"dfnet": candidate / "dfnet", "shift_refine": bundled / "shift_refine",
                       "zoom": bundled / "zoom"}  # fmt: skip
    with pytest.raises(SystemExit, match="holds none of"):
        gc.main([str(tmp_path / "merged" / "nothing"), "--workdir", str(tmp_path / "w")])


def test_a_failed_evaluation_is_one_line_and_leaves_no_stale_results(tmp_path, monkeypatch):
    bundled, candidate, work = tmp_path / "bundled", tmp_path / "cand", tmp_path / "work"
    for name in gc.NETWORKS:
        (bundled / name).mkdir(parents=True)
    (candidate / "zoom").mkdir(parents=True)
    work.mkdir()
    (work / "per_image.csv").write_text("mask,resolution,image,method\n")  # an earlier candidate's
    monkeypatch.setattr(gc, "BUNDLED", bundled)
    monkeypatch.setattr(gc, "identity", lambda w: {})

    def fail(*a):
        raise subprocess.CalledProcessError(3, "evaluate.py")

    monkeypatch.setattr(gc, "evaluate", fail)
    with pytest.raises(SystemExit, match=r"the evaluation failed \(exit status 3\)"):
        gc.main([str(candidate), "--workdir", str(work)])
    assert not (work / "per_image.csv").exists() and not (work / "candidate.json").exists()
