"""Tiled refinement of the two-stage pipeline (``TwoStageInpainter(tile_size=...)``).

The whole refinement U-Net runs on overlapping tiles blended with feathered weights, to bound memory
for very large images. It approximates the untiled result (the encoder then sees only its tile).
Only the tiles that touch the hole run, each from an input assembled on the host for that tile, so
memory is one tile's network plus the uint8 image buffers, whatever the image size.
"""

from __future__ import annotations

import functools
import math

import jax
import numpy as np

from hrinpaint_jax.ops.pixels import from_uint8
from hrinpaint_jax.ops.shift import SHIFT_IMAGE_FILL

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)


def image_buffers_gb(padded_h: int, padded_w: int) -> float:
    """Host memory (GB) of the image-sized buffers of a tiled run: the input, its padded copy and
    the output (uint8 RGB), the padded image and mask on the device, the mask and the hole (uint8 /
    bool): about 17 bytes per padded pixel."""
    return 17 * padded_h * padded_w / 1e9


def estimate_refine_gb(padded: tuple[int, int], window: tuple[int, int]) -> float:
    """Peak host memory (GB) of one refinement call on CPU, float32.

    A linear fit to ``benchmarks/pipeline_cpu.py`` peak RSS at 1024-4096 px: the global encoder costs
    ~0.19 GB and the decoder ~1.04 GB per megapixel of its window (the decoder's 116- and 288-channel
    full- and half-resolution maps dominate). 4096x4096 with a full-size window comes to ~21 GB.
    """
    mpx = lambda hw: hw[0] * hw[1] / 1e6  # noqa: E731
    return 0.2 + 0.19 * mpx(padded) + 1.04 * mpx(window)


def refine_tiled(
    refine,
    variables,
    image_pad: np.ndarray,
    hole: np.ndarray,
    fill: np.ndarray,
    fill_box: Box,
    shift: int,
    tile: int,
    overlap: int,
    align: int,
) -> tuple[np.ndarray, Box]:
    """The refinement output blended over the tiles that touch the hole, built with memory for one
    tile: each tile's 20-channel input is assembled on the host from the uint8 image, the stage-1
    fill and the hole (never the whole-image float tensor, 76 bytes per pixel).

    Args:
      refine, variables: the refinement U-Net and its variables.
      image_pad: [Hp, Wp, 3] uint8 padded image; hole: [Hp, Wp] bool (refinement hole).
      fill: the upscaled stage-1 result over ``fill_box`` (which holds every hole pixel): uint8, or
        float32 in [0, 1] (fixed mode).
      shift: the shift of the 4 shifted copies (``reference_shift(Hp)``), taken on the whole image.
      tile: tile side, a multiple of ``align``; overlap: even overlap between tiles (< tile).
      align: tile origins are multiples of it (the networks' alignment).
    Returns:
      ([y1 - y0, x1 - x0, 3] float32 blended output, its (y0, y1, x0, x1) box in the padded image).
    """
    hp, wp = hole.shape
    if tile % align or overlap % 2 or not 0 <= overlap < tile:
        raise ValueError(
            f"tile_size must be a multiple of {align} and larger than an even tile_overlap, "
            f"got {tile} and {overlap}"
        )
    th, tw = min(tile, hp), min(tile, wp)
    starts = [
        (top, left)
        for top in _tile_starts(hp, tile, overlap, align)
        for left in _tile_starts(wp, tile, overlap, align)
        if hole[top : top + th, left : left + tw].any()
    ]
    box = (
        min(t for t, _ in starts),
        max(t for t, _ in starts) + th,
        min(left for _, left in starts),
        max(left for _, left in starts) + tw,
    )
    ramp = _feather(th, tw, overlap)
    acc = np.zeros((box[1] - box[0], box[3] - box[2], 3), np.float32)
    weight = np.zeros((*acc.shape[:2], 1), np.float32)
    for top, left in starts:
        x, h = tile_inputs(image_pad, hole, fill, fill_box, shift, top, left, (th, tw))
        out = np.asarray(refine_tile(refine, variables, x, h))
        y, xx = top - box[0], left - box[2]
        acc[y : y + th, xx : xx + tw] += out * ramp
        weight[y : y + th, xx : xx + tw] += ramp
    return acc / np.maximum(weight, 1e-12), box


