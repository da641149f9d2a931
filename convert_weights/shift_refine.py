"""Mapping table: refinement U-Net PyTorch state_dict (``refinement.pth``) -> ``ShiftRefineUNet``.

Torch layout (REFERENCE.md section 3.3): 1-based names without underscores, ``de1`` is the deepest
decoder; encoder convs at ``enK.encode.0.conv.1.*`` (asymmetric padding), decoder convs at
``deK.decode.0.conv.*``, the head at ``last_conv.0.conv.*``.
"""

from hrinpaint_jax.conversion import Table, TableBuilder

DEPTH = 8


def table() -> Table:
    t = TableBuilder("shift_refine")
    for n in range(1, DEPTH + 1):
        t.conv(f"en{n}.encode.0.conv.1", (f"en{n}", "conv", "conv"))
        if n > 1:  # en1 has no BatchNorm
            t.batchnorm(f"en{n}.encode.1", (f"en{n}", "bn"))
    for n in range(1, DEPTH + 1):
        t.conv(f"de{n}.decode.0.conv", (f"de{n}", "conv", "conv"))
        t.batchnorm(f"de{n}.decode.1", (f"de{n}", "bn"))
    t.conv("last_conv.0.conv", ("last_conv", "conv"))
    return t.build()
