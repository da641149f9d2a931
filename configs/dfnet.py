"""seed-000 stage 1: DFNet (hughplay config.yaml; REFERENCE.md 9.1).

512 crops, batch 6, Adam 2e-4 (PyTorch defaults otherwise), 20 epochs x 37,500 iterations, lr x 0.1
every 5 epochs, loss 8.1. The released model was trained on Places2 at 512; TFDS's places365_small is
256 px, so the default source is DIV2K (set ``--config.data.source=folder:/path/to/places2``
for the paper's data). The network is trained in BGR like the released model (see tasks/two_stage.py).
"""

from configs import default

EPOCH = 37_500


def get_config():
    config = default.get_config()
    config.task = "dfnet"
    config.data.source = "tfds:div2k"
    config.data.crop_size = 512
    config.data.global_batch_size = 6
    config.masks.kind = "irregular"
    config.optim.lr = 2e-4
    config.optim.boundaries = (5 * EPOCH, 10 * EPOCH, 15 * EPOCH)
    config.num_train_steps = 20 * EPOCH
    config.log_every = 100
    config.checkpoint_every = 5000
    config.sample_every = 5000
    return config
