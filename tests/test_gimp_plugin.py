"""The GIMP 3 plug-in's logic (plugins/gimp/hrinpaint/hrinpaint_core.py) against a small fake of GIMP's
API, and `hrinpaint install-gimp-plugin`. No GIMP needed: the real GIMP run is
plugins/gimp/tools/gimp_e2e.sh (make test-gimp).

The project's Python is replaced by a tiny script that answers the way `python -m hrinpaint_jax
inpaint` does (fills the hole with a constant colour, or fails in one of several ways), so the
subprocess plumbing runs for real in milliseconds.
"""

from __future__ import annotations

import ast
import json
import os
import stat
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "plugins" / "gimp" / "hrinpaint"
sys.path.insert(0, str(PLUGIN_DIR))
import hrinpaint_core as core  # noqa: E402

FILL = (1, 2, 3)

# ------------------------------------------------------------------------------------------------
# A small fake of gi.repository.Gimp / Gegl / Gio


class FakeBuffer:
    def __init__(self, planes: dict[str, np.ndarray]):
        self.planes = planes

    def get(self, rect, scale, babl_format, abyss):
        assert scale == 1.0 and abyss == "abyss-none"
        x, y, w, h = rect
        plane = self.planes[babl_format]
        out = np.zeros((h, w) + plane.shape[2:], plane.dtype)
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + h, plane.shape[0]), min(x + w, plane.shape[1])
        if y1 > y0 and x1 > x0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = plane[y0:y1, x0:x1]
        return out.tobytes()


class FakeDrawable:
    def __init__(self, name, planes, offsets=(0, 0), alpha=False, image=None):
        self.name, self.planes, self.offsets, self.alpha, self.image = (
            name,
            planes,
            offsets,
            alpha,
            image,
        )
        self.parent = None
        first = next(iter(planes.values()))
        self.height, self.width = first.shape[:2]

    def get_name(self):
        return self.name

    def set_name(self, name):
        self.name = name

    def get_width(self):
        return self.width

    def get_height(self):
        return self.height

    def get_offsets(self):
        return True, *self.offsets

    def set_offsets(self, x, y):
        self.offsets = (x, y)

    def has_alpha(self):
        return self.alpha

    def get_buffer(self):
        return FakeBuffer(self.planes)

    def get_image(self):
        return self.image

    def get_parent(self):
        return self.parent


class FakeLayer(FakeDrawable):
    group = False

    def is_group(self):
        return self.group


class FakeChannel(FakeDrawable):
    pass


class FakeLayerMask(FakeChannel):
    pass


class FakeImage:
    def __init__(self, precision="u8-non-linear"):
        self.layers, self.events, self.precision = [], [], precision
        self.selection = None

    def get_precision(self):
        return self.precision

    def get_selection(self):
        return self.selection

    def get_item_position(self, item):
        return self.layers.index(item)

    def insert_layer(self, layer, parent, position):
        self.events.append(("insert", layer.get_name(), parent, position))
        layer.parent, layer.image = parent, self
        self.layers.insert(position, layer)
        return True

    def undo_group_start(self):
        self.events.append("undo-start")

    def undo_group_end(self):
        self.events.append("undo-end")


def _rgb_planes(rgb: np.ndarray) -> dict[str, np.ndarray]:
    return {"R'G'B' u8": rgb}


