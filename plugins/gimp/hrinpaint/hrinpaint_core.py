"""The logic of the HR Inpaint GIMP 3 plug-in, importable without GIMP.

``hrinpaint.py`` beside this file is what GIMP runs: it registers the procedure and its dialog, then
calls :func:`run` with GIMP's own modules (``Gimp``, ``Gegl``, ``Gio``) passed in as :class:`GimpApi`.
Nothing here imports ``gi``, so the CI tests run all of it against a small fake of those modules.

One run:
1. the active layer's pixels are read at full resolution (RGB(A), 8 bits, or 16 bits for images of a
   higher precision) and the mask (the selection, or a chosen layer / channel) as 8-bit coverage
   aligned with that layer; the mask is binarised at the dialog's threshold, so antialiased and
   feathered selections work;
2. both go to a temporary folder as PNG files (written here in pure Python: GIMP's bundled Python has
   neither NumPy nor PIL);
3. ``python -m hrinpaint_jax inpaint ...`` runs in the project's own environment (its interpreter
   comes from the settings file written by ``hrinpaint install-gimp-plugin``, or
   ``$HRINPAINT_PYTHON``), because GIMP's Python cannot import JAX; its stderr lines become GIMP's
   progress text;
4. the result is loaded as a new layer above the original, inside one undo group.

Every failure is a :class:`PluginError` with a one-line message, which the plug-in returns as an
execution error, so GIMP shows it in a message. Cancelling the progress bar makes GIMP kill the
plug-in: on Linux the subprocess then gets SIGTERM, and the next run removes the orphaned temporary
folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

PROCEDURE_NAME = "plug-in-hrinpaint"
SETTINGS_FILE = "hrinpaint-settings.json"
PYTHON_ENV = "HRINPAINT_PYTHON"
# The dialog's method names -> the CLI's --method values.
METHODS = {"two-stage": "two_stage", "zoom": "zoom"}
MASK_SOURCES = ("selection", "drawable")
RESULT_SUFFIX = " (HR inpaint)"
# Environment variables that would make the project's interpreter load GIMP's bundled Python
# library instead of its own (bundles on Windows and macOS set some of them).
_FOREIGN_PYTHON_VARS = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "VIRTUAL_ENV")


class PluginError(Exception):
    """A failure the user must see; the message is one line."""


# ------------------------------------------------------------------------------------------------
# Settings and the request


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where the project's Python lives, and the default weights folder for the dialog."""

    python: str = ""
    weights: str = ""


def load_settings(plugin_dir: str | os.PathLike, environ=os.environ) -> Settings:
    """Reads ``SETTINGS_FILE`` beside the plug-in; ``$HRINPAINT_PYTHON`` overrides its interpreter.

    A missing file gives empty settings (``run`` then says how to install); a broken one is an error.
    """
    path = Path(plugin_dir) / SETTINGS_FILE
    data = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PluginError(f"unreadable settings file {path}: {e}") from None
        if not isinstance(data, dict):
            raise PluginError(f"settings file {path} does not hold a JSON object")
    return Settings(
        python=environ.get(PYTHON_ENV) or str(data.get("python") or ""),
        weights=str(data.get("weights") or ""),
    )


def check_python(settings: Settings) -> str:
    """The project's interpreter from the settings, checked to be an executable file."""
    python = settings.python
    if not python:
        raise PluginError(
            "the project's Python is not set: run `hrinpaint install-gimp-plugin` from the project's "
            f"environment (or set ${PYTHON_ENV})"
        )
    if not os.path.isfile(python) or not os.access(python, os.X_OK):
        raise PluginError(
            f"the project's Python {python} is missing or not executable: run `hrinpaint "
            f"install-gimp-plugin` again (or set ${PYTHON_ENV})"
        )
    return python


@dataclasses.dataclass(frozen=True)
class Request:
    """The dialog's values.

    Attributes:
      method: a key of ``METHODS``.
      weights: the weights folder ('' = the one from the settings).
      mask_source: 'selection' or 'drawable' (``mask_drawable``, a layer or a channel).
      mask_drawable: the mask layer / channel when ``mask_source`` is 'drawable', else unused.
      invert: black = hole (the GIMP-ML convention for mask layers) instead of white / selected.
      threshold: 1..255; a pixel whose mask value is >= threshold is filled.
      dilate: grow the hole by this many pixels before filling.
      whole_image: run the network on the whole image instead of on a context crop around each
        group of holes (the CLI's ``--whole-image``).
    """

    method: str = "two-stage"
    weights: str = ""
    mask_source: str = "selection"
    mask_drawable: object = None
    invert: bool = False
    threshold: int = 128
    dilate: int = 0
    whole_image: bool = False


