"""Training input pipeline: shapes, LR/HR pairs, masks, determinism, bad files, mock TFDS."""

import logging

import numpy as np
import pytest
from PIL import Image

from hrinpaint_jax.input_pipeline import DataConfig, host_batches, list_images
from hrinpaint_jax.ops.resize import resize_bicubic_tf


def speckle_masks(step, batch, height, width, rng):
    return (rng.uniform(size=(batch, height, width, 1)) > 0.8).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six photos-like images of assorted sizes and formats (one smaller than the crop, one in a
    subfolder) and one corrupt file."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    sizes = [(90, 120), (64, 64), (40, 70), (128, 96), (100, 100), (75, 150)]
    for i, (h, w) in enumerate(sizes):
        sub = root / "nested" if i == 5 else root
        sub.mkdir(exist_ok=True)
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(array).save(sub / (f"im{i}.png" if i % 2 else f"im{i}.jpg"))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.txt").write_text("not an image")
    return root


def first(cfg, **kw):
    kw.setdefault("num_devices", 2)
    kw.setdefault("process_index", 0)
    kw.setdefault("process_count", 1)
    return next(host_batches(cfg, **kw))


def test_folder_batches_shapes_pairs_and_masks(folder, caplog):
    assert len(list_images(folder)) == 7  # recursive, suffix-filtered (the broken .png included)
    cfg = DataConfig(source=f"folder:{folder}", crop_size=64, global_batch_size=8, shuffle_buffer=8)
    with caplog.at_level(logging.WARNING, logger="hrinpaint_jax.input_pipeline"):
        batch = first(cfg, mask_sampler=speckle_masks)
    assert batch["image_hr"].shape == (2, 4, 64, 64, 3)
    assert batch["image_lr"].shape == (2, 4, 32, 32, 3)
    assert batch["mask"].shape == (2, 4, 32, 32, 1)
    assert batch["mask_hr"].shape == (2, 4, 64, 64, 1)
    assert batch["image_hr"].dtype == np.float32
    assert 0.0 <= batch["image_hr"].min() and batch["image_hr"].max() <= 1.0
    # LR = TF bicubic antialiased downscale of the HR crop (REFERENCE 11.38).
    hr = batch["image_hr"].reshape(-1, 64, 64, 3)
    want = np.asarray(resize_bicubic_tf(hr, (32, 32), antialias=True))
    np.testing.assert_allclose(batch["image_lr"].reshape(-1, 32, 32, 3), want, atol=2e-6)
    np.testing.assert_array_equal(batch["mask_hr"][:, :, ::2, ::2], batch["mask"])
    assert set(np.unique(batch["mask"])) == {0.0, 1.0}
    assert any("broken.png" in r.getMessage() for r in caplog.records)


def test_deterministic_for_a_seed(folder):
    cfg = DataConfig(source=f"folder:{folder}", crop_size=48, global_batch_size=4, shuffle_buffer=8)
    a, b = first(cfg, mask_sampler=speckle_masks), first(cfg, mask_sampler=speckle_masks)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = first(DataConfig(**{**cfg.__dict__, "seed": 1}), mask_sampler=speckle_masks)
    assert not np.array_equal(a["image_hr"], c["image_hr"])
    # Masks depend on the step, so a resumed run draws the same ones.
    resumed = first(cfg, mask_sampler=speckle_masks, start_step=5)
    it = host_batches(cfg, speckle_masks, num_devices=2, process_index=0, process_count=1)
    fifth = [next(it) for _ in range(6)][5]
    np.testing.assert_array_equal(resumed["mask"], fifth["mask"])


def test_batches_do_not_depend_on_the_process_layout(folder):
    """Two processes x 1 device see exactly the halves of the 1-process x 2-device batches
    (images, crops, flips and masks), at the start and after a resume."""
    cfg = DataConfig(source=f"folder:{folder}", crop_size=32, global_batch_size=4, shuffle_buffer=4)
    for start in (0, 3):
        kw = dict(mask_sampler=speckle_masks, start_step=start)
        whole = first(cfg, num_devices=2, process_index=0, process_count=1, **kw)
        p0 = first(cfg, num_devices=1, process_index=0, process_count=2, **kw)
        p1 = first(cfg, num_devices=1, process_index=1, process_count=2, **kw)
        assert p0["image_hr"].shape == (1, 2, 32, 32, 3)  # 4 images over 2 processes
        for key in whole:
            np.testing.assert_array_equal(np.concatenate([p0[key], p1[key]]), whole[key])
        assert not np.array_equal(p0["image_hr"], p1["image_hr"])


def test_bad_batch_split_and_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="not divisible"):
        first(DataConfig(source="samples", global_batch_size=6), num_devices=4)
    with pytest.raises(FileNotFoundError, match="no readable images"):
        first(DataConfig(source=f"folder:{tmp_path}", global_batch_size=2))


def test_bundled_samples_without_lr():
    cfg = DataConfig(source="samples", crop_size=96, lr_scale=1, global_batch_size=2, shuffle_buffer=2)
    batch = first(cfg)
    assert set(batch) == {"image_hr"} and batch["image_hr"].shape == (2, 1, 96, 96, 3)


def test_mock_tfds_div2k():
    import tensorflow_datasets as tfds

    cfg = DataConfig(source="tfds:div2k", crop_size=64, global_batch_size=4, shuffle_buffer=4)
    with tfds.testing.mock_data(num_examples=6):
        batch = first(cfg, num_devices=4, mask_sampler=speckle_masks)
    assert batch["image_hr"].shape == (4, 1, 64, 64, 3)
    assert batch["mask"].shape == (4, 1, 32, 32, 1)
