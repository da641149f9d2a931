"""The two-stage pipeline against the reference pipeline's stored run, and its exact shortcuts."""

import numpy as np
import pytest

from hrinpaint_jax.pipelines.two_stage import (
    Letterbox,
    MemoryBudgetError,
    TwoStageInpainter,
    estimate_refine_gb,
    hole_window,
    padded_size,
)


@pytest.fixture(scope="module")
def inpainter(converted):
    return TwoStageInpainter.from_pretrained(converted["dfnet"], converted["shift_refine"])


def assert_within_one_level(got, want, name, fraction=0.999):
    """|diff| <= 1 everywhere and nonzero on at most 0.1 % of values (fixtures README: a float64
    run of the reference itself moves that many values by 1)."""
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert got.shape == want.shape, name
    assert diff.max() <= 1, f"{name}: max diff {diff.max()}"
    assert (diff == 0).mean() >= fraction, f"{name}: {(diff > 0).mean():.2%} of values differ"


def test_faithful_pipeline_matches_reference_run(inpainter, fixtures_dir):
    case = np.load(fixtures_dir / "pipeline_case.npz")
    # The stored case's mask file is 0/255: the bool hole and the reference's soft mask agree.
    assert set(np.unique(case["mask"])) == {0, 255}
    out, stages = inpainter(case["image_rgb"], case["mask"] == 255, return_stages=True)
    # The DFNet call inside the pipeline: letterboxed BGR input, continuous mask, output.
    for key in ("dfnet_img_miss", "dfnet_mask", "dfnet_out_0"):
        want = np.transpose(case[key][0], (1, 2, 0))
        np.testing.assert_allclose(stages[key], want, atol=1e-5, err_msg=key)
    assert_within_one_level(stages["dfnet_stage_rgb"], case["dfnet_stage_rgb"], "dfnet_stage_rgb")
    assert_within_one_level(out, case["final_rgb"], "final_rgb")


def test_letterbox_and_window_geometry():
    # REFERENCE.md 4 worked examples.
    assert padded_size(1000, 1500) == (1024, 1536)
    assert Letterbox.for_size(1024, 1536) == Letterbox(341, 512, 85, 0)
    assert Letterbox.for_size(3072, 2048) == Letterbox(512, 341, 0, 85)
    assert Letterbox.for_size(512, 512) == Letterbox(512, 512, 0, 0)
    hole = np.zeros((2048, 2048), bool)
    hole[683:1366, 683:1366] = True
    assert hole_window(hole, 255) == (256, 256, 1536, 1536)
    hole[:] = False
    hole[0:10, 2040:2048] = True
    assert hole_window(hole, 255) == (0, 1536, 512, 512)


