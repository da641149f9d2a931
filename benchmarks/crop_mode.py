"""Whole-image vs context-crop inpainting for small holes in big photos (issues 21 and 27).

For each held-out photo (``data/photos/holdout``, never trained on; ``make photos``) at each size, a
few small object-sized holes are drawn (seeded by the photo's name). Each method fills them on the
whole photo and with ``CropInpainter`` at a few context multiples. Prints a Markdown table of hole
PSNR (all hole pixels), hole LPIPS (measured in a 256 px window around each hole group, the same
windows for every row) and seconds per image (the first image of each row excluded: compilation).

    python benchmarks/crop_mode.py                       # 2048 and 3840 px, both methods
    python benchmarks/crop_mode.py --sizes 2048 --methods two_stage --contexts 4

``--many`` (issue 27) measures many small holes instead: 20 or 40 blobs and strokes of 8-24 px at
seeded random places on each photo, cut to each W x H (upscaled where needed), filled by the
default crop mode (and, up to ``--whole-up-to`` pixels, crops without the colour match and
``--whole-image``) against OpenCV's Telea.
Each method and mode runs in its own process, so its peak RSS is its own; seconds per image follow
a warm-up call (compilation excluded). Hole MAE is over the hole's RGB values, in grey levels.

    python benchmarks/crop_mode.py --many 20 40 --shapes 1536x1024 6000x4000 8000x6000 --limit 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrinpaint_jax.runtime import tune_cpu_flags  # noqa: E402

tune_cpu_flags()


def small_holes(name: str, shape: tuple[int, int]) -> np.ndarray:
    """1-3 object-sized ellipses, each 2-5 % of the short side across, away from the border."""
    import cv2

    rng = np.random.default_rng(sum(name.encode()))
    h, w = shape
    hole = np.zeros(shape, np.uint8)
    for _ in range(rng.integers(1, 4)):
        ry, rx = (rng.uniform(0.01, 0.025, 2) * min(h, w)).astype(int) + 4
        cy, cx = rng.integers(h // 8, h - h // 8), rng.integers(w // 8, w - w // 8)
        cv2.ellipse(hole, (int(cx), int(cy)), (int(rx), int(ry)), float(rng.uniform(0, 180)), 0, 360,
                    1, -1)  # fmt: skip
    return hole.astype(bool)


def load_photos(folder: Path, long_side: int) -> dict[str, np.ndarray]:
    from PIL import Image

    photos = {}
    for path in sorted(folder.glob("*.png")) + sorted(folder.glob("*.jpg")):
        im = Image.open(path).convert("RGB")
        scale = long_side / max(im.size)
        if scale != 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        photos[path.stem] = np.asarray(im)
    return photos


def score(pred: np.ndarray, target: np.ndarray, hole: np.ndarray, lpips_params) -> tuple[float, float]:
    import jax.numpy as jnp

    from hrinpaint_jax import metrics
    from hrinpaint_jax.lpips import hole_lpips_from_maps, lpips_maps
    from hrinpaint_jax.ops.pixels import from_uint8
    from hrinpaint_jax.pipelines.crop import crop_boxes

    x, y = from_uint8(pred)[None], from_uint8(target)[None]
    psnr = float(metrics.hole_psnr(x, y, hole[None])[0])
    total, weight = 0.0, 0
    for y0, y1, x0, x1 in crop_boxes(hole, context=2.0, min_crop=256):
        window = hole[y0:y1, x0:x1]
        maps = lpips_maps(jnp.asarray(x[:, y0:y1, x0:x1]), jnp.asarray(y[:, y0:y1, x0:x1]), lpips_params)
        value = float(hole_lpips_from_maps(maps, jnp.asarray(window, jnp.float32)[None, ..., None])[0])
        total, weight = total + value * window.sum(), weight + window.sum()
    return psnr, total / weight


def many_holes(name: str, shape: tuple[int, int], count: int) -> np.ndarray:
    """``count`` blobs (ellipses) and strokes (lines 3-6 px thick) of 8-24 px at seeded random places."""
    import cv2

    rng = np.random.default_rng([sum(name.encode()), count])
    h, w = shape
    hole = np.zeros(shape, np.uint8)
    for i in range(count):
        size = int(rng.integers(8, 25))
        cy, cx = int(rng.integers(size, h - size)), int(rng.integers(size, w - size))
        angle = float(rng.uniform(0, 180))
        if i % 2:
            axes = (size // 2, max(2, int(size * rng.uniform(0.15, 0.5))))
            cv2.ellipse(hole, (cx, cy), axes, angle, 0, 360, 1, -1)
        else:
            dy, dx = np.sin(np.radians(angle)) * size / 2, np.cos(np.radians(angle)) * size / 2
            ends = (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy))
            cv2.line(hole, *ends, 1, int(rng.integers(3, 7)))
    return hole.astype(bool)


def cut_photo(path: Path, width: int, height: int) -> np.ndarray:
    """The photo resized to cover ``width`` x ``height`` (Lanczos) and centre-cropped to it."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    scale = max(width / im.width, height / im.height)
    im = im.resize((max(width, round(im.width * scale)), max(height, round(im.height * scale))),
                   Image.LANCZOS)  # fmt: skip
    left, top = (im.width - width) // 2, (im.height - height) // 2
    return np.asarray(im.crop((left, top, left + width, top + height)))


