"""Export of a trained stage: the latest generator of a training workdir written as a weights
directory (``checkpoints.save_pretrained`` layout) that ``hrinpaint inpaint --weights`` and
``load_pretrained`` read, optionally with population BatchNorm statistics (``precise_bn``)."""

from __future__ import annotations

import copy
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from hrinpaint_jax import parallel, training_record
from hrinpaint_jax.checkpoints import check_output_dir, save_pretrained
from hrinpaint_jax.models import merge_discriminator, model_kwargs
from hrinpaint_jax.precise_bn import population_statistics
from hrinpaint_jax.tasks import get_task
from hrinpaint_jax.train_checkpoints import (
    checkpoint_legs,
    latest_state_tree,
    stage_model,
    states_tree,
)

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
    check_output_dir(out_dir, overwrite)  # before any work (precise_bn runs the model)
    step, tree, saved = latest_state_tree(workdir)
    config = ConfigDict(saved)
    name = stage_model(config)
    if precise_bn:
        tree = _with_precise_bn(config, tree, step, precise_bn)
    state = tree["g"]
    variables = {"params": dict(state["params"]), **state["model_state"]}
    if "d" in tree:  # ZTI: the discriminator lives in the same weights directory
        d = tree["d"]
        variables = merge_discriminator(variables, {"params": d["params"], **d["model_state"]})
    meta = {
        "source": os.path.basename(os.path.abspath(os.fspath(workdir))),
        "step": int(step),
        "task": saved["task"],
        "storage_dtype": dtype,
    }
    if precise_bn:
        meta["precise_bn_images"] = int(precise_bn)
    legs = checkpoint_legs(workdir, step)  # the exported step's, even if training goes on
    if legs:  # what the weights were trained with, inherited legs included (training_record)
        meta["training"] = training_record.metadata(legs)
    if work_size:
        if name != "zoom":
            raise ValueError(f"a work size is for Zoom-to-Inpaint weights, not {name}")
        meta["work_size"] = int(work_size)
    if dtype != "float32":
        store = jnp.dtype(dtype)
        variables = jax.tree.map(
            lambda x: np.asarray(x).astype(store) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            variables,
        )
    return save_pretrained(out_dir, name, variables, model_kwargs(name, config), meta, overwrite)


def _with_precise_bn(config, tree: dict[str, Any], step: int, images: int) -> dict[str, Any]:
    """The run's state ``tree`` (restored at ``step``) with population BatchNorm statistics
    (``precise_bn``) from one train-mode forward on ``images`` training images, drawn as the run
    would draw them after ``step``."""
    task = get_task(config)
    # The forward needs params, statistics and step; the optimiser state is not used.
    states = task.init_states(jax.random.fold_in(jax.random.key(config.seed), 0))
    states = {
        name: s.replace(
            step=tree[name]["step"], params=tree[name]["params"], model_state=tree[name]["model_state"]
        )
        for name, s in states.items()
    }
    config = copy.deepcopy(config)
    devices = jax.device_count()
    config.data.global_batch_size = -(-images // devices) * devices  # whole images per device
    big = get_task(config)
    batch = next(parallel.prefetch_to_device(big.batches(step), 1))
    rng = jax.random.fold_in(jax.random.key(config.seed), 1)
    states = population_statistics(big, states, big.frozen(), batch, rng)
    return jax.device_get(states_tree(states))
