"""Resizes with the exact semantics of the reference implementations.

REFERENCE.md section 1.5. Each function names the library call it reproduces; none of them may be
replaced by a bare ``jax.image.resize`` call, whose default (antialias=True) is wrong for PyTorch's
``interpolate`` and whose nearest rule (half-pixel) differs from OpenCV's.

All functions take NHWC arrays (or HWC / HW where stated) and keep the dtype of floating inputs.

The second part of the module (the ``*_tf`` functions) reproduces TensorFlow 2 ``tf.image.resize``
('bicubic' with and without antialias, 'bilinear', 'nearest') and ``tf.image.image_gradients`` for the
Zoom-to-Inpaint port. The resizes are static per-axis weight matrices built on the host with TF's
float32 coordinate arithmetic and its 1/1024 bicubic phase table (QUIRK), within ~5e-7 of TF at any
ratio; nearest is an exact static gather.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
    """PyTorch ``interpolate(mode='nearest', scale_factor=2)``: every pixel becomes a 2x2 block.

    Args:
      x: [B, H, W, C].
    Returns:
      [B, 2H, 2W, C].
    """
    b, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
    return x.reshape(b, 2 * h, 2 * w, c)


def resize_bilinear_torch(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """PyTorch ``interpolate(mode='bilinear', align_corners=False)`` (DFNet ``resize_like``).

    Half-pixel centres, 2-tap linear, edge clamp and **no antialiasing**: a 2^k downscale is the mean of
    the two central samples of each 2^k block per axis, not the block mean. Same size is the identity.

    Args:
      x: [B, H, W, C] floating.
      size: (out_h, out_w).
    Returns:
      [B, out_h, out_w, C].
    """
    out_h, out_w = size
    if (out_h, out_w) == x.shape[1:3]:
        return x
    return jax.image.resize(x, (x.shape[0], out_h, out_w, x.shape[3]), method="linear", antialias=False)


def resize_bilinear_window(
    x: np.ndarray, size: tuple[int, int], window: tuple[int, int, int, int]
) -> np.ndarray:
    """Rows y0:y1 and columns x0:x1 of ``resize_bilinear_torch`` for an up-scale, on the host.

    Half-pixel centres with the source coordinate clamped at 0 and the last row/column repeated,
    as PyTorch's ``align_corners=False`` up-scale: the same taps as the full resize, up to float32
    rounding (the weights are computed in float64 here), with memory for the window only.

    Args:
      x: [H, W, C] float; size: (out_h, out_w) >= (H, W); window: (y0, y1, x0, x1).
    Returns:
      [y1 - y0, x1 - x0, C] float32.
    """
    y0, y1, x0, x1 = window

    def taps(n_in, n_out, lo, hi):
        src = np.maximum((np.arange(lo, hi) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)

    r0, r1, fy = taps(x.shape[0], size[0], y0, y1)
    c0, c1, fx = taps(x.shape[1], size[1], x0, x1)
    x = np.asarray(x, np.float32)
    rows = x[r0] * (1 - fy)[:, None, None] + x[r1] * fy[:, None, None]
    return rows[:, c0] * (1 - fx)[None, :, None] + rows[:, c1] * fx[None, :, None]


def nearest_indices_cv2(in_size: int, out_size: int) -> np.ndarray:
    """Source indices of OpenCV ``INTER_NEAREST``: ``min(floor(dst * in / out), in - 1)``.

    No half-pixel offset (a 16 -> 4 downscale picks 0, 4, 8, 12). Computed in float64 on the host, as
    OpenCV uses a double scale factor.
    """
    scale = in_size / out_size
    idx = np.floor(np.arange(out_size, dtype=np.float64) * scale).astype(np.int64)
    return np.minimum(idx, in_size - 1)


def resize_nearest_cv2(x, size: tuple[int, int]):
    """OpenCV ``cv2.resize(x, (w, h), interpolation=INTER_NEAREST)`` on the two leading axes.

    Works on NumPy and JAX arrays ([H, W, ...]); the gather indices are static.

    Args:
      x: [H, W, ...].
      size: (out_h, out_w).
    """
    rows = nearest_indices_cv2(x.shape[0], size[0])
    cols = nearest_indices_cv2(x.shape[1], size[1])
    return x[rows][:, cols]


# OpenCV INTER_LINEAR on uint8 uses 11-bit fixed-point weights (INTER_RESIZE_COEF_BITS).
_CV_COEF_SCALE = 2048


def _cv2_linear_taps(in_size: int, out_size: int, clamp_weights: bool):
    """Source taps and fixed-point weights of OpenCV's uint8 INTER_LINEAR along one axis.

    Half-pixel centres, computed in float32 as OpenCV does. Horizontally OpenCV clamps the *weight*
    at the borders (fx = 0); vertically it keeps the weight and clamps the row *index*, which only
    matters through the fixed-point rounding below.
    """
    f = ((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s).astype(np.float32)
    if clamp_weights:
        low, high = s < 0, s >= in_size - 1
        f[low], s[low] = 0.0, 0
        f[high], s[high] = 0.0, in_size - 1
    w1 = np.round(f * _CV_COEF_SCALE).astype(np.int32)
    w0 = np.round((np.float32(1.0) - f) * _CV_COEF_SCALE).astype(np.int32)
    return np.clip(s, 0, in_size - 1), np.clip(s + 1, 0, in_size - 1), w0, w1


def resize_bilinear_cv2_u8(
    x: jax.Array, size: tuple[int, int], window: tuple[int, int, int, int] | None = None
) -> jax.Array:
    """OpenCV ``cv2.resize(x, (w, h), interpolation=INTER_LINEAR)`` on uint8, bit for bit.

    Horizontal pass: ``S = x[sx] * a0 + x[sx+1] * a1`` in int32 with 11-bit weights; vertical pass as
    OpenCV's SIMD kernel computes it: ``((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16) + 2) >> 2``
    (not the exact ``(S0 b0 + S1 b1 + 2^21) >> 22``, which differs by 1 on ~12 % of values). Checked
    against opencv-python 5.0 for up-scales, the identity and the exact 2x down-scale the pipeline
    uses (where OpenCV switches to INTER_AREA, which coincides).

    Args:
      x: [H, W, C] uint8.
      size: (out_h, out_w).
      window: (y0, y1, x0, x1): compute only these output rows and columns (exactly the crop of
        the full output, with memory for the window only).
    Returns:
      [out_h, out_w, C] uint8, or [y1 - y0, x1 - x0, C] for a window.
    """
    out_h, out_w = size
    h, w = x.shape[:2]
    y0, y1, x0, x1 = window if window is not None else (0, out_h, 0, out_w)
    ys0, ys1, b0, b1 = (t[y0:y1] for t in _cv2_linear_taps(h, out_h, clamp_weights=False))
    xs0, xs1, a0, a1 = (t[x0:x1] for t in _cv2_linear_taps(w, out_w, clamp_weights=True))
    xi = x.astype(jnp.int32)
    rows = xi[:, xs0] * a0[None, :, None] + xi[:, xs1] * a1[None, :, None]  # [h, out_w, C]
    s0, s1 = rows[ys0] >> 4, rows[ys1] >> 4
    out = ((b0[:, None, None] * s0) >> 16) + ((b1[:, None, None] * s1) >> 16)
    return jnp.clip((out + 2) >> 2, 0, 255).astype(jnp.uint8)


# ---------------------------------------------------------------------------------------------------
# TensorFlow 2 ``tf.image.resize`` semantics (Zoom-to-Inpaint port; REFERENCE.md section 1.5, TF2 rows).
#
# Every resize is a separable linear map, built here on the host as one float64 NumPy matrix per
# axis (shapes are static) and applied with two einsums. TF computes its sampling coordinates in
# float32; the matrices reproduce that float32 arithmetic, which is what brings them within float32
# noise (<= ~5e-7) of TF 2.21 at every ratio tried. ``jax.image.resize`` computes its coordinates
# differently and is off by up to ~1.5e-5 at some ratios (e.g. 384 -> 224, 48 -> 91), and by 6.4e-4
# for non-antialiased bicubic at non-integer ratios (the phase table below).
# ---------------------------------------------------------------------------------------------------

# TF's non-antialiased bicubic kernel reads its cubic weights from a table with this many steps per
# unit, so the fractional source offset ("phase") is rounded to a multiple of 1 / 1024.
_TF_BICUBIC_TABLE_STEPS = 1024
# Keys cubic convolution parameter used by TF (both the table kernel and scale-and-translate).
_KEYS_A = -0.5
_F32 = np.float32


def _keys_cubic(t: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (support [-2, 2]), in float64."""
    a = _KEYS_A
    t = np.abs(np.asarray(t, np.float64))
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    return np.where(t <= 1.0, near, np.where(t < 2.0, far, 0.0))


