"""Training: every tiny stage runs, pmap equivalence, resume after kill -9 / SIGTERM, init_from,
export, NaN stop, multi-host (2 processes x 2 CPU devices == 1 process x 4 devices)."""

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util

from configs import ours, tiny
from hrinpaint_jax import losses, parallel, train_checkpoints, train_lib
from hrinpaint_jax.export import export_weights
from hrinpaint_jax.init_from import inherited_legs, initialise_from
from hrinpaint_jax.tasks import TASKS
from hrinpaint_jax.train_checkpoints import InitError

REPO = Path(__file__).resolve().parents[1]


def tiny_config(stage, **fields):
    config = tiny.get_config(stage)
    for key, value in fields.items():
        target = config
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return config


def final_params(workdir):
    _, tree, _ = train_checkpoints.latest_state_tree(workdir)
    return {k: v["params"] for k, v in tree.items()}


def assert_trees_close(a, b, atol):
    fa, fb = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
    assert fa.keys() == fb.keys()
    worst = max(float(np.max(np.abs(np.asarray(fa[k]) - np.asarray(fb[k])))) for k in fa)
    assert worst <= atol, worst


@pytest.fixture(scope="module")
def dfnet_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dfnet")
    metrics = train_lib.train_and_evaluate(tiny_config("dfnet", num_train_steps=2), workdir)
    return workdir, metrics


def test_tiny_dfnet_trains_writes_checkpoints_samples_and_events(dfnet_run):
    workdir, metrics = dfnet_run
    assert np.isfinite(metrics["loss"]) and {"l1", "perceptual", "style", "tv", "lr"} <= set(metrics)
    assert train_checkpoints.checkpoint_manager(workdir).all_steps() == [2]
    assert (workdir / "samples" / "step_0000002.png").is_file()
    assert list(workdir.glob("events.out.tfevents.*"))


def test_export_and_shift_refine_on_a_trained_stage1(dfnet_run, tmp_path):
    """The trained DFNet exported as a weights dir drives the refinement stage's stage 1; the
    exported refinement weights load with ``load_pretrained``."""
    from hrinpaint_jax.checkpoints import load_pretrained
    from hrinpaint_jax.cli import main as cli_main

    assert cli_main(["export", str(dfnet_run[0]), str(tmp_path / "dfnet_weights")]) == 0
    exported = str(tmp_path / "dfnet_weights")
    assert cli_main(["export", str(dfnet_run[0]), exported]) == 2  # exists: never overwritten
    assert cli_main(["export", str(tmp_path), str(tmp_path / "x")]) == 2  # not a workdir
    model, variables, meta = load_pretrained(exported)
    assert meta["model"] == "dfnet" and model.base_features == 4
    work = tmp_path / "refine"
    config = tiny_config("shift_refine", num_train_steps=1, **{"refine.stage1_weights": exported})
    metrics = train_lib.train_and_evaluate(config, work)
    assert np.isfinite(metrics["loss"]) and {"l1", "perceptual", "style", "tv"} <= set(metrics)
    _, _, meta = load_pretrained(export_weights(work, tmp_path / "refine_weights"))
    assert meta["model"] == "shift_refine" and meta["step"] == 1


@pytest.mark.parametrize("stage", ["zoom_pretrain_refine", "zoom_pretrain_sr"])
def test_tiny_zoom_pretraining_stages(stage, tmp_path):
    metrics = train_lib.train_and_evaluate(tiny_config(stage, num_train_steps=1), tmp_path)
    assert np.isfinite(metrics["loss"]) and ("vgg" in metrics) == (stage != "zoom_pretrain_sr")