def make_api(progress: list):
    def file_load_layer(run_mode, image, file):
        assert run_mode == "noninteractive"
        with Image.open(file.get_path()) as im:
            rgb = np.asarray(im.convert("RGB"))
        return FakeLayer("loaded", _rgb_planes(rgb))

    gimp = types.SimpleNamespace(
        Layer=FakeLayer,
        LayerMask=FakeLayerMask,
        Channel=FakeChannel,
        Precision=types.SimpleNamespace(
            U8_LINEAR="u8-linear", U8_NON_LINEAR="u8-non-linear", U8_PERCEPTUAL="u8-perceptual"
        ),
        Selection=types.SimpleNamespace(is_empty=lambda image: not image.selection.planes["Y u8"].any()),
        RunMode=types.SimpleNamespace(NONINTERACTIVE="noninteractive"),
        file_load_layer=file_load_layer,
        progress_init=lambda text: progress.append(("init", text)),
        progress_set_text=lambda text: progress.append(("text", text)),
        progress_pulse=lambda: progress.append("pulse"),
        progress_update=lambda fraction: progress.append(("update", fraction)),
        progress_end=lambda: progress.append("end"),
        displays_flush=lambda: progress.append("flush"),
    )
    gegl = types.SimpleNamespace(
        Rectangle=types.SimpleNamespace(new=lambda x, y, w, h: (x, y, w, h)),
        AbyssPolicy=types.SimpleNamespace(NONE="abyss-none"),
    )
    gio = types.SimpleNamespace(
        File=types.SimpleNamespace(new_for_path=lambda p: types.SimpleNamespace(get_path=lambda: p))
    )
    return core.GimpApi(gimp, gegl, gio)


# ------------------------------------------------------------------------------------------------
# A stand-in for the project's Python


FAKE_PROJECT_PYTHON = f"""#!{sys.executable}
import json, os, sys
import numpy as np
from PIL import Image

args = sys.argv[1:]
assert args[:3] == ["-m", "hrinpaint_jax", "inpaint"], args
opts = dict(zip(args[3::2], args[4::2]))
with Image.open(opts["--mask"]) as im:
    mask = np.asarray(im)
with open(os.environ["FAKE_LOG"], "w") as f:
    json.dump({{"argv": args, "mask_values": sorted(set(mask.ravel().tolist())),
               "mask_holes": int((mask == 255).sum()), "mask_shape": list(mask.shape)}}, f)
mode = os.environ.get("FAKE_MODE", "fill")
print("warning: loading networks", file=sys.stderr)
if mode == "error":
    print("hrinpaint: error: weights folder /w lacks dfnet/", file=sys.stderr)
    sys.exit(2)
if mode == "crash":
    raise RuntimeError("the network exploded")
if mode == "kill":
    os.kill(os.getpid(), 9)
if mode == "no-output":
    sys.exit(0)
with Image.open(opts["--image"]) as im:
    image = np.array(im)
image[mask == 255, :3] = {FILL}
Image.fromarray(image).save(opts["--output"])
print(opts["--output"] + ": filled", file=sys.stderr)
"""


@pytest.fixture
def project_python(tmp_path) -> Path:
    path = tmp_path / "fake-python"
    path.write_text(FAKE_PROJECT_PYTHON)
    path.chmod(0o755)
    return path


@pytest.fixture
def weights_dir(tmp_path) -> Path:
    path = tmp_path / "weights"
    path.mkdir()
    return path


@pytest.fixture
def env(tmp_path) -> dict:
    return {"PATH": os.environ.get("PATH", ""), "FAKE_LOG": str(tmp_path / "fake-log.json")}


def photo(h=40, w=56, alpha=False) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(10, 250, size=(h, w, 4 if alpha else 3), dtype=np.uint8)


def feathered_selection(h, w) -> np.ndarray:
    """A square of full coverage with a soft edge: 255 in the middle, ramps 64..192 around it."""
    sel = np.zeros((h, w), np.uint8)
    sel[10:22, 12:30] = 64
    sel[11:21, 13:29] = 192
    sel[12:20, 14:28] = 255
    return sel


def image_with_layer(rgb, offsets=(0, 0), selection=None, canvas=(40, 56)):
    image = FakeImage()
    planes = {("R'G'B'A u8" if rgb.shape[2] == 4 else "R'G'B' u8"): rgb}
    layer = FakeLayer("Background", planes, offsets, alpha=rgb.shape[2] == 4, image=image)
    image.layers.append(layer)
    sel = np.zeros(canvas, np.uint8) if selection is None else selection
    image.selection = FakeChannel("selection", {"Y u8": sel}, image=image)
    return image, layer


