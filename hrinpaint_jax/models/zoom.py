"""Zoom-to-Inpaint generators (Kim et al.): coarse net, super-resolution net, refinement net.

REFERENCE.md sections 5.1-5.5 (google/zoom-to-inpaint ``net.py``, ``utils_net.py``) and section 6 for
the contextual attention of the refinement net. NHWC, images in [0, 1], masks 1 = hole. Outputs are
unbounded (linear heads, residual adds), as in the reference; only the test pipeline clips.

``ZoomToInpaint`` bundles the three generators and the PatchGAN discriminator under the names of the
reference's checkpoint objects (``model`` -> ``coarse``, ``model_sr`` -> ``sr``, ``model_refine`` ->
``refine``, ``model_d`` -> ``discriminator``), so one weights directory holds the whole framework.

Layer names: a gated level is ``{level}_{i}`` (``enc1``, ``enc2``, ``bottleneck``, ``dec2``, ``dec1``),
each a ``GatedBlock`` with children ``gc`` (the gated conv) and ``bn``; the head is ``head``. The
Keras order these correspond to is written out in ``convert_weights/zoom.py``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrinpaint_jax.layers import GatedConv, KerasBatchNorm
from hrinpaint_jax.models.patch_gan import PatchGANDiscriminator
from hrinpaint_jax.ops.contextual_attention import contextual_attention
from hrinpaint_jax.ops.pixel_shuffle import depth_to_space
from hrinpaint_jax.ops.resize import resize_bicubic_tf, resize_nearest_tf

Dtype = Any

# (level name, number of gated convs, gated output width as a multiple of ``width``, dilations)
ENCODER_LEVELS = (("enc1", 3, 1, None), ("enc2", 3, 2, None), ("bottleneck", 3, 4, (2, 4, 8)))
DECODER_LEVELS = (("dec2", 4, 2), ("dec1", 4, 1))
# What enlarges the coarse result in ``ZoomToInpaint`` (see its ``zoom`` attribute).
ZOOM_OPTIONS = ("sr", "bicubic", "none")


class GatedBlock(nn.Module):
    """``BN(GC(x))``: a gated conv with ``2 * features`` conv channels, then Keras BatchNorm."""

    features: int
    dilation: int = 1
    bn_axis_name: str | None = None
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = GatedConv(2 * self.features, dilation=self.dilation, dtype=self.dtype, name="gc")(x)
        return KerasBatchNorm(
            use_running_average=not train, axis_name=self.bn_axis_name, dtype=self.dtype, name="bn"
        )(x)


def gated_level(x, name, count, features, dilations, train, **kwargs):
    """A residual level (section 5.2): ``x = B0(x); r = x; x = B_{count-1}(...B1(x)); x + r``.

    The first block changes the width and sits outside the residual; no activation after the add.
    Call from inside a module's compact method (the blocks become its children, ``{name}_{i}``).
    """
    dilations = dilations or (1,) * count
    x = GatedBlock(features, dilations[0], name=f"{name}_0", **kwargs)(x, train=train)
    residual = x
    for i in range(1, count):
        block = GatedBlock(features, dilations[i], name=f"{name}_{i}", **kwargs)
        x = block(x, train=train)
    return x + residual


def max_pool_2x2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


def upsample_2x(x: jax.Array) -> jax.Array:
    """Keras ``UpSampling2D`` x2 (nearest = replication)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class _GatedUNet(nn.Module):
    """Shared trunk of the coarse and refinement nets (no encoder-decoder skips)."""

    width: int = 32
    bn_axis_name: str | None = None
    dtype: Dtype | None = None

    def _kwargs(self):
        return {"bn_axis_name": self.bn_axis_name, "dtype": self.dtype}

    def _check(self, x, multiple, network):
        if x.ndim != 4 or x.shape[-1] != 4:
            raise ValueError(f"{network} expects [B, H, W, 4] (image, mask), got {x.shape}")
        if x.shape[1] % multiple or x.shape[2] % multiple:
            raise ValueError(
                f"{network} needs H and W to be multiples of {multiple}, got {x.shape[1]}x{x.shape[2]}"
            )

    def encode(self, x, train):
        for i, (name, count, mult, dilations) in enumerate(ENCODER_LEVELS):
            if i:
                x = max_pool_2x2(x)
            x = gated_level(x, name, count, mult * self.width, dilations, train, **self._kwargs())
        return x

    def decode(self, x, train):
        for name, count, mult in DECODER_LEVELS:
            x = upsample_2x(x)
            x = gated_level(x, name, count, mult * self.width, None, train, **self._kwargs())
        # The output head is the reference's "gated conv with 3 channels": a plain linear conv.
        return GatedConv(3, dtype=self.dtype, name="head")(x)