def test_zoom_lr_image_is_made_in_the_step_from_image_hr():
    """Host batches hold no 'image_lr': the ZTI steps make it on the device, the TF bicubic
    antialiased downscale of 'image_hr', unclipped (the SR stage's L1 is of the net on it)."""
    from hrinpaint_jax.ops.resize import resize_bicubic_tf
    from hrinpaint_jax.tasks import with_lr_image

    joint = TASKS["zoom_joint"](tiny_config("zoom_joint"))
    shapes = {k: v.shape for k, v in joint.example_batch(1, 2).items()}
    assert shapes == {
        "image_hr": (1, 2, 64, 64, 3),
        "mask": (1, 2, 32, 32, 1),
        "mask_hr": (1, 2, 64, 64, 1),
    }
    task = TASKS["zoom_pretrain_sr"](tiny_config("zoom_pretrain_sr"))
    g = task.init_states(jax.random.key(0))["g"]
    batch = task.example_batch(1, 2)
    assert set(batch) == {"image_hr"}
    y, x = np.mgrid[:32, :32]
    checker = ((y // 4 + x // 4) % 2).astype(np.float32)[None, None, ..., None]
    hr = np.broadcast_to(checker, batch["image_hr"].shape).copy()
    lr = resize_bicubic_tf(hr[0], (16, 16), antialias=True)
    np.testing.assert_array_equal(with_lr_image({"image_hr": hr[0]}, 2)["image_lr"], lr)
    assert float(lr.min()) < 0 and float(lr.max()) > 1  # unclipped: cubic overshoot at the edges
    loss = lambda b: task.loss(g.params, g.model_state, {}, b, None)[0]  # noqa: E731
    out = task.model().apply({"params": g.params}, lr)
    want = np.mean(np.abs(np.asarray(out) - hr[0]))
    np.testing.assert_allclose(
        jax.vmap(loss, axis_name=parallel.AXIS)({"image_hr": hr})[0], want, rtol=1e-5
    )


def test_pmap_step_equals_one_device_with_the_whole_batch(caplog):
    """4 devices x 1 image == 1 device x 4 images (synchronised BatchNorm, pmean of gradients,
    spectral norm, both GAN states), replicas identical, and the step compiles once.

    Adam's first update is lr * sign(g), which turns float-noise gradients (1e-12, summed in another
    order on 4 devices) into +-lr; eps = 1 makes it ~ lr * g (linear in the gradient), so the params
    compare the gradients: a gradient that is not averaged over devices would differ by ~lr."""
    config = tiny_config("zoom_joint", **{"optim.eps": 1.0})
    task, states, frozen = train_lib.build(config)
    batch = next(task.batches(0, num_devices=4, process_index=0, process_count=1))
    rng = jax.random.key(3)
    results = {}
    for n in (4, 1):
        devices = jax.local_devices()[:n]
        step = jax.pmap(task.train_step, axis_name=parallel.AXIS, devices=devices)
        put = lambda t, d=devices: parallel.replicate(t, d)  # noqa: E731
        local = jax.tree.map(lambda x, n=n: x.reshape(n, -1, *x.shape[2:]), batch)
        new, metrics = step(put(states), put(frozen), local, put(rng))
        assert parallel.replicas_identical({k: s.params for k, s in new.items()})
        results[n] = jax.device_get((parallel.unreplicate(new), parallel.unreplicate(metrics)))
        caplog.clear()
        with jax.log_compiles(), caplog.at_level(logging.WARNING):
            step(new, put(frozen), local, put(rng))  # a second step: no recompilation
        assert not [r for r in caplog.records if "train_step" in r.getMessage()]
    for name in ("g", "d"):
        assert_trees_close(results[4][0][name].params, results[1][0][name].params, atol=1e-5)
        assert_trees_close(results[4][0][name].model_state, results[1][0][name].model_state, atol=1e-5)
    np.testing.assert_allclose(results[4][1]["loss"], results[1][1]["loss"], rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Every config in configs/ is exercised.

CONFIGS = sorted(
    p.stem for p in (REPO / "configs").glob("*.py") if p.stem not in ("__init__", "default")
)
TRAINING_CONFIGS = [
    "dfnet",
    "shift_refine",
    "zoom_pretrain_coarse",
    "zoom_pretrain_refine",
    "zoom_pretrain_sr",
    "zoom_joint_small",
    "zoom_joint_large",
]


def test_every_config_is_exercised():
    """A config file nobody tests fails here: training configs are traced below, tiny.py and
    demo.py run in this file, any other (evaluation) config must be named by another test file."""
    others = "".join(
        p.read_text() for p in (REPO / "tests").glob("test_*.py") if p.name != "test_training.py"
    )
    for name in CONFIGS:
        if name in TRAINING_CONFIGS or name in ("tiny", "demo", "ours"):
            continue
        assert re.search(rf"\b{name}\b", others), f"configs/{name}.py is not tested"
    assert set(tiny.STAGES) == set(TASKS)


def load_config(name):
    import importlib

    return importlib.import_module(f"configs.{name}").get_config()


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_training_config_traces_at_full_size(name, converted):
    """The real stage config builds its task and one train step traces abstractly at the paper's
    sizes and batch (no compute), with the recorded schedule."""
    config = load_config(name)
    assert config.task in TASKS and config.num_train_steps > max(config.optim.boundaries, default=0)
    if config.task == "shift_refine":
        config.refine.stage1_weights = str(converted["dfnet"])
    task = TASKS[config.task](config)
    states = jax.eval_shape(task.init_states, jax.random.key(0))
    frozen = task.frozen()
    batch = task.example_batch(1, config.data.global_batch_size)
    step = jax.vmap(task.train_step, axis_name=parallel.AXIS)
    add = lambda t: jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), t)  # noqa: E731
    rng = jax.ShapeDtypeStruct((1,), jax.random.key(0).dtype)
    new, metrics = jax.eval_shape(step, add(states), add(frozen), batch, rng)
    assert metrics["loss"].shape == (1,)
    assert jax.tree.map(lambda x: x.shape[1:], new["g"].params) == jax.tree.map(
        lambda x: x.shape, states["g"].params
    )


@pytest.mark.parametrize("stage", ours.STAGES)
def test_our_recipe_traces_and_chains_its_stages(stage, converted):
    """configs/ours.py (the shipped models' recipe): every stage builds its task and traces one
    step at its sizes; a stage starts only from earlier stages' workdirs."""
    config = ours.get_config(stage)
    assert config.num_train_steps == ours.STEPS[stage] > max(config.optim.boundaries)
    earlier = ours.STAGES[: ours.STAGES.index(stage)]
    sources = [s.split("=")[-1] for s in config.init_from.split(",") if s]
    if config.task == "shift_refine":
        sources.append(config.refine.stage1_weights)
        config.refine.stage1_weights = str(converted["dfnet"])
    assert all(src.startswith(ours.RUNS + "/") and src.split("/")[-1] in earlier for src in sources)
    task = TASKS[config.task](config)
    states = jax.eval_shape(task.init_states, jax.random.key(0))
    batch = task.example_batch(1, config.data.global_batch_size)
    add = lambda t: jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), t)  # noqa: E731
    rng = jax.ShapeDtypeStruct((1,), jax.random.key(0).dtype)
    step = jax.vmap(task.train_step, axis_name=parallel.AXIS)
    _, metrics = jax.eval_shape(step, add(states), add(task.frozen()), batch, rng)
    assert metrics["loss"].shape == (1,)


