"""Hole masks. Package convention: float32 or bool, **1 / True = hole**.

* ``centre_square_mask``: the seed-000 test protocol (REFERENCE.md 4.3, 10.3): one centred square
  hole a third of the (shorter) side wide.
"""

from __future__ import annotations

import numpy as np


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
