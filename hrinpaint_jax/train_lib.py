"""The training loop shared by every stage: ``train_and_evaluate(config, workdir)``.

* The config is checked first (``check_config``): a bad field fails with one line naming it,
  before any model is built or any file is written.
* Data parallel over all devices of all processes (``jax.pmap``, axis ``parallel.AXIS``; gradients,
  metrics and BatchNorm statistics averaged over devices). One compiled step for the whole run
  (states are donated; batches have fixed shapes).
* One training process per workdir (``train_checkpoints.WorkdirLock``): a second one stops with
  ``WorkdirBusy`` before touching anything.
* Checkpoints (``train_checkpoints``) in ``WORKDIR/checkpoints`` every ``config.checkpoint_every``
  steps, at the end and on SIGTERM (then ``Preempted`` is raised); a run restarted on the same
  workdir resumes from the newest intact step (same data stream and rngs as an uninterrupted run;
  damaged newer steps are skipped and moved aside). ``config.init_from`` starts a fresh run from
  another stage's workdir or a converted weights directory (``init_from``).
* ``metric_writers.MetricWriter`` (no TensorFlow; process 0 writes TensorBoard event files and
  ``WORKDIR/metrics.csv``, every process logs): every loss term, the learning rate, steps/s, ETA
  and elapsed time; PNG sample grids (input | mask | output | target) as image summaries and in
  ``WORKDIR/samples`` every ``config.sample_every`` steps.
* A NaN / inf loss stops the run with ``TrainingDiverged``; no checkpoint is written after it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from hrinpaint_jax import parallel, training_record
from hrinpaint_jax.image_io import save_png
from hrinpaint_jax.init_from import inherited_legs, initialise_from
from hrinpaint_jax.layers import compute_dtype
from hrinpaint_jax.masks import MaskSchedule
from hrinpaint_jax.metric_writers import MetricWriter, ReportProgress
from hrinpaint_jax.tasks import TASKS, Task, TrainState, get_task
from hrinpaint_jax.train_checkpoints import (
    WorkdirLock,
    checkpoint_manager,
    is_workdir,
    remove_partial_saves,
    restore_latest,
    save_checkpoint,
)

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class ConfigError(ValueError):
    """A training config field with a value the run cannot use; the message names the field."""


class Preempted(RuntimeError):
    """SIGTERM: the run saved a checkpoint at ``step`` and stopped (``train.py`` exits 143)."""

    def __init__(self, step: int):
        super().__init__(f"stopped by SIGTERM at step {step}, checkpoint saved; rerun to resume")
        self.step = step


MASK_KINDS = ("none", "irregular", *MaskSchedule.KINDS)


def check_config(config, num_devices: int | None = None) -> None:
    """Raises ``ConfigError`` (one line, naming the field) for a config the loop cannot run.

    Needs no device and touches no file; ``num_devices`` (all processes' devices) also checks that
    the global batch splits evenly over them."""

    def positive(name: str, value, minimum: int = 1) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise ConfigError(f"config.{name} must be {what}, got {value!r}")

    if config.task not in TASKS:
        raise ConfigError(f"config.task must be one of {', '.join(TASKS)}, got {config.task!r}")
    try:
        compute_dtype(config.get("dtype", "float32"), "config.dtype")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    d = config.data
    batch = d.global_batch_size
    if num_devices is not None and (not isinstance(batch, int) or batch <= 0 or batch % num_devices):
        raise ConfigError(
            f"config.data.global_batch_size must be a positive multiple of the device count "
            f"({num_devices}), got {batch!r}"
        )
    positive("data.global_batch_size", batch)
    positive("data.lr_scale", d.lr_scale)
    positive("data.crop_size", d.crop_size)
    positive("data.cache_mb", d.get("cache_mb", 0), minimum=0)
    if d.crop_size % d.lr_scale:
        raise ConfigError(
            f"config.data.crop_size must be a multiple of config.data.lr_scale ({d.lr_scale}), "
            f"got {d.crop_size}"
        )
    positive("num_train_steps", config.num_train_steps)
    positive("log_every", config.log_every)
    positive("checkpoint_every", config.checkpoint_every)
    positive("keep_checkpoints", config.keep_checkpoints)
    positive("sample_every", config.sample_every, minimum=0)
    if not config.optim.lr > 0:
        raise ConfigError(f"config.optim.lr must be > 0, got {config.optim.lr!r}")
    bounds = config.optim.boundaries
    if (
        not isinstance(bounds, (tuple, list))
        or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in bounds)
        or list(bounds) != sorted(set(bounds))
    ):
        raise ConfigError(
            f"config.optim.boundaries must be increasing update counts, e.g. (1000, 2000), "
            f"got {bounds!r}"
        )
    source = d.source
    if source.startswith("folder:") and not os.path.isdir(source[len("folder:") :]):
        raise ConfigError(f"config.data.source: no folder {source[len('folder:') :]}")
    if source != "samples" and not source.startswith(("folder:", "tfds:")):
        raise ConfigError(
            f"config.data.source must be 'tfds:NAME', 'folder:PATH' or 'samples', got {source!r}"
        )
    if config.masks.kind not in MASK_KINDS:
        raise ConfigError(
            f"config.masks.kind must be one of {', '.join(MASK_KINDS)}, got {config.masks.kind!r}"
        )
    if config.task == "shift_refine":
        r = config.refine
        positive("refine.patch_size", r.patch_size)
        if r.patch_size > d.crop_size:
            raise ConfigError(
                f"config.refine.patch_size must be <= config.data.crop_size ({d.crop_size}), "
                f"got {r.patch_size}"
            )
        if not 0.0 <= r.hole_min <= r.hole_max <= 1.0:
            raise ConfigError(
                f"config.refine.hole_min / hole_max must satisfy 0 <= min <= max <= 1, "
                f"got {r.hole_min} / {r.hole_max}"
            )
        if not (r.stage1_weights or r.stage1_dir):
            raise ConfigError(
                "shift_refine needs config.refine.stage1_weights (a DFNet weights dir or DFNet "
                "training workdir) or a precomputed config.refine.stage1_dir"
            )


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
    """Trains ``config.task`` for ``config.num_train_steps`` in ``workdir`` (resuming from its newest
    intact checkpoint if it holds any). Returns the last logged metrics; ``Preempted`` after a
    SIGTERM (checkpoint saved).

    Nothing is written to ``workdir`` before the config, the networks, the first batch of a fresh
    run and ``config.init_from`` have been checked, nor while another process trains in it."""
    check_config(config, jax.device_count())
    workdir = os.path.abspath(os.fspath(workdir))
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"workdir {workdir} is a file, not a folder")
    primary = jax.process_index() == 0
    lock = None
    try:
        if primary and os.path.isdir(workdir):
            lock = WorkdirLock(workdir).acquire()  # before anything is read or moved
        task, states, frozen = build(config)
        resumed = restore_latest(workdir, states, move_aside=primary) if is_workdir(workdir) else None
        first = None
        if resumed is not None:
            start, states, legs = resumed
            if not legs:  # a checkpoint from before the training record: say what is unaccounted
                legs = [training_record.unrecorded(config, workdir, start)]
                logger.warning(
                    "checkpoint %d has no training record: steps 0-%d unrecorded", start, start
                )
            logger.info("resumed from step %d in %s", start, workdir)
        else:
            start, legs = 0, []
            if config.init_from:
                states = initialise_from(states, config.init_from, config.init_from_optimizer)
                legs = inherited_legs(config.init_from)
            first = task.batches(0)  # a bad data source fails here, before the workdir exists
            first = itertools.chain([next(first)], first)
            if primary:
                os.makedirs(workdir, exist_ok=True)
                lock = lock or WorkdirLock(workdir).acquire()
        manager = checkpoint_manager(workdir, config)
        if primary:
            remove_partial_saves(manager.directory)  # what a killed save left (orbax keeps it)
        writer = MetricWriter(workdir, primary=primary, resume_step=start if resumed else None)
        try:
            return _train_loop(
                config, workdir, task, states, frozen, start, manager, writer, legs, first
            )
        finally:
            writer.close()
            manager.close()
    finally:
        if lock is not None:
            lock.release()


def _train_loop(
    config,
    workdir: str,
    task: Task,
    states: dict[str, TrainState],
    frozen: dict,
    start: int,
    manager,
    writer,
    legs: list[dict],
    batches=None,
) -> dict[str, float]:
    primary = jax.process_index() == 0
    clock = training_record.LegClock(config, workdir, start)  # this run's leg of the record
    if start == 0:
        writer.write_hparams(_flat_config(config))
    total = config.num_train_steps
    report = ReportProgress(total, writer, config.log_every, start_step=start)

    p_step = jax.pmap(task.train_step, axis_name=parallel.AXIS, donate_argnums=(0,))
    p_samples = jax.pmap(task.samples, axis_name=parallel.AXIS)
    r_states, r_frozen = parallel.replicate(states), parallel.replicate(frozen)
    r_rng = parallel.replicate(jax.random.fold_in(jax.random.key(config.seed), 1))
    batches = parallel.prefetch_to_device(batches or task.batches(start), 2)
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
                    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
                    save_png(os.path.join(workdir, "samples", f"step_{step:07d}.png"), grid)
            if due_save or due_stop:
                record = [*legs, clock.leg(step)]
                save_checkpoint(manager, step, parallel.unreplicate(r_states), config, record)
            if due_stop:
                logger.warning("stopped at step %d on SIGTERM", step)
                raise Preempted(step)
    return last


def _flat_config(config) -> dict[str, Any]:
    flat = traverse_util.flatten_dict(json.loads(config.to_json_best_effort()), sep=".")
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
