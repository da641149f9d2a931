"""Peak RSS of ``hrinpaint inpaint`` against ``--memory-budget`` on very large images (issue 21).

Each row runs the CLI in a fresh process on a synthetic photo-sized image (smooth gradients plus
noise) with a 16 x 16 hole in the middle and reports the process's peak resident memory
(``wait4`` rusage). The two-stage pipeline counts its image buffers and its refinement tiles
against the budget (``pipelines/tiling.py``); what is left over is the fixed cost of a process
(Python, JAX, XLA's compiled code and the weights), reported as ``peak - budget``.

    python benchmarks/memory_budget.py                          # 6000 px budget 2, 12000 px budget 4
    python benchmarks/memory_budget.py --cases 6000:2 12000:4 12000:crop
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_inputs(folder: Path, side: int) -> tuple[Path, Path]:
    from PIL import Image

    image_path, mask_path = folder / f"photo_{side}.png", folder / f"mask_{side}.png"
    if not image_path.exists():
        rng = np.random.default_rng(side)
        ramp = np.linspace(0, 255, side, dtype=np.float32)
        rows = []
        for top in range(0, side, 1024):  # row bands keep this script's own memory small
            y = ramp[top : top + 1024, None]
            band = np.stack(
                [np.broadcast_to(ramp[None, :], (len(y), side)), np.broadcast_to(y, (len(y), side)),
                 (y + ramp[None, :]) / 2], -1)  # fmt: skip
            rows.append(np.clip(band + rng.normal(0, 6, band.shape), 0, 255).astype(np.uint8))
        Image.fromarray(np.concatenate(rows)).save(image_path, compress_level=1)
        mask = np.zeros((side, side), np.uint8)
        mask[side // 2 - 8 : side // 2 + 8, side // 2 - 8 : side // 2 + 8] = 255
        Image.fromarray(mask).save(mask_path)
    return image_path, mask_path


def run_case(image: Path, mask: Path, budget: str, out: Path) -> tuple[float, float, int, str]:
    """(peak RSS GB, wall s, exit code, last stderr line) of one CLI run."""
    cmd = [sys.executable, "-m", "hrinpaint_jax", "inpaint", "--image", str(image), "--mask", str(mask),
           "--output", str(out), "--overwrite"]  # fmt: skip
    cmd += ["--crop-context", "4"] if budget == "crop" else ["--whole-image", "--memory-budget", budget]
    env = {**os.environ, "HRINPAINT_MAX_PIXELS": "0", "HRINPAINT_COMPILE_CACHE": "0"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return (
        usage.ru_maxrss * 1024 / 1e9,
        time.perf_counter() - start,
        proc.returncode,
        lines[-1] if lines else "",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["6000:2", "12000:4"],
                        help="SIDE:BUDGET_GB, or SIDE:crop for the default crop mode")  # fmt: skip
    parser.add_argument("--workdir", default=None, help="where the synthetic images are kept")
    args = parser.parse_args()
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="hrinpaint_membench_"))
    folder.mkdir(parents=True, exist_ok=True)
    print("| size | mode | budget (GB) | peak RSS (GB) | peak - budget (GB) | wall (s) | exit |")
    print("|---|---|---|---|---|---|---|")
    for case in args.cases:
        side_text, budget = case.split(":")
        side = int(side_text)
        image, mask = make_inputs(folder, side)
        peak, wall, code, last = run_case(image, mask, budget, folder / f"out_{side}.png")
        mode = "crop (default)" if budget == "crop" else "whole image"
        over = "" if budget == "crop" else f"{peak - float(budget):+.2f}"
        shown = "-" if budget == "crop" else budget
        print(
            f"| {side}x{side} | {mode} | {shown} | {peak:.2f} | {over} | {wall:.1f} | {code} |",
            flush=True,
        )
        if code:
            print(f"<!-- {last} -->", flush=True)


if __name__ == "__main__":
    main()
