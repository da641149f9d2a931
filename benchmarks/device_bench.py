"""Accelerator timings (phases c and d of the device run), one CSV row per case, Markdown on stdout.

``inference``: the two-stage pipeline's one compiled call (``two_stage_forward``: DFNet at 512,
the upscale, the 20-channel input and the full-resolution refinement decoder) on square images
with a centred hole of a third of the side, and Zoom-to-Inpaint's ``zoom_forward`` (coarse at the
input size, SR x2, refinement with contextual attention at twice the size, bicubic zoom-out). The
networks have the papers' widths (the parity fixtures' random weights: timings do not depend on the
values). Per case: compile seconds (lower + compile), the median of ``--repeats`` calls after one
warm-up (``block_until_ready``), XLA's FLOPs of the compiled program, achieved TFLOP/s, and the
device memory XLA plans (arguments + outputs + temporaries) and the allocator's peak so far.

``train``: every stage's pmapped train step (paper configs, ``configs/<stage>.py``) on device
batches of the stage's shapes, per-device batch sizes ``--batches``, float32 and bfloat16: compile
seconds, median step time, images/s, XLA FLOPs per step and MFU against ``--peak-tflops`` (790: the
H200's measured bf16 dense rate).

Cases run in priority order and nothing starts after ``--deadline`` (epoch seconds).

    python benchmarks/device_bench.py inference --out results/c_inference.csv
    python benchmarks/device_bench.py train --out results/d_train.csv --batches 8 32
    python benchmarks/device_bench.py inference --tiny   # CPU rehearsal sizes
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

INFER_COLUMNS = (
    "pipeline",
    "size",
    "dtype",
    "compile_s",
    "median_ms",
    "min_ms",
    "gflop",
    "tflops",
    "planned_gb",
    "peak_gb",
    "note",
)
TRAIN_COLUMNS = (
    "stage",
    "size",
    "per_device_batch",
    "dtype",
    "compile_s",
    "step_ms",
    "images_s",
    "tflop_per_step",
    "tflops",
    "mfu_pct",
    "note",
)
TRAIN_STAGES = (
    "dfnet",
    "shift_refine",
    "zoom_joint_small",
    "zoom_pretrain_coarse",
    "zoom_pretrain_refine",
    "zoom_pretrain_sr",
)


class Table:
    def __init__(self, columns, path):
        self.columns = columns
        self.file = open(path, "w", newline="") if path else None  # noqa: SIM115
        self.writer = csv.DictWriter(self.file, columns) if self.file else None
        if self.writer:
            self.writer.writeheader()
        print(f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}", flush=True)

    errors = 0

    def row(self, r: dict):
        r = {c: r.get(c, "") for c in self.columns}
        self.errors += str(r.get("note", "")).startswith("error:")
        if self.writer:
            self.writer.writerow(r)
            self.file.flush()
        print(f"| {' | '.join(str(r[c]) for c in self.columns)} |", flush=True)


def compiled_cost(compiled) -> tuple[float | None, float | None]:
    """(FLOPs, planned bytes) of a compiled program, None where the backend does not say."""
    flops = planned = None
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops = float(cost.get("flops", 0.0)) or None
    except Exception:  # noqa: BLE001 - optional on some backends
        pass
    try:
        m = compiled.memory_analysis()
        planned = float(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)
    except Exception:  # noqa: BLE001
        pass
    return flops, planned


def peak_gb() -> str:
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
        return f"{stats.get('peak_bytes_in_use', 0) / 1e9:.2f}" if stats else ""
    except Exception:  # noqa: BLE001
        return ""


def time_calls(fn, args, repeats: int) -> list[float]:
    jax.block_until_ready(fn(*args))  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return times


def cast_model(model, dtype: str):
    """``model`` computing in ``dtype`` ('float32' keeps the loaded model's float32)."""
    from hrinpaint_jax.layers import compute_dtype

    return model.clone(dtype=compute_dtype(dtype))


# ---------------------------------------------------------------------------------------------
# Inference.


def two_stage_case(weights: Path, size: int, dtype: str):
    from hrinpaint_jax.checkpoints import load_pretrained
    from hrinpaint_jax.pipelines.two_stage import two_stage_forward

    dfnet, dv, _ = load_pretrained(weights / "dfnet")
    refine, rv, _ = load_pretrained(weights / "shift_refine")
    dfnet, refine = cast_model(dfnet, dtype), cast_model(refine, dtype)
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    mask = np.zeros((size, size), np.uint8)
    mask[size // 3 : 2 * size // 3, size // 3 : 2 * size // 3] = 255
    mask = jnp.asarray(mask)

    def run(dv, rv, image, mask):
        return two_stage_forward(
            dfnet, refine, dv, rv, image, mask, 0, 0, window_size=None, faithful=True
        )[0]

    return run, (dv, rv, image, mask)


def zoom_case(weights: Path, size: int, dtype: str):
    from hrinpaint_jax.checkpoints import load_pretrained
    from hrinpaint_jax.pipelines.zoom import zoom_forward

    model, variables, _ = load_pretrained(weights / "zoom")
    model = cast_model(model, dtype)
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.random((1, size, size, 3), dtype=np.float32))
    mask = np.zeros((1, size, size, 1), np.float32)
    mask[:, size // 3 : 2 * size // 3, size // 3 : 2 * size // 3] = 1.0

    def run(v, image, mask):
        return zoom_forward(model, v, image, mask)["final"]

    return run, (variables, image, jnp.asarray(mask))


def inference(args) -> int:
    weights = Path(args.weights)
    two_sizes, zoom_sizes = (
        ((256, 512), (64, 128)) if args.tiny else ((2048, 1024, 4096), (256, 512, 1024))
    )
    cases = []
    for dtype in ("bfloat16", "float32"):  # priority: the headline sizes first
        cases.append(("two_stage", two_sizes[0], dtype))
        cases.append(("zoom", zoom_sizes[0], dtype))
    for size in two_sizes[1:]:
        cases += [("two_stage", size, d) for d in ("bfloat16", "float32")]
    for size in zoom_sizes[1:]:
        cases += [("zoom", size, d) for d in ("bfloat16", "float32")]
    table = Table(INFER_COLUMNS, args.out)
    for pipeline, size, dtype in cases:
        if args.deadline and time.time() > args.deadline:
            table.row({"pipeline": pipeline, "size": size, "dtype": dtype, "note": "not run (deadline)"})
            continue
        try:
            make = two_stage_case if pipeline == "two_stage" else zoom_case
            fn, fargs = make(weights, size, dtype)
            t = time.perf_counter()
            compiled = jax.jit(fn).lower(*fargs).compile()
            compile_s = time.perf_counter() - t
            flops, planned = compiled_cost(compiled)
            times = time_calls(compiled, fargs, args.repeats)
            med = statistics.median(times)
            label = f"{size}" if pipeline == "two_stage" else f"{size} (refine at {2 * size})"
            table.row(
                {
                    "pipeline": pipeline,
                    "size": label,
                    "dtype": dtype,
                    "compile_s": f"{compile_s:.1f}",
                    "median_ms": f"{1e3 * med:.2f}",
                    "min_ms": f"{1e3 * min(times):.2f}",
                    "gflop": f"{flops / 1e9:.1f}" if flops else "",
                    "tflops": f"{flops / med / 1e12:.1f}" if flops else "",
                    "planned_gb": f"{planned / 1e9:.2f}" if planned else "",
                    "peak_gb": peak_gb(),
                }
            )
            del compiled, fargs
        except Exception as e:  # noqa: BLE001 - report and go on with the other cases
            table.row(
                {
                    "pipeline": pipeline,
                    "size": size,
                    "dtype": dtype,
                    "note": f"error: {type(e).__name__}: {str(e).strip()[:200]}".replace("\n", " "),
                }
            )
    return 1 if table.errors else 0


# ---------------------------------------------------------------------------------------------
# Training.


def stage_config(stage: str, tiny: bool, dtype: str, weights: Path):
    import importlib

    if tiny:
        from configs import tiny as tiny_configs

        config = tiny_configs.get_config({"zoom_joint_small": "zoom_joint"}.get(stage, stage))
    else:
        config = importlib.import_module(f"configs.{stage}").get_config()
    config.dtype = dtype
    if config.task == "shift_refine":
        config.refine.stage1_dir = ""
        config.refine.stage1_weights = str(weights / "dfnet")
    return config


def train_case(stage, per_device, dtype, args):
    from hrinpaint_jax import parallel
    from hrinpaint_jax.tasks import get_task

    config = stage_config(stage, args.tiny, dtype, Path(args.weights))
    if config.task == "shift_refine" and args.tiny:
        # the tiny refinement stage trains on the fixture DFNet only at its own widths
        config.refine.stage1_weights = str(Path(args.weights) / "dfnet")
    task = get_task(config)
    n = jax.local_device_count()
    states = task.init_states(jax.random.key(0))
    frozen = task.frozen()
    batch = task.example_batch(n, per_device)
    rng = np.random.default_rng(0)
    batch = {
        k: (rng.random(v.shape, np.float32) if v.dtype == np.float32 and "mask" not in k else v)
        for k, v in batch.items()
    }
    for k in batch:
        if "mask" in k:  # a centred hole
            m = np.zeros(batch[k].shape, np.float32)
            h = m.shape[2]
            m[:, :, h // 4 : 3 * h // 4, h // 4 : 3 * h // 4] = 1.0
            batch[k] = m
    if "patch_top" in batch:
        batch["patch_top"][:] = 0
        batch["patch_left"][:] = 0
    r_states, r_frozen = parallel.replicate(states), parallel.replicate(frozen)
    r_rng = parallel.replicate(jax.random.key(0))
    step = jax.pmap(task.train_step, axis_name=parallel.AXIS, donate_argnums=(0,))
    t = time.perf_counter()
    compiled = step.lower(r_states, r_frozen, batch, r_rng).compile()
    compile_s = time.perf_counter() - t
    flops, _ = compiled_cost(compiled)
    r_states, metrics = compiled(r_states, r_frozen, batch, r_rng)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        r_states, metrics = compiled(r_states, r_frozen, batch, r_rng)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    crop = config.data.crop_size
    size = f"{config.refine.patch_size} of {crop}" if config.task == "shift_refine" else str(crop)
    row = {
        "stage": stage,
        "size": size,
        "per_device_batch": per_device,
        "dtype": dtype,
        "compile_s": f"{compile_s:.1f}",
        "step_ms": f"{1e3 * step_s:.1f}",
        "images_s": f"{per_device * n / step_s:.1f}",
    }
    if flops:
        row["tflop_per_step"] = f"{flops / 1e12:.3f}"
        row["tflops"] = f"{flops / step_s / 1e12:.1f}"
        row["mfu_pct"] = f"{100 * flops / step_s / (args.peak_tflops * 1e12):.1f}"
    return row


def train(args) -> int:
    table = Table(TRAIN_COLUMNS, args.out)
    cases = [(s, b, d) for b in args.batches for d in ("bfloat16", "float32") for s in args.stages]
    for stage, per_device, dtype in cases:
        if args.deadline and time.time() > args.deadline:
            table.row(
                {
                    "stage": stage,
                    "per_device_batch": per_device,
                    "dtype": dtype,
                    "note": "not run (deadline)",
                }
            )
            continue
        try:
            table.row(train_case(stage, per_device, dtype, args))
        except Exception as e:  # noqa: BLE001
            table.row(
                {
                    "stage": stage,
                    "per_device_batch": per_device,
                    "dtype": dtype,
                    "note": f"error: {type(e).__name__}: {str(e).strip()[:200]}".replace("\n", " "),
                }
            )
        jax.clear_caches()
    return 1 if table.errors else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("inference", "train"):
        s = sub.add_parser(name)
        s.add_argument("--out", default=None)
        s.add_argument(
            "--weights",
            default=str(REPO / ".device" / "fixtures" / "weights"),
            help="converted fixture weights (dfnet, shift_refine, zoom)",
        )
        s.add_argument("--deadline", type=float, default=None)
        s.add_argument("--tiny", action="store_true", help="rehearsal sizes (CPU)")
    sub.choices["inference"].add_argument("--repeats", type=int, default=10)
    t = sub.choices["train"]
    t.add_argument("--stages", nargs="+", default=list(TRAIN_STAGES))
    t.add_argument("--batches", nargs="+", type=int, default=[8, 32])
    t.add_argument("--steps", type=int, default=10)
    t.add_argument("--peak-tflops", type=float, default=790.0)
    args = p.parse_args()
    print(
        f"backend {jax.default_backend()}: {jax.local_device_count()} x {jax.devices()[0].device_kind}"
    )
    return inference(args) if args.command == "inference" else train(args)


if __name__ == "__main__":
    sys.exit(main())
