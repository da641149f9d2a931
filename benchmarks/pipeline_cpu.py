"""CPU latency and peak RSS of the whole two-stage pipeline, printed as a Markdown table.

Companion of ``forward_cpu.py`` (same structure: one subprocess per case for a clean peak RSS,
``--wait-idle``, CSV out). A case is ``SIZE-MODE``: a square SIZE x SIZE image through
``TwoStageInpainter(faithful=True)`` called on uint8 arrays, exactly as the CLI does, with mode

* ``auto``: the default, hole-local decoder when the hole's window is smaller than the image;
* ``full``: ``hole_local=False``, the refinement decoder over the whole image;
* ``tiled``: ``tile_size=--tile-size`` (1024), ``tile_overlap=256``.

The image is a deterministic smooth-plus-noise RGB picture; the mask is the seed-000 test protocol
mask (``centre_square_mask``: a centred square hole a third of the side, 255 = hole). The first
call is timed on its own (compilation of the jitted stages + one run), then the median and min of
``--repeats`` calls; the peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) is read after them.
``--breakdown`` then times the stages separately (``dfnet_stage``, the cv2 upscale, the refinement)
and prints XLA's memory analysis of the compiled refinement (after the peak RSS was read).

Weights: ``--weights DFNET_DIR REFINE_DIR``, else the parity fixtures' random checkpoints
(``dfnet_random.pth.gz``, ``refinement_random.pth.gz``) converted once into ``--weights-cache``.
Timings do not depend on the weight values.

Run from the repository root::

    python benchmarks/pipeline_cpu.py --wait-idle 30 --out benchmarks/results/pipeline_cpu.csv
    python benchmarks/pipeline_cpu.py --cases 4096-auto 4096-full --repeats 1
    python benchmarks/pipeline_cpu.py --cases 2048-auto --breakdown

XLA flags, ``--threads`` and the idleness note work as in ``forward_cpu.py``. A child whose RSS
passes ``--rss-limit-gb`` (default: the memory available at start, less 1 GB) is killed, so an
oversized case fails instead of waking the OOM killer.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("auto", "full", "tiled")
DEFAULT_CASES = [f"{s}-{m}" for s in (1024, 1536, 2048, 4096) for m in ("auto", "full")]
# The authors' PyTorch pipeline on a comparable 2-core CPU: size -> (seconds, peak GB).
REFERENCE = {1024: (4.7, 2.1), 2048: (17.0, 6.2), 4096: (None, 22.0)}
RESULT_TAG = "PIPELINE_CPU_RESULT "
COLUMNS = (
    "size",
    "mode",
    "first call s",
    "median s",
    "min s",
    "peak RSS GB",
    "reference s",
    "ours/ref time",
    "reference GB",
    "ours/ref memory",
)


def parse_case(case: str) -> tuple[int, str]:
    """``'2048-auto'`` -> ``(2048, 'auto')``."""
    size, _, mode = case.partition("-")
    if not size.isdigit() or mode not in MODES:
        raise argparse.ArgumentTypeError(f"bad case {case!r}: want SIZE-MODE, MODE one of {MODES}")
    return int(size), mode


def ensure_weights(cache: str) -> list[str]:
    """Converts the fixtures' random checkpoints into ``cache`` unless already there."""
    from pathlib import Path

    dirs = [os.path.join(cache, "dfnet"), os.path.join(cache, "shift_refine")]
    if all(os.path.isdir(os.path.join(d, "metadata")) for d in dirs):
        return dirs
    sys.path.insert(0, REPO)
    from hrinpaint_jax.commands.demo import convert_fixture_weights
    from hrinpaint_jax.fixtures import find_fixtures

    convert_fixture_weights(Path(cache), find_fixtures(), log=lambda m: None)
    print(f"converted the fixture checkpoints into {cache}", file=sys.stderr)
    return dirs


# ---------------------------------------------------------------------------------------------
# Child: one case in this process.
# ---------------------------------------------------------------------------------------------


