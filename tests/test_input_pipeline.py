"""Training input pipeline (NumPy / PIL / OpenCV, no TensorFlow): shapes, masks, even crops, small
images, determinism over worker counts, resume and process layouts, bad files, patch corners,
device prefetch, mock TFDS, and a run with TensorFlow unimportable."""

import dataclasses
import logging
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from PIL import Image

from hrinpaint_jax.input_pipeline import (
    DataConfig,
    crop_pair,
    host_batches,
    image_dataset,
    list_images,
)
from hrinpaint_jax.parallel import prefetch_to_device
from hrinpaint_jax.refinement_data import refinement_batches, valid_patch_corners


def speckle_masks(step, batch, height, width, rng):
    return (rng.uniform(size=(batch, height, width, 1)) > 0.8).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six photos-like images of assorted sizes and formats (one smaller than the crop, one in a
    subfolder), one corrupt file (bad header) and one truncated file (good header, bad data)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    sizes = [(90, 120), (64, 64), (40, 70), (128, 96), (100, 100), (75, 150)]
    for i, (h, w) in enumerate(sizes):
        sub = root / "nested" if i == 5 else root
        sub.mkdir(exist_ok=True)
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(array).save(sub / (f"im{i}.png" if i % 2 else f"im{i}.jpg"))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    data = (root / "im1.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 3])
    (root / "notes.txt").write_text("not an image")
    return root


def first(cfg, **kw):
    kw.setdefault("num_devices", 2)
    kw.setdefault("process_index", 0)
    kw.setdefault("process_count", 1)
    return next(host_batches(cfg, **kw))


def take(cfg, n, **kw):
    kw.setdefault("num_devices", 2)
    kw.setdefault("process_index", 0)
    kw.setdefault("process_count", 1)
    it = host_batches(cfg, **kw)
    out = [next(it) for _ in range(n)]
    it.close()
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_folder_batches_shapes_and_masks(folder, caplog):
    assert len(list_images(folder)) == 8  # recursive, suffix-filtered (the bad .pngs included)
    cfg = DataConfig(source=f"folder:{folder}", crop_size=64, global_batch_size=8, workers=2)
    with caplog.at_level(logging.WARNING, logger="hrinpaint_jax.input_pipeline"):
        batch = first(cfg, mask_sampler=speckle_masks)
    assert set(batch) == {"image_hr", "mask", "mask_hr"}  # no 'image_lr': made on the device
    assert batch["image_hr"].shape == (2, 4, 64, 64, 3)
    assert batch["mask"].shape == (2, 4, 32, 32, 1)  # LR size
    assert batch["mask_hr"].shape == (2, 4, 64, 64, 1)
    assert batch["image_hr"].dtype == batch["mask"].dtype == np.float32
    assert 0.0 <= batch["image_hr"].min() and batch["image_hr"].max() <= 1.0
    np.testing.assert_array_equal(batch["mask_hr"][:, :, ::2, ::2], batch["mask"])
    np.testing.assert_array_equal(batch["mask_hr"][:, :, 1::2, 1::2], batch["mask"])
    assert set(np.unique(batch["mask"])) == {0.0, 1.0}
    assert any("broken.png" in r.getMessage() for r in caplog.records)


def test_deterministic_whatever_the_worker_count(folder):
    """Same batches with 1, 2 and 5 workers (the truncated file is replaced the same way), and a
    different seed gives different batches."""
    cfg = DataConfig(source=f"folder:{folder}", crop_size=48, global_batch_size=4, workers=1)
    runs = [take(dataclasses.replace(cfg, workers=w), 4, mask_sampler=speckle_masks) for w in (1, 2, 5)]
    for run in runs[1:]:
        for a, b in zip(runs[0], run, strict=True):
            assert_same(a, b)
    other = first(dataclasses.replace(cfg, seed=1), mask_sampler=speckle_masks)
    assert not np.array_equal(runs[0][0]["image_hr"], other["image_hr"])


def test_decoded_image_cache_keeps_the_batches_and_its_budget(folder, monkeypatch):
    """``cache_mb``: the same batches with no cache, a cache smaller than the folder and one that
    holds it all; a budget is never passed, cached images are read-only and not decoded again."""
    from hrinpaint_jax import input_pipeline as ip

    cfg = DataConfig(source=f"folder:{folder}", crop_size=48, global_batch_size=4, workers=2)
    runs = [take(dataclasses.replace(cfg, cache_mb=mb), 5, mask_sampler=speckle_masks) for mb in (0, 1)]
    for a, b in zip(*runs, strict=True):
        assert_same(a, b)

    files = [f for f in ip._folder_files(cfg) if "truncated" not in f]  # the six good photos
    budget = 64 * 100 * 3  # holds the 64x64 photo (12 KiB) and the 40x70 one, not the larger ones
    stream = ip._FileStream(files, seed=0, cache_bytes=budget)
    import hrinpaint_jax.image_io as image_io

    decodes, original = [], image_io.read_image

    def counting(path):  # _FileStream.load imports read_image at call time, so it sees this
        decodes.append(path)
        return original(path)

    monkeypatch.setattr(image_io, "read_image", counting)
    perm = np.arange(len(files))
    first_pass = [stream.load(perm, i) for i in range(len(files))]
    assert len(decodes) == len(files)
    assert 0 < len(stream._cache) < len(files)
    assert sum(a.nbytes for a in stream._cache.values()) <= budget
    assert all(not a.flags.writeable for a in stream._cache.values())
    decodes.clear()
    second = [stream.load(perm, i) for i in range(len(files))]
    assert len(decodes) == len(files) - len(stream._cache)  # only the uncached ones again
    for a, b in zip(first_pass, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_equals_the_uninterrupted_stream(folder):
    """``start_step`` continues the exact stream (images, crops, flips, masks), across epochs."""
    cfg = DataConfig(source=f"folder:{folder}", crop_size=32, global_batch_size=4, workers=2)
    whole = take(cfg, 6, mask_sampler=speckle_masks)
    for start in (1, 5):
        resumed = take(cfg, 6 - start, mask_sampler=speckle_masks, start_step=start)
        for a, b in zip(whole[start:], resumed, strict=True):
            assert_same(a, b)


def test_batches_do_not_depend_on_the_process_layout(folder):
    """Two processes x 1 device see exactly the halves of the 1-process x 2-device batches
    (images, crops, flips and masks), at the start and after a resume."""
    cfg = DataConfig(source=f"folder:{folder}", crop_size=32, global_batch_size=4, workers=2)
    for start in (0, 3):
        kw = dict(mask_sampler=speckle_masks, start_step=start)
        whole = first(cfg, num_devices=2, process_index=0, process_count=1, **kw)
        p0 = first(cfg, num_devices=1, process_index=0, process_count=2, **kw)
        p1 = first(cfg, num_devices=1, process_index=1, process_count=2, **kw)
        assert p0["image_hr"].shape == (1, 2, 32, 32, 3)  # 4 images over 2 processes
        for key in whole:
            np.testing.assert_array_equal(np.concatenate([p0[key], p1[key]]), whole[key])
        assert not np.array_equal(p0["image_hr"], p1["image_hr"])


def test_crops_at_even_offsets():
    """Every crop of a coordinate-coded image starts at an even row and column."""
    h, w = 41, 57
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    cfg = DataConfig(crop_size=16, flip=False)
    tops, lefts = set(), set()
    for seed in range(60):
        hr = np.round(crop_pair(image, cfg, np.random.default_rng(seed))["image_hr"] * 255)
        top, left = int(hr[0, 0, 0]), int(hr[0, 0, 1])
        np.testing.assert_array_equal(hr[..., 0], rows[top : top + 16, left : left + 16])
        np.testing.assert_array_equal(hr[..., 1], cols[top : top + 16, left : left + 16])
        tops.add(top)
        lefts.add(left)
    assert all(t % 2 == 0 for t in tops) and all(c % 2 == 0 for c in lefts)
    assert max(tops) == 24 and max(lefts) == 40 and len(tops) > 5  # the whole even range is reached
    flips = 0
    for seed in range(20):  # same draws (top, left, then the flip): the flip mirrors the same crop
        flipped = crop_pair(image, dataclasses.replace(cfg, flip=True), np.random.default_rng(seed))
        plain = crop_pair(image, cfg, np.random.default_rng(seed))["image_hr"]
        mirrored = np.array_equal(flipped["image_hr"], plain[:, ::-1])
        assert mirrored or np.array_equal(flipped["image_hr"], plain)
        flips += mirrored
    assert 3 <= flips <= 17


def test_small_images_grow_to_the_crop():
    """A 20 x 30 image is resized up (bicubic, aspect kept, shorter side = crop) before cropping."""
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    cfg = DataConfig(crop_size=40, flip=False)
    hr = crop_pair(image, cfg, np.random.default_rng(3))["image_hr"]
    assert hr.shape == (40, 40, 3) and hr.dtype == np.float32
    assert 0.0 <= hr.min() and hr.max() <= 1.0
    grown = np.clip(cv2.resize(image / np.float32(255), (60, 40), interpolation=cv2.INTER_CUBIC), 0, 1)
    left = [c for c in range(0, 21, 2) if np.allclose(grown[:, c : c + 40], hr, atol=1e-6)]
    assert len(left) == 1


def test_corner_search_equals_brute_force():
    rng = np.random.default_rng(0)
    hole = (rng.uniform(size=(23, 31)) > 0.7).astype(np.float32)
    hole[5:15, 10:25] = 1
    want = [(t, c) for t in range(16) for c in range(24)
            if 0.3 <= hole[t : t + 8, c : c + 8].mean() <= 0.6]  # fmt: skip
    got = valid_patch_corners(hole, 8, 0.3, 0.6)
    assert [tuple(x) for x in got] == want and len(want) > 5  # same windows, row-major order
    assert [tuple(x) for x in valid_patch_corners(hole, 8, 0.0, 1.0)] == [
        (t, c) for t in range(16) for c in range(24)]  # fmt: skip
    assert len(valid_patch_corners(np.zeros((20, 20)), 8, 0.1, 0.9)) == 0
    with pytest.raises(ValueError, match="smaller than the 32 patch"):
        valid_patch_corners(hole, 32, 0.1, 0.9)


def test_refinement_batches_same_for_any_worker_count(folder):
    cfg = DataConfig(source=f"folder:{folder}", crop_size=64, lr_scale=1, global_batch_size=4, seed=3)
    kw = dict(patch_size=32, hole_range=(0.15, 0.3), num_devices=2, process_index=0, process_count=1)
    runs = []
    for workers in (1, 3):
        it = refinement_batches(dataclasses.replace(cfg, workers=workers), speckle_masks, **kw)
        runs.append([next(it), next(it)])
        it.close()
    for a, b in zip(*runs, strict=True):
        assert_same(a, b)
    batch = runs[0][1]
    assert batch["patch_top"].shape == (2, 2) and batch["patch_top"].dtype == np.int32
    masks = batch["mask"].reshape(-1, 64, 64)
    for m, t, c in zip(masks, batch["patch_top"].ravel(), batch["patch_left"].ravel(), strict=True):
        assert 0.15 <= m[t : t + 32, c : c + 32].mean() <= 0.3
    resumed = next(refinement_batches(cfg, speckle_masks, start_step=1, **kw))
    assert_same(resumed, runs[0][1])


def test_image_dataset_stream(folder):
    cfg = DataConfig(source=f"folder:{folder}", global_batch_size=2, workers=2)
    stream = image_dataset(cfg)
    images = [next(stream)[0] for _ in range(9)]  # epoch 0: 7 files pass the header check
    assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for im in images)
    shapes = [im.shape[:2] for im in images[:7]]  # the truncated file -> the next one, once more
    assert set(shapes) == {(90, 120), (64, 64), (40, 70), (128, 96), (100, 100), (75, 150)}


def test_bad_batch_split_and_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="not divisible"):
        first(DataConfig(source="samples", global_batch_size=6), num_devices=4)
    with pytest.raises(FileNotFoundError, match="no readable images"):
        first(DataConfig(source=f"folder:{tmp_path}", global_batch_size=2))
    with pytest.raises(ValueError, match="unknown data source"):
        first(DataConfig(source="nowhere", global_batch_size=2))


