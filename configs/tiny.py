"""Tiny variants of every stage, for tests and smoke runs: ``--config configs/tiny.py:STAGE`` with
STAGE one of hrinpaint_jax.tasks.TASKS (default zoom_joint). Bundled photos, narrow nets, small
crops, 4 images per step, a checkpoint every 2 steps."""

from configs import default

STAGES = (
    "dfnet",
    "shift_refine",
    "zoom_pretrain_coarse",
    "zoom_pretrain_refine",
    "zoom_pretrain_sr",
    "zoom_joint",
)


def get_config(stage: str = "zoom_joint"):
    if stage not in STAGES:
        raise ValueError(f"unknown tiny stage {stage!r}; known: {', '.join(STAGES)}")
    config = default.get_config()
    config.task = stage
    config.data.source = "samples"
    config.data.global_batch_size = 4
    config.data.shuffle_buffer = 8
    config.num_train_steps = 3
    config.log_every = 1
    config.checkpoint_every = 2
    config.keep_checkpoints = 5
    config.sample_every = 3
    config.dfnet.base_features, config.dfnet.max_features = 4, 8
    config.shift_refine.base_features, config.shift_refine.max_features = 4, 8
    config.zoom.width, config.zoom.sr_features, config.zoom.sr_blocks = 4, 8, 1
    config.zoom.disc_features = (8, 8, 8, 8, 8)
    config.loss.vgg_input_size = 32  # the reference's 224 costs most of a tiny step on CPU
    if stage == "dfnet":
        config.data.crop_size = 256  # DFNet's 8 stride-2 levels
        config.masks.kind = "irregular"
        config.optim.lr = 2e-4
    elif stage == "shift_refine":
        config.data.crop_size = 256
        config.refine.patch_size = 256
        config.masks.kind = "irregular"
        config.masks.min_ratio, config.masks.max_ratio = 0.15, 0.5
        config.refine.stage1_weights = ""  # a tiny DFNet weights dir or workdir must be given
    elif stage == "zoom_pretrain_sr":
        config.data.crop_size, config.data.lr_scale = 32, 2
        config.loss.vgg = 0.0
    elif stage == "zoom_joint":
        config.data.crop_size, config.data.lr_scale = 64, 2
        config.masks.kind = "small"
        config.optim.boundaries = (1,)  # exercises the stair schedule
    else:
        config.data.crop_size = 64
        config.masks.kind = "small"
    return config