def _triangle(t: np.ndarray) -> np.ndarray:
    """Triangle (linear interpolation) kernel, support [-1, 1], in float64."""
    return np.maximum(0.0, 1.0 - np.abs(np.asarray(t, np.float64)))


def _tf_half_pixel_source(in_size: int, out_size: int) -> np.ndarray:
    """TF's half-pixel source coordinate ``(dst + 0.5) * (in / out) - 0.5``, evaluated in float32.

    QUIRK: TF computes the scale and the coordinate in single precision. Doing the same keeps the
    floor / phase rounding on TF's side of every boundary (float64 coordinates pick a different
    bicubic phase at e.g. 999 -> 1000 and 2000 -> 7).
    """
    scale = _F32(in_size) / _F32(out_size)
    dst = np.arange(out_size, dtype=_F32)
    return ((dst + _F32(0.5)) * scale - _F32(0.5)).astype(_F32)


def _scatter_taps(taps: np.ndarray, weights: np.ndarray, in_size: int) -> np.ndarray:
    """Dense [out, in] matrix from per-output taps [out, k] (clamped into range) and weights."""
    mat = np.zeros((taps.shape[0], in_size), np.float64)
    rows = np.broadcast_to(np.arange(taps.shape[0])[:, None], taps.shape)
    np.add.at(mat, (rows, np.clip(taps, 0, in_size - 1)), weights)
    return mat


