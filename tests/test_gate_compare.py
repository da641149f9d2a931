"""tools/gate_compare.py, the ship-or-keep decision after a GPU run: its verdict rule, the gate goals,
the merged weights folder and the install, on synthetic gate CSVs (no evaluation is run). The install
is a transaction (issue 27): killed at every step, then recovered, it leaves the old set or the new."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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
    monkeypatch.setattr(gc, "check_candidate", lambda c, present: None)
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
    monkeypatch.setattr(gc, "check_candidate", lambda c, present: None)

    def fail(*a):
        raise subprocess.CalledProcessError(3, "evaluate.py")

    monkeypatch.setattr(gc, "evaluate", fail)
    with pytest.raises(SystemExit, match=r"the evaluation failed \(exit status 3\)"):
        gc.main([str(candidate), "--workdir", str(work)])
    assert not (work / "per_image.csv").exists() and not (work / "candidate.json").exists()


# --- --ship as a transaction -------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
TWO_STAGE = ["dfnet", "shift_refine"]


def fake_networks(folder, tag):
    """Tiny stand-ins for weights folders: a file at the top and one in a subfolder."""
    for name in gc.NETWORKS:
        (folder / name / "variables").mkdir(parents=True)
        (folder / name / "which").write_text(f"{tag} {name}")
        (folder / name / "variables" / "data").write_bytes(f"{tag} {name} ".encode() * 100)


@pytest.fixture
def ship(tmp_path, baseline, monkeypatch):
    """A fake bundle (tmp_path/bundled) and candidate; ``table``: the two-stage gate rows with
    ``new_text`` to go in; ``old`` / ``new``: checksums of the installed set before / after."""
    bundled, candidate = tmp_path / "bundled", tmp_path / "cand"
    fake_networks(bundled, "old")
    fake_networks(candidate, "new")
    monkeypatch.setattr(gc, "BUNDLED", bundled)
    table = baseline / "per_image_two_stage.csv"
    old_bytes = table.read_bytes()
    new_text = old_bytes.decode().replace("0.6", "0.5")
    old = state(bundled, table)
    new = {**old, **{n: gc.digest(candidate / n) for n in TWO_STAGE}, "csv": gc.digest_text(new_text)}
    pristine = tmp_path / "pristine"
    shutil.copytree(bundled, pristine)

    def reset():
        shutil.rmtree(bundled)
        shutil.copytree(pristine, bundled)
        table.write_bytes(old_bytes)

    return SimpleNamespace(bundled=bundled, candidate=candidate, table=table, new_text=new_text,
                           old=old, new=new, reset=reset, folders=[bundled, table.parent])  # fmt: skip


def state(bundled, table):
    return {**{n: gc.digest(bundled / n) for n in gc.NETWORKS}, "csv": gc.digest(table)}


def leftovers(*folders):
    return sorted(p.name for f in folders for p in f.iterdir() if p.name.startswith(".gate_compare"))


# Runs gc.install (or gc.recover) in a fresh process that dies (os._exit, like SIGKILL: no finally,
# no handler) just before its Nth file-system step (rename, copy, delete); prints DONE if it lives.
KILLER = """
import os, shutil, sys
from pathlib import Path
from tools import gate_compare as gc

bundled, candidate, table, text_file, mode, kill_at = sys.argv[1:]
gc.BUNDLED = Path(bundled)
steps = 0


def step(fn):
    def counted(*args, **kwargs):
        global steps
        steps += 1
        if steps == int(kill_at):
            os._exit(9)
        return fn(*args, **kwargs)
    return counted


os.replace, shutil.rmtree, shutil.copytree = step(os.replace), step(shutil.rmtree), step(shutil.copytree)
Path.unlink = step(Path.unlink)
if mode == "ship":
    new_text = Path(text_file).read_bytes().decode()
    gc.install(Path(candidate), ["dfnet", "shift_refine"], {Path(table): new_text})
else:
    gc.recover([gc.BUNDLED, Path(table).parent])
