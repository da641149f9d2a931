"""Training input: images from TFDS, a folder or the bundled samples -> cropped, flipped HR / LR
pairs with hole masks, as host batches shaped ``[local_devices, per_device, H, W, C]``.

REFERENCE.md 9.3 and 11 item 38 (Zoom-to-Inpaint data): the HR crop sits at **even** offsets and the
LR image is the TF bicubic *antialiased* downscale of the HR crop (tfds' own DIV2K LR images are not
used). Images smaller than the crop are resized up (bicubic, aspect kept) before cropping.

Decoding, cropping and the LR resize run in ``tf.data`` (parallel, deterministic for a seed); masks
are drawn on the host per step by a ``masks.MaskSchedule``-like sampler, because progressive
training changes them with the step. Multi-host: every source is sharded per JAX process
(``tfds.split_for_jax_process``, or every ``process_count``-th file). TensorFlow is imported lazily.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from hrinpaint_jax.image_io import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parent / "assets" / "samples"
# Image feature of the TFDS datasets we know (others: 'image').
TFDS_IMAGE_KEY = {"div2k": "hr"}

# mask_sampler(step, batch, height, width, rng) -> float32 [batch, height, width, 1], 1 = hole.
MaskSampler = Callable[[int, int, int, int, np.random.Generator], np.ndarray]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where images come from and how batches are shaped.

    Attributes:
      source: 'tfds:NAME' (e.g. 'tfds:div2k', 'tfds:places365_small'), 'folder:PATH' (recursive) or
        'samples' (the bundled photos).
      split: TFDS split.
      data_dir: TFDS data_dir (None: TFDS default).
      crop_size: HR crop side (the networks' training size).
      lr_scale: LR = HR downscaled by this factor (1: no LR image).
      global_batch_size: images per step over all processes and devices.
      seed: shuffling / cropping seed.
      shuffle_buffer: images kept for shuffling.
      flip: random horizontal flips.
      holdout: file names (no folders) left out of folder / samples sources (validation photos).
    """

    source: str = "samples"
    split: str = "train"
    data_dir: str | None = None
    crop_size: int = 256
    lr_scale: int = 2
    global_batch_size: int = 8
    seed: int = 0
    shuffle_buffer: int = 256
    flip: bool = True
    holdout: tuple[str, ...] = ()


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder`` (recursive, sorted, common suffixes, case-insensitive)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load_rgb(path: bytes) -> np.ndarray:
    """Decodes any image PIL reads (EXIF orientation applied) to uint8 RGB; a bad file gives a
    0 x 0 image (filtered out) and a logged warning, so one broken file never stops training."""
    from hrinpaint_jax.image_io import InputError, read_image

    try:
        return read_image(path.decode()).rgb8
    except (InputError, OSError, ValueError) as e:
        logger.warning("skipping unreadable training image %s: %s", path.decode(), e)
        return np.zeros((0, 0, 3), np.uint8)


def _header_ok(path: str) -> bool:
    """Cheap up-front check (the header only) so that unreadable files leave the stream before it is
    cut into batches; a file that fails later, while decoding, is skipped there (with a warning)."""
    from PIL import Image

    try:
        with Image.open(path):
            return True
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad files
        logger.warning("skipping unreadable training image %s: %s", path, e)
        return False


