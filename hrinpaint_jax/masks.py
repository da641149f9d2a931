"""Hole masks. Package convention: float32 or bool, **1 / True = hole**.

* ``centre_square_mask``: the seed-000 test protocol (REFERENCE.md 4.3, 10.3): one centred square
  hole a third of the (shorter) side wide.
* ``random_stroke_mask``: the Zoom-to-Inpaint training / validation stroke masks, ``'small'`` and
  ``'large'`` (REFERENCE.md section 7, quirks in 11.36). Seeded mode is bit-exact to the reference's
  ``utils_mask.random_mask(patch_size, type, seed)`` (checked against ``fixtures/zti/masks_case.npz``);
  the reference's H x W x 1 output is returned here as H x W.
* ``irregular_mask``: free-form masks for the seed-000 refinement training (REFERENCE.md 9.2). The
  paper uses the irregular-mask set of Liu et al. (partial convolutions), which is a data set, not a
  generator; this is a stand-in generator (strokes, ellipses, circles) with the paper's 10 %..90 %
  hole-area acceptance applied by rejection.
* ``MaskSchedule`` / ``sample_masks``: which stroke-mask kind to train with at a given step
  (ZTI trains on small masks, then on large ones, REFERENCE.md 9.3), and a batch sampler that
  draws a **fresh mask per example** -- deliberately not the reference's one-constant-mask quirk
  (REFERENCE.md 9.3 "Data pipeline", 11.37).

Randomness: everything takes either a NumPy ``Generator`` (or legacy ``RandomState``) or an integer
seed and is deterministic given it; nothing touches NumPy's global RNG state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

Rng = np.random.Generator | np.random.RandomState

STROKE_KINDS = ("small", "large")


def centre_square_mask(height: int, width: int) -> np.ndarray:
    """[H, W] float32, 1 = hole: a centred square of side ``min(H, W) // 3``.

    For 1024x1024 this is rows/cols 341..681 (the reference's shipped masks sit at 342..682, one
    pixel lower-right; REFERENCE.md 4.3).
    """
    side = min(height, width) // 3
    top, left = (height - side) // 2, (width - side) // 2
    hole = np.zeros((height, width), np.float32)
    hole[top : top + side, left : left + side] = 1.0
    return hole


# ------------------------------------------------------------------------------------------------
# Zoom-to-Inpaint stroke masks (REFERENCE.md 7)


@dataclass(frozen=True)
class _StrokeParams:
    # Each (low, high) pair is a legacy ``randint(low, high)``: the upper bound is EXCLUSIVE
    # (REFERENCE.md 11.36), so small masks have 1..7 strokes, 1..11 vertices, thickness 5..29.
    strokes: tuple[int, int]
    vertices: tuple[int, int]
    thickness: tuple[int, int]
    # Seeded mode: base = max_strokes * max_vertices (the exclusive upper bounds above).
    base: int


_STROKES = {
    "small": _StrokeParams(strokes=(1, 8), vertices=(1, 12), thickness=(5, 30), base=8 * 12),
    "large": _StrokeParams(strokes=(1, 4), vertices=(4, 12), thickness=(12, 40), base=4 * 12),
}


class _Draws:
    """The reference's draws, in its order, from one of three sources.

    * seeded (``seed`` given): a private ``RandomState`` re-seeded with the reference's per-draw
      seed before every draw; ``RandomState(s)`` streams are identical to the legacy global
      ``np.random.seed(s)`` ones the reference uses, without touching the global state;
    * a legacy ``RandomState``: the same draw calls, no re-seeding (the reference's unseeded mode
      uses the global legacy RNG this way);
    * a ``Generator``: the equivalent ``integers`` / ``uniform`` / ``normal`` calls (same
      distributions and order, different bits).
    """

    def __init__(self, seed: int | None, rng: Rng | None):
        self.seeded = seed is not None
        if self.seeded:
            self._rs = np.random.RandomState()
            self._int = self._rs.randint
        elif isinstance(rng, np.random.RandomState):
            self._rs = rng
            self._int = rng.randint
        else:
            self._rs = rng if rng is not None else np.random.default_rng()
            self._int = self._rs.integers  # exclusive upper bound, like randint

    def _at(self, key: int):
        if self.seeded:
            self._rs.seed(key)
        return self._rs

    def randint(self, key: int, low: int, high: int | None = None) -> int:
        self._at(key)
        return int(self._int(low, high))

    def uniform(self, key: int, low: float, high: float) -> float:
        return float(self._at(key).uniform(low, high))

    def normal(self, key: int, loc: float, scale: float) -> float:
        return float(self._at(key).normal(loc, scale))


def random_stroke_mask(
    height: int,
    width: int,
    kind: str,
    seed: int | None = None,
    *,
    rng: Rng | int | None = None,
    transpose: bool = True,
) -> np.ndarray:
    """[H, W] float32 in {0, 1}, 1 = hole: a Zoom-to-Inpaint ``'small'`` or ``'large'`` stroke mask.

    ``seed`` (int >= 0): the reference's seeded (validation) mode, bit-exact to
    ``random_mask([H, W, 3], kind, seed)[..., 0]``. Otherwise the draws come from ``rng`` (a
    ``Generator``, a legacy ``RandomState`` -- same calls as the reference's unseeded mode -- or an
    int seed for ``np.random.default_rng``); with neither, from a fresh unseeded ``Generator``.

    ``transpose=True`` reproduces the reference's transposed strokes (REFERENCE.md 7 QUIRK): points
    are drawn as OpenCV (x, y) = (h, w). For non-square sizes this means strokes start in the
    top-left min(H, W) square's coordinates and can leave the canvas; ``transpose=False`` draws
    them the intended way round (same draws, different masks; not reference-exact).
    """
    import cv2

    if kind not in _STROKES:
        raise ValueError(f"kind must be one of {STROKE_KINDS}, got {kind!r}")
    if seed is not None and rng is not None:
        raise ValueError("give either seed (reference seeded mode) or rng, not both")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if isinstance(rng, int | np.integer):
        rng = np.random.default_rng(int(rng))
    p = _STROKES[kind]
    draws = _Draws(seed, rng)
    s0 = 5 * seed * p.base if seed is not None else 0

    def vkey(j: int, s: int, v: int) -> int:
        # Seed before the j-th draw of vertex v of stroke s: (5*seed + j)*base + 12*s + v.
        return s0 + j * p.base + 12 * s + v

    d = math.sqrt(height * height + width * width)
    mask = np.zeros((height, width), np.float32)

    def point(a: int, b: int) -> tuple[int, int]:
        return (a, b) if transpose else (b, a)

    n_strokes = draws.randint(s0, *p.strokes)
    for s in range(n_strokes):
        start_h = draws.randint(s0 + 5 * s + 1, height)  # randint(H): 0..H-1
        start_w = draws.randint(s0 + 5 * s + 2, width)
        thickness = draws.randint(s0 + 5 * s + 3, *p.thickness)
        n_vertices = draws.randint(s0 + 5 * s + 4, *p.vertices)
        angle = 0.0
        for v in range(n_vertices):
            if kind == "small":
                if v == 0:
                    angle = draws.uniform(vkey(1, s, v), 0.0, 2 * math.pi)
                else:
                    # Each segment turns back on the previous one: pi + previous angle + jitter.
                    angle = math.pi + angle + draws.uniform(vkey(1, s, v), -math.pi / 8, math.pi / 8)
                length = draws.uniform(vkey(2, s, v), 1.0, d / 12)
            else:
                # DeepFill-v2 brush, but with the angle range re-drawn per vertex.
                min_a = 2 * math.pi / 5 - draws.uniform(vkey(1, s, v), 0.0, 2 * math.pi / 15)
                max_a = 2 * math.pi / 5 + draws.uniform(vkey(2, s, v), 0.0, 2 * math.pi / 15)
                angle = draws.uniform(vkey(3, s, v), min_a, max_a)
                if v % 2 == 0:
                    angle = 2 * math.pi - angle
                # std is (d/8)//2 = floor(d/16), not d/16; then clipped to [0, d/4].
                length = min(max(draws.normal(vkey(4, s, v), d / 8, (d / 8) // 2), 0.0), d / 4)
            # Endpoints clipped to [0, H] / [0, W] with the upper bound INCLUSIVE (one past the last
            # pixel), then truncated to int.
            next_h = int(min(max(start_h + length * math.sin(angle), 0.0), float(height)))
            next_w = int(min(max(start_w + length * math.cos(angle), 0.0), float(width)))
            # Filled disc at the current point, then the thick segment (both 8-connected).
            cv2.circle(mask, point(start_h, start_w), thickness // 2, 1.0, -1)
            cv2.line(mask, point(start_h, start_w), point(next_h, next_w), 1.0, thickness)
            start_h, start_w = next_h, next_w
        cv2.circle(mask, point(start_h, start_w), thickness // 2, 1.0, -1)  # cap at the end point
    return mask


# ------------------------------------------------------------------------------------------------
# seed-000 refinement training masks (REFERENCE.md 9.2)


def irregular_mask(
    height: int,
    width: int,
    rng: np.random.Generator | int | None = None,
    *,
    min_ratio: float = 0.10,
    max_ratio: float = 0.90,
    max_tries: int = 100,
) -> np.ndarray:
    """[H, W] float32 in {0, 1}, 1 = hole: a free-form mask with hole ratio in [min_ratio, max_ratio].

    Stand-in for the Liu et al. irregular masks of the seed-000 refinement training (REFERENCE.md
    9.2: 512x512 crops accepted only if the hole covers >= 10 % and <= 90 % of the crop). Each
    attempt draws a target ratio ``U(min_ratio, max_ratio)`` and adds random shapes until the hole
    covers at least that much: thick polylines (random-walk strokes, 50 %), filled rotated
    ellipses (30 %) and filled discs (20 %), all sized relative to ``min(H, W)``. The attempt is
    accepted if its ratio lies in ``[min_ratio, max_ratio]`` (inclusive) -- the last shape can
    overshoot -- otherwise it is rejected and redrawn; RuntimeError after ``max_tries`` attempts.
    Deterministic given ``rng`` (a ``Generator`` or an int seed).
    """
    import cv2

    if not 0.0 <= min_ratio <= max_ratio <= 1.0:
        raise ValueError(f"need 0 <= min_ratio <= max_ratio <= 1, got {min_ratio}, {max_ratio}")
    rng = np.random.default_rng(rng)
    size = min(height, width)
    total = height * width
    for _ in range(max_tries):
        target = rng.uniform(min_ratio, max_ratio)
        canvas = np.zeros((height, width), np.uint8)
        ratio = 0.0
        for _ in range(2000):
            if ratio >= target:
                break
            shape = rng.random()
            if shape < 0.5:
                x, y = rng.uniform(0, width), rng.uniform(0, height)
                thick = int(rng.integers(max(1, size // 64), max(2, size // 12) + 1))
                angle = rng.uniform(0, 2 * math.pi)
                for _ in range(int(rng.integers(2, 10))):
                    angle += rng.uniform(-math.pi / 2, math.pi / 2)
                    step = rng.uniform(size / 32, size / 6)
                    nx = min(max(x + step * math.cos(angle), 0.0), width - 1.0)
                    ny = min(max(y + step * math.sin(angle), 0.0), height - 1.0)
                    cv2.line(canvas, (int(x), int(y)), (int(nx), int(ny)), 1, thick)
                    x, y = nx, ny
            elif shape < 0.8:
                centre = (int(rng.integers(width)), int(rng.integers(height)))
                axes = tuple(int(a) for a in rng.uniform(size / 40, size / 6, 2))
                cv2.ellipse(canvas, centre, axes, rng.uniform(0, 180), 0, 360, 1, -1)
            else:
                centre = (int(rng.integers(width)), int(rng.integers(height)))
                cv2.circle(canvas, centre, int(rng.uniform(size / 64, size / 10)), 1, -1)
            ratio = np.count_nonzero(canvas) / total
        if min_ratio <= ratio <= max_ratio:
            return canvas.astype(np.float32)
    raise RuntimeError(f"no mask with hole ratio in [{min_ratio}, {max_ratio}] in {max_tries} tries")


# ------------------------------------------------------------------------------------------------
# Training schedule and batching


@dataclass(frozen=True)
class MaskSchedule:
    """Which stroke-mask kind (``'small'`` / ``'large'``) to train with at a given step.

    ``kind``:
      * ``'small'`` / ``'large'``: always that kind (ZTI stages 1-2 / 3, REFERENCE.md 9.3);
      * ``'progressive'``: small while ``step < switch_step``, large from ``switch_step`` on;
      * ``'ramp'``: large with probability ``p(step)`` rising linearly from 0 at ``ramp_start`` to 1
        at ``ramp_end`` (clipped outside; ``ramp_end == ramp_start`` is a hard switch there).

    ``from_config`` builds one from any mapping or ``ml_collections.ConfigDict`` holding these field
    names (missing ones take the defaults; other keys are ignored).
    """

    kind: str = "small"
    switch_step: int = 0
    ramp_start: int = 0
    ramp_end: int = 0

    KINDS = ("small", "large", "progressive", "ramp")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise ValueError(f"MaskSchedule.kind must be one of {self.KINDS}, got {self.kind!r}")
        if self.kind == "ramp" and self.ramp_end < self.ramp_start:
            raise ValueError(f"ramp_end ({self.ramp_end}) < ramp_start ({self.ramp_start})")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | Any) -> MaskSchedule:
        values = {}
        for f in fields(cls):
            if f.name in cfg:
                value = cfg[f.name]
                values[f.name] = str(value) if f.name == "kind" else int(value)
        return cls(**values)

    def large_probability(self, step: int) -> float:
        """Probability that ``kind_at(step)`` returns ``'large'``."""
        if self.kind in STROKE_KINDS:
            return float(self.kind == "large")
        if self.kind == "progressive":
            return float(step >= self.switch_step)
        if self.ramp_end == self.ramp_start:
            return float(step >= self.ramp_end)
        return min(max((step - self.ramp_start) / (self.ramp_end - self.ramp_start), 0.0), 1.0)

    def kind_at(self, step: int, rng: np.random.Generator | None = None) -> str:
        """``'small'`` or ``'large'``. ``'ramp'`` draws one ``rng.random()`` on every call
        (whatever the step, so the stream does not depend on it); the other kinds draw nothing."""
        p = self.large_probability(step)
        if self.kind != "ramp":
            return "large" if p == 1.0 else "small"
        if rng is None:
            raise ValueError("MaskSchedule(kind='ramp').kind_at needs an rng")
        return "large" if rng.random() < p else "small"

    def sample(self, step: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """[H, W] float32 stroke mask (1 = hole) of ``kind_at(step, rng)``, drawn from ``rng``."""
        return random_stroke_mask(height, width, self.kind_at(step, rng), rng=rng)


def sample_masks(
    schedule: MaskSchedule,
    step: int,
    batch: int,
    height: int,
    width: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """[batch, H, W, 1] float32 (1 = hole): an independent ``schedule.sample`` per example.

    Fresh masks per example are the paper's intent; the released ZTI pipeline instead reuses one
    constant mask for every example (REFERENCE.md 9.3, 11.37) -- deliberately not reproduced.
    """
    out = np.empty((batch, height, width, 1), np.float32)
    for i in range(batch):
        out[i, ..., 0] = schedule.sample(step, height, width, rng)
    return out
