"""`hrinpaint demo` / `make demo`: convert the parity-fixture checkpoints and run both networks on a
bundled photo, printing shapes and timings and writing a before / stage 1 / stage 2 strip.

The fixture weights are random (the authors' released weights are not reachable from here), so the
pictures show that the machinery runs end to end, not what a trained model paints.
"""

from __future__ import annotations

import gzip
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SAMPLES = Path(__file__).resolve().parent / "assets" / "samples"


def load_sample(name: str = "astronaut.png") -> np.ndarray:
    """A bundled RGB photo as uint8 [H, W, 3]."""
    from PIL import Image

    with Image.open(SAMPLES / name) as im:
        return np.asarray(im.convert("RGB"))


def time_call(fn: Callable, *args, repeats: int = 3) -> tuple[float, float, object]:
    """(first call incl. compilation, median of ``repeats`` later calls) in seconds, and the output."""
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), out


def run_demo(
    out_dir: str | os.PathLike = "demo_output",
    fixtures: str | None = None,
    refine_size: int = 1024,
    log: Callable[[str], None] = print,
) -> Path:
    """Runs the demo; returns the path of the strip PNG."""
    import cv2
    import jax
    import jax.numpy as jnp
    from PIL import Image

    from convert_weights import TABLES
    from hrinpaint_jax.checkpoints import load_pretrained
    from hrinpaint_jax.conversion import convert_checkpoint
    from hrinpaint_jax.fixtures import find_fixtures
    from hrinpaint_jax.masks import centre_square_mask
    from hrinpaint_jax.ops.shift import reference_shift, shift_refine_input

    out_dir = Path(out_dir)
    fixtures = Path(fixtures) if fixtures else find_fixtures()
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"== converting the fixture checkpoints from {fixtures}")
    weights = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in (
            ("dfnet", "dfnet_random.pth.gz"),
            ("shift_refine", "refinement_random.pth.gz"),
        ):
            pth = Path(tmp) / src[:-3]
            with gzip.open(fixtures / src, "rb") as f, open(pth, "wb") as g:
                shutil.copyfileobj(f, g)
            weights[name] = out_dir / "weights" / name
            convert_checkpoint(
                pth, weights[name], TABLES, model=name, overwrite=True, log=lambda m: log("   " + m)
            )

    photo = load_sample()
    h, w = photo.shape[:2]
    hole = centre_square_mask(h, w)[..., None]
    rows = []

    log("== stage 1: DFNet at 512x512 (BGR input, mask 1 = known)")
    dfnet, dfnet_vars, _ = load_pretrained(weights["dfnet"])
    known = 1.0 - hole[None]
    img_miss = (photo[None, ..., ::-1] / 255.0 * known).astype(np.float32)
    dfnet_fn = jax.jit(lambda v, x, m: dfnet.apply(v, x, m, train=False))
    first, median, outs = time_call(dfnet_fn, dfnet_vars, jnp.asarray(img_miss), jnp.asarray(known))
    log("   outputs (finest first): " + ", ".join(str(tuple(o.shape)) for o in outs))
    rows.append(("DFNet", f"{h}x{w}", first, median))
    stage1 = np.asarray(outs[0][0, ..., ::-1])  # back to RGB
    stage1 = photo / 255.0 * (1 - hole) + stage1 * hole

    log(f"== stage 2: shift refinement U-Net at {refine_size}x{refine_size} (20 channels)")
    refine, refine_vars, _ = load_pretrained(weights["shift_refine"])
    size = (refine_size, refine_size)
    matched = cv2.resize(stage1.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    big_hole = cv2.resize(hole, size, interpolation=cv2.INTER_NEAREST)[None, ..., None]
    inputs = shift_refine_input(
        jnp.asarray(matched[None]), jnp.asarray(big_hole), reference_shift(refine_size)
    )
    log(f"   input {tuple(inputs.shape)} + mask {tuple(big_hole.shape)}")
    refine_fn = jax.jit(lambda v, x, m: refine.apply(v, x, m, train=False))
    first, median, refined = time_call(refine_fn, refine_vars, inputs, jnp.asarray(big_hole))
    log(f"   output {tuple(refined.shape)}")
    rows.append(("shift refinement U-Net", f"{refine_size}x{refine_size}", first, median))

    log("\n| network | size | first call (incl. compile) s | median of 3 s |")
    log("| --- | --- | --- | --- |")
    for name, res, a, b in rows:
        log(f"| {name} | {res} | {a:.2f} | {b:.2f} |")

    before = (photo * (1 - hole) + 255 * hole).astype(np.uint8)
    after = cv2.resize(np.asarray(refined[0]), (w, h), interpolation=cv2.INTER_AREA)
    strip = np.concatenate(
        [before, (stage1 * 255).astype(np.uint8), (np.clip(after, 0, 1) * 255).astype(np.uint8)],
        axis=1,
    )
    strip_path = out_dir / "demo_strip.png"
    Image.fromarray(strip).save(strip_path)
    log(
        f"\nwrote {strip_path} (input with hole | stage 1 | stage 2); the fixture weights are "
        "random, so the fill is noise-like by design"
    )
    return strip_path
