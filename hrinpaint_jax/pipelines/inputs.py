"""The pipelines' one input convention: a uint8 RGB image and a bool hole (True = hole).

Every ``inpainter(image, hole)`` of ``pipelines/`` takes ``hole`` as a bool array, or a numeric one
whose values are only 0 and 1; anything else (a 0/255 mask file, a soft edge) is refused with a
ValueError, so a mask file is binarised by the caller, at the edge where it is read
(``image_io.binarise_mask``).

The reference read its mask files as uint8 and let intermediate values through (the two-stage DFNet
sees ``1 - m/255``, Zoom-to-Inpaint ``m/255``). That QUIRK stays available as an explicit
faithful-mode input: ``inpainter(image, soft_mask=mask_u8)`` with the mask file's uint8 values
(255 = hole).
"""

from __future__ import annotations

import numpy as np


class MemoryBudgetError(ValueError):
    """The image is too large for the memory budget (even tiled)."""


def check_image(image) -> np.ndarray:
    """The [H, W, 3] uint8 RGB image as a NumPy array; ValueError otherwise."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    return image


def as_hole(hole, shape: tuple[int, int]) -> np.ndarray:
    """[H, W] bool hole (True = hole) from a bool array or a numeric one holding only 0 and 1."""
    hole = np.asarray(hole)
    if hole.shape != tuple(shape):
        raise ValueError(f"hole must be [H, W] = {tuple(shape)} like the image, got {hole.shape}")
    if hole.dtype == bool:
        return hole
    if not (np.issubdtype(hole.dtype, np.integer) or np.issubdtype(hole.dtype, np.floating)):
        raise ValueError(f"hole must be a bool array (True = hole), got dtype {hole.dtype}")
    other = hole[(hole != 0) & (hole != 1)]
    if other.size:
        raise ValueError(
            f"hole must be bool (True = hole) or hold only 0 and 1, but it holds "
            f"{other.flat[0].item()!r} ({other.size} pixels); binarise a 0/255 mask first "
            "(mask >= 128), or pass it as soft_mask= for the reference's continuous mask"
        )
    return hole == 1


def mask_u8(hole, soft_mask, shape: tuple[int, int]) -> np.ndarray:
    """The networks' [H, W] uint8 mask (255 = hole) from exactly one of ``hole`` (bool convention)
    and ``soft_mask`` (the reference's uint8 mask file, intermediate values kept)."""
    if (hole is None) == (soft_mask is None):
        raise ValueError("pass exactly one of hole (bool, True = hole) and soft_mask (uint8)")
    if soft_mask is None:
        return np.where(as_hole(hole, shape), 255, 0).astype(np.uint8)
    soft_mask = np.asarray(soft_mask)
    if soft_mask.shape != tuple(shape) or soft_mask.dtype != np.uint8:
        raise ValueError(
            f"soft_mask must be uint8 {tuple(shape)}, got {soft_mask.dtype} {soft_mask.shape}"
        )
    return soft_mask
