"""Base configuration shared by every stage: the networks' architecture, numerics and the training
fields with neutral defaults. Each stage file (``configs/dfnet.py``, ``configs/zoom_joint_small.py``,
...) starts from ``get_config()`` and sets what its stage needs; any field can be overridden on the
command line, e.g. ``python train.py --config configs/dfnet.py --config.optim.lr=1e-4``.
"""

import ml_collections

from hrinpaint_jax.losses import DFNET_WEIGHTS


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = ""  # Stage: see hrinpaint_jax.tasks.TASKS.
    config.seed = 0  # PRNG seed for initialisation, data order, masks and step rngs.
    config.dtype = "float32"  # Computation dtype ('float32' or 'bfloat16'); params stay float32.

    # DFNet (stage 1): constructor fields of hrinpaint_jax.models.DFNet; defaults = released model.
    config.dfnet = ml_collections.ConfigDict()
    config.dfnet.en_ksize = (7, 5, 5, 3, 3, 3, 3, 3)  # Kernel of each stride-2 encoder.
    config.dfnet.de_ksize = (3, 3, 3, 3, 3, 3, 3, 3)  # Decoder kernels, deepest first (reference order).
    config.dfnet.blend_layers = (0, 1, 2, 3, 4, 5)  # Decoders with a fusion block (= outputs).
    config.dfnet.base_features = 64  # Width of en_0; doubles per level.
    config.dfnet.max_features = 512  # Width cap.

    # Shift refinement U-Net (stage 2): fields of hrinpaint_jax.models.ShiftRefineUNet.
    config.shift_refine = ml_collections.ConfigDict()
    config.shift_refine.en_ksize = (7, 5, 5, 3, 3, 3, 3, 3)  # Kernel of each stride-2 encoder.
    config.shift_refine.base_features = 96  # Width of en1; doubles per level.
    config.shift_refine.max_features = 512  # Width cap.

    # Zoom-to-Inpaint networks (hrinpaint_jax.models.zoom); defaults = the paper's.
    config.zoom = ml_collections.ConfigDict()
    config.zoom.width = 32  # Gated width of the first level of coarse / refine nets.
    config.zoom.sr_scale = 2
    config.zoom.sr_features = 64
    config.zoom.sr_blocks = 4
    config.zoom.disc_features = (64, 128, 256, 256, 256)
    config.zoom.attention = "efficient"  # Contextual attention: 'efficient' or 'dense'.

    # Training data (hrinpaint_jax.input_pipeline.DataConfig).
    config.data = ml_collections.ConfigDict()
    config.data.source = "samples"  # 'tfds:NAME', 'folder:PATH' or 'samples' (bundled photos).
    config.data.split = "train"
    config.data.data_dir = ""  # TFDS data_dir ('' = TFDS default).
    config.data.crop_size = 256  # HR crop side.
    config.data.lr_scale = 1  # LR image = HR / lr_scale (1: none).
    config.data.global_batch_size = 8  # Over all processes and devices.
    config.data.shuffle_buffer = 256
    config.data.flip = True
    config.data.holdout = ("",)  # File names left out of folder sources (validation photos).
    config.data.cache_mb = 1024  # Decoded folder images kept in memory, MiB per process (0: none).

    # Hole masks: 'none', 'irregular' (seed-000) or ZTI strokes ('small', 'large', 'progressive',
    # 'ramp'; hrinpaint_jax.masks.MaskSchedule).
    config.masks = ml_collections.ConfigDict()
    config.masks.kind = "none"
    config.masks.min_ratio = 0.10  # 'irregular' hole ratio range.
    config.masks.max_ratio = 0.60
    config.masks.switch_step = 0  # 'progressive': large from this step.
    config.masks.ramp_start = 0  # 'ramp': P(large) rises from 0 at ramp_start ...
    config.masks.ramp_end = 0  # ... to 1 at ramp_end.

    # Adam with a stair schedule (lr * decay^k after the k-th boundary, TF semantics).
    config.optim = ml_collections.ConfigDict()
    config.optim.lr = 1e-3
    config.optim.boundaries = ()  # Update counts.
    config.optim.decay = 0.1
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8  # PyTorch default; ZTI configs use Keras' 1e-7.
    config.optim.d_lr_ratio = 1.0  # Discriminator lr = lr * d_lr_ratio (ZTI lr_d_ratio).

    # Loss weights (REFERENCE.md 8.3 for ZTI, 8.1 / 8.2 for DFNet and the seed-000 refinement).
    config.loss = ml_collections.ConfigDict()
    # DFNet (task dfnet) and refinement (task shift_refine) terms; default: the papers' weights
    # 6 / 0.1 / 240 / 0.1 (l1 / perceptual / style / tv).
    config.loss.dfnet = ml_collections.ConfigDict(DFNET_WEIGHTS)
    config.loss.l1 = 1.0
    config.loss.vgg = 0.01  # ZTI coarse / pretraining VGG weight (0: no VGG at all).
    config.loss.vgg_refine = 1e-5
    config.loss.gan = 0.5
    config.loss.vgg_input_size = 224  # ZTI VGG loss input side (the reference's 224).
    config.loss.vgg19_weights = ""  # Keras notop .h5 or torchvision vgg19-*.pth; '' = VGG16 fallback.
    config.loss.vgg_in_use = ""  # Filled in at start (which VGG the ZTI loss really uses).

    # seed-000 refinement training (REFERENCE.md 9.2).
    config.refine = ml_collections.ConfigDict()
    config.refine.patch_size = 512
    config.refine.hole_min = 0.10  # Patch hole fraction range.
    config.refine.hole_max = 0.90
    config.refine.stage1_weights = ""  # Frozen DFNet: weights dir or DFNet training workdir.
    config.refine.stage1_dir = ""  # Or precomputed stage-1 PNGs (refinement_data.precompute_stage1).
    config.refine.stage1_faithful = False  # Stage 1 as test.py (quirks) or the fixed path.

    # Loop.
    config.num_train_steps = 1000
    config.log_every = 100
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3
    config.sample_every = 1000  # 0: no sample grids.
    # Start a fresh run from '[subtree=]PATH[,...]' (training workdirs or weights dirs).
    config.init_from = ""
    # Also restore the optimiser (step counters included): the released ZTI code's behaviour.
    config.init_from_optimizer = False
    return config