def make_inputs(height: int, width: int | None = None):
    """Smooth-plus-noise uint8 RGB image (``height`` x ``width``, square by default) and the
    centre-square uint8 mask (255 = hole)."""
    import numpy as np

    from hrinpaint_jax.masks import centre_square_mask

    width = width or height
    rng = np.random.default_rng(0)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    image = np.empty((height, width, 3), np.uint8)
    for c in range(3):  # per channel, in float32, to keep the inputs' own memory small
        smooth = 0.5 + 0.25 * np.sin(2 * np.pi * (c + 1) * x + 3 * y) + 0.2 * np.cos(7 * y - x)
        noisy = smooth + 0.03 * rng.standard_normal((height, width), dtype=np.float32)
        image[..., c] = np.clip(noisy * 255.0 + 0.5, 0, 255)
    mask = (centre_square_mask(height, width) * 255).astype(np.uint8)
    return image, mask


def breakdown(inpainter, image, mask) -> dict:
    """Times the pipeline's jitted pieces one by one (``dfnet_stage``, ``stage1_upscaled`` = DFNet
    + upscale, ``refine_stage``, and ``two_stage_forward``, the whole call) and reads XLA's memory
    analysis of the compiled whole call and refinement. Untiled modes; sizes multiple of 256."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from hrinpaint_jax.pipelines import two_stage as ts

    def timed(fn, n=3):
        out = jax.block_until_ready(fn())  # compiles
        times = []
        for _ in range(n):
            start = time.perf_counter()
            out = jax.block_until_ready(fn())
            times.append(time.perf_counter() - start)
        return statistics.median(times), out

    def memory(jitted, *args, **kwargs):
        mem = jitted.lower(*args, **kwargs).compile().memory_analysis()
        return round(mem.temp_size_in_bytes / 1e9, 3)

    hole = mask == 255
    top, left, wh, ww = ts.hole_window(hole, inpainter.refine.decoder_margin())
    local = inpainter.hole_local if inpainter.hole_local is not None else (wh, ww) != mask.shape
    window = {"window_size": (wh, ww) if local else None, "faithful": True}
    corner = (np.int32(top), np.int32(left))
    res = {"window": f"{wh}x{ww}" if local else "full"}
    res["to_device_s"], (image_dev, mask_dev) = timed(lambda: (jnp.asarray(image), jnp.asarray(mask)))
    d_args = (inpainter.dfnet, inpainter.dfnet_variables, image_dev, mask_dev)
    res["dfnet_stage_s"], _ = timed(lambda: ts.dfnet_stage(*d_args, faithful=True))
    res["stage1_upscaled_s"], (up, _) = timed(lambda: ts.stage1_upscaled(*d_args, faithful=True))
    r_args = (inpainter.refine, inpainter.refine_variables, image_dev, mask_dev, up, *corner)
    res["refine_stage_s"], _ = timed(lambda: ts.refine_stage(*r_args, **window))
    res["refine_stage_xla_temp_gb"] = memory(ts.refine_stage, *r_args, **window)
    w_args = (inpainter.dfnet, inpainter.refine, inpainter.dfnet_variables)
    w_args += (inpainter.refine_variables, image_dev, mask_dev, *corner)
    res["two_stage_forward_s"], (out, _) = timed(lambda: ts.two_stage_forward(*w_args, **window))
    res["two_stage_forward_xla_temp_gb"] = memory(ts.two_stage_forward, *w_args, **window)
    res["to_host_s"], _ = timed(lambda: np.asarray(out))
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}


def cpu_ticks() -> tuple[float, float, float]:
    """(busy s of all CPUs, total s of all CPUs, this process's CPU s) so far."""
    import resource

    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    own = resource.getrusage(resource.RUSAGE_SELF)
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz, own.ru_utime + own.ru_stime


def others_share(before, after) -> float:
    """Fraction of all CPUs' time that other processes used between two ``cpu_ticks()``."""
    busy, total, own = (a - b for a, b in zip(after, before, strict=True))
    return max(0.0, busy - own) / max(total, 1e-9)


def run_case(args: argparse.Namespace) -> dict:
    """Times one case in this process and returns its result record."""
    import resource

    import jax

    from hrinpaint_jax.pipelines.two_stage import TwoStageInpainter

    def rss_gb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9

    size, mode = args.size, args.mode
    options = {"auto": {}, "full": {"hole_local": False}, "tiled": {"tile_size": args.tile_size}}
    inpainter = TwoStageInpainter.from_pretrained(*args.weights, faithful=True, **options[mode])
    image, mask = make_inputs(size)
    loaded_rss = rss_gb()

    start = time.perf_counter()
    inpainter(image, mask == 255)
    first_s = time.perf_counter() - start
    times = []
    ticks = cpu_ticks()
    for _ in range(args.repeats):
        start = time.perf_counter()
        inpainter(image, mask == 255)  # returns a host numpy array: nothing left to block on
        times.append(time.perf_counter() - start)
    busy_during = others_share(ticks, cpu_ticks())
    record = {
        "case": f"{size}-{mode}",
        "size": size,
        "mode": mode,
        "tile_size": args.tile_size if mode == "tiled" else None,
        "first_call_s": first_s,
        "times_s": times,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "peak_rss_gb": rss_gb(),
        "loaded_rss_gb": loaded_rss,
        "busy_during": busy_during,
        "cpus": len(os.sched_getaffinity(0)),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax": jax.__version__,
    }
    if args.breakdown and mode != "tiled":
        try:
            record["breakdown"] = breakdown(inpainter, image, mask)
        except Exception as e:  # noqa: BLE001 - the pipeline's internals may have moved on
            record["breakdown"] = {"error": f"{type(e).__name__}: {e}"}
    return record


def child_main(args: argparse.Namespace) -> None:
    if args.threads:  # must happen before XLA sizes its thread pools
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    print(RESULT_TAG + json.dumps(run_case(args)), flush=True)


# ---------------------------------------------------------------------------------------------
# Parent: one subprocess per case, then the table.
# ---------------------------------------------------------------------------------------------


def code_version() -> str:
    """Commit of the repository, with ``+dirty`` when ``hrinpaint_jax/`` has uncommitted changes."""

    def git(*cmd):
        proc = subprocess.run(["git", "-C", REPO, *cmd], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "hrinpaint_jax") else "")


