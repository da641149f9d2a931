"""Base configuration shared by every stage: the networks' architecture and numerics.

Training and evaluation configs (later issues) import this and override a few fields, e.g.
``python train.py --config configs/X.py --config.dfnet.base_features=32``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0  # PRNG seed for initialisation and data order.
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
    return config