class CoarseNet(_GatedUNet):
    """Coarse inpainting network (section 5.3).

    Args (``__call__``):
      x: [B, H, W, 4] = [masked image (3) = image * (1 - mask), mask (1)], H, W multiples of 4.
    Returns:
      [B, H, W, 3]: the head output inside the hole, the masked input elsewhere.
    """

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        self._check(x, 4, "the coarse net")
        image, mask = x[..., :3], x[..., 3:]
        y = self.decode(self.encode(x, train), train)
        return y * mask + image * (1.0 - mask)


class RefineNet(_GatedUNet):
    """Refinement network with contextual attention (section 5.4; attention in section 6).

    Attributes:
      attention: 'efficient' (default; memory linear in the number of positions) or 'dense' (the
        reference's literal N x N formulation).
      attention_rate: the attention grid is the bottleneck downscaled by this factor (2).
      attention_kwargs: extra keyword arguments for ``contextual_attention`` (block sizes).

    Args (``__call__``):
      x: [B, H, W, 4] = [image (3), mask (1)], H and W multiples of 4 * attention_rate. The reference
        only accepts square inputs; this port accepts any such H x W (see ``contextual_attention``).
    Returns:
      [B, H, W, 3] = head + input image (a residual over the whole image, no mask blending).
    """

    attention: str = "efficient"
    attention_rate: int = 2
    attention_kwargs: tuple[tuple[str, Any], ...] = ()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        self._check(x, 4 * self.attention_rate, "the refinement net")
        image, mask = x[..., :3], x[..., 3:]
        h = self.encode(x, train)
        kw = self._kwargs()
        # Contextual-attention module (section 6.1): the mask at bottleneck resolution by TF half-pixel
        # nearest (512 -> 128 picks pixel 4i + 2), f = BN(GC(x)), attention, then BN(GC(g)).
        mask_b = resize_nearest_tf(mask, h.shape[1:3])
        f = GatedBlock(h.shape[-1], name="ca_in", **kw)(h, train=train)
        g = contextual_attention(
            f,
            mask_b,
            rate=self.attention_rate,
            implementation=self.attention,
            **dict(self.attention_kwargs),
        )
        attended = GatedBlock(h.shape[-1], name="ca_out", **kw)(g, train=train)
        h = jnp.concatenate([h, attended], axis=-1)  # order matters: [bottleneck, attention]
        h = GatedBlock(h.shape[-1] // 2, name="merge", **kw)(h, train=train)
        return self.decode(h, train) + image


class SuperResolutionNet(nn.Module):
    """Super-resolution network (section 5.5), x``scale``.

    conv0 (3 -> 64, ReLU), ``num_blocks`` residual blocks ``x + ReLU(conv(ReLU(conv(x))))``, expand conv
    (64 -> 64 * scale^2, ReLU), TF ``depth_to_space(scale)``, last conv (64 -> 3, linear), plus the TF
    bicubic (no antialias) upscale of the input. The reference builds x2; other integer scales use one
    pixel shuffle of block ``scale``.

    Args (``__call__``):
      x: [B, H, W, 3].
    Returns:
      [B, scale*H, scale*W, 3], unclipped.
    """

    scale: int = 2
    features: int = 64
    num_blocks: int = 4
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # no BatchNorm, no dropout
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"the SR net expects [B, H, W, 3], got {x.shape}")
        conv = lambda features, name: nn.Conv(  # noqa: E731
            features,
            (3, 3),
            padding="SAME",
            kernel_init=nn.initializers.variance_scaling(1.0, "fan_avg", "truncated_normal"),
            dtype=self.dtype,
            name=name,
        )
        y = nn.relu(conv(self.features, "conv0")(x))
        for i in range(self.num_blocks):
            r = nn.relu(conv(self.features, f"res{i}_a")(y))
            y = y + nn.relu(conv(self.features, f"res{i}_b")(r))
        y = nn.relu(conv(self.features * self.scale**2, "expand")(y))
        y = depth_to_space(y, self.scale)
        y = conv(3, "last")(y)
        b, h, w, _ = x.shape
        # The residual is added in the input's precision (float32 under bfloat16 compute): an image
        # rounded to bfloat16 would be off by up to one grey level.
        y = y.astype(jnp.result_type(y, x))
        return y + resize_bicubic_tf(x, (self.scale * h, self.scale * w)).astype(y.dtype)


