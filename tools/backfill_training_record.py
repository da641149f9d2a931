"""One-off: writes the training record (``hrinpaint_jax/training_record.py``) into the metadata of
the bundled weights, which were exported before the record existed. Arrays are not touched: only
the JSON item ``metadata/metadata`` of each weights directory is replaced (atomically).

Where the legs come from:
* the CPU legs: ``docs/training/scalars.csv`` (every scalar of the ``runs/ours`` event files). Its
  ``uptime`` tag is the seconds since that process started, logged every ``log_every`` steps; it
  falls back to a small value when a run was resumed, which marks a new leg. A leg's seconds are
  the last uptime logged in it (a few steps short of its checkpoint, so slightly low);
* the GPU leg of Zoom-to-Inpaint: ``benchmarks/results/gpu/2026-12-04_h200/summary.md`` (602
  updates in 132.9 s on the H200, bfloat16, batch 16).
Batch, crop and dtype per stage are those of ``configs/ours.py`` / ``configs/gpu.py``; the CPU
runs shared 2 cores with other jobs (docs/training.md).

    python tools/backfill_training_record.py            # prints the tables, writes nothing
    python tools/backfill_training_record.py --write
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hrinpaint_jax import training_record  # noqa: E402
from hrinpaint_jax.atomic_files import atomic_write  # noqa: E402
from hrinpaint_jax.checkpoints import read_metadata  # noqa: E402

WEIGHTS = REPO / "hrinpaint_jax" / "assets" / "weights"
CPU = {"platform": "cpu", "device": "cpu (2 cores)", "device_count": 1, "process_count": 1}
# scalars.csv run -> (task, global batch, crop) of configs/ours.py
CPU_RUNS = {
    "dfnet": ("dfnet", 4, 256),
    "shift_refine": ("shift_refine", 4, 1024),
    "zoom_coarse": ("zoom_pretrain_coarse", 2, 256),
    "zoom_sr": ("zoom_pretrain_sr", 2, 256),
    "zoom_refine": ("zoom_pretrain_refine", 2, 256),
    "zoom_joint_small": ("zoom_joint", 2, 256),
    "zoom_joint_large": ("zoom_joint", 2, 256),
}
# Every leg of a run ended at a checkpoint; these are the steps (docs/training.md, "leg by leg").
ENDS = {
    "dfnet": [500, 1100, 2200, 3110, 4000],
    "shift_refine": [80, 400, 750, 1150],
    "zoom_coarse": [250, 2000],
    "zoom_sr": [200],
    "zoom_refine": [150, 800],
    "zoom_joint_small": [50],
    "zoom_joint_large": [80],
}
GPU_ZOOM = {
    "run": "zoom_joint",
    "task": "zoom_joint",
    "start_step": 0,
    "end_step": 602,
    "seconds": 132.9,
    "platform": "gpu",
    "device": "NVIDIA H200",
    "device_count": 1,
    "process_count": 1,
    "dtype": "bfloat16",
    "global_batch_size": 16,
    "crop_size": 256,
    "ended": "2026-12-04",
}
MODELS = {
    "dfnet": ["dfnet"],
    "shift_refine": ["shift_refine"],
    "zoom": ["zoom_coarse", "zoom_sr", "zoom_refine", "zoom_joint_small", "zoom_joint_large"],
}


def cpu_legs(run: str) -> list[dict]:
    uptime = sorted(
        (int(r["step"]), float(r["value"]))
        for r in csv.DictReader(open(REPO / "docs" / "training" / "scalars.csv"))
        if r["run"] == run and r["tag"] == "uptime"
    )
    segments, last = [], None  # [last uptime of each process]
    for _, value in uptime:
        if last is None or value < last:
            segments.append(value)
        else:
            segments[-1] = value
        last = value
    ends = ENDS[run]
    if len(segments) != len(ends):
        raise SystemExit(f"{run}: {len(segments)} processes in scalars.csv, {len(ends)} legs expected")
    task, batch, crop = CPU_RUNS[run]
    legs, start = [], 0
    for end, seconds in zip(ends, segments, strict=True):
        legs.append({
            "run": run, "task": task, "start_step": start, "end_step": end,
            "seconds": round(seconds, 1), **CPU, "dtype": "float32",
            "global_batch_size": batch, "crop_size": crop, "ended": "2026-12",
        })  # fmt: skip
        start = end
    return legs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    for name, runs in MODELS.items():
        legs = [leg for run in runs for leg in cpu_legs(run)]
        if name == "zoom":
            legs.append(GPU_ZOOM)
        directory = WEIGHTS / name
        meta = read_metadata(directory)
        meta["training"] = training_record.metadata(legs)
        print(f"## {name}\n\n{training_record.table(meta)}\n")
        if args.write:
            text = json.dumps(meta)
            atomic_write(
                directory / "metadata" / "metadata", lambda tmp, t=text: Path(tmp).write_text(t)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
