"""The GPU run's own pieces that the CPU rehearsal (``make test`` ends with it) does not pin down:
configs/gpu.py continues the bundled weights exactly, the bundle's travel count, the tables copied
into the tracked results folder, and a rehearsal that never stops a phase for time."""

import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from configs import gpu
from hrinpaint_jax.init_from import source_states
from hrinpaint_jax.tasks import get_task


@pytest.mark.parametrize("stage", gpu.STAGES)
def test_gpu_config_continues_the_bundled_weights(stage):
    """Every stage starts from the embedded weights (init_from), and every leaf of them fits the
    stage's freshly initialised states (same widths), in bfloat16 compute with float32 params."""
    config = gpu.get_config(stage)
    assert config.dtype == "bfloat16" and config.optim.boundaries == ()
    assert config.num_train_steps == gpu.MAX_STEPS and 0 < gpu.SHARE[stage] < 1
    task = get_task(config)
    states = jax.eval_shape(task.init_states, jax.random.key(0))
    sources = source_states(config.init_from)
    for name, src in sources.items():
        want = traverse_util.flatten_dict({"params": states[name].params, **states[name].model_state})
        got = traverse_util.flatten_dict({"params": src["params"], **src["model_state"]})
        assert set(got) == set(want), f"{stage}/{name}: {set(got) ^ set(want)}"
        for key, leaf in got.items():
            assert np.shape(leaf) == want[key].shape, (stage, name, key)
            if key[0] == "params":
                assert want[key].dtype == np.float32, (stage, name, key)
    assert abs(sum(gpu.SHARE.values()) - 1.0) < 1e-9


def test_gpu_config_rejects_unknown_stage():
    with pytest.raises(ValueError, match="unknown GPU stage"):
        gpu.get_config("nope")


def test_travel_count_sees_tracked_files():
    from tools.device_bundle import MIB, tree_bytes

    total = tree_bytes()
    # The embedded weights alone are several MiB; the whole tree must stay under the 64 MiB limit.
    assert 4 * MIB < total < 60 * MIB


ENV_MD = """# Device run environment

- date 2026-12-07 (UTC)
- python 3.12.3 (/usr/bin/python3)
- backend gpu, 1 device(s): NVIDIA H100 80GB HBM3
"""


def _fake_run(folder, env=ENV_MD):
    folder.mkdir(parents=True)
    (folder / "a_env.md").write_text(env)
    (folder / "b_parity.csv").write_text("check,dtype,passed\ndfnet,float32,True\n")
    (folder / "summary.md").write_text("# Device run\n\n" + env)
    (folder / "run.log").write_text("[   0.0 s] device run\n")
    (folder / "e_training.tar.gz").write_bytes(b"\x1f\x8b weights")
    for f in folder.iterdir():  # as the device tool hands them back
        f.chmod(0o444)
    return folder


def test_collect_copies_the_tables_into_a_folder_named_for_date_and_device(tmp_path):
    from tools.device_run import collect

    src = _fake_run(tmp_path / "files_at")
    dest = collect(src, tmp_path / "device")
    assert dest == tmp_path / "device" / "2026-12-07_h100"
    assert sorted(f.name for f in dest.iterdir()) == [
        "a_env.md",
        "b_parity.csv",
        "run.log",
        "summary.md",
    ]
    assert (dest / "b_parity.csv").read_text() == (src / "b_parity.csv").read_text()
    assert all(f.stat().st_mode & 0o200 for f in dest.iterdir())  # writable copies
    assert collect(src, tmp_path / "device") == dest  # the same run again: nothing new
    (src / "b_parity.csv").chmod(0o644)
    (src / "b_parity.csv").write_text("check,dtype,passed\n")
    assert collect(src, tmp_path / "device") == tmp_path / "device" / "2026-12-07_h100_2"
    assert sorted(p.name for p in (tmp_path / "device").iterdir()) == [
        "2026-12-07_h100",
        "2026-12-07_h100_2",
    ]


def test_collect_names_several_devices_and_refuses_a_folder_that_is_no_run(tmp_path):
    from tools.device_run import CollectError, collect, run_name

    eight = ENV_MD.replace("1 device(s): NVIDIA H100 80GB HBM3", "8 device(s): NVIDIA H200, NVIDIA H200")
    assert run_name(_fake_run(tmp_path / "eight", eight)) == "2026-12-07_8xh200"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CollectError, match="neither a_env.md nor summary.md"):
        collect(tmp_path / "empty", tmp_path / "device")
    with pytest.raises(CollectError, match=r"a_env.md has no '- date"):
        collect(_fake_run(tmp_path / "old", ENV_MD.replace("- date", "- day")), tmp_path / "device")
    with pytest.raises(CollectError, match="no such folder"):
        collect(tmp_path / "nope", tmp_path / "device")
    assert not (tmp_path / "device").exists() or not any((tmp_path / "device").iterdir())


def test_rehearsal_never_stops_a_phase_for_time(tmp_path, monkeypatch):
    """A rehearsal phase outlasting its would-be limit still runs to its end and passes; only a
    real run stops a command on the clock (SIGTERM)."""
    from tools import device_run

    slow = [sys.executable, "-c", "import time; time.sleep(1.5); print('finished')"]
    r = device_run.Runner(tmp_path, budget=0.0, rehearse=True)
    assert r.run("slow", slow, timeout=0.01) == 0 and not r.failed
    seen = []
    monkeypatch.setattr(device_run.Runner, "run", lambda self, name, cmd, timeout: seen.append(cmd))
    device_run.timed_phase(r, "b", ["parity"], budget_total=0.0)
    assert seen == [["parity"]]  # no --deadline: every check runs
    (tmp_path / "real").mkdir()
    real = device_run.Runner(tmp_path / "real", budget=100.0, rehearse=False)
    device_run.timed_phase(real, "b", ["parity"], budget_total=100.0)
    assert seen[1][:2] == ["parity", "--deadline"]
    assert "finished" in (tmp_path / "run.log").read_text()


def test_a_training_stage_stopped_by_its_deadline_counts_as_done(tmp_path):
    """A real run trains until SIGTERM; train.py then saves and exits 143, which is its success
    (``stops=True``). Any other command stopped for time, or exiting 143 by itself, has failed."""
    from tools import device_run

    trains = [sys.executable, "-c", (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)")]  # fmt: skip
    r = device_run.Runner(tmp_path, budget=100.0, rehearse=False)
    assert r.run("e/dfnet", trains, timeout=5, grace=300, stops=True) == 0 and not r.failed
    assert r.run("c", trains, timeout=5, grace=300) == 143 and r.failed == ["c"]
    quits = [sys.executable, "-c", "import sys; sys.exit(143)"]
    assert r.run("e/zoom", quits, timeout=300, stops=True) == 143 and r.failed == ["c", "e/zoom"]
