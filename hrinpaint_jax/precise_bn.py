"""Population BatchNorm statistics for a trained model, from one large train-mode batch.

Training keeps an exponential moving average of per-batch statistics. With the batches of 2-4
images our CPU recipes use (``configs/ours.py``) that average is biased: the biased variance of a
batch of B images misses the part of the between-image variance that its own mean absorbs (in
expectation it is ``var_pop - var(batch mean)``, about half the between-image term at B = 2). In
inference mode every BatchNorm then scales its output up a little, and in the Zoom-to-Inpaint
refinement net (20 BatchNorms in a row) the excess compounds: after 800 + 130 updates at batch 2
its eval-mode activations grew to 19x their train-mode spread and its fills ran to -10..18 on a
[0, 1] scale.

``population_statistics`` runs the training forward once on a batch of many images
(``hrinpaint export --precise-bn N``; N = 32 in ``make weights-ours``) and stores the mean and
biased variance every BatchNorm computed on it as its running statistics: the statistics of train
mode with a batch large enough to stand for the population, so that each layer's statistics were
measured on inputs normalised as inference will normalise them. (Averaging the statistics of
many small batches, the "PreciseBN" of Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021,
leaves the upstream layers normalised per small batch while measuring; on our refinement net 32
batches of 2 left the held-out fills at -8..19, one batch of 32 brought them to -0.75..1.01.)
Only ``batch_stats`` change.
"""

from __future__ import annotations

import logging
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from hrinpaint_jax import parallel
from hrinpaint_jax.layers import KerasBatchNorm, TorchBatchNorm, batch_moments

logger = logging.getLogger(__name__)

BATCH_NORMS = (KerasBatchNorm, TorchBatchNorm)


def _moments_of_step(task, states, frozen, batch, rng) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Inside ``pmap``: {BatchNorm path: (mean, biased variance)} over the global batch, exactly as
    each layer computes them (``layers.batch_moments``), in one train-mode forward (no gradients).
    A module called more than once contributes the pooled statistics of its calls."""
    calls: dict[str, list] = {}

    def record(next_fun, args, kwargs, context):
        module = context.module
        if (
            context.method_name == "__call__"
            and isinstance(module, BATCH_NORMS)
            and not module.use_running_average
            and not module.is_initializing()
        ):
            mean, var, _ = batch_moments(args[0], parallel.AXIS)
            calls.setdefault("/".join(module.path), []).append((mean, var))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        task.train_forward(states, frozen, batch, rng)
    pooled = {}
    for path, found in calls.items():
        if len(found) == 1:
            pooled[path] = found[0]
            continue
        mean = sum(m for m, _ in found) / len(found)
        square = sum(v + m * m for m, v in found) / len(found)
        pooled[path] = (mean, square - mean * mean)
    return pooled


def population_statistics(task, states: dict, frozen: dict, batch: dict, rng: jax.Array) -> dict:
    """``states`` with the ``batch_stats`` of the generator state ``states['g']`` (every task's
    trained network, the one ``export`` writes) replaced by the statistics its BatchNorms compute
    in one train-mode forward on ``batch``.

    Args:
      task: the ``tasks.Task`` of the training run.
      states: its host train states (as restored from the run's checkpoint).
      frozen: ``task.frozen()``.
      batch: one device batch (leading axis = local devices; ``prefetch_to_device`` layout), as
        large as memory allows: its images together stand for the population.
      rng: base key (masks come with the batch).
    Returns:
      the new states dict (host arrays).
    """
    name = "g"
    stats = states[name].model_state.get("batch_stats")
    if not stats:
        raise ValueError(f"the {task.config.task} network has no BatchNorm statistics to recompute")
    step_fn = jax.pmap(lambda s, f, b, r: _moments_of_step(task, s, f, b, r), axis_name=parallel.AXIS)
    r_states, r_frozen = parallel.replicate(states), parallel.replicate(frozen)
    moments = parallel.to_host(step_fn(r_states, r_frozen, batch, parallel.replicate(rng)))
    flat = traverse_util.flatten_dict(jax.tree.map(np.asarray, stats))
    for path, (mean, var) in moments.items():
        layer = tuple(path.split("/"))
        if layer + ("mean",) not in flat:
            raise ValueError(f"BatchNorm {path} of the forward is not in the {name} state")
        # The biased variance, as the layers use it in train mode. (TorchBatchNorm keeps an unbiased
        # running variance: its n / (n - 1), n ~ 10^6 values here, is left out.)
        flat[layer + ("mean",)] = np.asarray(mean, np.float32)
        flat[layer + ("var",)] = np.maximum(np.asarray(var, np.float32), 0.0)
    missing = sorted({"/".join(k[:-1]) for k in flat} - set(moments))
    if missing:
        raise ValueError(f"the train-mode forward never ran these BatchNorms: {', '.join(missing[:4])}")
    new_stats = traverse_util.unflatten_dict(flat)
    logger.info("population BatchNorm statistics: %s", describe_change(stats, new_stats))
    model_state = {**states[name].model_state, "batch_stats": new_stats}
    return {**states, name: states[name].replace(model_state=model_state)}


def describe_change(before: Any, after: Any) -> str:
    """One line: how far the variances moved (median and extreme ratio new / old)."""
    old = traverse_util.flatten_dict(jax.tree.map(np.asarray, before))
    ratios = [
        np.asarray(value, np.float64) / np.maximum(np.asarray(old[key], np.float64), 1e-12)
        for key, value in traverse_util.flatten_dict(after).items()
        if key[-1] == "var"
    ]
    flat = np.concatenate([r.ravel() for r in ratios])
    return (
        f"{len(ratios)} BatchNorms; population / running variance: median {np.median(flat):.2f}, "
        f"range {flat.min():.2f}..{flat.max():.2f}"
    )