def _process_slice(ds, global_batch: int, process_index: int, process_count: int):
    """Keeps this process's share of every global batch of a *global* example stream: element i
    goes to process ``(i % global_batch) // per_process``, so the examples of a step (and their
    order across devices) are the same whatever the number of processes."""
    import tensorflow as tf

    per_process = global_batch // process_count
    ds = ds.enumerate().filter(lambda i, _: tf.equal((i % global_batch) // per_process, process_index))
    return ds.map(lambda _, x: x)


def image_dataset(cfg: DataConfig, process_index: int = 0, process_count: int = 1, start_step: int = 0):
    """An endless ``tf.data.Dataset`` of (uint8 [H, W, 3] image, crop seed [2]) for this process.

    Folder and bundled samples: one global stream (a fresh seeded permutation of the files per
    epoch, a crop seed per element) cut into global batches, of which each process keeps its slice
    before decoding; ``start_step`` skips whole global batches of file names (cheap), so a resumed
    run continues the exact stream and the data do not depend on the process layout. TFDS: each
    process reads its own shard (``tfds.split_for_jax_process``), shuffled after decoding; a resume
    reseeds the stream with the start step (deterministic, but not the uninterrupted stream).
    """
    import tensorflow as tf

    seeds = tf.data.Dataset.random(seed=cfg.seed).batch(2)
    if cfg.source.startswith("tfds:"):
        import tensorflow_datasets as tfds

        name = cfg.source[len("tfds:") :]
        split = tfds.split_for_jax_process(cfg.split, process_index=process_index,
                                           process_count=process_count)  # fmt: skip
        seed = cfg.seed + 7919 * process_index + 104729 * start_step
        ds = tfds.load(name, split=split, data_dir=cfg.data_dir, shuffle_files=True,
                       read_config=tfds.ReadConfig(shuffle_seed=seed))  # fmt: skip
        key = TFDS_IMAGE_KEY.get(name.split("/")[0], "image")
        ds = ds.map(lambda ex: ex[key], num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.repeat().shuffle(cfg.shuffle_buffer, seed=seed)
        return tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))
    folder = SAMPLES if cfg.source == "samples" else cfg.source[len("folder:") :]
    if cfg.source != "samples" and not cfg.source.startswith("folder:"):
        raise ValueError(
            f"unknown data source {cfg.source!r}: use 'tfds:NAME', 'folder:PATH' or 'samples'"
        )
    held = set(cfg.holdout)
    files = [f for f in list_images(folder) if Path(f).name not in held and _header_ok(f)]
    if not files:
        raise FileNotFoundError(f"no readable images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    paths = tf.data.Dataset.from_tensor_slices(files)
    paths = paths.shuffle(len(files), seed=cfg.seed, reshuffle_each_iteration=True).repeat()
    ds = tf.data.Dataset.zip((paths, seeds)).skip(start_step * cfg.global_batch_size)
    ds = _process_slice(ds, cfg.global_batch_size, process_index, process_count)

    def decode(path, seed):
        image = tf.numpy_function(_load_rgb, [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, 3]), seed

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.filter(lambda im, _: tf.size(im) > 0)


def crop_pair(image, cfg: DataConfig, seed):
    """Random HR crop at even offsets (resizing up images smaller than the crop), optional flip,
    and the LR image by TF bicubic antialiased downscale. Returns float32 in [0, 1] (LR unclipped,
    as the reference's pipeline makes it)."""
    import tensorflow as tf

    crop, scale = cfg.crop_size, cfg.lr_scale
    image = tf.image.convert_image_dtype(image, tf.float32)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    small = tf.minimum(h, w)

    def grow():
        factor = tf.cast(crop, tf.float32) / tf.cast(small, tf.float32)
        size = tf.cast(tf.math.ceil(tf.cast(tf.stack([h, w]), tf.float32) * factor), tf.int32)
        return tf.clip_by_value(tf.image.resize(image, tf.maximum(size, crop), "bicubic",
                                                antialias=True), 0.0, 1.0)  # fmt: skip

    image = tf.cond(small < crop, grow, lambda: image)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    # Even offsets (REFERENCE 11.38), so the LR crop is aligned with the LR grid.
    top = 2 * tf.random.stateless_uniform([], seeds[0], 0, (h - crop) // 2 + 1, tf.int32)
    left = 2 * tf.random.stateless_uniform([], seeds[1], 0, (w - crop) // 2 + 1, tf.int32)
    hr = image[top : top + crop, left : left + crop]
    if cfg.flip:
        hr = tf.cond(tf.random.stateless_uniform([], seeds[2]) < 0.5,
                     lambda: tf.reverse(hr, [1]), lambda: hr)  # fmt: skip
    hr = tf.ensure_shape(hr, [crop, crop, 3])
    out = {"image_hr": hr}
    if scale > 1:
        out["image_lr"] = tf.image.resize(hr, (crop // scale, crop // scale), "bicubic", antialias=True)
    return out


def crop_dataset(cfg: DataConfig, process_index: int = 0, process_count: int = 1, start_step: int = 0):
    """``image_dataset`` -> per-example {'image_hr', 'image_lr'} float32, deterministic per seed."""
    import tensorflow as tf

    ds = image_dataset(cfg, process_index, process_count, start_step)
    return ds.map(lambda im, s: crop_pair(im, cfg, s), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)  # fmt: skip


def _layout(cfg: DataConfig, num_devices, process_index, process_count) -> tuple[int, int, int, int]:
    import jax

    num_devices = num_devices or jax.local_device_count()
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if cfg.global_batch_size % (process_count * num_devices):
        raise ValueError(
            f"global batch {cfg.global_batch_size} is not divisible by "
            f"{process_count} processes x {num_devices} devices"
        )
    return num_devices, process_index, process_count, cfg.global_batch_size // process_count


def example_rng(seed: int, stream: int, step: int, index: int) -> np.random.Generator:
    """The host-side generator of one example (global ``index`` in its step): the same draws
    whatever the process layout, and a resumed run redraws exactly what it would have drawn."""
    return np.random.default_rng([seed, stream, step, index])


def host_batches(
    cfg: DataConfig,
    mask_sampler: MaskSampler | None = None,
    *,
    start_step: int = 0,
    num_devices: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless host batches for this process, shaped ``[num_devices, per_device, ...]``.

    Keys: 'image_hr' [D, P, S, S, 3]; with ``lr_scale > 1`` 'image_lr' [D, P, S/s, S/s, 3]; with a
    ``mask_sampler`` 'mask' at the LR (else HR) size and, with an LR image, 'mask_hr' (its nearest
    x s upscale, REFERENCE 8.3). Each example's mask comes from ``example_rng(seed, 0, step,
    global index)``, so masks do not depend on the process layout and a resumed run draws the same.
    """
    num_devices, process_index, process_count, per_process = _layout(
        cfg, num_devices, process_index, process_count
    )
    per_device = per_process // num_devices
    ds = crop_dataset(cfg, process_index, process_count, start_step)
    ds = ds.batch(per_process, drop_remainder=True).prefetch(2)
    step = start_step
    for batch in ds.as_numpy_iterator():
        out = {k: v.reshape(num_devices, per_device, *v.shape[1:]) for k, v in batch.items()}
        if mask_sampler is not None:
            ref = out.get("image_lr", out["image_hr"])
            first = step * cfg.global_batch_size + process_index * per_process
            h, w = ref.shape[2:4]
            rngs = [example_rng(cfg.seed, 0, step, first + i) for i in range(per_process)]
            masks = np.concatenate([mask_sampler(step, 1, h, w, rng) for rng in rngs])
            out["mask"] = masks.reshape(num_devices, per_device, *masks.shape[1:])
            if "image_lr" in out:
                s = cfg.lr_scale
                out["mask_hr"] = np.repeat(np.repeat(out["mask"], s, axis=2), s, axis=3)
        yield out
        step += 1


def prefetch_to_device(batches: Iterator[dict], size: int = 2, devices: Sequence | None = None):
    """Puts host batches on the local devices ahead of time (``flax.jax_utils.prefetch_to_device``),
    sharded over the ``pmap`` axis name used for the train states."""
    from flax import jax_utils

    from hrinpaint_jax.parallel import AXIS

    return jax_utils.prefetch_to_device(batches, size, devices, axis_name=AXIS)


# ------------------------------------------------------------------------------------------------
# Seed-000 refinement patches (REFERENCE.md 9.2)


def valid_patch_corners(hole: np.ndarray, size: int, min_hole: float, max_hole: float) -> np.ndarray:
    """[N, 2] (top, left) of every ``size`` x ``size`` window of ``hole`` ([H, W], 1 = hole) whose hole
    fraction lies in ``[min_hole, max_hole]`` -- all windows at once from a summed-area table."""
    h, w = hole.shape
    if h < size or w < size:
        raise ValueError(f"image {h}x{w} is smaller than the {size} patch")
    sat = np.zeros((h + 1, w + 1), np.int64)
    sat[1:, 1:] = np.cumsum(np.cumsum(hole > 0.5, axis=0), axis=1)
    counts = sat[size:, size:] - sat[:-size, size:] - sat[size:, :-size] + sat[:-size, :-size]
    frac = counts / float(size * size)
    return np.argwhere((frac >= min_hole) & (frac <= max_hole))


STAGE1_PARTS = ("image", "mask", "stage1")  # NAME.image.png, NAME.mask.png, NAME.stage1.png


def stage1_examples(directory: str | os.PathLike) -> list[tuple[str, str, str]]:
    """The (image, mask, stage1) PNG triplets of a precomputed stage-1 folder, sorted by name."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"stage-1 folder not found: {root}")
    names = sorted(p.name[: -len(".image.png")] for p in root.glob("*.image.png"))
    missing = [f"{n}.{part}.png" for n in names for part in STAGE1_PARTS[1:]
               if not (root / f"{n}.{part}.png").is_file()]  # fmt: skip
    if missing:
        raise FileNotFoundError(f"stage-1 folder {root} lacks {', '.join(missing[:3])}")
    if not names:
        raise FileNotFoundError(f"no *.image.png in stage-1 folder {root}")
    return [tuple(str(root / f"{n}.{part}.png") for part in STAGE1_PARTS) for n in names]


def _stage1_host_batches(directory, cfg: DataConfig, *, start_step, num_devices, process_index,
                         process_count):  # fmt: skip
    """Endless batches {'image_hr', 'mask', 'stage1'} [D, P, S, S, C] of a precomputed folder, from
    one global stream sliced per process (as ``image_dataset`` does for folders)."""
    import tensorflow as tf

    num_devices, process_index, process_count, per_process = _layout(
        cfg, num_devices, process_index, process_count
    )
    triplets = stage1_examples(directory)

    def load(paths, seed):
        image, mask, stage1 = (tf.image.convert_image_dtype(tf.io.decode_png(tf.io.read_file(paths[i]),
                               channels=c), tf.float32) for i, c in enumerate((3, 1, 3)))  # fmt: skip
        mask = tf.cast(mask > 0.5, tf.float32)
        if cfg.flip:
            flip = tf.random.stateless_uniform([], seed) < 0.5
            image, mask, stage1 = (tf.cond(flip, lambda x=x: tf.reverse(x, [1]), lambda x=x: x)
                                   for x in (image, mask, stage1))  # fmt: skip
        return {"image_hr": image, "mask": mask, "stage1": stage1}

    ds = tf.data.Dataset.from_tensor_slices(np.array(triplets))
    ds = ds.shuffle(len(triplets), seed=cfg.seed, reshuffle_each_iteration=True).repeat()
    seeds = tf.data.Dataset.random(seed=cfg.seed).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).skip(start_step * cfg.global_batch_size)
    ds = _process_slice(ds, cfg.global_batch_size, process_index, process_count)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(per_process, drop_remainder=True).prefetch(2)
    for batch in ds.as_numpy_iterator():
        yield {k: v.reshape(num_devices, -1, *v.shape[1:]) for k, v in batch.items()}


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
    a sampler, the mask is redrawn when none does), and the 20 channels are built on the device
    from the whole square's shifts (``pipelines.two_stage.refinement_patches``), so nothing of size
    20 x S^2 crosses the host.

    Yields 'image_hr', 'mask' (and 'stage1') [D, P, S, S, C] plus 'patch_top', 'patch_left'
    [D, P] int32. Deterministic given the seed and the step; ``start_step`` resumes the stream.
    """
    if stage1_dir is None and mask_sampler is None:
        raise ValueError("refinement batches need a mask_sampler or a precomputed stage1_dir")
    if cfg.lr_scale != 1:
        raise ValueError("refinement batches need DataConfig.lr_scale = 1 (no LR image)")
    if cfg.crop_size < patch_size:
        raise ValueError(f"crop_size {cfg.crop_size} is smaller than patch_size {patch_size}")
    where = dict(start_step=start_step, num_devices=num_devices, process_index=process_index,
                 process_count=process_count)  # fmt: skip
    if stage1_dir is None:
        batches = host_batches(cfg, mask_sampler, **where)
    else:
        batches = _stage1_host_batches(stage1_dir, cfg, **where)
    _, index, count, per_process = _layout(cfg, num_devices, process_index, process_count)
    lo, hi = hole_range
    for step, batch in enumerate(batches, start_step):
        masks = batch["mask"].reshape(-1, *batch["mask"].shape[2:])
        first = step * cfg.global_batch_size + index * per_process
        corners = np.empty((masks.shape[0], 2), np.int32)
        for i in range(masks.shape[0]):
            rng = example_rng(cfg.seed, 1, step, first + i)
            for _ in range(max_redraws + 1):
                valid = valid_patch_corners(masks[i, ..., 0], patch_size, lo, hi)
                if len(valid):
                    corners[i] = valid[rng.integers(len(valid))]
                    break
                if stage1_dir is not None:
                    raise RuntimeError(f"a precomputed mask in {stage1_dir} has no {patch_size} "
                                       f"window with hole fraction in [{lo}, {hi}]")  # fmt: skip
                masks[i] = mask_sampler(step, 1, *masks.shape[1:3], rng)[0]
            else:
                raise RuntimeError(
                    f"no {patch_size} window with hole fraction in [{lo}, {hi}] after "
                    f"{max_redraws} mask redraws: check the mask sampler"
                )
        lead = batch["mask"].shape[:2]
        batch["mask"] = masks.reshape(batch["mask"].shape)
        batch["patch_top"] = corners[:, 0].reshape(lead)
        batch["patch_left"] = corners[:, 1].reshape(lead)
        yield batch


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

    from hrinpaint_jax.checkpoints import load_pretrained
    from hrinpaint_jax.image_io import save_png
    from hrinpaint_jax.pipelines.two_stage import training_stage1

    dfnet, variables, _ = load_pretrained(dfnet_dir)
    stage1 = jax.jit(lambda v, im, m: training_stage1(dfnet, v, im, m, faithful=faithful))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    one = dataclasses.replace(cfg, global_batch_size=1)
    batches = refinement_batches(one, mask_sampler, patch_size=patch_size, hole_range=hole_range,
                                 num_devices=1, process_index=0, process_count=1)  # fmt: skip
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
