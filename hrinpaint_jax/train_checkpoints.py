"""Training checkpoints: the orbax ``CheckpointManager`` of a training workdir (``WORKDIR/checkpoints``:
the train states, the config as JSON and the training record, ``training_record``), and the
trained networks read back from it.

A train state is stored as ``TrainState.to_tree()`` per state name ('g': the generator, 'd': the
Zoom-to-Inpaint discriminator). ``load_weights`` rebuilds a stage's generator from the config saved
with its checkpoint, so a training workdir can stand in for a weights directory (the refinement
stage's frozen DFNet, ``init_from``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from ml_collections import ConfigDict

from hrinpaint_jax.checkpoints import load_pretrained
from hrinpaint_jax.models import build_model

CHECKPOINT_DIR = "checkpoints"

# The registered model (``models.get_model``) that a stage's generator state 'g' is.
STAGE_MODELS = {"dfnet": "dfnet", "shift_refine": "shift_refine", "zoom_joint": "zoom"}


class InitError(ValueError):
    """``config.init_from`` / stage-1 weights that do not fit."""


def checkpoint_manager(workdir: str | os.PathLike, config=None) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints if config is not None else None,
        create=True,
        enable_async_checkpointing=False,
    )
    path = os.path.abspath(os.path.join(os.fspath(workdir), CHECKPOINT_DIR))
    return ocp.CheckpointManager(path, options=options, item_names=("state", "config", "record"))


def states_tree(states) -> dict[str, Any]:
    """The checkpointed tree of a dict of ``TrainState`` (no optimiser functions)."""
    return {name: s.to_tree() for name, s in states.items()}


def save_checkpoint(manager, step: int, states, config, legs: list | None = None) -> None:
    """Saves the states, the config and (if given) the training legs up to ``step``."""
    tree = jax.device_get(states_tree(states))
    items = {
        "state": ocp.args.StandardSave(tree),
        "config": ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
    }
    if legs is not None:
        items["record"] = ocp.args.JsonSave({"legs": legs})
    manager.save(step, args=ocp.args.Composite(**items), force=True)
    manager.wait_until_finished()


def restore_legs(manager, step: int) -> list[dict]:
    """The training legs stored with checkpoint ``step``; [] for checkpoints written before the
    record existed."""
    if not (Path(manager.directory) / str(step) / "record").is_dir():
        return []
    restored = manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))
    return [dict(leg) for leg in restored.record.get("legs", [])]


def checkpoint_legs(workdir: str | os.PathLike, step: int | None = None) -> list[dict]:
    """The training legs of checkpoint ``step`` (default: the latest) of a training workdir."""
    manager = checkpoint_manager(workdir)
    try:
        step = manager.latest_step() if step is None else step
        return [] if step is None else restore_legs(manager, step)
    finally:
        manager.close()


def restore_checkpoint(manager, step: int, states):
    """Restores into the structure of freshly initialised ``states`` (abstract target)."""
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype), states_tree(states)
    )
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return {name: s.from_tree(restored.state[name]) for name, s in states.items()}


def latest_state_tree(workdir: str | os.PathLike) -> tuple[int, dict[str, Any], dict]:
    """(step, raw state tree, saved config dict) of the latest checkpoint of a training workdir."""
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


def stage_model(config) -> str:
    """The registered model a stage trains (its export), or a ``ValueError``."""
    if config.task not in STAGE_MODELS:
        raise ValueError(f"stage {config.task} has no stand-alone inference model to export")
    return STAGE_MODELS[config.task]


def load_weights(path: str, expect_model: str | None = None) -> tuple[Any, dict]:
    """(Flax module, variables) of a weights directory (``convert_weights`` / ``export_weights``)
    or of the generator state of a training workdir (module rebuilt from its saved config)."""
    if is_workdir(path):
        _, tree, saved = latest_state_tree(path)
        config = ConfigDict(saved)
        name = stage_model(config)
        if expect_model and name != expect_model:
            raise InitError(f"{path} trains {name}, expected {expect_model}")
        state = tree["g"]
        variables = {"params": state["params"], **state["model_state"]}
        return build_model(name, config), jax.tree.map(jnp.asarray, variables)
    model, variables, meta = load_pretrained(path)
    if expect_model and meta["model"] != expect_model:
        raise InitError(f"weights in {path} are a {meta['model']} model, expected {expect_model}")
    return model, variables
