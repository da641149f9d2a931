"""Loss curves of ``train.py`` runs as a PNG (``hrinpaint plot-curves``): reads the TensorBoard event
files of each workdir (tensorboard's own reader) and draws one panel per run, every logged loss term
over the updates (log scale, with an exponential moving average over the raw points).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hrinpaint_jax.commands.arguments import float_range
from hrinpaint_jax.image_io import InputError, atomic_write

# Logged scalars that are not losses.
NOT_LOSSES = ("steps_per_sec", "eta_seconds", "uptime", "lr", "lr_d", "lr_g")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("plot-curves", help="plot the loss curves of train.py workdirs to a PNG")
    p.add_argument("workdirs", nargs="+", help="train.py --workdir folders (one panel each)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument(
        "--smoothing", type=float_range(0, 1), default=0.6, help="EMA weight, 0..1 (default 0.6)"
    )
    p.add_argument("--csv", default=None, help="also write every logged scalar to this CSV")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(plot_curves(args.workdirs, args.out, smoothing=args.smoothing))
    if args.csv:
        print(write_csv(args.workdirs, args.csv))
    return 0


def read_scalars(workdir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (steps, values)} of every scalar logged in ``workdir``'s event files (sorted by step;
    a step logged twice, e.g. after a resume, keeps its last value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    files = sorted(Path(workdir).glob("events.out.tfevents.*"))
    if not files:
        raise InputError(f"no TensorBoard event files in {workdir}")
    series: dict[str, dict[int, float]] = {}
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"tensors": 0, "scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            for ev in acc.Tensors(tag):
                value = make_ndarray(ev.tensor_proto)
                if value.size == 1 and np.issubdtype(value.dtype, np.number):
                    series.setdefault(tag, {})[ev.step] = float(value)
        for tag in acc.Tags()["scalars"]:
            for ev in acc.Scalars(tag):
                series.setdefault(tag, {})[ev.step] = float(ev.value)
    out = {}
    for tag, points in series.items():
        steps = np.array(sorted(points), np.int64)
        out[tag] = (steps, np.array([points[s] for s in steps], np.float64))
    return out


def write_csv(workdirs: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Every logged scalar of every workdir as CSV rows ``run,tag,step,value`` (atomic write)."""
    import csv

    rows = []
    for w in workdirs:
        for tag, (steps, values) in sorted(read_scalars(w).items()):
            rows += [(Path(w).name, tag, int(s), f"{v:.7g}") for s, v in zip(steps, values, strict=True)]

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(("run", "tag", "step", "value"))
            writer.writerows(rows)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, write)


def _ema(values: np.ndarray, weight: float) -> np.ndarray:
    out, acc = np.empty_like(values), values[0]
    for i, v in enumerate(values):  # a few thousand points at most
        acc = weight * acc + (1.0 - weight) * v
        out[i] = acc
    return out


def plot_curves(
    workdirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    titles: Sequence[str] | None = None,
    smoothing: float = 0.6,
    columns: int = 4,
) -> Path:
    """Writes one panel per workdir (its loss terms against the update count) to the PNG ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not workdirs:
        raise InputError("no workdirs to plot")
    runs = [(Path(w), read_scalars(w)) for w in workdirs]
    titles = list(titles) if titles else [w.name for w, _ in runs]
    cols = min(columns, len(runs))
    rows = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (_, scalars), title in zip(axes.flat, runs, titles, strict=False):
        tags = sorted(t for t in scalars if t not in NOT_LOSSES and not t.startswith("_"))
        for tag in tags:
            steps, values = scalars[tag]
            positive = values > 0
            if not positive.any():
                continue
            (line,) = ax.plot(steps[positive], values[positive], alpha=0.25, lw=0.8)
            ax.plot(steps[positive], _ema(values[positive], smoothing), color=line.get_color(),
                    lw=1.4, label=tag)  # fmt: skip
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper right")
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out
