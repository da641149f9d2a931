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

``ZoomInpainter(zoom='bicubic' | 'none')`` (or ``with_zoom``) swaps the SR zoom for a bicubic one or
none, the paper's ablations (``ZoomToInpaint.zoom``); ``fill`` gives the unquantised float output
of a batch, what the evaluation measures.

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
from hrinpaint_jax.models.zoom import ZOOM_OPTIONS
from hrinpaint_jax.ops.pixels import from_uint8, to_uint8
from hrinpaint_jax.ops.resize import resize_bicubic_tf, resize_nearest_tf, shrink_hole
from hrinpaint_jax.pipelines.inputs import MemoryBudgetError, check_image, mask_u8

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


def resize_hole(holes, size: tuple[int, int]) -> jax.Array:
    """[B, h, w, 1] binary holes (1 = hole) resized to ``size``: nearest when enlarging, any coverage
    (``shrink_hole``) when shrinking, so that no part of the hole escapes the method."""
    if size[0] >= holes.shape[1] and size[1] >= holes.shape[2]:
        return resize_nearest_tf(holes, size)
    return shrink_hole(holes, size)


def resize_run_paste(run, images, holes, size: tuple[int, int]) -> jax.Array:
    """Runs a method at ``size`` and pastes its output, resized back, into the hole.

    ``ZoomInpainter(work_size=N)`` runs this way, and so does the evaluation's ``training_size`` mode
    (as the ZTI paper ran HiFill; REFERENCE.md 10.1). Both resizes are TF bicubic with antialias, the
    hole is resized by ``resize_hole``; the known pixels come out exact.

    Args:
      run: ``run(small_images, small_holes) -> [B, h, w, 3]`` float outputs.
      images: [B, H, W, 3] float in [0, 1]; holes: [B, H, W, 1] binary (1 = hole).
      size: (h, w) to run at.
    Returns:
      [B, H, W, 3] float in [0, 1].
    """
    small = jnp.clip(resize_bicubic_tf(jnp.asarray(images), size, antialias=True), 0.0, 1.0)
    out = run(small, resize_hole(jnp.asarray(holes), size))
    out = resize_bicubic_tf(jnp.asarray(out), images.shape[1:3], antialias=True)
    return jnp.clip(out * holes + images * (1.0 - holes), 0.0, 1.0)


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


def estimate_zoom_gb(height: int, width: int, sr_scale: int = 2) -> float:
    """Peak host memory (GB) of ``zoom_forward`` on CPU for a padded H x W input.

    Fitted to ``benchmarks/zoom_cpu.py`` (process peak RSS, jaxlib 0.10, 2 cores): linear in the
    number of refinement pixels, because the attention is memory-efficient.
    """
    refine_mpx = sr_scale * sr_scale * height * width / 1e6
    return ZOOM_GB_BASE + ZOOM_GB_PER_REFINE_MPX * refine_mpx


