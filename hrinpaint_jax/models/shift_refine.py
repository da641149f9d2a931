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
from jax import lax

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
    def __call__(
        self,
        image: jax.Array,
        mask: jax.Array,
        *,
        train: bool = False,
        window: tuple[jax.Array, jax.Array, int, int] | None = None,
    ) -> jax.Array:
        """Runs the network.

        Args:
          image: [B, H, W, 19]: the matched image (channels 0-2; known pixels plus the upscaled
            stage-1 fill) followed by the four shifted (image, mask) groups.
          mask: [B, H, W, 1], 1 = hole.
          train: batch statistics in BatchNorm if True.
          window: ``(top, left, height, width)`` to run the *decoder* on that window only (the
            hole-local mode; see ``decoder_margin``). top/left may be traced integers, height/width
            are static; all four must be multiples of 2^depth. The encoder always sees the whole
            image. Pixels farther than ``decoder_margin()`` from a window edge that lies inside the
            image equal the full computation's. Inference only: in train mode BatchNorm would take
            the decoder's statistics over the window.
        Returns:
          [B, H, W, 3] (or [B, height, width, 3] with ``window``): sigmoid output inside the hole,
          ``image[..., :3]`` outside.
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
        if window is not None:
            if train:
                raise ValueError("the hole-local window is for inference (train=False) only")
            skips = [_crop(s, window, x.shape[1] // s.shape[1]) for s in skips]
            image, mask = _crop(image, window, 1), _crop(mask, window, 1)

        # Here the numbering runs the other way from DFNet: de1 is the deepest decoder.
        x = skips.pop()
        for n in range(1, len(self.en_ksize) + 1):
            skip = skips.pop()
            x = DecoderBlock(skip.shape[-1], name=f"de{n}", **kw)(x, skip, train=train)

        head = SameConv(
            self.out_channels, 1, dtype=self.dtype, precision=self.precision, name="last_conv"
        )(x)
        head = nn.sigmoid(head).astype(image.dtype)
        return mask * head + (1.0 - mask) * image[..., : self.out_channels]

    def decoder_margin(self) -> int:
        """Full-resolution pixels next to a window edge that the hole-local decoder gets wrong.

        The decoder at level l (resolution 2^-l) has one 3x3 conv: zero padding at a window edge
        spoils 1 pixel there, and each finer level doubles what it inherits and adds 1, so
        c_l = 2 c_{l+1} + 1 with c_{depth-1} = 1, i.e. c_0 = 2^depth - 1 (255 for depth 8).
        """
        return 2 ** len(self.en_ksize) - 1


def _crop(x: jax.Array, window, stride: int) -> jax.Array:
    """The part of [B, h, w, C] feature map ``x`` under a full-resolution window; ``stride`` is the
    map's down-sampling factor (the window is aligned to every level's grid)."""
    top, left, height, width = window
    return lax.dynamic_slice(
        x,
        (0, top // stride, left // stride, 0),
        (x.shape[0], height // stride, width // stride, x.shape[3]),
    )
