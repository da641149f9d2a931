"""Whole-image vs context-crop inpainting for small holes in big photos (issue 21).

For each held-out photo (``data/photos/holdout``, never trained on; ``make photos``) at each size, a
few small object-sized holes are drawn (seeded by the photo's name). Each method fills them on the
whole photo and with ``CropInpainter`` at a few context multiples. Prints a Markdown table of hole
PSNR (all hole pixels), hole LPIPS (measured in a 256 px window around each hole group, the same
windows for every row) and seconds per image (the first image of each row excluded: compilation).

    python benchmarks/crop_mode.py                       # 2048 and 3840 px, both methods
    python benchmarks/crop_mode.py --sizes 2048 --methods two_stage --contexts 4
"""

from __future__ import annotations

import argparse
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
    for y0, y1, x0, x1 in crop_boxes(hole, context=2.0, min_side=256):
        window = hole[y0:y1, x0:x1]
        maps = lpips_maps(jnp.asarray(x[:, y0:y1, x0:x1]), jnp.asarray(y[:, y0:y1, x0:x1]), lpips_params)
        value = float(hole_lpips_from_maps(maps, jnp.asarray(window, jnp.float32)[None, ..., None])[0])
        total, weight = total + value * window.sum(), weight + window.sum()
    return psnr, total / weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(ROOT / "data/photos/holdout"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 3840])
    parser.add_argument("--methods", nargs="+", default=["two_stage", "zoom"])
    parser.add_argument("--contexts", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--min-side", type=int, default=512)
    parser.add_argument("--weights", default=None, help="default: the bundled models")
    args = parser.parse_args()

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
