"""Context-crop inpainting: small holes in big photos, filled at the resolution they deserve.

Both methods squeeze the whole photo into a fixed working size (DFNet's 512 x 512 letterbox; the
Zoom-to-Inpaint work size), so a 60 px hole in a 6000 px photo becomes 5 px there. ``CropInpainter``
runs any inpainter on a crop around each group of holes instead.

Grouping: each connected hole gets its own square context box, ``context`` times its own larger
extent (at least ``min_crop`` px), shifted (not cut) to stay inside the photo. Groups whose boxes
overlap are merged, the merged box being the bounding box of the two (never regrown from the
merged extent, which made crops snowball into the whole photo), and merging repeats until no two
boxes overlap. So every hole pixel inside a crop belongs to that crop's groups, and far-apart
small holes keep small crops of their own.

The network's working size: a crop whose shorter side is below ``min_side`` is upscaled to it
before the inner pipeline runs (two-stage would otherwise pad it with known black, and DFNet would
see the hole at a few pixels), its hole first prefilled by OpenCV's Telea so that the
interpolation carries no hole content into the known pixels; the fill is scaled back. Each hole's
fill is then shifted to the colour of its surroundings (``match_colour``). Only hole pixels are
pasted back; every other pixel of the photo passes through bit-exactly.

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
    centred on the hole, shifted (not cut) to stay inside the photo."""
    y0, y1, x0, x1 = bbox
    side = max(min_side, int(np.ceil(context * max(y1 - y0, x1 - x0))))
    out = []
    for lo, hi, size in ((y0, y1, shape[0]), (x0, x1, shape[1])):
        span = min(max(side, hi - lo), size)
        start = (lo + hi) // 2 - span // 2
        start = min(max(start, 0), size - span)
        out += [start, start + span]
    return out[0], out[1], out[2], out[3]


