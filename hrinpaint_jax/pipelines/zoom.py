"""Zoom-to-Inpaint inference at any size (Kim et al.; REFERENCE.md section 10.1).

The reference's ``test.py`` resizes every input to 256x256 and then runs, in inference mode:

1. ``m`` = mask (1 = hole), input ``[image * (1 - m), m]``;
2. coarse net -> SR net (x2) -> refinement net on ``[SR output, nearest x2 of m]``;
3. ``out = bicubic-antialias resize of the refinement output back to the input size``;
4. ``final = out * m + (image * (1 - m)) * (1 - m)``, clipped to [0, 1] (QUIRK: the masked input is
   multiplied by ``1 - m`` a second time; identical for binary masks, kept for non-binary ones);
5. the saved PNG is ``uint8(final * 255)`` (truncation, not rounding).

``zoom_forward`` is exactly steps 1-4 at the size it is given. ``ZoomInpainter`` runs them at the
image's own resolution instead of resizing to 256 (the networks are fully convolutional, and the
contextual attention of this port works for any grid, square or not, with memory linear in the number
of positions). Sizes: the coarse net needs H, W multiples of 4 and the refinement net (at 2H x 2W)
multiples of 8, so the image and the mask are padded at the bottom/right to multiples of 4 by
**edge replication** (a hole touching the border stays a hole in the padding; known edges continue),
and the result is cropped back. ``reference_test`` reproduces the 256x256 protocol itself
(the evaluation protocol of the paper).

``ZoomInpainter(work_size=N)`` runs instead on the image shrunk so that its longer side is N (TF
bicubic antialias; a pixel is a hole there if any hole pixel falls under it) and pastes the fill,
resized back, into the hole; known pixels stay exact. Models trained at one scale (ours: photos seen
at 512 px, ``configs/ours.py``) record it as ``work_size`` in their metadata, and
``from_pretrained`` uses it unless told otherwise.

``ZoomInpainter(dtype='bfloat16')`` runs the networks in bfloat16 (parameters float32; the resizes,
the blend and the uint8 conversion stay float32); the default float32 is the reference-parity path.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from hrinpaint_jax.layers import compute_dtype
from hrinpaint_jax.ops.resize import resize_bicubic_tf, shrink_hole

TEST_SIZE = 256  # test.py's working resolution
# Memory model of estimate_zoom_gb (GB, and GB per refinement megapixel).
ZOOM_GB_BASE = 0.6
ZOOM_GB_PER_REFINE_MPX = 1.05


def pad_multiple(sr_scale: int = 2, attention_rate: int = 2) -> int:
    """Smallest m such that H % m == 0 makes H valid for the coarse net (H % 4 == 0) and
    ``sr_scale * H`` valid for the refinement net (a multiple of 4 * attention_rate)."""
    refine_multiple = 4 * attention_rate
    need = refine_multiple // math.gcd(refine_multiple, sr_scale)
    return math.lcm(4, need)


@functools.partial(jax.jit, static_argnames=("model",))
def zoom_forward(model, variables, image: jax.Array, mask: jax.Array) -> dict:
    """Steps 1-4 of the reference test script on a batch (inference mode).

    Args:
      model: ``ZoomToInpaint`` (static).
      variables: its variables.
      image: [B, H, W, 3] float in [0, 1]; H, W multiples of ``pad_multiple()``.
      mask: [B, H, W, 1] float, 1 = hole (non-binary values behave as in the reference).
    Returns:
      dict: 'final' [B, H, W, 3] clipped to [0, 1], 'refine_lr' (the refinement output resized back,
      unclipped) and the network outputs 'coarse', 'sr', 'refine'.
    """
    out = model.apply(variables, image, mask, train=False)
    out = jax.tree.map(lambda x: x.astype(jnp.float32), out)  # bfloat16 compute: float32 from here
    refine_lr = resize_bicubic_tf(out["refine"], image.shape[1:3], antialias=True)
    masked = image * (1.0 - mask)
    # QUIRK (test.py): the already-masked input is multiplied by (1 - m) once more.
    final = jnp.clip(refine_lr * mask + masked * (1.0 - mask), 0.0, 1.0)
    return {
        "final": final,
        "refine_lr": refine_lr,
        "coarse": out["coarse"],
        "sr": out["sr"],
        "refine": out["refine"],
    }


def to_uint8_truncate(x) -> np.ndarray:
    """``uint8(x * 255)`` for x in [0, 1]: truncation, as the reference saves its PNGs."""
    return (np.asarray(x, np.float32) * np.float32(255.0)).astype(np.uint8)


def reference_test(model, variables, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The paper's test protocol (``test.py``): resize both to 256x256 (TF bicubic antialias) unless
    they already are, then ``zoom_forward``.

    Args:
      image: [H, W, 3] float in [0, 1] (uint8 / 255).
      mask: [H, W] or [H, W, 1] float in [0, 1], 1 = hole.
    Returns:
      [256, 256, 3] float32 ``final`` (metrics are computed on it, unquantised).
    """
    image = jnp.asarray(image, jnp.float32)[None]
    mask = jnp.asarray(mask, jnp.float32).reshape(1, *image.shape[1:3], 1)
    if image.shape[1:3] != (TEST_SIZE, TEST_SIZE):
        size = (TEST_SIZE, TEST_SIZE)
        # Both are clipped to [0, 1] before the resize (the reference reads them that way); the
        # resized mask may be non-binary, exactly as in the reference.
        image = resize_bicubic_tf(jnp.clip(image, 0, 1), size, antialias=True)
        mask = resize_bicubic_tf(jnp.clip(mask, 0, 1), size, antialias=True)
    return np.asarray(zoom_forward(model, variables, image, mask)["final"][0])


