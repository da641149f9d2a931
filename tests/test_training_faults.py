"""Faults a cluster user meets around training (issue 27): damaged checkpoints, full disks, two
processes on one workdir, bad train.py / evaluate.py arguments, SIGTERM, metrics.csv after a resume.

One tiny zoom_pretrain_sr run (steps 2 and 4) is trained once per module; each test damages its
own copy."""

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import tiny
from hrinpaint_jax import checkpoints, metric_writers, train_checkpoints, train_lib
from hrinpaint_jax.atomic_files import NoSpaceError
from hrinpaint_jax.checkpoints import CheckpointError
from hrinpaint_jax.train_checkpoints import MANIFEST, WorkdirBusy, WorkdirLock

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 900  # subprocesses: generous, a slow loaded machine must never fail them
STAGE = "zoom_pretrain_sr"  # the cheapest tiny stage


def sr_config(steps=4, **fields):
    config = tiny.get_config(STAGE)
    config.num_train_steps = steps
    config.sample_every = 0
    for key, value in fields.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny workdir with checkpoints 2 and 4 (and their manifests)."""
    workdir = tmp_path_factory.mktemp("faults") / "run"
    train_lib.train_and_evaluate(sr_config(), workdir)
    return workdir


@pytest.fixture
def work(trained, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(trained, target)
    return target


def fresh_states():
    return train_lib.build(sr_config())[1]


def step_dir(workdir, step):
    return workdir / "checkpoints" / str(step)


def largest_data_file(d: Path) -> Path:
    files = [p for p in (d / "state").rglob("*") if p.is_file() and "/d/" in p.as_posix()]
    return max(files, key=lambda p: p.stat().st_size)


def overwrite_data(d):
    path = largest_data_file(d)
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(b"\xff" * 2000)
    return path.relative_to(d).as_posix()


def truncate(rel):
    def damage(d):
        os.truncate(d / rel, 50)
        return rel

    return damage


def garble(rel):
    def damage(d):
        with open(d / rel, "r+b") as f:
            f.seek(3)
            f.write(b'\x00"{garbage')
        return rel

    return damage


def delete_state(d):
    shutil.rmtree(d / "state")
    return "state/"


DAMAGE = {
    "data file overwritten": overwrite_data,
    "state/manifest.ocdbt truncated": truncate("state/manifest.ocdbt"),
    "state/_METADATA truncated": truncate("state/_METADATA"),
    "record/metadata garbled": garble("record/metadata"),
    "state deleted": delete_state,
}


def snapshot(path: Path) -> dict:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in files}


# --------------------------------------------------------------------------------------------------
# Damaged checkpoints


@pytest.mark.parametrize("with_manifest", [True, False], ids=["manifest", "older step"])
@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_latest_checkpoint_is_skipped_with_one_line(
    work, damage, with_manifest, caplog, capfd
):
    """Resume walks the steps newest first: the damaged step 4 is skipped with one warning naming
    the step and the file, moved to damaged_checkpoints/, and step 2 is restored. Steps written
    before manifests existed are checked by reading them back. No tracebacks on stderr."""
    if damage == "data file overwritten" and not with_manifest:
        pytest.skip("without a checksum, garbage bytes are only caught if they break decoding")
    if not with_manifest:
        for step in (2, 4):
            (step_dir(work, step) / MANIFEST).unlink()
    named = DAMAGE[damage](step_dir(work, 4))
    with caplog.at_level(logging.WARNING, logger="hrinpaint_jax"):
        step, states, legs = train_checkpoints.restore_latest(work, fresh_states())
    assert step == 2 and int(states["g"].step) == 2 and legs[-1]["end_step"] == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "step 4" in warnings[0] and named.split("/")[0] in warnings[0], warnings[0]
    if with_manifest:
        assert named in warnings[0]
    assert "resuming from step 2" in warnings[0] and "damaged_checkpoints" in warnings[0]
    assert not step_dir(work, 4).exists() and (work / "damaged_checkpoints" / "4").is_dir()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Event loop is closed" not in err, err[-2000:]


def test_readers_take_the_newest_intact_step_and_leave_the_workdir_alone(work, caplog):
    """init_from, the refinement's stage-1 weights and export read through latest_state_tree /
    checkpoint_legs: they skip a damaged step with a warning and never move anything."""
    overwrite_data(step_dir(work, 4))
    before = snapshot(work)
    with caplog.at_level(logging.WARNING, logger="hrinpaint_jax"):
        step, tree, config = train_checkpoints.latest_state_tree(work)
    assert step == 2 and int(np.asarray(tree["g"]["step"])) == 2 and config["task"] == STAGE
    assert [r.getMessage() for r in caplog.records if "step 4" in r.getMessage()]
    assert train_checkpoints.checkpoint_legs(work)[-1]["end_step"] == 2
    assert snapshot(work) == before


def test_no_intact_checkpoint_is_one_error_and_nothing_moves(work):
    truncate("state/_METADATA")(step_dir(work, 4))
    delete_state(step_dir(work, 2))
    before = snapshot(work)
    with pytest.raises(CheckpointError, match="no intact checkpoint") as e:
        train_checkpoints.restore_latest(work, fresh_states())
    assert "step 4: state/_METADATA" in str(e.value) and "step 2: state/" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        train_checkpoints.latest_state_tree(work)
    assert snapshot(work) == before


def test_resume_past_a_damaged_step_redoes_it_and_keeps_metrics_csv_unique(work, caplog):
    """The damaged step 4 is redone and saved again (its number free, max_to_keep not confused);
    metrics.csv holds each step once although steps 3-4 were logged by the first run too."""
    overwrite_data(step_dir(work, 4))
    with caplog.at_level(logging.WARNING, logger="hrinpaint_jax"):
        train_lib.train_and_evaluate(sr_config(steps=6), work)
    assert any("resuming from step 2" in r.getMessage() for r in caplog.records)
    assert sorted(s for s, _ in train_checkpoints.step_dirs(work)) == [2, 4, 6]
    assert train_checkpoints.check_manifest(step_dir(work, 4)) is None
    legs = train_checkpoints.checkpoint_legs(work)
    assert [(g["start_step"], g["end_step"]) for g in legs] == [(0, 2), (2, 6)]
    with open(work / "metrics.csv") as f:
        rows = [line.split(",")[:2] for line in f.read().splitlines()[1:]]
    assert len(rows) == len({tuple(r) for r in rows}), "repeated (step, name) rows"
    assert {int(s) for s, _ in rows} == set(range(1, 7))


def test_metrics_csv_drops_the_rows_after_the_resumed_step(tmp_path):
    """kill -9 after logging steps past the last checkpoint: the resumed writer drops them (and a
    torn last row) atomically before appending."""
    with metric_writers.MetricWriter(tmp_path) as w:
        for step in range(1, 6):
            w.write_scalars(step, {"loss": step / 10}, log=False)
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("6,lo")  # torn by the kill
    with metric_writers.MetricWriter(tmp_path, resume_step=4) as w:
        w.write_scalars(5, {"loss": 0.55}, log=False)
    assert metric_writers.read_csv(tmp_path / "metrics.csv") == {
        "loss": [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4), (5, 0.55)]
    }
    text = (tmp_path / "metrics.csv").read_text()
    assert text.count("\n5,loss,") == 1 and "6,lo" not in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------------------
# Full disks


ENOSPC_TEXT = (
    'RESOURCE_EXHAUSTED: Error writing local file "{}/manifest.ocdbt": Failed to write 343 bytes '
    "to file 15: No space left on device [os_error_code='28']"
)


def test_a_checkpoint_save_on_a_full_disk_is_one_line_and_leaves_no_trace(work, monkeypatch):
    """ENOSPC in the middle of orbax's write: NoSpaceError naming the folder and the space needed,
    orbax's temporary folder and the unfinished step removed, steps 2 and 4 untouched."""
    before = snapshot(work / "checkpoints")
    config = sr_config(steps=6)
    manager = train_checkpoints.checkpoint_manager(work, config)
    real_save = ocp.CheckpointManager.save

    def full_disk(self, step, *args, **kwargs):
        tmp = Path(self.directory) / f"{step}.orbax-checkpoint-tmp-1234" / "state"
        tmp.mkdir(parents=True)
        (tmp / "half").write_bytes(b"x" * 100)
        raise ValueError(ENOSPC_TEXT.format(tmp))

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    try:
        with pytest.raises(NoSpaceError) as e:
            train_checkpoints.save_checkpoint(manager, 6, fresh_states(), config, [])
    finally:
        monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
        manager.close()
    message = str(e.value)
    assert e.value.errno == errno.ENOSPC and "\n" not in message
    assert "No space left on device" in message and "needs about" in message
    assert str(work / "checkpoints") in message
    assert snapshot(work / "checkpoints") == before
    assert sorted(os.listdir(work / "checkpoints")) == ["2", "4"]


