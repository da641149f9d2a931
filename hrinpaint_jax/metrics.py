"""Image-quality metrics of the two papers, as pure jit-able functions (REFERENCE.md 10.1, 10.3).

Images are NHWC floats in ``[0, max_val]``; every metric returns one value per image, shape (N,).

Zoom-to-Inpaint (``test.py``) computes its metrics with TensorFlow; these functions reproduce the
TF definitions (checked against ``fixtures/zti/metrics_case.npz`` to 1e-4):

* ``psnr``: ``tf.image.psnr``: ``20 log10(max_val) - 10 log10(MSE)``, MSE over H, W and C.
* ``ssim``: ``tf.image.ssim``: 11x11 Gaussian window (sigma 1.5, normalised by a softmax), 'valid'
  filtering, k1 = 0.01, k2 = 0.03, the SSIM map averaged over positions per channel, then over
  channels.
* ``ms_ssim``: ``tf.image.ssim_multiscale`` with the paper's power factors (0.0448, 0.2856, 0.3001,
  0.2363, 0.1333): 5 scales, 2x2 average pooling between them (an odd side is first padded by one
  symmetric row / column, as TF does), ``prod_{i<4} relu(cs_i)^{w_i} * relu(ssim_4)^{w_4}`` per
  channel, then the channel mean. Needs ``min(H, W) >= 161``: the coarsest scale (sides halved
  four times, rounding up) must hold an 11x11 window (TF asserts the same).
* ``mean_l1``: mean ``|x - y|``; ``scale=255`` gives seed-000's L1 on the 0..255 scale
  (REFERENCE.md 10.3: "scale 0-255 judging by magnitude").

Also here: LPIPS (a wrapper of ``hrinpaint_jax.lpips``), per-band SSIM on a Laplacian pyramid
(ZTI Table 7) and hole-only variants (``hole_*``) of L1, PSNR and SSIM that average only over the
hole. ``compute_metrics`` evaluates a named set of them in one call (one compilation per shape).

The Gaussian filtering is written as separable sums of shifted slices rather than convolutions:
mathematically the same window (the 2-D softmax of ``g_i + g_j`` is the outer product of the 1-D
softmaxes), exact float32 elementwise arithmetic on every backend (no TF32 convolutions on GPUs),
and cheap at 2048^2.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# tf.image.ssim_multiscale's power factors as used by the Zoom-to-Inpaint code (its defaults too).
MS_SSIM_POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
# The "traditional 5-tap Gaussian kernel" of ZTI Table 7 (coefficients not given in the paper): the
# Burt-Adelson binomial [1, 4, 6, 4, 1] / 16, the kernel of OpenCV's pyrDown / pyrUp.
PYRAMID_KERNEL = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)
BAND_NAMES = ("high", "mid", "low")  # 2-level Laplacian pyramid: L0, L1 and the blurred residual G2

# Metric names understood by ``compute_metrics``. Whole-image metrics first, then hole-only ones.
WHOLE_METRICS = ("l1", "l1_255", "psnr", "ssim", "ms_ssim", "lpips", "band_ssim")
HOLE_METRICS = ("hole_l1", "hole_l1_255", "hole_psnr", "hole_ssim", "hole_lpips")
# Direction of each reported column: True when larger is better.
HIGHER_IS_BETTER = {
    "l1": False,
    "l1_255": False,
    "psnr": True,
    "ssim": True,
    "ms_ssim": True,
    "lpips": False,
    "ssim_high": True,
    "ssim_mid": True,
    "ssim_low": True,
    "hole_l1": False,
    "hole_l1_255": False,
    "hole_psnr": True,
    "hole_ssim": True,
    "hole_lpips": False,
}


def _as_float(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def _check_pair(x: jax.Array, y: jax.Array) -> None:
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(f"expected two NHWC images of the same shape, got {x.shape} and {y.shape}")


# ----------------------------------------------------------------------------------------------
# PSNR and L1


def mean_l1(x, y, *, scale: float = 1.0) -> jax.Array:
    """Mean absolute difference per image, times ``scale``.

    Args:
      x, y: [N, H, W, C] in [0, 1].
      scale: 1 for ZTI's L1 (0..1 images), 255 for seed-000's (0..255 scale).
    Returns:
      (N,) float32.
    """
    x, y = _as_float(x), _as_float(y)
    _check_pair(x, y)
    return jnp.mean(jnp.abs(x - y), axis=(1, 2, 3)) * scale


def _psnr_from_mse(mse: jax.Array, max_val: float) -> jax.Array:
    # tf.image.psnr's formula: 20 log10(max_val) - (10 / ln 10) ln(MSE); +inf for identical images.
    return 20.0 * math.log10(max_val) - (10.0 / math.log(10.0)) * jnp.log(mse)


def psnr(x, y, *, max_val: float = 1.0) -> jax.Array:
    """``tf.image.psnr``: PSNR in dB per image, MSE over H, W and C. [N, H, W, C] -> (N,)."""
    x, y = _as_float(x), _as_float(y)
    _check_pair(x, y)
    return _psnr_from_mse(jnp.mean(jnp.square(x - y), axis=(1, 2, 3)), max_val)


# ----------------------------------------------------------------------------------------------
# SSIM and MS-SSIM


def gaussian_window_1d(size: int = SSIM_FILTER_SIZE, sigma: float = SSIM_FILTER_SIGMA) -> np.ndarray:
    """The 1-D factor of TF's SSIM window: ``softmax(-0.5 * ((i - (size-1)/2) / sigma)^2)``.

    TF builds the 2-D window as ``softmax(g_i + g_j)`` over all (i, j), which equals
    ``outer(w, w)`` for this ``w``.
    """
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    logits = -0.5 * np.square(coords) / sigma**2
    w = np.exp(logits - logits.max())
    return (w / w.sum()).astype(np.float32)


def _filter_valid(x: jax.Array, taps: np.ndarray) -> jax.Array:
    """Separable 'valid' filtering of [N, H, W, C] along H then W: ``sum_k w_k x[i + k]``."""
    k = len(taps)
    h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
    rows = sum(float(taps[i]) * x[:, i : i + h] for i in range(k))
    return sum(float(taps[i]) * rows[:, :, i : i + w] for i in range(k))


def _ssim_maps(x, y, *, max_val, filter_size, filter_sigma, k1, k2):
    """TF's ``_ssim_helper`` with a Gaussian 'valid' reducer: (luminance, contrast-structure) maps,
    each [N, H - filter_size + 1, W - filter_size + 1, C]."""
    if min(x.shape[1:3]) < filter_size:
        raise ValueError(
            f"SSIM needs images of at least {filter_size}x{filter_size} pixels, got "
            f"{x.shape[2]}x{x.shape[1]} (WxH)"
        )
    taps = gaussian_window_1d(filter_size, filter_sigma)
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    # One filtering pass over the four local moments stacked on the channel axis (a quarter of the
    # program of four separate passes: much faster to compile, same arithmetic per element).
    channels = x.shape[-1]
    moments = jnp.concatenate([x, y, x * y, jnp.square(x) + jnp.square(y)], axis=-1)
    moments = _filter_valid(moments, taps)
    mean_x, mean_y, mean_xy, mean_sq = (
        moments[..., i * channels : (i + 1) * channels] for i in range(4)
    )
    num0 = mean_x * mean_y * 2.0
    den0 = jnp.square(mean_x) + jnp.square(mean_y)
    luminance = (num0 + c1) / (den0 + c1)
    num1 = mean_xy * 2.0
    den1 = mean_sq
    # 2 cov = E[2xy] - 2 mu_x mu_y; var_x + var_y = E[x^2 + y^2] - (mu_x^2 + mu_y^2), as TF writes it.
    cs = (num1 - num0 + c2) / (den1 - den0 + c2)
    return luminance, cs


def _ssim_per_channel(x, y, **kw) -> tuple[jax.Array, jax.Array]:
    """(SSIM, CS) per image and channel, [N, C] each: map means over positions."""
    luminance, cs = _ssim_maps(x, y, **kw)
    return jnp.mean(luminance * cs, axis=(1, 2)), jnp.mean(cs, axis=(1, 2))


def ssim(
    x,
    y,
    *,
    max_val: float = 1.0,
    filter_size: int = SSIM_FILTER_SIZE,
    filter_sigma: float = SSIM_FILTER_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> jax.Array:
    """``tf.image.ssim``: [N, H, W, C] -> (N,) (per-channel SSIM, then the channel mean)."""
    x, y = _as_float(x), _as_float(y)
    _check_pair(x, y)
    per_channel, _ = _ssim_per_channel(
        x, y, max_val=max_val, filter_size=filter_size, filter_sigma=filter_sigma, k1=k1, k2=k2
    )
    return jnp.mean(per_channel, axis=-1)


def _avg_pool_2x2(x: jax.Array) -> jax.Array:
    """TF's MS-SSIM downscale: pad an odd H / W by one symmetric (edge-repeating) row / column at
    the bottom / right, then a 2x2 'valid' average pool."""
    if x.shape[1] % 2:
        x = jnp.concatenate([x, x[:, -1:]], axis=1)
    if x.shape[2] % 2:
        x = jnp.concatenate([x, x[:, :, -1:]], axis=2)
    return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) * 0.25


def ms_ssim_min_size(num_scales: int = len(MS_SSIM_POWER_FACTORS), filter_size: int = 11) -> int:
    """Smallest side MS-SSIM accepts: the coarsest scale (the side halved ``num_scales - 1`` times,
    rounding up, as odd sides are padded) must still hold one SSIM window: 161 for 5 scales."""
    return (filter_size - 1) * 2 ** (num_scales - 1) + 1


def ms_ssim(
    x,
    y,
    *,
    max_val: float = 1.0,
    power_factors: Sequence[float] = MS_SSIM_POWER_FACTORS,
    filter_size: int = SSIM_FILTER_SIZE,
    filter_sigma: float = SSIM_FILTER_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> jax.Array:
    """``tf.image.ssim_multiscale``: [N, H, W, C] -> (N,). Needs ``min(H, W) >= 161`` (5 scales)."""
    x, y = _as_float(x), _as_float(y)
    _check_pair(x, y)
    kw = dict(max_val=max_val, filter_size=filter_size, filter_sigma=filter_sigma, k1=k1, k2=k2)
    weights = jnp.asarray(power_factors, jnp.float32)
    factors = []
    for scale in range(len(power_factors)):
        if scale:
            x, y = _avg_pool_2x2(x), _avg_pool_2x2(y)
        ssim_c, cs_c = _ssim_per_channel(x, y, **kw)
        factors.append(jax.nn.relu(cs_c))
    # The contrast-structure terms of scales 0..S-2, and the full SSIM of the coarsest scale.
    stacked = jnp.stack(factors[:-1] + [jax.nn.relu(ssim_c)], axis=-1)  # [N, C, S]
    return jnp.mean(jnp.prod(stacked**weights, axis=-1), axis=-1)


# ----------------------------------------------------------------------------------------------
# Per-band SSIM (ZTI Table 7)


def _blur_5tap(x: jax.Array, gain: float = 1.0) -> jax.Array:
    """Separable [1, 4, 6, 4, 1]/16 blur (times ``gain`` per axis) with reflect-101 borders
    (OpenCV's BORDER_DEFAULT), same size. [N, H, W, C] -> [N, H, W, C]."""
    h, w = x.shape[1:3]
    x = jnp.pad(x, ((0, 0), (2, 2), (0, 0), (0, 0)), mode="reflect")
    x = sum(gain * c * x[:, i : i + h] for i, c in enumerate(PYRAMID_KERNEL))
    x = jnp.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0)), mode="reflect")
    return sum(gain * c * x[:, :, i : i + w] for i, c in enumerate(PYRAMID_KERNEL))