@pytest.mark.parametrize("stage", ["dfnet", "shift_refine"])
def test_dfnet_loss_weights_come_from_the_config(stage, dfnet_run):
    """config.loss.dfnet weights DFNet's and the refinement's terms (ours.py lowers DFNet's style)."""
    config = tiny_config(stage)
    if stage == "shift_refine":
        config.refine.stage1_weights = str(dfnet_run[0])
    task = TASKS[config.task](config)
    g = task.init_states(jax.random.key(0))["g"]
    frozen = task.frozen()
    batch = task.example_batch(1, 2)
    rng = np.random.default_rng(0)
    batch["image_hr"] = rng.uniform(size=batch["image_hr"].shape).astype(np.float32)
    batch["mask"][..., 4:12, 4:12, :] = 1.0

    def total(weights):
        task.config.loss.dfnet.update(weights)
        loss = lambda b: task.loss(g.params, g.model_state, frozen, b, None)[1][0]  # noqa: E731
        return jax.vmap(loss, axis_name=parallel.AXIS)(batch)

    paper = total(losses.DFNET_WEIGHTS)
    lighter = total({"style": 60.0})
    expected = paper["total"] - 180.0 * paper["style"]
    np.testing.assert_allclose(lighter["total"], expected, rtol=1e-5)
    assert float(paper["style"][0]) > 0


# --------------------------------------------------------------------------------------------------
# Resume, divergence, init_from.

# eps = 1: Adam's update linear in the gradient, so float noise between processes (thread counts,
# reduction order) stays at noise level instead of becoming +-lr (see the pmap equivalence test).
RESUME_FLAGS = {
    "num_train_steps": 12,
    "checkpoint_every": 2,
    "log_every": 2,
    "sample_every": 0,
    "optim.eps": 1.0,
}


