"""The evaluation's test data: held-out photos (the bundled samples, a folder or a TFDS split), their
masters and the test masks at each resolution.

Every image is centre-cropped to a square and resized (TF bicubic, antialiased) to the *master*
side ``data.size``, then quantised to uint8 as a test PNG would be. The images at each evaluation
resolution are made from the master by nearest-neighbour (OpenCV rule, seed-000 REFERENCE.md 10.3)
or bicubic downsampling. Masks per image, resolution and kind: ``'centre'`` (seed-000: a centred
square a third of the side), ``'small'`` / ``'large'`` (ZTI validation strokes drawn with the
reference's seeded generator, seed ``config.seed + image index``) or ``'folder'`` (the mask folder,
binarised, cropped like the image and resampled by nearest neighbour).

Images are listed cheaply (``list_sources``: names and loaders) and loaded by index
(``load_images(..., indices=)``), so that each process of a multi-host evaluation reads only its
share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from hrinpaint_jax.image_io import IMAGE_SUFFIXES, InputError, binarise_mask, read_image, read_mask
from hrinpaint_jax.ops.pixels import to_uint8
from hrinpaint_jax.ops.resize import nearest_indices_cv2, resize_bicubic_tf

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
MASK_KINDS = ("centre", "small", "large", "folder")
# (name, loader of the uint8 RGB image, path or None)
Source = tuple[str, Callable[[], np.ndarray], Path | None]


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
    # Not ops.pixels.from_uint8: the recorded results' masters were made with this division (a few
    # values 1 ulp off the IEEE quotient), and the masters must not move.
    x = jnp.asarray(square, jnp.float32)[None] / 255.0
    x = resize_bicubic_tf(x, (size, size), antialias=True)[0]
    return np.asarray(to_uint8(x))


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


def list_sources(data) -> list[Source]:
    """(name, loader of the uint8 RGB image, path or None) for the configured source, in order, the
    first ``data.max_images`` only."""
    sources = _source_images(data)
    return sources[: data.max_images] if data.max_images else sources


def _source_images(data) -> list[Source]:
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


def _tfds_images(name: str, data) -> list[Source]:
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


def load_images(
    data, master_size: int, need_masks: bool, indices: Sequence[int] | None = None
) -> list[EvalImage]:
    """Reads the configured images (and masks), checks them and makes their masters; only those at
    ``indices`` of ``list_sources`` when given (every mask is still checked to exist)."""
    sources = list_sources(data)
    masks = _mask_lookup(data, sources) if need_masks else {}
    images = []
    for index in range(len(sources)) if indices is None else indices:
        name, load, _ = sources[index]
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
