"""Throughput of the training input pipeline (``hrinpaint_jax.input_pipeline``), per training stage.

For each stage's data shape (from its config: crop, LR scale, batch, masks from
``tasks.mask_sampler(config.masks)``; shift_refine also searches the 512 patch corner), prints a
Markdown table of examples/s at 1 worker thread and at N (``--workers``, default 1 and
``os.cpu_count()``), from the photos of ``--folder`` (default: the bundled samples; recursive).
``--profile`` adds the single-thread cost of each part of an example (decode, crop + float, mask,
corner search), to see what would scale with more cores. ``--cache-mb 0 1024`` measures each worker
count without and with the decoded-image cache (``DataConfig.cache_mb``; the batches are the same).
The ``gpu_*`` stages are the shapes of ``configs/gpu.py`` (phase e of the device run).

    python benchmarks/input_pipeline.py --folder /data/div2k/train --batches 5
    python benchmarks/input_pipeline.py --folder .device/data/large --stages gpu_zoom_joint \
        --cache-mb 0 1024
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

# stage name -> (config module, get_config argument)
STAGES = {
    "dfnet": ("dfnet", None),
    "shift_refine": ("shift_refine", None),
    "zoom_pretrain_coarse": ("zoom_pretrain_coarse", None),
    "zoom_joint_small": ("zoom_joint_small", None),
    "zoom_joint_large": ("zoom_joint_large", None),
    "gpu_dfnet": ("gpu", "dfnet"),
    "gpu_shift_refine": ("gpu", "shift_refine"),
    "gpu_zoom_joint": ("gpu", "zoom_joint"),
}


def stage_config(stage: str):
    module, arg = STAGES[stage]
    get = importlib.import_module(f"configs.{module}").get_config
    return get() if arg is None else get(arg)


def stage_stream(stage: str, folder: str, workers: int, cache_mb: int):
    """(host batch iterator, DataConfig, masks kind) of ``stage`` reading ``folder``."""
    from hrinpaint_jax import input_pipeline, refinement_data, tasks

    config = stage_config(stage)
    config.data.cache_mb = cache_mb
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


def throughput(
    stage: str, folder: str, workers: int, batches: int, cache_mb: int
) -> tuple[float, object, str]:
    from hrinpaint_jax.input_pipeline import list_images

    it, cfg, masks = stage_stream(stage, folder, workers, cache_mb)
    # Warm-up: pool start, first look-ahead; with a cache, one pass over the folder to fill it
    # (the steady state of a training run).
    warm = -(-len(list_images(folder)) // cfg.global_batch_size) if cache_mb else 1
    for _ in range(max(warm, 1)):
        next(it)
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
    from hrinpaint_jax.refinement_data import valid_patch_corners

    config = stage_config(stage)
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
            valid_patch_corners(mask, r.patch_size, r.hole_min, r.hole_max)
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
    p.add_argument("--cache-mb", type=int, nargs="+", default=[0], help="decoded-image cache(s), MiB")
    p.add_argument("--profile", action="store_true", help="also time each part on one thread")
    args = p.parse_args()

    n_files = len(list_images(args.folder))
    print(f"{n_files} images in {args.folder}; {os.cpu_count()} CPUs; {args.batches} batches "
          "per measurement after 1 warm-up batch (with a cache: a pass over the folder)\n")  # fmt: skip
    cases = [(w, mb) for mb in args.cache_mb for w in args.workers]
    head = " | ".join(
        f"ex/s @{w}" + (f", cache {mb}" if len(args.cache_mb) > 1 else "") for w, mb in cases
    )
    print(f"| stage | crop | LR scale | masks | batch | {head} |")
    print("|---|---:|---:|---|---:|" + "---:|" * len(cases))
    for stage in args.stages:
        rates = []
        for w, mb in cases:
            rate, cfg, masks = throughput(stage, args.folder, w, args.batches, mb)
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
