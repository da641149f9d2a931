"""The training loop shared by every stage: ``train_and_evaluate(config, workdir)``.

* Data parallel over all devices of all processes (``jax.pmap``, axis ``parallel.AXIS``; gradients,
  metrics and BatchNorm statistics averaged over devices). One compiled step for the whole run
  (states are donated; batches have fixed shapes).
* orbax ``CheckpointManager`` in ``WORKDIR/checkpoints``: the train states plus the config as JSON,
  every ``config.checkpoint_every`` steps, at the end and on SIGTERM; keeps
  ``config.keep_checkpoints``. A run restarted on the same workdir resumes from the latest step
  (same data stream and rngs as an uninterrupted run). ``config.init_from`` starts a fresh run from
  another stage's workdir or a converted weights directory.
* ``metric_writers.MetricWriter`` (no TensorFlow; process 0 writes TensorBoard event files and
  ``WORKDIR/metrics.csv``, every process logs): every loss term, the learning rate, steps/s, ETA
  and elapsed time; PNG sample grids (input | mask | output | target) as image summaries and in
  ``WORKDIR/samples`` every ``config.sample_every`` steps.
* A NaN / inf loss stops the run with ``TrainingDiverged``; no checkpoint is written after it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from hrinpaint_jax import parallel
from hrinpaint_jax.tasks import Task, TrainState, get_task

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class InitError(ValueError):
    """``config.init_from`` / stage-1 weights that do not fit."""


# --------------------------------------------------------------------------------------------------
# Checkpoints.


def checkpoint_manager(workdir: str | os.PathLike, config=None):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints if config is not None else None,
        create=True,
        enable_async_checkpointing=False,
    )
    path = os.path.abspath(os.path.join(os.fspath(workdir), CHECKPOINT_DIR))
    return ocp.CheckpointManager(path, options=options, item_names=("state", "config"))


def _states_tree(states: dict[str, TrainState]) -> dict[str, Any]:
    return {name: s.to_tree() for name, s in states.items()}


def save_checkpoint(manager, step: int, states: dict[str, TrainState], config) -> None:
    import orbax.checkpoint as ocp

    tree = jax.device_get(_states_tree(states))
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(tree),
            config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
        ),
        force=True,
    )
    manager.wait_until_finished()


def restore_checkpoint(manager, step: int, states: dict[str, TrainState]) -> dict[str, TrainState]:
    """Restores into the structure of freshly initialised ``states`` (abstract target)."""
    import orbax.checkpoint as ocp

    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype), _states_tree(states)
    )
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return {name: s.from_tree(restored.state[name]) for name, s in states.items()}


def latest_state_tree(workdir: str | os.PathLike) -> tuple[int, dict[str, Any], dict]:
    """(step, raw state tree, saved config dict) of the latest checkpoint of a training workdir."""
    import orbax.checkpoint as ocp

    manager = checkpoint_manager(workdir)
    step = manager.latest_step()
    if step is None:
        raise InitError(f"no checkpoint in training workdir {workdir}")
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), config=ocp.args.JsonRestore())
    )
    return step, restored.state, restored.config


def is_workdir(path: str | os.PathLike) -> bool:
    return (Path(path) / CHECKPOINT_DIR).is_dir()


def load_weights(path: str, expect_model: str | None = None) -> tuple[Any, dict]:
    """(Flax module, variables) of a weights directory (``convert_weights`` / ``export_weights``)
    or of the generator state of a training workdir (module rebuilt from its saved config)."""
    if is_workdir(path):
        _, tree, saved = latest_state_tree(path)
        from ml_collections import ConfigDict

        task = get_task(ConfigDict(saved))
        name, kwargs, state_name = task.export()
        if expect_model and name != expect_model:
            raise InitError(f"{path} trains {name}, expected {expect_model}")
        from hrinpaint_jax.models import get_model

        model = get_model(name, **_hashable(kwargs))
        state = tree[state_name]
        return model, jax.tree.map(jnp.asarray, {"params": state["params"], **state["model_state"]})
    from hrinpaint_jax.checkpoints import load_pretrained

    model, variables, meta = load_pretrained(path)
    if expect_model and meta["model"] != expect_model:
        raise InitError(f"weights in {path} are a {meta['model']} model, expected {expect_model}")
    return model, variables


def _hashable(kwargs: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


STORAGE_DTYPES = ("float32", "float16", "bfloat16")


def export_weights(
    workdir: str | os.PathLike,
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    dtype: str = "float32",
    work_size: int | None = None,
    precise_bn: int = 0,
) -> str:
    """Writes the latest trained generator of ``workdir`` as a weights directory that
    ``hrinpaint inpaint --weights`` and ``load_pretrained`` read (DFNet, refinement U-Net or the
    whole Zoom-to-Inpaint model with its discriminator).

    ``dtype`` is the storage type of the floating-point arrays: float16 / bfloat16 halve the size;
    ``load_pretrained`` always restores float32 (orbax casts on read). ``work_size`` (Zoom-to-Inpaint
    only) records the longer image side the model should run at (``ZoomInpainter``).
    ``precise_bn`` > 0 replaces the BatchNorm running averages by the statistics of one train-mode
    forward on that many training images of the run's own config (``precise_bn.py``); the workdir
    is not changed."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    if precise_bn < 0:
        raise ValueError(f"precise_bn must be >= 0 images, got {precise_bn}")
    from ml_collections import ConfigDict

    from hrinpaint_jax.checkpoints import check_output_dir, save_pretrained

    check_output_dir(out_dir, overwrite)  # before any work (precise_bn runs the model)
    step, tree, saved = latest_state_tree(workdir)
    task = get_task(ConfigDict(saved))
    name, kwargs, state_name = task.export()
    if precise_bn:
        tree = _with_precise_bn(task, tree, step, precise_bn)
    state = tree[state_name]
    params, model_state = dict(state["params"]), dict(state["model_state"])
    if "d" in tree:  # ZTI: the discriminator lives in the same weights directory
        params["discriminator"] = tree["d"]["params"]
        model_state["spectral"] = {"discriminator": tree["d"]["model_state"]["spectral"]}
    meta = {"source": os.path.basename(os.path.abspath(os.fspath(workdir))), "step": int(step),
            "task": saved["task"], "storage_dtype": dtype}  # fmt: skip
    if precise_bn:
        meta["precise_bn_images"] = int(precise_bn)
    if work_size:
        if name != "zoom":
            raise ValueError(f"a work size is for Zoom-to-Inpaint weights, not {name}")
        meta["work_size"] = int(work_size)
    variables = {"params": params, **model_state}
    if dtype != "float32":
        store = jnp.dtype(dtype)
        variables = jax.tree.map(
            lambda x: np.asarray(x).astype(store) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            variables,
        )
    return save_pretrained(out_dir, name, variables, kwargs, meta, overwrite)


