"""`hrinpaint inpaint`: image modes, mask conventions, folder mode and every bad-input path.

Images are small (they pad to the 256x256 bucket, so the pipeline compiles once for the module).
Each bad-input test asserts the one-line message, the exit code, and that nothing was written or
overwritten.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from hrinpaint_jax.cli import main


@pytest.fixture(scope="module")
def weights(converted, tmp_path_factory):
    """A weights folder laid out as `hrinpaint inpaint --weights` expects."""
    root = tmp_path_factory.mktemp("wts")
    os.symlink(converted["dfnet"], root / "dfnet")
    os.symlink(converted["shift_refine"], root / "shift_refine")
    return root


def photo(h=37, w=53, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1)
    return np.clip(base + rng.integers(-10, 11, base.shape), 0, 255).astype(np.uint8)


def square_mask(h=37, w=53, value=255):
    m = np.zeros((h, w), np.uint8)
    m[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = value
    return m


def save(path, array, mode=None, **kw):
    Image.fromarray(array, mode).save(path, **kw) if mode else Image.fromarray(array).save(path, **kw)
    return path


def run(weights, image, mask, output, *extra):
    return main(
        [
            "inpaint",
            "--image",
            str(image),
            "--mask",
            str(mask),
            "--output",
            str(output),
            "--weights",
            str(weights),
            *extra,
        ]
    )


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_rgb_known_pixels_kept_hole_filled(weights, tmp_path, capsys):
    img, mask = photo(), square_mask()
    save(tmp_path / "in.png", img)
    save(tmp_path / "m.png", mask)
    assert run(weights, tmp_path / "in.png", tmp_path / "m.png", tmp_path / "out.png") == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == img.shape
    np.testing.assert_array_equal(out[mask == 0], img[mask == 0])
    assert (out[mask == 255] != img[mask == 255]).any()
    assert "filled" in capsys.readouterr().err
    assert listing(tmp_path) == ["in.png", "m.png", "out.png"]  # no temporary files left


def test_modes_rgba_gray_palette(weights, tmp_path):
    img, mask = photo(), square_mask()
    save(tmp_path / "m.png", mask)
    alpha = np.linspace(0, 255, 37 * 53).reshape(37, 53).astype(np.uint8)
    save(tmp_path / "rgba.png", np.dstack([img, alpha]), "RGBA")
    assert run(weights, tmp_path / "rgba.png", tmp_path / "m.png", tmp_path / "rgba_out.png") == 0
    out = Image.open(tmp_path / "rgba_out.png")
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[..., 3], alpha)

    gray = img[..., 1]
    save(tmp_path / "gray.png", gray, "L")
    assert run(weights, tmp_path / "gray.png", tmp_path / "m.png", tmp_path / "gray_out.png") == 0
    out = Image.open(tmp_path / "gray_out.png")
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out)[mask == 0], gray[mask == 0])

    Image.fromarray(img).quantize(16).save(tmp_path / "pal.png")
    assert run(weights, tmp_path / "pal.png", tmp_path / "m.png", tmp_path / "pal_out.png") == 0
    want = np.asarray(Image.open(tmp_path / "pal.png").convert("RGB"))
    out = np.asarray(Image.open(tmp_path / "pal_out.png"))
    np.testing.assert_array_equal(out[mask == 0], want[mask == 0])


def test_16bit_png_is_written_back_16bit(weights, tmp_path):
    import cv2

    rng = np.random.default_rng(4)
    img16 = rng.integers(0, 65536, size=(37, 53, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), img16[..., ::-1])
    save(tmp_path / "m.png", square_mask())
    assert run(weights, tmp_path / "deep.png", tmp_path / "m.png", tmp_path / "deep_out.png") == 0
    out = cv2.imread(str(tmp_path / "deep_out.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert out.dtype == np.uint16
    known = square_mask() == 0
    np.testing.assert_array_equal(out[known], img16[known])
    assert np.all(out[~known] % 257 == 0)  # the 8-bit fill scaled to 16 bits


def test_exif_orientation_applied_and_metadata_kept(weights, tmp_path):
    img = photo(37, 53)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display = rotate 90 clockwise
    exif[0x010F] = "hrinpaint-test-camera"
    icc = b"fake-icc-profile-bytes"
    Image.fromarray(img).save(tmp_path / "rot.jpg", exif=exif.tobytes(), icc_profile=icc, quality=100)
    upright = np.asarray(Image.open(tmp_path / "rot.jpg").transpose(Image.Transpose.ROTATE_270))
    mask = square_mask(53, 37)  # the mask is drawn on the upright image
    save(tmp_path / "m.png", mask)
    assert run(weights, tmp_path / "rot.jpg", tmp_path / "m.png", tmp_path / "rot_out.png") == 0
    out = Image.open(tmp_path / "rot_out.png")
    assert out.size == (37, 53)
    np.testing.assert_array_equal(np.asarray(out)[mask == 0], upright[mask == 0])
    assert out.getexif()[0x010F] == "hrinpaint-test-camera"
    assert out.getexif().get(0x0112, 1) == 1
    assert out.info.get("icc_profile") == icc


def test_mask_conventions(weights, tmp_path, capsys):
    img = photo()
    save(tmp_path / "in.png", img)
    # Black = hole, antialiased edge: binarised (warned once), hole-value black.
    mask = 255 - square_mask()
    mask[0, :5] = 100  # non-binary values outside the hole region (100 < 128: a hole when black)
    save(tmp_path / "m.png", mask)
    assert (
        run(
            weights, tmp_path / "in.png", tmp_path / "m.png", tmp_path / "a.png", "--hole-value", "black"
        )
        == 0
    )
    err = capsys.readouterr().err
    assert err.count("is not binary") == 1 and "threshold 128 (black = hole)" in err
    out = np.asarray(Image.open(tmp_path / "a.png"))
    hole = mask < 128
    np.testing.assert_array_equal(out[~hole], img[~hole])
    # Dilation grows the hole: more pixels change, all within the dilated square.
    save(tmp_path / "w.png", square_mask())
    assert (
        run(weights, tmp_path / "in.png", tmp_path / "w.png", tmp_path / "d.png", "--dilate", "3") == 0
    )
    out = np.asarray(Image.open(tmp_path / "d.png"))
    changed = np.any(out != img, axis=-1)
    ys, xs = np.nonzero(changed)
    assert ys.min() >= 12 - 3 and ys.max() <= 23 + 3 and xs.min() >= 17 - 3 and xs.max() <= 34 + 3
    assert changed[12 - 3 : 12, 20:30].any()  # outside the original square


def test_empty_mask_writes_the_image_unchanged(weights, tmp_path, capsys):
    img = photo()
    save(tmp_path / "in.png", img)
    save(tmp_path / "m.png", np.zeros((37, 53), np.uint8))
    assert run(weights, tmp_path / "in.png", tmp_path / "m.png", tmp_path / "out.png") == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), img)
    assert "empty mask" in capsys.readouterr().err


def test_dtype_bfloat16_is_close_to_float32(tmp_path, capsys):
    """--dtype bfloat16 (zoom, bundled weights): known pixels exact, the fill within 2 grey levels
    on average of the float32 fill (tests/test_mixed_precision.py measures both methods)."""
    from hrinpaint_jax.pipelines.load import DEFAULT_WEIGHTS

    img, mask = photo(64, 64), square_mask(64, 64)
    save(tmp_path / "in.png", img)
    save(tmp_path / "m.png", mask)
    outs = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.png"
        args = ("--method", "zoom", "--dtype", dtype)
        assert run(DEFAULT_WEIGHTS, tmp_path / "in.png", tmp_path / "m.png", out, *args) == 0
        outs[dtype] = np.asarray(Image.open(out)).astype(np.float64)
    hole = mask == 255
    np.testing.assert_array_equal(outs["bfloat16"][~hole], img[~hole])
    assert np.abs(outs["bfloat16"] - outs["float32"])[hole].mean() < 2.0
    code = run(DEFAULT_WEIGHTS, tmp_path / "in.png", tmp_path / "m.png", tmp_path / "x.png",
               "--dtype", "float16")  # fmt: skip
    assert code == 2 and "invalid choice: 'float16'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_image", "image not found"),
        ("missing_mask", "mask not found"),
        ("corrupt_image", "image is not a readable image"),
        ("truncated_image", "image is corrupt or truncated"),
        ("unreadable_mask", "mask is not a readable image"),
        ("size_mismatch", "mask {d}/m.png is 40x30 but image {d}/in.png is 53x37"),
        ("weights_missing", "weights folder {d}/nowhere lacks dfnet, shift_refine/"),
        ("bad_weights", "weights directory"),
        ("output_exists", "output exists, not overwriting (use --overwrite)"),
        ("bad_suffix", "unsupported output format .xyz"),
        ("jpeg_alpha", ".jpg cannot store the input's alpha channel"),
    ],
)
def test_bad_input_one_line_nonzero_nothing_written(case, message, weights, tmp_path, capsys):
    d = tmp_path
    img_path, mask_path, out = d / "in.png", d / "m.png", d / "out.png"
    save(img_path, photo())
    save(mask_path, square_mask())
    wts = weights
    if case == "missing_image":
        img_path = d / "none.png"
    elif case == "missing_mask":
        mask_path = d / "none.png"
    elif case == "corrupt_image":
        (d / "c.png").write_bytes(b"not an image at all")
        img_path = d / "c.png"
    elif case == "truncated_image":
        data = (d / "in.png").read_bytes()
        (d / "t.png").write_bytes(data[: len(data) // 2])
        img_path = d / "t.png"
    elif case == "unreadable_mask":
        (d / "m.png").write_bytes(b"\x00" * 64)
    elif case == "size_mismatch":
        save(mask_path, np.zeros((30, 40), np.uint8))
    elif case == "weights_missing":
        wts = d / "nowhere"
    elif case == "bad_weights":
        (d / "bw" / "dfnet").mkdir(parents=True)
        (d / "bw" / "shift_refine").mkdir()
        wts = d / "bw"
    elif case == "output_exists":
        out.write_bytes(b"precious")
    elif case == "bad_suffix":
        out = d / "out.xyz"
    elif case == "jpeg_alpha":
        save(img_path, np.dstack([photo(), np.full((37, 53), 200, np.uint8)]), "RGBA")
        out = d / "out.jpg"
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    assert run(wts, img_path, mask_path, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hrinpaint: error: "), err
    assert message.format(d=d) in err[0], err[0]
    after = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    assert after == before  # nothing written, nothing overwritten


def test_failed_write_leaves_no_partial_file(weights, tmp_path, monkeypatch, capsys):
    save(tmp_path / "in.png", photo())
    save(tmp_path / "m.png", square_mask())
    (tmp_path / "out.png").write_bytes(b"old result")

    def broken_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    code = run(weights, tmp_path / "in.png", tmp_path / "m.png", tmp_path / "out.png", "--overwrite")
    assert code == 2
    assert "No space left on device" in capsys.readouterr().err
    assert (tmp_path / "out.png").read_bytes() == b"old result"
    assert listing(tmp_path) == ["in.png", "m.png", "out.png"]


def test_folder_mode_reports_bad_pairs_and_processes_the_rest(weights, tmp_path, capsys):
    images, masks, outs = tmp_path / "img", tmp_path / "msk", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    save(images / "a.png", photo(37, 53, 1))
    save(masks / "a.png", square_mask())
    save(images / "b.jpg", photo(64, 48, 2))  # mask with another extension, paired by name
    save(masks / "b.png", square_mask(64, 48))
    save(images / "c.png", photo(37, 53, 3))  # no mask
    save(images / "d.png", photo(37, 53, 4))
    save(masks / "d.png", square_mask(20, 20))  # wrong size
    (images / "notes.txt").write_text("ignored")
    assert run(weights, images, masks, outs) == 2
    err = capsys.readouterr().err
    assert "inpainted 2 of 4 images" in err and "2 failed" in err
    assert "c.png: no mask named c.*" in err and "d.png: mask" in err
    assert listing(outs) == ["a.png", "b.jpg"]
    # Run again: existing outputs are reported, not overwritten.
    stamp = (outs / "a.png").stat().st_mtime_ns
    assert run(weights, images, masks, outs) == 2
    assert "output exists" in capsys.readouterr().err
    assert (outs / "a.png").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tile-size", "100"], "argument --tile-size: must be a positive multiple of 256, got 100"),
        (["--tile-size", "x"], "argument --tile-size: must be a positive multiple of 256, got x"),
        (["--zoom-size", "8"], "argument --zoom-size: must be auto, 0 or >= 16, got 8"),
        (["--mask-threshold", "0"], "argument --mask-threshold: must be in 1..255, got 0"),
        (["--dilate", "-1"], "argument --dilate: must be >= 0, got -1"),
    ],
)
def test_bad_arguments_are_usage_errors(extra, message, weights, tmp_path, capsys):
    """Checked by argparse before anything is read or loaded: usage line, message, exit 2."""
    save(tmp_path / "in.png", photo())
    save(tmp_path / "m.png", square_mask())
    assert run(weights, tmp_path / "in.png", tmp_path / "m.png", tmp_path / "out.png", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[0].startswith("usage: hrinpaint inpaint")
        and err[-1] == f"hrinpaint inpaint: error: {message}"
    )
    assert listing(tmp_path) == ["in.png", "m.png"]


def test_folder_mode_refuses_to_guess_between_masks_of_one_name(weights, tmp_path, capsys):
    """a.png with masks a.bmp and a.png: a per-pair error naming both; the other pairs still run."""
    images, masks, outs = tmp_path / "img", tmp_path / "msk", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    save(images / "a.png", photo(37, 53, 1))
    save(masks / "a.png", square_mask())
    save(masks / "a.bmp", np.zeros((37, 53), np.uint8))
    save(images / "b.png", photo(37, 53, 2))
    save(masks / "b.png", square_mask())
    assert run(weights, images, masks, outs) == 2
    err = capsys.readouterr().err
    assert "inpainted 1 of 2 images" in err and "1 failed" in err
    assert f"a.png: 2 masks named a.* in {masks} (a.bmp, a.png): keep one" in err
    assert listing(outs) == ["b.png"]


def test_refused_folder_run_creates_no_output_folder(tmp_path, capsys):
    images, masks = tmp_path / "img", tmp_path / "msk"
    images.mkdir()
    masks.mkdir()
    save(images / "a.png", photo())
    save(masks / "a.png", square_mask())
    assert run(tmp_path / "nowhere", images, masks, tmp_path / "out") == 2
    assert "lacks dfnet, shift_refine/" in capsys.readouterr().err
    assert listing(tmp_path) == ["img", "msk"]


def cli_process(*args, code=""):
    """``hrinpaint ARGS`` in a new Python process (``code`` runs first), stderr captured."""
    script = f"import sys\n{code}\nfrom hrinpaint_jax.cli import main\nsys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", script, *map(str, args)]
    return subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


# Signals the process itself just after the output's temporary file is complete, before it is moved
# into place: the worst moment for a partial file to stay behind.
SIGNAL_DURING_WRITE = """
import os, signal
from PIL import Image
_save = Image.Image.save
def save(self, fp, *args, **kwargs):
    _save(self, fp, *args, **kwargs)
    os.kill(os.getpid(), signal.{name})