def test_hole_local_refinement_equals_full(converted):
    """The decoder on the hole's window (+255 px margin) gives the full computation's output."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(1024, 768, 3), dtype=np.uint8)
    mask = np.zeros((1024, 768), np.uint8)
    mask[700:760, 100:300] = 255  # window: rows 256..1024, cols 0..768 (smaller than the image)
    kwargs = dict(dfnet_dir=converted["dfnet"], refine_dir=converted["shift_refine"])
    full = TwoStageInpainter.from_pretrained(**kwargs, hole_local=False)(image, mask == 255)
    local = TwoStageInpainter.from_pretrained(**kwargs, hole_local=True)(image, mask == 255)
    np.testing.assert_array_equal(local, full)
    assert (local[mask == 255] != image[mask == 255]).any()  # the hole was really filled


def test_empty_mask_returns_the_image(inpainter):
    image = np.random.default_rng(1).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    out = inpainter(image, np.zeros((37, 53), bool))
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(inpainter.stage1(image, np.zeros((37, 53), bool)), image)


def test_known_pixels_are_kept_and_odd_sizes_work(inpainter):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    hole = np.zeros((37, 53), bool)
    hole[10:20, 15:40] = True
    out = inpainter(image, hole)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~hole], image[~hole])
    # A numeric 0/1 hole is the same hole; the reference's 0/255 mask file is its soft_mask form.
    np.testing.assert_array_equal(inpainter(image, hole.astype(np.float32)), out)
    np.testing.assert_array_equal(
        inpainter(image, soft_mask=np.where(hole, 255, 0).astype(np.uint8)), out
    )


def test_fixed_mode_and_tiling(converted):
    """faithful=False keeps known pixels and differs only inside the hole; tiled refinement stays
    close to the untiled result (the encoder then sees one tile only, so it is approximate)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:512, 0:768]
    image = np.stack([(x * 255 // 767), (y * 255 // 511), ((x + y) % 256)], -1).astype(np.uint8)
    image = np.clip(image + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((512, 768), np.uint8)
    mask[200:300, 300:450] = 255
    kwargs = dict(dfnet_dir=converted["dfnet"], refine_dir=converted["shift_refine"])
    hole = mask == 255
    fixed = TwoStageInpainter.from_pretrained(**kwargs, faithful=False)(image, hole)
    np.testing.assert_array_equal(fixed[mask == 0], image[mask == 0])
    untiled = TwoStageInpainter.from_pretrained(**kwargs)(image, hole)
    tiled = TwoStageInpainter.from_pretrained(**kwargs, tile_size=512, tile_overlap=256)(image, hole)
    np.testing.assert_array_equal(tiled[mask == 0], image[mask == 0])
    diff = np.abs(tiled.astype(int) - untiled.astype(int))[mask == 255]
    assert diff.mean() < 4.0, diff.mean()


def test_fixed_mode_never_leaks_hole_content(converted):
    """With an antialiased mask the reference mixes hole content into the fill (DFNet sees
    1 - m/255) and keeps it where m < 255; fixed mode binarises once, so what the hole held never
    matters."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, size=(512, 512, 3), dtype=np.uint8)
    mask = np.zeros((512, 512), np.uint8)
    mask[200:300, 200:300] = 255
    mask[196:200, 200:300] = 200  # an antialiased edge, on the hole side of the 128 threshold
    hole = mask >= 128
    other = image.copy()
    other[hole] = 255 - other[hole]  # different content inside the hole
    kwargs = dict(dfnet_dir=converted["dfnet"], refine_dir=converted["shift_refine"])
    fixed = TwoStageInpainter.from_pretrained(**kwargs, faithful=False)
    np.testing.assert_array_equal(fixed(image, soft_mask=mask), fixed(other, soft_mask=mask))
    faithful = TwoStageInpainter.from_pretrained(**kwargs)
    assert (faithful(image, soft_mask=mask) != faithful(other, soft_mask=mask)).any()


def test_memory_budget_switches_to_tiles(converted, caplog):
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, size=(512, 768, 3), dtype=np.uint8)
    hole = np.zeros((512, 768), bool)
    hole[100:400, 100:700] = True
    kwargs = dict(dfnet_dir=converted["dfnet"], refine_dir=converted["shift_refine"])
    # The whole refinement (plus the image buffers) needs ~0.69 GB, one 512 px tile ~0.53 GB.
    assert estimate_refine_gb((512, 768), (512, 768)) > 0.6
    with caplog.at_level("WARNING", logger="hrinpaint_jax"):
        budget = TwoStageInpainter.from_pretrained(**kwargs, memory_budget_gb=0.6)(image, hole)
    assert "over the 0.6 GB budget: refining in 512 px tiles" in caplog.text
    tiled = TwoStageInpainter.from_pretrained(**kwargs, tile_size=512)(image, hole)
    np.testing.assert_array_equal(budget, tiled)
    roomy = TwoStageInpainter.from_pretrained(**kwargs, memory_budget_gb=100.0)(image, hole)
    np.testing.assert_array_equal(roomy, TwoStageInpainter.from_pretrained(**kwargs)(image, hole))
    # A budget below the smallest tile is a promise that cannot be kept: refused, not exceeded.
    with pytest.raises(MemoryBudgetError, match=r"needs at least 0\.5 GB .* over the 0\.3 GB"):
        TwoStageInpainter.from_pretrained(**kwargs, memory_budget_gb=0.3)(image, hole)


def test_tile_inputs_equal_the_crop_of_the_whole_image_input():
    """Each tile's 20-channel input, built on the host from uint8 data, is exactly the tile of the
    whole-image tensor (shifted copies reaching beyond the tile and the image included)."""
    import jax.numpy as jnp

    from hrinpaint_jax.ops.pixels import from_uint8
    from hrinpaint_jax.ops.shift import reference_shift, shift_refine_input
    from hrinpaint_jax.pipelines.tiling import tile_inputs

    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (512, 768, 3), dtype=np.uint8)
    hole = np.zeros((512, 768), bool)
    hole[150:330, 200:600] = True
    box = (140, 340, 190, 610)
    fill = rng.integers(0, 256, (200, 420, 3), dtype=np.uint8)
    matched = image.copy()
    matched[box[0] : box[1], box[2] : box[3]][hole[box[0] : box[1], box[2] : box[3]]] = fill[
        hole[box[0] : box[1], box[2] : box[3]]
    ]
    shift = reference_shift(512)
    whole = np.asarray(
        shift_refine_input(
            jnp.asarray(from_uint8(matched))[None], jnp.asarray(hole)[None, ..., None], shift
        )
    )[0]
    for top, left in ((0, 0), (0, 256), (256, 512)):
        x, h = tile_inputs(image, hole, fill, box, shift, top, left, (256, 256))
        np.testing.assert_array_equal(x, whole[top : top + 256, left : left + 256])
        np.testing.assert_array_equal(h[..., 0], hole[top : top + 256, left : left + 256])


def test_large_windows_avoid_the_eigen_convolution_limit(inpainter, monkeypatch, caplog):
    """With the CPU tuning flag, a decoder window beyond 3072 px would make XLA abort: tile."""
    from hrinpaint_jax.runtime import YNN_OFF

    monkeypatch.setenv("XLA_FLAGS", YNN_OFF)
    with caplog.at_level("WARNING", logger="hrinpaint_jax"):
        assert inpainter._plan_tiles(4096, 4096, (4096, 4096)) == 2048
    assert "Eigen convolution" in caplog.text
    assert inpainter._plan_tiles(4096, 4096, (2048, 3072)) is None
    monkeypatch.setenv("XLA_FLAGS", "")
    assert inpainter._plan_tiles(4096, 4096, (4096, 4096)) is None


def test_stage1_is_the_matched_image_and_bad_holes_are_refused(inpainter):
    """``stage1``: the upscaled DFNet result in the hole (the refinement's input), known pixels
    kept; a 0/255 mask, a soft value or a wrong shape as ``hole`` is a ValueError naming it."""
    import jax.numpy as jnp

    from hrinpaint_jax.pipelines.two_stage import refine_inputs, stage1_upscaled

    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    hole = np.zeros((256, 256), bool)
    hole[60:120, 90:200] = True
    matched = inpainter.stage1(image, hole)
    mask = jnp.asarray(np.where(hole, 255, 0).astype(np.uint8))
    args = (inpainter.dfnet, inpainter.dfnet_variables, jnp.asarray(image), mask)
    upscaled, _ = stage1_upscaled(*args, faithful=True)
    _, want = refine_inputs(jnp.asarray(image), mask, upscaled, faithful=True)
    np.testing.assert_array_equal(matched, np.asarray(want))
    assert (matched[hole] != image[hole]).any()
    with pytest.raises(ValueError, match=r"hole must be bool .* holds 255"):
        inpainter(image, np.where(hole, 255, 0).astype(np.uint8))
    with pytest.raises(ValueError, match=r"holds 0\.5"):
        inpainter(image, np.where(hole, 0.5, 0.0))
    with pytest.raises(ValueError, match=r"hole must be \[H, W\]"):
        inpainter(image, hole[:10])
    with pytest.raises(ValueError, match="exactly one of hole"):
        inpainter(image, hole, soft_mask=np.zeros((256, 256), np.uint8))
