"""Parity of every ported network and both pipelines on the current backend (phase b of the device
run), in float32 with ``jax_default_matmul_precision=highest`` (TF32 would hide errors) and in
bfloat16 compute, against the reference implementations' stored outputs; and one pmapped training
step on the accelerator against the same step sharded over 4 CPU devices.

Reads the trimmed fixtures and pre-converted checkpoints of ``make device-bundle``
(``.device/fixtures``; ``--fixtures``). Writes one CSV row per check (``--out``) and prints a
Markdown table. Exit status 1 if a float32 check fails its tolerance (bf16 rows are reported against
their own, looser, stated tolerances and fail the run too).

Tolerances (max |diff| on [0, 1] images unless said otherwise):
* float32: DFNet and the refinement U-Net 1e-4 (CPU lands at 1e-6; cuDNN's algorithms sum in
  another order), Zoom-to-Inpaint stages 2e-4 (TF's own float32 noise on the refinement is 1.2e-4,
  fixtures/zti/README.md), the two-stage pipeline's uint8 output within 1 grey level on >= 99.9 %
  of values (as tests/test_two_stage.py);
* bfloat16 (8 mantissa bits, relative step 2^-8 = 0.4 %): mean |diff| <= 4e-3 (one grey level) and
  max |diff| <= 0.25 on the networks; the pipeline's uint8 output mean |diff| <= 2 levels;
* the pmapped step: the update (global norm) within 2e-3 relative, the loss within 1e-5 relative
  (4 CPU devices against 1 CPU device: 3.5e-4, the summation order of the gradient mean and of
  the synchronised BatchNorm statistics).

    python benchmarks/device_parity.py --out results/b_parity.csv
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The pmap check shards a step over 4 CPU devices beside the accelerator.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

COLUMNS = ("check", "dtype", "max_abs", "mean_abs", "tolerance", "passed", "seconds", "note")
F32_NET, F32_ZTI = 1e-4, 2e-4
BF16_MEAN, BF16_MAX = 4e-3, 0.25


def nhwc(a):
    return np.transpose(a, (0, 2, 3, 1))


def diff_stats(got, want) -> tuple[float, float]:
    d = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    return float(d.max()), float(d.mean())


def net_row(name, dtype, got, want, f32_tol, seconds, note=""):
    mx, mean = diff_stats(got, want)
    if dtype == "float32":
        ok, tol = mx <= f32_tol, f"max<={f32_tol:g}"
    else:
        ok, tol = mean <= BF16_MEAN and mx <= BF16_MAX, f"mean<={BF16_MEAN:g};max<={BF16_MAX:g}"
    return {
        "check": name,
        "dtype": dtype,
        "max_abs": f"{mx:.3g}",
        "mean_abs": f"{mean:.3g}",
        "tolerance": tol,
        "passed": ok,
        "seconds": f"{seconds:.1f}",
        "note": note,
    }


def with_dtype(model, dtype: str):
    """``model`` computing in ``dtype`` ('float32' keeps the loaded model's float32)."""
    from hrinpaint_jax.layers import compute_dtype

    return model.clone(dtype=compute_dtype(dtype))


def check_dfnet(fx, dtype):
    from hrinpaint_jax.checkpoints import load_pretrained

    data = np.load(fx / "dfnet_case.npz")
    model, variables, _ = load_pretrained(fx / "weights" / "dfnet")
    model = with_dtype(model, dtype)
    t = time.perf_counter()
    outs = jax.jit(lambda v, x, m: model.apply(v, x, m, train=False))(
        variables, nhwc(data["img_miss"]), nhwc(data["mask"])
    )
    outs = [np.asarray(o, np.float32) for o in outs]
    s = time.perf_counter() - t
    rows = []
    for k, out in enumerate(outs):
        rows.append(
            net_row(f"dfnet out_{k}", dtype, out, nhwc(data[f"out_{k}"]), F32_NET, s if k == 0 else 0)
        )
    return rows


def check_refine(fx, dtype):
    from hrinpaint_jax.checkpoints import load_pretrained
    from hrinpaint_jax.ops.shift import reference_shift, shift_refine_input

    data = np.load(fx / "refinement_case.npz")
    model, variables, _ = load_pretrained(fx / "weights" / "shift_refine")
    model = with_dtype(model, dtype)
    matched, mask = nhwc(data["img"]), nhwc(data["mask"])
    image = shift_refine_input(
        jnp.asarray(matched), jnp.asarray(mask), reference_shift(matched.shape[1])
    )
    t = time.perf_counter()
    out = jax.jit(lambda v, x, m: model.apply(v, x, m, train=False))(variables, image, mask)
    out = np.asarray(out, np.float32)
    return [net_row("refinement U-Net", dtype, out, nhwc(data["out"]), F32_NET, time.perf_counter() - t)]


def check_pipeline(fx, dtype):
    from hrinpaint_jax.checkpoints import load_pretrained
    from hrinpaint_jax.pipelines.two_stage import TwoStageInpainter

    case = np.load(fx / "pipeline_case.npz")
    dfnet, dv, _ = load_pretrained(fx / "weights" / "dfnet")
    refine, rv, _ = load_pretrained(fx / "weights" / "shift_refine")
    pipe = TwoStageInpainter(dfnet, dv, refine, rv, faithful=True, dtype=dtype)
    t = time.perf_counter()
    out, stages = pipe(case["image_rgb"], case["mask"] == 255, return_stages=True)
    s = time.perf_counter() - t
    rows = []
    for name, got, want in (
        ("two-stage stage 1 (uint8)", stages["dfnet_stage_rgb"], case["dfnet_stage_rgb"]),
        ("two-stage pipeline (uint8)", out, case["final_rgb"]),
    ):
        d = np.abs(np.asarray(got, np.int32) - np.asarray(want, np.int32))
        if dtype == "float32":
            ok, tol = d.max() <= 1 and (d == 0).mean() >= 0.999, "max<=1;equal>=99.9%"
        else:
            ok, tol = d.mean() <= 2.0, "mean<=2 levels"
        rows.append(
            {
                "check": name,
                "dtype": dtype,
                "max_abs": int(d.max()),
                "mean_abs": f"{d.mean():.3g}",
                "tolerance": tol,
                "passed": bool(ok),
                "seconds": f"{s:.1f}",
                "note": f"{(d == 0).mean():.4%} equal",
            }
        )
        s = 0.0
    return rows


def check_zoom(fx, dtype):
    from hrinpaint_jax.checkpoints import load_pretrained
    from hrinpaint_jax.pipelines.zoom import zoom_forward

    case = np.load(fx / "zti" / "zti_case.npz")
    model, variables, _ = load_pretrained(fx / "weights" / "zoom")
    model = with_dtype(model, dtype)
    t = time.perf_counter()
    out = jax.jit(lambda v, x, m: zoom_forward(model, v, x, m))(
        variables, jnp.asarray(case["lr_image"]), jnp.asarray(case["mask_lr"])
    )
    out = jax.tree.map(lambda x: np.asarray(x, np.float32), out)
    s = time.perf_counter() - t
    rows = [net_row("zoom coarse", dtype, out["coarse"], case["coarse_out"], F32_ZTI, s)]
    rows.append(
        net_row("zoom refine (zoomed out)", dtype, out["refine_lr"], case["refine_out_lr"], F32_ZTI, 0)
    )
    rows.append(net_row("zoom final", dtype, out["final"], case["final_out"], F32_ZTI, 0))
    return rows


def check_attention(fx, dtype):
    from hrinpaint_jax.ops.contextual_attention import apply_attention_map, attention_map_dense

    with np.load(fx / "zti" / "contextual_attention_case.npz") as data:
        case = {k: data[k] for k in data.files}
    rows = []
    cast = (lambda x: jnp.asarray(x, jnp.bfloat16)) if dtype == "bfloat16" else jnp.asarray
    for p in ("a", "b"):
        t = time.perf_counter()
        att = attention_map_dense(cast(case[f"{p}_feat_small"]), jnp.asarray(case[f"{p}_mask_s"]))
        applied = apply_attention_map(
            cast(case[f"{p}_feat"]), jnp.asarray(case[f"{p}_att"]), jnp.asarray(case[f"{p}_mask_b"])
        )
        s = time.perf_counter() - t
        rows.append(
            net_row(
                f"attention map ({p})", dtype, np.asarray(att, np.float32), case[f"{p}_att"], 1e-5, s
            )
        )
        rows.append(
            net_row(
                f"attention applied ({p})",
                dtype,
                np.asarray(applied, np.float32),
                case[f"{p}_applied"],
                F32_NET,
                0,
            )
        )
    return rows


def check_pmap_step():
    """One dfnet training step (tiny config, global batch 4): pmapped over the accelerator vs
    pmapped over 4 CPU devices (synchronised BatchNorm, averaged gradients). Adam's first update is
    lr * sign(g) for any g, which a comparison cannot use; with eps = 1 it is lr * g / (|g| + 1),
    about lr * g, so the parameter changes compare the gradients themselves (global norm of the
    difference over the norm of the change)."""
    from configs import tiny
    from hrinpaint_jax import parallel
    from hrinpaint_jax.tasks import get_task

    config = tiny.get_config("dfnet")
    config.data.global_batch_size = 4
    config.optim.eps = 1.0
    task = get_task(config)
    states = task.init_states(jax.random.key(0))
    frozen = task.frozen()
    batch = next(task.batches(0, num_devices=1, process_index=0, process_count=1))
    before = jax.device_get(states["g"].params)
    results = {}
    t = time.perf_counter()
    for platform in ("cpu", "accelerator"):
        devices = jax.devices("cpu")[:4] if platform == "cpu" else jax.local_devices()[:1]
        n = len(devices)
        b = jax.tree.map(lambda x, n=n: np.asarray(x).reshape(n, -1, *x.shape[2:]), batch)
        step = jax.pmap(task.train_step, axis_name=parallel.AXIS, devices=devices)
        rep = functools.partial(parallel.replicate, devices=devices)
        new, metrics = step(rep(states), rep(frozen), parallel.shard_to_devices(b, devices),
                            rep(jax.random.key(1)))  # fmt: skip
        params, loss = jax.tree.map(lambda x: x[0], (new["g"].params, metrics["loss"]))
        results[platform] = jax.device_get((params, loss))
    (p_cpu, l_cpu), (p_acc, l_acc) = results["cpu"], results["accelerator"]
    leaves = zip(jax.tree.leaves(before), jax.tree.leaves(p_cpu), jax.tree.leaves(p_acc), strict=True)
    diff2 = change2 = 0.0
    for p0, pc, pa in leaves:
        dc, da = np.asarray(pc, np.float64) - p0, np.asarray(pa, np.float64) - p0
        diff2 += float(np.sum((dc - da) ** 2))
        change2 += float(np.sum(dc**2))
    rel = (diff2 / max(change2, 1e-30)) ** 0.5
    loss_rel = abs(float(l_cpu) - float(l_acc)) / abs(float(l_cpu))
    ok = rel <= 2e-3 and loss_rel <= 1e-5
    return [
        {
            "check": "pmapped dfnet step: 1 accelerator vs 4 CPU devices",
            "dtype": "float32",
            "max_abs": f"{rel:.3g}",
            "mean_abs": f"{loss_rel:.3g}",
            "tolerance": "update rel<=2e-3;loss rel<=1e-5",
            "passed": ok,
            "seconds": f"{time.perf_counter() - t:.1f}",
            "note": "max_abs: |update diff| / |update| (global norms); mean_abs: loss rel.",
        }
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fixtures", default=str(REPO / ".device" / "fixtures"))
    p.add_argument("--out", default=None, help="CSV file")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument(
        "--checks", nargs="+", default=["dfnet", "refine", "pipeline", "zoom", "attention", "pmap"]
    )
    p.add_argument("--deadline", type=float, default=None, help="epoch seconds: start nothing after it")
    args = p.parse_args()
    fx = Path(args.fixtures)
    checks = {
        "dfnet": check_dfnet,
        "refine": check_refine,
        "pipeline": check_pipeline,
        "zoom": check_zoom,
        "attention": check_attention,
    }
    rows: list[dict] = []
    writer = None
    out = open(args.out, "w", newline="") if args.out else None  # noqa: SIM115
    if out:
        writer = csv.DictWriter(out, COLUMNS)
        writer.writeheader()

    def emit(new_rows):
        for r in new_rows:
            rows.append(r)
            if writer:
                writer.writerow(r)
                out.flush()
            print(f"| {' | '.join(str(r[c]) for c in COLUMNS)} |", flush=True)

    print(f"backend {jax.default_backend()}, {jax.devices()[0].device_kind}")
    print(f"| {' | '.join(COLUMNS)} |\n|{'---|' * len(COLUMNS)}")
    for name in args.checks:
        for dtype in args.dtypes if name != "pmap" else ["float32"]:
            if args.deadline and time.time() > args.deadline:
                print(f"(deadline: {name} {dtype} not run)")
                continue
            precision = "highest" if dtype == "float32" else "default"
            try:
                with jax.default_matmul_precision(precision):
                    emit(check_pmap_step() if name == "pmap" else checks[name](fx, dtype))
            except Exception as e:  # noqa: BLE001 - one broken check must not hide the others
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                emit(
                    [
                        {
                            "check": name,
                            "dtype": dtype,
                            "max_abs": "",
                            "mean_abs": "",
                            "tolerance": "",
                            "passed": False,
                            "seconds": "",
                            "note": f"error: {type(e).__name__}: {first}"[:300],
                        }
                    ]
                )
    if out:
        out.close()
    failed = [r for r in rows if not r["passed"]]
    print(f"{len(rows) - len(failed)} of {len(rows)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