def request_from_config(config) -> Request:
    """The :class:`Request` held by a ``Gimp.ProcedureConfig`` (the dialog's or a script's)."""
    get = config.get_property
    weights = get("weights")
    return Request(
        method=get("method"),
        weights=(weights.get_path() or "") if weights is not None else "",
        mask_source=get("mask-source"),
        mask_drawable=get("mask-drawable"),
        invert=bool(get("invert-mask")),
        threshold=int(get("threshold")),
        dilate=int(get("dilate")),
        whole_image=bool(get("whole-image")),
    )


def check_request(request: Request, settings: Settings) -> str:
    """Validates the request; returns the weights folder to use."""
    if request.method not in METHODS:
        raise PluginError(f"unknown method {request.method!r} (use {' or '.join(METHODS)})")
    if request.mask_source not in MASK_SOURCES:
        raise PluginError(
            f"unknown mask source {request.mask_source!r} (use {' or '.join(MASK_SOURCES)})"
        )
    if not 1 <= request.threshold <= 255:
        raise PluginError(f"the mask threshold must be in 1..255, got {request.threshold}")
    if request.dilate < 0:
        raise PluginError(f"the dilation must be >= 0, got {request.dilate}")
    weights = request.weights or settings.weights
    if not weights:
        raise PluginError("no weights folder: choose the folder made by python -m convert_weights")
    if not os.path.isdir(weights):
        raise PluginError(f"the weights folder {weights} does not exist")
    return weights


# ------------------------------------------------------------------------------------------------
# Pixels: binarising and PNG files


def binarise(coverage: bytes, threshold: int, invert: bool = False) -> tuple[bytes, int]:
    """8-bit mask values -> (bytes of 255 = hole / 0 = keep, number of hole pixels).

    A value is a hole when it is >= ``threshold`` (after ``255 - value`` with ``invert``), the
    CLI's ``--mask-threshold`` rule; a lookup table keeps this fast on large masks.
    """
    table = bytes(255 if ((255 - v) if invert else v) >= threshold else 0 for v in range(256))
    hole = coverage.translate(table)
    return hole, len(hole) - hole.count(0)


_PNG_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> gray, gray+alpha, RGB, RGBA


def encode_png(width: int, height: int, channels: int, bits: int, pixels: bytes) -> bytes:
    """A PNG file holding ``pixels`` (rows top to bottom, channels interleaved; 16-bit samples in
    the machine's byte order, as GEGL returns them)."""
    if channels not in _PNG_COLOUR_TYPE or bits not in (8, 16):
        raise ValueError(f"cannot write {channels} channels of {bits} bits as PNG")
    stride = width * channels * bits // 8
    if len(pixels) != stride * height:
        raise ValueError(f"{len(pixels)} bytes do not make {width}x{height}x{channels} at {bits} bits")
    if bits == 16 and sys.byteorder == "little":
        import array

        samples = array.array("H", pixels)
        samples.byteswap()  # PNG stores 16-bit samples big-endian
        pixels = samples.tobytes()
    # Filter type 0 (none) on every row: speed matters more than size for a temporary file.
    raw = b"".join(b"\x00" + pixels[y * stride : (y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bits, _PNG_COLOUR_TYPE[channels], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 1))
        + chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike, width: int, height: int, channels: int, bits: int, pixels: bytes):
    """Writes :func:`encode_png`'s file to ``path``."""
    Path(path).write_bytes(encode_png(width, height, channels, bits, pixels))


# ------------------------------------------------------------------------------------------------
# Temporary files