def test_bundled_samples_without_lr():
    cfg = DataConfig(source="samples", crop_size=96, lr_scale=1, global_batch_size=2)
    batch = first(cfg, mask_sampler=speckle_masks)
    assert set(batch) == {"image_hr", "mask"} and batch["image_hr"].shape == (2, 1, 96, 96, 3)
    assert batch["mask"].shape == (2, 1, 96, 96, 1)


def test_prefetch_to_device_feeds_pmap():
    n = jax.local_device_count()
    batches = iter([{"x": np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3) + i} for i in range(3)])
    double = jax.pmap(lambda b: b["x"] * 2, axis_name="batch")
    got = [np.asarray(double(b)) for b in prefetch_to_device(batches, 2)]
    assert len(got) == 3
    for i, g in enumerate(got):
        np.testing.assert_array_equal(g, 2 * (np.arange(n * 6).reshape(n, 2, 3) + i))


def test_mock_tfds_div2k():
    import tensorflow_datasets as tfds

    cfg = DataConfig(source="tfds:div2k", crop_size=64, global_batch_size=4, shuffle_buffer=4, workers=2)
    with tfds.testing.mock_data(num_examples=6):
        batch = first(cfg, num_devices=4, mask_sampler=speckle_masks)
        again = first(cfg, num_devices=4, mask_sampler=speckle_masks)
    assert set(batch) == {"image_hr", "mask", "mask_hr"}
    assert batch["image_hr"].shape == (4, 1, 64, 64, 3)
    assert batch["mask"].shape == (4, 1, 32, 32, 1)
    assert_same(batch, again)


def test_works_without_tensorflow():
    """A fresh interpreter where importing TensorFlow / TFDS fails draws batches of the samples."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None  # import tensorflow -> ImportError
        sys.modules["tensorflow_datasets"] = None
        import numpy as np
        from hrinpaint_jax.input_pipeline import DataConfig, host_batches

        def masks(step, batch, height, width, rng):
            return (rng.uniform(size=(batch, height, width, 1)) > 0.5).astype(np.float32)

        cfg = DataConfig(source="samples", crop_size=64, global_batch_size=2, workers=2)
        batch = next(host_batches(cfg, masks, num_devices=1, process_index=0, process_count=1))
        assert batch["image_hr"].shape == (1, 2, 64, 64, 3), batch["image_hr"].shape
        assert batch["mask"].shape == (1, 2, 32, 32, 1)
        assert "tensorflow" not in {m.split(".")[0] for m, v in sys.modules.items() if v}
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