Image.Image.save = save
"""


@pytest.mark.parametrize(
    "name, code, line",
    [("SIGINT", 130, "hrinpaint: interrupted"), ("SIGTERM", 143, "hrinpaint: terminated")],
)
def test_ctrl_c_and_sigterm_exit_with_one_line_and_leave_nothing(name, code, line, weights, tmp_path):
    save(tmp_path / "in.png", photo())
    save(tmp_path / "m.png", square_mask())
    args = ("inpaint", "--image", tmp_path / "in.png", "--mask", tmp_path / "m.png",
            "--output", tmp_path / "out.png", "--weights", weights)  # fmt: skip
    proc = cli_process(*args, code=SIGNAL_DURING_WRITE.format(name=name))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == line and "Traceback" not in err, err
    assert listing(tmp_path) == ["in.png", "m.png"]  # no output, no temporary file


# Sends the signal 0.5 s into the first XLA compilation, from another thread: jaxlib raises the
# interruption inside the compile call while XLA's own threads are still at work.
SIGNAL_DURING_COMPILE = """
import os, signal, threading
from jax._src import compiler
_compile = compiler.backend_compile_and_load
def compile_and_signal(*args, **kwargs):
    if not getattr(compiler, "signalled", False):
        compiler.signalled = True
        threading.Timer(0.5, os.kill, (os.getpid(), signal.{name})).start()
    return _compile(*args, **kwargs)
