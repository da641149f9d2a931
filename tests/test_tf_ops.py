"""TensorFlow-semantics pixel ops of the Zoom-to-Inpaint port against ``zti/pixel_ops_case.npz``.

Fixture README: depth_to_space / space_to_depth / nearest / image_gradients are exact (equality);
bicubic and bilinear resizes within 2e-6 (TF 2.21 vs stored <= 3e-7).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrinpaint_jax.ops.pixel_shuffle import depth_to_space, space_to_depth
from hrinpaint_jax.ops.resize import (
    image_gradients_tf,
    resize_bicubic_tf,
    resize_bilinear_tf,
    resize_nearest_tf,
    tf_bicubic_weight_matrix,
    tf_bilinear_weight_matrix,
    tf_nearest_indices,
    tf_scale_translate_weight_matrix,
)

RESIZE_ATOL = 2e-6
RESIZE_MEAN_ATOL = 2e-7  # measured means are 1e-8 .. 6e-8; catches systematic errors sharply


@pytest.fixture(scope="module")
def case(fixtures_dir):
    with np.load(fixtures_dir / "zti" / "pixel_ops_case.npz") as f:
        return {k: f[k] for k in f.files}


def _assert_close(got, want, atol=RESIZE_ATOL, mean_atol=RESIZE_MEAN_ATOL):
    got = np.asarray(got)
    assert got.shape == want.shape and got.dtype == want.dtype
    diff = np.abs(got.astype(np.float64) - want)
    assert diff.max() <= atol, diff.max()
    assert diff.mean() <= mean_atol, diff.mean()


# ---------------------------------------------------------------------------- pixel shuffle


def test_depth_to_space_fixture(case):
    out = np.asarray(depth_to_space(jnp.asarray(case["d2s_in"]), 2))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, case["d2s_out"])


def test_space_to_depth_fixture(case):
    np.testing.assert_array_equal(
        np.asarray(space_to_depth(jnp.asarray(case["s2d_in"]), 2)), case["s2d_out"]
    )


def test_depth_to_space_ordering_by_hand():
    # C = 2, block 2: out[dy, dx, c] = in[(dy*2 + dx)*2 + c] (TF).
    # PyTorch's PixelShuffle would give in[c*4 + dy*2 + dx].
    x = jnp.arange(8, dtype=jnp.float32).reshape(1, 1, 1, 8)
    out = np.asarray(depth_to_space(x, 2))[0]
    np.testing.assert_array_equal(out[..., 0], [[0, 2], [4, 6]])
    np.testing.assert_array_equal(out[..., 1], [[1, 3], [5, 7]])
    torch_order = np.arange(8).reshape(2, 2, 2)[0]  # PixelShuffle channel 0: [[0, 1], [2, 3]]
    assert not np.array_equal(out[..., 0], torch_order)


@pytest.mark.parametrize("block", [1, 2, 3])
def test_pixel_shuffle_round_trip(block):
    x = np.random.default_rng(block).normal(size=(2, 4, 5, 2 * block * block)).astype(np.float32)
    y = depth_to_space(x, block)
    assert y.shape == (2, 4 * block, 5 * block, 2)
    np.testing.assert_array_equal(np.asarray(space_to_depth(y, block)), np.asarray(x))
    np.testing.assert_array_equal(
        np.asarray(depth_to_space(space_to_depth(y, block), block)), np.asarray(y)
    )


def test_pixel_shuffle_bad_shapes():
    with pytest.raises(ValueError, match="divisible by block"):
        depth_to_space(jnp.zeros((1, 2, 2, 6)), 2)
    with pytest.raises(ValueError, match="divisible by block"):
        space_to_depth(jnp.zeros((1, 5, 4, 3)), 2)
    with pytest.raises(ValueError, match="NHWC"):
        depth_to_space(jnp.zeros((2, 2, 4)), 2)
    with pytest.raises(ValueError, match="NHWC"):
        space_to_depth(jnp.zeros((2, 2, 4)), 2)
    with pytest.raises(ValueError, match="positive int"):
        depth_to_space(jnp.zeros((1, 2, 2, 4)), 0)


# ---------------------------------------------------------------------------- bicubic / bilinear


@pytest.mark.parametrize(
    "key, size, antialias",
    [
        ("bicubic_up2", (74, 106), False),
        ("bicubic_down2", (18, 26), False),
        ("bicubic_aa_up2", (74, 106), True),
        ("bicubic_aa_down2", (18, 26), True),
    ],
)
def test_bicubic_fixture(case, key, size, antialias):
    _assert_close(
        resize_bicubic_tf(jnp.asarray(case["resize_in"]), size, antialias=antialias), case[key]
    )


@pytest.mark.parametrize("key, size", [("bilinear_aa_up2", (74, 106)), ("bilinear_aa_down2", (18, 26))])
def test_bilinear_aa_fixture(case, key, size):
    _assert_close(resize_bilinear_tf(jnp.asarray(case["resize_in"]), size), case[key])


def test_bicubic_down2_pins_phase_quantisation(case):
    """Plain Keys cubic (jax) misses TF's 1/1024 phase table by > 1e-4 on 37x53 -> 18x26."""
    x = jnp.asarray(case["resize_in"])
    plain = jax.image.resize(x, (2, 18, 26, 3), method="cubic", antialias=False)
    assert np.abs(np.asarray(plain) - case["bicubic_down2"]).max() > 1e-4
    # ... while rounding the phase to 1/1024 lands within float32 noise of TF.
    assert np.abs(np.asarray(resize_bicubic_tf(x, (18, 26))) - case["bicubic_down2"]).max() < 5e-7