def pyr_down(x: jax.Array) -> jax.Array:
    """OpenCV ``pyrDown``: 5-tap blur, keep even rows / columns. [N, H, W, C] -> [N, ceil(H/2),
    ceil(W/2), C]."""
    return _blur_5tap(x)[:, ::2, ::2]


def pyr_up(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """OpenCV-style ``pyrUp`` to ``size``: samples at even positions, zeros between, then the 5-tap
    blur with gain 2 per axis (so a constant image stays constant). [N, h, w, C] -> [N, *size, C]."""
    n, h, w, c = x.shape
    up = (
        jnp.zeros((n, *size, c), x.dtype)
        .at[:, ::2, ::2]
        .set(x[:, : (size[0] + 1) // 2, : (size[1] + 1) // 2])
    )
    return _blur_5tap(up, gain=2.0)


def laplacian_pyramid(x, levels: int = 2) -> list[jax.Array]:
    """[L_0, ..., L_{levels-1}, G_levels]: band-pass levels ``G_k - pyr_up(G_{k+1})`` (finest
    first) and the low-pass residual. [N, H, W, C] -> list of [N, ~H/2^k, ~W/2^k, C]."""
    g = _as_float(x)
    bands = []
    for _ in range(levels):
        down = pyr_down(g)
        bands.append(g - pyr_up(down, g.shape[1:3]))
        g = down
    return bands + [g]


def band_ssim(x, y, *, levels: int = 2, max_val: float = 1.0) -> jax.Array:
    """SSIM of each Laplacian-pyramid band of x and y (ZTI Table 7: high, mid, low for 2 levels).

    The bands are signed (zero-mean band-pass) images; SSIM is ``tf.image.ssim`` on them with the
    image's ``max_val`` (the paper does not say which dynamic range it used). The coarsest band
    must hold an 11x11 window: H, W >= 10 * 2^levels + 1 (41 for 2 levels).

    Returns:
      (N, levels + 1): finest (high) band first, low-pass residual last.
    """
    x, y = _as_float(x), _as_float(y)
    _check_pair(x, y)
    channels = x.shape[-1]
    # Both pyramids in one pass (x and y stacked on the channel axis).
    bands = laplacian_pyramid(jnp.concatenate([x, y], axis=-1), levels)
    px = [b[..., :channels] for b in bands]
    py = [b[..., channels:] for b in bands]
    return jnp.stack([ssim(a, b, max_val=max_val) for a, b in zip(px, py, strict=True)], axis=-1)


# ----------------------------------------------------------------------------------------------
# Hole-only metrics


def _hole_weights(hole, shape) -> jax.Array:
    """[N, H, W, 1] float weights from a [N, H, W] or [N, H, W, 1] hole mask (1 = hole)."""
    hole = _as_float(hole)
    if hole.ndim == 3:
        hole = hole[..., None]
    if hole.shape != (*shape[:3], 1):
        raise ValueError(f"hole mask {hole.shape} does not match images {shape}")
    return hole


def _masked_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """sum(values * w) / sum(w broadcast over channels), NaN where the hole is empty."""
    channels = values.shape[-1]
    total = jnp.sum(values * weights, axis=(1, 2, 3))
    count = jnp.sum(weights, axis=(1, 2, 3)) * channels
    return jnp.where(count > 0, total / jnp.where(count > 0, count, 1.0), jnp.nan)


def hole_l1(x, y, hole, *, scale: float = 1.0) -> jax.Array:
    """Mean ``|x - y|`` over the hole pixels only (times ``scale``); NaN for an empty hole.

    Args:
      x, y: [N, H, W, C]; hole: [N, H, W(, 1)], 1 = hole (fractional values weight pixels).
    """
    x, y = _as_float(x), _as_float(y)
    _check_pair(x, y)
    return _masked_mean(jnp.abs(x - y), _hole_weights(hole, x.shape)) * scale


def hole_psnr(x, y, hole, *, max_val: float = 1.0) -> jax.Array:
    """PSNR of the hole pixels: ``tf.image.psnr``'s formula with the MSE over the hole only."""
    x, y = _as_float(x), _as_float(y)
    _check_pair(x, y)
    return _psnr_from_mse(_masked_mean(jnp.square(x - y), _hole_weights(hole, x.shape)), max_val)


def hole_ssim(x, y, hole, *, max_val: float = 1.0, filter_size: int = SSIM_FILTER_SIZE) -> jax.Array:
    """``tf.image.ssim``'s SSIM map averaged over the windows *centred* in the hole (windows near
    the hole's edge also see known pixels, which is what SSIM measures there); NaN when no window
    centre lies in the hole (e.g. a hole only within ``filter_size // 2`` of the border)."""
    x, y = _as_float(x), _as_float(y)
    _check_pair(x, y)
    luminance, cs = _ssim_maps(
        x, y, max_val=max_val, filter_size=filter_size, filter_sigma=SSIM_FILTER_SIGMA, k1=SSIM_K1,
        k2=SSIM_K2,
    )  # fmt: skip
    r = filter_size // 2
    weights = _hole_weights(hole, x.shape)[:, r : x.shape[1] - r, r : x.shape[2] - r]
    return _masked_mean(luminance * cs, weights)


# ----------------------------------------------------------------------------------------------
# All at once


def lpips(x, y, params: dict[str, Any] | None = None) -> jax.Array:
    """LPIPS-VGG (v0.1) distance per image for [N, H, W, 3] in [0, 1] (``hrinpaint_jax.lpips``)."""
    from hrinpaint_jax.lpips import lpips as lpips_vgg

    return lpips_vgg(_as_float(x), _as_float(y), params, value_range=(0.0, 1.0))


def metric_columns(names: Sequence[str]) -> list[str]:
    """The result keys ``compute_metrics(names=...)`` returns, in order ('band_ssim' expands to
    'ssim_high', 'ssim_mid', 'ssim_low')."""
    columns = []
    for name in names:
        if name == "band_ssim":
            columns += [f"ssim_{band}" for band in BAND_NAMES]
        else:
            columns.append(name)
    return columns


def check_metric_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in WHOLE_METRICS + HOLE_METRICS]
    if unknown:
        raise ValueError(
            f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(WHOLE_METRICS + HOLE_METRICS)}"
        )


def metric_min_size(name: str) -> int:
    """Smallest image side the metric accepts."""
    if name == "ms_ssim":
        return ms_ssim_min_size()
    if name == "band_ssim":
        return (SSIM_FILTER_SIZE - 1) * 4 + 1
    if name in ("lpips", "hole_lpips"):
        return 16
    if name in ("ssim", "hole_ssim"):
        return SSIM_FILTER_SIZE
    return 1


@functools.partial(jax.jit, static_argnames=("names",))
def compute_metrics(pred, target, hole, lpips_params=None, *, names: tuple[str, ...]) -> dict:
    """The metrics ``names`` of a batch, in one compiled call per (names, shape).

    Args:
      pred, target: [N, H, W, 3] float in [0, 1] (prediction, ground truth).
      hole: [N, H, W, 1] float, 1 = hole (used by the ``hole_*`` metrics).
      lpips_params: ``lpips.load_lpips_params()`` when 'lpips' is among ``names`` (passed as an
        argument so the VGG weights are not baked into the program).
      names: a tuple of ``WHOLE_METRICS`` / ``HOLE_METRICS`` names.
    Returns:
      {column: (N,) float32} with the columns of ``metric_columns(names)``.
    """
    out = {}
    maps = None
    if "lpips" in names or "hole_lpips" in names:  # one VGG pass serves both
        from hrinpaint_jax.lpips import lpips_maps

        maps = lpips_maps(_as_float(pred), _as_float(target), lpips_params)
    for name in names:
        if name == "l1":
            out[name] = mean_l1(pred, target)
        elif name == "l1_255":
            out[name] = mean_l1(pred, target, scale=255.0)
        elif name == "psnr":
            out[name] = psnr(pred, target)
        elif name == "ssim":
            out[name] = ssim(pred, target)
        elif name == "ms_ssim":
            out[name] = ms_ssim(pred, target)
        elif name == "lpips":
            from hrinpaint_jax.lpips import lpips_from_maps

            out[name] = lpips_from_maps(maps)
        elif name == "hole_lpips":
            from hrinpaint_jax.lpips import hole_lpips_from_maps

            out[name] = hole_lpips_from_maps(maps, hole)
        elif name == "band_ssim":
            bands = band_ssim(pred, target)
            for i, band in enumerate(BAND_NAMES):
                out[f"ssim_{band}"] = bands[:, i]
        elif name == "hole_l1":
            out[name] = hole_l1(pred, target, hole)
        elif name == "hole_l1_255":
            out[name] = hole_l1(pred, target, hole, scale=255.0)
        elif name == "hole_psnr":
            out[name] = hole_psnr(pred, target, hole)
        elif name == "hole_ssim":
            out[name] = hole_ssim(pred, target, hole)
        else:
            check_metric_names([name])
    return out
