"""Reading and writing user files under hostile conditions (issue 21): decompression bombs, racing
writers, permission bits, killed writers' temporary files, lossy formats, 16-bit colour profiles,
libtiff's stderr chatter and animated files."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from PIL import Image

from hrinpaint_jax import atomic_files
from hrinpaint_jax.image_io import InputError, read_image, read_mask, result_pixels, write_image


def _png_header_only(path, width, height):
    """A PNG whose IHDR claims width x height, with one tiny IDAT: a decompression-bomb header."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


def _bmp_header_only(path, width, height):
    """A 9 kB BMP whose header claims width x height at 24 bits."""
    pixels = b"\0" * 9000
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    path.write_bytes(header + info + pixels)
    return path


def test_decompression_bombs_are_refused_from_the_header(tmp_path, monkeypatch):
    monkeypatch.delenv("HRINPAINT_MAX_PIXELS", raising=False)
    png = _png_header_only(tmp_path / "bomb.png", 13400, 13400)
    bmp = _bmp_header_only(tmp_path / "bomb.bmp", 20000, 20000)
    for path, size in ((png, "13400x13400"), (bmp, "20000x20000")):
        with pytest.raises(InputError, match=f"image is too large: .* is {size} .*HRINPAINT_MAX_PIXELS"):
            read_image(path)
        with pytest.raises(InputError, match="mask is too large"):
            read_mask(path)
    # The limit is the user's to raise; the file then fails as what it is (truncated), one line.
    monkeypatch.setenv("HRINPAINT_MAX_PIXELS", "0")
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_image(bmp)
    monkeypatch.setenv("HRINPAINT_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match="HRINPAINT_MAX_PIXELS must be a pixel count"):
        read_image(png)


def test_large_but_allowed_images_print_no_pil_warning(tmp_path, recwarn):
    """PIL warns from 89 Mpx; our limit replaces its guard, so no two-line warning appears."""
    path = _png_header_only(tmp_path / "big.png", 10000, 9000)
    with pytest.raises(InputError, match="corrupt or truncated"):  # the header is all there is
        read_image(path)
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


def _loaded(rgb):
    from hrinpaint_jax.image_io import LoadedImage

    return LoadedImage(np.ascontiguousarray(rgb), "RGB")


def test_second_writer_gets_output_exists_and_the_first_result_stays(tmp_path):
    out = tmp_path / "out.png"
    first, second = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)

    def racing_write(tmp):  # the other process finishes while we are still encoding
        write_image(out, first, _loaded(first))
        Image.fromarray(second).save(tmp, format="PNG")

    with pytest.raises(atomic_files.OutputExistsError, match="output exists, not overwriting"):
        atomic_files.atomic_write(out, racing_write, suffix=".tmp.png", overwrite=False)
    assert np.array_equal(np.asarray(Image.open(out)), first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary file left


_RACE = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from hrinpaint_jax.image_io import InputError, LoadedImage, write_image
    value, barrier = int(sys.argv[2]), sys.argv[3]
    rgb = np.full((64, 64, 3), value, np.uint8)
    open(f"{barrier}.{value}", "w").close()  # ready; then both start together, however slow
    while len([n for n in os.listdir(os.path.dirname(barrier)) if n.startswith("ready.")]) < 2:
        pass
    try:
        write_image(sys.argv[1], rgb, LoadedImage(rgb, "RGB"))
    except InputError as e:
        print(e)
        sys.exit(2)
    """
)


def test_two_processes_on_one_output_never_both_succeed(tmp_path):
    for trial in range(3):
        out = tmp_path / f"race{trial}.png"
        barrier = tmp_path / f"barrier{trial}"
        barrier.mkdir()
        args = [sys.executable, "-c", _RACE, str(out)]
        procs = [
            subprocess.Popen([*args, str(v), str(barrier / "ready")], stdout=subprocess.PIPE, text=True)
            for v in (10, 200)
        ]
        codes = [p.wait(timeout=600) for p in procs]
        outputs = [p.stdout.read() for p in procs]
        assert sorted(codes) == [0, 2], (codes, outputs)
        winner = (10, 200)[codes.index(0)]
        assert np.asarray(Image.open(out)).max() == winner
        assert "output exists" in outputs[codes.index(2)]
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_new_outputs_follow_the_umask_and_replaced_ones_keep_their_mode(tmp_path, umask):
    rgb = np.zeros((4, 4, 3), np.uint8)
    old = os.umask(umask)
    try:
        fresh = write_image(tmp_path / "new.png", rgb, _loaded(rgb))
        assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask
        kept = tmp_path / "kept.png"
        Image.fromarray(rgb).save(kept)
        os.chmod(kept, 0o640)
        write_image(kept, rgb + 1, _loaded(rgb), overwrite=True)
        assert kept.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from hrinpaint_jax.atomic_files import atomic_write
    def write(tmp):
        open(tmp, "wb").write(b"partial")
        print("writing", flush=True)
        time.sleep(60)
    atomic_write(sys.argv[1], write, suffix=".tmp.png", overwrite=False)
    """
)


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    out = tmp_path / "out.png"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(out)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=600)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".out.png.hrinpaint-"), left  # what kill -9 leaves
    rgb = np.zeros((4, 4, 3), np.uint8)
    write_image(out, rgb, _loaded(rgb))
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    # A live writer's temporary file (this process's parent is alive) is left alone.
    live = tmp_path / f".other.png.hrinpaint-{os.getppid()}-abc.tmp.png"
    live.write_bytes(b"x")
    write_image(tmp_path / "other.png", rgb, _loaded(rgb))
    assert live.exists()


