"""The shift refinement U-Net (stage 2 of the two-stage method).

Moskalenko et al., "Deep Two-Stage High-Resolution Image Inpainting", section 3 (REFERENCE.md section 3;
``RefinementNet`` in the authors' code). It refines the stage-1 result at full resolution from the
image plus four copies shifted up, down, right and left, each with its validity mask: 20 input
channels. Same blocks as DFNet, no fusion blocks, a 1x1 sigmoid head composited into the hole.

Conventions: NHWC, values in [0, 1], **RGB**, ``mask`` 1 = hole. H and W must be multiples of 256.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrinpaint_jax.layers import (
    DecoderBlock,
    Dtype,
    Precision,
    SameConv,
    unet_encode,
)


class ShiftRefineUNet(nn.Module):
    """20-channel refinement U-Net (36,858,507 trainable parameters with the defaults).

    Submodules carry the torch names: ``en1``..``en8``, ``de1`` (deepest) .. ``de8`` (finest),
    ``last_conv``.

    Attributes:
      en_ksize: kernel sizes of the 8 stride-2 encoders.
      base_features, max_features: encoder widths 96, 192, 384, 512 capped at 512.
      bn_axis_name, dtype, precision: as in ``DFNet``.
    """

    en_ksize: Sequence[int] = (7, 5, 5, 3, 3, 3, 3, 3)
    base_features: int = 96
    max_features: int = 512
    out_channels: int = 3
    bn_axis_name: str | None = None
    dtype: Dtype | None = None
    precision: Precision = None

    @nn.compact
    def __call__(self, image: jax.Array, mask: jax.Array, *, train: bool = False) -> jax.Array:
        """Runs the network.

        Args:
          image: [B, H, W, 19]: the matched image (channels 0-2; known pixels plus the upscaled
            stage-1 fill) followed by the four shifted (image, mask) groups.
          mask: [B, H, W, 1], 1 = hole.
          train: batch statistics in BatchNorm if True.
        Returns:
          [B, H, W, 3]: sigmoid output inside the hole, ``image[..., :3]`` outside.
        """
        kw = dict(bn_axis_name=self.bn_axis_name, dtype=self.dtype, precision=self.precision)
        x = jnp.concatenate([mask, image], axis=-1)  # order: [mask, image] (mask first)
        if self.dtype is not None:
            x = x.astype(self.dtype)
        skips = unet_encode(
            x,
            network="the refinement U-Net",
            en_ksize=self.en_ksize,
            base_features=self.base_features,
            max_features=self.max_features,
            name_of=lambda i: f"en{i + 1}",
            train=train,
            **kw,
        )

        # Here the numbering runs the other way from DFNet: de1 is the deepest decoder.
        x = skips.pop()
        for n in range(1, len(self.en_ksize) + 1):
            skip = skips.pop()
            x = DecoderBlock(skip.shape[-1], name=f"de{n}", **kw)(x, skip, train=train)

        head = nn.sigmoid(
            SameConv(self.out_channels, 1, dtype=self.dtype, precision=self.precision, name="last_conv")(
                x
            )
        )
        head = head.astype(image.dtype)
        return mask * head + (1.0 - mask) * image[..., : self.out_channels]
