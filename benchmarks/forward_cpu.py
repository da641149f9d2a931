"""CPU forward timings of DFNet and the shift refinement U-Net, printed as a Markdown table.

Each case (network x size) runs in its own subprocess (this script re-invoked with ``--case``), so
its peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``, compile included) is not polluted by the other
cases. A case jits ``model.apply(..., train=False)``, times compilation plus the first call once,
then reports the median and min of ``--repeats`` timed calls (``jax.block_until_ready``). Inputs are
a random image in [0, 1] with a centred square hole a third of the side; the refinement net gets
the 19 channels of ``shift_refine_input`` with the reference shift. Variables come from random init
(parameter shapes do not depend on the image size, so init runs at 256x256) or from ``--weights``.

Run from the repository root::

    python benchmarks/forward_cpu.py                 # all cases, the CLI's XLA flags
    python benchmarks/forward_cpu.py --cases refine-1024 --dtype bfloat16
    python benchmarks/forward_cpu.py --xla-flags= --out benchmarks/results/xla_defaults.csv
    python benchmarks/forward_cpu.py --weights weights/dfnet weights/refinement

Cases are ``dfnet-SIZE`` or ``refine-SIZE`` (SIZE a multiple of 256). By default the subprocesses
run with the XLA flags the ``hrinpaint`` CLI uses (``hrinpaint_jax/runtime.py``); ``--xla-flags``
replaces ``XLA_FLAGS`` instead (``--xla-flags=`` gives XLA's own defaults). Write it with ``=``
(``--xla-flags="--..."``): argparse would read a separate value starting with ``--`` as an option.
XLA aborts on an unknown flag, and that row then reads "failed".
XLA:CPU has no intra-op thread-count option: its thread pool is sized from the CPUs the process
may run on, so ``--threads N`` pins each subprocess to N CPUs with ``sched_setaffinity``.
Timings on a shared machine are only as good as its idleness: the CPU use of other processes in the
second before each case is recorded (a note follows the table when it exceeds 10 %), and
``--wait-idle S`` waits up to S seconds for the machine to go quiet before each case.

XLA flags (jaxlib 0.10.2): convolutions go to YNNPACK by default (``__ynn_fusion``);
``--xla_cpu_experimental_ynn_fusion_type=`` (empty) sends them to XLA's Eigen convolution, which
was ~12-24 % faster for the refinement net (512-2048) and on par for DFNet on a 2-core AVX-512
Xeon. The oneDNN flags are accepted but do not rewrite convolutions in this build,
``--xla_cpu_use_thunk_runtime`` is a deprecated no-op, and bfloat16 convolutions are computed in
float32 (converts around an f32 convolution), so ``--dtype bfloat16`` is not faster.
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

NETWORKS = {"dfnet": "dfnet", "refine": "shift_refine"}  # case prefix -> registry name
DEFAULT_CASES = ("dfnet-512", "refine-512", "refine-1024", "refine-2048")
# Reference forward times in seconds (the bar to compare against); absent where there is none.
REFERENCE_S = {"dfnet-512": 0.58, "refine-1024": 3.8, "refine-2048": 15.1}
RESULT_TAG = "FORWARD_CPU_RESULT "
COLUMNS = (
    "network",
    "size",
    "compile+first s",
    "median s",
    "min s",
    "peak RSS GB",
    "reference s",
    "ours/ref",
)


def parse_case(case: str) -> tuple[str, int]:
    """``'refine-1024'`` -> ``('refine', 1024)``."""
    prefix, _, size = case.partition("-")
    if prefix not in NETWORKS or not size.isdigit() or int(size) % 256:
        raise argparse.ArgumentTypeError(
            f"bad case {case!r}: want dfnet-SIZE or refine-SIZE with SIZE a multiple of 256"
        )
    return prefix, int(size)


# ---------------------------------------------------------------------------------------------
# Child: one case in this process.
# ---------------------------------------------------------------------------------------------


def make_inputs(prefix: str, size: int):
    """Realistic inputs: random image in [0, 1], centred square hole of a third of the side."""
    import jax.numpy as jnp
    import numpy as np

    from hrinpaint_jax.masks import centre_square_mask
    from hrinpaint_jax.ops.shift import reference_shift, shift_refine_input

    rng = np.random.default_rng(0)
    image = rng.random((1, size, size, 3), dtype=np.float32)
    hole = centre_square_mask(size, size)[None, ..., None]
    if prefix == "dfnet":  # DFNet: holes zeroed in the image, mask 1 = known.
        return jnp.asarray(image * (1.0 - hole)), jnp.asarray(1.0 - hole)
    matched, hole = jnp.asarray(image), jnp.asarray(hole)
    return shift_refine_input(matched, hole, reference_shift(size)), hole


def load_variables(name: str, weights: list[str], dtype):
    """(model, variables, source): from the first ``weights`` dir holding ``name``, else init."""
    import jax

    from hrinpaint_jax.checkpoints import load_pretrained, read_metadata
    from hrinpaint_jax.models import dummy_inputs, get_model

    overrides = {} if dtype is None else {"dtype": dtype}
    for directory in weights:
        if read_metadata(directory).get("model") == name:
            model, variables, _ = load_pretrained(directory, **overrides)
            return model, variables, directory
    model = get_model(name, **overrides)
    init = jax.jit(lambda key, *xs: model.init(key, *xs, train=False))
    return model, init(jax.random.key(0), *dummy_inputs(name, 256, 256)), "random init"


def run_case(args: argparse.Namespace) -> dict:
    """Times one case in this process and returns its result record."""
    import resource

    import jax
    import jax.numpy as jnp

    prefix, size = args.case, args.size
    name = NETWORKS[prefix]
    dtype = None if args.dtype == "float32" else getattr(jnp, args.dtype)
    model, variables, source = load_variables(name, args.weights, dtype)
    inputs = make_inputs(prefix, size)
    jax.block_until_ready((variables, inputs))

    forward = jax.jit(lambda v, *xs: model.apply(v, *xs, train=False))
    start = time.perf_counter()
    compiled = forward.lower(variables, *inputs).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(compiled(variables, *inputs))
    first_s = time.perf_counter() - start

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(variables, *inputs))
        times.append(time.perf_counter() - start)
    return {
        "case": f"{prefix}-{size}",
        "network": name,
        "size": size,
        "dtype": args.dtype,
        "compile_s": compile_s,
        "first_run_s": first_s,
        "times_s": times,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        "variables": source,
        "cpus": len(os.sched_getaffinity(0)),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax": jax.__version__,
    }


def child_main(args: argparse.Namespace) -> None:
    if args.threads:  # must happen before XLA sizes its thread pools (at jax import / first use)
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    print(RESULT_TAG + json.dumps(run_case(args)), flush=True)


# ---------------------------------------------------------------------------------------------
# Parent: one subprocess per case, then the table.
# ---------------------------------------------------------------------------------------------


def busy_fraction(seconds: float = 1.0) -> float:
    """Fraction of all CPUs' time spent busy (by anyone) over the next ``seconds``."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_idle(timeout: float, threshold: float = 0.1) -> float:
    """Waits up to ``timeout`` s for CPU use to drop below ``threshold``; returns the last use."""
    deadline = time.monotonic() + timeout
    busy = busy_fraction()
    while busy > threshold and time.monotonic() < deadline:
        busy = busy_fraction()
    return busy


