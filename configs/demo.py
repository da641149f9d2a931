"""``make demo-train``: a few minutes of Zoom-to-Inpaint joint training (narrow
nets, small crops, the GAN included) on one bundled photo, holding out the other for the
inpainting that follows. CPU-sized; not a quality model (see the README for real recipes)."""

from configs import default
from configs.zoom_joint_small import zoom_joint


def get_config():
    config = zoom_joint(default.get_config(), "small")
    config.data.source = "samples"
    config.data.holdout = ("astronaut.png",)  # inpainted after training
    config.data.crop_size = 128
    config.data.global_batch_size = 4
    config.data.shuffle_buffer = 8
    config.zoom.width = 8
    config.zoom.sr_features, config.zoom.sr_blocks = 16, 2
    config.zoom.disc_features = (16, 32, 32, 32, 32)
    config.loss.vgg_input_size = 112
    config.optim.lr = 1e-3
    config.optim.boundaries = (120,)
    config.num_train_steps = 160
    config.log_every = 20
    config.checkpoint_every = 40
    config.sample_every = 40
    return config
