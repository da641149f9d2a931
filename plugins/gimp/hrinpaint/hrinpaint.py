#!/usr/bin/env python3
"""GIMP 3 plug-in "Filters > Enhance > HR Inpaint...": fills the selected region of a layer at full
resolution with hrinpaint_jax (two-stage DFNet + shift refinement, or Zoom-to-Inpaint).

This file only registers the procedure and shows its dialog; the work is in ``hrinpaint_core.py``
beside it. Install both with ``hrinpaint install-gimp-plugin`` (see plugins/gimp/README.md).
"""

import os
import sys

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GimpUi, Gio, GLib, GObject  # noqa: E402

# Not realpath: with `install-gimp-plugin --link` the files are symlinks into the checkout, and the
# settings file lives in the installed folder, not there.
PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, PLUGIN_DIR)
import hrinpaint_core as core  # noqa: E402

RW = GObject.ParamFlags.READWRITE


def _choice(*entries):
    choice = Gimp.Choice.new()
    for i, (nick, label) in enumerate(entries):
        choice.add(nick, i, label, "")
    return choice


class HRInpaint(Gimp.PlugIn):
    def do_query_procedures(self):
        return [core.PROCEDURE_NAME]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("HR Inpaint...")
        procedure.add_menu_path("<Image>/Filters/Enhance")
        procedure.set_documentation(
            "Fill a region at full resolution with a neural inpainting network",
            "Fills the selection (or the white part of a mask layer or channel) of the active layer "
            "with hrinpaint_jax, run in the project's own Python, and adds the result as a new "
            "layer above it.",
            name,
        )
        procedure.set_attribution("hrinpaint_jax", "hrinpaint_jax authors", "2025")
        try:
            default_weights = core.load_settings(PLUGIN_DIR).weights
        except core.PluginError:
            default_weights = ""  # reported when the procedure runs
        procedure.add_choice_argument(
            "method",
            "_Method",
            "Two-stage: DFNet at 512 px + shift-refinement U-Net at full resolution; "
            "Zoom-to-Inpaint: coarse fill, super-resolution and refinement",
            _choice(
                ("two-stage", "Two-stage (DFNet + shift refinement)"),
                ("zoom", "Zoom-to-Inpaint"),
            ),
            "two-stage",
            RW,
        )
        procedure.add_file_argument(
            "weights",
            "_Weights folder",
            "Folder written by python -m convert_weights (dfnet/ and shift_refine/, or zoom/)",
            Gimp.FileChooserAction.SELECT_FOLDER,
            True,
            Gio.File.new_for_path(default_weights) if default_weights else None,
            RW,
        )
        procedure.add_choice_argument(
            "mask-source",
            "Mask so_urce",
            "What marks the region to fill",
            _choice(("selection", "Current selection"), ("drawable", "Layer or channel below")),
            "selection",
            RW,
        )
        procedure.add_drawable_argument(
            "mask-drawable",
            "Mask la_yer or channel",
            "White (or selected) = fill; used when the mask source is a layer or channel",
            True,
            RW,
        )
        procedure.add_boolean_argument(
            "invert-mask", "_Invert mask (black = fill)", "Fill where the mask is dark", False, RW
        )
        procedure.add_int_argument(
            "threshold",
            "Mask _threshold",
            "Antialiased and feathered edges are binarised: a pixel is filled when its mask "
            "value (0-255) is at least this",
            1,
            255,
            128,
            RW,
        )
        procedure.add_int_argument(
            "dilate", "_Dilation (px)", "Grow the region to fill by this many pixels", 0, 1024, 0, RW
        )
        procedure.add_boolean_argument(
            "whole-image",
            "_Whole image (no context crop)",
            "Run the network on the whole image, as in the papers; by default it runs on a crop "
            "around each group of holes (sharper fills for small holes in big photos)",
            False,
            RW,
        )
        return procedure

    def run(self, procedure, run_mode, image, drawables, config, data):
        if run_mode == Gimp.RunMode.INTERACTIVE:
            GimpUi.init(core.PROCEDURE_NAME)
            dialog = GimpUi.ProcedureDialog.new(procedure, config, "HR Inpaint")
            dialog.get_label(
                "threshold-note",
                "Feathered or antialiased selections are cut at the threshold below.",
                False,
                False,
            )
            dialog.fill(
                [
                    "method",
                    "weights",
                    "mask-source",
                    "mask-drawable",
                    "invert-mask",
                    "threshold-note",
                    "threshold",
                    "dilate",
                    "whole-image",
                ]
            )
            dialog.set_sensitive_if_in(
                "mask-drawable", None, "mask-source", _string_array("drawable"), True
            )
            dialog.set_sensitive_if_in(
                "invert-mask", None, "mask-source", _string_array("drawable"), True
            )
            accepted = dialog.run()
            dialog.destroy()
            if not accepted:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
        try:
            settings = core.load_settings(PLUGIN_DIR)
            core.run(
                core.GimpApi(Gimp, Gegl, Gio),
                image,
                list(drawables),
                core.request_from_config(config),
                settings,
            )
        except core.PluginError as e:
            return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(str(e)))
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


def _string_array(*values):
    array = Gimp.ValueArray.new(len(values))
    for value in values:
        array.append(GObject.Value(GObject.TYPE_STRING, value))
    return array


Gimp.main(HRInpaint.__gtype__, sys.argv)