def options_of(log: dict) -> dict[str, str]:
    """The ``--flag value`` pairs the fake project Python was called with."""
    args = log["argv"][3:]
    return dict(zip(args[0::2], args[1::2], strict=True))


def run_plugin(image, layer, request, python, environ, progress=None):
    progress = [] if progress is None else progress
    settings = core.Settings(python=str(python))
    return core.run(
        make_api(progress), image, [layer], request, settings, environ, echo=lambda line: None
    )


# ------------------------------------------------------------------------------------------------
# Argument building, binarising, PNG files, settings


def test_command_is_accepted_by_the_real_cli():
    from hrinpaint_jax.cli import build_parser

    command = core.build_command("/p/python", "/t/i.png", "/t/m.png", "/t/o.png", "zoom", "/w", 5)
    assert command[:4] == ["/p/python", "-m", "hrinpaint_jax", "inpaint"]
    args = build_parser().parse_args(command[3:])
    assert (args.image, args.mask, args.output) == ("/t/i.png", "/t/m.png", "/t/o.png")
    assert (args.method, args.weights, args.dilate, args.hole_value) == ("zoom", "/w", 5, "white")
    two_stage = core.build_command("py", "i", "m", "o", "two-stage", "w", 0)
    assert build_parser().parse_args(two_stage[3:]).method == "two_stage"
    assert not build_parser().parse_args(two_stage[3:]).whole_image  # context crops by default
    whole = core.build_command("py", "i", "m", "o", "two-stage", "w", 0, whole_image=True)
    assert build_parser().parse_args(whole[3:]).whole_image


def test_binarise_uses_the_threshold_inclusively_and_can_invert():
    values = bytes([0, 1, 127, 128, 200, 255])
    assert core.binarise(values, 128) == (bytes([0, 0, 0, 255, 255, 255]), 3)
    assert core.binarise(values, 128, invert=True) == (bytes([255, 255, 255, 0, 0, 0]), 3)
    assert core.binarise(values, 1) == (bytes([0, 255, 255, 255, 255, 255]), 5)
    assert core.binarise(bytes(4), 255)[1] == 0


@pytest.mark.parametrize("channels, bits", [(1, 8), (2, 8), (3, 8), (4, 8), (3, 16), (4, 16)])
def test_png_files_read_back_exactly(tmp_path, channels, bits):
    import cv2

    rng = np.random.default_rng(channels * bits)
    dtype = np.uint16 if bits == 16 else np.uint8
    pixels = rng.integers(0, np.iinfo(dtype).max, size=(7, 11, channels), dtype=dtype, endpoint=True)
    path = tmp_path / "x.png"
    core.write_png(path, 11, 7, channels, bits, pixels.tobytes())
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    back = back.reshape(7, 11, -1)
    if channels >= 3:
        back = back[..., [2, 1, 0, 3][:channels]]  # OpenCV reads BGR(A)
    elif channels == 2:
        with Image.open(path) as im:
            back = np.asarray(im)
    np.testing.assert_array_equal(back, pixels)


def test_png_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="do not make"):
        core.encode_png(4, 4, 3, 8, bytes(10))


def test_settings_file_and_environment(tmp_path):
    assert core.load_settings(tmp_path, environ={}) == core.Settings()
    (tmp_path / core.SETTINGS_FILE).write_text(
        json.dumps({"python": "/venv/bin/python", "weights": "/w"})
    )
    assert core.load_settings(tmp_path, environ={}) == core.Settings("/venv/bin/python", "/w")
    assert core.load_settings(tmp_path, environ={core.PYTHON_ENV: "/other"}).python == "/other"
    (tmp_path / core.SETTINGS_FILE).write_text("{broken")
    with pytest.raises(core.PluginError, match="unreadable settings file"):
        core.load_settings(tmp_path, environ={})


