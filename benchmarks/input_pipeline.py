"""Throughput of the training input pipeline (``hrinpaint_jax.input_pipeline``), per training stage.

For each stage's data shape (from its config: crop, LR scale, batch, masks from
``tasks.mask_sampler(config.masks)``; shift_refine also searches the 512 patch corner), prints a
Markdown table of examples/s at 1 worker thread and at N (``--workers``, default 1 and
``os.cpu_count()``), from the photos of ``--folder`` (default: the bundled samples; recursive).
``--profile`` adds the single-thread cost of each part of an example (decode, crop + float, mask,
corner search), to see what would scale with more cores.

    python benchmarks/input_pipeline.py --folder /data/div2k/train --batches 5
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# stage name -> config module
STAGES = {
    "dfnet": "dfnet",
    "shift_refine": "shift_refine",
    "zoom_pretrain_coarse": "zoom_pretrain_coarse",
    "zoom_joint_small": "zoom_joint_small",
    "zoom_joint_large": "zoom_joint_large",
}


def stage_stream(stage: str, folder: str, workers: int):
    """(host batch iterator, DataConfig, masks kind) of ``stage`` reading ``folder``."""
    from hrinpaint_jax import input_pipeline, refinement_data, tasks

    config = importlib.import_module(f"configs.{STAGES[stage]}").get_config()
    sampler = tasks.mask_sampler(config.masks)
    layout = dict(num_devices=1, process_index=0, process_count=1)
    if config.task == "shift_refine":
        cfg = tasks.data_config(config, source=f"folder:{folder}", lr_scale=1, workers=workers)
        r, refine = config.refine, refinement_data.refinement_batches
        it = refine(cfg, sampler, patch_size=r.patch_size, hole_range=(r.hole_min, r.hole_max),
                    **layout)  # fmt: skip
        return it, cfg, f"{config.masks.kind} + corners"
    cfg = tasks.data_config(config, source=f"folder:{folder}", workers=workers)
    return input_pipeline.host_batches(cfg, sampler, **layout), cfg, config.masks.kind


def throughput(stage: str, folder: str, workers: int, batches: int) -> tuple[float, object, str]:
    it, cfg, masks = stage_stream(stage, folder, workers)
    next(it)  # warm-up: pool start, first look-ahead
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * cfg.global_batch_size / (time.perf_counter() - start)
    it.close()
    return rate, cfg, masks


def profile(stage: str, folder: str, examples: int) -> dict[str, float]:
    """Single-thread ms per example of each part."""
    from hrinpaint_jax import input_pipeline as ip
    from hrinpaint_jax import tasks
    from hrinpaint_jax.image_io import read_image

    config = importlib.import_module(f"configs.{STAGES[stage]}").get_config()
    cfg = tasks.data_config(config, source=f"folder:{folder}")
    if config.task == "shift_refine":
        cfg = dataclasses.replace(cfg, lr_scale=1)
    sampler = tasks.mask_sampler(config.masks)
    files = ip.list_images(folder)
    parts = {"decode": 0.0, "crop": 0.0, "mask": 0.0, "corner": 0.0}
    for i in range(examples):
        t0 = time.perf_counter()
        image = read_image(files[i % len(files)]).rgb8
        t1 = time.perf_counter()
        ip.crop_pair(image, cfg, ip.example_rng(0, 2, 0, i))
        t2 = time.perf_counter()
        if sampler is not None:
            m = cfg.crop_size // cfg.lr_scale
            mask = sampler(0, 1, m, m, ip.example_rng(0, 0, 0, i))[0, ..., 0]
        t3 = time.perf_counter()
        if config.task == "shift_refine":
            r = config.refine
            ip.valid_patch_corners(mask, r.patch_size, r.hole_min, r.hole_max)
        t4 = time.perf_counter()
        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            parts[key] += 1e3 * dt / examples
    return parts


def main() -> None:
    from hrinpaint_jax.input_pipeline import SAMPLES, list_images

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default=str(SAMPLES))
    p.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    p.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    p.add_argument("--batches", type=int, default=3, help="timed batches per measurement")
    p.add_argument("--profile", action="store_true", help="also time each part on one thread")
    args = p.parse_args()

    n_files = len(list_images(args.folder))
    print(f"{n_files} images in {args.folder}; {os.cpu_count()} CPUs; {args.batches} batches "
          f"per measurement after 1 warm-up batch\n")  # fmt: skip
    head = " | ".join(f"ex/s @{w}" for w in args.workers)
    print(f"| stage | crop | LR scale | masks | batch | {head} |")
    print("|---|---:|---:|---|---:|" + "---:|" * len(args.workers))
    for stage in args.stages:
        rates = []
        for w in args.workers:
            rate, cfg, masks = throughput(stage, args.folder, w, args.batches)
            rates.append(f"{rate:.1f}")
        print(f"| {stage} | {cfg.crop_size} | {cfg.lr_scale} | {masks} | "
              f"{cfg.global_batch_size} | {' | '.join(rates)} |", flush=True)  # fmt: skip
    if args.profile:
        print("\nSingle thread, ms per example:\n\n| stage | decode | crop + float | mask | corner |")
        print("|---|---:|---:|---:|---:|")
        for stage in args.stages:
            t = profile(stage, args.folder, examples=6)
            print(f"| {stage} | {t['decode']:.1f} | {t['crop']:.1f} | {t['mask']:.1f} | "
                  f"{t['corner']:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