def test_a_full_disk_is_refused_before_writing(work, monkeypatch):
    """Too little free space for the state tree: refused before orbax writes anything."""
    before = snapshot(work)
    config = sr_config(steps=6)
    manager = train_checkpoints.checkpoint_manager(work, config)
    usage = shutil.disk_usage(work)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    try:
        with pytest.raises(NoSpaceError, match="needs about .* 1000 bytes free"):
            train_checkpoints.save_checkpoint(manager, 6, fresh_states(), config, [])
    finally:
        manager.close()
    assert snapshot(work) == before


def test_save_pretrained_on_a_full_disk_leaves_no_partial_folder(tmp_path, monkeypatch):
    """export and conversion write through save_pretrained: ENOSPC gives NoSpaceError and removes
    the staging folder *and* orbax's STAGING.orbax-checkpoint-tmp sibling; a staging folder left by
    a killed writer is removed by the next write."""
    out = tmp_path / "weights"
    variables = {"params": {"w": np.ones((64, 64), np.float32)}}
    real_save = ocp.Checkpointer.save

    def full_disk(self, directory, *args, **kwargs):
        tmp = Path(f"{directory}.orbax-checkpoint-tmp")
        (tmp / "variables").mkdir(parents=True)
        (tmp / "variables" / "half").write_bytes(b"x" * 100)
        raise ValueError(ENOSPC_TEXT.format(tmp))

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    stale = tmp_path / f".weights.partial-{int(dead.stdout)}-0badf00d.orbax-checkpoint-tmp"
    stale.mkdir()
    monkeypatch.setattr(ocp.Checkpointer, "save", full_disk)
    with pytest.raises(NoSpaceError, match="No space left on device") as e:
        checkpoints.save_pretrained(out, "dfnet", variables)
    assert str(tmp_path) in str(e.value) and "needs about" in str(e.value)
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(ocp.Checkpointer, "save", real_save)
    stale.mkdir()
    checkpoints.save_pretrained(out, "dfnet", variables)
    assert os.listdir(tmp_path) == ["weights"]


