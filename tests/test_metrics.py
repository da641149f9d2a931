"""Metrics: parity with TensorFlow's definitions (stored fixture values), hand-checked hole-only
metrics, the Laplacian pyramid against OpenCV, and per-band SSIM."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrinpaint_jax import metrics as M

# Suggested tolerances of fixtures/zti/README.md (float32 port vs stored TF float32 values); all
# within the 1e-4.
TOLERANCE = {"psnr": 1e-4, "ssim": 5e-5, "ms_ssim": 2e-5, "l1": 1e-7}
FIXTURE_KEY = {"psnr": "psnr", "ssim": "ssim", "ms_ssim": "msssim", "l1": "l1"}


@pytest.fixture(scope="module")
def metrics_case(fixtures_dir):
    return np.load(fixtures_dir / "zti" / "metrics_case.npz")


@pytest.mark.parametrize("case", ["256", "384x512"])
def test_tf_metrics_match_the_stored_values(metrics_case, case):
    degraded = metrics_case[f"degraded_{case}"].astype(np.float32) / 255.0
    original = metrics_case[f"original_{case}"].astype(np.float32) / 255.0
    if degraded.ndim == 3:
        degraded, original = degraded[None], original[None]
    np.testing.assert_allclose(metrics_case["power_factors"], M.MS_SSIM_POWER_FACTORS)
    hole = jnp.zeros(original.shape[:3] + (1,))
    names = ("psnr", "ssim", "ms_ssim", "l1")
    got = M.compute_metrics(degraded, original, hole, names=names)
    for name in names:
        want = metrics_case[f"{FIXTURE_KEY[name]}_{case}"]
        err = np.abs(np.asarray(got[name], np.float64) - want).max()
        assert err <= TOLERANCE[name], (name, case, err)
    # The metrics are symmetric, like TF's.
    swapped = M.compute_metrics(original, degraded, hole, names=names)
    for name in names:
        np.testing.assert_allclose(swapped[name], got[name], rtol=1e-6, atol=1e-7)


def test_odd_sizes_match_tensorflow():
    """MS-SSIM pads odd sides symmetrically before pooling: checked against tf.image directly
    (the stored fixtures only have even sizes)."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    base = rng.random((2, 181, 203, 3)).astype(np.float32)
    # Smooth images (as photos are) plus noise, so that every scale carries structure.
    x = (0.5 + 0.4 * np.sin(np.linspace(0, 9, 203))[None, None, :, None] * base).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    want = {
        "psnr": tf.image.psnr(x, y, max_val=1.0).numpy(),
        "ssim": tf.image.ssim(x, y, max_val=1.0).numpy(),
        "ms_ssim": tf.image.ssim_multiscale(
            x, y, max_val=1.0, power_factors=M.MS_SSIM_POWER_FACTORS, filter_size=11
        ).numpy(),
    }
    for name, fn in (("psnr", M.psnr), ("ssim", M.ssim), ("ms_ssim", M.ms_ssim)):
        np.testing.assert_allclose(jax.jit(fn)(x, y), want[name], atol=TOLERANCE[name], err_msg=name)


def test_identical_images_and_size_checks():
    x = np.random.default_rng(0).random((2, 168, 168, 3)).astype(np.float32)
    hole = np.zeros((2, 168, 168, 1), np.float32)
    hole[:, 60:120, 50:100] = 1
    names = ("l1", "l1_255", "psnr", "ssim", "ms_ssim", "band_ssim", "hole_l1", "hole_psnr", "hole_ssim")
    out = M.compute_metrics(x, x, hole, names=names)
    assert sorted(out) == sorted(M.metric_columns(names))
    for key in ("l1", "l1_255", "hole_l1"):
        np.testing.assert_array_equal(out[key], 0.0)
    for key in ("ssim", "ms_ssim", "ssim_high", "ssim_mid", "ssim_low", "hole_ssim"):
        np.testing.assert_allclose(out[key], 1.0, atol=1e-5, err_msg=key)
    assert np.all(np.isinf(out["psnr"])) and np.all(np.isinf(out["hole_psnr"]))
    with pytest.raises(ValueError, match="at least 11x11"):
        jax.eval_shape(M.ms_ssim, x[:, :160, :160], x[:, :160, :160])  # coarsest scale: 10 px
    assert M.ms_ssim_min_size() == 161
    jax.eval_shape(M.ms_ssim, x[:, :161, :161], x[:, :161, :161])  # 161 -> 81 -> 41 -> 21 -> 11
    with pytest.raises(ValueError, match="unknown metric"):
        M.check_metric_names(["psnr", "fid"])