@functools.partial(jax.jit, static_argnames=("refine",))
def refine_tile(refine, variables, inputs, hole):
    """The refinement U-Net on one tile ([th, tw, 19] and [th, tw, 1]); float [th, tw, 3] output."""
    return refine.apply(variables, inputs[None], hole[None], train=False)[0]


def _window(image_pad, hole, fill, fill_box: Box, y0: int, x0: int, size: tuple[int, int]):
    """The matched image (float32 [th, tw, 3]: known pixels, the stage-1 fill in the hole) and the
    hole (float32 [th, tw, 1]) over rows y0.. and columns x0.., which may reach outside the image:
    there the shifted copies' vacated-band values (``SHIFT_IMAGE_FILL``, hole = 1)."""
    th, tw = size
    hp, wp = hole.shape
    image = np.full((th, tw, 3), SHIFT_IMAGE_FILL, np.float32)
    holes = np.ones((th, tw, 1), np.float32)
    ys, ye, xs, xe = max(y0, 0), min(y0 + th, hp), max(x0, 0), min(x0 + tw, wp)
    if ys >= ye or xs >= xe:
        return image, holes
    image[ys - y0 : ye - y0, xs - x0 : xe - x0] = from_uint8(image_pad[ys:ye, xs:xe])
    holes[ys - y0 : ye - y0, xs - x0 : xe - x0, 0] = hole[ys:ye, xs:xe]
    fy0, fy1, fx0, fx1 = fill_box
    iy0, iy1, ix0, ix1 = max(ys, fy0), min(ye, fy1), max(xs, fx0), min(xe, fx1)
    if iy0 < iy1 and ix0 < ix1:
        values = fill[iy0 - fy0 : iy1 - fy0, ix0 - fx0 : ix1 - fx0]
        values = from_uint8(values) if values.dtype == np.uint8 else values
        inside = hole[iy0:iy1, ix0:ix1]
        image[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0][inside] = values[inside]
    return image, holes


def tile_inputs(image_pad, hole, fill, fill_box: Box, shift: int, top: int, left: int, size):
    """One tile of ``shift_refine_input`` of the whole matched image, and its hole, exactly (the
    shifted copies read ``shift`` pixels beyond the tile), from uint8 data on the host.

    Returns:
      ([th, tw, 19] float32 image channels, [th, tw, 1] float32 hole).
    """
    matched, holes = _window(image_pad, hole, fill, fill_box, top, left, size)
    channels = [matched]
    # Shifted up (out[y] = in[y + s]), down, right (out[x] = in[x - s]), left, as ops/shift.py.
    for dy, dx in ((shift, 0), (-shift, 0), (0, -shift), (0, shift)):
        channels += _window(image_pad, hole, fill, fill_box, top + dy, left + dx, size)
    return np.concatenate(channels, axis=-1), holes


def _tile_starts(size: int, tile: int, overlap: int, align: int) -> list[int]:
    """Tile origins covering [0, size) with at least ``overlap`` between neighbours; the last tile
    ends at ``size``. Origins are multiples of ``align`` so tiles keep the networks' alignment."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((size - tile) / stride) + 1
    starts = [min(i * stride, size - tile) for i in range(count)]
    return sorted({s // align * align for s in starts} | {size - tile})


def _feather(height: int, width: int, overlap: int) -> np.ndarray:
    """[height, width, 1] blending weights: a linear ramp over ``overlap`` pixels at each edge."""

    def ramp(n):
        r = np.ones(n, np.float32)
        if overlap and n > 2 * overlap:
            edge = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
            r[:overlap], r[-overlap:] = edge, edge[::-1]
        return r

    return (ramp(height)[:, None] * ramp(width)[None, :])[..., None]
