"""Two-stage arbitrary-resolution inpainting (Moskalenko et al.; REFERENCE.md section 4).

Stage 1 runs DFNet on a 512x512 letterbox of the (padded) image; stage 2 upscales its result into the
hole and refines it at full resolution with the 20-channel shift U-Net.

``faithful=True`` (the default) reproduces the authors' ``test.py`` bit for bit, quirks included,
each marked QUIRK below. ``faithful=False`` fixes what is clearly a bug (listed in docs/pipelines.md):
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

Tiled refinement (``tile_size``, ``pipelines/tiling.py``): the whole refinement U-Net runs on
overlapping tiles blended with feathered weights, to bound memory for very large images. It
approximates the untiled result (the encoder then sees only its tile).

``dtype='bfloat16'`` runs both networks in bfloat16 (parameters float32; the merges, resizes and the
uint8 conversion stay float32); the default float32 is the reference-parity path.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrinpaint_jax.layers import compute_dtype
from hrinpaint_jax.ops.pixels import from_uint8, to_uint8
from hrinpaint_jax.ops.resize import (
    nearest_indices_cv2,
    resize_bilinear_cv2_u8,
    resize_bilinear_torch,
    resize_bilinear_window,
)
from hrinpaint_jax.ops.shift import reference_shift, shift_refine_input, shift_refine_patch
from hrinpaint_jax.pipelines.inputs import MemoryBudgetError, check_image, mask_u8
from hrinpaint_jax.pipelines.tiling import estimate_refine_gb, image_buffers_gb, refine_tiled

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


def _output_uint8(faithful: bool):
    # QUIRK (REFERENCE.md 4, steps 7 and 17): float -> uint8 by x*255 then truncation (torch
    # ``.byte()``), not rounding; the fixed mode rounds.
    return functools.partial(to_uint8, rounding="truncate" if faithful else "round")


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

    def __call__(self, image: np.ndarray, hole=None, return_stages: bool = False, *, soft_mask=None):
        """Inpaints one image.

        Args:
          image: [H, W, 3] uint8 RGB, any size.
          hole: [H, W] bool, True = hole (or numeric holding only 0 and 1; ``pipelines/inputs.py``).
          return_stages: also return a dict of intermediates (for tests and debugging).
          soft_mask: instead of ``hole``, the reference's uint8 mask file (255 = hole). In faithful
            mode other values behave as in the reference (QUIRK: DFNet sees 1 - m/255, the
            refinement only 255 as hole); in fixed mode any value >= 128 is a hole.
        Returns:
          [H, W, 3] uint8 RGB (and the stages dict).
        """
        image, image_pad, mask_pad = self._padded(image, hole, soft_mask)
        (height, width), (hp, wp) = image.shape[:2], mask_pad.shape
        hole = mask_pad == 255
        if not hole.any():
            # Nothing to fill: the refinement composites its output into the hole only, and in
            # both modes only 255 (after binarising) is a hole there.
            return (image.copy(), {}) if return_stages else image.copy()

        top, left, wh, ww = hole_window(hole, self.refine.decoder_margin())
        local = self.hole_local if self.hole_local is not None else (wh, ww) != (hp, wp)
        window_size = (wh, ww) if local else (hp, wp)
        tile = self._plan_tiles(hp, wp, window_size)
        if tile is not None:
            out, stages = self._refine_tiled(image, image_pad, mask_pad, hole, tile)
            return (out, stages) if return_stages else out
        image_dev, mask_dev = jnp.asarray(image_pad), jnp.asarray(mask_pad)
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

    def stage1(self, image: np.ndarray, hole=None, *, soft_mask=None) -> np.ndarray:
        """Stage 1 alone: DFNet at 512, its result upscaled and pasted into the hole (REFERENCE.md
        4, steps 1-12: the "matched" image the refinement starts from; the seed-000 paper's DFNet
        baseline). Arguments as ``__call__``; returns [H, W, 3] uint8."""
        image, image_pad, mask_pad = self._padded(image, hole, soft_mask)
        if not (mask_pad == 255).any():
            return image.copy()
        out = stage1_matched(
            self.dfnet, self.dfnet_variables, image_pad, mask_pad, faithful=self.faithful
        )
        return np.asarray(out)[: image.shape[0], : image.shape[1]]

    def _padded(self, image, hole, soft_mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image, padded image, padded uint8 mask: 255 = hole) after checking the inputs."""
        image = check_image(image)
        mask = mask_u8(hole, soft_mask, image.shape[:2])
        height, width = image.shape[:2]
        hp, wp = padded_size(height, width)
        # Step 3: pad bottom/right with zeros; to the networks the padding is *known* black.
        image_pad = np.zeros((hp, wp, 3), np.uint8)
        image_pad[:height, :width] = image
        mask_pad = np.zeros((hp, wp), np.uint8)
        mask_pad[:height, :width] = mask if self.faithful else np.where(mask >= 128, 255, 0)
        return image, image_pad, mask_pad

    def _plan_tiles(self, hp: int, wp: int, window_size: tuple[int, int]) -> int | None:
        """The tile size to refine with, or None for one untiled call.

        The budget covers the image buffers (``image_buffers_gb``) plus the refinement
        (``estimate_refine_gb``); a budget below what the smallest tile needs is refused."""
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
        buffers = image_buffers_gb(hp, wp)
        need = buffers + estimate_refine_gb((hp, wp), window_size)
        if need <= self.memory_budget_gb:
            return None
        fits = [
            t
            for t in (2048, 1536, 1024, 768, 512)
            if t < max(hp, wp) and buffers + estimate_refine_gb((t, t), (t, t)) <= self.memory_budget_gb
        ]
        if not fits:
            least = buffers + estimate_refine_gb((512, 512), (512, 512))
            raise MemoryBudgetError(
                f"a {wp}x{hp} image needs at least {least:.1f} GB (its buffers and one 512 px "
                f"refinement tile), over the {self.memory_budget_gb:.1f} GB memory budget"
            )
        tile = fits[0]
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

    def _refine_tiled(self, image, image_pad, mask_pad, hole: np.ndarray, tile: int):
        """Overlapping tiles through the whole U-Net, blended with feathered weights, each tile's
        input built on the host (``tiling.refine_tiled``): memory for the image's uint8 buffers and
        one tile. Returns ([H, W, 3] uint8 result, stage-1 intermediates)."""
        crop, stages = dfnet_stage(
            self.dfnet, self.dfnet_variables, jnp.asarray(image_pad), jnp.asarray(mask_pad),
            faithful=self.faithful,
        )  # fmt: skip
        top, left, box_h, box_w = hole_window(hole, margin=0, align=1)  # the hole's bounding box
        fill_box = (top, top + box_h, left, left + box_w)
        if self.faithful:  # QUIRK (step 9): OpenCV's uint8 bilinear, only over the hole's box
            fill = np.asarray(resize_bilinear_cv2_u8(crop, hole.shape, window=fill_box))
        else:
            fill = resize_bilinear_window(np.asarray(crop), hole.shape, fill_box)
        refine = (self.refine, self.refine_variables)
        shift = reference_shift(hole.shape[0])
        blended, (y0, y1, x0, x1) = refine_tiled(
            *refine, image_pad, hole, fill, fill_box, shift, tile, self.tile_overlap, PAD_MULTIPLE
        )
        height, width = image.shape[:2]
        out = image.copy()
        y1, x1 = min(y1, height), min(x1, width)
        inside = hole[y0:y1, x0:x1]
        values = _output_uint8(self.faithful)(blended[: y1 - y0, : x1 - x0])
        out[y0:y1, x0:x1][inside] = values[inside]
        return out, {k: np.asarray(v) for k, v in {**stages, "dfnet_stage_rgb": crop}.items()}


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
        small_hole = small_hole.at[content].set(from_uint8(mask_pad[rows][:, cols]))
    else:
        pooled = _max_pool_to(mask_pad == 255, rows, cols)
        small_hole = small_hole.at[content].set(pooled.astype(jnp.float32))
    known = (1.0 - small_hole)[..., None]
    x = from_uint8(small)  # bit-identical to torch's u8 / 255 (XLA would multiply by 1/255)
    img_miss = x * known
    out = dfnet.apply(variables, img_miss[None], known[None], train=False)[0][0]
    merged = x * known + out * (1.0 - known)  # step 6
    crop = merged[content][..., ::-1]  # steps 7-8: BGR -> RGB, letterbox cropped
    crop = to_uint8(crop, rounding="truncate") if faithful else crop  # QUIRK (step 7): .byte()
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