def test_hole_metrics_by_hand():
    x = np.full((1, 40, 40, 3), 0.5, np.float32)
    y = x.copy()
    y[:, 10:20, 10:30] += 0.1  # the error sits exactly on the hole (200 px of 1600)
    hole = np.zeros((1, 40, 40, 1), np.float32)
    hole[:, 10:20, 10:30] = 1
    np.testing.assert_allclose(M.hole_l1(x, y, hole), [0.1], rtol=1e-5)
    np.testing.assert_allclose(M.hole_l1(x, y, hole, scale=255.0), [25.5], rtol=1e-5)
    np.testing.assert_allclose(M.mean_l1(x, y), [0.1 * 200 / 1600], rtol=1e-5)
    np.testing.assert_allclose(M.hole_psnr(x, y, hole), [20.0], atol=1e-4)  # MSE 0.01
    np.testing.assert_allclose(M.psnr(x, y), [10 * math.log10(1600 / (0.01 * 200))], atol=1e-4)
    # The hole-only SSIM averages the SSIM map over windows centred in the hole.
    lum, cs = M._ssim_maps(
        jnp.asarray(x), jnp.asarray(y), max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03
    )
    want = float(jnp.mean((lum * cs)[:, 5:15, 5:25]))
    np.testing.assert_allclose(M.hole_ssim(x, y, hole), [want], rtol=1e-6)
    # Empty hole, or a hole only where no window is centred: NaN, not a number that looks valid.
    empty = np.zeros_like(hole)
    assert np.isnan(M.hole_l1(x, y, empty)).all() and np.isnan(M.hole_psnr(x, y, empty)).all()
    border = np.zeros_like(hole)
    border[:, :3] = 1
    assert np.isnan(M.hole_ssim(x, y, border)).all() and np.isfinite(M.hole_l1(x, y, border)).all()


def test_pyramid_matches_opencv_and_reconstructs():
    import cv2

    x = np.random.default_rng(1).random((1, 48, 64, 3)).astype(np.float32)
    down = np.asarray(jax.jit(M.pyr_down)(x))
    np.testing.assert_allclose(down[0], cv2.pyrDown(x[0]), atol=1e-6)
    up = np.asarray(jax.jit(M.pyr_up, static_argnums=1)(down, (48, 64)))
    np.testing.assert_allclose(up[0], cv2.pyrUp(down[0]), atol=1e-6)
    bands = jax.jit(M.laplacian_pyramid)(x)
    assert [b.shape[1:3] for b in bands] == [(48, 64), (24, 32), (12, 16)]

    @jax.jit
    def rebuild(bands):
        return bands[0] + M.pyr_up(bands[1] + M.pyr_up(bands[2], (24, 32)), (48, 64))

    np.testing.assert_allclose(rebuild(bands), x, atol=1e-5)
    # A constant image has empty band-pass levels and a constant residual.
    flat = jax.jit(M.laplacian_pyramid)(np.full((1, 20, 20, 1), 0.3, np.float32))
    np.testing.assert_allclose(flat[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(flat[2], 0.3, atol=1e-6)


def test_band_ssim_sees_lost_detail_in_the_high_band():
    import cv2

    rng = np.random.default_rng(2)
    x = cv2.GaussianBlur(rng.random((96, 96, 3)).astype(np.float32), (0, 0), 1.0)[None]
    blurred = cv2.GaussianBlur(x[0], (0, 0), 1.5)[None]
    band_ssim = jax.jit(M.band_ssim)
    high, mid, low = np.asarray(band_ssim(x, blurred))[0]
    assert high < mid < low <= 1.0
    np.testing.assert_allclose(band_ssim(x, x), 1.0, atol=1e-5)


def test_lpips_column_is_the_packages_lpips():
    from hrinpaint_jax.lpips import load_lpips_params, lpips

    params = load_lpips_params()
    rng = np.random.default_rng(4)
    x = rng.random((2, 32, 32, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    hole = np.zeros((2, 32, 32, 1), np.float32)
    got = M.compute_metrics(x, np.stack([y[0], x[1]]), hole, params, names=("lpips",))["lpips"]
    want = jax.jit(lpips)(x[:1], y[:1], params)
    np.testing.assert_allclose(got[:1], want, rtol=1e-5)
    assert abs(float(got[1])) < 1e-6  # identical images


def test_hole_lpips_weights_the_distance_maps_by_the_hole():
    """hole_lpips: all-ones hole = LPIPS; no hole = 0; a change far outside the hole barely counts
    while the same change inside it counts fully (one VGG pass serves both columns)."""
    from hrinpaint_jax.lpips import load_lpips_params

    params = load_lpips_params()
    rng = np.random.default_rng(3)
    target = rng.uniform(size=(1, 64, 64, 3)).astype(np.float32)
    changed = target.copy()
    changed[:, :, :16] = rng.uniform(size=(1, 64, 16, 3))  # left quarter replaced
    preds = np.concatenate([changed, changed, changed, changed])
    targets = np.concatenate([target] * 4)
    holes = np.zeros((4, 64, 64, 1), np.float32)
    holes[0] = 1.0  # whole image
    holes[2, :, 48:] = 1.0  # right quarter: unchanged pixels
    holes[3, :, :16] = 1.0  # left quarter: the changed pixels
    out = M.compute_metrics(preds, targets, holes, params, names=("lpips", "hole_lpips"))
    whole, hole = np.asarray(out["lpips"]), np.asarray(out["hole_lpips"])
    np.testing.assert_allclose(hole[0], whole[0], rtol=1e-5)
    assert hole[1] == 0.0
    assert hole[2] < 0.2 * whole[2] and hole[3] > 2.0 * whole[3], (hole, whole)
