"""Training: every tiny stage runs, pmap equivalence, resume after kill -9 / SIGTERM, init_from,
export, NaN stop, multi-host (2 processes x 2 CPU devices == 1 process x 4 devices)."""

import logging
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import jax_utils, traverse_util

from configs import tiny
from hrinpaint_jax import parallel, train_lib

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
    _, tree, _ = train_lib.latest_state_tree(workdir)
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
    assert train_lib.checkpoint_manager(workdir).all_steps() == [2]
    assert (workdir / "samples" / "step_0000002.png").is_file()
    assert list(workdir.glob("events.out.tfevents.*"))


def test_export_and_shift_refine_on_a_trained_stage1(dfnet_run, tmp_path):
    """The trained DFNet exported as a weights dir drives the refinement stage's stage 1; the
    exported refinement weights load with ``load_pretrained``."""
    from hrinpaint_jax.checkpoints import load_pretrained

    exported = train_lib.export_weights(dfnet_run[0], tmp_path / "dfnet_weights")
    model, variables, meta = load_pretrained(exported)
    assert meta["model"] == "dfnet" and model.base_features == 4
    work = tmp_path / "refine"
    config = tiny_config("shift_refine", num_train_steps=1, **{"refine.stage1_weights": exported})
    metrics = train_lib.train_and_evaluate(config, work)
    assert np.isfinite(metrics["loss"]) and {"l1", "perceptual", "style", "tv"} <= set(metrics)
    _, _, meta = load_pretrained(train_lib.export_weights(work, tmp_path / "refine_weights"))
    assert meta["model"] == "shift_refine" and meta["step"] == 1


@pytest.mark.parametrize("stage", ["zoom_pretrain_refine", "zoom_pretrain_sr"])
def test_tiny_zoom_pretraining_stages(stage, tmp_path):
    metrics = train_lib.train_and_evaluate(tiny_config(stage, num_train_steps=1), tmp_path)
    assert np.isfinite(metrics["loss"]) and ("vgg" in metrics) == (stage != "zoom_pretrain_sr")


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
        put = lambda t, d=devices: jax_utils.replicate(t, d, axis_name=parallel.AXIS)  # noqa: E731
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
