"""`hrinpaint inpaint`: one image, or a folder of images paired with a folder of masks by name.

Masks: ``hole_value`` says which side is the hole (default white, as the reference's mask files),
``threshold`` binarises antialiased masks (the user is warned once), ``dilate`` grows the hole.
An empty mask writes the image unchanged; a mask of another size is an error. Outputs are written
atomically and never overwrite an existing file without ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

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
from hrinpaint_jax.pipelines.load import load_inpainter


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


def fill_and_write(inpainter, image: LoadedImage, hole: np.ndarray, output_path, overwrite: bool) -> str:
    """Inpaints a prepared pair and writes the result; returns a short status."""
    if not hole.any():
        write_image(output_path, result_pixels(image, image.rgb8, hole), image, overwrite=overwrite)
        return "empty mask: image written unchanged"
    filled = inpainter(image.rgb8, np.where(hole, 255, 0).astype(np.uint8))
    write_image(output_path, result_pixels(image, filled, hole), image, overwrite=overwrite)
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
    return fill_and_write(inpainter, image, hole, output_path, overwrite)


def _pairs(image_dir: Path, mask_dir: Path, output_dir: Path):
    """(image, mask or None, output) for every image in image_dir, masks matched by file stem."""
    masks = {}
    for p in sorted(mask_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            masks.setdefault(p.stem, p)
    for p in sorted(image_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            yield p, masks.get(p.stem), output_dir / p.name


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
) -> int:
    """The command: returns the exit code (0 all done, 2 if anything failed)."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    warn = _WarnOnce(log)
    image_p, mask_p, output_p = Path(image), Path(mask), Path(output)
    start = time.perf_counter()

    if not image_p.is_dir():
        # Single file: validate everything cheap before loading the networks.
        if mask_p.is_dir():
            raise InputError(f"--image is a file but --mask is a folder: {mask_p}")
        image, hole = prepare_pair(image_p, mask_p, output_p, mask_options, overwrite, warn)
        inpainter = load_inpainter(
            weights, faithful, hole_local, tile_size, memory_budget_gb, method, zoom_size, dtype
        )
        status = fill_and_write(inpainter, image, hole, output_p, overwrite)
        log(f"{output_p}: {status} ({time.perf_counter() - start:.1f} s)")
        return 0

    if not mask_p.is_dir():
        raise InputError(f"--image is a folder, so --mask must be a folder too: {mask_p}")
    if not output_p.is_dir():
        if output_p.exists():
            raise InputError(f"--output must be a folder in folder mode: {output_p}")
        output_p.mkdir(parents=True)
    pairs = list(_pairs(image_p, mask_p, output_p))
    if not pairs:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {image_p}")
    inpainter = load_inpainter(
        weights, faithful, hole_local, tile_size, memory_budget_gb, method, zoom_size, dtype
    )
    from tqdm import tqdm

    failures, done = [], 0
    for img, msk, out in tqdm(pairs, desc="inpainting", unit="image", file=sys.stderr):
        try:
            if msk is None:
                raise InputError(f"no mask named {img.stem}.* in {mask_p}")
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