def tf_bicubic_weight_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Interpolation matrix [out_size, in_size] (float64) of TF2 non-antialiased bicubic along one axis.

    For each output sample: source coordinate ``s`` by :func:`_tf_half_pixel_source` (float32),
    ``i = floor(s)``, phase ``p = rint((s - i) * 1024) / 1024`` (QUIRK: TF's 1024-step weight table;
    round to nearest, ties to even, evaluated in float32), taps ``i - 1 .. i + 2`` with Keys (a = -0.5)
    weights ``k(p + 1), k(p), k(1 - p), k(2 - p)``. Taps outside ``[0, in_size)`` are dropped and the
    remaining weights renormalised to sum to 1 (half-pixel "exclude outside" rule; no value clamping).
    """
    src = _tf_half_pixel_source(in_size, out_size)
    base = np.floor(src)
    frac = (src - base).astype(_F32)
    # QUIRK: quantised phase. Round-to-nearest reproduces the fixture (37 -> 18) to 3.6e-7; truncation
    # (int(frac * 1024)) is off there by 1.5e-3 and no quantisation by 6.4e-4. Ties to even (not half
    # up) and float32 (not float64) arithmetic matched TF 2.21's weight matrices on 3574 size pairs;
    # the other choices each failed on a few (ties occur e.g. at 2 -> 2048).
    phase = np.rint(frac * _F32(_TF_BICUBIC_TABLE_STEPS)).astype(np.float64) / _TF_BICUBIC_TABLE_STEPS
    offsets = np.arange(-1, 3)
    taps = base.astype(np.int64)[:, None] + offsets[None, :]  # [out, 4]
    weights = _keys_cubic(phase[:, None] - offsets[None, :])
    weights = np.where((taps >= 0) & (taps < in_size), weights, 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    return _scatter_taps(taps, weights, in_size)


def tf_bilinear_weight_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Interpolation matrix [out_size, in_size] (float64) of TF2 non-antialiased bilinear along one axis.

    Half-pixel centres: source coordinate ``s`` in float32 (:func:`_tf_half_pixel_source`), taps
    ``floor(s)`` and ``ceil(s)`` clamped into ``[0, in_size - 1]`` (edge clamp), weights
    ``1 - f, f`` with ``f = s - floor(s)`` (float32). Equal to ``jax.image.resize('linear',
    antialias=False)`` up to the float32 rounding of ``s`` (JAX differs by up to 1.5e-5 at 384 -> 224).
    """
    src = _tf_half_pixel_source(in_size, out_size)
    low = np.floor(src)
    frac = (src - low).astype(np.float64)
    taps = np.stack([low, np.ceil(src)], axis=1).astype(np.int64)
    weights = np.stack([1.0 - frac, frac], axis=1)
    return _scatter_taps(taps, weights, in_size)


