"""Training data of the seed-000 refinement U-Net (REFERENCE.md 9.2): 512 patches of whole
stage-1 results whose hole covers 10-90 %, from images cut on the fly (``input_pipeline``) or from
precomputed stage-1 PNG triplets (``precompute_stage1``). Same determinism as ``input_pipeline``:
every draw comes from ``example_rng``; stream 1 is the patch corner."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hrinpaint_jax.checkpoints import load_pretrained
from hrinpaint_jax.image_io import save_png
from hrinpaint_jax.input_pipeline import (
    CORNER_STREAM,
    CROP_STREAM,
    DataConfig,
    MaskSampler,
    assemble_batches,
    batch_layout,
    example_rng,
    global_positions,
    image_example,
    image_items,
    to_float,
)
from hrinpaint_jax.pipelines.two_stage import training_stage1


def _windows_ok(hole: np.ndarray, size: int, min_hole: float, max_hole: float) -> np.ndarray:
    """bool [H - size + 1, W - size + 1]: hole fraction of each window in [min_hole, max_hole]."""
    import cv2

    h, w = hole.shape
    if h < size or w < size:
        raise ValueError(f"image {h}x{w} is smaller than the {size} patch")
    binary = np.ascontiguousarray(hole > 0.5).view(np.uint8)
    sat = cv2.integral(binary, sdepth=cv2.CV_32S if h * w < 2**31 else cv2.CV_64F)
    counts = sat[size:, size:] - sat[:-size, size:] - sat[size:, :-size] + sat[:-size, :-size]
    frac = counts / float(size * size)
    return (frac >= min_hole) & (frac <= max_hole)


def valid_patch_corners(hole: np.ndarray, size: int, min_hole: float, max_hole: float) -> np.ndarray:
    """[N, 2] (top, left) of every ``size`` x ``size`` window of ``hole`` ([H, W], 1 = hole) whose hole
    fraction lies in ``[min_hole, max_hole]`` -- all windows at once from a summed-area table
    (``cv2.integral``), in row-major order."""
    return np.argwhere(_windows_ok(hole, size, min_hole, max_hole))


def _with_corner(
    cfg: DataConfig,
    mask_sampler: MaskSampler | None,
    patch_size: int,
    hole_range: tuple[float, float],
    max_redraws: int,
    stage1_dir: str | None,
    example: dict[str, np.ndarray],
    step: int,
    index: int,
) -> dict:
    """Adds 'patch_top' / 'patch_left' (int32): a window drawn uniformly among those whose hole
    fraction is in ``hole_range``; with a sampler the mask is redrawn while none is."""
    lo, hi = hole_range
    mask = example["mask"]
    rng = example_rng(cfg.seed, CORNER_STREAM, step, index)
    for _ in range(max_redraws + 1):
        ok = _windows_ok(mask[..., 0], patch_size, lo, hi)
        valid = np.flatnonzero(ok)  # the order of valid_patch_corners
        if len(valid):
            top, left = divmod(int(valid[rng.integers(len(valid))]), ok.shape[1])
            example["mask"] = mask.astype(np.float32, copy=False)
            example["patch_top"], example["patch_left"] = np.int32(top), np.int32(left)
            return example
        if stage1_dir is not None:
            raise RuntimeError(
                f"a precomputed mask in {stage1_dir} has no {patch_size} "
                f"window with hole fraction in [{lo}, {hi}]"
            )
        mask = np.asarray(mask_sampler(step, 1, *mask.shape[:2], rng))[0]
    raise RuntimeError(
        f"no {patch_size} window with hole fraction in [{lo}, {hi}] after "
        f"{max_redraws} mask redraws: check the mask sampler"
    )


STAGE1_PARTS = ("image", "mask", "stage1")  # NAME.image.png, NAME.mask.png, NAME.stage1.png


def stage1_examples(directory: str | os.PathLike) -> list[tuple[str, str, str]]:
    """The (image, mask, stage1) PNG triplets of a precomputed stage-1 folder, sorted by name."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"stage-1 folder not found: {root}")
    names = sorted(p.name[: -len(".image.png")] for p in root.glob("*.image.png"))
    missing = [
        f"{n}.{part}.png"
        for n in names
        for part in STAGE1_PARTS[1:]
        if not (root / f"{n}.{part}.png").is_file()
    ]
    if missing:
        raise FileNotFoundError(f"stage-1 folder {root} lacks {', '.join(missing[:3])}")
    if not names:
        raise FileNotFoundError(f"no *.image.png in stage-1 folder {root}")
    return [tuple(str(root / f"{n}.{part}.png") for part in STAGE1_PARTS) for n in names]


def _stage1_example(cfg: DataConfig, step: int, index: int, triplet: tuple[str, str, str]):
    """{'image_hr', 'mask' (binary: grey >= 128), 'stage1'} float32 of one PNG triplet, flipped
    left-right together with probability 1/2 (``example_rng(seed, 2, step, index)``)."""
    from PIL import Image

    def png(path, mode):
        with Image.open(path) as im:
            return np.asarray(im if im.mode == mode else im.convert(mode))

    image, stage1 = png(triplet[0], "RGB"), png(triplet[2], "RGB")
    mask = (png(triplet[1], "L") >= 128)[..., None]
    if cfg.flip and example_rng(cfg.seed, CROP_STREAM, step, index).random() < 0.5:
        image, mask, stage1 = image[:, ::-1], mask[:, ::-1], stage1[:, ::-1]
    return {"image_hr": to_float(image), "mask": mask.astype(np.float32), "stage1": to_float(stage1)}