TEMP_PREFIX = "hrinpaint-gimp-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_temp_dirs(temp_root: str | None = None) -> list[str]:
    """Removes the temporary folders of plug-in runs whose process is gone (GIMP kills a plug-in
    when its progress bar is cancelled, before it can clean up); returns what it removed.

    Folders are named ``hrinpaint-gimp-<pid>-<random>``, so a run never touches a live one.
    """
    temp_root = temp_root or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(temp_root)
    except OSError:
        return removed
    for name in names:
        pid = name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if not name.startswith(TEMP_PREFIX) or not pid.isdigit() or _process_alive(int(pid)):
            continue
        path = os.path.join(temp_root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# ------------------------------------------------------------------------------------------------
# The subprocess


def build_command(
    python: str,
    image: str,
    mask: str,
    output: str,
    method: str,
    weights: str,
    dilate: int,
    whole_image: bool = False,
) -> list[str]:
    """The ``hrinpaint inpaint`` call, run as a module of the project's interpreter.

    The mask file is already binary (255 = hole), so the CLI's threshold has nothing to decide.
    """
    return [
        python,
        "-m",
        "hrinpaint_jax",
        "inpaint",
        "--image",
        image,
        "--mask",
        mask,
        "--output",
        output,
        "--method",
        METHODS[method],
        "--weights",
        weights,
        "--hole-value",
        "white",
        "--dilate",
        str(dilate),
    ] + (["--whole-image"] if whole_image else [])


def subprocess_env(environ=os.environ) -> dict[str, str]:
    """The environment for the project's interpreter: GIMP's, less the variables that point a
    Python at GIMP's own library, with unbuffered output so progress lines arrive as written."""
    env = {k: v for k, v in environ.items() if k not in _FOREIGN_PYTHON_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _failure_line(lines: Sequence[str]) -> str:
    """The line of the subprocess's stderr that says what went wrong."""
    text = [line.strip() for line in lines if line.strip()]
    for line in reversed(text):
        if line.startswith("hrinpaint: error:"):
            return line[len("hrinpaint: ") :]
    return text[-1] if text else "no message"


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux, a function for ``preexec_fn`` that makes the child get SIGTERM when the plug-in
    dies: GIMP kills a plug-in whose progress bar is cancelled, and the inpainting must not go on
    as an orphan. Looked up before the fork, so the child only makes one C call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import signal

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)


def run_subprocess(
    command: Sequence[str],
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] = lambda line: None,
    on_wait: Callable[[], None] = lambda: None,
    poll_s: float = 0.1,
) -> None:
    """Runs ``command``; each stderr line goes to ``on_line``, ``on_wait`` is called every
    ``poll_s`` while it runs (to pulse GIMP's progress bar). A non-zero exit raises
    :class:`PluginError` naming the subprocess's own error line."""
    try:
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            errors="replace",
            preexec_fn=_parent_death_signal(),
        )
    except OSError as e:
        raise PluginError(f"cannot start {command[0]}: {e.strerror or e}") from None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    seen: list[str] = []

    def drain():
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return
            seen.append(line)
            on_line(line.rstrip("\n"))

    try:
        while proc.poll() is None:
            drain()
            on_wait()
            time.sleep(poll_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    reader.join()
    proc.stderr.close()
    drain()
    if proc.returncode < 0:
        raise PluginError(f"hrinpaint was killed by signal {-proc.returncode}: {_failure_line(seen)}")
    if proc.returncode:
        raise PluginError(f"hrinpaint failed (exit status {proc.returncode}): {_failure_line(seen)}")


# ------------------------------------------------------------------------------------------------
# GIMP


@dataclasses.dataclass(frozen=True)
class GimpApi:
    """GIMP's modules (``gi.repository.Gimp``, ``Gegl``, ``Gio``), or the tests' fakes of them."""

    Gimp: object
    Gegl: object
    Gio: object


_HIGH_PRECISION_BITS = 16


def _bits_of(api: GimpApi, image) -> int:
    """8 for 8-bit images, else 16 (the deepest the CLI keeps bit-exact)."""
    precision = api.Gimp.Precision
    eight = {precision.U8_LINEAR, precision.U8_NON_LINEAR, precision.U8_PERCEPTUAL}
    return 8 if image.get_precision() in eight else _HIGH_PRECISION_BITS


def _offsets(drawable) -> tuple[int, int]:
    _, x, y = drawable.get_offsets()
    return x, y


def _read(api: GimpApi, drawable, x: int, y: int, width: int, height: int, babl_format: str) -> bytes:
    """Pixels of ``drawable`` in its own coordinates; zero outside it."""
    rect = api.Gegl.Rectangle.new(x, y, width, height)
    data = drawable.get_buffer().get(rect, 1.0, babl_format, api.Gegl.AbyssPolicy.NONE)
    return bytes(data)


def target_layer(api: GimpApi, drawables: Sequence) -> object:
    """The one layer to fill."""
    if len(drawables) != 1:
        raise PluginError(f"select exactly one layer to fill ({len(drawables)} are selected)")
    (layer,) = drawables
    if not isinstance(layer, api.Gimp.Layer) or isinstance(layer, api.Gimp.LayerMask):
        raise PluginError("the active drawable is not a layer: select the layer to fill")
    if layer.is_group():
        raise PluginError(f"{layer.get_name()} is a layer group: select a pixel layer to fill")
    return layer


def read_layer(api: GimpApi, image, layer) -> tuple[bytes, int, int]:
    """The layer's pixels at full resolution: (bytes, channels, bits)."""
    bits = _bits_of(api, image)
    channels = 4 if layer.has_alpha() else 3
    babl_format = f"R'G'B'{'A' if channels == 4 else ''} u{bits}"
    return _read(api, layer, 0, 0, layer.get_width(), layer.get_height(), babl_format), channels, bits


def read_mask(api: GimpApi, image, layer, request: Request) -> bytes:
    """The mask's 8-bit values over the layer's area (zero where the mask does not reach).

    Selections and channels give their coverage (linear, so 128 = half selected); a mask layer gives
    its lightness, times its alpha so that transparent pixels count as black.
    """
    x, y = _offsets(layer)
    width, height = layer.get_width(), layer.get_height()
    if request.mask_source == "selection":
        if api.Gimp.Selection.is_empty(image):
            raise PluginError(
                "there is no selection: select the region to fill, or choose a mask layer or channel"
            )
        return _read(api, image.get_selection(), x, y, width, height, "Y u8")
    source = request.mask_drawable
    if source is None:
        raise PluginError("no mask layer or channel chosen in the dialog")
    if source.get_image() != image:
        raise PluginError(f"the mask {source.get_name()} belongs to another image")
    mx, my = _offsets(source)
    if isinstance(source, api.Gimp.Channel):
        return _read(api, source, x - mx, y - my, width, height, "Y u8")
    if source.has_alpha():
        # Premultiplied lightness + alpha pairs: the lightness bytes are Y' * alpha.
        return _read(api, source, x - mx, y - my, width, height, "Y'aA u8")[0::2]
    return _read(api, source, x - mx, y - my, width, height, "Y' u8")


class Progress:
    """GIMP's progress bar for one run (text, pulses while waiting)."""

    def __init__(self, api: GimpApi):
        self.gimp = api.Gimp

    def start(self, text: str) -> None:
        self.gimp.progress_init(text)

    def text(self, text: str) -> None:
        self.gimp.progress_set_text(text)

    def pulse(self) -> None:
        self.gimp.progress_pulse()

    def done(self) -> None:
        self.gimp.progress_update(1.0)
        self.gimp.progress_end()


def insert_result(api: GimpApi, image, layer, path: str) -> object:
    """Loads ``path`` as a new layer named after ``layer``, at its position and offsets (so just
    above it, in the same group), in one undo group."""
    image.undo_group_start()
    try:
        result = api.Gimp.file_load_layer(
            api.Gimp.RunMode.NONINTERACTIVE, image, api.Gio.File.new_for_path(path)
        )
        if result is None:
            raise PluginError(f"GIMP could not load the result {path}")
        result.set_name(layer.get_name() + RESULT_SUFFIX)
        image.insert_layer(result, layer.get_parent(), image.get_item_position(layer))
        result.set_offsets(*_offsets(layer))
    finally:
        image.undo_group_end()
    return result


def run(
    api: GimpApi,
    image,
    drawables: Sequence,
    request: Request,
    settings: Settings,
    environ=os.environ,
    echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> object:
    """Fills the masked part of the one selected layer; returns the new layer.

    ``echo`` receives the subprocess's stderr lines (GIMP shows a plug-in's stderr in its terminal).
    """
    layer = target_layer(api, drawables)
    python = check_python(settings)
    weights = check_request(request, settings)
    width, height = layer.get_width(), layer.get_height()
    mask, holes = binarise(read_mask(api, image, layer, request), request.threshold, request.invert)
    if not holes:
        raise PluginError(
            f"nothing to fill: no pixel of the mask over {layer.get_name()} reaches the threshold "
            f"{request.threshold}" + (" (inverted)" if request.invert else "")
        )
    remove_stale_temp_dirs()
    progress = Progress(api)
    progress.start(f"HR Inpaint ({request.method}): exporting {width}x{height} pixels")
    try:
        with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
            pixels, channels, bits = read_layer(api, image, layer)
            image_path, mask_path = os.path.join(tmp, "image.png"), os.path.join(tmp, "mask.png")
            output_path = os.path.join(tmp, "result.png")
            write_png(image_path, width, height, channels, bits, pixels)
            write_png(mask_path, width, height, 1, 8, mask)
            del pixels, mask
            progress.text(f"HR Inpaint ({request.method}): filling {holes} pixels")

            def on_line(line: str) -> None:
                echo(line)
                if line.strip():
                    progress.text(f"HR Inpaint: {line.strip()[:100]}")

            command = build_command(
                python,
                image_path,
                mask_path,
                output_path,
                request.method,
                weights,
                request.dilate,
                whole_image=request.whole_image,
            )
            run_subprocess(command, subprocess_env(environ), on_line, progress.pulse)
            if not os.path.isfile(output_path):
                raise PluginError(f"hrinpaint finished but wrote no result ({output_path})")
            progress.text("HR Inpaint: loading the result")
            result = insert_result(api, image, layer, output_path)
    except OSError as e:  # temporary files: disk full, no permission
        where = f": {e.filename}" if e.filename else ""
        raise PluginError(f"temporary files: {e.strerror or e}{where}") from None
    finally:
        progress.done()
    api.Gimp.displays_flush()
    return result
