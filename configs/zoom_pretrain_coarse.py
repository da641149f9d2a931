"""Zoom-to-Inpaint stage 1a: coarse net pretraining (REFERENCE.md 9.3).

places365_small 256 crops, small stroke masks, batch 16, 100 epochs x 1,803 iterations, Adam 1e-3
-> 1e-4 after epoch 80 -> 1e-5 after epoch 90 (Keras eps 1e-7), loss L1 + 0.01 VGG.
"""

from configs import default

EPOCH = 1803  # int(1,803,460 / 1000), the reference's iterations per "epoch"


def zoom_pretrain(config, task):
    config.task = task
    config.data.source = "tfds:places365_small"
    config.data.crop_size = 256
    config.data.global_batch_size = 16
    config.data.shuffle_buffer = 2000
    config.masks.kind = "small"
    config.optim.lr = 1e-3
    config.optim.eps = 1e-7  # Keras' Adam epsilon (its eps-hat form; REFERENCE 9.3)
    config.optim.boundaries = (80 * EPOCH, 90 * EPOCH)
    config.loss.l1, config.loss.vgg = 1.0, 0.01
    config.num_train_steps = 100 * EPOCH
    config.checkpoint_every = 5000
    config.sample_every = 5000
    return config


def get_config():
    return zoom_pretrain(default.get_config(), "zoom_pretrain_coarse")
