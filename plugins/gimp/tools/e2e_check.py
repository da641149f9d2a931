"""Host side of the GIMP end-to-end test (run with the project's Python by gimp_e2e.sh).

python plugins/gimp/tools/e2e_check.py weights DIR   convert the fixture weights (both methods) into DIR
python plugins/gimp/tools/e2e_check.py check WORK    check the layers e2e_batch.py exported into WORK
python plugins/gimp/tools/e2e_check.py shots SHOTS OUT  README images from screenshots_driver.sh's shots

The fixture weights are random, so the fill is noise: the check is that every pixel outside the
binarised (and dilated) mask is unchanged, and that the masked region was filled (changed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def convert_weights(out_dir: str) -> None:
    from hrinpaint_jax.commands.demo import convert_fixture_weights
    from hrinpaint_jax.fixtures import find_fixtures

    convert_fixture_weights(Path(out_dir), find_fixtures(), log=lambda m: None)


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _hole(mask: np.ndarray, threshold: int, dilate: int) -> np.ndarray:
    from hrinpaint_jax.image_io import binarise_mask

    return binarise_mask(mask, "white", threshold, dilate)[0]


def check(work: str) -> list[str]:
    """Returns one line per case; raises AssertionError on the first failure."""
    work = Path(work)
    summary = json.loads((work / "e2e.json").read_text())
    report = []
    for case in ("selection", "channel"):
        info = summary[case]
        original = _png(work / f"{case}_original.png")
        result = _png(work / f"{case}_result.png")
        canvas_mask = _png(work / f"{case}_mask.png")
        h, w = original.shape[:2]
        # The mask is exported in canvas coordinates; the layers in their own (moved by offsets).
        x, y = info["offsets"]
        mask = np.zeros((h, w), np.uint8)
        part = canvas_mask[y : y + h, x : x + w]
        mask[: part.shape[0], : part.shape[1]] = part
        antialiased = int(((mask > 0) & (mask < 255)).sum())
        hole = _hole(mask, info["threshold"], info["dilate"])
        assert hole.any(), f"{case}: the exported mask is empty"
        changed = np.any(result != original, axis=-1)
        outside_changed = int((changed & ~hole).sum())
        assert outside_changed == 0, f"{case}: {outside_changed} pixels outside the mask changed"
        inside = float(changed[hole].mean())
        assert inside > 0.5, f"{case}: only {inside:.0%} of the masked pixels changed"
        report.append(
            f"{case}: {w}x{h}, {int(hole.sum())} px filled ({inside:.0%} changed), "
            f"{antialiased} antialiased mask px binarised, 0 px changed outside"
        )
    for case in ("bad_weights", "no_selection"):
        report.append(f"{case}: GIMP error message: {summary[case]}")
    return report


# Screenshot -> README image (docs/gimp/...).
SHOTS = {
    "dialog.png": "dialog.png",
    "progress.png": "progress.png",
    "after.png": "window_after.png",
    "error.png": "error_message.png",
}


def readme_images(shots: str, out: str) -> None:
    """Copies the screenshots under their README names, and crops the canvas out of the before and
    after screenshots into one before | after picture (located by matching the original photo, which
    GIMP shows at 100 %)."""
    import cv2
    from PIL import Image

    from hrinpaint_jax.commands.demo import load_sample

    shots, out = Path(shots), Path(out)
    for src, dst in SHOTS.items():
        Image.open(shots / src).convert("RGB").save(out / dst, optimize=True)
    before, after = _png(shots / "before.png")[..., :3], _png(shots / "after.png")[..., :3]
    photo = load_sample("astronaut.png")
    scores = cv2.matchTemplate(before, photo, cv2.TM_SQDIFF)
    _, _, (x, y), _ = cv2.minMaxLoc(scores)
    h, w = photo.shape[:2]
    gap = np.full((h, 16, 3), 255, np.uint8)
    pair = np.concatenate([before[y : y + h, x : x + w], gap, after[y : y + h, x : x + w]], axis=1)
    Image.fromarray(pair).save(out / "before_after.png", optimize=True)


def main(argv: list[str]) -> int:
    if (
        not argv
        or argv[0] not in ("weights", "check", "shots")
        or len(argv) != (3 if argv[0] == "shots" else 2)
    ):
        print("\n".join(__doc__.strip().splitlines()[2:5]), file=sys.stderr)
        return 2
    if argv[0] == "weights":
        convert_weights(argv[1])
        return 0
    if argv[0] == "shots":
        readme_images(argv[1], argv[2])
        return 0
    try:
        lines = check(argv[1])
    except AssertionError as e:
        print(f"e2e_check: FAILED: {e}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
