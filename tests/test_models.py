"""Shapes, exact parameter counts and train/eval behaviour of DFNet and the refinement U-Net."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrinpaint_jax.models import dummy_inputs, get_model

# Trainable parameter counts of the PyTorch references (REFERENCE.md sections 2.8, 3.3).
PARAMS = {"dfnet": 32_880_504, "shift_refine": 36_858_507}
# ... and floating values including BatchNorm running statistics.
ALL_FLOATS = {"dfnet": 32_891_812, "shift_refine": 36_870_259}


def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", ["dfnet", "shift_refine"])
@pytest.mark.parametrize("size", [(256, 256), (512, 768)])
def test_parameter_count_and_shapes(name, size):
    model = get_model(name)
    inputs = dummy_inputs(name, *size, batch=2)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs, train=False))
    assert count(variables["params"]) == PARAMS[name]
    assert count(variables) == ALL_FLOATS[name]
    out = jax.eval_shape(lambda v: model.apply(v, *inputs, train=False), variables)
    if name == "dfnet":
        # Six fused images, finest first.
        assert [o.shape for o in out] == [(2, size[0] >> k, size[1] >> k, 3) for k in range(6)]
    else:
        assert out.shape == (2, *size, 3)


@pytest.mark.parametrize("name", ["dfnet", "shift_refine"])
def test_rejects_sizes_not_multiple_of_256(name):
    model = get_model(name)
    inputs = dummy_inputs(name, 256, 384)
    with pytest.raises(ValueError, match="multiples of 256"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs, train=False))


def small_dfnet(**kw):
    """A narrow DFNet with 3 levels: the same code paths at a fraction of the cost."""
    return get_model(
        "dfnet",
        en_ksize=(7, 5, 3),
        de_ksize=(3, 3, 3),
        blend_layers=(0, 1, 2),
        base_features=8,
        max_features=16,
        **kw,
    )


def test_train_mode_uses_batch_statistics_and_updates_running_averages():
    model = small_dfnet()
    rng = np.random.default_rng(0)
    img = jnp.asarray(rng.uniform(size=(2, 32, 32, 3)), jnp.float32)
    mask = jnp.ones((2, 32, 32, 1))
    variables = model.init(jax.random.key(0), img, mask, train=False)
    eval_out = model.apply(variables, img, mask, train=False)
    train_out, updates = model.apply(variables, img, mask, train=True, mutable=["batch_stats"])
    assert [o.shape for o in train_out] == [o.shape for o in eval_out]
    assert float(jnp.abs(train_out[0] - eval_out[0]).max()) > 1e-3
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(updates["batch_stats"])
    assert all(float(jnp.abs(a - b).max()) > 0 for a, b in zip(after, before, strict=True))


def test_bfloat16_compute_keeps_float32_params():
    model = small_dfnet(dtype=jnp.bfloat16)
    img, mask = jnp.zeros((1, 32, 32, 3)), jnp.ones((1, 32, 32, 1))
    variables = model.init(jax.random.key(0), img, mask, train=False)
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    out = model.apply(variables, img, mask, train=False)
    assert out[0].dtype == jnp.bfloat16
    ref = small_dfnet().apply(variables, img, mask, train=False)
    np.testing.assert_allclose(np.asarray(out[0], np.float32), np.asarray(ref[0]), atol=3e-2)


def test_gradients_flow_to_every_parameter():
    model = small_dfnet()
    rng = np.random.default_rng(1)
    img = jnp.asarray(rng.uniform(size=(2, 32, 32, 3)), jnp.float32)
    mask = jnp.asarray(rng.uniform(size=(2, 32, 32, 1)) > 0.3, jnp.float32)
    variables = model.init(jax.random.key(0), img, mask, train=False)

    def loss(params):
        outs, _ = model.apply(
            {**variables, "params": params}, img * mask, mask, train=True, mutable=["batch_stats"]
        )
        return sum(jnp.mean(jnp.abs(o - 0.5)) for o in outs)

    grads = jax.grad(loss)(variables["params"])
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    dead = [jax.tree_util.keystr(p) for p, g in flat if not bool(jnp.any(g != 0))]
    assert not dead
