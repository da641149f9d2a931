"""Zoom-to-Inpaint stage 1b: refinement net pretraining at 256 (contextual attention on 32 x 32):
input = masked image and mask, output = head + masked image; otherwise as stage 1a."""

from configs import default
from configs.zoom_pretrain_coarse import zoom_pretrain


def get_config():
    return zoom_pretrain(default.get_config(), "zoom_pretrain_refine")