def test_python_setting_errors_say_how_to_fix_them(tmp_path):
    with pytest.raises(core.PluginError, match="install-gimp-plugin"):
        core.check_python(core.Settings())
    not_executable = tmp_path / "python"
    not_executable.write_text("")
    with pytest.raises(core.PluginError, match="missing or not executable"):
        core.check_python(core.Settings(python=str(not_executable)))


def test_subprocess_environment_drops_gimps_python_variables():
    env = core.subprocess_env(
        {"PATH": "/bin", "PYTHONHOME": "/gimp", "PYTHONPATH": "/gimp/lib", "HOME": "/h"}
    )
    assert env == {"PATH": "/bin", "HOME": "/h", "PYTHONUNBUFFERED": "1"}


def test_request_from_a_procedure_config(weights_dir):
    values = {
        "method": "zoom",
        "weights": types.SimpleNamespace(get_path=lambda: str(weights_dir)),
        "mask-source": "drawable",
        "mask-drawable": "the-channel",
        "invert-mask": True,
        "threshold": 100,
        "dilate": 2,
        "whole-image": True,
    }
    config = types.SimpleNamespace(get_property=values.__getitem__)
    request = core.request_from_config(config)
    assert request == core.Request(
        "zoom", str(weights_dir), "drawable", "the-channel", True, 100, 2, True
    )
    values["weights"] = None
    assert core.request_from_config(config).weights == ""


def test_plugin_registers_the_arguments_the_logic_reads():
    """hrinpaint.py imports gi, so it is read, not imported: its add_*_argument names must be the
    config keys request_from_config reads."""
    tree = ast.parse((PLUGIN_DIR / "hrinpaint.py").read_text())
    registered = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr.startswith("add_")
        and node.func.attr.endswith("_argument")
    }
    read = []
    core.request_from_config(
        types.SimpleNamespace(get_property=lambda k: read.append(k) or (None if k == "weights" else 0))
    )
    assert registered == set(read)
    assert os.access(PLUGIN_DIR / "hrinpaint.py", os.X_OK), "GIMP only starts executable plug-ins"


# ------------------------------------------------------------------------------------------------
# Whole runs against the fake GIMP


def test_feathered_selection_is_binarised_filled_and_inserted_above(
    tmp_path, project_python, weights_dir, env
):
    rgb = photo()
    selection = feathered_selection(40, 56)
    image, layer = image_with_layer(rgb, selection=selection)
    below = FakeLayer("below", _rgb_planes(rgb), image=image)
    image.layers.append(below)
    progress = []
    request = core.Request(weights=str(weights_dir), threshold=128, dilate=2)
    result = run_plugin(image, layer, request, project_python, env, progress)

    log = json.loads(Path(env["FAKE_LOG"]).read_text())
    opts = options_of(log)
    assert (
        opts["--method"] == "two_stage"
        and opts["--dilate"] == "2"
        and opts["--weights"] == str(weights_dir)
    )
    # The antialiased ramp (64, 192) is cut at 128: only 0 / 255 reach the CLI.
    assert log["mask_values"] == [0, 255] and log["mask_holes"] == int((selection >= 128).sum())
    assert not Path(opts["--image"]).parent.exists(), "temporary folder left behind"

    assert image.layers == [result, layer, below]
    assert result.get_name() == "Background (HR inpaint)" and result.offsets == (0, 0)
    assert image.events == ["undo-start", ("insert", "Background (HR inpaint)", None, 0), "undo-end"]
    filled = result.planes["R'G'B' u8"]
    hole = selection >= 128
    np.testing.assert_array_equal(filled[~hole], rgb[~hole])
    assert (filled[hole] == FILL).all()
    assert progress[0][0] == "init" and progress[-3:] == [("update", 1.0), "end", "flush"]
    assert any(p[0] == "text" and "filled" in p[1] for p in progress if isinstance(p, tuple))


