"""Two-stage arbitrary-resolution inpainting (Moskalenko et al.; REFERENCE.md section 4).

Stage 1 runs DFNet on a 512x512 letterbox of the (padded) image; stage 2 upscales its result into the
hole and refines it at full resolution with the 20-channel shift U-Net.

``faithful=True`` (the default) reproduces the authors' ``test.py`` bit for bit, quirks included,
each marked QUIRK below. ``faithful=False`` fixes what is clearly a bug (listed in the README):
* the hole is binarised once (value >= 128) and used by both stages. The reference feeds DFNet
  ``1 - m/255`` but the refinement ``m // 255``, so hole content leaks into the fill through
  antialiased mask pixels, and those pixels keep their original (hole) content in the output;
* the 512 letterbox mask is max-pooled rather than nearest-sampled, so DFNet also sees thin holes
  that nearest sampling skips (the reference leaves them to the bilinear upscale alone);
* no uint8 truncation between stages: the DFNet result is upscaled in float and rounded once at the
  end (round-to-nearest, not truncation).

The whole pipeline is one jit-compiled call (``two_stage_forward``) per padded-size bucket
(multiples of 256) and hole-window size, so a folder of mixed sizes compiles once per bucket and
arrays stay on the device between stages (the reference's OpenCV uint8 bilinear is reproduced
bit for bit in JAX). Padding and the final crop to the input size happen on the host.

Hole-local refinement: the refinement output is used only inside the hole and the decoder's
receptive field is local (``ShiftRefineUNet.decoder_margin``: 255 px), so the decoder runs on the
hole's bounding box plus that margin, aligned to 256; the encoder stays global. The result equals
the full computation.

Tiled refinement (``tile_size``): the whole refinement U-Net runs on overlapping tiles blended with
feathered weights, to bound memory for very large images. It approximates the untiled result (the
encoder then sees only its tile).

``dtype='bfloat16'`` runs both networks in bfloat16 (parameters float32; the merges, resizes and the
uint8 conversion stay float32); the default float32 is the reference-parity path.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrinpaint_jax.layers import compute_dtype
from hrinpaint_jax.ops.resize import (
    nearest_indices_cv2,
    resize_bilinear_cv2_u8,
    resize_bilinear_torch,
)
from hrinpaint_jax.ops.shift import reference_shift, shift_refine_input, shift_refine_patch

logger = logging.getLogger(__name__)

PAD_MULTIPLE = 256  # both networks need H, W multiples of 2^8
DFNET_SIZE = 512  # stage-1 resolution of the released DFNet (Places2)


@dataclasses.dataclass(frozen=True)
class Letterbox:
    """Where the padded image sits inside the 512x512 DFNet input (REFERENCE.md 4, step 4)."""

    rows: int  # content height in the letterbox
    cols: int  # content width
    top: int
    left: int

    @classmethod
    def for_size(cls, padded_h: int, padded_w: int, size: int = DFNET_SIZE) -> Letterbox:
        # The reference compares Hp/512 with Wp/512 and derives the short side by floor division.
        if padded_h / size > padded_w / size:  # tall
            cols = (padded_w * size) // padded_h
            return cls(size, cols, 0, (size - cols) // 2)
        rows = (padded_h * size) // padded_w  # wide or square
        return cls(rows, size, (size - rows) // 2, 0)


def padded_size(height: int, width: int) -> tuple[int, int]:
    """Image size rounded up to multiples of 256 (zero padding goes bottom/right)."""
    return (-(-height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE)


# XLA:CPU's Eigen convolution (``--xla_cpu_experimental_ynn_fusion_type=``, see runtime.py) aborts
# with std::bad_alloc on the finest decoder conv (3x3, 116 -> 20 channels) at 3584^2 and beyond, far
# from real memory exhaustion; 3072^2 runs. XLA's default YNNPACK path has no such limit.
EIGEN_CONV_MAX_SIDE = 3072


def eigen_conv_selected() -> bool:
    """True when this process runs CPU convolutions through XLA's Eigen path."""
    from hrinpaint_jax.runtime import YNN_OFF

    return jax.default_backend() == "cpu" and YNN_OFF in os.environ.get("XLA_FLAGS", "").split()


