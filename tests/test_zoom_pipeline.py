"""The Zoom-to-Inpaint pipeline at any size, and `hrinpaint inpaint --method zoom`."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from hrinpaint_jax.checkpoints import load_pretrained
from hrinpaint_jax.cli import main
from hrinpaint_jax.ops.pixels import to_uint8
from hrinpaint_jax.pipelines.zoom import (
    ZoomInpainter,
    estimate_zoom_gb,
    reference_test,
    zoom_forward,
)


@pytest.fixture(scope="module")
def weights(converted_zoom, tmp_path_factory):
    root = tmp_path_factory.mktemp("zoom_wts")
    os.symlink(converted_zoom, root / "zoom")
    return root


@pytest.fixture(scope="module")
def inpainter(converted_zoom):
    return ZoomInpainter.from_pretrained(converted_zoom)


def photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (3 * x + 5 * y) % 256], -1)
    return np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)


def hole_mask(h, w, top, left, bottom, right):
    m = np.zeros((h, w), np.uint8)
    m[top:bottom, left:right] = 255
    return m


def test_non_square_input_is_padded_and_cropped(inpainter):
    """37x53 pads to 40x56 by edge replication; the result equals the padded computation cropped,
    keeps every known pixel and changes the hole (also where the hole touches the border)."""
    image = photo(37, 53)
    mask = hole_mask(37, 53, 20, 40, 37, 53)  # touches the bottom-right corner
    out, stages = inpainter(image, mask == 255, return_stages=True)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert stages["final"].shape == (1, 40, 56, 3) and stages["refine"].shape == (1, 80, 112, 3)
    known = mask == 0
    np.testing.assert_array_equal(out[known], image[known])
    assert (out[~known] != image[~known]).any()
    padded_img = np.pad(image, ((0, 3), (0, 3), (0, 0)), mode="edge").astype(np.float32) / 255
    padded_mask = np.pad(mask, ((0, 3), (0, 3)), mode="edge").astype(np.float32)[..., None] / 255
    want = zoom_forward(inpainter.model, inpainter.variables, padded_img[None], padded_mask[None])
    np.testing.assert_array_equal(
        out, to_uint8(np.asarray(want["final"][0, :37, :53]), rounding="truncate")
    )
    # The reference's mask file as soft_mask (here 0/255) is the same input.
    np.testing.assert_array_equal(inpainter(image, soft_mask=mask), out)
    with pytest.raises(ValueError, match="hole must be bool"):
        inpainter(image, mask)


def test_reference_test_protocol_resizes_to_256(converted_zoom):
    """test.py: any input is resized to 256x256 (bicubic antialias, the mask too) before the run."""
    model, variables, _ = load_pretrained(converted_zoom)
    image = photo(96, 128, seed=1).astype(np.float32) / 255
    mask = hole_mask(96, 128, 30, 40, 60, 90).astype(np.float32) / 255
    final = reference_test(model, variables, image, mask)
    assert final.shape == (256, 256, 3)
    assert final.min() >= 0 and final.max() <= 1
    # Already 256x256: no resize, exactly zoom_forward.
    image256 = photo(256, 256, seed=2).astype(np.float32) / 255
    mask256 = hole_mask(256, 256, 100, 100, 150, 180).astype(np.float32) / 255
    direct = zoom_forward(
        model, variables, jnp.asarray(image256)[None], jnp.asarray(mask256)[None, ..., None]
    )
    np.testing.assert_array_equal(
        reference_test(model, variables, image256, mask256), direct["final"][0]
    )


def run(weights, image, mask, output, *extra):
    return main(
        ["inpaint", "--method", "zoom", "--image", str(image), "--mask", str(mask)]
        + ["--output", str(output), "--weights", str(weights), *extra]
    )


def test_cli_method_zoom_on_a_non_square_photo(weights, tmp_path, capsys):
    image, mask = photo(45, 70, seed=3), hole_mask(45, 70, 10, 20, 30, 50)
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert run(weights, tmp_path / "in.png", tmp_path / "m.png", tmp_path / "out.png") == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == image.shape
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
    assert (out[mask == 255] != image[mask == 255]).any()
    assert "filled 600 px" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--fixed"], "--fixed: only for --method two_stage"),
        (["--tile-size", "512"], "--tile-size: only for --method two_stage"),
        (["--memory-budget", "0.01"], "more than the 0.0 GB budget"),
    ],
)
def test_cli_zoom_rejections(weights, tmp_path, capsys, extra, message):
    image, mask = photo(40, 40), hole_mask(40, 40, 10, 10, 20, 20)
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert run(weights, tmp_path / "in.png", tmp_path / "m.png", tmp_path / "out.png", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("hrinpaint: error:"), err
    assert not (tmp_path / "out.png").exists()


def test_work_size_runs_shrunk_and_pastes_the_fill_back(inpainter, tmp_path, capsys, weights):
    """ZoomInpainter(work_size=N): a larger image runs at longer side N (the hole grown to cover
    every touched pixel) and only the hole changes; a smaller one runs natively; the CLI's
    --zoom-size picks it (auto = the size recorded with the weights, absent for these)."""
    image, mask = photo(72, 96, seed=5), hole_mask(72, 96, 20, 30, 50, 70)
    shrunk = ZoomInpainter(inpainter.model, inpainter.variables, work_size=48)
    out, stages = shrunk(image, mask == 255, return_stages=True)
    assert out.shape == image.shape and stages["final"].shape == (1, 36, 48, 3)
    known = mask == 0
    np.testing.assert_array_equal(out[known], image[known])
    assert (out[~known] != image[~known]).any()
    native = ZoomInpainter(inpainter.model, inpainter.variables, work_size=128)
    np.testing.assert_array_equal(native(image, mask == 255), inpainter(image, mask == 255))
    assert ZoomInpainter.from_pretrained(weights / "zoom").work_size is None  # no recorded size
    with pytest.raises(ValueError, match="work_size must be >= 16"):
        ZoomInpainter(inpainter.model, inpainter.variables, work_size=8)
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    src, hole = tmp_path / "in.png", tmp_path / "m.png"
    assert run(weights, src, hole, tmp_path / "o.png", "--zoom-size", "48") == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")), out)
    assert run(weights, src, hole, tmp_path / "p.png", "--zoom-size", "8") == 2
    err = capsys.readouterr().err  # the CLI's argparse type names the option
    assert "--zoom-size" in err and "must be auto, 0 or >= 16, got 8" in err
    assert not (tmp_path / "p.png").exists()


def test_cli_zoom_needs_zoom_weights(converted, tmp_path, capsys):
    (tmp_path / "w").mkdir()
    os.symlink(converted["dfnet"], tmp_path / "w" / "dfnet")
    Image.fromarray(photo(40, 40)).save(tmp_path / "in.png")
    Image.fromarray(hole_mask(40, 40, 10, 10, 20, 20)).save(tmp_path / "m.png")
    assert run(tmp_path / "w", tmp_path / "in.png", tmp_path / "m.png", tmp_path / "out.png") == 2
    assert "lacks zoom/" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_memory_estimate_is_linear_in_area():
    small, large = estimate_zoom_gb(512, 512), estimate_zoom_gb(1024, 1024)
    assert large > small > 0
    assert estimate_zoom_gb(2048, 2048) - large == pytest.approx(4 * (large - small))


def test_zoom_variants_run_through_the_model_option(inpainter):
    """with_zoom('bicubic' | 'none'): the same weights with the SR zoom swapped for a bicubic one
    or none (ZoomToInpaint.zoom); 'sr' is the model itself. Without zoom the refinement runs at the
    input size (multiples of 8)."""
    images = np.stack([photo(32, 48, seed=s) for s in (7, 8)]).astype(np.float32) / 255
    holes = np.zeros((2, 32, 48, 1), np.float32)
    holes[:, 8:20, 10:30] = 1
    full = inpainter.fill(images, holes)
    np.testing.assert_array_equal(
        full, zoom_forward(inpainter.model, inpainter.variables, images, holes)["final"]
    )
    np.testing.assert_array_equal(inpainter.with_zoom("sr").fill(images, holes), full)
    none = inpainter.with_zoom("none")
    assert none.model.zoom == "none" and none.multiple == 8 and inpainter.model.zoom == "sr"
    stages = none.forward(images, holes)
    assert stages["refine"].shape == (2, 32, 48, 3)
    bicubic = inpainter.with_zoom("bicubic").forward(images, holes)
    assert bicubic["refine"].shape == (2, 64, 96, 3)
    for out in (stages["final"], bicubic["final"]):
        np.testing.assert_array_equal(np.asarray(out)[holes[..., 0] == 0], images[holes[..., 0] == 0])
        assert not np.array_equal(np.asarray(out), np.asarray(full))
    with pytest.raises(ValueError, match="zoom must be one of sr, bicubic, none"):
        inpainter.with_zoom("nearest")