def test_bicubic_exact_up2_equals_jax_cubic(case):
    """Exact x2 (phases 0.25 / 0.75) needs no quantisation: = jax 'cubic' with antialias=False."""
    for x in (
        jnp.asarray(case["resize_in"]),
        np.random.default_rng(0).random((1, 16, 9, 2), dtype=np.float32),
    ):
        b, h, w, c = x.shape
        want = jax.image.resize(x, (b, 2 * h, 2 * w, c), method="cubic", antialias=False)
        np.testing.assert_allclose(np.asarray(resize_bicubic_tf(x, (2 * h, 2 * w))), want, atol=1e-6)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("size", [(18, 26), (74, 106), (5, 200), (37, 53)])
def test_bicubic_constant_is_constant(size, antialias):
    x = jnp.full((1, 37, 53, 2), 0.3, jnp.float32)
    out = np.asarray(resize_bicubic_tf(x, size, antialias=antialias))
    assert out.shape == (1, *size, 2)
    np.testing.assert_allclose(out, 0.3, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(resize_bilinear_tf(x, size, antialias=antialias)), 0.3, atol=1e-6
    )


def test_bicubic_ramp_interior():
    """Keys cubic reproduces linear functions: an interior ramp stays a ramp (at the quantised phase)."""
    ramp = jnp.broadcast_to(jnp.arange(37, dtype=jnp.float32)[None, :, None, None], (1, 37, 4, 1))
    up = np.asarray(resize_bicubic_tf(ramp, (74, 4)))[0, 3:-3, 0, 0]
    np.testing.assert_allclose(up, (np.arange(3, 71) + 0.5) / 2 - 0.5, atol=1e-5)
    # 37 -> 18: interior samples land on floor(s) + rint(frac(s) * 1024) / 1024, not on s itself.
    down = np.asarray(resize_bicubic_tf(ramp, (18, 4)))[0, 1:-1, 0, 0]
    s = (np.arange(1, 17) + 0.5) * 37 / 18 - 0.5
    quantised = np.floor(s) + np.rint((s - np.floor(s)) * 1024) / 1024
    np.testing.assert_allclose(down, quantised, atol=1e-5)
    assert np.abs(quantised - s).max() > 1e-4


def test_bicubic_phase_ties_round_to_even():
    """2 -> 2048: phase * 1024 = k + 0.5 exactly; TF 2.21 rounds these ties to even (not half up)."""
    m = tf_bicubic_weight_matrix(2, 2048)
    np.testing.assert_array_equal(m[512], [1.0, 0.0])  # 0.5 -> phase 0
    np.testing.assert_array_equal(m[514], m[513])  # 2.5 -> 2 and 1.5 -> 2
    assert m[515, 1] > m[514, 1]  # 3.5 -> 4


def test_weight_matrices_are_normalised():
    for i, o in [(37, 18), (53, 26), (5, 41), (512, 224), (3, 1)]:
        for m in (
            tf_bicubic_weight_matrix(i, o),
            tf_bilinear_weight_matrix(i, o),
            tf_scale_translate_weight_matrix(i, o, "keyscubic"),
            tf_scale_translate_weight_matrix(i, o, "triangle"),
        ):
            assert m.shape == (o, i)
            np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(tf_bicubic_weight_matrix(7, 7), np.eye(7), atol=1e-12)