compiler.backend_compile_and_load = compile_and_signal
"""


@pytest.mark.parametrize(
    "name, code, line",
    [("SIGINT", 130, "hrinpaint: interrupted"), ("SIGTERM", 143, "hrinpaint: terminated")],
)
def test_a_signal_during_compilation_exits_cleanly_not_by_a_crash(name, code, line, weights, tmp_path):
    """Was exit -11 (SIGSEGV) in ``hrinpaint export`` and the device run: the interrupted compile's
    frames were freed under XLA's threads. Now the console script's ``program`` exits 130 / 143."""
    save(tmp_path / "in.png", photo())
    save(tmp_path / "m.png", square_mask())
    hook = SIGNAL_DURING_COMPILE.format(name=name)
    script = f"{hook}\nfrom hrinpaint_jax.cli import program\nprogram()"
    args = ("inpaint", "--image", tmp_path / "in.png", "--mask", tmp_path / "m.png",
            "--output", tmp_path / "out.png", "--weights", weights)  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == line and "Traceback" not in proc.stderr, proc.stderr
    assert listing(tmp_path) == ["in.png", "m.png"]


def test_sigterm_from_outside_stops_a_folder_run_cleanly(weights, tmp_path):
    """SIGTERM sent while a folder run is busy: exit 143 with one line, only complete outputs."""
    images, masks, outs = tmp_path / "img", tmp_path / "msk", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    save(tmp_path / "a.png", photo())
    save(tmp_path / "m.png", square_mask())
    for i in range(400):  # far more than the run gets through before the signal
        (images / f"{i:03d}.png").symlink_to(tmp_path / "a.png")
        (masks / f"{i:03d}.png").symlink_to(tmp_path / "m.png")
    proc = cli_process(
        "inpaint", "--image", images, "--mask", masks, "--output", outs, "--weights", weights
    )
    try:
        deadline = time.monotonic() + 600  # a hang guard, not a speed limit
        while not (outs.is_dir() and any(not p.name.startswith(".") for p in outs.iterdir())):
            assert proc.poll() is None and time.monotonic() < deadline, "no output appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "hrinpaint: terminated" and "Traceback" not in err, err
    written = listing(outs)
    assert 0 < len(written) < 400 and all(n.endswith(".png") and not n.startswith(".") for n in written)
    for n in written:  # every output that exists is complete
        np.testing.assert_array_equal(np.asarray(Image.open(outs / n))[square_mask() == 0],
                                      photo()[square_mask() == 0])  # fmt: skip


def test_tiling_warning_is_printed_once(weights, tmp_path):
    """A library imported on the way (orbax, through absl) gives the root logger a handler; the
    CLI's own "warning:" line must stay the only copy."""
    # 600 x 700 pads to 768: the whole refinement needs ~0.9 GB, one 512 px tile ~0.53 GB.
    save(tmp_path / "in.png", photo(600, 700))
    save(tmp_path / "m.png", square_mask(600, 700))
    proc = cli_process("inpaint", "--image", tmp_path / "in.png", "--mask", tmp_path / "m.png",
                       "--output", tmp_path / "out.png", "--weights", weights, "--whole-image",
                       "--memory-budget", "0.55")  # fmt: skip
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert err.count("refining in") == 1 and "warning: the refinement at" in err, err


