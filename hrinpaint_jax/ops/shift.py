"""The shifted copies that make the 20-channel input of the shift refinement U-Net.

Moskalenko et al., section 3; REFERENCE.md section 4 steps 13-15 and section 3.1. Each copy moves the
matched image (and its hole mask) by ``shift`` pixels; the band it vacates is filled with
``1/255`` in the image channels (the reference's ``cval=1`` on the 0..255 scale: near-black, not 0)
and with 1 (= hole) in the mask channel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Reference quirk (REFERENCE.md 4, step 14): the vacated band is filled with 1 on the uint8 scale.
SHIFT_IMAGE_FILL = 1.0 / 255.0


def reference_shift(padded_height: int) -> int:
    """Shift used by the reference: ``100/512`` of the **padded height**, for both axes.

    Always an integer for heights that are multiples of 256 (50 px per 256 rows); the paper's
    "20 % of the image size" is this rounded.
    """
    shift = padded_height * 100 / 512
    if shift != int(shift):
        raise ValueError(f"padded height {padded_height} is not a multiple of 128")
    return int(shift)


def _shift(x: jax.Array, shift: int, axis: int, fill: float) -> jax.Array:
    """``out[i] = x[i - shift]`` along ``axis`` (1 = rows, 2 = columns) with ``fill`` where i-shift
    falls outside, like ``scipy.ndimage.shift(order=0, mode='constant')`` for integer shifts."""
    n = x.shape[axis]
    band_shape = list(x.shape)
    band_shape[axis] = min(abs(shift), n)
    band = jnp.full(band_shape, fill, x.dtype)
    if shift >= 0:
        kept = _take(x, axis, 0, n - band_shape[axis])
        return jnp.concatenate([band, kept], axis=axis)
    kept = _take(x, axis, band_shape[axis], n)
    return jnp.concatenate([kept, band], axis=axis)


def _take(x: jax.Array, axis: int, start: int, stop: int) -> jax.Array:
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def shift_refine_input(matched: jax.Array, hole: jax.Array, shift: int) -> jax.Array:
    """Builds the 19 image channels the refinement U-Net takes beside its mask.

    Args:
      matched: [B, H, W, 3] RGB in [0, 1]: known pixels plus the upscaled stage-1 fill in the hole.
      hole: [B, H, W, 1], 1 = hole.
      shift: pixels, usually ``reference_shift(H)``.
    Returns:
      [B, H, W, 19]: matched, then (image, mask) shifted up, down, right, left (content moves that way).
    """
    hole = hole.astype(matched.dtype)
    channels = [matched]
    # (axis, signed shift): up = rows move to smaller indices, i.e. out[y] = in[y + s].
    for axis, signed in ((1, -shift), (1, shift), (2, shift), (2, -shift)):
        channels.append(_shift(matched, signed, axis, SHIFT_IMAGE_FILL))
        channels.append(_shift(hole, signed, axis, 1.0))
    return jnp.concatenate(channels, axis=-1)


def shift_refine_patch(
    matched: jax.Array, hole: jax.Array, shift: int, top: jax.Array, left: jax.Array, size: int
) -> jax.Array:
    """One ``size`` x ``size`` window of ``shift_refine_input`` computed without the full tensor.

    Seed-000 trains on 512 crops of the 20-channel stage-1 tensor of a larger image (REFERENCE.md
    9.2); the shifts are those of the *whole* image. Padding by ``shift`` with the vacated-band fills
    and slicing five windows gives exactly the crop of the full computation, with memory for the
    patch only.

    Args:
      matched: [H, W, 3] (one example; vmap for batches).
      hole: [H, W, 1], 1 = hole.
      shift: pixels of the whole-image shift (``reference_shift(H)``).
      top, left: traced int32 window corner, ``0 <= top <= H - size``.
      size: window side.
    Returns:
      [size, size, 19], equal to ``shift_refine_input(matched[None], hole[None], shift)[0]``
      cropped to the window.
    """
    hole = hole.astype(matched.dtype)
    pad = ((shift, shift), (shift, shift), (0, 0))
    image = jnp.pad(matched, pad, constant_values=SHIFT_IMAGE_FILL)
    holes = jnp.pad(hole, pad, constant_values=1.0)

    def window(x, dy, dx):
        start = (top + shift + dy, left + shift + dx, 0)
        return jax.lax.dynamic_slice(x, start, (size, size, x.shape[-1]))

    channels = [window(image, 0, 0)]
    # Shifted up (out[y] = in[y + s]), down, right (out[x] = in[x - s]), left.
    for dy, dx in ((shift, 0), (-shift, 0), (0, -shift), (0, shift)):
        channels += [window(image, dy, dx), window(holes, dy, dx)]
    return jnp.concatenate(channels, axis=-1)