# --------------------------------------------------------------------------------------------------
# One training process per workdir


def test_a_second_train_py_on_a_busy_workdir_refuses_and_touches_nothing(work):
    before = snapshot(work)
    with WorkdirLock(work):
        with pytest.raises(WorkdirBusy, match=f"PID {os.getpid()} on host"):
            train_lib.train_and_evaluate(sr_config(steps=6), work)
        assert snapshot(work) == before
        proc = subprocess.run(
            train_cmd(work, steps=6), capture_output=True, text=True, cwd=REPO, timeout=TIMEOUT
        )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = last_line(proc.stderr)
    assert last.startswith("train.py: ") and f"PID {os.getpid()} on host" in last, proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(work) == before


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    """kill -9 drops the flock with the process: the next run takes the workdir over."""
    ready = tmp_path / "ready"
    code = (
        "import sys, time; from hrinpaint_jax.train_checkpoints import WorkdirLock; "
        f"WorkdirLock({str(tmp_path)!r}).acquire(); open({str(ready)!r}, 'w').close(); "
        "time.sleep(3600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        wait_for(lambda: ready.exists() or proc.poll() is not None)
        assert proc.poll() is None
        with pytest.raises(WorkdirBusy, match=f"PID {proc.pid} on host"):
            WorkdirLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
    with WorkdirLock(tmp_path):
        assert f"pid {os.getpid()} " in (tmp_path / "train.lock").read_text()


# --------------------------------------------------------------------------------------------------
# Command lines: bad arguments, SIGTERM


def train_cmd(workdir, *extra, steps=4):
    return [
        sys.executable,
        str(REPO / "train.py"),
        f"--config={REPO}/configs/tiny.py:{STAGE}",
        f"--workdir={workdir}",
        f"--config.num_train_steps={steps}",
        "--config.sample_every=0",
        *extra,
    ]


def last_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else ""


def wait_for(condition, timeout=TIMEOUT):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not met"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--config.nosuch=1"], "'nosuch' in --config.nosuch=1"),
        (["--config=configs/nosuch.py"], "configs/nosuch.py"),
        (["--config.optim.boundaries=abc"], "config.optim.boundaries"),
        (["--config.num_train_steps=abc"], "--config.num_train_steps=abc"),
        (["--config.data.source=folder:/nonexistent"], "/nonexistent"),
        (["--workdir=FILE"], "is a file"),
    ],
)
def test_train_py_bad_arguments_are_one_line_exit_2_and_create_nothing(tmp_path, args, named):
    work = tmp_path / "work"
    afile = tmp_path / "afile"
    afile.write_text("keep")
    args = [a.replace("FILE", str(afile)) for a in args]
    cmd = train_cmd(work)
    if args[0].startswith("--config="):  # in place of the default one, before the overrides
        cmd[2], args = args[0], args[1:]
    proc = subprocess.run(cmd + args, capture_output=True, text=True, cwd=REPO, timeout=TIMEOUT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert last_line(proc.stderr).startswith("train.py: ") and named in last_line(proc.stderr)
    assert not work.exists() and afile.read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["afile"]


@pytest.mark.parametrize(
    ("arg", "named"),
    [("--config.nosuch=1", "'nosuch'"), ("--config=configs/nosuch.py", "configs/nosuch.py")],
)
def test_evaluate_py_bad_arguments_are_one_line_exit_2(tmp_path, arg, named):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "evaluate.py", "--output", str(out), arg],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().count("\n") == 0 and named in proc.stderr, proc.stderr
    assert not out.exists()


def catches_sigterm(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def test_evaluate_py_says_terminated_and_exits_143(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "evaluate.py", "--output", str(tmp_path / "out")],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    try:
        wait_for(lambda: proc.poll() is not None or catches_sigterm(proc.pid))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert last_line(err) == "evaluate.py: terminated" and "Traceback" not in err


def test_sigterm_saves_then_raises_preempted(work, monkeypatch):
    """SIGTERM during training: a checkpoint where it stopped, then ``Preempted`` (train.py exits
    143 with one line, so a scheduler tells a preempted run from a finished one)."""
    real = metric_writers.ReportProgress.__call__

    def report(self, step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, step)

    monkeypatch.setattr(metric_writers.ReportProgress, "__call__", report)
    with pytest.raises(train_lib.Preempted, match="SIGTERM at step 5") as e:
        train_lib.train_and_evaluate(sr_config(steps=8), work)
    assert e.value.step == 5 and train_checkpoints.step_dirs(work)[0][0] == 5
    assert train_checkpoints.check_manifest(step_dir(work, 5)) is None
