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

# Computation dtypes by name (configs, command lines) -> the models' ``dtype`` field. float32 is None:
# the models then compute in their inputs' and parameters' float32, exactly as without the field.
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str, what: str = "dtype"):
    """The models' ``dtype`` for a computation dtype name ('float32' -> None, 'bfloat16');
    ValueError naming ``what`` (e.g. 'config.dtype') otherwise. Parameters stay float32 either way."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"{what} must be one of {', '.join(COMPUTE_DTYPES)}, got {name!r}")
    return COMPUTE_DTYPES[name]


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


def batch_moments(x: jax.Array, axis_name: str | None) -> tuple[jax.Array, jax.Array, Any]:
    """Per-channel mean and **biased** variance of ``x`` over all axes but the last, in float32,
    averaged over the ``pmap`` axis ``axis_name`` when given (synchronised BatchNorm).

    Two-pass variance around the global mean (more stable than E[x^2] - E[x]^2, same value).
    Returns (mean, var, count) with ``count`` the number of values per channel over all devices.
    """
    x32 = x.astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    count = x32.size // x.shape[-1]
    mean = jnp.mean(x32, axis=axes)
    if axis_name is not None:
        mean = lax.pmean(mean, axis_name)
        count = count * lax.psum(1, axis_name)
    var = jnp.mean(jnp.square(x32 - mean), axis=axes)
    if axis_name is not None:
        var = lax.pmean(var, axis_name)
    return mean, var, count


def batch_normalize(x, scale, bias, mean, var, epsilon: float, dtype) -> jax.Array:
    """``x * (scale * rsqrt(var + eps)) + (bias - mean * scale * rsqrt(var + eps))`` in ``dtype``
    (the operation order of both references' inference BatchNorm)."""
    mul = scale * lax.rsqrt(var + epsilon)
    add = bias - mean * mul
    dtype = dtype or x.dtype
    return x * mul.astype(dtype) + add.astype(dtype)


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
            mean, var, count = batch_moments(x, self.axis_name)
            if not self.is_initializing():
                unbiased = var * (count / max(count - 1, 1))
                ra_mean.value = (1.0 - self.momentum) * ra_mean.value + self.momentum * mean
                ra_var.value = (1.0 - self.momentum) * ra_var.value + self.momentum * unbiased

        return batch_normalize(x, scale, bias, mean, var, self.epsilon, self.dtype)


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


# --------------------------------------------------------------------------------------------------
# Zoom-to-Inpaint (TF2 / Keras) building blocks: REFERENCE.md sections 5.1, 5.2, 5.7.


class KerasBatchNorm(nn.Module):
    """BatchNorm with Keras ``(Sync)BatchNormalization`` defaults (REFERENCE.md section 5.2).

    * eps 1e-3, ``momentum`` 0.99 in Keras' convention: ``moving -= (moving - batch) * (1 - momentum)``,
      updated with the **biased** batch variance (unlike ``TorchBatchNorm``).
    * ``axis_name``: statistics over the global batch across a ``pmap`` axis (SyncBatchNormalization).
    * Inference computes ``x * (gamma * rsqrt(var + eps)) + (beta - mean * gamma * rsqrt(var + eps))``,
      the exact operation order of the (never fused) Keras layer.

    Parameters ``scale`` (gamma) / ``bias`` (beta); statistics ``mean`` / ``var`` in ``batch_stats``.
    """

    use_running_average: bool = True
    momentum: float = 0.99
    epsilon: float = 1e-3
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
            # Keras' SyncBatchNormalization uses E[x^2] - E[x]^2: same value as the two-pass one.
            mean, var, _ = batch_moments(x, self.axis_name)
            if not self.is_initializing():
                decay = 1.0 - self.momentum
                ra_mean.value = ra_mean.value - (ra_mean.value - lax.stop_gradient(mean)) * decay
                ra_var.value = ra_var.value - (ra_var.value - lax.stop_gradient(var)) * decay

        return batch_normalize(x, scale, bias, mean, var, self.epsilon, self.dtype)


class GatedConv(nn.Module):
    """Gated convolution ``GC(channels, k, dilation)`` of Zoom-to-Inpaint (REFERENCE.md section 5.1).

    One stride-1 'same' conv with ``features`` output channels (submodule ``conv``); its first half is
    the feature branch (ELU), its second half the gate (sigmoid), so the output has ``features // 2``
    channels. ``features == 3`` is the reference's special case for the output heads: the plain linear
    conv is returned.

    Attributes:
      features: conv output channels (twice the gated output width).
      kernel_size: square kernel size (3 everywhere in the reference).
      dilation: dilation rate; padding ``dilation * (k - 1) / 2`` on every side (Keras 'same').
    """

    features: int
    kernel_size: int = 3
    dilation: int = 1
    dtype: Dtype | None = None
    precision: Precision = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = self.dilation * (self.kernel_size - 1) // 2
        y = nn.Conv(
            self.features,
            (self.kernel_size, self.kernel_size),
            kernel_dilation=(self.dilation, self.dilation),
            padding=((pad, pad), (pad, pad)),
            kernel_init=nn.initializers.glorot_uniform(),  # Keras Conv2D default
            dtype=self.dtype,
            precision=self.precision,
            name="conv",
        )(x)
        if self.features == 3:
            return y
        if self.features % 2:
            raise ValueError(f"a gated conv needs an even channel count, got {self.features}")
        feature, gate = jnp.split(y, 2, axis=-1)
        return nn.elu(feature) * nn.sigmoid(gate)


def l2_normalize_tf(z: jax.Array) -> jax.Array:
    """``z / sqrt(max(sum(z^2), 1e-12))`` over all elements (``tf.math.l2_normalize``)."""
    return z * lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(z)), 1e-12))