def test_a_second_run_reuses_the_compiled_pipeline(weights, tmp_path, monkeypatch):
    """Issue 21: the pipeline's executables (not only small helpers) land in the persistent cache
    on the first run, and the second run of the same size finds them: nothing is compiled again."""
    cache = tmp_path / "xla"
    monkeypatch.setenv("HRINPAINT_COMPILE_CACHE", str(cache))
    save(tmp_path / "in.png", photo())
    save(tmp_path / "m.png", square_mask())

    def once(name):
        proc = cli_process("inpaint", "--image", tmp_path / "in.png", "--mask", tmp_path / "m.png",
                           "--output", tmp_path / name, "--weights", weights)  # fmt: skip
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        return {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}

    first = once("a.png")
    assert any(name.startswith("jit_two_stage_forward-") for name in first), sorted(first)
    assert once("b.png") == first  # every executable found, none rewritten
    monkeypatch.setenv("HRINPAINT_COMPILE_CACHE", "0")
    assert once("c.png") == first  # off: nothing written


def test_jpeg_output_warns_and_animated_input_is_noted(weights, tmp_path, capsys):
    """Issue 21: a JPEG output re-encodes the known pixels (warned), an animated input loses its
    later frames (noted); both still run."""
    frames = [Image.fromarray(photo(seed=s)) for s in (0, 1)]
    frames[0].save(tmp_path / "in.gif", save_all=True, append_images=frames[1:])
    save(tmp_path / "m.png", square_mask())
    assert run(weights, tmp_path / "in.gif", tmp_path / "m.png", tmp_path / "o.png") == 0
    err = capsys.readouterr().err
    assert "warning: in.gif has 2 frames; only the first is inpainted and written" in err
    assert "lossy" not in err
    assert run(weights, tmp_path / "in.gif", tmp_path / "m.png", tmp_path / "o.jpg") == 0
    assert "warning: .jpg is lossy: JPEG re-encoding changes known pixels too" in capsys.readouterr().err