def spawn(case: str, args: argparse.Namespace) -> dict:
    """Runs ``case`` in a fresh interpreter; returns its record or ``{'error': ...}``."""
    prefix, size = parse_case(case)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--case",
        prefix,
        "--size",
        str(size),
        "--repeats",
        str(args.repeats),
        "--dtype",
        args.dtype,
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.weights:
        cmd += ["--weights", *args.weights]
    env = dict(os.environ)
    if args.xla_flags is not None:
        env["XLA_FLAGS"] = args.xla_flags
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    busy = wait_idle(args.wait_idle)
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return {**json.loads(line[len(RESULT_TAG) :]), "busy_before": busy}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    print(f"[{case}] failed (rc={proc.returncode}):\n  " + "\n  ".join(tail), file=sys.stderr)
    return {
        "case": case,
        "network": NETWORKS[prefix],
        "size": size,
        "error": f"failed (rc={proc.returncode})",
    }


def table_row(record: dict) -> list[str]:
    ref = REFERENCE_S.get(record["case"])
    row = [record["network"], f"{record['size']}x{record['size']}"]
    if "error" in record:
        return row + [record["error"], "", "", "", f"{ref:.2f}" if ref else "-", "-"]
    return row + [
        f"{record['compile_s'] + record['first_run_s']:.2f}",
        f"{record['median_s']:.3f}",
        f"{record['min_s']:.3f}",
        f"{record['peak_rss_gb']:.2f}",
        f"{ref:.2f}" if ref else "-",
        f"{record['median_s'] / ref:.2f}" if ref else "-",
    ]


