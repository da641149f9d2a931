"""GIMP 3 batch script for the README screenshots (gimp_e2e.sh screenshots): opens the bundled photo
with a feathered selection in a display, then tells the driver it is shown."""

import os

from gi.repository import Gimp, Gio

WORK = os.environ["HRINPAINT_E2E_WORK"]
image = Gimp.file_load(
    Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.path.join(WORK, "astronaut.png"))
)
image.select_ellipse(Gimp.ChannelOps.REPLACE, 170, 150, 180, 140)
Gimp.Selection.feather(image, 24)
Gimp.Display.new(image)
Gimp.displays_flush()
open(os.path.join(WORK, "shown"), "w").close()
