"""Zoom-to-Inpaint building blocks and networks on small, hand-checkable cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from hrinpaint_jax.layers import GatedConv, KerasBatchNorm, SpectralNormConv
from hrinpaint_jax.models import (
    CoarseNet,
    PatchGANDiscriminator,
    RefineNet,
    SuperResolutionNet,
    ZoomToInpaint,
    dummy_inputs,
    get_model,
)
from hrinpaint_jax.pipelines.zoom import pad_multiple


def count(tree):
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.mark.parametrize("size", [(64, 64), (96, 160)])
def test_parameter_counts_are_exact_at_two_resolutions(size):
    model = get_model("zoom")
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), *dummy_inputs("zoom", *size)))
    p = v["params"]
    assert count(p["coarse"]) == 1_426_659 and count(v["batch_stats"]["coarse"]) == 2_112
    assert count(p["refine"]) == 2_607_843 and count(v["batch_stats"]["refine"]) == 2_880
    assert count(p["sr"]) == 446_659
    assert count(p["coarse"]) + count(p["refine"]) == 4_034_502
    assert count(p["coarse"]) + count(p["refine"]) + count(p["sr"]) == 4_481_161
    assert count(p["discriminator"]) == 4_308_160 and count(v["spectral"]) == 18_660
    generator_only = get_model("zoom", with_discriminator=False)
    v = jax.eval_shape(lambda: generator_only.init(jax.random.key(0), *dummy_inputs("zoom", *size)))
    assert "discriminator" not in v["params"] and "spectral" not in v


def test_gated_conv_halves_and_head_case():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1, 9, 11, 5)), jnp.float32)
    for dilation in (1, 2, 4):
        gc = GatedConv(8, dilation=dilation)
        v = gc.init(jax.random.key(1), x)
        kernel, bias = v["params"]["conv"]["kernel"], v["params"]["conv"]["bias"]
        pad = dilation
        raw = lax.conv_general_dilated(
            x, kernel, (1, 1), ((pad, pad), (pad, pad)), rhs_dilation=(dilation, dilation),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        ) + bias  # fmt: skip
        want = jax.nn.elu(raw[..., :4]) * jax.nn.sigmoid(raw[..., 4:])  # features first, gate second
        got = gc.apply(v, x)
        assert got.shape == (1, 9, 11, 4)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
    head = GatedConv(3)
    v = head.init(jax.random.key(2), x)
    y = head.apply(v, x)
    np.testing.assert_allclose(  # linear: doubling the input minus the bias doubles the output
        np.asarray(head.apply(v, 2 * x) - v["params"]["conv"]["bias"]),
        np.asarray(2 * (y - v["params"]["conv"]["bias"])),
        atol=1e-5,
    )


def test_keras_batchnorm_inference_and_training_update():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(2.0, 3.0, size=(4, 3, 3, 6)), jnp.float32)
    bn = KerasBatchNorm(use_running_average=False)
    v = bn.init(jax.random.key(0), x)
    y, upd = bn.apply(v, x, mutable=["batch_stats"])
    mean, var = np.mean(np.asarray(x), axis=(0, 1, 2)), np.var(np.asarray(x), axis=(0, 1, 2))
    np.testing.assert_allclose(np.asarray(y), (np.asarray(x) - mean) / np.sqrt(var + 1e-3), atol=1e-5)
    # Keras: moving -= (moving - batch) * (1 - 0.99), with the biased variance.
    np.testing.assert_allclose(np.asarray(upd["batch_stats"]["mean"]), 0.01 * mean, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(upd["batch_stats"]["var"]), 0.99 + 0.01 * var, rtol=1e-5)
    stats = {"mean": jnp.full(6, 0.5), "var": jnp.full(6, 2.0)}
    params = {"scale": jnp.full(6, 1.5), "bias": jnp.full(6, -0.25)}
    y = KerasBatchNorm().apply({"params": params, "batch_stats": stats}, x)
    np.testing.assert_allclose(
        np.asarray(y), (np.asarray(x) - 0.5) * 1.5 / np.sqrt(2.001) - 0.25, atol=1e-5
    )


def test_keras_batchnorm_synchronises_across_devices():
    """pmap over 4 devices with axis_name == the whole batch on one device (SyncBatchNormalization)."""
    n = jax.local_device_count()
    assert n >= 2, "conftest sets 4 fake CPU devices"
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(n * 2, 4, 4, 3)) * np.arange(1, n * 2 + 1)[:, None, None, None])
    whole = KerasBatchNorm(use_running_average=False)
    v = whole.init(jax.random.key(0), x)
    want, want_stats = whole.apply(v, x, mutable=["batch_stats"])
    synced = KerasBatchNorm(use_running_average=False, axis_name="batch")
    fn = jax.pmap(lambda xs: synced.apply(v, xs, mutable=["batch_stats"]), axis_name="batch", in_axes=0)
    got, got_stats = fn(x.reshape(n, 2, 4, 4, 3))
    np.testing.assert_allclose(np.asarray(got).reshape(want.shape), np.asarray(want), atol=1e-5)
    for k in ("mean", "var"):
        np.testing.assert_allclose(
            np.asarray(got_stats["batch_stats"][k][0]),
            np.asarray(want_stats["batch_stats"][k]),
            rtol=1e-5,
        )


def test_spectral_norm_power_iteration_and_in_place_update():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(1, 8, 8, 3)), jnp.float32)
    sn = SpectralNormConv(4)
    v = sn.init(jax.random.key(0), x)
    kernel = np.asarray(v["params"]["kernel"], np.float64)
    u0 = np.asarray(v["spectral"]["u"], np.float64)
    w = kernel.reshape(-1, 4)
    l2n = lambda z: z / np.sqrt(max((z**2).sum(), 1e-12))  # noqa: E731
    v1 = l2n(u0 @ w.T)
    u1 = l2n(v1 @ w)
    sigma = float((v1 @ w @ u1.T)[0, 0])
    # Without mutable collections nothing is stored (a pure function of the variables) ...
    y = sn.apply(v, x)
    want = lax.conv_general_dilated(
        x, jnp.asarray(kernel / sigma, jnp.float32), (2, 2), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    ) + v["params"]["bias"]  # fmt: skip
    np.testing.assert_allclose(np.asarray(y), np.asarray(want), atol=1e-5)
    assert y.shape == (1, 4, 4, 4)
    # ... with them, u and v are stored and (QUIRK) the kernel itself is divided by sigma.
    _, upd = sn.apply(v, x, mutable=["params", "spectral"])
    np.testing.assert_allclose(np.asarray(upd["spectral"]["u"]), u1, atol=1e-6)
    np.testing.assert_allclose(np.asarray(upd["spectral"]["v"]), v1, atol=1e-6)
    np.testing.assert_allclose(np.asarray(upd["params"]["kernel"]), kernel / sigma, rtol=1e-5)


def test_spectral_norm_gradient_skips_sigma():
    """The reference differentiates with respect to the (already normalised) kernel variable that
    the conv reads: d loss / d kernel == d loss / d (kernel / sigma), no chain through sigma."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
    sn = SpectralNormConv(5)
    v = sn.init(jax.random.key(0), x)

    def loss_via_module(kernel):
        params = {**v["params"], "kernel": kernel}
        return jnp.sum(sn.apply({**v, "params": params}, x) ** 2)

    _, upd = sn.apply(v, x, mutable=["params", "spectral"])
    normalised = upd["params"]["kernel"]

    def loss_plain(kernel):
        y = lax.conv_general_dilated(
            x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jnp.sum((y + v["params"]["bias"]) ** 2)

    np.testing.assert_allclose(
        np.asarray(jax.grad(loss_via_module)(v["params"]["kernel"])),
        np.asarray(jax.grad(loss_plain)(normalised)),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.fixture(scope="module")
def tiny():
    """A tiny framework on a non-square 16 x 24 batch, initialised once (jit: one compilation)."""
    model = ZoomToInpaint(width=4, sr_features=8, sr_blocks=1, disc_features=(8, 8, 8, 8, 8))
    image = jnp.asarray(np.random.default_rng(5).uniform(size=(2, 16, 24, 3)), jnp.float32)
    mask = jnp.zeros((2, 16, 24, 1)).at[:, 4:10, 6:15].set(1.0)
    return model, jax.jit(model.init)(jax.random.key(0), image, mask), image, mask


@pytest.mark.parametrize("attention", ["efficient", "dense"])
def test_tiny_framework_runs_on_a_non_square_input(tiny, attention):
    model, v, image, mask = tiny
    model = model.clone(attention=attention)
    out = jax.jit(lambda v, a, b: model.apply(v, a, b))(v, image, mask)
    assert out["coarse"].shape == (2, 16, 24, 3)
    assert out["sr"].shape == out["refine"].shape == (2, 32, 48, 3)
    np.testing.assert_array_equal(np.asarray(out["mask_hr"][:, ::2, ::2]), np.asarray(mask))
    # The coarse output keeps the masked input outside the hole.
    known = np.asarray(1 - mask)
    np.testing.assert_allclose(np.asarray(out["coarse"]) * known, np.asarray(image) * known, atol=1e-6)
    logits = model.apply(v, out["refine"], out["mask_hr"], method="discriminate")
    assert logits.shape == (2, 1 * 2 * 8)  # 32 x 48 -> 1 x 2 after five 'SAME' stride-2 convs

    # Training mode updates BatchNorm statistics and is differentiable end to end.
    def loss(params):
        o, _ = model.apply({**v, "params": params}, image, mask, train=True, mutable=["batch_stats"])
        return jnp.mean(jnp.abs(o["refine"] - 0.5))

    grads = jax.jit(jax.grad(loss))(v["params"])
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["coarse"]["enc1_0"]["gc"]["conv"]["kernel"]).sum()) > 0


