"""Throughput of the training input pipeline (``hrinpaint_jax.input_pipeline.host_batches``).

Decodes the photos of a folder (default: ``../shared/data``, recursive; PNGs of 512 x 512 to
2K), crops, flips, makes the LR image (TF bicubic antialias) and attaches masks drawn on the host,
then reports batches/s and images/s after a warm-up, for each crop size. Masks: ``--masks stroke``
(the Zoom-to-Inpaint small/large generator, if present in ``hrinpaint_jax.masks``) or ``rect``
(one random rectangle, nearly free), to separate decoding from mask drawing.

    python benchmarks/input_pipeline.py --crops 256 512 --batch 8 --batches 30
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def rect_masks(step, batch, height, width, rng):
    out = np.zeros((batch, height, width, 1), np.float32)
    for i in range(batch):
        h, w = rng.integers(height // 8, height // 2), rng.integers(width // 8, width // 2)
        t, left = rng.integers(0, height - h), rng.integers(0, width - w)
        out[i, t : t + h, left : left + w] = 1.0
    return out


def stroke_masks(step, batch, height, width, rng):
    from hrinpaint_jax import masks

    return np.stack(
        [masks.random_stroke_mask(height, width, "large", rng=rng) for _ in range(batch)]
    )[..., None]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default=os.path.join(os.path.dirname(REPO), "shared", "data"))
    p.add_argument("--crops", type=int, nargs="+", default=[256, 512])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--masks", choices=["rect", "stroke"], default="rect")
    args = p.parse_args()

    from hrinpaint_jax.input_pipeline import DataConfig, host_batches, list_images

    n_files = len(list_images(args.folder))
    sampler = rect_masks if args.masks == "rect" else stroke_masks
    print(f"{n_files} images in {args.folder}; batch {args.batch}; masks {args.masks}; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print("| crop | batches/s | images/s |\n|---:|---:|---:|")
    for crop in args.crops:
        cfg = DataConfig(source=f"folder:{args.folder}", crop_size=crop,
                         global_batch_size=args.batch, shuffle_buffer=64)  # fmt: skip
        it = host_batches(cfg, sampler, num_devices=1, process_index=0, process_count=1)
        for _ in range(3):  # warm-up: fills the shuffle buffer
            next(it)
        start = time.perf_counter()
        for _ in range(args.batches):
            next(it)
        rate = args.batches / (time.perf_counter() - start)
        print(f"| {crop} | {rate:.2f} | {rate * args.batch:.1f} |")


if __name__ == "__main__":
    main()
