"""DFNet: the coarse (stage-1) network of the two-stage method.

Hong et al., "Deep Fusion Network for Image Completion" (ACM MM 2019), as used by Moskalenko et al.,
"Deep Two-Stage High-Resolution Image Inpainting" (REFERENCE.md section 2). A U-Net with 8 stride-2
encoders and 8 nearest-upsampling decoders; the six finest decoders carry a *fusion block* that maps
features to an image and blends it with the (resized) masked input through a learned alpha.

Conventions of this module (the network's own, kept for weight compatibility):
* NHWC, values in [0, 1];
* ``mask``: **1 = known pixel, 0 = hole** (the opposite of the package-wide 1 = hole; pipelines convert);
* the released weights were trained on **BGR** images, so callers feed BGR.
H and W must be multiples of 256.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrinpaint_jax.layers import (
    LEAKY_SLOPE,
    DecoderBlock,
    Dtype,
    Precision,
    SameConv,
    TorchBatchNorm,
    unet_encode,
)
from hrinpaint_jax.ops.resize import resize_bilinear_torch


class FusionBlock(nn.Module):
    """DFNet fusion block (REFERENCE.md section 2.5).

    raw = sigmoid(1x1 conv(features)); alpha = Blend([image, raw]); out = alpha*raw + (1-alpha)*image,
    where ``image`` is the masked input image resized (bilinear, no antialias) to the features' size.
    Submodule names follow torch: ``map2img`` (``map2img.0``), ``blend_{0,1,3,4,6}`` (``blend.blend.i``).
    """

    c_img: int = 3
    c_alpha: int = 3
    bn_axis_name: str | None = None
    dtype: Dtype | None = None
    precision: Precision = None

    @nn.compact
    def __call__(self, features: jax.Array, img_miss: jax.Array, *, train: bool) -> jax.Array:
        conv = lambda c, k, name: SameConv(c, k, dtype=self.dtype, precision=self.precision, name=name)
        bn = lambda name: TorchBatchNorm(
            use_running_average=not train, axis_name=self.bn_axis_name, dtype=self.dtype, name=name
        )
        image = resize_bilinear_torch(img_miss, features.shape[1:3]).astype(features.dtype)
        raw = nn.sigmoid(conv(self.c_img, 1, "map2img")(features))
        # Blend's mid width is max(in_channels // 2, 32) in the reference: 32 for 6 input channels.
        mid = max((2 * self.c_img) // 2, 32)
        a = jnp.concatenate([image, raw], axis=-1)  # order: image first, raw second
        a = nn.leaky_relu(bn("blend_1")(conv(mid, 1, "blend_0")(a)), LEAKY_SLOPE)
        a = nn.leaky_relu(bn("blend_4")(conv(self.c_alpha, 3, "blend_3")(a)), LEAKY_SLOPE)
        alpha = nn.sigmoid(conv(self.c_alpha, 1, "blend_6")(a))
        return alpha * raw + (1.0 - alpha) * image


class DFNet(nn.Module):
    """DFNet with the reference constructor's defaults (32,880,504 trainable parameters).

    Attributes:
      c_img, c_mask, c_alpha: image / mask / alpha channels (3, 1, 3).
      en_ksize: kernel sizes of the 8 stride-2 encoders.
      de_ksize: kernel sizes of the decoders in the reference's build order, deepest first:
        ``de_ksize[i]`` is the kernel of ``de_{depth-1-i}``.
      blend_layers: decoder indices that carry a fusion block (and so produce an output).
      base_features, max_features: encoder widths 64, 128, 256, 512 capped at 512. Narrower variants
        (for cheap training) scale these; the converter only accepts the defaults.
      bn_axis_name: ``pmap`` axis for synchronised BatchNorm in training.
      dtype: computation dtype (parameters and BN statistics stay float32).
      precision: ``lax.Precision`` of the convolutions (``'highest'`` for parity runs on GPU/TPU).
    """

    c_img: int = 3
    c_mask: int = 1
    c_alpha: int = 3
    en_ksize: Sequence[int] = (7, 5, 5, 3, 3, 3, 3, 3)
    de_ksize: Sequence[int] = (3, 3, 3, 3, 3, 3, 3, 3)
    blend_layers: Sequence[int] = (0, 1, 2, 3, 4, 5)
    base_features: int = 64
    max_features: int = 512
    bn_axis_name: str | None = None
    dtype: Dtype | None = None
    precision: Precision = None

    @nn.compact
    def __call__(self, img_miss: jax.Array, mask: jax.Array, *, train: bool = False) -> list[jax.Array]:
        """Runs the network.

        Args:
          img_miss: [B, H, W, c_img] masked image (holes already 0), BGR for the released weights.
          mask: [B, H, W, c_mask], 1 = known, 0 = hole.
          train: batch statistics (and running-average updates) in BatchNorm if True.
        Returns:
          ``len(blend_layers)`` fused images, **finest first**: entry k is [B, H/2^k, W/2^k, c_img].
        """
        # The reference's constructor asserts these too.
        if len(self.de_ksize) != len(self.en_ksize):
            raise ValueError(f"de_ksize {self.de_ksize} must have one kernel per encoder")
        if 0 not in self.blend_layers or not set(self.blend_layers) <= set(range(len(self.en_ksize))):
            raise ValueError(f"blend_layers {self.blend_layers} must include 0 and index decoders")
        kw = dict(bn_axis_name=self.bn_axis_name, dtype=self.dtype, precision=self.precision)
        x = jnp.concatenate([img_miss, mask], axis=-1)  # order: [img_miss, mask]
        if self.dtype is not None:
            x = x.astype(self.dtype)
        # skips[i] is the input of en_i: the raw 4-channel input, then each encoder's output.
        skips = unet_encode(
            x,
            network="DFNet",
            en_ksize=self.en_ksize,
            base_features=self.base_features,
            max_features=self.max_features,
            name_of=lambda i: f"en_{i}",
            train=train,
            **kw,
        )

        # Decoders run deepest first; de_j's skip is en_j's input and it outputs that many channels.
        results = []
        x = skips.pop()
        for j in reversed(range(len(self.en_ksize))):
            skip = skips.pop()
            kernel = self.de_ksize[len(self.en_ksize) - 1 - j]  # build order: deepest first
            x = DecoderBlock(skip.shape[-1], kernel, name=f"de_{j}", **kw)(x, skip, train=train)
            if j in self.blend_layers:
                fuse = FusionBlock(self.c_img, self.c_alpha, name=f"fuse_{j}", **kw)
                results.append(fuse(x, img_miss, train=train))
        return results[::-1]
