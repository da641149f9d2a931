"""Context-crop inpainting (pipelines/crop.py): which crops, merging, exact pass-through."""

from __future__ import annotations

import numpy as np
import pytest

from hrinpaint_jax.pipelines.crop import CropInpainter, crop_boxes


def _hole(shape, *rects):
    hole = np.zeros(shape, bool)
    for y0, y1, x0, x1 in rects:
        hole[y0:y1, x0:x1] = True
    return hole


def test_one_small_hole_gets_one_centred_crop_of_the_minimum_side():
    hole = _hole((2000, 3000), (1000, 1040, 1500, 1560))  # 40 x 60 px
    assert crop_boxes(hole, context=4.0, min_side=512) == [(764, 1276, 1274, 1786)]
    # A larger hole: side = 4 x its larger extent (200 px -> 800).
    hole = _hole((2000, 3000), (1000, 1100, 1500, 1700))
    assert crop_boxes(hole, context=4.0, min_side=512) == [(650, 1450, 1200, 2000)]


def test_crops_are_shifted_inside_the_photo_and_clipped_to_it():
    hole = _hole((600, 3000), (5, 30, 2980, 2999))  # in the top-right corner of a wide photo
    assert crop_boxes(hole, context=4.0, min_side=512) == [(0, 512, 2488, 3000)]
    hole = _hole((300, 400), (100, 120, 100, 120))  # photo smaller than min_side
    assert crop_boxes(hole, context=4.0, min_side=512) == [(0, 300, 0, 400)]


def test_groups_whose_crops_overlap_are_merged_and_every_hole_is_covered_once():
    rng = np.random.default_rng(0)
    hole = np.zeros((1500, 2500), bool)
    for _ in range(12):
        y, x = rng.integers(0, 1450), rng.integers(0, 2450)
        hole[y : y + rng.integers(3, 50), x : x + rng.integers(3, 50)] = True
    boxes = crop_boxes(hole, context=4.0, min_side=256)
    cover = np.zeros(hole.shape, np.int32)
    for y0, y1, x0, x1 in boxes:
        cover[y0:y1, x0:x1] += 1
    assert cover.max() == 1, "crops overlap"
    assert (cover[hole] == 1).all(), "a hole pixel is outside every crop"
    near = _hole((1000, 1000), (400, 410, 400, 410), (420, 430, 600, 610))
    assert len(crop_boxes(near, context=4.0, min_side=256)) == 1


def _mean_fill(calls):
    def inner(image, hole):
        calls.append(image.shape[:2])
        out = image.copy()
        out[hole] = image[~hole].mean(axis=0).astype(np.uint8) if (~hole).any() else 0
        return out

    return inner


def test_only_hole_pixels_change_and_each_crop_runs_once():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    hole = _hole(image.shape[:2], (100, 130, 100, 140), (900, 950, 1300, 1330))
    calls = []
    out = CropInpainter(_mean_fill(calls), context=4.0, min_side=256)(image, hole)
    assert calls == [(256, 256), (256, 256)]
    assert np.array_equal(out[~hole], image[~hole]) and not np.array_equal(out[hole], image[hole])
    # The fill comes from the crop's own context, not the whole photo's mean.
    crop = image[0:256, 0:256][~hole[0:256, 0:256]].mean(axis=0).astype(np.uint8)
    assert np.array_equal(out[110, 110], crop)


def test_large_holes_and_empty_masks_fall_back_to_the_whole_photo():
    image = np.zeros((600, 800, 3), np.uint8)
    calls = []
    crop = CropInpainter(_mean_fill(calls), context=4.0, min_side=512)
    crop(image, _hole(image.shape[:2], (100, 500, 100, 700)))
    assert calls == [(600, 800)]
    assert np.array_equal(crop(image, np.zeros((600, 800), bool)), image) and len(calls) == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="context must be >= 1"):
        CropInpainter(lambda i, h: i, context=0.5)
    with pytest.raises(ValueError, match="min_side must be >= 16"):
        CropInpainter(lambda i, h: i, min_side=4)
