"""SN-PatchGAN discriminator of Zoom-to-Inpaint (REFERENCE.md sections 5.6, 5.7).

Five spectral-normalised 5x5 stride-2 'SAME' convs (4 -> 64 -> 128 -> 256 -> 256 -> 256), each
followed by LeakyReLU(0.2) -- including the last one -- then a row-major (h, w, c) flatten: 65,536
logits per 512 x 512 sample. Submodules ``sn_conv{i}`` (Keras ``model_d/layer_with_weights-{i}``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from hrinpaint_jax.layers import SpectralNormConv

Dtype = Any


class PatchGANDiscriminator(nn.Module):
    """Args (``__call__``): x [B, H, W, 4] = [image (3), mask (1)] (512 x 512 in the paper).

    Returns: [B, ceil(H/32) * ceil(W/32) * features[-1]] logits (TF 'SAME' stride-2 convs). Apply
    with ``mutable=['params', 'spectral']`` to reproduce the reference's in-place spectral
    normalisation (see ``SpectralNormConv``).
    """

    features: tuple[int, ...] = (64, 128, 256, 256, 256)
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"the discriminator expects [B, H, W, C], got {x.shape}")
        for i, features in enumerate(self.features):
            x = SpectralNormConv(features, dtype=self.dtype, name=f"sn_conv{i}")(x)
            x = nn.leaky_relu(x, 0.2)
        return x.reshape(x.shape[0], -1)
