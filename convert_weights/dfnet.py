"""Mapping table: DFNet PyTorch state_dict (``model_places2.pth``) -> ``hrinpaint_jax`` DFNet.

Torch layout (REFERENCE.md section 2.8): stride-2 encoder convs sit in a (pad, conv) Sequential, hence
``en_i.encode.0.conv.1.*``; stride-1 convs are ``*.conv.*``. ``de_0`` is the finest decoder,
``fuse_k`` sits on ``de_k`` (k = 0..5), its Blend Sequential holds convs at 0, 3, 6 and BN at 1, 4.
"""

from hrinpaint_jax.conversion import Table, TableBuilder

DEPTH = 8
FUSION_LEVELS = range(6)


def table() -> Table:
    t = TableBuilder("dfnet")
    for i in range(DEPTH):
        t.conv(f"en_{i}.encode.0.conv.1", (f"en_{i}", "conv", "conv"))
        if i > 0:  # en_0 has no BatchNorm
            t.batchnorm(f"en_{i}.encode.1", (f"en_{i}", "bn"))
    for j in range(DEPTH):
        t.conv(f"de_{j}.decode.0.conv", (f"de_{j}", "conv", "conv"))
        t.batchnorm(f"de_{j}.decode.1", (f"de_{j}", "bn"))
    for k in FUSION_LEVELS:
        t.conv(f"fuse_{k}.map2img.0.conv", (f"fuse_{k}", "map2img", "conv"))
        for index in (0, 3, 6):
            t.conv(f"fuse_{k}.blend.blend.{index}.conv", (f"fuse_{k}", f"blend_{index}", "conv"))
        for index in (1, 4):
            t.batchnorm(f"fuse_{k}.blend.blend.{index}", (f"fuse_{k}", f"blend_{index}"))
    return t.build()
