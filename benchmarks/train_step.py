"""Training step time, images/s and MFU of every stage at its paper patch size.

Runs the real pmapped train step of each stage config (``configs/<stage>.py``) on zero batches of
the config's shapes (no input pipeline: this times the device), after one compiling step. FLOPs per
step come from XLA's cost analysis of the compiled step; MFU = FLOPs / (step time x peak), with the
peak given by ``--peak-tflops`` (e.g. 989 for an H100 SXM bf16 dense, 67 for its fp32 non-tensor
cores; CPUs: leave it out). The shift-refinement stage gets a randomly initialised frozen DFNet.

    python benchmarks/train_step.py --per-device-batch 1 --steps 3
    python benchmarks/train_step.py --stages zoom_joint_small --per-device-batch 2 --peak-tflops 989
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

STAGES = (
    "dfnet",
    "shift_refine",
    "zoom_pretrain_coarse",
    "zoom_pretrain_refine",
    "zoom_pretrain_sr",
    "zoom_joint_small",
)


def random_dfnet_weights(config, directory: str) -> str:
    import jax

    from hrinpaint_jax.checkpoints import save_pretrained
    from hrinpaint_jax.models import dummy_inputs, get_model, model_kwargs

    kwargs = model_kwargs("dfnet", config)
    model = get_model("dfnet", **kwargs)
    variables = jax.jit(lambda r: model.init(r, *dummy_inputs("dfnet", 512, 512), train=False))(
        jax.random.key(0)
    )
    return save_pretrained(os.path.join(directory, "dfnet"), "dfnet", variables, kwargs)


def time_stage(name: str, per_device: int, steps: int, tmp: str) -> dict:
    import jax

    from hrinpaint_jax import parallel
    from hrinpaint_jax.tasks import TASKS

    module, _, arg = name.partition(":")  # e.g. 'ours:dfnet' = configs/ours.py:dfnet
    get_config = importlib.import_module(f"configs.{module}").get_config
    config = get_config(arg) if arg else get_config()
    if per_device is None:
        per_device = config.data.global_batch_size // jax.local_device_count()
    devices = jax.local_device_count()
    config.data.global_batch_size = per_device * devices
    if config.task == "shift_refine":
        config.refine.stage1_weights = random_dfnet_weights(config, tmp)
    task = TASKS[config.task](config)
    states = task.init_states(jax.random.key(0))
    frozen = task.frozen()
    batch = task.example_batch(devices, per_device)
    step = jax.pmap(task.train_step, axis_name=parallel.AXIS, donate_argnums=(0,))
    r_states, r_frozen = parallel.replicate(states), parallel.replicate(frozen)
    r_rng = parallel.replicate(jax.random.key(0))
    flops = None
    try:  # XLA's count for one device's program
        lowered = jax.jit(
            jax.vmap(task.train_step, axis_name=parallel.AXIS),
        ).lower(
            jax.tree.map(lambda x: x[:1], r_states),
            jax.tree.map(lambda x: x[:1], r_frozen),
            jax.tree.map(lambda x: x[:1], batch),
            r_rng[:1],
        )
        cost = lowered.compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops = float(cost.get("flops", 0.0)) or None
    except Exception as e:  # noqa: BLE001 - cost analysis is optional on some backends
        print(f"  ({name}: no XLA cost analysis: {e})", file=sys.stderr)
    t0 = time.perf_counter()
    r_states, metrics = step(r_states, r_frozen, batch, r_rng)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        r_states, metrics = step(r_states, r_frozen, batch, r_rng)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - t0) / steps
    crop = config.data.crop_size
    size = f"{config.refine.patch_size} (of {crop})" if config.task == "shift_refine" else str(crop)
    return {"stage": name, "size": size, "batch": per_device * devices, "compile_s": compile_s,
            "step_s": step_s, "images_s": per_device * devices / step_s,
            "flops": flops * devices if flops else None}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", nargs="+", default=list(STAGES),
                   help="config modules, optionally with an argument: dfnet, ours:zoom_sr, ...")
    p.add_argument("--per-device-batch", type=int, default=1,
                   help="images per device (0: the config's global batch)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, default=None, help="per-device peak for MFU")
    args = p.parse_args()

    import jax

    print(f"{jax.local_device_count()} x {jax.devices()[0].device_kind}; "
          f"{args.per_device_batch} image(s) per device; mean of {args.steps} steps")  # fmt: skip
    print("| stage | patch | batch | compile s | step s | images/s | TFLOP/step | MFU |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.stages:
            r = time_stage(name, args.per_device_batch or None, args.steps, tmp)
            tflop = f"{r['flops'] / 1e12:.3f}" if r["flops"] else "-"
            mfu = "-"
            if r["flops"] and args.peak_tflops:
                peak = args.peak_tflops * 1e12 * jax.local_device_count()
                mfu = f"{100 * r['flops'] / (r['step_s'] * peak):.1f} %"
            row = (r["stage"], r["size"], r["batch"], f"{r['compile_s']:.1f}", f"{r['step_s']:.3f}",
                   f"{r['images_s']:.2f}", tflop, mfu)  # fmt: skip
            print("| " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
