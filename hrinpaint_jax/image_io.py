"""Reading and writing user images and masks without losing anything on the way.

* Images: RGB, RGBA (alpha kept), grayscale L / LA (returned as grayscale), palette P (written back
  as RGB / RGBA: re-quantising a fill to the palette would be lossy), 16-bit grayscale and 16-bit RGB
  PNG/TIFF (processed in 8 bits, written back in 16 bits with every known pixel bit-exact). EXIF
  orientation is applied on read; EXIF (orientation reset) and the ICC profile are written back.
* Masks: any mode; the first channel counts (as in the reference); 16-bit masks are scaled to 8 bits.
* Writes are atomic: a temporary file beside the target, moved into place when complete. A new
  output is created exclusively (a second writer racing for the same name gets "output exists",
  never a silent replacement); a replaced file keeps its permission bits, a new one follows the
  umask. Temporary files left by a killed process are removed by the next write to that target.
* Lossless by default: WebP is written lossless; JPEG cannot keep known pixels exact, and
  ``write_image`` says so through its ``warn`` callback.
* Images larger than ``max_pixels()`` (150 Mpx, ``$HRINPAINT_MAX_PIXELS``) are refused from their
  header, before any pixel is decoded (decompression bombs).

Errors are ``InputError`` with a one-line message naming the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hrinpaint_jax.atomic_files import OutputExistsError, atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_EXIF_ORIENTATION = 0x0112
MAX_PIXELS_ENV = "HRINPAINT_MAX_PIXELS"
# 12000 x 12000 (144 Mpx) fits; larger files are far more often decompression bombs (a few kB
# claiming 20000 x 20000) than photos. PIL's own guard (a warning from 89 Mpx, an error from 179 Mpx)
# is replaced by this one check.
DEFAULT_MAX_PIXELS = 150_000_000
LOSSY_SUFFIXES = (".jpg", ".jpeg")


class InputError(ValueError):
    """Bad user input (file, format, size, mask); the message names the problem in one line."""


@dataclasses.dataclass
class LoadedImage:
    """An image ready for the networks, plus what is needed to write it back faithfully.

    Attributes:
      rgb8: [H, W, 3] uint8 RGB seen by the networks.
      mode: 'RGB', 'RGBA', 'L', 'LA' (the output mode; palette images become RGB / RGBA).
      alpha: [H, W] alpha channel to write back (uint8 or uint16), or None.
      high: [H, W, C] uint16 original pixels of a 16-bit image (C = 1 or 3), else None.
      exif: EXIF bytes with the orientation reset (pixels are already upright), or None.
      icc_profile: ICC profile bytes, or None.
      notes: one-line warnings about what reading had to drop (extra frames of an animation).
    """

    rgb8: np.ndarray
    mode: str
    alpha: np.ndarray | None = None
    high: np.ndarray | None = None
    exif: bytes | None = None
    icc_profile: bytes | None = None
    notes: tuple[str, ...] = ()  # warnings for the user (an animated file's first frame used ...)


def max_pixels() -> int | None:
    """The largest image (width x height) read: ``$HRINPAINT_MAX_PIXELS`` (0 = no limit) or
    ``DEFAULT_MAX_PIXELS``."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        raise InputError(f"${MAX_PIXELS_ENV} must be a pixel count, got {raw!r}") from None
    return value if value > 0 else None


# libtiff reports decoding errors on the process's stderr (file descriptor 2) before PIL raises;
# while a TIFF decodes, fd 2 goes to a temporary file and its text joins the one-line error instead.
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _stderr_captured(captured: list[str]):
    with _STDERR_LOCK, tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            captured.extend(line.strip() for line in text.splitlines() if line.strip())


def _open(path: str | os.PathLike, what: str):
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # our own limit below, checked from the header
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if not path.is_file():
        raise InputError(f"{what} is not a file: {path}")
    captured: list[str] = []
    try:
        im = Image.open(path)
        limit = max_pixels()
        w, h = im.size
        if limit is not None and w * h > limit:
            raise InputError(
                f"{what} is too large: {path} is {w}x{h} ({w * h / 1e6:.1f} Mpx, the limit is "
                f"{limit / 1e6:.0f} Mpx; set ${MAX_PIXELS_ENV} to raise it)"
            )
        with _stderr_captured(captured) if im.format == "TIFF" else contextlib.nullcontext():
            im.load()
    except UnidentifiedImageError:
        raise InputError(f"{what} is not a readable image: {path}") from None
    except (OSError, SyntaxError, ValueError, MemoryError) as e:  # truncated / corrupt data
        if isinstance(e, InputError):
            raise
        detail = "; ".join([str(e), *captured[:1]]) if str(e) else "; ".join(captured[:1])
        raise InputError(f"{what} is corrupt or truncated: {path} ({detail})") from None
    return im