def train_cmd(workdir, stage="zoom_pretrain_coarse", **flags):
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        f"--config={REPO}/configs/tiny.py:{stage}",
        f"--workdir={workdir}",
    ]
    return cmd + [
        f"--config.{k}={v}" if "." in k or k in RESUME_FLAGS else f"--{k}={v}" for k, v in flags.items()
    ]


def wait_for_checkpoint(proc, workdir, step, timeout=900):
    target = Path(workdir) / "checkpoints" / str(step)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if target.is_dir() and (target / "_CHECKPOINT_METADATA").exists():
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no checkpoint {step} after {timeout} s")


def test_kill_9_and_sigterm_then_resume_equal_an_uninterrupted_run(tmp_path):
    """kill -9 after the step-2 checkpoint, restart, SIGTERM after step 4 (saves where it is and
    exits 143), finish: the final params equal an uninterrupted run's (same data stream and rngs)."""
    whole = tmp_path / "whole"
    train_lib.train_and_evaluate(tiny_config("zoom_pretrain_coarse", **RESUME_FLAGS), whole)
    work = tmp_path / "interrupted"
    proc = subprocess.Popen(
        train_cmd(work, **RESUME_FLAGS), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_checkpoint(proc, work, 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=600)
        killed_at = train_checkpoints.checkpoint_manager(work).latest_step()
        assert killed_at is not None and killed_at < 12
        proc = subprocess.Popen(
            train_cmd(work, **RESUME_FLAGS), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        wait_for_checkpoint(proc, work, killed_at + 2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 143, err[-2000:]  # preempted, not done
        assert err.strip().splitlines()[-1].startswith("train.py: stopped by SIGTERM at step")
    finally:
        proc.kill()
    stopped_at = train_checkpoints.checkpoint_manager(work).latest_step()
    assert killed_at < stopped_at < 12
    train_lib.train_and_evaluate(tiny_config("zoom_pretrain_coarse", **RESUME_FLAGS), work)
    # The training record: one leg per process, each from the checkpoint it resumed to the last one
    # it saved (the killed run's steps after its checkpoint are not counted).
    legs = train_checkpoints.checkpoint_legs(work)
    assert [(g["start_step"], g["end_step"]) for g in legs] == [
        (0, killed_at), (killed_at, stopped_at), (stopped_at, 12)
    ]  # fmt: skip
    assert all(g["seconds"] > 0 and g["platform"] == "cpu" and g["run"] == "interrupted" for g in legs)
    assert [(g["start_step"], g["end_step"]) for g in train_checkpoints.checkpoint_legs(whole)] == [
        (0, 12)
    ]
    # Float noise between the pytest process and fresh subprocesses reached 1.1e-6 on CI; a resume
    # that replayed other data or rngs would be off by ~lr * |g| / (|g| + 1), i.e. >= 1e-4.
    assert_trees_close(final_params(work), final_params(whole), atol=1e-5)


def test_resuming_a_checkpoint_without_a_record_counts_its_steps_as_unrecorded(tmp_path):
    import shutil

    from hrinpaint_jax.training_record import totals

    train_lib.train_and_evaluate(tiny_config("zoom_pretrain_sr", num_train_steps=1), tmp_path)
    shutil.rmtree(tmp_path / "checkpoints" / "1" / "record")  # as written before the record
    (tmp_path / "checkpoints" / "1" / train_checkpoints.MANIFEST).unlink()  # (and the manifest)
    train_lib.train_and_evaluate(tiny_config("zoom_pretrain_sr", num_train_steps=2), tmp_path)
    legs = train_checkpoints.checkpoint_legs(tmp_path)
    assert [(g["platform"], g["start_step"], g["end_step"]) for g in legs] == [
        ("unrecorded", 0, 1),
        ("cpu", 1, 2),
    ]
    t = totals(legs)["all"]
    assert t["updates"] == 2 and t["accelerator_updates"] == 0 and "unrecorded" in t["devices"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    train_lib.train_and_evaluate(tiny_config("zoom_pretrain_sr", num_train_steps=2), tmp_path)
    config = tiny_config("zoom_pretrain_sr", num_train_steps=4, **{"loss.l1": float("nan")})
    with pytest.raises(
        train_lib.TrainingDiverged, match="non-finite loss at step 3.*checkpoint is step 2"
    ):
        train_lib.train_and_evaluate(config, tmp_path)
    assert train_checkpoints.checkpoint_manager(tmp_path).all_steps() == [2]


def test_init_from_pretrained_subtrees_and_bad_sources(tmp_path):
    """The joint ZTI stage starts from the pretrained coarse and refine runs (their params and
    statistics under 'coarse' / 'refine'); the optimiser-step quirk carries the step count."""
    coarse, refine = tmp_path / "coarse", tmp_path / "refine"
    train_lib.train_and_evaluate(tiny_config("zoom_pretrain_coarse", num_train_steps=2), coarse)
    train_lib.train_and_evaluate(tiny_config("zoom_pretrain_refine", num_train_steps=2), refine)
    config = tiny_config("zoom_joint")
    _, states, _ = train_lib.build(config)
    spec = f"coarse={coarse},refine={refine}"
    started = initialise_from(dict(states), spec, restore_optimizer=True)
    src = final_params(coarse)["g"]
    assert_trees_close(jax.device_get(started["g"].params["coarse"]), src, atol=0)
    assert_trees_close(
        jax.device_get(started["g"].params["sr"]), jax.device_get(states["g"].params["sr"]), 0
    )
    assert int(started["g"].step) == 2 and "d" in started
    # The training record of both sources, in the order given (what the joint run's record starts with)
    legs = inherited_legs(spec)
    assert [(g["run"], g["task"], g["end_step"]) for g in legs] == [
        ("coarse", "zoom_pretrain_coarse", 2),
        ("refine", "zoom_pretrain_refine", 2),
    ]
    assert inherited_legs(f"{spec},sr={coarse}") == legs  # a source named twice counts once
    with pytest.raises(InitError, match="does not exist"):
        initialise_from(dict(states), f"coarse={tmp_path}/nope", False)
    with pytest.raises(InitError, match="does not fit"):
        initialise_from(dict(states), f"sr={coarse}", False)


def test_training_record_follows_init_from_into_the_exported_metadata(dfnet_run, tmp_path):
    """The export writes the record's legs and per-task totals; a run continuing the exported
    weights (the GPU recipe) starts its record with their legs."""
    from hrinpaint_jax.checkpoints import read_metadata
    from hrinpaint_jax.training_record import table

    meta = read_metadata(export_weights(dfnet_run[0], tmp_path / "w1"))
    legs = meta["training"]["legs"]
    assert [(g["task"], g["start_step"], g["end_step"], g["platform"]) for g in legs] == [
        ("dfnet", 0, 2, "cpu")
    ]
    assert legs[0]["global_batch_size"] == tiny_config("dfnet").data.global_batch_size
    totals = meta["training"]["totals"]
    assert list(totals) == ["dfnet", "all"] and totals["all"]["updates"] == 2
    assert totals["all"]["accelerator_seconds"] == 0.0 and totals["all"]["seconds"] == legs[0]["seconds"]
    assert "| dfnet | 2 | 0 |" in table(meta)
    more = tmp_path / "more"
    config = tiny_config("dfnet", num_train_steps=1, sample_every=0, init_from=str(tmp_path / "w1"))
    train_lib.train_and_evaluate(config, more)
    meta2 = read_metadata(export_weights(more, tmp_path / "w2"))
    legs2 = meta2["training"]["legs"]
    assert legs2[0] == legs[0] and (legs2[1]["run"], legs2[1]["end_step"]) == ("more", 1)
    assert meta2["training"]["totals"]["dfnet"]["updates"] == 3


# --------------------------------------------------------------------------------------------------
# Config validation: a bad field fails up front with one line naming it, nothing written.


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "data.global_batch_size",
            -4,
            "data.global_batch_size must be a positive multiple of the device "
            r"count \(4\), got -4",
        ),
        ("data.global_batch_size", 6, r"positive multiple of the device count \(4\), got 6"),
        ("num_train_steps", -10, "config.num_train_steps must be a positive integer, got -10"),
        ("num_train_steps", 0, "config.num_train_steps must be a positive integer, got 0"),
        ("checkpoint_every", 0, "config.checkpoint_every must be a positive integer, got 0"),
        ("sample_every", -1, "config.sample_every must be an integer >= 0, got -1"),
        ("data.cache_mb", -1, "config.data.cache_mb must be an integer >= 0, got -1"),
        (
            "data.crop_size",
            63,
            r"config.data.crop_size must be a multiple of config.data.lr_scale \(2\)",
        ),
        ("masks.kind", "huge", "config.masks.kind must be one of none, irregular, small"),
        ("optim.lr", -1e-3, "config.optim.lr must be > 0, got -0.001"),
        ("task", "gan", "config.task must be one of dfnet, "),
        ("dtype", "float16", "config.dtype must be one of"),
    ],
)
def test_check_config_names_the_bad_field(field, value, message):
    config = tiny_config("zoom_joint", **{field: value})
    with pytest.raises(train_lib.ConfigError, match=message):
        train_lib.check_config(config, num_devices=4)
    train_lib.check_config(tiny_config("zoom_joint"), num_devices=4)


def test_check_config_shift_refine_needs_a_stage1():
    config = tiny_config("shift_refine")
    with pytest.raises(train_lib.ConfigError, match="config.refine.stage1_weights"):
        train_lib.check_config(config)
    config.refine.stage1_weights = "weights/dfnet"
    config.refine.patch_size = 512
    with pytest.raises(train_lib.ConfigError, match="config.refine.patch_size must be <= "):
        train_lib.check_config(config)


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ("data.global_batch_size=-4", "data.global_batch_size"),
        ("num_train_steps=-10", "num_train_steps"),
    ],
)
def test_train_py_rejects_a_bad_config_before_any_work(tmp_path, flag, field):
    """Exit 2 with one line naming the field, no traceback, and no workdir."""
    work = tmp_path / "work"
    cmd = train_cmd(work) + [f"--config.{flag}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"train.py: config.{field} must be")
    assert not work.exists()


def test_a_failed_start_writes_nothing(tmp_path):
    """A missing init_from source fails before the workdir, its checkpoints/ or an event file exist."""
    work = tmp_path / "work"
    config = tiny_config("zoom_pretrain_coarse", init_from=str(tmp_path / "nope"))
    with pytest.raises(InitError, match="does not exist"):
        train_lib.train_and_evaluate(config, work)
    assert not work.exists()


# --------------------------------------------------------------------------------------------------
# Multi-host.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process_with_four_devices(tmp_path):
    """2 processes x 2 CPU devices (gloo collectives) train 3 tiny steps and end with the params of a
    1-process x 4-device run: same global batches, synchronised BatchNorm across processes. Adam's
    eps = 1 keeps its update linear in the gradient (see the pmap equivalence test)."""
    flags = {
        "num_train_steps": 3,
        "checkpoint_every": 3,
        "log_every": 1,
        "sample_every": 0,
        "optim.eps": 1.0,
    }
    single = tmp_path / "single"
    train_lib.train_and_evaluate(tiny_config("zoom_pretrain_coarse", **flags), single)
    multi = tmp_path / "multi"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    address = f"localhost:{free_port()}"
    procs = [
        subprocess.Popen(
            train_cmd(multi, coordinator_address=address, num_processes=2, process_id=i, **flags),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        errors = [p.communicate(timeout=900)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, err in zip(procs, errors, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "process 1 of 2; 2 local / 4 global devices" in errors[1]
    assert_trees_close(final_params(multi), final_params(single), atol=1e-5)
    assert list(multi.glob("events.out.tfevents.*"))  # written by process 0 only


def test_demo_config_trains_and_inpaints_the_held_out_photo(tmp_path):
    """configs/demo.py (what make demo trains, here for 2 steps) never sees the held-out photo, and
    its exported model inpaints that photo through the user-facing CLI path."""
    from configs import demo as demo_config
    from hrinpaint_jax.commands.demo import run_trained_demo
    from hrinpaint_jax.input_pipeline import host_batches
    from hrinpaint_jax.tasks import data_config

    config = demo_config.get_config()
    assert "astronaut.png" in data_config(config).holdout
    batch = next(
        host_batches(
            data_config(config, crop_size=600, global_batch_size=4, flip=False),
            num_devices=1,
            process_index=0,
            process_count=1,
        )
    )
    assert batch["image_hr"].shape[1] == 4  # coffee.png (600 x 400, grown to 600^2) only
    config.num_train_steps, config.sample_every = 2, 2
    train_lib.train_and_evaluate(config, tmp_path / "train")
    lines = []
    strip = run_trained_demo(tmp_path / "train", tmp_path / "out", log=lines.append)
    assert strip.is_file() and (tmp_path / "out" / "weights_trained" / "zoom").is_dir()
    assert any("tensorboard --logdir" in line for line in lines)