def test_layer_offsets_and_alpha_are_kept(project_python, weights_dir, env):
    """A layer moved by (8, 4) sees the selection shifted; the result lands at the same offsets."""
    rgba = photo(alpha=True)
    selection = feathered_selection(40, 56)
    image, layer = image_with_layer(rgba, offsets=(8, 4), selection=selection)
    result = run_plugin(image, layer, core.Request(weights=str(weights_dir)), project_python, env)
    log = json.loads(Path(env["FAKE_LOG"]).read_text())
    expected = np.zeros((40, 56), bool)
    expected[: 40 - 4, : 56 - 8] = selection[4:, 8:] >= 128
    assert log["mask_holes"] == int(expected.sum()) and log["mask_shape"] == [40, 56]
    assert result.offsets == (8, 4)
    filled = result.planes["R'G'B' u8"]
    np.testing.assert_array_equal(filled[~expected], rgba[..., :3][~expected])
    assert (filled[expected] == FILL).all()


def test_mask_from_a_channel_and_from_a_layer_with_alpha(project_python, weights_dir, env):
    rgb = photo()
    image, layer = image_with_layer(rgb)
    channel_values = np.zeros((40, 56), np.uint8)
    channel_values[5:9, 5:15] = 255
    channel = FakeChannel("saved", {"Y u8": channel_values}, image=image)
    run_plugin(
        image,
        layer,
        core.Request(weights=str(weights_dir), mask_source="drawable", mask_drawable=channel),
        project_python,
        env,
    )
    assert json.loads(Path(env["FAKE_LOG"]).read_text())["mask_holes"] == 40

    # A mask layer: premultiplied lightness (Y'aA) pairs; transparent white does not count.
    pairs = np.zeros((40, 56, 2), np.uint8)
    pairs[0:2, 0:10] = (255, 255)  # opaque white: hole
    pairs[2:4, 0:10] = (0, 0)  # transparent: not a hole
    pairs[4:6, 0:10] = (100, 255)  # dark grey, opaque: below the threshold
    mask_layer = FakeLayer("mask", {"Y'aA u8": pairs}, alpha=True, image=image)
    request = core.Request(weights=str(weights_dir), mask_source="drawable", mask_drawable=mask_layer)
    run_plugin(image, layer, request, project_python, env)
    assert json.loads(Path(env["FAKE_LOG"]).read_text())["mask_holes"] == 20
    inverted = core.Request(
        weights=str(weights_dir), mask_source="drawable", mask_drawable=mask_layer, invert=True
    )
    run_plugin(image, layer, inverted, project_python, env)
    assert json.loads(Path(env["FAKE_LOG"]).read_text())["mask_holes"] == 40 * 56 - 20


@pytest.mark.parametrize(
    "mode, message",
    [
        ("error", r"hrinpaint failed \(exit status 2\): error: weights folder /w lacks dfnet/$"),
        ("crash", r"hrinpaint failed \(exit status 1\): RuntimeError: the network exploded$"),
        ("kill", r"hrinpaint was killed by signal 9"),
        ("no-output", r"hrinpaint finished but wrote no result"),
    ],
)
def test_subprocess_failures_become_one_line_errors(project_python, weights_dir, env, mode, message):
    image, layer = image_with_layer(photo(), selection=feathered_selection(40, 56))
    progress = []
    with pytest.raises(core.PluginError, match=message) as info:
        run_plugin(
            image,
            layer,
            core.Request(weights=str(weights_dir)),
            project_python,
            env | {"FAKE_MODE": mode},
            progress,
        )
    assert "\n" not in str(info.value)
    assert image.layers == [layer] and image.events == []
    assert progress[-2:] == [("update", 1.0), "end"]
    log = json.loads(Path(env["FAKE_LOG"]).read_text())
    assert not Path(options_of(log)["--image"]).parent.exists()


