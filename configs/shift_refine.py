"""seed-000 stage 2: the shift refinement U-Net (paper sections 3-4; REFERENCE.md 9.2).

512 patches of whole stage-1 results with a 10-90 % hole, Adam with PyTorch defaults (lr 1e-3),
batch 18, loss eq. 1. Stage 1 comes from a frozen DFNet: ``--config.refine.stage1_weights`` is a
converted ``model_places2.pth`` (python -m convert_weights --model dfnet ...) or a DFNet workdir.
The paper cuts patches from "3 random largest squares" per image; here each example is a random
1024 square crop (DIV2K images are ~2K), stage 1 runs on it at 512 and is upscaled back. The paper
gives no step count ("two days on two P100"); 200k steps of batch 18 is our choice.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.task = "shift_refine"
    config.data.source = "tfds:div2k"
    config.data.crop_size = 1024  # the whole square stage 1 sees
    config.data.global_batch_size = 18
    config.data.shuffle_buffer = 64
    config.masks.kind = "irregular"
    config.masks.min_ratio = 0.05
    config.masks.max_ratio = 0.50
    config.refine.stage1_weights = "weights/dfnet"
    config.optim.lr = 1e-3
    config.num_train_steps = 200_000
    config.checkpoint_every = 5000
    config.sample_every = 5000
    return config
