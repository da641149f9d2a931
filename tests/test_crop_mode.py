"""Context-crop inpainting (pipelines/crop.py): which crops, merging, upscaling, exact pass-through."""

from __future__ import annotations

import numpy as np
import pytest

from hrinpaint_jax.pipelines.crop import CropInpainter, crop_boxes, match_colour


def _hole(shape, *rects):
    hole = np.zeros(shape, bool)
    for y0, y1, x0, x1 in rects:
        hole[y0:y1, x0:x1] = True
    return hole


def _scattered_holes(shape, count, seed, spacing=300):
    """``count`` 8-24 px blobs at seeded random places, at least ``spacing`` px apart."""
    rng = np.random.default_rng(seed)
    hole, centres = np.zeros(shape, bool), []
    while len(centres) < count:
        c = rng.integers(24, np.array(shape) - 24)
        if all(np.abs(c - d).max() >= spacing for d in centres):
            centres.append(c)
            h, w = rng.integers(8, 25, 2)
            hole[c[0] : c[0] + h, c[1] : c[1] + w] = True
    return hole


def test_one_small_hole_gets_one_centred_crop_of_its_own_context():
    hole = _hole((2000, 3000), (1000, 1040, 1500, 1560))  # 40 x 60 px: side 4 x 60
    assert crop_boxes(hole, context=4.0, min_crop=32) == [(900, 1140, 1410, 1650)]
    hole = _hole((2000, 3000), (1000, 1004, 1500, 1506))  # 4 x 6 px: the 32 px floor
    assert crop_boxes(hole, context=4.0, min_crop=32) == [(986, 1018, 1487, 1519)]


def test_crops_are_shifted_inside_the_photo_and_clipped_to_it():
    hole = _hole((600, 3000), (5, 30, 2980, 2999))  # in the top-right corner of a wide photo
    assert crop_boxes(hole, context=4.0, min_crop=32) == [(0, 100, 2900, 3000)]
    hole = _hole((300, 400), (100, 120, 100, 120))
    assert crop_boxes(hole, context=4.0, min_crop=512) == [(0, 300, 0, 400)]


def test_far_apart_small_holes_keep_small_crops_of_their_own():
    # Issue 27: with a 512 px floor per crop and each merge regrown from the merged extent, 40
    # small holes on a 6000 x 8000 photo snowballed into one whole-photo crop.
    hole = _scattered_holes((6000, 8000), 40, seed=27)
    crop = CropInpainter(lambda i, h: i, context=4.0, min_side=512)
    boxes = crop.boxes(hole)
    assert len(boxes) == 40
    assert max(max(y1 - y0, x1 - x0) for y0, y1, x0, x1 in boxes) <= 4 * 24
    small = _scattered_holes((1024, 1536), 20, seed=27, spacing=200)
    assert len(crop.boxes(small)) == 20


def test_overlapping_boxes_merge_into_their_bounding_box_until_stable():
    # Two 20 px holes whose 80 px boxes overlap share one crop: the two boxes' bounding box, not
    # 4 x the merged extent.
    hole = _hole((1000, 1000), (400, 420, 400, 420), (400, 420, 460, 480))
    assert crop_boxes(hole, context=4.0, min_crop=32) == [(370, 450, 370, 510)]
    # A and B overlap; C overlaps neither, only their merged box: one crop after a second round.
    hole = _hole((400, 400), (30, 50, 30, 50), (90, 110, 90, 110), (125, 135, 20, 30))
    assert crop_boxes(hole, context=4.0, min_crop=32) == [(0, 150, 0, 140)]


def test_random_holes_are_covered_once_by_disjoint_crops():
    rng = np.random.default_rng(0)
    hole = np.zeros((1500, 2500), bool)
    for _ in range(60):
        y, x = rng.integers(0, 1450), rng.integers(0, 2450)
        hole[y : y + rng.integers(3, 50), x : x + rng.integers(3, 50)] = True
    boxes = crop_boxes(hole, context=4.0, min_crop=32)
    cover = np.zeros(hole.shape, np.int32)
    for y0, y1, x0, x1 in boxes:
        cover[y0:y1, x0:x1] += 1
    assert cover.max() == 1, "crops overlap"
    assert (cover[hole] == 1).all(), "a hole pixel is outside every crop"


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
    out = CropInpainter(_mean_fill(calls), context=4.0, min_side=128, colour_match=False)(image, hole)
    assert calls == [(160, 160), (200, 200)]  # already above min_side: run as they are
    assert np.array_equal(out[~hole], image[~hole]) and not np.array_equal(out[hole], image[hole])
    # The fill comes from the crop's own context, not the whole photo's mean.
    crop = image[35:195, 40:200][~hole[35:195, 40:200]].mean(axis=0).astype(np.uint8)
    assert np.array_equal(out[110, 110], crop)


def test_small_crops_run_upscaled_to_the_working_size_without_hole_content_leaking():
    image = np.zeros((1024, 1536, 3), np.uint8)
    hole = _scattered_holes(image.shape[:2], 20, seed=3, spacing=200)
    image[hole] = 255  # hole content (say, the object to remove): must never reach known pixels
    seen = []

    def inner(big, big_hole):
        seen.append(big.shape[:2])
        assert not big[~big_hole].any(), "hole content leaked into the known pixels"
        out = big.copy()
        out[big_hole] = 7
        return out

    out = CropInpainter(inner, context=4.0, min_side=512, colour_match=False)(image, hole)
    assert len(seen) == 20 and all(min(s) == 512 for s in seen)
    assert np.array_equal(out[~hole], image[~hole])
    assert (out[hole] == 7).all(), "the fill scaled back mixes in pixels outside the hole"


def test_colour_match_shifts_each_hole_to_its_surroundings():
    image = np.zeros((200, 300, 3), np.uint8)
    image[:, 150:] = (40, 90, 200)  # two flat regions
    hole = _hole(image.shape[:2], (50, 70, 50, 80), (120, 140, 200, 230))
    fill = image.copy()
    fill[hole] = (90, 90, 90)  # a colour cast
    fill[60, 60] = (100, 95, 80)  # and some texture, which the shift keeps
    out = match_colour(fill, image, hole)
    assert np.array_equal(out[~hole], fill[~hole])
    assert (out[130, 210] == (40, 90, 200)).all() and (out[55, 55] == 0).all()
    assert np.array_equal(out[60, 60].astype(int) - out[55, 55], (10, 5, 0))
    everywhere = np.ones((20, 20), bool)  # no known pixel around: left as it is
    assert np.array_equal(match_colour(fill[:20, :20], image[:20, :20], everywhere), fill[:20, :20])


def test_many_small_holes_change_only_hole_pixels():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (1024, 1536, 3), dtype=np.uint8)
    hole = _scattered_holes(image.shape[:2], 40, seed=5, spacing=120)
    out = CropInpainter(_mean_fill([]), context=4.0, min_side=128)(image, hole)
    assert np.array_equal(out[~hole], image[~hole])
    assert (out[hole] != image[hole]).any()


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
    with pytest.raises(ValueError, match="min_crop must be >= 1"):
        CropInpainter(lambda i, h: i, min_crop=0)
