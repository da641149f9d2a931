"""Seed-000 refinement training data: hole-constrained patch corners, the 20-channel patch built
from whole-image shifts, stage 1 on the fly (equal to inference) and precomputed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from hrinpaint_jax.input_pipeline import DataConfig
from hrinpaint_jax.masks import irregular_mask
from hrinpaint_jax.ops.shift import shift_refine_input, shift_refine_patch
from hrinpaint_jax.refinement_data import (
    precompute_stage1,
    refinement_batches,
    stage1_examples,
    valid_patch_corners,
)


def irregular_sampler(step, batch, height, width, rng):
    return np.stack([irregular_mask(height, width, rng, min_ratio=0.1, max_ratio=0.6)
                     for _ in range(batch)])[..., None]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(300, 280), (256, 256), (200, 320)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"p{i}.png")
    return root


def test_valid_patch_corners_match_brute_force():
    rng = np.random.default_rng(0)
    hole = (rng.uniform(size=(23, 31)) > 0.7).astype(np.float32)
    hole[5:15, 10:25] = 1
    got = {tuple(c) for c in valid_patch_corners(hole, 8, 0.3, 0.6)}
    want = {
        (t, c) for t in range(16) for c in range(24) if 0.3 <= hole[t : t + 8, c : c + 8].mean() <= 0.6
    }
    assert got == want and len(want) > 5
    assert len(valid_patch_corners(np.zeros((20, 20)), 8, 0.1, 0.9)) == 0
    with pytest.raises(ValueError, match="smaller than the 32 patch"):
        valid_patch_corners(hole, 32, 0.1, 0.9)


@pytest.mark.parametrize("top,left", [(0, 0), (7, 19), (40, 0), (13, 32)])
def test_shift_patch_equals_crop_of_whole_image_input(top, left):
    rng = np.random.default_rng(top + left)
    matched = jnp.asarray(rng.uniform(size=(64, 56, 3)), jnp.float32)
    hole = jnp.asarray(rng.uniform(size=(64, 56, 1)) > 0.6, jnp.float32)
    shift = 12
    whole = shift_refine_input(matched[None], hole[None], shift)[0]
    patch = jax.jit(shift_refine_patch, static_argnums=(2, 5))(matched, hole, shift, top, left, 24)
    np.testing.assert_array_equal(patch, whole[top : top + 24, left : left + 24])


def test_refinement_batches_hole_fraction_shapes_and_determinism(folder):
    cfg = DataConfig(source=f"folder:{folder}", crop_size=96, lr_scale=1, global_batch_size=4,
                     shuffle_buffer=4, seed=3)  # fmt: skip
    kw = dict(patch_size=48, hole_range=(0.2, 0.5), num_devices=2, process_index=0, process_count=1)
    run = refinement_batches(cfg, irregular_sampler, **kw)
    first, second = next(run), next(run)
    assert first["image_hr"].shape == (2, 2, 96, 96, 3) and first["mask"].shape == (2, 2, 96, 96, 1)
    assert first["patch_top"].shape == (2, 2) and first["patch_top"].dtype == np.int32
    for batch in (first, second):
        masks = batch["mask"].reshape(-1, 96, 96)
        corners = zip(batch["patch_top"].ravel(), batch["patch_left"].ravel(), strict=True)
        for m, (t, c) in zip(masks, corners, strict=True):
            assert 0 <= t <= 48 and 0 <= c <= 48
            assert 0.2 <= m[t : t + 48, c : c + 48].mean() <= 0.5
    again = next(refinement_batches(cfg, irregular_sampler, **kw))
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])
    resumed = next(refinement_batches(cfg, irregular_sampler, start_step=1, **kw))
    np.testing.assert_array_equal(resumed["mask"], second["mask"])  # masks follow the step
    with pytest.raises(ValueError, match="lr_scale = 1"):
        next(refinement_batches(DataConfig(crop_size=96), irregular_sampler, **kw))


def test_training_stage1_equals_inference_stage1(converted):
    """Training's on-the-fly stage 1 is the inference pipeline's (faithful path): same matched
    image as ``refine_inputs`` of ``TwoStageInpainter`` on the same uint8 image and mask."""
    from hrinpaint_jax.checkpoints import load_pretrained
    from hrinpaint_jax.pipelines.two_stage import (
        refine_inputs,
        refinement_patches,
        stage1_upscaled,
        training_stage1,
    )

    dfnet, variables, _ = load_pretrained(converted["dfnet"])
    rng = np.random.default_rng(0)
    image_u8 = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    hole = irregular_mask(256, 256, rng, min_ratio=0.2, max_ratio=0.4)
    images = jnp.asarray(image_u8[None], jnp.float32) / 255.0
    holes = jnp.asarray(hole[None, ..., None])
    matched = training_stage1(dfnet, variables, images, holes, faithful=True)
    mask_u8 = jnp.asarray(hole * 255, jnp.uint8)
    upscaled, _ = stage1_upscaled(dfnet, variables, jnp.asarray(image_u8), mask_u8, faithful=True)
    (want_inputs, _), matched_u8 = refine_inputs(jnp.asarray(image_u8), mask_u8, upscaled, faithful=True)
    np.testing.assert_allclose(matched[0], np.asarray(matched_u8) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(matched[0][hole == 0], images[0][hole == 0])
    top, left = jnp.array([64]), jnp.array([128])
    inputs, hole_p, target = refinement_patches(matched, holes, images, top, left, size=128)
    np.testing.assert_allclose(inputs[0], want_inputs[0, 64:192, 128:256], atol=1e-6)
    np.testing.assert_array_equal(hole_p[0, ..., 0], hole[64:192, 128:256])
    np.testing.assert_array_equal(target[0], images[0, 64:192, 128:256])


def test_precomputed_stage1_round_trip(converted, folder, tmp_path):
    cfg = DataConfig(source=f"folder:{folder}", crop_size=256, lr_scale=1, global_batch_size=1,
                     shuffle_buffer=4, flip=False)  # fmt: skip
    out = tmp_path / "stage1"
    kw = dict(patch_size=128, hole_range=(0.1, 0.9))
    assert precompute_stage1(converted["dfnet"], cfg, irregular_sampler, out, 2, **kw) == 2
    assert precompute_stage1(converted["dfnet"], cfg, irregular_sampler, out, 2, **kw) == 0  # resumable
    triplets = stage1_examples(out)
    assert [p.rsplit("/", 1)[1] for p in triplets[0]] == [
        "000000.image.png", "000000.mask.png", "000000.stage1.png"]  # fmt: skip
    files = {tuple(np.asarray(Image.open(p)).shape) for t in triplets for p in t}
    assert files == {(256, 256, 3), (256, 256)}
    cfg2 = DataConfig(source="unused", crop_size=256, lr_scale=1, global_batch_size=2, flip=False)
    batch = next(refinement_batches(cfg2, stage1_dir=str(out), num_devices=1, process_index=0,
                                    process_count=1, **kw))  # fmt: skip
    assert batch["stage1"].shape == (1, 2, 256, 256, 3)
    stored = {np.asarray(Image.open(t[2])).tobytes() for t in triplets}
    for s in batch["stage1"][0]:
        assert np.round(s * 255).astype(np.uint8).tobytes() in stored
    hole = batch["mask"][0, ..., 0]
    known = hole == 0
    np.testing.assert_array_equal(batch["stage1"][0][known], batch["image_hr"][0][known])
    (tmp_path / "stage1" / "000001.mask.png").unlink()
    with pytest.raises(FileNotFoundError, match="lacks 000001.mask.png"):
        stage1_examples(out)
