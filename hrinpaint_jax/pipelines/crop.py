"""Context-crop inpainting: small holes in big photos, filled at the resolution they deserve.

Both methods squeeze the whole photo into a fixed working size (DFNet's 512 x 512 letterbox; the
Zoom-to-Inpaint work size), so a 60 px hole in a 6000 px photo becomes 5 px there. ``CropInpainter``
runs any inpainter on a square crop around each connected group of holes instead: the crop's side is
``context`` times the group's larger extent, never below ``min_side`` (the network's working size)
and never beyond the photo. Groups whose crops would overlap are merged into one crop, so every hole
pixel inside a crop belongs to that crop's groups. Only hole pixels are pasted back; every other
pixel of the photo passes through bit-exactly.

This is what IOPaint's default "crop" strategy does for the same reason; the faithful whole-image
pipeline stays one flag away (``hrinpaint inpaint --whole-image``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)


def _component_boxes(hole: np.ndarray) -> list[Box]:
    """Bounding boxes of the 8-connected hole components."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
    boxes = []
    for i in range(1, count):
        x, y, w, h = (int(v) for v in stats[i, :4])
        boxes.append((y, y + h, x, x + w))
    return boxes


def _context_box(bbox: Box, shape: tuple[int, int], context: float, min_side: int) -> Box:
    """A square-as-possible window around ``bbox``: side ``max(min_side, context * extent)``,
    centred on the holes, shifted (not cut) to stay inside the photo."""
    y0, y1, x0, x1 = bbox
    side = max(min_side, int(np.ceil(context * max(y1 - y0, x1 - x0))))
    out = []
    for lo, hi, size in ((y0, y1, shape[0]), (x0, x1, shape[1])):
        span = min(max(side, hi - lo), size)
        start = (lo + hi) // 2 - span // 2
        start = min(max(start, 0), size - span)
        out += [start, start + span]
    return out[0], out[1], out[2], out[3]


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def crop_boxes(hole: np.ndarray, context: float, min_side: int) -> list[Box]:
    """The crops that together cover every hole pixel, pairwise disjoint.

    Args:
      hole: [H, W] bool, True = hole.
      context: crop side / the hole group's larger extent.
      min_side: the smallest crop side (clipped to the photo).
    Returns:
      (y0, y1, x0, x1) boxes, sorted; every hole pixel is inside exactly one of them.
    """
    shape = hole.shape[:2]
    groups = [(b, _context_box(b, shape, context, min_side)) for b in _component_boxes(hole)]
    merged = True
    while merged:  # merge any two groups whose crops overlap, until none do
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if _overlap(groups[i][1], groups[j][1]):
                    (a, _), (b, _) = groups[i], groups[j]
                    union = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                    groups[i] = (union, _context_box(union, shape, context, min_side))
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(box for _, box in groups)


@dataclasses.dataclass
class CropInpainter:
    """Wraps an inpainter ``(image_uint8 [H, W, 3], hole_bool [H, W]) -> uint8 [H, W, 3]`` to run on
    context crops (module docstring).

    Attributes:
      inner: the whole-image pipeline (``TwoStageInpainter`` or ``ZoomInpainter``).
      context: crop side as a multiple of the hole group's larger extent.
      min_side: smallest crop side in pixels (the network's working size).
      max_fraction: when the crops would cover more than this fraction of the photo, the whole
        photo is processed at once instead (cheaper, and the faithful pipeline).
    """

    inner: Callable[[np.ndarray, np.ndarray], np.ndarray]
    context: float = 4.0
    min_side: int = 512
    max_fraction: float = 0.5

    def __post_init__(self):
        if not self.context >= 1.0:
            raise ValueError(f"crop context must be >= 1, got {self.context}")
        if self.min_side < 16:
            raise ValueError(f"crop min_side must be >= 16, got {self.min_side}")

    def boxes(self, hole: np.ndarray) -> list[Box]:
        """The crops this wrapper would run (empty when the whole photo is processed)."""
        boxes = crop_boxes(np.asarray(hole, bool), self.context, self.min_side)
        area = sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in boxes)
        if not boxes or area > self.max_fraction * hole.shape[0] * hole.shape[1]:
            return []
        return boxes

    def __call__(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        hole = np.asarray(hole, bool)
        if not hole.any():
            return np.array(image, copy=True)
        boxes = self.boxes(hole)
        if not boxes:
            return self.inner(image, hole)
        out = np.array(image, copy=True)
        for y0, y1, x0, x1 in boxes:
            sub_hole = hole[y0:y1, x0:x1]
            fill = np.asarray(self.inner(np.ascontiguousarray(image[y0:y1, x0:x1]), sub_hole))
            region = out[y0:y1, x0:x1]
            region[sub_hole] = fill[sub_hole]
        return out