class SpectralNormConv(nn.Module):
    """Conv2D wrapped in the Zoom-to-Inpaint spectral normalisation (REFERENCE.md section 5.7).

    Variables: ``params/kernel`` (kh, kw, I, O) and ``params/bias`` (O,); the power-iteration vectors
    ``spectral/u`` (1, O) and ``spectral/v`` (1, kh*kw*I), initialised truncated-normal, std 0.02.

    Every call, in training and in inference alike, runs one power iteration on
    ``Wm = reshape(kernel, (kh*kw*I, O))``: ``v = l2n(u Wm^T)``, ``u = l2n(v Wm)``, ``sigma = v Wm u^T``,
    and convolves with ``kernel / sigma``.

    QUIRK (reproduced on purpose): the reference then *stores* ``kernel / sigma`` back into the kernel
    variable (its "restore the original kernel" step is a no-op), so the stored weights are divided by
    the current estimate of sigma at every call, and no gradient flows through sigma. Here:

    * the new ``u``, ``v`` are written when the ``spectral`` collection is mutable;
    * the normalised kernel is written back when ``params`` is mutable
      (``apply(..., mutable=['params', 'spectral'])``), which is how a faithful training step or the
      fixture's two successive discriminator calls are reproduced;
    * the kernel used by the conv is ``kernel + stop_gradient(kernel / sigma - kernel)``: the value of
      ``kernel / sigma`` but the identity Jacobian, because the reference differentiates with respect
      to the (already overwritten) variable that the conv reads.

    Padding is TF 'SAME' (for stride 2 and even sizes: 1 before, 2 after for k = 5 = Flax 'SAME').
    """

    features: int
    kernel_size: int = 5
    stride: int = 2
    dtype: Dtype | None = None
    precision: Precision = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, in_features = self.kernel_size, x.shape[-1]
        shape = (k, k, in_features, self.features)
        kernel_var = self.variable(
            "params",
            "kernel",
            lambda: nn.initializers.glorot_uniform()(self.make_rng("params"), shape, jnp.float32),
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        sn_init = nn.initializers.truncated_normal(stddev=0.02)
        u_var = self.variable(
            "spectral", "u", lambda: sn_init(self.make_rng("params"), (1, self.features), jnp.float32)
        )
        v_var = self.variable(
            "spectral",
            "v",
            lambda: sn_init(self.make_rng("params"), (1, k * k * in_features), jnp.float32),
        )

        kernel = kernel_var.value
        w_mat = lax.stop_gradient(kernel).reshape(-1, self.features)
        v = l2_normalize_tf(lax.stop_gradient(u_var.value) @ w_mat.T)
        u = l2_normalize_tf(v @ w_mat)
        sigma = (v @ w_mat @ u.T)[0, 0]
        normalised = kernel + lax.stop_gradient(kernel / sigma - kernel)
        if not self.is_initializing():
            if self.is_mutable_collection("spectral"):
                u_var.value, v_var.value = u, v
            if self.is_mutable_collection("params"):
                kernel_var.value = normalised
            self.sow("intermediates", "sigma", sigma)

        dtype = self.dtype or x.dtype
        y = lax.conv_general_dilated(
            x.astype(dtype),
            normalised.astype(dtype),
            window_strides=(self.stride, self.stride),
            padding="SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision,
        )
        return y + bias.astype(dtype)