print("DONE", steps)
"""


def run_killed(ship, mode, kill_at, tmp_path):
    """True if the process lived to the end, False if it was killed."""
    text_file = tmp_path / "new_text.csv"
    text_file.write_bytes(ship.new_text.encode())
    args = [ship.bundled, ship.candidate, ship.table, text_file, mode, kill_at]
    proc = subprocess.run([sys.executable, "-c", KILLER, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode in (0, 9) and not proc.stderr, proc.stderr
    return proc.returncode == 0


def test_a_ship_killed_at_any_step_is_completed_or_undone(ship, tmp_path):
    """SIGKILL before each step of --ship (copies, journal, renames, deletions), then a kill early
    in the recovery too, then the recovery: always the whole old set or the whole new set (networks
    and gate rows, by checksum), nothing staged left, and the new set once the switch had begun."""
    outcomes = []
    for kill_at in range(1, 100):
        if run_killed(ship, "ship", kill_at, tmp_path):
            break
        journal = ship.bundled / gc.JOURNAL
        switching = journal.exists() and json.loads(journal.read_text())["phase"] == "switching"
        if journal.exists():  # the recovery killed too, if it gets that far
            run_killed(ship, "recover", 3, tmp_path)
        gc.recover(ship.folders)
        now = state(ship.bundled, ship.table)
        assert now in (ship.old, ship.new), (kill_at, now)
        assert not journal.exists() and not leftovers(*ship.folders), kill_at
        assert now == ship.new or not switching, kill_at  # the copies were whole: rolled forward
        outcomes.append("new" if now == ship.new else "old")
        ship.reset()
    assert state(ship.bundled, ship.table) == ship.new and not leftovers(*ship.folders)
    assert kill_at > 10 and {"old", "new"} == set(outcomes), (kill_at, outcomes)


def test_a_damaged_copy_is_rolled_back(ship, tmp_path):
    """Killed mid-switch with a staged copy no longer whole: the recovery puts the old set back."""
    for kill_at in range(1, 100):  # the first kill after the journal says "switching"
        assert not run_killed(ship, "ship", kill_at, tmp_path)
        if (ship.bundled / gc.JOURNAL).exists():
            break
        gc.recover(ship.folders)
    journal = json.loads((ship.bundled / gc.JOURNAL).read_text())
    staged = Path(journal["entries"][-1]["new"])  # the gate rows: not switched yet
    assert journal["phase"] == "switching" and staged.exists()
    staged.write_text("damaged")
    assert gc.recover(ship.folders).startswith("undid an interrupted --ship")
    assert state(ship.bundled, ship.table) == ship.old and not leftovers(*ship.folders)


def test_a_failed_rename_rolls_back(ship, monkeypatch):
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(src)
        if len(calls) == 4:  # the journal, dfnet out, dfnet in, then shift_refine fails
            raise PermissionError(13, "Permission denied", str(src))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(PermissionError):
        gc.install(ship.candidate, TWO_STAGE, {ship.table: ship.new_text})
    monkeypatch.setattr(os, "replace", real)
    assert state(ship.bundled, ship.table) == ship.old and not leftovers(*ship.folders)


def test_an_older_versions_leftovers_are_put_back_not_deleted(ship):
    """Issue 27: the old install, killed after its first rename, left dfnet only in
    .gate_compare-old-*, and the next run deleted it. Now it is put back first."""
    trash = ship.bundled / ".gate_compare-old-k2j4x9q1"
    trash.mkdir()
    os.replace(ship.bundled / "dfnet", trash / "dfnet")
    (ship.bundled / ".gate_compare-new-a8b7c6d5" / "dfnet").mkdir(parents=True)  # a half copy
    assert gc.recover(ship.folders) == "put back dfnet from an interrupted --ship"
    assert state(ship.bundled, ship.table) == ship.old and not leftovers(*ship.folders)
    gc.install(ship.candidate, TWO_STAGE, {ship.table: ship.new_text})
    assert state(ship.bundled, ship.table) == ship.new and not leftovers(*ship.folders)


SIGNALLED = """
import os, signal, sys, time
from pathlib import Path
from tools import gate_compare as gc

bundled, candidate, work, base, when = sys.argv[1:]
gc.BUNDLED = Path(bundled)
gc.identity = lambda w: {}
gc.check_candidate = lambda c, present: None
real = os.replace


def evaluate(weights, methods, out):
    print("evaluating", flush=True)
    time.sleep(600)


def replace(src, dst):  # a signal arriving during the switch
    if Path(src).name == "dfnet":
        os.kill(os.getpid(), signal.SIGTERM if when == "term-switch" else signal.SIGINT)
    real(src, dst)


if when.endswith("switch"):
    os.replace = replace
else:
    gc.evaluate = evaluate
