"""Shared Flax building blocks of the ported networks.

* ``SameConv``: the references' ``Conv2dSame`` (REFERENCE.md section 2.2).
* ``TorchBatchNorm``: ``torch.nn.BatchNorm2d`` semantics (section 2.7), optionally synchronised over a
  ``pmap`` axis like ``SyncBatchNorm``.
* ``EncoderBlock`` / ``DecoderBlock``: the U-Net stages shared by DFNet and the shift refinement U-Net
  (sections 2.3, 2.4, 3.2).

Everything is NHWC. Submodule names follow the PyTorch module names closely so that the weight
converter is a table (see ``convert_weights/``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from hrinpaint_jax.ops.resize import upsample_nearest_2x

Dtype = Any
Precision = Any

# LeakyReLU slope used everywhere in both PyTorch references (Flax's default is 0.01).
LEAKY_SLOPE = 0.2


def same_padding(kernel_size: int, stride: int) -> tuple[int, int]:
    """(before, after) zero padding of the references' ``Conv2dSame`` along one axis.

    The total padding is ``k - s``; when it is odd the extra pixel goes **after** (bottom/right), so a
    stride-2 7x7 conv pads (2, 3), 5x5 pads (1, 2), 3x3 pads (0, 1); a stride-1 3x3 pads (1, 1). This
    equals XLA's 'SAME' only for even input sizes, hence the explicit padding.
    """
    total = kernel_size - stride
    before = total // 2
    return before, total - before


class SameConv(nn.Module):
    """Conv with bias and the references' "same" padding rule (``Conv2dSame``).

    Attributes:
      features: output channels.
      kernel_size: square kernel size k.
      stride: stride s (1 or 2 in the references).
    """

    features: int
    kernel_size: int
    stride: int = 1
    dtype: Dtype | None = None
    precision: Precision = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = same_padding(self.kernel_size, self.stride)
        return nn.Conv(
            self.features,
            (self.kernel_size, self.kernel_size),
            strides=(self.stride, self.stride),
            padding=(pad, pad),
            dtype=self.dtype,
            precision=self.precision,
            name="conv",
        )(x)


class TorchBatchNorm(nn.Module):
    """BatchNorm over N, H, W with PyTorch ``BatchNorm2d`` semantics.

    * ``use_running_average=True`` (``eval()``): normalise with the stored running statistics.
    * otherwise (``train()``): normalise with the biased batch variance and update
      ``running = (1 - momentum) * running + momentum * batch`` using the **unbiased** batch variance,
      as torch does (Flax's ``nn.BatchNorm`` stores the biased one, which differs noticeably at the
      2x2 bottleneck, where a batch of 1 has only 4 values per channel).
    * ``axis_name``: statistics are averaged over that ``pmap`` axis (``SyncBatchNorm``).

    ``momentum`` is in torch's convention (0.1 = 10 % new batch). Parameters are ``scale``/``bias`` and
    the running statistics ``mean``/``var`` in the ``batch_stats`` collection, the names Flax uses.
    Statistics are computed in float32 whatever ``dtype`` is.
    """

    use_running_average: bool = True
    momentum: float = 0.1
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)

        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            x32 = x.astype(jnp.float32)
            axes = tuple(range(x.ndim - 1))
            count = x32.size // features
            mean = jnp.mean(x32, axis=axes)
            if self.axis_name is not None:
                mean = lax.pmean(mean, self.axis_name)
                count = count * lax.psum(1, self.axis_name)
            # Two-pass variance around the global mean (more stable than E[x^2] - E[x]^2).
            var = jnp.mean(jnp.square(x32 - mean), axis=axes)
            if self.axis_name is not None:
                var = lax.pmean(var, self.axis_name)
            if not self.is_initializing():
                unbiased = var * (count / max(count - 1, 1))
                ra_mean.value = (1.0 - self.momentum) * ra_mean.value + self.momentum * mean
                ra_var.value = (1.0 - self.momentum) * ra_var.value + self.momentum * unbiased

        mul = scale * lax.rsqrt(var + self.epsilon)
        add = bias - mean * mul
        dtype = self.dtype or x.dtype
        return x * mul.astype(dtype) + add.astype(dtype)


class EncoderBlock(nn.Module):
    """Stride-2 ``SameConv`` -> BatchNorm -> ReLU (or the bare conv for the first encoder).

    Submodules: ``conv`` (torch ``encode.0.conv.1``) and ``bn`` (torch ``encode.1``).
    """

    features: int
    kernel_size: int
    use_norm_act: bool = True
    bn_axis_name: str | None = None
    dtype: Dtype | None = None
    precision: Precision = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = SameConv(
            self.features,
            self.kernel_size,
            stride=2,
            dtype=self.dtype,
            precision=self.precision,
            name="conv",
        )(x)
        if not self.use_norm_act:
            return x
        x = TorchBatchNorm(
            use_running_average=not train, axis_name=self.bn_axis_name, dtype=self.dtype, name="bn"
        )(x)
        return nn.relu(x)


class DecoderBlock(nn.Module):
    """Nearest x2 up-sampling -> concat [upsampled, skip] -> 3x3 conv -> BatchNorm -> LeakyReLU(0.2).

    Submodules: ``conv`` (torch ``decode.0.conv``) and ``bn`` (torch ``decode.1``).
    """

    features: int
    kernel_size: int = 3
    bn_axis_name: str | None = None
    dtype: Dtype | None = None
    precision: Precision = None

    @nn.compact
    def __call__(self, x: jax.Array, skip: jax.Array, *, train: bool) -> jax.Array:
        x = upsample_nearest_2x(x).astype(skip.dtype)
        # Concat order matters: the conv kernel's input channels are [upsampled, skip].
        x = jnp.concatenate([x, skip], axis=-1)
        x = SameConv(
            self.features,
            self.kernel_size,
            stride=1,
            dtype=self.dtype,
            precision=self.precision,
            name="conv",
        )(x)
        x = TorchBatchNorm(
            use_running_average=not train, axis_name=self.bn_axis_name, dtype=self.dtype, name="bn"
        )(x)
        return nn.leaky_relu(x, LEAKY_SLOPE)


def encoder_widths(first: int, maximum: int, depth: int) -> list[int]:
    """Encoder output channels: ``first``, then doubling, capped at ``maximum``.

    DFNet: (4 ->) 64, 128, 256, 512, 512, 512, 512, 512; refinement U-Net: (20 ->) 96, 192, 384, 512, ...
    """
    widths = [first]
    for _ in range(depth - 1):
        widths.append(min(2 * widths[-1], maximum))
    return widths


def unet_encode(
    x: jax.Array,
    *,
    network: str,
    en_ksize,
    base_features: int,
    max_features: int,
    name_of,
    train: bool,
    **block_kwargs,
) -> list[jax.Array]:
    """The stride-2 encoder shared by DFNet and the refinement U-Net.

    Call from inside a module's ``@nn.compact`` method: the ``EncoderBlock``s become its children,
    named ``name_of(i)`` for i = 0..depth-1. The first encoder has no BatchNorm and no activation.

    Args:
      x: [B, H, W, C] network input; H and W must be multiples of 2^depth.
      network: name used in the size error.
    Returns:
      skips: ``[x, en_0 out, ..., en_{depth-1} out]``, i.e. ``skips[i]`` is encoder i's input.
    """
    factor = 2 ** len(en_ksize)
    if x.shape[1] % factor or x.shape[2] % factor:
        raise ValueError(
            f"{network} needs H and W to be multiples of {factor}, got {x.shape[1]}x{x.shape[2]}"
        )
    skips = [x]
    widths = encoder_widths(base_features, max_features, len(en_ksize))
    for i, (width, k) in enumerate(zip(widths, en_ksize, strict=True)):
        block = EncoderBlock(width, k, use_norm_act=i > 0, name=name_of(i), **block_kwargs)
        skips.append(block(skips[-1], train=train))
    return skips