def test_temporary_folders_of_dead_runs_are_removed(tmp_path):
    import subprocess

    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead_pid = int(finished.stdout)
    stale = tmp_path / f"{core.TEMP_PREFIX}{dead_pid}-abc"
    live = tmp_path / f"{core.TEMP_PREFIX}{os.getpid()}-def"
    unrelated = tmp_path / f"{core.TEMP_PREFIX}notapid"
    for folder in (stale, live, unrelated):
        folder.mkdir()
        (folder / "image.png").write_bytes(b"x")
    assert core.remove_stale_temp_dirs(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists() and unrelated.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_the_subprocess_dies_with_the_plugin(tmp_path):
    """GIMP kills a plug-in whose progress is cancelled; the inpainting must not run on as an orphan."""
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    plugin = (
        f"import sys; sys.path.insert(0, {str(PLUGIN_DIR)!r}); import hrinpaint_core as core; "
        f"core.run_subprocess([sys.executable, '-c', {child!r}])"
    )
    parent = subprocess.Popen([sys.executable, "-c", plugin])
    try:
        deadline = time.monotonic() + 300  # hang guards: a loaded machine starts Python slowly
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.02)
        child_pid = int(pid_file.read_text())
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 120
    while _running(child_pid):
        assert time.monotonic() < deadline, "the subprocess outlived the plug-in"
        time.sleep(0.02)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for whoever adopted it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_missing_interpreter_is_reported(tmp_path, weights_dir, env):
    image, layer = image_with_layer(photo(), selection=feathered_selection(40, 56))
    with pytest.raises(core.PluginError, match="missing or not executable"):
        run_plugin(image, layer, core.Request(weights=str(weights_dir)), tmp_path / "nope", env)
    with pytest.raises(core.PluginError, match="cannot start"):
        core.run_subprocess([str(tmp_path / "nope")])


@pytest.mark.parametrize(
    "selection, request_args, message",
    [
        (None, {}, "there is no selection"),
        (np.full((40, 56), 100, np.uint8), {}, "nothing to fill: no pixel .* reaches the threshold 128"),
        (np.full((40, 56), 255, np.uint8), {"threshold": 0}, "threshold must be in 1..255"),
        (np.full((40, 56), 255, np.uint8), {"method": "magic"}, "unknown method 'magic'"),
        (np.full((40, 56), 255, np.uint8), {"mask_source": "drawable"}, "no mask layer or channel"),
        (
            np.full((40, 56), 255, np.uint8),
            {"weights": "/does/not/exist"},
            "weights folder .* not exist",
        ),
    ],
)
def test_bad_requests_fail_before_starting_anything(
    project_python, weights_dir, env, selection, request_args, message
):
    image, layer = image_with_layer(photo(), selection=selection)
    request = core.Request(**({"weights": str(weights_dir)} | request_args))
    with pytest.raises(core.PluginError, match=message):
        run_plugin(image, layer, request, project_python, env)
    assert not Path(env["FAKE_LOG"]).exists(), "the subprocess ran"


def test_only_one_pixel_layer_can_be_filled(project_python, weights_dir, env):
    api = make_api([])
    image, layer = image_with_layer(photo())
    with pytest.raises(core.PluginError, match="exactly one layer"):
        core.target_layer(api, [layer, layer])
    with pytest.raises(core.PluginError, match="not a layer"):
        core.target_layer(api, [FakeChannel("c", {"Y u8": np.zeros((2, 2), np.uint8)})])
    layer.group = True
    with pytest.raises(core.PluginError, match="layer group"):
        core.target_layer(api, [layer])