argv = [candidate, "--workdir", work, "--baseline", base, "--ship"]
sys.exit(gc.main(argv + ["--reuse"] if when.endswith("switch") else argv))
"""


@pytest.mark.parametrize("when", ["term-evaluate", "int-evaluate", "term-switch", "int-switch"])
def test_sigterm_and_ctrl_c_end_in_one_line_and_a_whole_set(ship, tmp_path, when):
    """While evaluating: nothing installed. During the switch: the switch and its clean-up finish
    first, then the run stops. One line, exit 143 (SIGTERM) or 130 (Ctrl-C), never a mix."""
    work = tmp_path / "work"
    work.mkdir()
    write(work / "per_image.csv", rows("two_stage", 20.3, 0.57) + rows("dfnet_only", 19.2, 0.78))
    (work / "candidate.json").write_text("{}")
    shutil.rmtree(ship.candidate / "zoom")
    args = [ship.bundled, ship.candidate, work, ship.table.parent, when]
    proc = subprocess.Popen([sys.executable, "-c", SIGNALLED, *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    if when.endswith("evaluate"):
        assert proc.stdout.readline() == "evaluating\n"
        proc.send_signal(signal.SIGTERM if when.startswith("term") else signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (143 if when.startswith("term") else 130), err
    stopped = "terminated" if when.startswith("term") else "interrupted"
    if when.endswith("evaluate"):
        assert err == f"gate_compare: {stopped}\n" and state(ship.bundled, ship.table) == ship.old
    else:
        assert err == f"gate_compare: {stopped}; dfnet, shift_refine installed\n"
        now = state(ship.bundled, ship.table)
        assert {k: now[k] for k in TWO_STAGE} == {k: ship.new[k] for k in TWO_STAGE}
        gate = gc.means(gc.read_rows(ship.table))
        assert gate[("two_stage", "centre", "1024")]["hole_psnr"] == pytest.approx(20.3)
    assert not leftovers(*ship.folders)


def test_an_empty_or_wrong_candidate_network_is_one_line_before_anything(tmp_path, monkeypatch):
    bundled, candidate, work = tmp_path / "bundled", tmp_path / "cand", tmp_path / "work"
    fake_networks(bundled, "old")
    monkeypatch.setattr(gc, "BUNDLED", bundled)
    (candidate / "dfnet").mkdir(parents=True)
    before = state(bundled, tmp_path / "none")
    argv = [str(candidate), "--workdir", str(work), "--ship"]
    with pytest.raises(SystemExit, match=r"the candidate's dfnet/ cannot be used: not a hrinpaint_jax "
                       r"weights directory \(no metadata/\): .*cand/dfnet$") as e:  # fmt: skip
        gc.main(argv)
    assert "\n" not in str(e.value)
    shutil.rmtree(candidate / "dfnet")
    shutil.copytree(REPO / "hrinpaint_jax" / "assets" / "weights" / "zoom", candidate / "dfnet")
    with pytest.raises(
        SystemExit, match="dfnet/ cannot be used: .*cand/dfnet holds a 'zoom' network, not dfnet"
    ):
        gc.main(argv)
    assert not work.exists() and state(bundled, tmp_path / "none") == before


def test_a_second_ship_at_the_same_time_is_refused(ship, tmp_path):
    import fcntl

    fd = os.open(ship.bundled, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(SystemExit, match="another gate_compare is installing into .*bundled; run"):
            gc.main([str(ship.candidate), "--workdir", str(tmp_path / "w"), "--ship"])
    finally:
        os.close(fd)
    assert state(ship.bundled, ship.table) == ship.old and not (tmp_path / "w").exists()


def test_recover_alone_finishes_a_killed_ship_and_the_cli_refuses_until_then(
    ship, tmp_path, monkeypatch, capsys
):
    """Killed mid-switch: ``hrinpaint inpaint`` on the bundled weights refuses in one line naming
    the fix (a half-switched set is never used), and ``gate_compare --recover`` alone completes it."""
    from hrinpaint_jax.image_io import InputError
    from hrinpaint_jax.pipelines import load

    monkeypatch.setattr(load, "DEFAULT_WEIGHTS", ship.bundled)
    monkeypatch.delenv(load.WEIGHTS_ENV, raising=False)
    for kill_at in range(1, 100):
        assert not run_killed(ship, "ship", kill_at, tmp_path), "never reached the switch"
        journal = ship.bundled / gc.JOURNAL
        if journal.exists() and json.loads(journal.read_text())["phase"] == "switching":
            break
        gc.recover(ship.folders)
        ship.reset()
    with pytest.raises(InputError, match="gate_compare.py --recover"):
        load.resolve_weights(None)
    monkeypatch.setattr(gc, "BASELINE", ship.table.parent)
    assert gc.main(["--recover", "--baseline", str(ship.table.parent)]) == 0
    assert "completed an interrupted --ship" in capsys.readouterr().err
    assert state(ship.bundled, ship.table) == ship.new and not leftovers(*ship.folders)
    assert load.resolve_weights(None) == ship.bundled
    assert gc.main(["--recover"]) == 0
    assert "no interrupted --ship" in capsys.readouterr().err
