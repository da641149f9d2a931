"""TensorFlow pixel shuffle: ``tf.nn.depth_to_space`` and ``tf.nn.space_to_depth`` (NHWC).

REFERENCE.md section 5.5: the Zoom-to-Inpaint SR network upsamples with TF ``depth_to_space``, whose
channel ordering is

    out[b*y + dy, b*x + dx, c] = in[y, x, (dy*b + dx)*C + c]

i.e. the sub-pixel position is the *slow* part of the channel index. PyTorch ``nn.PixelShuffle`` uses
``in[y, x, c*b*b + dy*b + dx]`` (the sub-pixel position is the *fast* part) and is therefore **not**
interchangeable: weights trained for one produce scrambled output with the other.

Both functions are pure reshapes/transposes, exact for any dtype, and keep the dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_block(block: int) -> int:
    if not isinstance(block, int) or isinstance(block, bool) or block < 1:
        raise ValueError(f"block must be a positive int, got {block!r}")
    return block


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
    """TF ``tf.nn.depth_to_space(x, block)`` (NHWC, TF channel ordering; not PyTorch's PixelShuffle).

    ``out[n, block*y + dy, block*x + dx, c] = x[n, y, x, (dy*block + dx)*C + c]``.

    Args:
      x: [B, H, W, C*block*block].
      block: block size (>= 1).
    Returns:
      [B, H*block, W*block, C], same dtype.
    Raises:
      ValueError: if ``x`` is not 4-D or its channel count is not a multiple of ``block**2``.
    """
    b = _check_block(block)
    if x.ndim != 4:
        raise ValueError(f"depth_to_space expects NHWC [B, H, W, C*{b}*{b}], got shape {x.shape}")
    n, h, w, cin = x.shape
    if cin % (b * b):
        raise ValueError(
            f"depth_to_space: channel count {cin} is not divisible by block**2 = {b * b} "
            f"(shape {x.shape})"
        )
    c = cin // (b * b)
    x = jnp.reshape(x, (n, h, w, b, b, c))  # channel index = (dy*b + dx)*C + c
    x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))  # [n, y, dy, x, dx, c]
    return jnp.reshape(x, (n, h * b, w * b, c))


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
    """TF ``tf.nn.space_to_depth(x, block)`` (NHWC): the exact inverse of :func:`depth_to_space`.

    ``out[n, y, x, (dy*block + dx)*C + c] = x[n, block*y + dy, block*x + dx, c]``.

    Args:
      x: [B, H*block, W*block, C].
      block: block size (>= 1).
    Returns:
      [B, H, W, C*block*block], same dtype.
    Raises:
      ValueError: if ``x`` is not 4-D or its height or width is not a multiple of ``block``.
    """
    b = _check_block(block)
    if x.ndim != 4:
        raise ValueError(f"space_to_depth expects NHWC [B, H*{b}, W*{b}, C], got shape {x.shape}")
    n, hb, wb, c = x.shape
    if hb % b or wb % b:
        raise ValueError(
            f"space_to_depth: height {hb} and width {wb} must both be divisible by block = {b} "
            f"(shape {x.shape})"
        )
    h, w = hb // b, wb // b
    x = jnp.reshape(x, (n, h, b, w, b, c))  # [n, y, dy, x, dx, c]
    x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))  # [n, y, x, dy, dx, c]
    return jnp.reshape(x, (n, h, w, b * b * c))