def _animation_notes(im, path: Path) -> tuple[str, ...]:
    frames = getattr(im, "n_frames", 1)
    if getattr(im, "is_animated", False) and frames > 1:
        return (f"{path.name} has {frames} frames; only the first is inpainted and written",)
    return ()


def _orientation_ops(im) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - malformed EXIF: treat as upright
        return 1


# EXIF orientation -> the array operation that makes the image upright (as ImageOps.exif_transpose).
_ORIENT = {
    2: lambda a: a[:, ::-1],  # mirror horizontal
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1],  # mirror vertical
    5: lambda a: np.swapaxes(a, 0, 1),  # transpose
    6: lambda a: np.rot90(a, -1),  # rotate 90 clockwise
    7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],  # transverse
    8: lambda a: np.rot90(a, 1),  # rotate 90 counter-clockwise
}


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation 1..8 applied to an [H, W, ...] array."""
    return np.ascontiguousarray(_ORIENT.get(orientation, lambda a: a)(array))


def _is_16bit_colour(im, path: Path) -> bool:
    """PIL reads 16-bit RGB(A) PNG/TIFF as 8-bit RGB; detect them from the file header."""
    if im.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(26)
        return len(header) > 24 and header[24] == 16  # IHDR bit depth
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) == 16
    return False


def _exif_without_orientation(im) -> bytes | None:
    """EXIF bytes with orientation 1 (the pixels get rotated upright), leaving ``im`` untouched."""
    try:
        exif = im.getexif()
        if not exif:
            return None
        orientation = exif.get(_EXIF_ORIENTATION)
        if orientation is None:
            return exif.tobytes()
        exif[_EXIF_ORIENTATION] = 1
        try:
            return exif.tobytes()
        finally:
            exif[_EXIF_ORIENTATION] = orientation  # getexif() is cached: restore it
    except Exception:  # noqa: BLE001 - malformed EXIF is dropped rather than fatal
        return None


def _read_16bit(path: Path) -> np.ndarray | None:
    """[H, W, C] uint16 pixels (RGB order) of a 16-bit file, or None if it is not 16-bit."""
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if data is None or data.dtype != np.uint16:
        return None
    if data.ndim == 2:
        return data[..., None]
    if data.shape[2] == 3:
        return data[..., ::-1]  # BGR -> RGB
    if data.shape[2] == 4:
        return data[..., [2, 1, 0, 3]]  # BGRA -> RGBA
    return data[..., :1]


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Reads an image for inpainting (see the module docstring for what is supported)."""
    path = Path(path)
    im = _open(path, "image")
    orientation = _orientation_ops(im)
    meta = dict(
        exif=_exif_without_orientation(im),
        icc_profile=im.info.get("icc_profile"),
        notes=_animation_notes(im, path),
    )

    high = None
    if im.mode in ("I;16", "I;16B", "I;16L", "I") or _is_16bit_colour(im, path):
        high = _read_16bit(path)
    if high is not None:
        high = _apply_orientation(high, orientation)
        alpha = high[..., 3] if high.shape[2] == 4 else None
        high = high[..., :3] if high.shape[2] >= 3 else high
        # The networks see 8 bits: round(v / 257) maps 0..65535 onto 0..255.
        rgb8 = np.broadcast_to(
            ((high.astype(np.uint32) + 128) // 257).astype(np.uint8), (*high.shape[:2], 3)
        ).copy()
        mode = ("RGBA" if alpha is not None else "RGB") if high.shape[2] == 3 else "L"
        return LoadedImage(rgb8, mode, alpha=alpha, high=high, **meta)

    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("1", "L"):
        gray = np.asarray(im.convert("L"))
        return LoadedImage(np.repeat(gray[..., None], 3, axis=-1), "L", **meta)
    if im.mode == "LA":
        la = np.asarray(im)
        return LoadedImage(np.repeat(la[..., :1], 3, axis=-1), "LA", alpha=la[..., 1].copy(), **meta)
    if im.mode == "RGBA":
        rgba = np.asarray(im)
        return LoadedImage(rgba[..., :3].copy(), "RGBA", alpha=rgba[..., 3].copy(), **meta)
    if im.mode != "RGB":  # CMYK, YCbCr, HSV, I (32-bit), F ...
        try:
            im = im.convert("RGB")
        except (ValueError, OSError) as e:
            raise InputError(f"unsupported image mode {im.mode}: {path} ({e})") from None
    return LoadedImage(np.asarray(im).copy(), "RGB", **meta)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Reads a mask as [H, W] uint8 (its first channel; 16-bit scaled to 8 bits; EXIF applied)."""
    path = Path(path)
    im = _open(path, "mask")
    orientation = _orientation_ops(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        data = _read_16bit(path)
        if data is None:
            data = np.asarray(im).astype(np.uint32)[..., None]
        mask = ((data[..., 0].astype(np.uint32) + 128) // 257).clip(0, 255).astype(np.uint8)
        return _apply_orientation(mask, orientation)
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in ("1", "P"):
        im = im.convert("L")
    data = np.asarray(im)
    if data.ndim == 3:
        data = data[..., 0]  # the reference keeps only the first channel
    if data.dtype != np.uint8:
        raise InputError(f"unsupported mask mode {im.mode}: {path}")
    return data.copy()


def binarise_mask(
    mask: np.ndarray, hole_value: str = "white", threshold: int = 128, dilate: int = 0
) -> tuple[np.ndarray, bool]:
    """[H, W] uint8 mask -> ([H, W] bool hole, whether the input was non-binary).

    Args:
      hole_value: 'white' (bright = hole, the reference's mask files) or 'black'.
      threshold: a pixel is a hole when its hole-strength (the value, or 255 - value for 'black')
        is >= threshold.
      dilate: grow the hole by this many pixels (a (2N+1)-wide ellipse).
    """
    if hole_value not in ("white", "black"):
        raise InputError(f"--hole-value must be white or black, got {hole_value!r}")
    if not 1 <= threshold <= 255:
        raise InputError(f"--mask-threshold must be in 1..255, got {threshold}")
    if dilate < 0:
        raise InputError(f"--dilate must be >= 0, got {dilate}")
    strength = mask if hole_value == "white" else 255 - mask
    non_binary = bool(np.any((mask != 0) & (mask != 255)))
    hole = strength >= threshold
    if dilate and hole.any():
        import cv2

        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        hole = cv2.dilate(hole.astype(np.uint8), kernel).astype(bool)
    return hole, non_binary


def result_pixels(image: LoadedImage, rgb8_out: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The array to save: the inpainted RGB in the input's mode and depth, known pixels untouched."""
    if image.high is not None:
        out = image.high.copy()
        fill = rgb8_out.astype(np.uint16) * 257  # 8 -> 16 bits
        if out.shape[2] == 1:
            fill = _to_gray(rgb8_out)[..., None].astype(np.uint16) * 257
        out[hole] = fill[hole]
    elif image.mode in ("L", "LA"):
        out = image.rgb8[..., 0].copy()
        out[hole] = _to_gray(rgb8_out)[hole]
        out = out[..., None]
    else:
        out = image.rgb8.copy()
        out[hole] = rgb8_out[hole]
    if image.alpha is not None:
        out = np.concatenate([out, image.alpha[..., None].astype(out.dtype)], axis=-1)
    return out


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    # ITU-R 601-2 luma, as PIL's convert('L').
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 299 + g * 587 + b * 114 + 500) // 1000).astype(np.uint8)


def check_writable_output(path: str | os.PathLike, overwrite: bool, has_alpha: bool = False) -> Path:
    """Fails early (before any compute) on an output that exists, cannot be created, or whose format
    cannot hold the result."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(
            f"unsupported output format {path.suffix or '(none)'}: {path} "
            f"(use one of {', '.join(IMAGE_SUFFIXES)})"
        )
    if has_alpha and path.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
        raise InputError(f"{path.suffix} cannot store the input's alpha channel: {path} (use .png)")
    if path.exists() and not overwrite:
        raise InputError(f"output exists, not overwriting (use --overwrite): {path}")
    if path.is_dir():
        raise InputError(f"output is a directory: {path}")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"output folder is not writable: {parent}")
    return path


def write_image(
    path: str | os.PathLike,
    pixels: np.ndarray,
    image: LoadedImage,
    overwrite: bool = False,
    warn: Callable[[str, str], None] | None = None,
) -> Path:
    """Saves ``pixels`` ([H, W, C], uint8 or uint16) atomically with the input's metadata.

    ``warn(key, message)`` is told when the format cannot keep the known pixels exact (JPEG)."""
    path = check_writable_output(path, overwrite, has_alpha=image.alpha is not None)
    suffix = path.suffix.lower()
    if suffix in LOSSY_SUFFIXES and warn is not None:
        warn(
            "lossy-output",
            f"{suffix} is lossy: JPEG re-encoding changes known pixels too (write .png, .tif or "
            ".webp to keep them bit-exact)",
        )

    def write(tmp):
        if pixels.dtype == np.uint16:
            _write_16bit(tmp, pixels, suffix, image)
        else:
            _write_8bit(tmp, pixels, image, suffix)

    try:
        return atomic_write(path, write, suffix=f".tmp{suffix}", overwrite=overwrite)
    except OutputExistsError as e:
        raise InputError(str(e)) from None


def save_png(path: str | os.PathLike, pixels: np.ndarray) -> Path:
    """Writes a uint8 [H, W] / [H, W, C] array as PNG atomically (``atomic_write``)."""
    from PIL import Image

    pixels = np.ascontiguousarray(pixels)
    return atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, "PNG"), suffix=".tmp.png")


def _write_8bit(tmp: str, pixels: np.ndarray, image: LoadedImage, suffix: str) -> None:
    from PIL import Image

    channels = pixels.shape[2]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    im = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    kwargs: dict[str, Any] = {}
    if image.icc_profile:
        kwargs["icc_profile"] = image.icc_profile
    if image.exif and suffix in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"):
        kwargs["exif"] = image.exif
    if suffix in (".jpg", ".jpeg"):
        kwargs.update(quality=95, subsampling=0)
    if suffix == ".webp":
        kwargs.update(lossless=True, quality=100, method=4)  # known pixels stay bit-exact
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        suffix, suffix[1:].upper()
    )
    im.save(tmp, format=fmt, **kwargs)


def _write_16bit(tmp: str, pixels: np.ndarray, suffix: str, image: LoadedImage | None = None) -> None:
    import cv2

    if suffix not in (".png", ".tif", ".tiff"):
        raise InputError(f"a 16-bit image can only be written as PNG or TIFF, not {suffix}")
    data = pixels
    if data.shape[2] == 3:
        data = data[..., ::-1]
    elif data.shape[2] == 4:
        data = data[..., [2, 1, 0, 3]]
    elif data.shape[2] == 1:
        data = data[..., 0]
    # OpenCV picks the format from the extension; the temporary name keeps it.
    if not cv2.imwrite(tmp, np.ascontiguousarray(data)):
        raise OSError(f"could not write {tmp}")
    if suffix == ".png" and image is not None and (image.icc_profile or image.exif):
        # OpenCV writes no colour profile or EXIF and PIL cannot write 16-bit RGB PNG: add the
        # standard iCCP / eXIf chunks (PNG 1.2 section 11.3.3.3; PNG 3rd ed. eXIf) after IHDR.
        _png_add_chunks(tmp, image.icc_profile, image.exif)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_add_chunks(path: str, icc_profile: bytes | None, exif: bytes | None) -> None:
    import zlib

    with open(path, "rb") as f:
        png = f.read()
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    extra = b""
    if icc_profile:
        extra += _png_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc_profile))
    if exif:
        # PIL's EXIF bytes start with the JPEG APP1 marker text; eXIf holds only the TIFF part.
        body = exif[6:] if exif.startswith(b"Exif\0\0") else exif
        extra += _png_chunk(b"eXIf", body)
    with open(path, "wb") as f:
        f.write(png[:ihdr_end] + extra + png[ihdr_end:])