def hole_errors(pred: np.ndarray, target: np.ndarray, hole: np.ndarray) -> tuple[float, float]:
    """(mean absolute error in grey levels, PSNR in dB) over the hole's RGB values."""
    diff = pred[hole].astype(np.float64) - target[hole]
    mse = max(float(np.square(diff).mean()), 1e-12)
    return float(np.abs(diff).mean()), 10 * float(np.log10(255.0**2 / mse))


def many_case(args) -> None:
    """One method and mode over the photos at one shape and hole count (child process): prints one
    JSON line with per-image errors, crop counts, seconds and this process's peak RSS."""
    import resource

    from hrinpaint_jax.pipelines.crop import CropInpainter
    from hrinpaint_jax.pipelines.load import load_inpainter

    method, mode, shape, count = args.case
    width, height = (int(v) for v in shape.split("x"))
    inpainter = load_inpainter(args.weights, method=method)
    run = inpainter
    if mode != "whole":  # "crop" (the default) or "crop-raw" (no colour match)
        run = CropInpainter(inpainter, context=args.contexts[0], min_side=args.min_side,
                            colour_match=mode == "crop")  # fmt: skip
    paths = photo_paths(Path(args.photos), args.limit)
    rows = []
    for i, path in enumerate(paths):
        image = cut_photo(path, width, height)
        hole = many_holes(path.stem, image.shape[:2], int(count))
        if i == 0:  # compile outside the timing: a typical crop, or the whole photo once
            warm = np.zeros((args.min_side, args.min_side), bool)
            warm[args.min_side // 2 :][:, args.min_side // 2 :][:40, :40] = True
            warm_image = np.zeros((args.min_side, args.min_side, 3), np.uint8)
            inpainter(warm_image, warm) if mode != "whole" else run(image, hole)
        start = time.perf_counter()
        out = run(image, hole)
        seconds = time.perf_counter() - start
        mae, psnr = hole_errors(out, image, hole)
        crops = len(run.boxes(hole)) if mode != "whole" else 0
        rows.append({"mae": mae, "psnr": psnr, "crops": crops, "seconds": seconds})
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    print(json.dumps({"rows": rows, "rss_gb": rss_gb}))


def photo_paths(folder: Path, limit: int) -> list[Path]:
    paths = sorted(folder.glob("*.png")) + sorted(folder.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"crop_mode.py: no photos in {folder} (make photos)")
    return paths[:limit]


def many_table(args) -> None:
    """The issue-27 table: Telea here, each method and mode in a child process (``many_case``)."""
    import cv2

    print("| method | W x H | holes | crops/img | hole MAE (grey levels) | hole PSNR (dB) | s/img | "
          "peak RSS (GB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    paths = photo_paths(Path(args.photos), args.limit)
    for shape in args.shapes:
        width, height = (int(v) for v in shape.split("x"))
        for count in args.many:
            maes, psnrs, times = [], [], []
            for path in paths:
                image = cut_photo(path, width, height)
                hole = many_holes(path.stem, image.shape[:2], count)
                start = time.perf_counter()
                masked = np.where(hole[..., None], 0, image).astype(np.uint8)
                out = cv2.inpaint(masked, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
                times.append(time.perf_counter() - start)
                mae, psnr = hole_errors(out, image, hole)
                maes.append(mae)
                psnrs.append(psnr)
            print(f"| OpenCV Telea | {shape} | {count} | - | {np.mean(maes):.1f} | "
                  f"{np.mean(psnrs):.2f} | {np.mean(times):.2f} | - |", flush=True)  # fmt: skip
            modes = ["crop"] + (["crop-raw", "whole"] if width * height <= args.whole_up_to else [])
            for method in args.methods:
                for mode in modes:
                    cmd = [sys.executable, __file__, "--case", method, mode, shape, str(count),
                           "--photos", args.photos, "--limit", str(args.limit), "--min-side",
                           str(args.min_side), "--contexts", str(args.contexts[0])]  # fmt: skip
                    if args.weights:
                        cmd += ["--weights", args.weights]
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    if done.returncode:
                        raise SystemExit(f"crop_mode.py: {' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    rows = result["rows"]
                    label = f"{method} " + {"crop": "crops", "crop-raw": "crops, no colour match",
                                            "whole": "whole image"}[mode]  # fmt: skip
                    crops = np.mean([r["crops"] for r in rows])
                    print(f"| {label} | {shape} | {count} | {crops:.1f} | "
                          f"{np.mean([r['mae'] for r in rows]):.1f} | "
                          f"{np.mean([r['psnr'] for r in rows]):.2f} | "
                          f"{np.mean([r['seconds'] for r in rows]):.2f} | {result['rss_gb']:.2f} |",
                          flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(ROOT / "data/photos/holdout"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 3840])
    parser.add_argument("--methods", nargs="+", default=["two_stage", "zoom"])
    parser.add_argument("--contexts", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--min-side", type=int, default=512)
    parser.add_argument("--weights", default=None, help="default: the bundled models")
    parser.add_argument(
        "--many",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="many small holes (issue 27): N holes per photo; first context only",
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["1536x1024", "6000x4000", "8000x6000"],
        metavar="WxH",
        help="with --many: photo sizes",
    )
    parser.add_argument("--limit", type=int, default=3, help="with --many: photos per case")
    parser.add_argument(
        "--whole-up-to",
        type=float,
        default=2e6,
        metavar="PIXELS",
        help="with --many: also run --whole-image on photos up to this size",
    )
    parser.add_argument("--case", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        return many_case(args)
    if args.many:
        if args.methods == ["two_stage", "zoom"] and "--methods" not in sys.argv:
            args.methods = ["two_stage"]
        return many_table(args)

    from hrinpaint_jax.lpips import load_lpips_params
    from hrinpaint_jax.pipelines.crop import CropInpainter
    from hrinpaint_jax.pipelines.load import load_inpainter

    lpips_params = load_lpips_params()
    print("| method | size | mode | crops/img | hole PSNR (dB) | hole LPIPS | s/img |")
    print("|---|---|---|---|---|---|---|")
    for method in args.methods:
        inpainter = load_inpainter(args.weights, method=method)
        for size in args.sizes:
            photos = load_photos(Path(args.photos), size)
            holes = {name: small_holes(name, im.shape[:2]) for name, im in photos.items()}
            modes = [("whole", None)] + [(f"crop x{c:g}", c) for c in args.contexts]
            for label, context in modes:
                run = inpainter if context is None else CropInpainter(
                    inpainter, context=context, min_side=args.min_side)  # fmt: skip
                psnrs, lps, times, crops = [], [], [], []
                for i, (name, image) in enumerate(photos.items()):
                    start = time.perf_counter()
                    out = run(image, holes[name])
                    if i:
                        times.append(time.perf_counter() - start)
                    p, lp = score(out, image, holes[name], lpips_params)
                    psnrs.append(p)
                    lps.append(lp)
                    crops.append(len(run.boxes(holes[name])) if context else 0)
                print(f"| {method} | {size} | {label} | {np.mean(crops):.1f} | {np.mean(psnrs):.2f} | "
                      f"{np.mean(lps):.3f} | {np.mean(times):.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
