"""The evaluation's reports: per-image CSV, summary JSON, Markdown tables in the papers' layouts,
plots and comparison strips (input | methods | ground truth). Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hrinpaint_jax import metrics as M
from hrinpaint_jax.evaluation.methods import run_at_text
from hrinpaint_jax.image_io import atomic_write
from hrinpaint_jax.ops.pixels import to_uint8

# Number formats of the report tables (the papers' precision).
FORMATS = {"psnr": ".2f", "l1": ".5f", "l1_255": ".3f"} | {
    "hole_psnr": ".2f",
    "hole_l1": ".5f",
    "hole_l1_255": ".3f",
}
LABELS = {
    "l1": "L1",
    "l1_255": "L1 (0-255)",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "lpips": "LPIPS",
    "ssim_high": "SSIM high",
    "ssim_mid": "SSIM mid",
    "ssim_low": "SSIM low",
}


def _label(column: str) -> str:
    if column.startswith("hole_"):
        return f"hole {_label(column[5:])}"
    return LABELS.get(column, column)


def _fmt(column: str, value: float) -> str:
    if value is None or not math.isfinite(value):
        return "-" if value is None or math.isnan(value) else ("inf" if value > 0 else "-inf")
    return format(value, FORMATS.get(column, ".4f"))


def _write_text(path: Path, text: str) -> Path:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    return atomic_write(path, write)


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    return atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))


def _environment() -> dict[str, Any]:
    import platform

    device = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        # Timings on a shared machine depend on what else runs: the 1-minute load at the end.
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
    }


def _strip(panels: list[tuple[str, np.ndarray]], side: int) -> np.ndarray:
    """Labelled panels side by side, each resized to ``side`` px (uint8 [H, W, 3])."""
    from PIL import Image, ImageDraw

    header = 18
    tiles = []
    for label, pixels in panels:
        im = Image.fromarray(pixels)
        if im.size != (side, side):
            im = im.resize(
                (side, side), Image.Resampling.BICUBIC if side > im.size[0] else Image.Resampling.BOX
            )
        tile = Image.new("RGB", (side, side + header), (255, 255, 255))
        tile.paste(im, (0, header))
        ImageDraw.Draw(tile).text((3, 3), label, fill=(0, 0, 0))
        tiles.append(np.asarray(tile))
    return np.concatenate(tiles, axis=1)


def write_comparison_strip(strip_dir, name, kind, size, target, hole, outputs, side) -> Path:
    """strips/{kind}_{size}_{name}.png: input (hole painted white) | each method | ground truth."""
    target_u8 = to_uint8(target)
    shown = np.where(hole > 0.5, 255, target_u8).astype(np.uint8)  # the hole painted white
    panels = [("input", shown)] + [(m, to_uint8(o)) for m, o in outputs] + [("ground truth", target_u8)]
    safe = name.replace("/", "__").replace(os.sep, "__")
    return _write_png(strip_dir / f"{kind}_{size}_{safe}.png", _strip(panels, min(side, size)))


def summarise(config, rows, columns, timing, names, master_size, wall_s: float) -> dict:
    """Means (NaN-aware) and standard deviations per (mask, resolution, method), timings (this
    process's own batches)."""
    results = []
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["mask"], row["resolution"], row["method"]), []).append(row)
    for (kind, size, method), group in groups.items():
        stats = {}
        for c in columns:
            values = np.array([r[c] for r in group], np.float64)
            finite = values[~np.isnan(values)]
            if finite.size == 0:
                continue
            stats[c] = {
                "mean": float(np.mean(finite)),
                "std": float(np.std(finite)),
                "count": int(finite.size),
            }
        results.append({"mask": kind, "resolution": size, "method": method, "metrics": stats})
    timings = []
    for (method, kind, size), t in timing.items():
        seconds = [s for s, _, _ in t["batches"]]
        warm = [(s, n) for s, n, first in t["batches"] if not first]
        warm_images = sum(n for _, n in warm)
        timings.append(
            {
                "method": method,
                "mask": kind,
                "resolution": size,
                "images": t["images"],
                "total_s": float(sum(seconds)),
                "compile_batch_s": next((s for s, _, first in t["batches"] if first), None),
                # Seconds per image without the method's first (compiling) call at this size.
                "per_image_s": float(sum(s for s, _ in warm) / warm_images) if warm_images else None,
            }
        )
    return {
        "protocol": config.protocol,
        "config": json.loads(config.to_json_best_effort()),
        "images": list(names),
        "master_size": master_size,
        "columns": columns,
        "results": results,
        "timing": timings,
        "wall_s": wall_s,
        "environment": _environment(),
    }