def estimate_refine_gb(padded: tuple[int, int], window: tuple[int, int]) -> float:
    """Peak host memory (GB) of one refinement call on CPU, float32.

    A linear fit to ``benchmarks/pipeline_cpu.py`` peak RSS at 1024-4096 px: the global encoder costs
    ~0.19 GB and the decoder ~1.04 GB per megapixel of its window (the decoder's 116- and 288-channel
    full- and half-resolution maps dominate). 4096x4096 with a full-size window comes to ~21 GB.
    """
    mpx = lambda hw: hw[0] * hw[1] / 1e6  # noqa: E731
    return 0.2 + 0.19 * mpx(padded) + 1.04 * mpx(window)


def hole_window(hole: np.ndarray, margin: int, align: int = PAD_MULTIPLE) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the hole's bounding box grown by ``margin`` and aligned outwards
    to multiples of ``align``, clipped to the image. ``hole``: [H, W] bool, H and W multiples of
    ``align``."""
    rows, cols = np.nonzero(np.any(hole, axis=1)), np.nonzero(np.any(hole, axis=0))
    height, width = hole.shape
    top = max(0, (int(rows[0][0]) - margin) // align * align)
    bottom = min(height, -(-(int(rows[0][-1]) + 1 + margin) // align) * align)
    left = max(0, (int(cols[0][0]) - margin) // align * align)
    right = min(width, -(-(int(cols[0][-1]) + 1 + margin) // align) * align)
    return top, left, bottom - top, right - left


def _to_uint8_truncate(x: jax.Array) -> jax.Array:
    # QUIRK (REFERENCE.md 4, steps 7 and 17): float -> uint8 by x*255 then truncation (torch
    # ``.byte()``), not rounding. Values are in [0, 1] so the float->int conversion never saturates.
    return (x * 255.0).astype(jnp.uint8)


def _to_uint8_round(x: jax.Array) -> jax.Array:
    return jnp.clip(jnp.round(x * 255.0), 0, 255).astype(jnp.uint8)


def _max_pool_to(hole: jax.Array, rows: np.ndarray, cols: np.ndarray) -> jax.Array:
    """A hole mask resampled so that a destination pixel is a hole if any source pixel between its
    nearest-neighbour index and the next one is (no thin hole is lost)."""

    # Row/column membership via cumulative sums: any(hole[r0:r1]) = cs[r1] - cs[r0] > 0.
    def pool(x, idx, axis):
        n = x.shape[axis]
        stops = np.append(idx[1:], n)
        stops = np.maximum(stops, idx + 1)
        cs = jnp.cumsum(x.astype(jnp.int32), axis=axis)
        cs = jnp.concatenate([jnp.zeros_like(jnp.take(cs, np.array([0]), axis=axis)), cs], axis=axis)
        return (jnp.take(cs, stops, axis=axis) - jnp.take(cs, idx, axis=axis)) > 0

    return pool(pool(hole, rows, 0), cols, 1)


# eq=False: identity hashing, so the per-shape jit caches below can key on the instance.
@dataclasses.dataclass(frozen=True, eq=False)
class TwoStageInpainter:
    """The two-stage pipeline with loaded networks.

    Attributes:
      dfnet, dfnet_variables: stage-1 model and variables (``load_pretrained``).
      refine, refine_variables: stage-2 model and variables.
      faithful: reproduce the reference exactly (True) or with its bugs fixed (False).
      hole_local: decoder on the hole's window only; None = when the window is smaller than the image.
      tile_size: run the refinement on overlapping tiles of this size (multiple of 256) when the
        padded image is larger than it; None = never tile.
      tile_overlap: overlap between tiles in pixels (even; default 256).
      memory_budget_gb: if the refinement is estimated (``estimate_refine_gb``) to need more host
        memory than this, it runs in tiles of the largest size that fits, with a logged warning
        (tiling is approximate). None = no limit.
      dtype: computation dtype of both networks: 'float32' (reference parity) or 'bfloat16'
        (parameters stay float32), the networks given being rebuilt with it; None (default) keeps
        the networks' own ``dtype`` (float32 for loaded weights).
    """

    dfnet: Any
    dfnet_variables: Any
    refine: Any
    refine_variables: Any
    faithful: bool = True
    hole_local: bool | None = None
    tile_size: int | None = None
    tile_overlap: int = 256
    memory_budget_gb: float | None = None
    dtype: str | None = None

    def __post_init__(self):
        if self.dtype is not None:
            dtype = compute_dtype(self.dtype)
            # Frozen dataclass: the networks are rebuilt with the computation dtype once, here.
            object.__setattr__(self, "dfnet", self.dfnet.clone(dtype=dtype))
            object.__setattr__(self, "refine", self.refine.clone(dtype=dtype))

    @classmethod
    def from_pretrained(cls, dfnet_dir, refine_dir, **kwargs) -> TwoStageInpainter:
        from hrinpaint_jax.checkpoints import load_pretrained

        dfnet, dfnet_vars, meta1 = load_pretrained(dfnet_dir)
        refine, refine_vars, meta2 = load_pretrained(refine_dir)
        for meta, want, where in ((meta1, "dfnet", dfnet_dir), (meta2, "shift_refine", refine_dir)):
            if meta["model"] != want:
                raise ValueError(f"{where} holds {meta['model']} weights, expected {want}")
        return cls(dfnet, dfnet_vars, refine, refine_vars, **kwargs)

    # ------------------------------------------------------------------------------------------
    # Public entry point.

    def __call__(self, image: np.ndarray, mask: np.ndarray, return_stages: bool = False):
        """Inpaints one image.

        Args:
          image: [H, W, 3] uint8 RGB, any size.
          mask: [H, W] uint8, 255 = hole (the reference's mask files). In faithful mode other values
            behave as in the reference (DFNet sees 1 - m/255, the refinement only 255 as hole); in
            fixed mode any value >= 128 is a hole.
          return_stages: also return a dict of intermediates (for tests and debugging).
        Returns:
          [H, W, 3] uint8 RGB (and the stages dict).
        """
        image = np.asarray(image)
        mask = np.asarray(mask)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        if mask.shape != image.shape[:2] or mask.dtype != np.uint8:
            raise ValueError(f"mask must be uint8 {image.shape[:2]}, got {mask.dtype} {mask.shape}")
        height, width = image.shape[:2]
        hp, wp = padded_size(height, width)
        # Step 3: pad bottom/right with zeros; to the networks the padding is *known* black.
        image_pad = np.zeros((hp, wp, 3), np.uint8)
        image_pad[:height, :width] = image
        mask_pad = np.zeros((hp, wp), np.uint8)
        mask_pad[:height, :width] = mask if self.faithful else np.where(mask >= 128, 255, 0)
        hole = mask_pad == 255
        if not hole.any():
            # Nothing to fill: the refinement composites its output into the hole only, and in
            # both modes only 255 (after binarising) is a hole there.
            return (image.copy(), {}) if return_stages else image.copy()

        image_dev, mask_dev = jnp.asarray(image_pad), jnp.asarray(mask_pad)
        top, left, wh, ww = hole_window(hole, self.refine.decoder_margin())
        local = self.hole_local if self.hole_local is not None else (wh, ww) != (hp, wp)
        window_size = (wh, ww) if local else (hp, wp)
        tile = self._plan_tiles(hp, wp, window_size)
        if tile is not None:
            upscaled, stages = stage1_upscaled(
                self.dfnet, self.dfnet_variables, image_dev, mask_dev, faithful=self.faithful
            )
            out = self._refine_tiled(image_dev, mask_dev, upscaled, hole, tile)
        else:
            out, stages = two_stage_forward(
                self.dfnet,
                self.refine,
                self.dfnet_variables,
                self.refine_variables,
                image_dev,
                mask_dev,
                np.int32(top),
                np.int32(left),
                window_size=window_size if local else None,
                faithful=self.faithful,
            )
        result = np.asarray(out)[:height, :width]
        if return_stages:
            return result, {k: np.asarray(v) for k, v in stages.items()}
        return result

    def _plan_tiles(self, hp: int, wp: int, window_size: tuple[int, int]) -> int | None:
        """The tile size to refine with, or None for one untiled call."""
        if self.tile_size is not None:
            return self.tile_size if max(hp, wp) > self.tile_size else None
        if max(window_size) > EIGEN_CONV_MAX_SIDE and eigen_conv_selected():
            logger.warning(
                "a %dx%d refinement window is beyond what XLA's Eigen convolution (selected by "
                "the CPU tuning flag) can run: refining in 2048 px tiles instead (approximate; "
                "set HRINPAINT_XLA_TUNING=0 for the exact untiled result)",
                window_size[1],
                window_size[0],
            )
            return 2048
        if self.memory_budget_gb is None:
            return None
        need = estimate_refine_gb((hp, wp), window_size)
        if need <= self.memory_budget_gb:
            return None
        for tile in (2048, 1536, 1024, 768, 512):
            if (
                tile < max(hp, wp)
                and estimate_refine_gb((tile, tile), (tile, tile)) <= self.memory_budget_gb
            ):
                break
        logger.warning(
            "the refinement at %dx%d needs about %.1f GB, over the %.1f GB budget: refining in "
            "%d px tiles instead (approximate; see --tile-size / --memory-budget)",
            wp,
            hp,
            need,
            self.memory_budget_gb,
            tile,
        )
        return tile

    def _refine_tiled(self, image_pad, mask_pad, upscaled, hole: np.ndarray, tile: int) -> jax.Array:
        """Overlapping tiles through the whole U-Net, blended with feathered weights."""
        hp, wp = hole.shape
        overlap = self.tile_overlap
        if tile % PAD_MULTIPLE or overlap % 2 or not 0 <= overlap < tile:
            raise ValueError(
                f"tile_size must be a multiple of 256 and larger than an even tile_overlap, "
                f"got {tile} and {overlap}"
            )
        inputs, base = refine_inputs(image_pad, mask_pad, upscaled, faithful=self.faithful)
        th, tw = min(tile, hp), min(tile, wp)
        ramp = _feather(th, tw, overlap)
        acc = np.zeros((hp, wp, 3), np.float32)
        weight = np.zeros((hp, wp, 1), np.float32)
        for top in _tile_starts(hp, tile, overlap):
            for left in _tile_starts(wp, tile, overlap):
                if not hole[top : top + th, left : left + tw].any():
                    continue
                out = refine_tile(
                    self.refine,
                    self.refine_variables,
                    inputs,
                    np.int32(top),
                    np.int32(left),
                    size=(th, tw),
                )
                acc[top : top + th, left : left + tw] += np.asarray(out) * ramp
                weight[top : top + th, left : left + tw] += ramp
        blended = acc / np.maximum(weight, 1e-12)
        to_uint8 = _to_uint8_truncate if self.faithful else _to_uint8_round
        return jnp.where(hole[..., None], to_uint8(jnp.asarray(blended)), base)


# ----------------------------------------------------------------------------------------------
# Jitted stages. Models are static arguments (Flax modules hash by their fields), so each stage
# compiles once per model and padded-size bucket.


@functools.partial(jax.jit, static_argnames=("dfnet", "faithful"))
def dfnet_stage(dfnet, variables, image_pad, mask_pad, *, faithful: bool):
    """Steps 2-8: letterbox to 512, DFNet, merge, crop. Returns (RGB crop, DFNet inputs/output)."""
    hp, wp = mask_pad.shape
    box = Letterbox.for_size(hp, wp)
    # QUIRK (step 4): OpenCV INTER_NEAREST, src = floor(dst * in / out), no half-pixel offset.
    rows, cols = nearest_indices_cv2(hp, box.rows), nearest_indices_cv2(wp, box.cols)
    content = (slice(box.top, box.top + box.rows), slice(box.left, box.left + box.cols))
    # QUIRK (step 2): the released DFNet was trained on BGR images.
    small = jnp.zeros((DFNET_SIZE, DFNET_SIZE, 3), jnp.uint8)
    small = small.at[content].set(image_pad[rows][:, cols, ::-1])
    small_hole = jnp.zeros((DFNET_SIZE, DFNET_SIZE), jnp.float32)
    if faithful:
        # QUIRK (step 5): DFNet's mask is continuous, 1 - m/255 (1 = known).
        small_hole = small_hole.at[content].set(mask_pad[rows][:, cols].astype(jnp.float32) / 255.0)
    else:
        pooled = _max_pool_to(mask_pad == 255, rows, cols)
        small_hole = small_hole.at[content].set(pooled.astype(jnp.float32))
    known = (1.0 - small_hole)[..., None]
    x = small.astype(jnp.float32) / 255.0
    img_miss = x * known
    out = dfnet.apply(variables, img_miss[None], known[None], train=False)[0][0]
    merged = x * known + out * (1.0 - known)  # step 6
    crop = merged[content][..., ::-1]  # steps 7-8: BGR -> RGB, letterbox cropped
    crop = _to_uint8_truncate(crop) if faithful else crop
    return crop, {"dfnet_img_miss": img_miss, "dfnet_mask": known, "dfnet_out_0": out}


@functools.partial(jax.jit, static_argnames=("dfnet", "faithful"))
def stage1_upscaled(dfnet, variables, image_pad, mask_pad, *, faithful: bool):
    """Steps 2-9: the DFNet result upscaled to the padded size. Returns (upscaled, stages)."""
    hp, wp = mask_pad.shape
    crop, stages = dfnet_stage(dfnet, variables, image_pad, mask_pad, faithful=faithful)
    if faithful:
        # QUIRK (step 9): OpenCV's uint8 bilinear with fixed-point weights (a float bilinear is off
        # by 1 grey level on ~11 % of values), reproduced bit for bit on the device.
        upscaled = resize_bilinear_cv2_u8(crop, (hp, wp))
    else:  # float bilinear (half-pixel, no antialias) of the float DFNet result
        upscaled = resize_bilinear_torch(crop[None], (hp, wp))[0]
    return upscaled, {**stages, "dfnet_stage_rgb": crop}


@functools.partial(jax.jit, static_argnames=("dfnet", "refine", "window_size", "faithful"))
def two_stage_forward(
    dfnet,
    refine,
    dfnet_variables,
    refine_variables,
    image_pad,
    mask_pad,
    top,
    left,
    *,
    window_size,
    faithful: bool,
):
    """The whole pipeline on padded inputs in one compiled call. Returns (uint8 result, stages)."""
    upscaled, stages = stage1_upscaled(dfnet, dfnet_variables, image_pad, mask_pad, faithful=faithful)
    out = refine_stage(
        refine,
        refine_variables,
        image_pad,
        mask_pad,
        upscaled,
        top,
        left,
        window_size=window_size,
        faithful=faithful,
    )
    return out, stages


@functools.partial(jax.jit, static_argnames=("faithful",))
def refine_inputs(image_pad, mask_pad, upscaled, *, faithful: bool):
    """Steps 10-15. Returns ([1, H, W, 19] image channels + [1, H, W, 1] hole, uint8 matched)."""
    hp = image_pad.shape[0]
    # QUIRK (step 11): only exactly 255 is a hole for the refinement stage.
    hole = (mask_pad == 255)[..., None]
    if faithful:
        matched_u8 = jnp.where(hole, upscaled, image_pad)  # uint8 merge (step 12)
        matched = matched_u8.astype(jnp.float32) / 255.0
    else:
        matched = jnp.where(hole, upscaled, image_pad.astype(jnp.float32) / 255.0)
        matched_u8 = _to_uint8_round(matched)
    hole = hole.astype(jnp.float32)[None]
    # QUIRK (step 13): shift = 100/512 of the *padded height*, for both axes.
    inputs = shift_refine_input(matched[None], hole, reference_shift(hp))
    return (inputs, hole), matched_u8


@functools.partial(jax.jit, static_argnames=("refine", "window_size", "faithful"))
def refine_stage(
    refine, variables, image_pad, mask_pad, upscaled, top, left, *, window_size, faithful: bool
):
    """Steps 10-17, optionally hole-local. Returns the [Hp, Wp, 3] uint8 result."""
    (inputs, hole), matched_u8 = refine_inputs(image_pad, mask_pad, upscaled, faithful=faithful)
    # Materialise the 20-channel input once. Fused into the network, XLA keeps ~10 thin
    # full-resolution pieces alive and rebuilds the concatenations from them (measured at 2048:
    # 3.9 -> 2.7 GB of temporaries and 14.0 -> 12.9 s for the full decoder; bit-identical output).
    inputs, hole = jax.lax.optimization_barrier((inputs, hole))
    to_uint8 = _to_uint8_truncate if faithful else _to_uint8_round
    if window_size is None:
        return to_uint8(refine.apply(variables, inputs, hole, train=False)[0])
    window = (top, left, *window_size)
    out = to_uint8(refine.apply(variables, inputs, hole, train=False, window=window)[0])
    # Outside the window (all known pixels) the network returns the matched image.
    return jax.lax.dynamic_update_slice(matched_u8, out, (top, left, 0))


def training_stage1(dfnet, variables, images, holes, *, faithful: bool = False):
    """Stage 1 for training the refinement U-Net (seed-000, REFERENCE.md 9.2): the frozen DFNet's
    fill, upscaled, in the hole of each image; known pixels kept. Traceable (use inside a jit).

    Args:
      images: [B, S, S, 3] in [0, 1], S a multiple of 256 (DFNet sees a 512 resize).
      holes: [B, S, S, 1], 1 = hole.
      faithful: the test.py path (nearest-sampled hole, uint8 truncation, OpenCV uint8 bilinear) or
        the fixed one (see the module docstring); use the one you will run at test time.
    Returns:
      [B, S, S, 3] float32 "matched" images (what the refinement stage shifts).
    """
    image_u8 = jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.uint8)
    mask_u8 = jnp.where(holes[..., 0] > 0.5, 255, 0).astype(jnp.uint8)

    def one(image, mask):
        return stage1_upscaled(dfnet, variables, image, mask, faithful=faithful)[0]

    upscaled = jax.vmap(one)(image_u8, mask_u8).astype(jnp.float32)
    if faithful:
        upscaled = upscaled / 255.0  # the OpenCV path works on uint8
    return jnp.where(holes > 0.5, upscaled, images)


def refinement_patches(matched, holes, images, top, left, *, size: int):
    """Cuts the training patches out of whole stage-1 results, shifts taken on the whole image.

    Args:
      matched, holes, images: [B, S, S, C] whole-image stage-1 results, holes (1 = hole), targets.
      top, left: [B] int32 patch corners.
      size: patch side (512 in the paper).
    Returns:
      (inputs [B, size, size, 19], hole [B, size, size, 1], target [B, size, size, 3]).
    """
    shift = reference_shift(matched.shape[1])

    def one(m, h, im, top_, left_):
        x = shift_refine_patch(m, h, shift, top_, left_, size)
        crop = jax.lax.dynamic_slice(jnp.concatenate([h, im], -1), (top_, left_, 0), (size, size, 4))
        return x, crop[..., :1], crop[..., 1:]

    return jax.vmap(one)(matched, holes.astype(matched.dtype), images, top, left)


@functools.partial(jax.jit, static_argnames=("refine", "size"))
def refine_tile(refine, variables, inputs, top, left, *, size):
    """The refinement U-Net on one tile; float output."""
    image, hole = inputs
    x = jax.lax.dynamic_slice(image, (0, top, left, 0), (1, *size, image.shape[3]))
    h = jax.lax.dynamic_slice(hole, (0, top, left, 0), (1, *size, 1))
    return refine.apply(variables, x, h, train=False)[0]


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering [0, size) with at least ``overlap`` between neighbours; the last tile
    ends at ``size``. Origins are multiples of 256 so tiles keep the networks' alignment."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((size - tile) / stride) + 1
    starts = [min(i * stride, size - tile) for i in range(count)]
    return sorted({s // PAD_MULTIPLE * PAD_MULTIPLE for s in starts} | {size - tile})


def _feather(height: int, width: int, overlap: int) -> np.ndarray:
    """[height, width, 1] blending weights: a linear ramp over ``overlap`` pixels at each edge."""

    def ramp(n):
        r = np.ones(n, np.float32)
        if overlap and n > 2 * overlap:
            edge = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
            r[:overlap], r[-overlap:] = edge, edge[::-1]
        return r

    return (ramp(height)[:, None] * ramp(width)[None, :])[..., None]