class ZoomInpainter:
    """Zoom-to-Inpaint on images of any size (at their own resolution; see the module docstring).

    Call with a uint8 RGB image and a bool hole (True = hole), like ``TwoStageInpainter``
    (``pipelines/inputs.py``). ``dtype``: computation dtype of the networks, 'float32' or 'bfloat16'
    (the model given is rebuilt with it; parameters stay float32); None (default) keeps the model's
    own (float32 when loaded). ``zoom``: the model's zoom stage, 'sr' (as published), 'bicubic' or
    'none' (the paper's ablations, ``ZoomToInpaint.zoom``); None keeps the model's own.
    """

    def __init__(
        self,
        model,
        variables,
        memory_budget_gb: float | None = None,
        work_size: int | None = None,
        dtype: str | None = None,
        zoom: str | None = None,
    ):
        if work_size is not None and work_size < 16:
            raise ValueError(f"work_size must be >= 16 (or None: native), got {work_size}")
        if zoom is not None and zoom not in ZOOM_OPTIONS:
            raise ValueError(f"zoom must be one of {', '.join(ZOOM_OPTIONS)}, got {zoom!r}")
        self.dtype = dtype
        model = model if dtype is None else model.clone(dtype=compute_dtype(dtype))
        self.model = model if zoom is None else model.clone(zoom=zoom)
        self.variables = variables
        # Without the zoom the refinement runs at the input size, which needs multiples of 8.
        self.scale = 1 if self.model.zoom == "none" else self.model.sr_scale
        self.multiple = pad_multiple(self.scale)
        self.memory_budget_gb = memory_budget_gb
        self.work_size = work_size

    def with_zoom(self, zoom: str) -> ZoomInpainter:
        """The same networks and settings with another zoom stage (an ablation variant)."""
        return ZoomInpainter(
            self.model, self.variables, self.memory_budget_gb, self.work_size, zoom=zoom
        )

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
        from hrinpaint_jax.models.build import split_discriminator

        model, variables, meta = load_pretrained(directory, **model_overrides)
        if work_size == "auto":
            work_size = meta.get("work_size")
        work_size = int(work_size) if work_size else None
        if meta["model"] != "zoom":
            raise ValueError(f"{directory} holds {meta['model']} weights, expected zoom")
        variables, _ = split_discriminator(variables)  # inference needs only the generators
        return cls(model, variables, memory_budget_gb, work_size, dtype)

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        m = self.multiple
        return -(-height // m) * m, -(-width // m) * m

    def forward(self, images, holes) -> dict:
        """``zoom_forward`` on a batch padded by edge replication to the networks' multiple.

        Args:
          images: [B, H, W, 3] float in [0, 1]; holes: [B, H, W, 1] float, 1 = hole (fractional
            values behave as in the reference). NumPy, or device arrays (sharded over the batch).
        Returns:
          ``zoom_forward``'s dict at the padded size; ``fill`` crops its 'final'.
        """
        height, width = images.shape[1:3]
        hp, wp = self.padded_size(height, width)
        pad = ((0, 0), (0, hp - height), (0, wp - width), (0, 0))
        images = jnp.pad(jnp.asarray(images, jnp.float32), pad, mode="edge")
        holes = jnp.pad(jnp.asarray(holes, jnp.float32), pad, mode="edge")
        return zoom_forward(self.model, self.variables, images, holes)

    def fill(self, images, holes) -> jax.Array:
        """[B, H, W, 3] float ``final`` (clipped, unquantised: what the papers' metrics use) for
        [B, H, W, 3] float images and [B, H, W, 1] holes, at their own size."""
        height, width = images.shape[1:3]
        return self.forward(images, holes)["final"][:, :height, :width]

    def __call__(self, image: np.ndarray, hole=None, return_stages: bool = False, *, soft_mask=None):
        """Inpaints one image.

        Args:
          image: [H, W, 3] uint8 RGB, any size.
          hole: [H, W] bool, True = hole (or numeric holding only 0 and 1).
          return_stages: also return the dict of ``zoom_forward`` outputs (padded size).
          soft_mask: instead of ``hole``, the reference's uint8 mask file (255 = hole; other values
            are fractional holes m/255, as in test.py; binarised at 128 when run at ``work_size``).
        Returns:
          [H, W, 3] uint8 RGB (``uint8(final * 255)``, truncated as the reference saves it).
        """
        image = check_image(image)
        mask = mask_u8(hole, soft_mask, image.shape[:2])
        height, width = image.shape[:2]
        if self.work_size is not None and max(height, width) > self.work_size:
            return self._at_work_size(image, mask >= 128, return_stages)
        hp, wp = self.padded_size(height, width)
        need = estimate_zoom_gb(hp, wp, self.scale)
        if self.memory_budget_gb is not None and need > self.memory_budget_gb:
            raise MemoryBudgetError(
                f"Zoom-to-Inpaint on {width}x{height} needs about {need:.1f} GB (refinement at "
                f"{self.scale * wp}x{self.scale * hp}), more than the "
                f"{self.memory_budget_gb:.1f} GB budget; use --method two_stage or a smaller image"
            )
        stages = self.forward(from_uint8(image)[None], from_uint8(mask)[None, ..., None])
        # QUIRK (test.py, step 5): the PNG is uint8(final * 255), truncated.
        result = to_uint8(np.asarray(stages["final"][0, :height, :width]), rounding="truncate")
        return (result, stages) if return_stages else result

    def _at_work_size(self, image: np.ndarray, hole: np.ndarray, return_stages: bool):
        """Runs at ``work_size`` (longer side) and pastes the fill, resized back, into the hole."""
        height, width = image.shape[:2]
        scale = self.work_size / max(height, width)
        size = (max(16, round(height * scale)), max(16, round(width * scale)))
        native = ZoomInpainter(self.model, self.variables, self.memory_budget_gb)
        stages = {}

        def run(small_image, small_hole):
            out, stages["native"] = native(
                to_uint8(np.asarray(small_image[0])), np.asarray(small_hole[0, ..., 0]) > 0.5, True
            )
            return from_uint8(out)[None]

        holes = hole[None, ..., None].astype(np.float32)
        filled = resize_run_paste(run, from_uint8(image)[None], holes, size)
        result = np.where(hole[..., None], to_uint8(np.asarray(filled[0])), image)
        return (result, stages["native"]) if return_stages else result
