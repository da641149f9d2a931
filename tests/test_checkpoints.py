"""Weights directories: round trip, stored architecture, atomic writes and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrinpaint_jax.checkpoints import CheckpointError, load_pretrained, save_pretrained

NARROW = dict(
    en_ksize=(7, 5, 3), de_ksize=(3, 3, 3), blend_layers=(0, 1, 2), base_features=8, max_features=16
)


def narrow_variables():
    from hrinpaint_jax.models import get_model

    model = get_model("dfnet", **NARROW)
    return model, model.init(
        jax.random.key(3), jnp.zeros((1, 32, 32, 3)), jnp.ones((1, 32, 32, 1)), train=False
    )


def test_round_trip_with_a_non_default_architecture(tmp_path):
    model, variables = narrow_variables()
    save_pretrained(tmp_path / "w", "dfnet", variables, model_kwargs=NARROW, metadata={"note": "x"})
    loaded, restored, meta = load_pretrained(tmp_path / "w")
    assert loaded == model and meta["note"] == "x"
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), restored, variables
    )
    x = jnp.full((1, 32, 32, 3), 0.5)
    m = jnp.ones((1, 32, 32, 1))
    jax.jit(lambda v: loaded.apply(v, x, m, train=False))(restored)  # hashable, jit-able
    bf16, _, _ = load_pretrained(tmp_path / "w", dtype=jnp.bfloat16)
    assert bf16.dtype == jnp.bfloat16 and bf16.base_features == 8


def test_refuses_to_overwrite_and_rejects_mismatched_weights(tmp_path):
    _, variables = narrow_variables()
    save_pretrained(tmp_path / "w", "dfnet", variables, model_kwargs=NARROW)
    with pytest.raises(CheckpointError, match="output exists"):
        save_pretrained(tmp_path / "w", "dfnet", variables, model_kwargs=NARROW)
    # Same tree structure, different shapes: a model built with other widths.
    with pytest.raises(CheckpointError, match="do not fit model dfnet"):
        load_pretrained(tmp_path / "w", base_features=4)
    with pytest.raises(CheckpointError, match="not a hrinpaint_jax weights directory"):
        load_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="weights directory not found"):
        load_pretrained(tmp_path / "missing")


def test_training_checkpoints_with_and_without_a_record(tmp_path):
    """A checkpoint written before the training record existed (no 'record' item) reads as no legs;
    one written with legs gives them back, per step."""
    import ml_collections

    from hrinpaint_jax.train_checkpoints import (
        checkpoint_legs,
        checkpoint_manager,
        restore_legs,
        save_checkpoint,
    )

    class State:
        def to_tree(self):
            return {"params": {"w": np.ones(3, np.float32)}}

    config = ml_collections.ConfigDict({"task": "dfnet", "keep_checkpoints": 3})
    manager = checkpoint_manager(tmp_path, config)
    save_checkpoint(manager, 1, {"g": State()}, config)  # as before the record existed
    leg = {"run": "x", "task": "dfnet", "start_step": 1, "end_step": 2, "seconds": 1.5}
    save_checkpoint(manager, 2, {"g": State()}, config, [leg])
    assert restore_legs(manager, 1) == [] and restore_legs(manager, 2) == [leg]
    manager.close()
    assert checkpoint_legs(tmp_path) == [leg]
