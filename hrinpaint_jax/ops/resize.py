"""Resizes with the exact semantics of the reference implementations.

REFERENCE.md section 1.5. Each function names the library call it reproduces; none of them may be
replaced by a bare ``jax.image.resize`` call, whose default (antialias=True) is wrong for PyTorch's
``interpolate`` and whose nearest rule (half-pixel) differs from OpenCV's.

All functions take NHWC arrays (or HWC / HW where stated) and keep the dtype of floating inputs.
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