def _stage1_items(directory, cfg: DataConfig, process_index: int, per_process: int, start_step: int):
    """(step, global index, triplet) of this process's slice of the global stream of triplets (a
    seeded permutation per epoch, as for folders)."""
    triplets = stage1_examples(directory)
    positions = global_positions(cfg.global_batch_size, per_process, process_index, start_step)
    perms: dict[int, np.ndarray] = {}
    for step, i in positions:
        epoch, position = divmod(i, len(triplets))
        if epoch not in perms:
            perms = {epoch: np.random.default_rng([cfg.seed, epoch]).permutation(len(triplets))}
        yield step, i, triplets[perms[epoch][position]]


def refinement_batches(
    cfg: DataConfig,
    mask_sampler: MaskSampler | None = None,
    *,
    patch_size: int = 512,
    hole_range: tuple[float, float] = (0.10, 0.90),
    stage1_dir: str | None = None,
    max_redraws: int = 20,
    start_step: int = 0,
    num_devices: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Host batches for training the shift refinement U-Net on patches of whole stage-1 results.

    The paper precomputes stage 1 (DFNet + upscale) on whole images, then trains on random 512
    crops of the 20-channel tensor whose hole covers 10 %..90 % (REFERENCE.md 9.2). Two sources:

    * on the fly (``stage1_dir=None``): ``cfg.crop_size`` squares (``lr_scale`` 1) with masks from
      ``mask_sampler``; stage 1 then runs on the device inside the train step
      (``pipelines.two_stage.training_stage1``) with the frozen DFNet;
    * precomputed (``stage1_dir``, written by ``precompute_stage1``): image, mask and stage-1 result
      read from PNG triplets; the batch then also holds 'stage1'.

    Either way a patch corner is drawn uniformly among the windows that pass the hole test (with
    a sampler, the mask is redrawn when none does; ``example_rng(seed, 1, step, index)``), in the
    worker pool, and the 20 channels are built on the device from the whole square's shifts
    (``pipelines.two_stage.refinement_patches``), so nothing of size 20 x S^2 crosses the host.

    Yields 'image_hr', 'mask' (and 'stage1') [D, P, S, S, C] plus 'patch_top', 'patch_left'
    [D, P] int32. Deterministic given the seed and the step; ``start_step`` resumes the stream.
    """
    if stage1_dir is None and mask_sampler is None:
        raise ValueError("refinement batches need a mask_sampler or a precomputed stage1_dir")
    if cfg.lr_scale != 1:
        raise ValueError("refinement batches need DataConfig.lr_scale = 1 (no LR image)")
    if cfg.crop_size < patch_size:
        raise ValueError(f"crop_size {cfg.crop_size} is smaller than patch_size {patch_size}")
    num_devices, process_index, process_count, per_process = batch_layout(
        cfg, num_devices, process_index, process_count
    )
    if stage1_dir is None:
        items = image_items(cfg, process_index, process_count, start_step)
        base = functools.partial(image_example, cfg, mask_sampler)
    else:
        items = _stage1_items(stage1_dir, cfg, process_index, per_process, start_step)
        base = functools.partial(_stage1_example, cfg)
    corner = functools.partial(
        _with_corner, cfg, mask_sampler, patch_size, hole_range, max_redraws, stage1_dir
    )

    def example(step, index, source):
        return corner(base(step, index, source), step, index)

    yield from assemble_batches(cfg, items, example, num_devices, per_process)


def precompute_stage1(
    dfnet_dir: str | os.PathLike,
    cfg: DataConfig,
    mask_sampler: MaskSampler,
    out_dir: str | os.PathLike,
    count: int,
    *,
    patch_size: int = 512,
    hole_range: tuple[float, float] = (0.10, 0.90),
    faithful: bool = False,
) -> int:
    """Writes ``count`` stage-1 examples (NAME.image/.mask/.stage1.png) of ``cfg.crop_size`` squares
    for ``refinement_batches(stage1_dir=...)``: the paper's precomputed setup. Each mask has at least
    one valid patch window. Files are written atomically; existing examples are kept (resumable).
    Returns the number of examples written."""
    import jax

    dfnet, variables, _ = load_pretrained(dfnet_dir)
    stage1 = jax.jit(lambda v, im, m: training_stage1(dfnet, v, im, m, faithful=faithful))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    one = dataclasses.replace(cfg, global_batch_size=1)
    batches = refinement_batches(
        one,
        mask_sampler,
        patch_size=patch_size,
        hole_range=hole_range,
        num_devices=1,
        process_index=0,
        process_count=1,
    )
    written = 0
    for i in range(count):
        batch = next(batches)
        name = f"{i:06d}"
        if all((out / f"{name}.{part}.png").is_file() for part in STAGE1_PARTS):
            continue
        image, mask = batch["image_hr"][0], batch["mask"][0]
        result = np.asarray(stage1(variables, image, mask))[0]
        for part, array in zip(STAGE1_PARTS, (image[0], mask[0, ..., 0], result), strict=True):
            pixels = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
            save_png(out / f"{name}.{part}.png", pixels)
        written += 1
    return written
