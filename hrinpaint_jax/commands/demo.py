"""`hrinpaint demo` / `make demo`: inpaint two bundled photos (a centred square hole, a third of
the side) with both methods (two-stage and Zoom-to-Inpaint) using the bundled default weights (our
models trained on real photos, ``configs/ours.py``; neither photo was trained on), printing timings
and writing a before / mask / two-stage / zoom strip.

``--trained WORKDIR`` first shows a model you trained yourself with ``configs/demo.py`` (``make
demo-train``); ``convert_fixture_weights`` turns the parity fixtures' random checkpoints into a
weights folder (tests use it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hrinpaint_jax.image_io import InputError

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples"
DEMO_PHOTOS = ("coffee.png", "astronaut.png")
METHODS = ("two_stage", "zoom")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run both networks on a bundled photo")
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="timed calls per photo and method; the first compiles (default 2)",
    )
    p.add_argument(
        "--trained",
        default=None,
        metavar="WORKDIR",
        help="first inpaint the held-out photo with the model trained there by "
        "train.py --config configs/demo.py (make demo does)",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="weights folder with dfnet/, shift_refine/ and zoom/ (default $HRINPAINT_WEIGHTS, "
        "else the bundled weights)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hrinpaint_jax.pipelines.load import resolve_weights

    # Every cheap check first: a refused run writes nothing (not even the output folder).
    _check_out_dir(args.out)
    for method in METHODS:
        resolve_weights(args.weights, method)
    if args.trained:
        run_trained_demo(args.trained, args.out)
    run_demo(args.out, args.weights, repeats=args.repeats)
    return 0


def _check_out_dir(out_dir: str | os.PathLike) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a folder")
    return out_dir


def load_sample(name: str = "astronaut.png", folder: Path = SAMPLES) -> np.ndarray:
    """A bundled RGB photo (or another PNG in ``folder``) as uint8 [H, W, 3]."""
    from PIL import Image

    with Image.open(folder / name) as im:
        return np.asarray(im.convert("RGB"))


def convert_fixture_weights(
    out_dir: Path, fixtures: Path, log: Callable[[str], None], zoom: bool = True
) -> Path:
    """Converts the fixtures' checkpoints into ``out_dir/{dfnet,shift_refine}`` and, with ``zoom``,
    the Zoom-to-Inpaint TF checkpoint into ``out_dir/zoom``."""
    from convert_weights import TABLES
    from hrinpaint_jax.conversion import convert_checkpoint
    from hrinpaint_jax.fixtures import gunzip, unpack_zti_checkpoint

    indent = lambda m: log("   " + m)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in (
            ("dfnet", "dfnet_random.pth.gz"),
            ("shift_refine", "refinement_random.pth.gz"),
        ):
            pth = gunzip(fixtures / src, Path(tmp) / src[:-3])
            convert_checkpoint(pth, out_dir / name, TABLES, model=name, overwrite=True, log=indent)
        if zoom:
            prefix = unpack_zti_checkpoint(fixtures, tmp)
            convert_checkpoint(
                prefix, out_dir / "zoom", TABLES, model="zoom", overwrite=True, log=indent
            )
    return out_dir


def run_demo(
    out_dir: str | os.PathLike = "demo_output",
    weights: str | None = None,
    log: Callable[[str], None] = print,
    repeats: int = 2,
    photos: tuple[str, ...] = DEMO_PHOTOS,
) -> Path:
    """Runs the demo (``repeats`` timed calls per photo and method; the first one compiles) with
    the weights folder ``weights`` (default: ``$HRINPAINT_WEIGHTS``, else the bundled weights);
    returns the path of the before / mask / two-stage / zoom strip."""
    from PIL import Image

    from hrinpaint_jax.commands.inpaint import MaskOptions, inpaint_file
    from hrinpaint_jax.masks import centre_square_mask
    from hrinpaint_jax.pipelines.load import load_inpainter, resolve_weights

    out_dir = _check_out_dir(out_dir)
    folders = {m: resolve_weights(weights, m) for m in METHODS}
    log(f"== weights: {folders['two_stage']}")
    inpainters = {m: load_inpainter(str(folders[m]), method=m) for m in METHODS}
    out_dir.mkdir(parents=True, exist_ok=True)  # only now that there is something to write

    rows, strips = [], []
    for name in photos:
        photo = load_sample(name)
        h, w = photo.shape[:2]
        mask = (centre_square_mask(h, w) * 255).astype(np.uint8)
        stem = Path(name).stem
        mask_path = out_dir / f"{stem}_mask.png"
        Image.fromarray(mask).save(mask_path)
        before = np.where(mask[..., None] == 255, 255, photo).astype(np.uint8)
        strip = [before, np.repeat(mask[..., None], 3, -1)]
        for method, inpainter in inpainters.items():
            out_path = out_dir / f"{stem}_{method}.png"
            log(
                f"== hrinpaint inpaint --method {method} --image {SAMPLES / name} "
                f"--mask {mask_path} --output {out_path}"
            )
            times = []
            for _ in range(max(1, repeats)):  # the first call compiles for this size
                start = time.perf_counter()
                inpaint_file(
                    inpainter,
                    SAMPLES / name,
                    mask_path,
                    out_path,
                    MaskOptions(),
                    overwrite=True,
                    warn=lambda *a: None,
                )
                times.append(time.perf_counter() - start)
            rows.append((name, f"{w}x{h}", method, times[0], min(times[1:], default=None)))
            strip.append(load_sample(out_path.name, folder=out_dir))
        strips.append(strip)

    log("\n| photo | size (WxH) | method | first call (incl. compile) s | later calls, best s |")
    log("| --- | --- | --- | --- | --- |")
    for name, size, method, first, later in rows:
        later = "-" if later is None else f"{later:.2f}"
        log(f"| {name} | {size} | {method} | {first:.2f} | {later} |")
    width = max(panel.shape[1] for row in strips for panel in row)
    pad = lambda p: np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)))  # noqa: E731
    strip = np.concatenate([np.concatenate([pad(p) for p in row], axis=1) for row in strips])
    strip_path = out_dir / "demo_strip.png"
    Image.fromarray(strip).save(strip_path)
    log(f"\nwrote {strip_path} (before | mask | two_stage | zoom)")
    return strip_path


def run_trained_demo(
    workdir: str | os.PathLike,
    out_dir: str | os.PathLike = "demo_output",
    log: Callable[[str], None] = print,
    photo: str = "astronaut.png",
) -> Path:
    """After ``python train.py --config configs/demo.py --workdir WORKDIR``: exports the trained
    Zoom-to-Inpaint model to ``OUT/weights_trained/zoom``, inpaints the held-out bundled ``photo``
    (centre square hole) with it and writes ``OUT/trained_strip.png`` (before | mask | after).
    Returns the strip's path."""
    from PIL import Image

    from hrinpaint_jax.commands.inpaint import MaskOptions, inpaint_file
    from hrinpaint_jax.export import export_weights
    from hrinpaint_jax.masks import centre_square_mask
    from hrinpaint_jax.pipelines.load import load_inpainter
    from hrinpaint_jax.train_checkpoints import is_workdir

    workdir, out_dir = Path(workdir), _check_out_dir(out_dir)
    if not is_workdir(workdir):
        raise InputError(f"{workdir} is not a train.py workdir (no checkpoints/ inside)")
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "weights_trained"
    weights.mkdir(exist_ok=True)
    export_weights(workdir, weights / "zoom", overwrite=True)
    log(f"== exported the trained model of {workdir} to {weights / 'zoom'}")
    image = load_sample(photo)
    h, w = image.shape[:2]
    mask = (centre_square_mask(h, w) * 255).astype(np.uint8)
    stem = Path(photo).stem
    mask_path, out_path = out_dir / f"{stem}_mask.png", out_dir / f"{stem}_trained_zoom.png"
    Image.fromarray(mask).save(mask_path)
    log(f"== hrinpaint inpaint --method zoom --weights {weights} --image {SAMPLES / photo} "
        f"--mask {mask_path} --output {out_path}")  # fmt: skip
    start = time.perf_counter()
    inpaint_file(load_inpainter(str(weights), method="zoom"), SAMPLES / photo, mask_path, out_path,
                 MaskOptions(), overwrite=True, warn=lambda *a: None)  # fmt: skip
    log(f"   {w}x{h} in {time.perf_counter() - start:.1f} s (including compilation)")
    before = np.where(mask[..., None] == 255, 255, image).astype(np.uint8)
    after = load_sample(out_path.name, folder=out_dir)
    strip_path = out_dir / "trained_strip.png"
    Image.fromarray(np.concatenate([before, np.repeat(mask[..., None], 3, -1), after], axis=1)).save(
        strip_path
    )
    samples = sorted((workdir / "samples").glob("step_*.png"))
    log(f"wrote {strip_path} (before | mask | after, {photo} was held out of training)")
    if samples:
        log(f"training sample grid (input | mask | output | target): {samples[-1]}")
    log(f"TensorBoard logs: tensorboard --logdir {workdir}")
    return strip_path
