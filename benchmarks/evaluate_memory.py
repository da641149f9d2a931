"""Peak memory and time of ``evaluate.py`` at high resolution, printed as a Markdown table.

One subprocess per case (for a clean peak RSS, ``getrusage(RUSAGE_SELF).ru_maxrss``). A case is
``METHODS@SIZE``: seed-000's multi-resolution protocol (``configs/eval_twostage_multires.py``) with
only that resolution, the comma-separated methods, batch size 1, on the bundled photos (their
2048 px masters are bicubic upscales; the content does not matter for time or memory). The table
gives the seconds per image of each method after its first (compiling) call, the whole run's wall
time, the process peak RSS, and XLA's temporary-buffer estimate for the compiled metrics at that
size (``memory_analysis().temp_size_in_bytes`` of ``metrics.compute_metrics``).

Weights: ``--weights DIR`` (with dfnet/ and shift_refine/), else the parity fixtures' random
checkpoints converted once into ``--weights-cache``. Timings do not depend on the weight values.

Run from the repository root::

    python benchmarks/evaluate_memory.py
    python benchmarks/evaluate_memory.py --cases opencv_telea@2048 two_stage@1024
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_cpu import markdown  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CASES = [
    "opencv_telea@2048",
    "dfnet_only@2048",
    "two_stage@2048",
    "two_stage,dfnet_only,opencv_telea,opencv_ns@2048",
]
RESULT_TAG = "EVALUATE_MEMORY_RESULT "
COLUMNS = ("case", "images", "s / image per method", "wall s", "peak RSS GB", "metrics XLA temp GB")


def parse_case(case: str) -> tuple[tuple[str, ...], int]:
    methods, _, size = case.partition("@")
    if not size.isdigit() or not methods:
        raise argparse.ArgumentTypeError(f"bad case {case!r}: want METHOD[,METHOD...]@SIZE")
    return tuple(methods.split(",")), int(size)


def ensure_weights(cache: str) -> str:
    """Converts the fixtures' random checkpoints into ``cache`` unless already there."""
    from pathlib import Path

    if all(os.path.isdir(os.path.join(cache, n, "metadata")) for n in ("dfnet", "shift_refine")):
        return cache
    sys.path.insert(0, REPO)
    from hrinpaint_jax.commands.demo import convert_fixture_weights
    from hrinpaint_jax.fixtures import find_fixtures

    convert_fixture_weights(Path(cache), find_fixtures(), log=lambda m: None, zoom=False)
    print(f"converted the fixture checkpoints into {cache}", file=sys.stderr)
    return cache


def run_child(case: str, weights: str, images: int) -> dict:
    import resource

    sys.path.insert(0, REPO)
    import jax.numpy as jnp

    from configs import eval_twostage_multires
    from hrinpaint_jax import metrics as M
    from hrinpaint_jax.evaluation import run_evaluation

    methods, size = parse_case(case)
    config = eval_twostage_multires.get_config()
    config.methods = methods
    config.resolutions = (size,)
    config.weights = weights
    config.data.max_images = images
    config.batch_size = 1
    config.progress = False
    config.report.num_strips = 1
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        summary = run_evaluation(config, workdir, log=lambda m: None)
    wall = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9

    names = tuple(config.metrics) + tuple(config.hole_metrics)
    shape = jnp.zeros((1, size, size, 3), jnp.float32)
    hole = jnp.zeros((1, size, size, 1), jnp.float32)
    compiled = M.compute_metrics.lower(shape, shape, hole, names=names).compile()
    temp_gb = compiled.memory_analysis().temp_size_in_bytes / 1e9

    def per_image(t):
        s = t["per_image_s"] if t["per_image_s"] is not None else t["total_s"] / t["images"]
        return f"{t['method']} {s:.2f}"

    return {
        "case": case,
        "images": len(summary["images"]),
        "s / image per method": ", ".join(per_image(t) for t in summary["timing"]),
        "wall s": f"{wall:.1f}",
        "peak RSS GB": f"{peak_gb:.2f}",
        "metrics XLA temp GB": f"{temp_gb:.2f}",
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES)
    p.add_argument("--images", type=int, default=2, help="bundled photos per case (1 or 2)")
    p.add_argument("--weights", default=None, help="folder with dfnet/ and shift_refine/")
    p.add_argument("--weights-cache", default=os.path.join(REPO, "demo_output", "bench_weights"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child is not None:
        print(RESULT_TAG + json.dumps(run_child(args.child, args.weights, args.images)), flush=True)
        return

    from hrinpaint_jax.runtime import tune_cpu_flags

    env = dict(os.environ)
    tune_cpu_flags(env)  # the same XLA flags as evaluate.py
    weights = args.weights or ensure_weights(args.weights_cache)
    rows = []
    for case in args.cases:
        parse_case(case)
        cmd = [sys.executable, __file__, "--child", case, "--weights", weights]
        cmd += ["--images", str(args.images)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
        if proc.returncode or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"case {case} failed (exit {proc.returncode}): {tail[0]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[0][len(RESULT_TAG) :]))
        print(f"done {case}: {rows[-1]['peak RSS GB']} GB", file=sys.stderr)
    print(markdown([[str(r[c]) for c in COLUMNS] for r in rows], COLUMNS))


if __name__ == "__main__":
    main()
