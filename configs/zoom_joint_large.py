"""Zoom-to-Inpaint stage 3: joint GAN training with large masks (train_large_mask.cfg).

As stage 2 with large masks, 1500 epochs x 800, lr 1e-5 -> 1e-6 after epoch 1200 -> 1e-7 after
1350, initialised from the whole stage-2 run (G and D). ``--config.init_from_optimizer=True`` also
takes both optimisers with their step counters, as the released code does (REFERENCE.md 9.3).
"""

from configs import default
from configs.zoom_joint_small import EPOCH, zoom_joint


def get_config():
    config = zoom_joint(default.get_config(), "large")
    config.optim.lr = 1e-5
    config.optim.boundaries = (1200 * EPOCH, 1350 * EPOCH)
    config.num_train_steps = 1500 * EPOCH
    config.init_from = "runs/zoom_joint_small"
    return config
