"""Peak memory and time of the Zoom-to-Inpaint contextual attention, dense vs memory-efficient (CPU).

``hrinpaint_jax.ops.contextual_attention.contextual_attention`` (REFERENCE.md section 6) on a B = 1,
c = 128 bottleneck whose attention grid is G x G (N = G^2 positions; the bottleneck is 2G x 2G, the
refinement input 8G x 8G: G = 64 is the 512 x 512 training size, G = 256 a 2048 x 2048 input). The
features are N(0, 0.1^2) and the hole (m_b, 1 = hole) is a centred rectangle of half the height and
40 % of the width (20 % of the area), so the efficient path computes about half of its query blocks
(``skip_known``).

Memory is measured two ways, each configuration in a fresh subprocess (this script re-invoked with
``--child``):

- ``XLA temp``: the compiled program's scratch memory (``jit(f).lower(...).compile()
  .memory_analysis().temp_size_in_bytes``), excluding inputs and output; the cleanest measure of how
  the algorithm scales.
- ``peak RSS - base``: ``getrusage(RUSAGE_SELF).ru_maxrss`` of the subprocess after compiling and
  running, minus that of a baseline subprocess that imports jax and builds the same inputs only
  (compilation memory included, so small sizes are dominated by it).

The ``x prev`` columns are the ratio to the previous (4x smaller N) row of the same implementation:
about 4 means linear growth in N, about 16 quadratic. ``grad temp`` is the compiled scratch memory of
``jax.grad`` of a scalar loss of the output (compiled only, not run). The dense formulation is run only
while ``4 N^2 x 4 bytes`` (about four live N x N float32 tensors) stays below ``--dense-limit-gb``;
larger sizes show the bytes of one N x N float32 tensor instead. Times are one timed call after a
warm-up call (``--repeats`` for more; the median is shown).

Run from the repository root::

    python benchmarks/attention_memory.py          # grids 16 32 64 128 256
    python benchmarks/attention_memory.py --csv    # also benchmarks/results/attention_memory.csv
    python benchmarks/attention_memory.py --sizes 32 64 --csv out.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_cpu import markdown, wait_idle  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CSV = os.path.join(REPO, "benchmarks", "results", "attention_memory.csv")
RESULT_TAG = "ATTENTION_MEMORY_RESULT "
COLUMNS = (
    "grid (N)",
    "impl",
    "XLA temp MB",
    "x prev",
    "peak RSS - base MB",
    "x prev",
    "grad temp MB",
    "compile s",
    "run s",
    "note",
)
MB = 1e6


# ---------------------------------------------------------------------------------------------
# Child: one configuration in this process.
# ---------------------------------------------------------------------------------------------


def make_inputs(grid: int, channels: int):
    """f [1, 2G, 2G, c] ~ N(0, 0.1^2) and m_b with a centred hole of 20 % of the area."""
    import jax.numpy as jnp
    import numpy as np

    h = w = 2 * grid
    rng = np.random.default_rng(0)
    f = rng.normal(0.0, 0.1, (1, h, w, channels)).astype(np.float32)
    m = np.zeros((1, h, w, 1), np.float32)
    hh, hw = h // 2, (2 * w) // 5
    m[:, (h - hh) // 2 : (h - hh) // 2 + hh, (w - hw) // 2 : (w - hw) // 2 + hw] = 1
    return jnp.asarray(f), jnp.asarray(m)


def run_child(args: argparse.Namespace) -> dict:
    import jax
    import jax.numpy as jnp

    f, m = make_inputs(args.grid, args.channels)
    jax.block_until_ready((f, m))
    record = {"grid": args.grid, "n": args.grid**2, "impl": args.child, "channels": args.channels}
    if args.child != "baseline":
        from hrinpaint_jax.ops.contextual_attention import block_plan, default_block, hole_queries

        kw = {"implementation": args.child}
        if args.child == "efficient":
            kw |= {"query_block": args.query_block, "key_block": args.key_block}
            qplan = block_plan(
                args.grid, args.grid, args.query_block or default_block(args.grid, args.grid)
            )
            kplan = block_plan(
                args.grid, args.grid, args.key_block or default_block(args.grid, args.grid)
            )
            need = jax.device_get(hole_queries(m, 2))[0]
            blocks = {int(i) // qplan.block for i in need.nonzero()[0]}
            record |= {
                "query_block": qplan.block,
                "key_block": kplan.block,
                "query_blocks_run": f"{len(blocks)}/{qplan.num_blocks}",
                "score_flops_overhead": (qplan.window * kplan.window) / (qplan.block * kplan.block),
            }
        from hrinpaint_jax.ops.contextual_attention import contextual_attention

        fn = jax.jit(lambda x, y: contextual_attention(x, y, **kw))
        start = time.perf_counter()
        compiled = fn.lower(f, m).compile()
        record["compile_s"] = time.perf_counter() - start
        record["temp_bytes"] = compiled.memory_analysis().temp_size_in_bytes
        if args.child_grad:
            loss = jax.jit(jax.grad(lambda x, y: jnp.sum(contextual_attention(x, y, **kw))))
            stats = loss.lower(f, m).compile().memory_analysis()
            record["grad_temp_bytes"] = stats.temp_size_in_bytes
        jax.block_until_ready(compiled(f, m))  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(compiled(f, m))
            times.append(time.perf_counter() - start)
        record["times_s"] = times
        record["run_s"] = statistics.median(times)
    record["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    record["jax"] = jax.__version__
    return record


# ---------------------------------------------------------------------------------------------
# Parent: subprocesses, then the table.
# ---------------------------------------------------------------------------------------------


def spawn(impl: str, grid: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", impl, "--grid", str(grid)]
    cmd += ["--channels", str(args.channels), "--repeats", str(args.repeats)]
    if args.query_block:
        cmd += ["--query-block", str(args.query_block)]
    if args.key_block:
        cmd += ["--key-block", str(args.key_block)]
    if args.grad:
        cmd += ["--child-grad"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    env.setdefault("JAX_PLATFORMS", "cpu")
    busy = wait_idle(args.wait_idle)
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return {**json.loads(line[len(RESULT_TAG) :]), "busy_before": busy}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    print(f"[{impl} {grid}] failed (rc={proc.returncode}):\n  " + "\n  ".join(tail), file=sys.stderr)
    return {"grid": grid, "n": grid**2, "impl": impl, "error": f"failed (rc={proc.returncode})"}


def human_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.0f} {unit}"
    return f"{n / 2**10:.0f} KiB"


def ratio(cur, prev) -> str:
    return f"{cur / prev:.1f}" if cur is not None and prev else "-"


def table_rows(records: list[dict]) -> list[list[str]]:
    rows, prev = [], {}
    for r in records:
        label = f"{r['grid']}x{r['grid']} ({r['n']:,})"
        if "skipped" in r or "error" in r:
            note = r.get("skipped") or r["error"]
            rows.append([label, r["impl"], "-", "-", "-", "-", "-", "-", "-", note])
            prev[r["impl"]] = (None, None)
            continue
        temp, rss = r["temp_bytes"] / MB, r["rss_minus_base_bytes"] / MB
        p_temp, p_rss = prev.get(r["impl"], (None, None))
        grad = f"{r['grad_temp_bytes'] / MB:.0f}" if "grad_temp_bytes" in r else "-"
        note = ""
        if r["impl"] == "efficient":
            note = (
                f"blocks {r['query_block']}x{r['key_block']}, query blocks run "
                f"{r['query_blocks_run']}, score-matmul FLOPs x{r['score_flops_overhead']:.2f}"
            )
        rows.append(
            [
                label,
                r["impl"],
                f"{temp:.1f}",
                ratio(temp, p_temp),
                f"{rss:.0f}",
                ratio(rss, p_rss),
                grad,
                f"{r['compile_s']:.2f}",
                f"{r['run_s']:.2f}",
                note,
            ]
        )
        prev[r["impl"]] = (temp, rss)
    return rows


def write_csv(path: str, records: list[dict]) -> None:
    fields = [
        "grid",
        "n",
        "impl",
        "channels",
        "temp_bytes",
        "grad_temp_bytes",
        "peak_rss_bytes",
        "baseline_rss_bytes",
        "rss_minus_base_bytes",
        "compile_s",
        "run_s",
        "times_s",
        "query_block",
        "key_block",
        "query_blocks_run",
        "score_flops_overhead",
        "busy_before",
        "jax",
        "skipped",
        "error",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fields, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({**r, "times_s": " ".join(f"{t:.3f}" for t in r.get("times_s", []))})


def parent_main(args: argparse.Namespace) -> None:
    sizes = [int(s) for item in args.sizes for s in str(item).split(",") if s]
    records, dense_ok = [], True
    for grid in sizes:
        n = grid * grid
        print(f"grid {grid}x{grid}: baseline ...", file=sys.stderr, flush=True)
        base = spawn("baseline", grid, args)
        impls = ["dense", "efficient"] if not args.efficient_only else ["efficient"]
        for impl in impls:
            if impl == "dense" and (not dense_ok or 16 * n * n > args.dense_limit_gb * 1e9):
                dense_ok = False  # once too big, every larger size is too
                records.append(
                    {
                        "grid": grid,
                        "n": n,
                        "impl": impl,
                        "skipped": f"not run: one N x N fp32 tensor = {human_bytes(4 * n * n)}",
                    }
                )
                continue
            print(f"grid {grid}x{grid}: {impl} ...", file=sys.stderr, flush=True)
            rec = spawn(impl, grid, args)
            if "error" not in rec and "error" not in base:
                rec["baseline_rss_bytes"] = base["peak_rss_bytes"]
                rec["rss_minus_base_bytes"] = rec["peak_rss_bytes"] - base["peak_rss_bytes"]
            elif "error" not in rec:
                rec = {**rec, "error": "baseline failed"}
            records.append(rec)
    done = [r for r in records if "temp_bytes" in r]
    print(
        f"contextual attention, B=1, c={args.channels}, rate 2, hole 20 %; CPUs={os.cpu_count()}; "
        f"jax {done[0]['jax'] if done else '?'}; repeats={args.repeats}"
    )
    print()
    print(markdown(table_rows(records), COLUMNS))
    busy = [f"{r['impl']} {r['grid']} {r['busy_before']:.0%}" for r in done if r["busy_before"] > 0.1]
    if busy:
        print(
            "\nNote: other processes kept the CPUs busy before: "
            + ", ".join(busy)
            + " (timings pessimistic)."
        )
    if args.csv:
        write_csv(args.csv, records)
        print(f"\nwrote {args.csv}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        default=["16", "32", "64", "128", "256"],
        help="attention grid sides G (N = G^2; space- or comma-separated), default: %(default)s",
    )
    p.add_argument("--channels", type=int, default=128, help="bottleneck channels c (default 128)")
    p.add_argument("--repeats", type=int, default=1, help="timed calls after the warm-up (median)")
    p.add_argument("--query-block", type=int, default=None, help="efficient path query block")
    p.add_argument("--key-block", type=int, default=None, help="efficient path key block")
    p.add_argument(
        "--dense-limit-gb",
        type=float,
        default=8.0,
        help="run dense only while 4 N x N fp32 tensors fit in this many GB (default %(default)s)",
    )
    p.add_argument("--efficient-only", action="store_true", help="skip the dense rows")
    p.add_argument(
        "--no-grad",
        dest="grad",
        action="store_false",
        help="skip compiling the gradient (the grad temp column)",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each run wait up to S seconds for other CPU use below 10%%",
    )
    p.add_argument(
        "--csv",
        nargs="?",
        const=DEFAULT_CSV,
        default=None,
        metavar="PATH",
        help=f"also write a CSV (default path {os.path.relpath(DEFAULT_CSV, REPO)})",
    )
    p.add_argument(
        "--child", choices=("baseline", "dense", "efficient"), help=argparse.SUPPRESS
    )  # child mode
    p.add_argument("--grid", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-grad", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(RESULT_TAG + json.dumps(run_child(args)), flush=True)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