def _mean(summary, kind, size, method, column):
    for r in summary["results"]:
        if (r["mask"], r["resolution"], r["method"]) == (kind, size, method):
            stat = r["metrics"].get(column)
            return None if stat is None else stat["mean"]
    return None


def _best(values: list[float | None], column: str) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return None
    return max(finite) if M.HIGHER_IS_BETTER.get(column, True) else min(finite)


def _cell(column, value, best) -> str:
    text = "-" if value is None else _fmt(column, value)
    return f"**{text}**" if best is not None and value == best else text


def markdown_tables(config, summary) -> str:
    """The report's Markdown: main table in the configured layout, hole-only table, per-band SSIM
    (ZTI Table 7 layout) and timings. Best value per column in bold (when there are 2+ methods)."""
    methods = list(config.methods)
    kinds = list(config.masks.kinds)
    sizes = [int(r) for r in config.resolutions]
    columns = summary["columns"]
    main = [c for c in config.report.table_metrics if c in columns]
    hole = [c for c in columns if c.startswith("hole_")]
    lines = [
        f"# Evaluation: {config.protocol}",
        "",
        f"{len(summary['images'])} image(s) ({config.data.source}), masks: {', '.join(kinds)}, "
        f"methods run at {run_at_text(config)}. Mean over images.",
        "",
    ]

    def metric_columns_table(cols, title):
        for size in sizes:
            lines.append(f"## {title} at {size}x{size}")
            lines.append("")
            lines.append("| masks | method | " + " | ".join(_label(c) for c in cols) + " |")
            lines.append("|---|---|" + "---|" * len(cols))
            for kind in kinds:
                best = {c: _best([_mean(summary, kind, size, m, c) for m in methods], c) for c in cols}
                for m in methods:
                    cells = [_cell(c, _mean(summary, kind, size, m, c), best[c]) for c in cols]
                    lines.append(f"| {kind} | {m} | " + " | ".join(cells) + " |")
            lines.append("")

    def resolution_columns_table(cols, title):
        for kind in kinds:
            lines.append(f"## {title} ({kind} masks): {' / '.join(_label(c) for c in cols)}")
            lines.append("")
            lines.append("| method | " + " | ".join(f"{s}²" for s in sizes) + " |")
            lines.append("|---|" + "---|" * len(sizes))
            best = {
                (s, c): _best([_mean(summary, kind, s, m, c) for m in methods], c)
                for s in sizes
                for c in cols
            }
            for m in methods:
                cells = [
                    " / ".join(_cell(c, _mean(summary, kind, s, m, c), best[(s, c)]) for c in cols)
                    for s in sizes
                ]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")

    table = (
        metric_columns_table if config.report.layout == "metric_columns" else resolution_columns_table
    )
    if main:
        table(main, "Whole image")
    if hole:
        table(hole, "Inside the hole")

    bands = [f"ssim_{b}" for b in M.BAND_NAMES]
    if all(b in columns for b in bands):
        for size in sizes:
            for kind in kinds:
                lines.append(
                    f"## Per-band SSIM (2-level Laplacian pyramid), {kind} masks at {size}x{size}"
                )
                lines.append("")
                base = methods[0]
                others = methods[1:]
                header = [*methods, *(f"{m} − {base}" for m in others)]
                lines.append("| band | " + " | ".join(header) + " |")
                lines.append("|---|" + "---|" * len(header))
                for band in reversed(bands):  # low, mid, high as in the paper
                    values = [_mean(summary, kind, size, m, band) for m in methods]
                    cells = [_fmt(band, v) if v is not None else "-" for v in values]
                    for v in values[1:]:
                        ok = v is not None and values[0] is not None
                        cells.append(f"{v - values[0]:+.4f}" if ok else "-")
                    lines.append(f"| {band[5:]} | " + " | ".join(cells) + " |")
                lines.append("")

    lines.append("## Time per image (seconds; each method's first, compiling call per size excluded)")
    lines.append("")
    lines.append("| method | " + " | ".join(f"{k} @ {s}" for s in sizes for k in kinds) + " |")
    lines.append("|---|" + "---|" * (len(sizes) * len(kinds)))
    for m in methods:
        cells = []
        for s in sizes:
            for k in kinds:
                t = next(
                    (
                        t
                        for t in summary["timing"]
                        if (t["method"], t["mask"], t["resolution"]) == (m, k, s)
                    ),
                    None,
                )
                if t is None:
                    cells.append("-")
                elif t["per_image_s"] is not None:
                    cells.append(f"{t['per_image_s']:.3f}")
                else:  # a single batch: report it, compilation included
                    cells.append(f"{t['total_s'] / t['images']:.3f} (incl. compile)")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    env = summary["environment"]
    lines += [
        "",
        f"Device: {env['device']} ({env['backend']}, {env['cpu_count']} CPUs, load average "
        f"{env['load_average']}), jax {env['jax']}; total {summary['wall_s']:.1f} s.",
        "",
    ]
    dtype = config.get("dtype", "float32")
    if dtype != "float32":
        lines.insert(-1, f"Networks computed in {dtype} (weights float32).")
    return "\n".join(lines)


