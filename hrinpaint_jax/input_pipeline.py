"""Training input: images from a folder, the bundled samples or TFDS -> random HR crops with hole
masks, as host batches shaped ``[local_devices, per_device, H, W, C]``. No TensorFlow needed.

No LR image on the host: the Zoom-to-Inpaint stages make ``image_lr`` on the device inside the
train step (the TF bicubic *antialiased* downscale of 'image_hr', REFERENCE.md 9.3 and 11 item 38;
tfds' own DIV2K LR images are not used). The HR crop sits at **even** offsets, so the LR image is
aligned with the LR grid of the whole picture. Images smaller than the crop are first resized up
(OpenCV bicubic, ``cv2.INTER_CUBIC``, aspect kept, shorter side = crop, clipped to [0, 1]).

NumPy / PIL / OpenCV only: each example (decode, crop, flip, mask, refinement patch corner) is one
task of a thread pool (``DataConfig.workers``; PIL decoding, OpenCV and large NumPy copies release
the GIL), mapped in order with a bounded look-ahead, so batches do not depend on the number of
workers. Determinism:

* folder / samples: one *global* stream of files -- a fresh permutation per epoch
  (``np.random.default_rng([seed, epoch])``); element i belongs to global step
  ``i // global_batch_size`` -- of which each process keeps its slice (element i goes to process
  ``(i % global_batch) // per_process``), so the data do not depend on the process layout;
* every random draw of an example comes from ``example_rng(seed, stream, step, global index)``:
  stream 0 the mask, 1 the refinement patch corner, 2 the crop offsets and flip;
* ``start_step`` resumes by arithmetic (nothing skipped is read or decoded): a resumed stream equals
  the uninterrupted one;
* unreadable files: the header check up front drops them (with a warning); a file that fails
  later, while decoding, is replaced by the next file of the epoch's permutation (warning once).

'tfds:' sources use TensorFlow / TFDS only as the reader of the encoded images (imported lazily,
per process shard, ``tfds.split_for_jax_process``, seeded shuffle); decoding and cropping are the
same NumPy code. A resume reseeds the TFDS shuffle with the start step (deterministic, but not the
uninterrupted stream).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import io
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from hrinpaint_jax.image_io import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parent / "assets" / "samples"
# Image feature of the TFDS datasets we know (others: 'image').
TFDS_IMAGE_KEY = {"div2k": "hr"}

# mask_sampler(step, batch, height, width, rng) -> float32 [batch, height, width, 1], 1 = hole.
MaskSampler = Callable[[int, int, int, int, np.random.Generator], np.ndarray]
# The ``example_rng`` streams of one example.
MASK_STREAM, CORNER_STREAM, CROP_STREAM = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where images come from and how batches are shaped.

    Attributes:
      source: 'tfds:NAME' (e.g. 'tfds:div2k', 'tfds:places365_small'), 'folder:PATH' (recursive) or
        'samples' (the bundled photos).
      split: TFDS split.
      data_dir: TFDS data_dir (None: TFDS default).
      crop_size: HR crop side (the networks' training size).
      lr_scale: the train step's LR image is HR / lr_scale (1: none); masks are drawn at LR size.
      global_batch_size: images per step over all processes and devices.
      seed: shuffling / cropping seed.
      shuffle_buffer: encoded images kept for shuffling a TFDS source.
      flip: random horizontal flips.
      holdout: file names (no folders) left out of folder / samples sources (validation photos).
      workers: threads that decode, crop and draw masks (0: ``os.cpu_count()``); the batches do not
        depend on it.
      cache_mb: decoded images of a folder / samples source kept in memory, MiB per process (0:
        decode every time). Decoding dominates an example's cost (10 of 12 ms for a 1024-px JPEG
        and a 256 crop, ``benchmarks/input_pipeline.py --profile``); once the budget is full the
        remaining files are decoded on each use. The batches do not depend on it.
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
    workers: int = 0
    cache_mb: int = 1024


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder`` (recursive, sorted, common suffixes, case-insensitive)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def example_rng(seed: int, stream: int, step: int, index: int) -> np.random.Generator:
    """The host-side generator of one example (global ``index`` in its step): the same draws
    whatever the process layout, and a resumed run redraws exactly what it would have drawn."""
    return np.random.default_rng([seed, stream, step, index])


def _num_workers(cfg: DataConfig) -> int:
    return cfg.workers if cfg.workers > 0 else os.cpu_count() or 1


# ------------------------------------------------------------------------------------------------
# Decoding


def _header_ok(path: str) -> bool:
    """Cheap up-front check (the header only) so that unreadable files leave the stream before it
    is cut into batches; a file that fails later, while decoding, is replaced (``_FileStream``)."""
    from PIL import Image

    try:
        with Image.open(path):
            return True
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad files
        logger.warning("skipping unreadable training image %s: %s", path, e)
        return False


def _decode_encoded(data: Any) -> np.ndarray:
    """uint8 [H, W, 3] RGB of an encoded image (bytes, EXIF orientation applied) or of an already
    decoded [H, W, C] array (a TFDS feature that cannot skip decoding)."""
    if not isinstance(data, bytes | bytearray):
        image = np.asarray(data, np.uint8)
        image = image[..., None] if image.ndim == 2 else image
        return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        im = ImageOps.exif_transpose(im)
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


class _FileStream:
    """The global file stream of a folder source: element ``i`` is file ``perm[i % n]`` of epoch
    ``i // n``'s permutation. ``load`` decodes it; if that fails it takes the next file of the
    permutation (a deterministic rule, whatever the worker that meets the bad file first).

    Decoded images are kept (read-only) while they fit in ``cache_bytes``; the first files to be
    decoded fill it and stay, the rest are decoded each time (with a fresh random order each epoch
    an eviction policy would not hit more often)."""

    def __init__(self, files: Sequence[str], seed: int, cache_bytes: int = 0):
        self.files, self.seed = list(files), seed
        self._perms: dict[int, np.ndarray] = {}
        self._bad: set[str] = set()
        self._lock = threading.Lock()
        self._cache: dict[str, np.ndarray] = {}
        self._cache_left = int(cache_bytes)

    def permutation(self, epoch: int) -> np.ndarray:
        perm = self._perms.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.files))
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = perm
        return perm

    def loader(self, index: int) -> Callable[[], np.ndarray]:
        epoch, position = divmod(index, len(self.files))
        return functools.partial(self.load, self.permutation(epoch), position)

    def load(self, perm: np.ndarray, position: int) -> np.ndarray:
        from PIL import Image

        from hrinpaint_jax.image_io import read_image

        n = len(self.files)
        for k in range(n):
            path = self.files[perm[(position + k) % n]]
            if path in self._bad:
                continue
            cached = self._cache.get(path)
            if cached is not None:
                return cached
            try:
                return self._keep(path, read_image(path).rgb8)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                with self._lock:
                    if path not in self._bad:
                        self._bad.add(path)
                        logger.warning("skipping unreadable training image %s: %s", path, e)
        raise RuntimeError("no training image of the folder could be decoded")

    def _keep(self, path: str, image: np.ndarray) -> np.ndarray:
        if image.nbytes <= self._cache_left:
            with self._lock:
                if path not in self._cache and image.nbytes <= self._cache_left:
                    image.flags.writeable = False  # shared by every later use: crops copy
                    self._cache[path] = image
                    self._cache_left -= image.nbytes
        return image


def global_positions(global_batch: int, per_process: int, process_index: int, start_step: int):
    """(step, global index) of this process's elements of the global stream, from ``start_step``:
    element i goes to process ``(i % global_batch) // per_process``."""
    for step in itertools.count(start_step):
        first = step * global_batch + process_index * per_process
        for i in range(first, first + per_process):
            yield step, i


