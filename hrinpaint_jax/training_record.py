"""What a set of weights was trained with: the *legs* of training that led to it.

A leg is one process run of ``train.py`` on one workdir, from the step it started at (0, or the
checkpoint it resumed) to the last checkpoint it saved:

    {"run": workdir name, "task": config.task, "start_step": 0, "end_step": 602,
     "seconds": 132.9, "platform": "gpu", "device": "NVIDIA H200", "device_count": 1,
     "process_count": 1, "dtype": "bfloat16", "global_batch_size": 16, "crop_size": 256,
     "ended": "2026-12-04T15:21:10Z"}

``seconds`` is the wall time of the training loop (compilation included, export not); the totals'
``accelerator_seconds`` are device-seconds (wall seconds x devices) of the legs on GPUs / TPUs, so
one H200 for 133 s and eight for 17 s both count about 133. The record travels:

* each checkpoint of a workdir stores the legs so far (item ``record``), so a resumed run appends
  its own leg after the ones it resumed;
* ``config.init_from`` carries the legs of every source (a workdir's latest checkpoint or a weights
  directory's metadata), so a continued model keeps the history of the one it started from;
* ``hrinpaint export`` writes ``{"legs", "totals"}`` into the weights' metadata as ``training``,
  and ``hrinpaint info`` prints it.

A run that resumes a checkpoint written before the record existed starts with an ``unrecorded``
leg for the steps it cannot account for (``unrecorded``), so the totals never silently drop them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

Leg = dict[str, Any]


def run_name(workdir: str | os.PathLike) -> str:
    """A leg's ``run``: the workdir's folder name."""
    return os.path.basename(os.path.abspath(os.fspath(workdir)))


def device_facts() -> dict[str, Any]:
    """Platform, device kind and counts of this process's JAX backend."""
    import jax

    dev = jax.devices()[0]
    kind = dev.device_kind
    if dev.platform == "cpu":
        kind = f"cpu ({os.cpu_count()} cores)"
    return {
        "platform": dev.platform,
        "device": kind,
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
    }


class LegClock:
    """The current run's leg: ``leg(step)`` is the leg as of a checkpoint at ``step``."""

    def __init__(self, config, workdir: str | os.PathLike, start_step: int):
        self.start = time.monotonic()
        self.base = {
            "run": run_name(workdir),
            "task": config.task,
            "start_step": int(start_step),
            **device_facts(),
            "dtype": config.get("dtype", "float32"),
            "global_batch_size": int(config.data.global_batch_size),
            "crop_size": int(config.data.crop_size),
        }

    def leg(self, step: int) -> Leg:
        return {
            **self.base,
            "end_step": int(step),
            "seconds": round(time.monotonic() - self.start, 1),
            "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


UNRECORDED = "unrecorded"


def unrecorded(config, workdir: str | os.PathLike, end_step: int) -> Leg:
    """Steps 0..end_step of a checkpoint that carries no record (written before it existed)."""
    return {
        "run": run_name(workdir),
        "task": config.task,
        "start_step": 0,
        "end_step": int(end_step),
        "seconds": 0.0,
        "platform": UNRECORDED,
        "device": UNRECORDED,
        "device_count": 0,
        "process_count": 0,
    }


def merge(*groups: Iterable[Leg]) -> list[Leg]:
    """The legs of several sources in order, each once (two init_from sources may share history).
    Only identical legs are merged: a run seen at two different checkpoints (an exported copy and
    its still-running workdir) would be counted twice."""
    out: list[Leg] = []
    for group in groups:
        for leg in group:
            if leg not in out:
                out.append(dict(leg))
    return out


def updates(leg: Leg) -> int:
    return int(leg["end_step"]) - int(leg["start_step"])


def _no_totals() -> dict[str, Any]:
    return {
        "updates": 0,
        "accelerator_updates": 0,
        "seconds": 0.0,
        "accelerator_seconds": 0.0,
        "devices": [],
    }


def totals(legs: Iterable[Leg]) -> dict[str, dict[str, Any]]:
    """Per task: updates, wall seconds, the updates and device-seconds (wall x devices) on
    accelerators (not CPU, not unrecorded) and the devices used; 'all' sums every task."""
    out: dict[str, dict[str, Any]] = {}
    for leg in legs:
        for key in (leg["task"], "all"):
            t = out.setdefault(key, _no_totals())
            t["updates"] += updates(leg)
            t["seconds"] = round(t["seconds"] + float(leg["seconds"]), 1)
            if leg.get("platform", UNRECORDED) not in ("cpu", UNRECORDED):
                device_seconds = float(leg["seconds"]) * int(leg.get("device_count", 1))
                t["accelerator_updates"] += updates(leg)
                t["accelerator_seconds"] = round(t["accelerator_seconds"] + device_seconds, 1)
            device = leg.get("device", UNRECORDED)
            if device not in t["devices"]:
                t["devices"].append(device)
    if "all" in out:
        out["all"] = out.pop("all")  # last, after the tasks
    return out


def metadata(legs: list[Leg]) -> dict[str, Any]:
    """The ``training`` entry of a weights directory's metadata."""
    return {"legs": [dict(leg) for leg in legs], "totals": totals(legs)}


def legs_of_metadata(meta: dict[str, Any]) -> list[Leg]:
    """The legs stored in weights metadata ([] for converted or older weights)."""
    training = meta.get("training") or {}
    return [dict(leg) for leg in training.get("legs", [])]


def table(meta: dict[str, Any]) -> str:
    """A Markdown table of the per-task totals of weights metadata ('' when there is no record)."""
    t = (meta.get("training") or {}).get("totals") or {}
    if not t:
        return ""
    rows = [
        "| task | updates | on accelerators | hours in all | accelerator device-minutes | devices |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    if len(t) == 2:  # one task: its 'all' row says the same
        t = {k: v for k, v in t.items() if k != "all"}
    for task, v in t.items():
        rows.append(
            f"| {task} | {v['updates']:,} | {v['accelerator_updates']:,} | {v['seconds'] / 3600:.2f} | "
            f"{v['accelerator_seconds'] / 60:.1f} | {', '.join(v['devices'])} |"
        )
    return "\n".join(rows)