@functools.partial(jax.jit, static_argnames=("dfnet", "faithful"))
def stage1_matched(dfnet, variables, image_pad, mask_pad, *, faithful: bool):
    """Steps 2-12: the upscaled DFNet result in the hole, as uint8 [Hp, Wp, 3]."""
    upscaled, _ = stage1_upscaled(dfnet, variables, image_pad, mask_pad, faithful=faithful)
    upscaled = upscaled if faithful else to_uint8(upscaled)
    # QUIRK (step 11): only exactly 255 is a hole at full resolution.
    return jnp.where((mask_pad == 255)[..., None], upscaled, image_pad)


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
        matched = from_uint8(matched_u8)
    else:
        matched = jnp.where(hole, upscaled, from_uint8(image_pad))
        matched_u8 = to_uint8(matched)
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
    output_uint8 = _output_uint8(faithful)
    if window_size is None:
        return output_uint8(refine.apply(variables, inputs, hole, train=False)[0])
    window = (top, left, *window_size)
    out = output_uint8(refine.apply(variables, inputs, hole, train=False, window=window)[0])
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
    image_u8 = to_uint8(images)
    mask_u8 = jnp.where(holes[..., 0] > 0.5, 255, 0).astype(jnp.uint8)

    def one(image, mask):
        return stage1_upscaled(dfnet, variables, image, mask, faithful=faithful)[0]

    upscaled = jax.vmap(one)(image_u8, mask_u8)
    # The faithful path (OpenCV's uint8 bilinear) returns uint8.
    upscaled = from_uint8(upscaled) if faithful else upscaled.astype(jnp.float32)
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