def mem_available_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e9
    return float("inf")


def run_watched(cmd: list[str], env: dict, limit_gb: float) -> tuple[int, str, str, float]:
    """Runs ``cmd``; kills it if its RSS passes ``limit_gb``. Returns rc, stdout, stderr, max RSS
    seen by polling (GB; 0 if never sampled)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        seen = 0.0
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    kb = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
                rss = kb * 1024 / 1e9
            except (OSError, StopIteration):
                rss = 0.0
            seen = max(seen, rss)
            if rss > limit_gb:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.1)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), seen


def spawn(case: str, args: argparse.Namespace) -> dict:
    """Runs ``case`` in a fresh interpreter; returns its record or ``{'error': ...}``."""
    size, mode = parse_case(case)
    cmd = [sys.executable, os.path.abspath(__file__), "--size", str(size), "--mode", mode]
    cmd += ["--repeats", str(args.repeats), "--tile-size", str(args.tile_size)]
    cmd += ["--weights", *args.weights]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.breakdown:
        cmd += ["--breakdown"]
    env = dict(os.environ, XLA_FLAGS=args.xla_flags)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    busy = wait_idle(args.wait_idle)
    code = code_version()  # the pipeline may be edited between cases
    start = time.perf_counter()
    rc, stdout, stderr, seen = run_watched(cmd, env, args.rss_limit_gb)
    wall = time.perf_counter() - start
    for line in stdout.splitlines():
        if line.startswith(RESULT_TAG):
            record = json.loads(line[len(RESULT_TAG) :])
            extra = {"busy_before": busy, "wall_s": wall, "polled_rss_gb": seen, "code": code}
            return {**record, **extra}
    if seen > args.rss_limit_gb:
        error = f"killed: RSS > {args.rss_limit_gb:.1f} GB"
    else:
        error = f"failed (rc={rc}) at RSS {seen:.1f} GB"
        tail = (stderr or stdout).strip().splitlines()[-5:]
        print(f"[{case}] {error}:\n  " + "\n  ".join(tail), file=sys.stderr)
    return {
        "case": case,
        "size": size,
        "mode": mode,
        "error": error,
        "wall_s": wall,
        "polled_rss_gb": seen,
        "code": code,
    }


def table_row(record: dict) -> list[str]:
    ref_s, ref_gb = REFERENCE.get(record["size"], (None, None))
    mode = record["mode"] + (f" {record['tile_size']}" if record.get("tile_size") else "")
    row = [f"{record['size']}x{record['size']}", mode]
    refs = [f"{ref_s:.1f}" if ref_s else "-", "-", f"{ref_gb:.1f}" if ref_gb else "-", "-"]
    if "error" in record:
        return row + [record["error"], "", "", ""] + refs
    refs[1] = f"{record['median_s'] / ref_s:.2f}" if ref_s else "-"
    refs[3] = f"{record['peak_rss_gb'] / ref_gb:.2f}" if ref_gb else "-"
    return row + [
        f"{record['first_call_s']:.2f}",
        f"{record['median_s']:.2f}",
        f"{record['min_s']:.2f}",
        f"{record['peak_rss_gb']:.2f}",
        *refs,
    ]


def write_csv(path: str, records: list[dict]) -> None:
    fields = [
        "case", "size", "mode", "tile_size", "first_call_s", "median_s", "min_s", "times_s",
        "peak_rss_gb", "loaded_rss_gb", "reference_s", "time_ratio", "reference_gb",
        "memory_ratio", "cpus", "busy_before", "busy_during", "attempts", "wall_s", "polled_rss_gb",
        "code", "xla_flags", "jax", "error", "breakdown",
    ]  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            ref_s, ref_gb = REFERENCE.get(r["size"], (None, None))
            ok = "error" not in r
            writer.writerow(
                {
                    **r,
                    "times_s": " ".join(f"{t:.4f}" for t in r.get("times_s", [])),
                    "reference_s": ref_s,
                    "time_ratio": r["median_s"] / ref_s if ok and ref_s else None,
                    "reference_gb": ref_gb,
                    "memory_ratio": r["peak_rss_gb"] / ref_gb if ok and ref_gb else None,
                    "breakdown": json.dumps(r["breakdown"]) if "breakdown" in r else None,
                }
            )


def target_notes(records: list[dict]) -> list[str]:
    """The bars: at 2048 <= 2/3 of the reference time and <= 1/2 its memory; 4096 within 24 GiB."""
    notes = []
    for r in records:
        if "error" in r:
            if r["size"] == 4096:
                notes.append(f"{r['case']}: did not run ({r['error']})")
            continue
        if r["size"] == 2048:
            t, m = r["median_s"] / REFERENCE[2048][0], r["peak_rss_gb"] / REFERENCE[2048][1]
            ok = "met" if t <= 2 / 3 and m <= 0.5 else "NOT met"
            notes.append(
                f"{r['case']}: time {t:.2f} x ref (bar 0.67), memory {m:.2f} x ref (bar 0.50): {ok}"
            )
        if r["size"] == 4096:
            gib = r["peak_rss_gb"] * 1e9 / 2**30
            notes.append(
                f"{r['case']}: peak {gib:.1f} GiB (bar 24 GiB): {'met' if gib <= 24 else 'NOT met'}"
            )
    return notes


def contaminated(record: dict, threshold: float = 0.1) -> bool:
    """Did other processes use more than ``threshold`` of the CPUs around the timed calls?"""
    return max(record.get("busy_before", 0.0), record.get("busy_during", 0.0)) > threshold


def parent_main(args: argparse.Namespace) -> None:
    cases = [c for item in args.cases for c in item.split(",") if c]
    for case in cases:
        try:
            parse_case(case)
        except argparse.ArgumentTypeError as e:
            sys.exit(f"pipeline_cpu.py: error: {e}")
    if args.xla_flags is None:  # what the hrinpaint CLI runs with (hrinpaint_jax/runtime.py)
        sys.path.insert(0, REPO)
        from hrinpaint_jax.runtime import tune_cpu_flags

        env = {"XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
        tune_cpu_flags(env)
        args.xla_flags = env["XLA_FLAGS"]
    if not args.weights:
        args.weights = ensure_weights(args.weights_cache)
    if args.rss_limit_gb is None:
        args.rss_limit_gb = mem_available_gb() - 1.0
    records = []
    for case in cases:
        for attempt in range(1 + args.retries):
            print(f"running {case} ...", file=sys.stderr, flush=True)
            record = {**spawn(case, args), "attempts": attempt + 1}
            if "error" in record or not contaminated(record):
                break
            print(f"[{case}] other CPU use {record['busy_during']:.0%}", file=sys.stderr)
        records.append(record)
        if "breakdown" in records[-1]:
            print(f"[{case}] breakdown: {json.dumps(records[-1]['breakdown'])}", file=sys.stderr)
    done = [r for r in records if "error" not in r]
    code = ", ".join(sorted({r["code"] for r in records}))
    print(
        f"XLA_FLAGS={args.xla_flags or '(default)'}; CPUs={done[0]['cpus'] if done else '?'} of "
        f"{os.cpu_count()}; repeats={args.repeats}; faithful=True; "
        f"jax {done[0]['jax'] if done else '?'}; code {code}; "
        "GB = 1e9 bytes"
    )
    print()
    print(markdown([table_row(r) for r in records], COLUMNS))
    notes = target_notes(records)
    if notes:
        print("\nTargets: " + "; ".join(notes))
    busy = [
        f"{r['case']} {r['busy_before']:.0%} before, {r['busy_during']:.0%} during"
        for r in done
        if contaminated(r)
    ]
    if busy:
        print(
            "\nNote: other processes used the CPUs before or during the timed calls of some cases"
            f" ({', '.join(busy)}): those timings are pessimistic."
        )
    if args.out:
        write_csv(args.out, records)
        print(f"\nwrote {args.out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--cases",
        nargs="+",
        default=DEFAULT_CASES,
        help="SIZE-MODE cases (space- or comma-separated), default: %(default)s",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed calls after the first")
    p.add_argument("--tile-size", type=int, default=1024, help="tile size of the tiled mode")
    p.add_argument(
        "--weights",
        nargs=2,
        default=None,
        metavar=("DFNET_DIR", "REFINE_DIR"),
        help="converted weights directories (default: the fixtures' random checkpoints, cached)",
    )
    p.add_argument(
        "--weights-cache",
        default="/tmp/hrinpaint_bench_weights",
        help="where the fixture checkpoints are converted to once (default: %(default)s)",
    )
    p.add_argument(
        "--xla-flags",
        default=None,
        help="XLA_FLAGS for the subprocesses (default: the environment's plus the CLI's tuning, "
        "see hrinpaint_jax/runtime.py; --xla-flags= for XLA's own defaults)",
    )
    p.add_argument("--threads", type=int, default=0, help="pin each subprocess to this many CPUs")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each case wait up to S seconds for other CPU use below 10%%",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=0,
        help="rerun a case up to this many times while other processes used >10%% of the CPUs",
    )
    p.add_argument(
        "--rss-limit-gb",
        type=float,
        default=None,
        help="kill a case whose RSS passes this (default: memory available at start - 1 GB)",
    )
    p.add_argument(
        "--breakdown", action="store_true", help="also time the stages and analyse XLA memory"
    )
    p.add_argument("--out", help="also write the results to this CSV file")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # child mode
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mode:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