def test_high_precision_images_are_exported_in_16_bits(project_python, weights_dir, env):
    image, layer = image_with_layer(photo(), selection=feathered_selection(40, 56))
    image.precision = "float-linear"
    deep = np.random.default_rng(1).integers(0, 65535, size=(40, 56, 3), dtype=np.uint16)
    layer.planes = {"R'G'B' u16": deep}
    pixels, channels, bits = core.read_layer(make_api([]), image, layer)
    assert (channels, bits) == (3, 16) and pixels == deep.tobytes()


# ------------------------------------------------------------------------------------------------
# hrinpaint install-gimp-plugin


def test_install_copies_the_plugin_and_records_the_python(tmp_path, weights_dir):
    from hrinpaint_jax.commands.install_gimp_plugin import install_plugin

    target = install_plugin(
        tmp_path / "profile", weights=str(weights_dir), environ={}, log=lambda m: None
    )
    assert target == tmp_path / "profile" / "plug-ins" / "hrinpaint"
    main = target / "hrinpaint.py"
    assert main.read_text() == (PLUGIN_DIR / "hrinpaint.py").read_text() and not main.is_symlink()
    assert main.stat().st_mode & stat.S_IXUSR
    assert (target / "hrinpaint_core.py").is_file()
    settings = core.load_settings(target, environ={})
    assert settings == core.Settings(str(Path(sys.executable).absolute()), str(weights_dir))
    # Again, linked this time: the files are replaced by symlinks into the checkout.
    install_plugin(tmp_path / "profile", link=True, environ={}, log=lambda m: None)
    assert main.is_symlink() and main.resolve() == (PLUGIN_DIR / "hrinpaint.py").resolve()
    from hrinpaint_jax.pipelines.load import DEFAULT_WEIGHTS  # no --weights: the bundled models

    assert core.load_settings(target, environ={}).weights == str(DEFAULT_WEIGHTS)


def test_install_command_and_its_errors(tmp_path, capsys):
    from hrinpaint_jax.cli import main

    profile = tmp_path / "profile"
    assert main(["install-gimp-plugin", "--gimp-dir", str(profile)]) == 0
    assert "Filters > Enhance > HR Inpaint" in capsys.readouterr().out
    assert (profile / "plug-ins" / "hrinpaint" / core.SETTINGS_FILE).is_file()
    assert (
        main(["install-gimp-plugin", "--gimp-dir", str(profile), "--python", str(tmp_path / "no")]) == 2
    )
    assert "is not an executable file" in capsys.readouterr().err
    assert (
        main(["install-gimp-plugin", "--gimp-dir", str(profile), "--weights", str(tmp_path / "no")]) == 2
    )
    assert "is not a folder" in capsys.readouterr().err


def test_install_checks_that_another_python_has_the_project(tmp_path):
    from hrinpaint_jax.commands.install_gimp_plugin import install_plugin
    from hrinpaint_jax.image_io import InputError

    bare = tmp_path / "bare-python"
    bare.write_text(
        "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'hrinpaint_jax'\" >&2\nexit 1\n"
    )
    bare.chmod(0o755)
    with pytest.raises(InputError, match="cannot import hrinpaint_jax: ModuleNotFoundError"):
        install_plugin(tmp_path / "profile", python=str(bare), environ={}, log=lambda m: None)


def test_gimp_profile_folder_per_platform(tmp_path):
    from hrinpaint_jax.commands.install_gimp_plugin import gimp_profile_dir

    home = tmp_path
    assert gimp_profile_dir({}, "linux", home) == home / ".config" / "GIMP" / "3.0"
    assert gimp_profile_dir({"XDG_CONFIG_HOME": "/x"}, "linux", home) == Path("/x/GIMP/3.0")
    assert gimp_profile_dir({"GIMP3_DIRECTORY": "/g"}, "linux", home) == Path("/g")
    assert gimp_profile_dir({}, "darwin", home) == home / "Library/Application Support/GIMP/3.0"
    assert gimp_profile_dir({"APPDATA": "/a"}, "win32", home) == Path("/a/GIMP/3.0")