class MemoryBudgetError(ValueError):
    """The image is too large for the memory budget."""


def estimate_zoom_gb(height: int, width: int, sr_scale: int = 2) -> float:
    """Peak host memory (GB) of ``zoom_forward`` on CPU for a padded H x W input.

    Fitted to ``benchmarks/zoom_cpu.py`` (process peak RSS, jaxlib 0.10, 2 cores): linear in the
    number of refinement pixels, because the attention is memory-efficient.
    """
    refine_mpx = sr_scale * sr_scale * height * width / 1e6
    return ZOOM_GB_BASE + ZOOM_GB_PER_REFINE_MPX * refine_mpx


class ZoomInpainter:
    """Zoom-to-Inpaint on images of any size (at their own resolution; see the module docstring).

    Call with a uint8 RGB image and a uint8 mask (255 = hole), like ``TwoStageInpainter``.
    ``dtype``: computation dtype of the networks, 'float32' or 'bfloat16' (the model given is rebuilt
    with it; parameters stay float32); None (default) keeps the model's own (float32 when loaded).
    """

    def __init__(
        self,
        model,
        variables,
        memory_budget_gb: float | None = None,
        work_size: int | None = None,
        dtype: str | None = None,
    ):
        if work_size is not None and work_size < 16:
            raise ValueError(f"work_size must be >= 16 (or None: native), got {work_size}")
        self.dtype = dtype
        self.model = model if dtype is None else model.clone(dtype=compute_dtype(dtype))
        self.variables = variables
        self.multiple = pad_multiple(model.sr_scale)
        self.memory_budget_gb = memory_budget_gb
        self.work_size = work_size

    @classmethod
    def from_pretrained(
        cls,
        directory,
        memory_budget_gb: float | None = None,
        work_size: int | None | str = "auto",
        dtype: str | None = None,
        **model_overrides,
    ) -> ZoomInpainter:
        """Loads a weights directory; ``work_size='auto'`` takes the one recorded in its metadata
        (None, i.e. native resolution, when there is none), 0 or None forces native. ``dtype``: as
        the constructor's."""
        from hrinpaint_jax.checkpoints import load_pretrained

        model, variables, meta = load_pretrained(directory, **model_overrides)
        if work_size == "auto":
            work_size = meta.get("work_size")
        work_size = int(work_size) if work_size else None
        if meta["model"] != "zoom":
            raise ValueError(f"{directory} holds {meta['model']} weights, expected zoom")
        # Inference needs only the generators; drop the discriminator's arrays.
        variables = {
            col: {k: v for k, v in tree.items() if k != "discriminator"}
            for col, tree in variables.items()
            if col != "spectral"
        }
        return cls(model, variables, memory_budget_gb, work_size, dtype)

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        m = self.multiple
        return -(-height // m) * m, -(-width // m) * m

    def __call__(self, image: np.ndarray, mask: np.ndarray, return_stages: bool = False):
        """Inpaints one image.

        Args:
          image: [H, W, 3] uint8 RGB, any size.
          mask: [H, W] uint8, 255 = hole (other values are fractional holes, as in the reference).
          return_stages: also return the dict of ``zoom_forward`` outputs (padded size).
        Returns:
          [H, W, 3] uint8 RGB (``uint8(final * 255)``, truncated as the reference saves it).
        """
        image, mask = np.asarray(image), np.asarray(mask)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        if mask.shape != image.shape[:2] or mask.dtype != np.uint8:
            raise ValueError(f"mask must be uint8 {image.shape[:2]}, got {mask.dtype} {mask.shape}")
        height, width = image.shape[:2]
        if self.work_size is not None and max(height, width) > self.work_size:
            return self._at_work_size(image, mask, return_stages)
        hp, wp = self.padded_size(height, width)
        need = estimate_zoom_gb(hp, wp, self.model.sr_scale)
        if self.memory_budget_gb is not None and need > self.memory_budget_gb:
            raise MemoryBudgetError(
                f"Zoom-to-Inpaint on {width}x{height} needs about {need:.1f} GB (refinement at "
                f"{self.model.sr_scale * wp}x{self.model.sr_scale * hp}), more than the "
                f"{self.memory_budget_gb:.1f} GB budget; use --method two_stage or a smaller image"
            )
        pad = ((0, hp - height), (0, wp - width))
        image_f = np.pad(image, (*pad, (0, 0)), mode="edge").astype(np.float32) / 255.0
        mask_f = np.pad(mask, pad, mode="edge").astype(np.float32)[..., None] / 255.0
        stages = zoom_forward(self.model, self.variables, image_f[None], mask_f[None])
        result = to_uint8_truncate(stages["final"][0, :height, :width])
        return (result, stages) if return_stages else result

    def _at_work_size(self, image: np.ndarray, mask: np.ndarray, return_stages: bool):
        """Runs at ``work_size`` (longer side) and pastes the fill, resized back, into the hole."""
        height, width = image.shape[:2]
        scale = self.work_size / max(height, width)
        size = (max(16, round(height * scale)), max(16, round(width * scale)))
        small_image = resize_bicubic_tf(jnp.asarray(image, jnp.float32)[None] / 255.0, size,
                                        antialias=True)  # fmt: skip
        small_image = np.asarray(jnp.clip(small_image[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        hole = jnp.where(jnp.asarray(mask)[None, ..., None] >= 128, 1.0, 0.0)
        small_hole = shrink_hole(hole, size)  # the evaluation's training-size rule too
        small_mask = np.where(np.asarray(small_hole[0, ..., 0]) > 0.5, 255, 0).astype(np.uint8)
        native = ZoomInpainter(self.model, self.variables, self.memory_budget_gb, dtype=self.dtype)
        small_out, stages = native(small_image, small_mask, return_stages=True)
        fill = resize_bicubic_tf(jnp.asarray(small_out, jnp.float32)[None] / 255.0,
                                 (height, width), antialias=True)  # fmt: skip
        fill = np.asarray(jnp.clip(fill[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        result = np.where(mask[..., None] >= 128, fill, image)
        return (result, stages) if return_stages else result