def test_zoom_option_swaps_the_sr_net_and_keeps_the_weights(tiny):
    """ZoomToInpaint(zoom=...): 'bicubic' replaces the SR net by TF bicubic x2, 'none' refines at the
    input size; the variables of the full model serve every option unchanged."""
    from hrinpaint_jax.ops.resize import resize_bicubic_tf

    model, v, image, mask = tiny
    full = jax.jit(lambda v: model.apply(v, image, mask))(v)
    bicubic = jax.jit(lambda v: model.clone(zoom="bicubic").apply(v, image, mask))(v)
    np.testing.assert_array_equal(bicubic["coarse"], full["coarse"])
    np.testing.assert_array_equal(bicubic["sr"], resize_bicubic_tf(full["coarse"], (32, 48)))
    assert bicubic["refine"].shape == (2, 32, 48, 3)
    none = jax.jit(lambda v: model.clone(zoom="none").apply(v, image, mask))(v)
    np.testing.assert_array_equal(none["sr"], full["coarse"])
    np.testing.assert_array_equal(none["mask_hr"], mask)
    assert none["refine"].shape == (2, 16, 24, 3)
    # The parameter tree of the full model is the one of every option.
    shapes = jax.eval_shape(lambda: model.clone(zoom="none").init(jax.random.key(0), image, mask))
    assert set(shapes["params"]) == set(v["params"]) - {"sr"}  # the SR net is not built
    with pytest.raises(ValueError, match="zoom must be one of sr, bicubic, none"):
        model.clone(zoom="nearest").apply(v, image, mask)


def test_sr_scales_and_shape_errors():
    x = jnp.zeros((1, 6, 10, 3))
    for scale in (2, 3, 4):
        sr = SuperResolutionNet(scale=scale, features=4, num_blocks=1)
        v = sr.init(jax.random.key(0), x)
        assert sr.apply(v, x).shape == (1, 6 * scale, 10 * scale, 3)
        assert v["params"]["expand"]["kernel"].shape == (3, 3, 4, 4 * scale**2)
    with pytest.raises(ValueError, match="multiples of 4"):
        CoarseNet(width=4).init(jax.random.key(0), jnp.zeros((1, 18, 16, 4)))
    with pytest.raises(ValueError, match="multiples of 8"):
        RefineNet(width=4).init(jax.random.key(0), jnp.zeros((1, 20, 16, 4)))
    with pytest.raises(ValueError, match=r"\[B, H, W, 4\]"):
        CoarseNet(width=4).init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        PatchGANDiscriminator().init(jax.random.key(0), jnp.zeros((48, 64, 4)))


def test_pad_multiple():
    assert pad_multiple(2) == 4  # coarse: 4; refinement at 2H: 8
    assert pad_multiple(1) == 8
    assert pad_multiple(4) == 4
    assert pad_multiple(3) == 8