def tf_scale_translate_weight_matrix(in_size: int, out_size: int, kernel: str) -> np.ndarray:
    """Matrix [out_size, in_size] (float64) of TF2 antialiased resize (scale-and-translate) on one axis.

    ``scale = out / in``, ``inv = 1 / scale``, output sample ``x`` sits at ``c = (x + 0.5) * inv`` in
    input pixel units; input pixel ``y`` gets weight ``k((y + 0.5 - c) / max(inv, 1))`` (the kernel is
    widened by the scale when downscaling: antialiasing), then each row is normalised to sum to 1 over
    the in-range pixels. Kernels: ``'keyscubic'`` (Keys a = -0.5, TF's antialiased 'bicubic') or
    ``'triangle'`` (TF's antialiased 'bilinear'). QUIRK: ``scale``, ``inv``, ``c``, ``y + 0.5 - c``
    and the division are rounded to float32 as TF does; the kernel itself is evaluated in float64.
    """
    fn = {"keyscubic": _keys_cubic, "triangle": _triangle}[kernel]
    scale = _F32(out_size) / _F32(in_size)
    inv = _F32(1.0) / scale
    kernel_scale = max(inv, _F32(1.0))
    centre = ((np.arange(out_size, dtype=_F32) + _F32(0.5)) * inv).astype(_F32)
    dist = (np.arange(in_size, dtype=_F32)[None, :] + _F32(0.5) - centre[:, None]).astype(_F32)
    weights = fn((dist / kernel_scale).astype(_F32))
    total = weights.sum(axis=1, keepdims=True)
    return weights / np.where(total == 0.0, 1.0, total)


def _apply_separable(x: jax.Array, mat_h: np.ndarray, mat_w: np.ndarray) -> jax.Array:
    """``out[b, o, p, c] = sum_{h, w} mat_h[o, h] mat_w[p, w] x[b, h, w, c]`` at float32 or wider."""
    dtype = x.dtype
    compute = jnp.promote_types(dtype, jnp.float32)
    hi = jax.lax.Precision.HIGHEST  # no TF32 / bf16 passes on GPU
    y = jnp.asarray(x).astype(compute)
    y = jnp.einsum("oh,bhwc->bowc", jnp.asarray(mat_h, compute), y, precision=hi)
    y = jnp.einsum("pw,bowc->bopc", jnp.asarray(mat_w, compute), y, precision=hi)
    return y.astype(dtype)


def _out_size(x: jax.Array, size: tuple[int, int]) -> tuple[int, int]:
    if x.ndim != 4:
        raise ValueError(f"expected an NHWC array [B, H, W, C], got shape {x.shape}")
    out_h, out_w = (int(s) for s in size)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size must be positive, got {size}")
    return out_h, out_w


def _resize_tf(x: jax.Array, size: tuple[int, int], matrix) -> jax.Array:
    out_h, out_w = _out_size(x, size)
    if (out_h, out_w) == x.shape[1:3]:
        return x  # every TF method is the identity at equal size
    return _apply_separable(x, matrix(x.shape[1], out_h), matrix(x.shape[2], out_w))


def resize_bicubic_tf(x: jax.Array, size: tuple[int, int], *, antialias: bool = False) -> jax.Array:
    """TF2 ``tf.image.resize(x, size, method='bicubic', antialias=antialias)``.

    antialias=False (TF's default; the SR network's global residual): TF's ``ResizeBicubic`` kernel
    with half-pixel centres, Keys cubic a = -0.5, the sampling phase quantised to 1/1024 (QUIRK, see
    :func:`tf_bicubic_weight_matrix`), out-of-range taps dropped and the weights renormalised. For an
    exact x2 upscale (phases 0.25 / 0.75, unaffected by the quantisation) this equals
    ``jax.image.resize('cubic', antialias=False)``; at other ratios plain JAX is off by up to ~6e-4.

    antialias=True (the data pipeline's HR -> LR resize): TF's scale-and-translate with the Keys
    kernel, widened when downscaling (:func:`tf_scale_translate_weight_matrix`); the same as
    ``jax.image.resize('cubic', antialias=True)`` up to float32 coordinate rounding.

    Args:
      x: [B, H, W, C] floating.
      size: (out_h, out_w).
      antialias: as TF's argument.
    Returns:
      [B, out_h, out_w, C], same dtype as ``x`` (computed in float32 or wider).
    """
    if antialias:
        return _resize_tf(x, size, lambda i, o: tf_scale_translate_weight_matrix(i, o, "keyscubic"))
    return _resize_tf(x, size, tf_bicubic_weight_matrix)


