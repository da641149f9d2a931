"""CPU latency and peak RSS of the Zoom-to-Inpaint pipeline, printed as a Markdown table.

Companion of ``pipeline_cpu.py`` (same structure: one subprocess per case for a clean peak RSS,
``--wait-idle``, CSV out). A case is an input size ``HxW`` (or ``S`` for S x S) run through
``ZoomInpainter`` on uint8 arrays exactly as ``hrinpaint inpaint --method zoom`` does: coarse net at
the input size, SR x2, refinement with the memory-efficient contextual attention at 2H x 2W, bicubic
zoom-out. The image is the deterministic picture of ``pipeline_cpu.make_inputs``; the mask is the
centred square hole a third of the side wide (1/9 of the area).

The first call is timed on its own (compilation + one run), then the median and min of
``--repeats`` calls; the peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) is read after them, and
XLA's own estimate (``memory_analysis().temp_size_in_bytes`` of the compiled ``zoom_forward``) is
reported beside it.

Weights: ``--weights ZOOM_DIR``, else the parity fixtures' random TF checkpoint converted once into
``--weights-cache``. Timings do not depend on the weight values.

Run from the repository root::

    python benchmarks/zoom_cpu.py --wait-idle 30 --out benchmarks/results/zoom_cpu.csv
    python benchmarks/zoom_cpu.py --cases 1024 768x1024 --repeats 1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_cpu import markdown, wait_idle  # noqa: E402
from pipeline_cpu import make_inputs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CASES = ["256", "512", "1024"]
RESULT_TAG = "ZOOM_CPU_RESULT "
COLUMNS = (
    "input (HxW)",
    "refinement",
    "first call s",
    "median s",
    "min s",
    "peak RSS GB",
    "XLA temp GB",
)


def parse_case(case: str) -> tuple[int, int]:
    """``'768x1024'`` -> ``(768, 1024)``; ``'512'`` -> ``(512, 512)``."""
    h, _, w = case.partition("x")
    w = w or h
    if not (h.isdigit() and w.isdigit()):
        raise argparse.ArgumentTypeError(f"bad case {case!r}: want S or HxW")
    return int(h), int(w)


def ensure_weights(cache: str) -> str:
    """Converts the fixtures' random TF checkpoint into ``cache/zoom`` unless already there."""
    from pathlib import Path

    target = os.path.join(cache, "zoom")
    if os.path.isdir(os.path.join(target, "metadata")):
        return target
    sys.path.insert(0, REPO)
    from hrinpaint_jax.commands.demo import convert_fixture_weights
    from hrinpaint_jax.fixtures import find_fixtures

    convert_fixture_weights(Path(cache), find_fixtures(), log=lambda m: None)
    print(f"converted the fixture checkpoints into {cache}", file=sys.stderr)
    return target


def run_child(args) -> dict:
    import resource

    import jax
    import jax.numpy as jnp

    from hrinpaint_jax.pipelines.zoom import ZoomInpainter, zoom_forward

    height, width = args.child
    inpainter = ZoomInpainter.from_pretrained(args.weights)
    image, mask = make_inputs(height, width)
    start = time.perf_counter()
    inpainter(image, mask)
    first = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        inpainter(image, mask)
        times.append(time.perf_counter() - start)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    hp, wp = inpainter.padded_size(height, width)
    compiled = zoom_forward.lower(
        inpainter.model,
        inpainter.variables,
        jnp.zeros((1, hp, wp, 3)),
        jnp.zeros((1, hp, wp, 1)),
    ).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes / 1e9
    s = inpainter.model.sr_scale
    return {
        "input (HxW)": f"{height}x{width}",
        "refinement": f"{s * hp}x{s * wp}",
        "first call s": round(first, 2),
        "median s": round(statistics.median(times), 2) if times else None,
        "min s": round(min(times), 2) if times else None,
        "peak RSS GB": round(peak_gb, 2),
        "XLA temp GB": round(temp, 2),
        "platform": jax.devices()[0].platform,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, type=str)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--weights", default=None, help="zoom weights directory")
    p.add_argument("--weights-cache", default=os.path.join(REPO, "demo_output", "bench_weights"))
    p.add_argument("--out", default=None, help="CSV to write")
    p.add_argument("--wait-idle", type=float, default=0, help="wait until the load average is low")
    p.add_argument("--child", type=parse_case, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child is not None:
        print(RESULT_TAG + json.dumps(run_child(args)), flush=True)
        return

    from hrinpaint_jax.runtime import tune_cpu_flags

    env = dict(os.environ)
    tune_cpu_flags(env)
    weights = args.weights or ensure_weights(args.weights_cache)
    rows = []
    for case in args.cases:
        parse_case(case)
        if args.wait_idle:
            wait_idle(args.wait_idle)
        cmd = [sys.executable, __file__, "--child", case, "--weights", weights]
        cmd += ["--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
        if proc.returncode or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"case {case} failed (exit {proc.returncode}): {tail[0]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[0][len(RESULT_TAG) :]))
        print(f"done {case}: {rows[-1]['median s']} s, {rows[-1]['peak RSS GB']} GB", file=sys.stderr)
    print(markdown([[str(r[c]) for c in COLUMNS] for r in rows], COLUMNS))
    if args.out and rows:
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
