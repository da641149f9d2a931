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


def image_dataset(cfg: DataConfig, process_index: int = 0, process_count: int = 1):
    """An endless, shuffled ``tf.data.Dataset`` of uint8 [H, W, 3] images for this process."""
    import tensorflow as tf

    if cfg.source.startswith("tfds:"):
        import tensorflow_datasets as tfds

        name = cfg.source[len("tfds:") :]
        split = tfds.split_for_jax_process(cfg.split, process_index=process_index,
                                           process_count=process_count)  # fmt: skip
        ds = tfds.load(name, split=split, data_dir=cfg.data_dir, shuffle_files=True,
                       read_config=tfds.ReadConfig(shuffle_seed=cfg.seed))  # fmt: skip
        key = TFDS_IMAGE_KEY.get(name.split("/")[0], "image")
        ds = ds.map(lambda ex: ex[key], num_parallel_calls=tf.data.AUTOTUNE)
    else:
        folder = SAMPLES if cfg.source == "samples" else cfg.source[len("folder:") :]
        files = list_images(folder)[process_index::process_count]
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=cfg.seed)
        ds = ds.map(
            lambda p: tf.numpy_function(_load_rgb, [p], tf.uint8, stateful=False),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        ds = ds.map(lambda im: tf.ensure_shape(im, [None, None, 3]))
        ds = ds.filter(lambda im: tf.size(im) > 0)
    return ds.repeat().shuffle(cfg.shuffle_buffer, seed=cfg.seed + process_index)


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


def crop_dataset(cfg: DataConfig, process_index: int = 0, process_count: int = 1):
    """``image_dataset`` -> per-example {'image_hr', 'image_lr'} float32, deterministic per seed."""
    import tensorflow as tf

    ds = image_dataset(cfg, process_index, process_count)
    seeds = tf.data.Dataset.random(seed=cfg.seed + 7919 * process_index).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds))
    return ds.map(lambda im, s: crop_pair(im, cfg, s), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)  # fmt: skip


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
    x s upscale, REFERENCE 8.3). Masks are drawn for ``step = start_step, start_step + 1, ...`` from
    a generator seeded by (seed, process, step), so a resumed run draws the same masks.
    """
    import jax

    num_devices = num_devices or jax.local_device_count()
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    per_process = cfg.global_batch_size // process_count
    if cfg.global_batch_size % (process_count * num_devices):
        raise ValueError(
            f"global batch {cfg.global_batch_size} is not divisible by "
            f"{process_count} processes x {num_devices} devices"
        )
    per_device = per_process // num_devices
    ds = crop_dataset(cfg, process_index, process_count).batch(per_process, drop_remainder=True)
    ds = ds.prefetch(2)
    step = start_step
    for batch in ds.as_numpy_iterator():
        out = {k: v.reshape(num_devices, per_device, *v.shape[1:]) for k, v in batch.items()}
        if mask_sampler is not None:
            rng = np.random.default_rng([cfg.seed, process_index, step])
            ref = out.get("image_lr", out["image_hr"])
            masks = mask_sampler(step, per_process, ref.shape[2], ref.shape[3], rng)
            out["mask"] = masks.reshape(num_devices, per_device, *masks.shape[1:])
            if "image_lr" in out:
                s = cfg.lr_scale
                out["mask_hr"] = np.repeat(np.repeat(out["mask"], s, axis=2), s, axis=3)
        yield out
        step += 1


def prefetch_to_device(batches: Iterator[dict], size: int = 2, devices: Sequence | None = None):
    """Puts host batches on the local devices ahead of time (``flax.jax_utils.prefetch_to_device``)."""
    from flax import jax_utils

    return jax_utils.prefetch_to_device(batches, size, devices)
