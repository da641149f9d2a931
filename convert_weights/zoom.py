"""Mapping table: the Zoom-to-Inpaint TF2 checkpoint (``train.py``) -> ``ZoomToInpaint``.

Keys are ``<object>/layer_with_weights-K/<attr>`` (REFERENCE.md section 5.8,
``fixtures/zti/variables.txt``), where K counts the Keras layers that own variables, in construction
order. The lists below spell that order out; a gated block is one Conv2D (K) followed by its
SyncBatchNormalization (K + 1). Layers with identical shapes (bottleneck convs 14 / 16, attention
convs 18 / 20) are told apart only by this order, never by shape.

Kernels are already HWIO: no transposes. Ignored: the optimizers (``optimizer``, ``optimizer_d``
and every ``.OPTIMIZER_SLOT``) and ``save_counter``.
"""

from hrinpaint_jax.conversion import TF, Table, TableBuilder

# Gated blocks in Keras construction order (sections 5.3 and 5.4); the 3-channel head comes last.
ENCODER = [f"enc1_{i}" for i in range(3)] + [f"enc2_{i}" for i in range(3)]
ENCODER += [f"bottleneck_{i}" for i in range(3)]
DECODER = [f"dec2_{i}" for i in range(4)] + [f"dec1_{i}" for i in range(4)]
COARSE_BLOCKS = ENCODER + DECODER  # K = 0..33, head K = 34
REFINE_BLOCKS = ENCODER + ["ca_in", "ca_out", "merge"] + DECODER  # K = 0..39, head K = 40
# SR net (section 5.5): K = 0 conv0, 1..8 residual convs (a, b per block), 9 expand, 10 last.
SR_CONVS = ["conv0"] + [f"res{i}_{ab}" for i in range(4) for ab in "ab"] + ["expand", "last"]
NUM_DISC_CONVS = 5

IGNORED = (r"\.OPTIMIZER_SLOT/", r"^optimizer(_d)?/", r"^save_counter$")


def _gated_net(t: TableBuilder, source: str, flax: str, blocks: list[str]) -> None:
    k = 0
    for block in blocks:
        t.keras_conv(f"{source}/layer_with_weights-{k}", (flax, block, "gc", "conv"))
        t.keras_batchnorm(f"{source}/layer_with_weights-{k + 1}", (flax, block, "bn"))
        k += 2
    t.keras_conv(f"{source}/layer_with_weights-{k}", (flax, "head", "conv"))


def table() -> Table:
    t = TableBuilder("zoom", source=TF, ignored=IGNORED)
    _gated_net(t, "model", "coarse", COARSE_BLOCKS)
    for k, name in enumerate(SR_CONVS):
        t.keras_conv(f"model_sr/layer_with_weights-{k}", ("sr", name))
    _gated_net(t, "model_refine", "refine", REFINE_BLOCKS)
    for k in range(NUM_DISC_CONVS):
        # The spectral-norm wrapper owns the kernel; the inner Conv2D's bias sits under layer/.
        src, flax = f"model_d/layer_with_weights-{k}", ("discriminator", f"sn_conv{k}")
        t.add(f"{src}/kernel", ("params", *flax, "kernel"))
        t.add(f"{src}/layer/bias", ("params", *flax, "bias"))
        t.add(f"{src}/spectral_norm_u", ("spectral", *flax, "u"))
        t.add(f"{src}/spectral_norm_v", ("spectral", *flax, "v"))
    return t.build()
