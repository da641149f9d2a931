"""GIMP 3 batch script of the end-to-end test (run by gimp_e2e.sh inside GIMP's python-fu-eval).

Runs the installed plug-in the way a script or the menu does (through the PDB) on bundled photos:
1. two-stage, a feathered elliptical selection (antialiased coverage, binarised at 128);
2. zoom, the mask taken from a channel, dilation 3, on a layer moved off the canvas origin;
3. a weights folder without networks: the run must fail with the subprocess's message;
4. no selection: the run must fail and say so.
Each filled layer, its original and the mask are exported as PNG files into $HRINPAINT_E2E_WORK with a
summary (e2e.json) that tools/e2e_check.py checks on the host with NumPy. Structural failures (status,
layer order, names) raise here, which makes gimp-console exit non-zero.
"""

import json
import os
import sys

from gi.repository import Gegl, Gimp, Gio

WORK = os.environ["HRINPAINT_E2E_WORK"]
PLUGIN_DIR = os.path.join(os.environ["GIMP3_DIRECTORY"], "plug-ins", "hrinpaint")
sys.path.insert(0, PLUGIN_DIR)
import hrinpaint_core as core  # noqa: E402  (the installed plug-in's PNG writer)

summary = {}


def export(drawable, name, babl_format, channels, rect=None):
    """Writes the drawable's pixels (its own coordinates, or ``rect``) as WORK/name.png."""
    x, y, w, h = rect or (0, 0, drawable.get_width(), drawable.get_height())
    data = drawable.get_buffer().get(
        Gegl.Rectangle.new(x, y, w, h), 1.0, babl_format, Gegl.AbyssPolicy.NONE
    )
    core.write_png(os.path.join(WORK, name + ".png"), w, h, channels, 8, bytes(data))


def run_plugin(image, layer, **args):
    """Calls the plug-in non-interactively; returns (status nick, error message)."""
    procedure = Gimp.get_pdb().lookup_procedure(core.PROCEDURE_NAME)
    if procedure is None:
        raise RuntimeError(f"GIMP did not register {core.PROCEDURE_NAME}: is the plug-in installed?")
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    for key, value in args.items():
        if key == "weights":
            value = Gio.File.new_for_path(value)
        config.set_property(key.replace("_", "-"), value)
    result = procedure.run(config)
    status = result.index(0)
    message = result.index(1) if result.length() > 1 and status != Gimp.PDBStatusType.SUCCESS else ""
    return status.value_nick, str(message or "")


def load(name):
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.path.join(WORK, name)))
    return image, image.get_layers()[0]


def check_filled(case, image, layer, status, message):
    if status != "success":
        raise RuntimeError(f"{case}: the plug-in failed: {status}: {message}")
    layers = image.get_layers()
    if len(layers) != 2 or layers[1] != layer:
        raise RuntimeError(
            f"{case}: expected the result above the original, got {[x.get_name() for x in layers]}"
        )
    result = layers[0]
    if result.get_name() != layer.get_name() + core.RESULT_SUFFIX:
        raise RuntimeError(f"{case}: unexpected result layer name {result.get_name()!r}")
    if result.get_offsets()[1:] != layer.get_offsets()[1:]:
        raise RuntimeError(f"{case}: result offsets {result.get_offsets()} != {layer.get_offsets()}")
    if (result.get_width(), result.get_height()) != (layer.get_width(), layer.get_height()):
        raise RuntimeError(f"{case}: result size differs from the original's")
    export(layer, f"{case}_original", "R'G'B' u8", 3)
    export(result, f"{case}_result", "R'G'B' u8", 3)
    return result


# 1. two-stage, feathered selection.
image, layer = load("astronaut.png")
image.select_ellipse(Gimp.ChannelOps.REPLACE, 170, 150, 180, 140)
Gimp.Selection.feather(image, 24)
status, message = run_plugin(image, layer, method="two-stage", weights=os.path.join(WORK, "weights"))
check_filled("selection", image, layer, status, message)
export(image.get_selection(), "selection_mask", "Y u8", 1)
summary["selection"] = {"threshold": 128, "dilate": 0, "offsets": [0, 0]}
image.delete()

# 2. zoom, mask from a channel, dilation, a layer moved by (24, 16) so that it leaves the canvas.
image, layer = load("coffee.png")
layer.set_offsets(24, 16)
image.select_rectangle(Gimp.ChannelOps.REPLACE, 250, 140, 120, 90)
channel = Gimp.Selection.save(image)
Gimp.Selection.none(image)
status, message = run_plugin(
    image,
    layer,
    method="zoom",
    weights=os.path.join(WORK, "weights"),
    mask_source="drawable",
    mask_drawable=channel,
    dilate=3,
)
check_filled("channel", image, layer, status, message)
export(channel, "channel_mask", "Y u8", 1)
summary["channel"] = {"threshold": 128, "dilate": 3, "offsets": [24, 16]}

# 3. a weights folder without the networks: the subprocess's error must come back.
empty = os.path.join(WORK, "no_weights")
os.makedirs(empty, exist_ok=True)
image.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 10, 50, 50)
before = len(image.get_layers())
status, message = run_plugin(image, layer, method="two-stage", weights=empty)
if status != "execution-error" or "weights folder" not in message or len(image.get_layers()) != before:
    raise RuntimeError(
        f"bad weights: expected an execution error naming the weights, got {status}: {message}"
    )
summary["bad_weights"] = message

# 4. no selection.
Gimp.Selection.none(image)
status, message = run_plugin(image, layer, method="two-stage", weights=os.path.join(WORK, "weights"))
if status != "execution-error" or "no selection" not in message:
    raise RuntimeError(f"no selection: expected an execution error, got {status}: {message}")
summary["no_selection"] = message
image.delete()

with open(os.path.join(WORK, "e2e.json"), "w") as f:
    json.dump(summary, f, indent=2)
print("e2e batch: all plug-in runs behaved")