def _plot_metric_vs_resolution(config, summary, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in config.report.table_metrics if c in summary["columns"]]
    kinds = list(config.masks.kinds)
    sizes = [int(r) for r in config.resolutions]
    fig, axes = plt.subplots(
        len(kinds), len(cols), figsize=(4.0 * len(cols), 3.2 * len(kinds)), squeeze=False
    )
    for r, kind in enumerate(kinds):
        for c, col in enumerate(cols):
            ax = axes[r][c]
            for m in config.methods:
                ys = [_mean(summary, kind, s, m, col) for s in sizes]
                ys = [math.nan if y is None else y for y in ys]
                ax.plot(sizes, ys, marker="o", label=m)
            ax.set_xticks(sizes)
            ax.set_xlabel("resolution (px)")
            ax.set_title(f"{_label(col)} ({kind} masks)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()

    def save(tmp):
        fig.savefig(tmp, format="png", dpi=100)

    try:
        return atomic_write(path, save)
    finally:
        plt.close(fig)


def _plot_band_ssim(config, summary, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [(k, int(s)) for s in config.resolutions for k in config.masks.kinds]
    bands = ["low", "mid", "high"]
    methods = list(config.methods)
    fig, axes = plt.subplots(1, len(settings), figsize=(5.0 * len(settings), 3.6), squeeze=False)
    width = 0.8 / len(methods)
    for ax, (kind, size) in zip(axes[0], settings, strict=True):
        for i, m in enumerate(methods):
            ys = [_mean(summary, kind, size, m, f"ssim_{b}") for b in bands]
            ys = [math.nan if y is None else y for y in ys]
            ax.bar(np.arange(len(bands)) + (i - (len(methods) - 1) / 2) * width, ys, width, label=m)
        ax.set_xticks(np.arange(len(bands)), bands)
        finite = [
            v
            for m in methods
            for b in bands
            if (v := _mean(summary, kind, size, m, f"ssim_{b}")) is not None and math.isfinite(v)
        ]
        if finite:
            low, high = min(finite), max(finite)
            pad = max(0.02, 0.15 * (high - low))
            ax.set_ylim(max(-1.0, low - pad), min(1.0, high + pad))
        ax.set_ylabel("SSIM")
        ax.set_title(f"per-band SSIM, {kind} masks @ {size}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


def write_reports(config, workdir: Path, rows, columns, summary) -> list[Path]:
    """per_image.csv, summary.json, table.md and the plots; returns the written paths."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["mask", "resolution", "image", "method", *columns])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    files = [_write_text(workdir / "per_image.csv", buf.getvalue())]
    files.append(_write_text(workdir / "table.md", markdown_tables(config, summary)))
    if config.report.plots:
        files.append(_plot_metric_vs_resolution(config, summary, workdir / "metric_vs_resolution.png"))
        if all(f"ssim_{b}" in columns for b in M.BAND_NAMES):
            files.append(_plot_band_ssim(config, summary, workdir / "band_ssim.png"))
    summary["files"] = [str(f.relative_to(workdir)) for f in files] + ["summary.json"]
    files.append(_write_text(workdir / "summary.json", json.dumps(summary, indent=2, allow_nan=True)))
    return files