def _folder_files(cfg: DataConfig) -> list[str]:
    if cfg.source != "samples" and not cfg.source.startswith("folder:"):
        raise ValueError(
            f"unknown data source {cfg.source!r}: use 'tfds:NAME', 'folder:PATH' or 'samples'"
        )
    folder = SAMPLES if cfg.source == "samples" else cfg.source[len("folder:") :]
    held = set(cfg.holdout)
    files = [f for f in list_images(folder) if Path(f).name not in held]
    with ThreadPoolExecutor(min(_num_workers(cfg), 16)) as pool:
        ok = list(pool.map(_header_ok, files))
    files = [f for f, good in zip(files, ok, strict=True) if good]
    if not files:
        raise FileNotFoundError(f"no readable images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def _tfds_loaders(cfg: DataConfig, process_index: int, process_count: int, start_step: int):
    """Endless encoded images of this process's TFDS shard (seeded file and buffer shuffles)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:  # TF only reads files here: keep it off the accelerators
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):
        pass
    name = cfg.source[len("tfds:") :]
    key = TFDS_IMAGE_KEY.get(name.split("/")[0], "image")
    try:  # leave every image feature encoded (e.g. DIV2K's unused 'lr'); decoded in the workers
        features = tfds.builder(name, data_dir=cfg.data_dir).info.features
        skip = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    except Exception:  # noqa: BLE001 - an unknown builder: tfds.load reports it below
        skip = []
    decoders = {k: tfds.decode.SkipDecoding() for k in {key, *skip}}
    split = tfds.split_for_jax_process(
        cfg.split, process_index=process_index, process_count=process_count
    )
    seed = cfg.seed + 7919 * process_index + 104729 * start_step
    ds = tfds.load(
        name,
        split=split,
        data_dir=cfg.data_dir,
        shuffle_files=True,
        decoders=decoders,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    ds = ds.map(lambda ex: ex[key]).repeat().shuffle(cfg.shuffle_buffer, seed=seed)
    for data in ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
        yield functools.partial(_decode_encoded, data)


def image_items(cfg: DataConfig, process_index: int, process_count: int, start_step: int):
    """This process's (step, global index, loader) from ``start_step`` on; ``loader()`` returns the
    uint8 [H, W, 3] image (run in a worker)."""
    per_process = cfg.global_batch_size // process_count
    positions = global_positions(cfg.global_batch_size, per_process, process_index, start_step)
    if cfg.source.startswith("tfds:"):
        loaders = _tfds_loaders(cfg, process_index, process_count, start_step)
        return ((step, i, load) for (step, i), load in zip(positions, loaders, strict=False))
    stream = _FileStream(_folder_files(cfg), cfg.seed, cfg.cache_mb * 2**20)
    return ((step, i, stream.loader(i)) for step, i in positions)


# ------------------------------------------------------------------------------------------------
# Parallel ordered map


def _ordered_map(fn: Callable, items: Iterable, workers: int, ahead: int) -> Iterator:
    """``map(fn, items)`` on a pool of ``workers`` threads, in order, at most ``ahead`` items in
    flight. Closing the iterator cancels what has not started."""
    pool = ThreadPoolExecutor(max(workers, 1), thread_name_prefix="input_pipeline")
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class _Slots:
    """One host batch filled in place by the workers (no stacking in the main thread)."""

    def __init__(self, size: int):
        self.size, self.arrays = size, {}
        self._lock = threading.Lock()

    def put(self, j: int, example: dict[str, np.ndarray]) -> None:
        for key, value in example.items():
            value = np.asarray(value)
            array = self.arrays.get(key)
            if array is None:
                with self._lock:
                    array = self.arrays.get(key)
                    if array is None:
                        array = self.arrays[key] = np.empty((self.size, *value.shape), value.dtype)
            array[j] = value


def assemble_batches(
    cfg: DataConfig, items: Iterator, example_fn: Callable, num_devices: int, per_process: int
) -> Iterator[dict[str, np.ndarray]]:
    """Host batches [num_devices, per_device, ...] of ``example_fn(step, index, load)`` dicts."""

    def tagged():
        for group in iter(lambda: list(itertools.islice(items, per_process)), []):
            slots = _Slots(per_process)
            yield from ((slots, j, *item) for j, item in enumerate(group))

    def run(task):
        slots, j, step, index, load = task
        slots.put(j, example_fn(step, index, load))
        return slots, j

    workers = _num_workers(cfg)
    ahead = max(3 * per_process, 2 * workers)
    for slots, j in _ordered_map(run, tagged(), workers, ahead):
        if j == per_process - 1:  # every earlier example of the batch is done (in order)
            yield {k: v.reshape(num_devices, -1, *v.shape[1:]) for k, v in slots.arrays.items()}


# ------------------------------------------------------------------------------------------------
# Examples


def image_dataset(
    cfg: DataConfig, process_index: int = 0, process_count: int = 1, start_step: int = 0
) -> Iterator[tuple[np.ndarray, np.random.Generator]]:
    """This process's endless stream of (uint8 [H, W, 3] image, its crop rng), decoded by the
    worker pool, in stream order (see the module docstring: global stream, per-process slice,
    ``start_step`` skips whole steps without decoding them)."""
    items = image_items(cfg, process_index, process_count, start_step)

    def run(item):
        step, index, load = item
        return load(), example_rng(cfg.seed, CROP_STREAM, step, index)

    workers = _num_workers(cfg)
    return _ordered_map(run, items, workers, 2 * workers)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1] (as ``tf.image.convert_image_dtype``: times 1 / 255)."""
    return np.multiply(image, np.float32(1.0 / 255.0), dtype=np.float32)


def crop_pair(image: np.ndarray, cfg: DataConfig, rng) -> dict[str, np.ndarray]:
    """{'image_hr': float32 [S, S, 3] in [0, 1]}: a random ``cfg.crop_size`` crop of the uint8 [H, W, 3]
    ``image`` at even offsets, flipped left-right with probability 1/2 if ``cfg.flip``. Images whose
    shorter side is below the crop are first resized up (``cv2.INTER_CUBIC``, aspect kept, shorter
    side = crop). ``rng``: a ``np.random.Generator`` (or a seed for one): draws top, left, flip."""
    import cv2

    rng = np.random.default_rng(rng)
    crop = cfg.crop_size
    h, w = image.shape[:2]
    grown = min(h, w) < crop
    if grown:
        short = min(h, w)
        size_h, size_w = (max(-(-n * crop // short), crop) for n in (h, w))
        image = cv2.resize(to_float(image), (size_w, size_h), interpolation=cv2.INTER_CUBIC)
        np.clip(image, 0.0, 1.0, out=image)
        h, w = size_h, size_w
    # Even offsets (REFERENCE 11.38), so the LR crop is aligned with the LR grid.
    top = 2 * int(rng.integers(0, (h - crop) // 2 + 1))
    left = 2 * int(rng.integers(0, (w - crop) // 2 + 1))
    hr = image[top : top + crop, left : left + crop]
    if cfg.flip and rng.random() < 0.5:
        hr = hr[:, ::-1]
    return {"image_hr": np.ascontiguousarray(hr) if grown else to_float(hr)}


def image_example(
    cfg: DataConfig,
    mask_sampler: MaskSampler | None,
    step: int,
    index: int,
    load: Callable[[], np.ndarray],
) -> dict[str, np.ndarray]:
    out = crop_pair(load(), cfg, example_rng(cfg.seed, CROP_STREAM, step, index))
    if mask_sampler is not None:
        s = cfg.lr_scale
        m = cfg.crop_size // s
        mask = np.asarray(mask_sampler(step, 1, m, m, example_rng(cfg.seed, MASK_STREAM, step, index)))
        out["mask"] = mask[0]
        if s > 1:
            out["mask_hr"] = np.repeat(np.repeat(mask[0], s, axis=0), s, axis=1)
    return out


def batch_layout(
    cfg: DataConfig, num_devices, process_index, process_count
) -> tuple[int, int, int, int]:
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

    Keys: 'image_hr' float32 [D, P, S, S, 3] in [0, 1]; with a ``mask_sampler`` 'mask' float32
    [D, P, S/s, S/s, 1] (s = ``lr_scale``: the LR size) and, if s > 1, 'mask_hr' [D, P, S, S, 1]
    (its nearest x s upscale, REFERENCE 8.3). No 'image_lr': the train step makes it on the
    device. Each example's mask comes from ``example_rng(seed, 0, step, global index)``, so masks
    do not depend on the process layout and a resumed run draws the same.
    """
    num_devices, process_index, process_count, per_process = batch_layout(
        cfg, num_devices, process_index, process_count
    )
    items = image_items(cfg, process_index, process_count, start_step)
    example = functools.partial(image_example, cfg, mask_sampler)
    yield from assemble_batches(cfg, items, example, num_devices, per_process)