def test_bilinear_no_antialias(case):
    """TF2 half-pixel bilinear: = jax 'linear' antialias=False; 2x down = 2x2 box mean."""
    x = jnp.asarray(case["resize_in"])
    for size in [(18, 26), (74, 106), (9, 13)]:
        want = jax.image.resize(x, (2, *size, 3), method="linear", antialias=False)
        np.testing.assert_allclose(
            np.asarray(resize_bilinear_tf(x, size, antialias=False)), want, atol=2e-6
        )
    y = x[:, :36, :52]
    box = y.reshape(2, 18, 2, 26, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(
        np.asarray(resize_bilinear_tf(y, (18, 26), antialias=False)), box, atol=1e-6
    )


def test_resize_dtype_and_jit():
    x = jnp.asarray(np.random.default_rng(1).random((1, 12, 10, 3), dtype=np.float32))
    for dtype in (jnp.bfloat16, jnp.float16):
        assert resize_bicubic_tf(x.astype(dtype), (7, 9)).dtype == dtype
        assert resize_bilinear_tf(x.astype(dtype), (7, 9)).dtype == dtype
    jitted = jax.jit(lambda a: resize_bicubic_tf(a, (7, 9)))
    np.testing.assert_allclose(
        np.asarray(jitted(x)), np.asarray(resize_bicubic_tf(x, (7, 9))), atol=1e-6
    )
    assert resize_bicubic_tf(x, (12, 10)) is x  # same size: identity


# ---------------------------------------------------------------------------- nearest


@pytest.mark.parametrize(
    "src, key, size",
    [
        ("resize_in", "nearest_down4", (9, 13)),
        ("resize_in", "nearest_up2", (74, 106)),
        ("nearest_sq_in", "nearest_sq_down4", (16, 16)),
        ("nearest_sq_down4", "nearest_sq_down4_down2", (8, 8)),
        ("nearest_sq_in", "nearest_sq_up2", (128, 128)),
    ],
)
def test_nearest_fixture(case, src, key, size):
    out = np.asarray(resize_nearest_tf(jnp.asarray(case[src]), size))
    assert out.dtype == case[key].dtype
    np.testing.assert_array_equal(out, case[key])


def test_nearest_indices_by_hand():
    np.testing.assert_array_equal(tf_nearest_indices(16, 4), [2, 6, 10, 14])
    np.testing.assert_array_equal(tf_nearest_indices(512, 128), 4 * np.arange(128) + 2)
    np.testing.assert_array_equal(tf_nearest_indices(128, 64), 2 * np.arange(64) + 1)
    np.testing.assert_array_equal(tf_nearest_indices(5, 10), np.repeat(np.arange(5), 2))
    x = jnp.arange(6, dtype=jnp.float32).reshape(1, 2, 3, 1)
    np.testing.assert_array_equal(
        np.asarray(resize_nearest_tf(x, (4, 6)))[0, ..., 0],
        [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5], [3, 3, 4, 4, 5, 5]],
    )


@pytest.mark.parametrize(
    "in_size, out_size", [(37, 9), (53, 13), (13, 3), (27, 20), (11, 7), (37, 74), (9, 5), (3, 5)]
)
def test_nearest_matches_jax_on_awkward_ratios(in_size, out_size):
    x = np.random.default_rng(in_size).random((1, in_size, in_size + 2, 1), dtype=np.float32)
    want = jax.image.resize(x, (1, out_size, out_size + 1, 1), method="nearest")
    np.testing.assert_array_equal(np.asarray(resize_nearest_tf(x, (out_size, out_size + 1))), want)


def test_nearest_float32_quirk():
    """TF evaluates (dst + 0.5) * (in / out) in float32; exact boundaries can fall either side.

    Index lists recorded from TF 2.21 ``tf.image.resize(..., 'nearest')``.
    """
    # 2 -> 41, output 20: exactly 1.0 in real arithmetic, 0.99999994 in float32 -> TF picks 0.
    np.testing.assert_array_equal(tf_nearest_indices(2, 41), [0] * 21 + [1] * 20)
    tf_10_25 = [0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5, 6, 6, 7, 7, 7, 8, 8, 9, 9, 9]
    np.testing.assert_array_equal(tf_nearest_indices(10, 25), tf_10_25)
    # jax.image.resize('nearest') rounds these boundaries the other way (outputs 2, 7, 12 -> 0, 2, 4).
    x = jnp.arange(10, dtype=jnp.float32).reshape(1, 10, 1, 1)
    jax_idx = np.asarray(jax.image.resize(x, (1, 25, 1, 1), method="nearest"))[0, :, 0, 0]
    assert not np.array_equal(jax_idx, tf_10_25)
    np.testing.assert_array_equal(np.asarray(resize_nearest_tf(x, (25, 1)))[0, :, 0, 0], tf_10_25)


# ---------------------------------------------------------------------------- image gradients


def test_image_gradients_fixture(case):
    dy, dx = image_gradients_tf(jnp.asarray(case["grad_in"]))
    np.testing.assert_array_equal(np.asarray(dy), case["grad_dy"])
    np.testing.assert_array_equal(np.asarray(dx), case["grad_dx"])


def test_image_gradients_by_hand():
    x = jnp.asarray([[1.0, 2.0, 4.0], [7.0, 11.0, 16.0]]).reshape(1, 2, 3, 1)
    dy, dx = image_gradients_tf(x)
    np.testing.assert_array_equal(np.asarray(dy)[0, ..., 0], [[6, 9, 12], [0, 0, 0]])
    np.testing.assert_array_equal(np.asarray(dx)[0, ..., 0], [[1, 2, 0], [4, 5, 0]])
    assert dy.dtype == dx.dtype == jnp.float32
