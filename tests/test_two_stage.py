"""The two-stage pipeline against the reference pipeline's stored run, and its exact shortcuts."""

import numpy as np
import pytest

from hrinpaint_jax.pipelines.two_stage import (
    Letterbox,
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
    out, stages = inpainter(case["image_rgb"], case["mask"], return_stages=True)
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
    full = TwoStageInpainter.from_pretrained(**kwargs, hole_local=False)(image, mask)
    local = TwoStageInpainter.from_pretrained(**kwargs, hole_local=True)(image, mask)
    np.testing.assert_array_equal(local, full)
    assert (local[mask == 255] != image[mask == 255]).any()  # the hole was really filled


def test_empty_mask_returns_the_image(inpainter):
    image = np.random.default_rng(1).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    out = inpainter(image, np.zeros((37, 53), np.uint8))
    np.testing.assert_array_equal(out, image)


def test_known_pixels_are_kept_and_odd_sizes_work(inpainter):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    mask = np.zeros((37, 53), np.uint8)
    mask[10:20, 15:40] = 255
    out = inpainter(image, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])


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
    fixed = TwoStageInpainter.from_pretrained(**kwargs, faithful=False)(image, mask)
    np.testing.assert_array_equal(fixed[mask == 0], image[mask == 0])
    untiled = TwoStageInpainter.from_pretrained(**kwargs)(image, mask)
    tiled = TwoStageInpainter.from_pretrained(**kwargs, tile_size=512, tile_overlap=256)(image, mask)
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
    np.testing.assert_array_equal(fixed(image, mask), fixed(other, mask))
    faithful = TwoStageInpainter.from_pretrained(**kwargs)
    assert (faithful(image, mask) != faithful(other, mask)).any()


def test_memory_budget_switches_to_tiles(converted, caplog):
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, size=(512, 768, 3), dtype=np.uint8)
    mask = np.zeros((512, 768), np.uint8)
    mask[100:400, 100:700] = 255
    kwargs = dict(dfnet_dir=converted["dfnet"], refine_dir=converted["shift_refine"])
    assert estimate_refine_gb((512, 768), (512, 768)) > 0.3
    with caplog.at_level("WARNING", logger="hrinpaint_jax"):
        budget = TwoStageInpainter.from_pretrained(**kwargs, memory_budget_gb=0.3)(image, mask)
    assert "over the 0.3 GB budget: refining in 512 px tiles" in caplog.text
    tiled = TwoStageInpainter.from_pretrained(**kwargs, tile_size=512)(image, mask)
    np.testing.assert_array_equal(budget, tiled)
    roomy = TwoStageInpainter.from_pretrained(**kwargs, memory_budget_gb=100.0)(image, mask)
    np.testing.assert_array_equal(roomy, TwoStageInpainter.from_pretrained(**kwargs)(image, mask))


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
