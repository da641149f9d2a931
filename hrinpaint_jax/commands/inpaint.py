"""`hrinpaint inpaint`: one image, or a folder of images paired with a folder of masks by name.

Masks: ``hole_value`` says which side is the hole (default white, as the reference's mask files),
``threshold`` binarises antialiased masks (the user is warned once), ``dilate`` grows the hole.
An empty mask writes the image unchanged; a mask of another size is an error, and so are two masks
with the image's name in folder mode. Outputs are written atomically and never overwrite an
existing file without ``overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hrinpaint_jax.commands.arguments import float_range, int_range
from hrinpaint_jax.image_io import (
    IMAGE_SUFFIXES,
    InputError,
    LoadedImage,
    binarise_mask,
    check_writable_output,
    read_image,
    read_mask,
    result_pixels,
    write_image,
)
from hrinpaint_jax.pipelines.crop import CropInpainter
from hrinpaint_jax.pipelines.load import default_memory_budget_gb, load_inpainter

# Context-crop defaults, chosen from benchmarks/crop_mode.py (docs/pipelines.md): the crop side is
# CROP_CONTEXT x the hole group's extent and at least CROP_MIN_SIDE (DFNet's 512; twice the bundled
# Zoom-to-Inpaint work size).
CROP_CONTEXT = 4.0
CROP_MIN_SIDE = 512


def tile_size(text: str) -> int:
    """``--tile-size``: a positive multiple of 256 (the refinement's padding bucket)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0 or value % 256:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 256, got {text}")
    return value


def zoom_size(text: str) -> int | str:
    """``--zoom-size``: auto, 0 (the image's own resolution) or a longer side >= 16."""
    if text == "auto":
        return text
    if not text.isdigit() or 0 < int(text) < 16:
        raise argparse.ArgumentTypeError(f"must be auto, 0 or >= 16, got {text}")
    return int(text)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("inpaint", help="fill the holes of an image (or a folder of images)")
    p.add_argument("--image", required=True, help="image file, or a folder of images")
    p.add_argument(
        "--mask",
        required=True,
        help="mask file, or a folder of masks paired with the images by file name",
    )
    p.add_argument("--output", required=True, help="output file, or a folder in folder mode")
    p.add_argument(
        "--weights",
        default=None,
        help="weights folder (default $HRINPAINT_WEIGHTS): dfnet/ and shift_refine/ for "
        "two_stage, zoom/ for zoom",
    )
    p.add_argument(
        "--method",
        default="two_stage",
        choices=["two_stage", "zoom"],
        help="two_stage: DFNet + shift refinement (Moskalenko et al.; default); zoom: "
        "Zoom-to-Inpaint (Kim et al.), run at the image's own resolution",
    )
    p.add_argument(
        "--zoom-size",
        type=zoom_size,
        default="auto",
        help="zoom only: run on the image shrunk to this longer side and paste the fill back "
        "(auto: the size recorded with the weights, e.g. 256 for the bundled model; 0: the "
        "image's own resolution)",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="computation dtype of the networks (weights stay float32): float32 (default; exact "
        "reference results) or bfloat16 (faster on GPUs/TPUs; slightly different pixels)",
    )
    p.add_argument(
        "--hole-value",
        default="white",
        choices=["white", "black"],
        help="which mask value marks the hole (default white, as the reference's masks)",
    )
    p.add_argument(
        "--mask-threshold",
        type=int_range(1, 255),
        default=128,
        help="binarisation threshold for antialiased masks, 1..255 (default 128)",
    )
    p.add_argument(
        "--dilate", type=int_range(0), default=0, help="grow the hole by N pixels (default 0)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--fixed",
        action="store_true",
        help="two_stage only: fix the reference's bugs instead of reproducing it exactly "
        "(see docs/pipelines.md)",
    )
    p.add_argument(
        "--no-hole-local",
        action="store_true",
        help="two_stage only: run the refinement decoder on the whole image (same result, slower)",
    )
    p.add_argument(
        "--tile-size",
        type=tile_size,
        default=None,
        help="two_stage only: refine in overlapping tiles of this size (multiple of 256) when "
        "the image is larger, to bound memory; approximate",
    )
    p.add_argument(
        "--whole-image",
        action="store_true",
        help="run the network on the whole photo (the papers' pipelines) instead of on a context "
        "crop around each group of holes (the default; see --crop-context)",
    )
    p.add_argument(
        "--crop-context",
        type=float_range(1.0),
        default=CROP_CONTEXT,
        metavar="X",
        help=f"each hole's crop side = X times its own larger extent (crops that overlap merge; "
        f"smaller than the network's working size: enlarged to it) (default {CROP_CONTEXT:g})",
    )
    p.add_argument(
        "--memory-budget",
        type=float,
        default=None,
        metavar="GB",
        help="refine in tiles when the refinement would need more host memory than this "
        "(default: 80%% of the memory available now, on CPU)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.method != "zoom" and args.zoom_size != "auto":
        raise ValueError("--zoom-size: only for --method zoom")
    if args.method == "zoom":
        two_stage_only = (
            ("--fixed", args.fixed),
            ("--no-hole-local", args.no_hole_local),
            ("--tile-size", args.tile_size is not None),
        )
        used = [flag for flag, on in two_stage_only if on]
        if used:
            raise ValueError(f"{', '.join(used)}: only for --method two_stage")
    budget = args.memory_budget if args.memory_budget is not None else default_memory_budget_gb()
    return run_inpaint(
        args.image,
        args.mask,
        args.output,
        weights=args.weights,
        method=args.method,
        mask_options=MaskOptions(args.hole_value, args.mask_threshold, args.dilate),
        overwrite=args.overwrite,
        faithful=not args.fixed,
        hole_local=False if args.no_hole_local else None,
        tile_size=args.tile_size,
        memory_budget_gb=budget,
        zoom_size=args.zoom_size,
        dtype=args.dtype,
        crop_context=None if args.whole_image else args.crop_context,
    )


@dataclasses.dataclass(frozen=True)
class MaskOptions:
    hole_value: str = "white"
    threshold: int = 128
    dilate: int = 0


class _WarnOnce:
    def __init__(self, log: Callable[[str], None]):
        self.log, self.seen = log, set()

    def __call__(self, key: str, message: str) -> None:
        if key not in self.seen:
            self.seen.add(key)
            self.log(f"warning: {message}")


def prepare_pair(
    image_path,
    mask_path,
    output_path,
    mask_options: MaskOptions,
    overwrite: bool,
    warn: Callable[[str, str], None],
) -> tuple[LoadedImage, np.ndarray]:
    """Reads and checks one (image, mask, output) triple; returns the image and the bool hole.

    Everything here is cheap, so callers run it before the networks are loaded.
    """
    image = read_image(image_path)
    for note in image.notes:
        warn(f"note:{image_path}", note)
    check_writable_output(output_path, overwrite, has_alpha=image.alpha is not None)
    mask = read_mask(mask_path)
    if mask.shape != image.rgb8.shape[:2]:
        raise InputError(
            f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image "
            f"{image_path} is {image.rgb8.shape[1]}x{image.rgb8.shape[0]} (WxH)"
        )
    hole, non_binary = binarise_mask(
        mask, mask_options.hole_value, mask_options.threshold, mask_options.dilate
    )
    if non_binary:
        warn(
            "non-binary",
            f"mask {mask_path} is not binary (antialiased?); binarised at "
            f"threshold {mask_options.threshold} ({mask_options.hole_value} = hole)",
        )
    return image, hole


def fill_and_write(
    inpainter,
    image: LoadedImage,
    hole: np.ndarray,
    output_path,
    overwrite: bool,
    warn: Callable[[str, str], None] | None = None,
) -> str:
    """Inpaints a prepared pair and writes the result; returns a short status."""
    if not hole.any():
        write_image(output_path, result_pixels(image, image.rgb8, hole), image, overwrite, warn)
        return "empty mask: image written unchanged"
    filled = inpainter(image.rgb8, hole)  # the pipelines take the bool hole as it is
    write_image(output_path, result_pixels(image, filled, hole), image, overwrite, warn)
    return f"filled {int(hole.sum())} px"


def inpaint_file(
    inpainter,
    image_path,
    mask_path,
    output_path,
    mask_options: MaskOptions,
    overwrite: bool,
    warn: Callable[[str, str], None],
) -> str:
    """Inpaints one file pair; returns a short status ('filled N px' / 'empty mask')."""
    image, hole = prepare_pair(image_path, mask_path, output_path, mask_options, overwrite, warn)
    return fill_and_write(inpainter, image, hole, output_path, overwrite, warn)


def _pairs(image_dir: Path, mask_dir: Path, output_dir: Path):
    """(image, masks with its file stem, output) for every image in image_dir."""
    masks: dict[str, list[Path]] = {}
    for p in sorted(mask_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            masks.setdefault(p.stem, []).append(p)
    for p in sorted(image_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            yield p, masks.get(p.stem, []), output_dir / p.name


def _only_mask(image: Path, masks: list[Path], mask_dir: Path) -> Path:
    if not masks:
        raise InputError(f"no mask named {image.stem}.* in {mask_dir}")
    if len(masks) > 1:  # a.png and a.bmp: refuse to guess which one the user meant
        raise InputError(
            f"{len(masks)} masks named {image.stem}.* in {mask_dir} "
            f"({', '.join(m.name for m in masks)}): keep one"
        )
    return masks[0]


def _load(crop_context: float | None, *load_args):
    """``load_inpainter(*load_args)``, wrapped for context crops unless ``crop_context`` is None;
    compiled executables are kept between runs (``runtime.enable_compile_cache``)."""
    from hrinpaint_jax.runtime import enable_compile_cache

    enable_compile_cache()
    inpainter = load_inpainter(*load_args)
    if crop_context is None:
        return inpainter
    return CropInpainter(inpainter, context=crop_context, min_side=CROP_MIN_SIDE)


def run_inpaint(
    image: str,
    mask: str,
    output: str,
    weights: str | None = None,
    method: str = "two_stage",
    mask_options: MaskOptions = MaskOptions(),
    overwrite: bool = False,
    faithful: bool = True,
    hole_local: bool | None = None,
    tile_size: int | None = None,
    memory_budget_gb: float | None = None,
    log: Callable[[str], None] | None = None,
    zoom_size: int | str | None = "auto",
    dtype: str = "float32",
    crop_context: float | None = None,
) -> int:
    """The command: returns the exit code (0 all done, 2 if anything failed).

    ``crop_context``: run on context crops around the holes (``pipelines/crop.py``) with this
    multiple; None runs the whole-image pipeline."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    warn = _WarnOnce(log)
    image_p, mask_p, output_p = Path(image), Path(mask), Path(output)
    start = time.perf_counter()
    load_args = (weights, faithful, hole_local, tile_size, memory_budget_gb, method, zoom_size, dtype)

    if not image_p.is_dir():
        # Single file: validate everything cheap before loading the networks.
        if mask_p.is_dir():
            raise InputError(f"--image is a file but --mask is a folder: {mask_p}")
        image, hole = prepare_pair(image_p, mask_p, output_p, mask_options, overwrite, warn)
        inpainter = _load(crop_context, *load_args)
        status = fill_and_write(inpainter, image, hole, output_p, overwrite, warn)
        log(f"{output_p}: {status} ({time.perf_counter() - start:.1f} s)")
        return 0

    if not mask_p.is_dir():
        raise InputError(f"--image is a folder, so --mask must be a folder too: {mask_p}")
    if output_p.exists() and not output_p.is_dir():
        raise InputError(f"--output must be a folder in folder mode: {output_p}")
    pairs = list(_pairs(image_p, mask_p, output_p))
    if not pairs:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {image_p}")
    inpainter = _load(crop_context, *load_args)
    output_p.mkdir(parents=True, exist_ok=True)  # only once the run can write something
    from tqdm import tqdm

    failures, done = [], 0
    for img, masks, out in tqdm(pairs, desc="inpainting", unit="image", file=sys.stderr):
        try:
            msk = _only_mask(img, masks, mask_p)
            inpaint_file(inpainter, img, msk, out, mask_options, overwrite, warn)
            done += 1
        except (InputError, OSError) as e:
            failures.append(f"{img.name}: {e}")
    elapsed = time.perf_counter() - start
    log(
        f"inpainted {done} of {len(pairs)} images into {output_p} in {elapsed:.1f} s"
        + (f"; {len(failures)} failed:" if failures else "")
    )
    for line in failures:
        log(f"  {line}")
    return 2 if failures else 0