def _with_precise_bn(task, tree: dict[str, Any], step: int, images: int) -> dict[str, Any]:
    """The run's state ``tree`` (restored at ``step``) with population BatchNorm statistics
    (``precise_bn``) from one train-mode forward on ``images`` training images, drawn as the run
    would draw them after ``step``."""
    import copy

    from hrinpaint_jax import precise_bn

    # The forward needs params, statistics and step; the optimiser state is not used.
    states = task.init_states(jax.random.fold_in(jax.random.key(task.config.seed), 0))
    states = {name: s.replace(step=tree[name]["step"], params=tree[name]["params"],
                              model_state=tree[name]["model_state"])
              for name, s in states.items()}  # fmt: skip
    config = copy.deepcopy(task.config)
    devices = jax.device_count()
    config.data.global_batch_size = -(-images // devices) * devices  # whole images per device
    big = get_task(config)
    batch = next(parallel.prefetch_to_device(big.batches(step), 1))
    rng = jax.random.fold_in(jax.random.key(config.seed), 1)
    states = precise_bn.population_statistics(big, states, big.frozen(), batch, rng)
    return jax.device_get(_states_tree(states))


def _flat(tree) -> dict[tuple[str, ...], Any]:
    return traverse_util.flatten_dict(tree) if tree else {}


def _place(target: dict, source: dict, what: str) -> dict:
    """``target`` with every leaf of ``source`` put at the same path; shapes must agree and every
    source leaf must exist in the target."""
    flat_t, flat_s = _flat(target), _flat(source)
    unknown = [k for k in flat_s if k not in flat_t]
    bad = [k for k in flat_s if k in flat_t and np.shape(flat_s[k]) != np.shape(flat_t[k])]
    if unknown or bad:
        items = [f"unexpected {'/'.join(k)}" for k in unknown[:3]]
        items += [f"{'/'.join(k)} {np.shape(flat_s[k])} != {np.shape(flat_t[k])}" for k in bad[:3]]
        raise InitError(f"{what} does not fit: {', '.join(items)}")
    merged = {**flat_t, **{k: jnp.asarray(v) for k, v in flat_s.items()}}
    return traverse_util.unflatten_dict(merged)


def initialise_from(states: dict[str, TrainState], spec: str, restore_optimizer: bool) -> dict:
    """Applies ``config.init_from``: comma-separated entries ``[subtree=]PATH``.

    PATH is a training workdir (its latest checkpoint) or a weights directory. Without ``subtree``
    the source's states replace the same-named states (for a weights directory: the generator, and
    the discriminator of a Zoom-to-Inpaint model). With ``subtree`` (e.g. ``coarse=runs/coarse``)
    the source's generator params / statistics go under that key of the generator: the ZTI joint
    stage starts from the pretrained coarse and refine nets that way. ``restore_optimizer`` also
    takes a workdir's optimiser states, step counts included (the released code's behaviour); for
    ``subtree`` entries only the step count carries over (the largest of the sources), which is what
    makes the released stage-2 schedule run at its last value; Adam's moments start at zero.
    """
    import optax

    carried_step = None
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        subtree, _, path = entry.rpartition("=")
        if not os.path.exists(path):
            raise InitError(f"init_from: {path} does not exist")
        sources = _source_states(path)
        if subtree:
            src = sources["g"]
            g = states["g"]
            params = _place(g.params, _nest(src["params"], subtree), f"init_from {entry}")
            stats = {c: _nest(v, subtree) for c, v in src["model_state"].items() if v}
            model_state = _place(g.model_state, stats, f"init_from {entry} (statistics)")
            states["g"] = g.replace(params=params, model_state=model_state)
            if restore_optimizer and "step" in src:
                carried_step = max(int(src["step"]), carried_step or 0)
            continue
        for name, src in sources.items():
            if name not in states:
                continue
            s = states[name]
            params = _place(s.params, src["params"], f"init_from {path} ({name})")
            model_state = _place(s.model_state, src["model_state"], f"init_from {path} ({name})")
            s = s.replace(params=params, model_state=model_state)
            if restore_optimizer and "opt_state" in src:
                opt = jax.tree.map(lambda t, v: jnp.asarray(v, t.dtype), s.opt_state, src["opt_state"])
                s = s.replace(opt_state=opt, step=jnp.asarray(src["step"], jnp.int32))
            states[name] = s
        logger.info("initialised %s from %s", ", ".join(s for s in sources if s in states), path)
    if carried_step is not None:
        g = states["g"]
        count = jnp.asarray(carried_step, jnp.int32)
        states["g"] = g.replace(
            step=count, opt_state=optax.tree_utils.tree_set(g.opt_state, count=count)
        )
        logger.info("generator optimiser step count set to %d (init_from_optimizer)", carried_step)
    return states


def _nest(tree: dict, key: str) -> dict:
    """``{key: tree[key]}`` if the source holds that subtree (a whole ZTI model), else
    ``{key: tree}`` (a stand-alone pretrained net)."""
    return {key: tree.get(key, tree)} if tree else {}


def _source_states(path: str) -> dict[str, dict]:
    if is_workdir(path):
        return dict(latest_state_tree(path)[1])
    from hrinpaint_jax.checkpoints import load_pretrained

    _, variables, meta = load_pretrained(path)
    variables = dict(variables)
    params = dict(variables.pop("params"))
    out = {}
    if meta["model"] == "zoom" and "discriminator" in params:
        spectral = dict(variables.pop("spectral", {}))
        out["d"] = {"params": params.pop("discriminator"),
                    "model_state": {"spectral": spectral.pop("discriminator", {})}}  # fmt: skip
    out["g"] = {"params": params, "model_state": variables}
    return out


# --------------------------------------------------------------------------------------------------
# Sample grids.


def sample_grid(images: dict[str, np.ndarray], rows: int = 4) -> np.ndarray:
    """uint8 [rows*H, 4*W, 3]: input | mask | output | target for the first ``rows`` examples."""
    cols = []
    for key in ("input", "mask", "output", "target"):
        x = np.asarray(images[key][:rows], np.float32)
        if x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        cols.append(np.concatenate(list(x), axis=0))
    grid = np.concatenate(cols, axis=1)
    return np.round(np.clip(grid, 0.0, 1.0) * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# The loop.


class _StopFlag:
    """Set by SIGTERM (preemption): the loop saves a checkpoint and returns."""

    def __init__(self):
        self.set = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            logger.warning("SIGTERM: saving a checkpoint and stopping")
            self.set = True

        try:
            self._previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _check_finite(metrics: dict[str, float], step: int, manager) -> None:
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        last = manager.latest_step()
        where = f"the last good checkpoint is step {last}" if last is not None else "no checkpoint"
        raise TrainingDiverged(
            f"non-finite loss at step {step} ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
            f"stopped, {where}"
        )


def _mean_metrics(history: list[dict]) -> dict[str, float]:
    host = jax.device_get([parallel.unreplicate(m) for m in history])
    return {k: float(np.mean([h[k] for h in host])) for k in host[0]}


def build(config) -> tuple[Task, dict[str, TrainState], dict[str, Any]]:
    """(task, freshly initialised states on the host, frozen inputs) for ``config``."""
    task = get_task(config)
    rng = jax.random.key(config.seed)
    states = task.init_states(jax.random.fold_in(rng, 0))
    return task, states, task.frozen()


def train_and_evaluate(config, workdir: str | os.PathLike) -> dict[str, float]:
    """Trains ``config.task`` for ``config.num_train_steps`` in ``workdir`` (resuming if it holds
    checkpoints). Returns the last logged metrics."""
    from hrinpaint_jax.metric_writers import MetricWriter

    workdir = os.path.abspath(os.fspath(workdir))
    primary = jax.process_index() == 0
    task, states, frozen = build(config)  # config errors surface before anything is written
    if primary:
        os.makedirs(workdir, exist_ok=True)
    manager = checkpoint_manager(workdir, config)
    start = manager.latest_step()
    if start is not None:
        states = restore_checkpoint(manager, start, states)
        logger.info("resumed from step %d in %s", start, workdir)
    else:
        start = 0
        if config.init_from:
            states = initialise_from(states, config.init_from, config.init_from_optimizer)
    writer = MetricWriter(workdir, primary=primary)
    try:
        return _train_loop(config, workdir, task, states, frozen, start, manager, writer)
    finally:
        writer.close()
        manager.close()


def _train_loop(config, workdir: str, task: Task, states: dict[str, TrainState], frozen: dict,
                start: int, manager, writer) -> dict[str, float]:  # fmt: skip
    from hrinpaint_jax.metric_writers import ReportProgress

    primary = jax.process_index() == 0
    if start == 0:
        writer.write_hparams(_flat_config(config))
    total = config.num_train_steps
    report = ReportProgress(total, writer, config.log_every, start_step=start)

    p_step = jax.pmap(task.train_step, axis_name=parallel.AXIS, donate_argnums=(0,))
    p_samples = jax.pmap(task.samples, axis_name=parallel.AXIS)
    r_states, r_frozen = parallel.replicate(states), parallel.replicate(frozen)
    r_rng = parallel.replicate(jax.random.fold_in(jax.random.key(config.seed), 1))
    batches = parallel.prefetch_to_device(task.batches(start), 2)
    history: list[dict] = []
    last: dict[str, float] = {}
    step = start
    with _StopFlag() as stop:
        while step < total:
            batch = next(batches)
            r_states, metrics = p_step(r_states, r_frozen, batch, r_rng)
            history.append(metrics)
            step += 1
            report(step)
            due_save = step % config.checkpoint_every == 0 or step == total
            due_stop = bool(parallel.sum_over_processes(np.array([stop.set]))[0])
            if step % config.log_every == 0 or due_save or due_stop:
                last = _mean_metrics(history)
                history = []
                _check_finite(last, step, manager)
                writer.write_scalars(step, last)
            if config.sample_every and (step % config.sample_every == 0 or step == total):
                images = parallel.local_examples(p_samples(r_states, r_frozen, batch))
                grid = sample_grid(images)
                writer.write_images(step, {"samples": grid[None]})
                if primary:
                    from hrinpaint_jax.image_io import save_png

                    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
                    save_png(os.path.join(workdir, "samples", f"step_{step:07d}.png"), grid)
            if due_save or due_stop:
                save_checkpoint(manager, step, parallel.unreplicate(r_states), config)
            if due_stop:
                logger.warning("stopped at step %d on SIGTERM", step)
                break
    return last


def _flat_config(config) -> dict[str, Any]:
    flat = traverse_util.flatten_dict(json.loads(config.to_json_best_effort()), sep=".")
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