def _merge_overlapping(boxes: np.ndarray) -> np.ndarray:
    """One round: boxes [N, 4] -> the bounding boxes of each connected set of overlapping boxes."""
    n = len(boxes)
    parent = np.arange(n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    y0, y1, x0, x1 = boxes.T
    for i in range(n - 1):
        rest = slice(i + 1, n)
        hits = (y0[i] < y1[rest]) & (y0[rest] < y1[i]) & (x0[i] < x1[rest]) & (x0[rest] < x1[i])
        for j in np.flatnonzero(hits) + i + 1:
            parent[root(j)] = root(i)
    roots = np.array([root(i) for i in range(n)])
    merged = []
    for r in np.unique(roots):
        member = boxes[roots == r]
        merged.append((member[:, 0].min(), member[:, 1].max(), member[:, 2].min(), member[:, 3].max()))
    return np.array(merged, dtype=np.int64).reshape(-1, 4)


def crop_boxes(hole: np.ndarray, context: float, min_crop: int) -> list[Box]:
    """The crops that together cover every hole pixel, pairwise disjoint.

    Args:
      hole: [H, W] bool, True = hole.
      context: each connected hole's box side / that hole's larger extent.
      min_crop: the smallest box side (clipped to the photo).
    Returns:
      (y0, y1, x0, x1) boxes, sorted; every hole pixel is inside exactly one of them. A box is the
      bounding box of its holes' own context boxes.
    """
    shape = hole.shape[:2]
    boxes = [_context_box(b, shape, context, min_crop) for b in _component_boxes(hole)]
    boxes = np.array(boxes, dtype=np.int64).reshape(-1, 4)
    while True:  # a merged box can reach a third one: repeat until stable
        merged = _merge_overlapping(boxes)
        if len(merged) == len(boxes):
            break
        boxes = merged
    return sorted((int(a), int(b), int(c), int(d)) for a, b, c, d in boxes)


def _work_shape(height: int, width: int, min_side: int, max_side: int) -> tuple[int, int]:
    """The size a crop runs at: shorter side brought up to ``min_side``, longer side at most
    ``max_side`` (never downscaled)."""
    scale = max(1.0, min(min_side / min(height, width), max_side / max(height, width)))
    return max(height, round(height * scale)), max(width, round(width * scale))


def _run_scaled(inner, image: np.ndarray, hole: np.ndarray, work: tuple[int, int]) -> np.ndarray:
    """``inner`` on ``image`` upscaled to ``work`` (rows, cols); returns the fill scaled back.

    The hole is first filled with OpenCV's Telea, so the interpolation mixes no hole content (the
    object being removed) into the known pixels around it; the network then fills the hole anew."""
    import cv2

    height, width = hole.shape
    size = (work[1], work[0])
    prefilled = cv2.inpaint(image, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    big = cv2.resize(prefilled, size, interpolation=cv2.INTER_CUBIC)
    # Every upscaled pixel that a hole pixel reaches is a hole, so the fill scaled back (area
    # averages) is the network's alone.
    big_hole = cv2.resize(hole.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0
    fill = np.asarray(inner(big, big_hole))
    return cv2.resize(fill, (width, height), interpolation=cv2.INTER_AREA)


def match_colour(fill: np.ndarray, image: np.ndarray, hole: np.ndarray, ring: int = 2) -> np.ndarray:
    """Shifts each connected hole's fill by one RGB offset, so that the fill's mean over its
    ``ring`` px inner border equals the known pixels' mean over the ``ring`` px around it.

    Args:
      fill: [H, W, 3] uint8, the inner pipeline's result.
      image: [H, W, 3] uint8, the input (its known pixels are read).
      hole: [H, W] bool.
    Returns:
      [H, W, 3] uint8: ``fill`` with its hole pixels shifted (a hole with no known pixel around it
      is left as it is).
    """
    import cv2

    count, labels = cv2.connectedComponents(hole.astype(np.uint8), connectivity=8)
    kernel = np.ones((2 * ring + 1,) * 2, np.uint8)
    inner = hole & ~(cv2.erode(hole.astype(np.uint8), kernel, borderValue=1) > 0)
    # Known pixels around each hole take the (largest) label that reaches them.
    outer_labels = cv2.dilate(labels.astype(np.float32), kernel).astype(np.int64)
    outer = ~hole & (outer_labels > 0)

    def means(values, where, lab):
        sums = np.stack([np.bincount(lab[where], values[where][:, c], count) for c in range(3)], 1)
        n = np.bincount(lab[where], minlength=count)[:, None]
        return sums / np.maximum(n, 1), n[:, 0]

    fill_mean, _ = means(fill.astype(np.float64), inner, labels)
    known_mean, known_n = means(image.astype(np.float64), outer, outer_labels)
    offset = np.where((known_n > 0)[:, None], known_mean - fill_mean, 0.0)
    offset[0] = 0.0
    shifted = fill.astype(np.float64) + offset[labels]
    return np.where(hole[..., None], np.clip(np.round(shifted), 0, 255), fill).astype(np.uint8)


@dataclasses.dataclass
class CropInpainter:
    """Wraps an inpainter ``(image_uint8 [H, W, 3], hole_bool [H, W]) -> uint8 [H, W, 3]`` to run on
    context crops (module docstring).

    Attributes:
      inner: the whole-image pipeline (``TwoStageInpainter`` or ``ZoomInpainter``).
      context: each hole's crop side as a multiple of that hole's larger extent.
      min_side: the network's working size: a crop with a shorter side below it is upscaled to it
        (its longer side to at most ``4 * min_side``) and the fill scaled back.
      min_crop: smallest crop side in photo pixels (a little context even for 1 px holes).
      colour_match: shift each hole's fill to the colour of the pixels around it
        (``match_colour``): the bundled networks' fills of small holes carry a colour cast.
      max_fraction: when the crops would cover more than this fraction of the photo, the whole
        photo is processed at once instead (cheaper, and the faithful pipeline).
    """

    inner: Callable[[np.ndarray, np.ndarray], np.ndarray]
    context: float = 4.0
    min_side: int = 512
    min_crop: int = 32
    colour_match: bool = True
    max_fraction: float = 0.5

    def __post_init__(self):
        if not self.context >= 1.0:
            raise ValueError(f"crop context must be >= 1, got {self.context}")
        if self.min_side < 16:
            raise ValueError(f"crop min_side must be >= 16, got {self.min_side}")
        if self.min_crop < 1:
            raise ValueError(f"crop min_crop must be >= 1, got {self.min_crop}")

    def boxes(self, hole: np.ndarray) -> list[Box]:
        """The crops this wrapper would run (empty when the whole photo is processed)."""
        boxes = crop_boxes(np.asarray(hole, bool), self.context, self.min_crop)
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
            sub_image, sub_hole = np.ascontiguousarray(image[y0:y1, x0:x1]), hole[y0:y1, x0:x1]
            work = _work_shape(y1 - y0, x1 - x0, self.min_side, 4 * self.min_side)
            if work == sub_hole.shape:
                fill = np.asarray(self.inner(sub_image, sub_hole))
            else:
                fill = _run_scaled(self.inner, sub_image, sub_hole, work)
            if self.colour_match:
                fill = match_colour(fill, sub_image, sub_hole)
            region = out[y0:y1, x0:x1]
            region[sub_hole] = fill[sub_hole]
        return out