def markdown(rows: list[list[str]], columns: tuple[str, ...] = COLUMNS) -> str:
    """A Markdown table: the first two columns left-aligned, the numbers right-aligned."""
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(columns))) + "|",
    ]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def write_csv(path: str, records: list[dict], args: argparse.Namespace) -> None:
    fields = [
        "case",
        "network",
        "size",
        "dtype",
        "compile_s",
        "first_run_s",
        "median_s",
        "min_s",
        "times_s",
        "peak_rss_gb",
        "reference_s",
        "ratio",
        "variables",
        "cpus",
        "busy_before",
        "xla_flags",
        "jax",
        "error",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            ref = REFERENCE_S.get(record["case"])
            writer.writerow(
                {
                    **record,
                    "dtype": args.dtype,
                    "reference_s": ref,
                    "times_s": " ".join(f"{t:.4f}" for t in record.get("times_s", [])),
                    "ratio": record["median_s"] / ref if ref and "median_s" in record else None,
                }
            )


def parent_main(args: argparse.Namespace) -> None:
    cases = [c for item in args.cases for c in item.split(",") if c]
    for case in cases:
        try:
            parse_case(case)
        except argparse.ArgumentTypeError as e:
            sys.exit(f"forward_cpu.py: error: {e}")
    if args.xla_flags is None:  # what the hrinpaint CLI runs with (hrinpaint_jax/runtime.py)
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from hrinpaint_jax.runtime import tune_cpu_flags

        env = {"XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
        tune_cpu_flags(env)
        args.xla_flags = env["XLA_FLAGS"]
    records = []
    for case in cases:
        print(f"running {case} ...", file=sys.stderr, flush=True)
        records.append(spawn(case, args))
    done = [r for r in records if "error" not in r]
    flags = args.xla_flags if args.xla_flags is not None else os.environ.get("XLA_FLAGS", "")
    sources = ", ".join(sorted({r["variables"] for r in done})) or "?"
    print(
        f"XLA_FLAGS={flags or '(default)'}; dtype={args.dtype}; "
        f"CPUs={done[0]['cpus'] if done else '?'} of {os.cpu_count()}; "
        f"repeats={args.repeats}; variables: {sources}; jax {done[0]['jax'] if done else '?'}"
    )
    print()
    print(markdown([table_row(r) for r in records]))
    busy = [f"{r['case']} {r['busy_before']:.0%}" for r in done if r["busy_before"] > 0.1]
    if busy:
        print(
            f"\nNote: other processes kept the CPUs busy before some cases ({', '.join(busy)}):"
            " those timings are pessimistic."
        )
    if args.out:
        write_csv(args.out, records, args)
        print(f"\nwrote {args.out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--cases",
        nargs="+",
        default=list(DEFAULT_CASES),
        help="cases to run (space- or comma-separated), default: %(default)s",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs after the warm-up")
    p.add_argument(
        "--xla-flags",
        default=None,
        help="XLA_FLAGS for the subprocesses (default: the environment's plus the tuning the hrinpaint "
        "CLI applies, see hrinpaint_jax/runtime.py; pass --xla-flags= for XLA's own defaults)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="pin each subprocess to this many CPUs (default: all available)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="computation dtype (parameters stay float32)",
    )
    p.add_argument(
        "--weights",
        nargs="+",
        default=[],
        metavar="DIR",
        help="weights directories (save_pretrained); networks without one use init",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each case wait up to S seconds for other CPU use below 10%%",
    )
    p.add_argument("--out", help="also write the results to this CSV file")
    p.add_argument("--case", choices=sorted(NETWORKS), help=argparse.SUPPRESS)  # child mode
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