def resize_bilinear_tf(x: jax.Array, size: tuple[int, int], *, antialias: bool = True) -> jax.Array:
    """TF2 ``tf.image.resize(x, size, method='bilinear', antialias=antialias)`` (TF's default method).

    antialias=True (the ZTI VGG loss's resize to 224): triangle kernel widened by the scale when
    downscaling (:func:`tf_scale_translate_weight_matrix`), = ``jax.image.resize('linear',
    antialias=True)`` up to float32 coordinate rounding. antialias=False: half-pixel 2-tap bilinear
    with edge clamp (:func:`tf_bilinear_weight_matrix`), = ``jax.image.resize('linear',
    antialias=False)`` up to the same rounding.

    NOTE: the default here is antialias=True (the call the reference makes), unlike TF's own default.

    Args:
      x: [B, H, W, C] floating.
      size: (out_h, out_w).
      antialias: see above.
    Returns:
      [B, out_h, out_w, C], same dtype as ``x`` (computed in float32 or wider).
    """
    if antialias:
        return _resize_tf(x, size, lambda i, o: tf_scale_translate_weight_matrix(i, o, "triangle"))
    return _resize_tf(x, size, tf_bilinear_weight_matrix)


def tf_nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source indices of TF2 half-pixel nearest: ``min(floor((dst + 0.5) * in / out), in - 1)``.

    (512 -> 128 picks 4i + 2, 128 -> 64 picks 2i + 1, 16 -> 4 picks 2, 6, 10, 14, x2 up replicates.)

    QUIRK: TF evaluates this in float32 (``scale = float(in) / out``, then ``(dst + 0.5) * scale``), and
    that is what is reproduced here. Where the exact value is an integer the float32 product can fall
    just below it: 2 -> 41 picks source 0 for output 20 although 20.5 * 2 / 41 = 1. Exact integer or
    float64 arithmetic disagrees with TF on 205 / 294 of the 9604 size pairs (in < 70, out < 140);
    ``jax.image.resize('nearest')`` on 277 of them (e.g. 10 -> 25: TF picks 1, 3, 5 for outputs 2, 7,
    12, JAX 0, 2, 4). This float32 rule matched TF 2.21 on all of them.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale  # float32 product, as TF
    return np.minimum(np.floor(src).astype(np.int64), in_size - 1)


def shrink_hole(hole: jax.Array, size: tuple[int, int]) -> jax.Array:
    """[B, H, W, 1] binary hole (1 = hole) shrunk to ``size``: a pixel is a hole if any hole pixel
    falls under its (non-negative, antialiased) triangle filter, so no part of the hole escapes."""
    return (resize_bilinear_tf(hole, size, antialias=True) > 1e-6).astype(jnp.float32)


def resize_nearest_tf(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """TF2 ``tf.image.resize(x, size, method='nearest')`` (half-pixel nearest neighbour).

    A static gather with the indices of :func:`tf_nearest_indices` on each spatial axis; exact for any
    dtype and ratio.

    Args:
      x: [B, H, W, C].
      size: (out_h, out_w).
    Returns:
      [B, out_h, out_w, C], same dtype as ``x``.
    """
    out_h, out_w = _out_size(x, size)
    if (out_h, out_w) == x.shape[1:3]:
        return x
    rows = tf_nearest_indices(x.shape[1], out_h)
    cols = tf_nearest_indices(x.shape[2], out_w)
    return x[:, rows][:, :, cols]


def image_gradients_tf(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """TF ``tf.image.image_gradients(x)``: forward differences with a zero last row / last column.

    ``dy[:, i] = x[:, i + 1] - x[:, i]`` (``dy[:, H - 1] = 0``), ``dx[:, :, j] = x[:, :, j + 1] -
    x[:, :, j]`` (``dx[:, :, W - 1] = 0``).

    Args:
      x: [B, H, W, C].
    Returns:
      (dy, dx), each [B, H, W, C] with the dtype of ``x``.
    """
    if x.ndim != 4:
        raise ValueError(f"image_gradients_tf expects NHWC [B, H, W, C], got shape {x.shape}")
    dy = x[:, 1:] - x[:, :-1]
    dx = x[:, :, 1:] - x[:, :, :-1]
    dy = jnp.concatenate([dy, jnp.zeros_like(x[:, :1])], axis=1)
    dx = jnp.concatenate([dx, jnp.zeros_like(x[:, :, :1])], axis=2)
    return dy, dx
