"""Zoom-to-Inpaint stage 1c: SR x2 pretraining (pretrain_sr.cfg; REFERENCE.md 9.3).

DIV2K, LR 64 / HR 128 (LR = TF bicubic antialiased downscale of the HR crop), no masks, batch 16,
500 epochs x 800 iterations, lr 1e-3 -> 1e-4 after epoch 400 -> 1e-5 after 450, L1 only.
"""

from configs import default

EPOCH = 800  # DIV2K train images


def get_config():
    config = default.get_config()
    config.task = "zoom_pretrain_sr"
    config.data.source = "tfds:div2k"
    config.data.crop_size = 128
    config.data.lr_scale = 2
    config.data.global_batch_size = 16
    config.data.shuffle_buffer = 2000
    config.masks.kind = "none"
    config.optim.lr = 1e-3
    config.optim.eps = 1e-7
    config.optim.boundaries = (400 * EPOCH, 450 * EPOCH)
    config.loss.l1, config.loss.vgg = 1.0, 0.0
    config.num_train_steps = 500 * EPOCH
    config.checkpoint_every = 10_000
    config.sample_every = 10_000
    return config
