"""Zoom-to-Inpaint stage 2: joint GAN training with small masks (train_small_mask.cfg).

DIV2K, LR 256 / HR 512, batch 16, 100 epochs x 800, lr 1e-3 -> 1e-4 after epoch 80 -> 1e-5 after
90 for G and D (lr_d_ratio 1), loss 8.3. Starts from the pretrained coarse and refine nets
(``init_from``; add ``sr=runs/zoom_pretrain_sr`` to also start the SR net from its pretraining --
the released cfg does not).

Learning-rate schedule: by default fresh per stage, as the paper describes. The released code
restores the optimisers with the nets, step counters included, so its G runs stage 2 at 1e-5
(REFERENCE.md 9.3 QUIRK): ``--config.init_from_optimizer=True`` reproduces that (G's schedule
continues from the pretraining step count).
"""

from configs import default

EPOCH = 800


def zoom_joint(config, masks: str):
    config.task = "zoom_joint"
    config.data.source = "tfds:div2k"
    config.data.crop_size = 512
    config.data.lr_scale = 2
    config.data.global_batch_size = 16
    config.data.shuffle_buffer = 200
    config.masks.kind = masks
    config.optim.eps = 1e-7
    config.optim.d_lr_ratio = 1.0
    config.loss.l1, config.loss.vgg, config.loss.vgg_refine, config.loss.gan = 1.0, 0.01, 1e-5, 0.5
    config.checkpoint_every = 5000
    config.sample_every = 2000
    return config


def get_config():
    config = zoom_joint(default.get_config(), "small")
    config.optim.lr = 1e-3
    config.optim.boundaries = (80 * EPOCH, 90 * EPOCH)
    config.num_train_steps = 100 * EPOCH
    config.init_from = "coarse=runs/zoom_pretrain_coarse,refine=runs/zoom_pretrain_refine"
    return config