def test_webp_is_lossless_and_jpeg_warns_that_it_is_not(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    warnings = []
    out = write_image(tmp_path / "o.webp", rgb, _loaded(rgb), warn=lambda k, m: warnings.append(m))
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), rgb) and not warnings
    write_image(tmp_path / "o.jpg", rgb, _loaded(rgb), warn=lambda k, m: warnings.append((k, m)))
    assert warnings == [(
        "lossy-output",
        ".jpg is lossy: JPEG re-encoding changes known pixels too (write .png, .tif or .webp to "
        "keep them bit-exact)",
    )]  # fmt: skip


def test_16bit_png_keeps_its_colour_profile_and_exif(tmp_path):
    import cv2
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    high = (np.arange(16 * 16 * 3, dtype=np.uint32).reshape(16, 16, 3) * 97 % 65536).astype(np.uint16)
    src = tmp_path / "in16.png"
    cv2.imwrite(str(src), high[..., ::-1])
    from hrinpaint_jax.image_io import _png_add_chunks  # the chunk writer under test

    exif = Image.Exif()
    exif[0x010E] = "a 16-bit test"  # ImageDescription
    _png_add_chunks(str(src), icc, exif.tobytes())
    image = read_image(src)
    assert image.high is not None and image.icc_profile == icc
    hole = np.zeros((16, 16), bool)
    hole[4:8, 4:8] = True
    out = write_image(tmp_path / "out16.png", result_pixels(image, image.rgb8, hole), image)
    again = Image.open(out)
    assert again.info.get("icc_profile") == icc
    assert again.getexif().get(0x010E) == "a 16-bit test"
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert back.dtype == np.uint16 and np.array_equal(back[~hole], high[~hole])


def test_corrupt_tiff_is_one_line_with_libtiffs_reason_and_nothing_on_stderr(tmp_path, capfd):
    rng = np.random.default_rng(1)
    path = tmp_path / "c.tif"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        path, compression="tiff_adobe_deflate"
    )
    data = bytearray(path.read_bytes())
    for i in range(20, 200):  # scramble the start of the compressed strip
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    capfd.readouterr()
    with pytest.raises(InputError) as err:
        read_image(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert capfd.readouterr().err == ""


def test_animated_gif_notes_that_only_the_first_frame_is_used(tmp_path):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 128, 255)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    image = read_image(path)
    assert image.notes == ("anim.gif has 3 frames; only the first is inpainted and written",)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "still.gif")
    assert read_image(tmp_path / "still.gif").notes == ()
