"""Training photos -> a training source and a held-out validation set (``hrinpaint prepare-photos``).

The photographs of ``make photos`` (``tools/debian_photos/get_debian_photos.py``: 192 freely
licensed photos from Debian packages, licence and sha256 per file in ``data/photos_manifest.tsv``;
the first 59 are those the bundled models were trained on) are 0.3 to 10 megapixels.
``prepare_photos`` turns them into

    OUT/holdout/NAME.png        the HOLDOUT photos at full resolution (never trained on)
    OUT/small/NAME@512.png      every other photo, shorter side 512 and 768 (Lanczos): the scale the
    OUT/small/NAME@768.png        512-px networks (DFNet, Zoom-to-Inpaint) see at test time
    OUT/large/NAME@1024.png     ... shorter side 1024 and 1536: whole-photo squares for the
    OUT/large/NAME@1536.png       shift refinement (its stage 1 sees them at 512)

A photo is only ever downscaled (a scale above its own size is skipped). The training configs
(``configs/ours.py``) read random crops of these at every step (``folder:`` sources), so each photo
gives many different crops. Every file is written atomically; a rerun skips files already there.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hrinpaint_jax.image_io import IMAGE_SUFFIXES, InputError, atomic_write, read_image

logger = logging.getLogger(__name__)

# The validation photos: six >= 2160 px photographs of different kinds (architecture, lake and
# mountains, garden, rock peaks, foliage, sky); none of them is ever a training image.
HOLDOUT = (
    "budgie__roman-colosseum.jpg",
    "budgie__lake-sherburne.jpg",
    "budgie__tea-gardens.jpg",
    "enlightenment__Peaks.jpg",
    "enlightenment__Red-Maple.jpg",
    "enlightenment__Sunset-Clouds.jpg",
)
SCALES = {"small": (512, 768), "large": (1024, 1536)}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare-photos",
        help="split photos into a held-out set and downscaled training folders (configs/ours.py)",
    )
    p.add_argument("source", help="folder of photos, e.g. from get_train_photos.sh")
    p.add_argument("out", help="output folder, e.g. data/photos (reruns skip existing files)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    def show(done, total, name):
        print(f"\r[{done}/{total}] {name:<48}", end="", file=sys.stderr, flush=True)

    counts = prepare_photos(args.source, args.out, progress=show)
    print(file=sys.stderr)
    print(", ".join(f"{k}: {v} files" for k, v in counts.items()))
    return 0


def _resized(rgb: np.ndarray, short_side: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    factor = short_side / min(h, w)
    size = (max(short_side, round(w * factor)), max(short_side, round(h * factor)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS))


def _save(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))


def prepare_photos(
    source: str | os.PathLike,
    out: str | os.PathLike,
    holdout: Sequence[str] = HOLDOUT,
    scales: dict[str, Sequence[int]] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, int]:
    """Writes the held-out set and the training folders (see the module docstring).

    Args:
      source: folder of photos (any format ``read_image`` reads; EXIF orientation applied).
      out: output folder (created); files already there are kept.
      holdout: file names (of ``source``) kept for validation at full resolution.
      scales: {subfolder: shorter sides}; default ``SCALES``.
      progress: called as ``progress(done, total, name)`` after each photo.
    Returns:
      The number of files of each subfolder (``holdout`` included).
    Raises:
      InputError: a missing source, a holdout name that is not in it, or no training photo left.
    """
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise InputError(f"photo folder not found: {source}")
    names = sorted(p.name for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    missing = [n for n in holdout if n not in names]
    if missing:
        raise InputError(f"holdout photo {missing[0]} is not in {source}")
    if len(names) <= len(holdout):
        raise InputError(f"{source} has no photo left for training after the {len(holdout)} held out")
    scales = dict(SCALES if scales is None else scales)
    counts = {"holdout": 0, **{k: 0 for k in scales}}
    for done, name in enumerate(names, 1):
        stem = Path(name).stem
        if name in holdout:
            targets = [("holdout", out / "holdout" / f"{stem}.png", None)]
        else:
            targets = [(k, out / k / f"{stem}@{s}.png", s) for k, sides in scales.items() for s in sides]
        todo = [t for t in targets if not t[1].exists()]
        rgb = read_image(source / name).rgb8 if todo else None
        for kind, path, side in targets:
            if side is not None and rgb is not None and side > min(rgb.shape[:2]):
                continue  # never upscale
            if not path.exists():
                _save(path, rgb if side is None else _resized(rgb, side))
            counts[kind] += 1
        if progress is not None:
            progress(done, len(names), name)
    return counts