class ZoomToInpaint(nn.Module):
    """The whole Zoom-to-Inpaint framework: coarse -> SR -> refinement, and the discriminator.

    ``__call__`` runs the generators as the reference's training and test code chain them (sections
    5.3-5.5, 10.1 steps 3-4) on a low-resolution image and mask; ``discriminate`` scores a
    high-resolution image. At ``init`` the discriminator is built too (unless ``with_discriminator``
    is False, for generator-only checkpoints).

    Attributes:
      width: gated output width of the first level (32 in the paper).
      sr_scale: zoom factor of the SR net (2 in the paper).
      attention: contextual-attention implementation of the refinement net.
      zoom: what enlarges the coarse result before the refinement: 'sr' (the SR net: the model as
        published), 'bicubic' (TF bicubic x``sr_scale`` instead) or 'none' (no zoom: the refinement
        runs at the input size). The last two are the paper's ablations (ZTI Table 3, REFERENCE.md
        10.2) run with one checkpoint: the parameter tree is the same for every option (the SR net's
        weights are simply not used), so any weights load into any variant.
    """

    width: int = 32
    sr_scale: int = 2
    sr_features: int = 64
    sr_blocks: int = 4
    disc_features: tuple[int, ...] = (64, 128, 256, 256, 256)
    with_discriminator: bool = True
    attention: str = "efficient"
    attention_kwargs: tuple[tuple[str, Any], ...] = ()
    bn_axis_name: str | None = None
    dtype: Dtype | None = None
    zoom: str = "sr"

    def setup(self):
        if self.zoom not in ZOOM_OPTIONS:
            raise ValueError(f"zoom must be one of {', '.join(ZOOM_OPTIONS)}, got {self.zoom!r}")
        common = {"width": self.width, "bn_axis_name": self.bn_axis_name, "dtype": self.dtype}
        self.coarse = CoarseNet(**common)
        self.sr = SuperResolutionNet(
            scale=self.sr_scale, features=self.sr_features, num_blocks=self.sr_blocks, dtype=self.dtype
        )
        self.refine = RefineNet(
            **common, attention=self.attention, attention_kwargs=self.attention_kwargs
        )
        if self.with_discriminator:
            self.discriminator = PatchGANDiscriminator(self.disc_features, dtype=self.dtype)

    def __call__(self, image: jax.Array, mask: jax.Array, *, train: bool = False) -> dict:
        """Generators on a low-resolution input.

        Args:
          image: [B, H, W, 3] in [0, 1]; H, W multiples of 4.
          mask: [B, H, W, 1], 1 = hole.
        Returns:
          dict with 'coarse' [B, H, W, 3] (already blended with the masked input), 'sr' and 'refine'
          [B, sH, sW, 3] (unbounded) and 'mask_hr' [B, sH, sW, 1] (nearest upscale of the mask).
          With ``zoom='none'``, s = 1 and 'sr' is the coarse result; with 'bicubic' it is its TF
          bicubic upscale.
        """
        coarse_in = jnp.concatenate([image * (1.0 - mask), mask], axis=-1)
        coarse = self.coarse(coarse_in, train=train)
        if self.zoom == "sr":
            sr = self.sr(coarse, train=train)
        elif self.zoom == "bicubic":
            h, w = coarse.shape[1:3]
            sr = resize_bicubic_tf(coarse, (self.sr_scale * h, self.sr_scale * w))
        else:
            sr = coarse
        mask_hr = resize_nearest_tf(mask, sr.shape[1:3])  # x2 nearest = 2x2 replication
        refine = self.refine(jnp.concatenate([sr, mask_hr.astype(sr.dtype)], axis=-1), train=train)
        if self.with_discriminator and self.is_initializing():
            self.discriminate(refine, mask_hr)
        return {"coarse": coarse, "sr": sr, "refine": refine, "mask_hr": mask_hr}

    def discriminate(self, image_hr: jax.Array, mask_hr: jax.Array) -> jax.Array:
        """PatchGAN logits [B, (sH/32)*(sW/32)*256] for ``concat[image_hr, mask_hr]`` (section 5.6)."""
        return self.discriminator(jnp.concatenate([image_hr, mask_hr.astype(image_hr.dtype)], axis=-1))
