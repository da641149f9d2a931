"""Model registry: ``get_model(name, **overrides)``; ``build_model(name, config)`` builds a network
from a training config (``models/build.py``)."""

from __future__ import annotations

import flax.linen as nn

from hrinpaint_jax.models.build import (
    build_model,
    merge_discriminator,
    model_kwargs,
    split_discriminator,
)
from hrinpaint_jax.models.dfnet import DFNet, FusionBlock
from hrinpaint_jax.models.patch_gan import PatchGANDiscriminator
from hrinpaint_jax.models.shift_refine import ShiftRefineUNet
from hrinpaint_jax.models.zoom import CoarseNet, RefineNet, SuperResolutionNet, ZoomToInpaint

MODELS: dict[str, type[nn.Module]] = {
    "dfnet": DFNet,
    "shift_refine": ShiftRefineUNet,
    "zoom": ZoomToInpaint,
}


def get_model(name: str, **kwargs) -> nn.Module:
    """Builds the registered model ``name`` with constructor overrides ``kwargs``."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    return cls(**kwargs)


def dummy_inputs(name: str, height: int = 256, width: int = 256, batch: int = 1):
    """Zero inputs of the right shapes for ``model.init`` / ``jax.eval_shape``."""
    import jax.numpy as jnp

    if name == "dfnet":
        return (jnp.zeros((batch, height, width, 3)), jnp.ones((batch, height, width, 1)))
    if name == "shift_refine":
        return (jnp.zeros((batch, height, width, 19)), jnp.zeros((batch, height, width, 1)))
    if name == "zoom":  # the low-resolution image and mask
        return (jnp.zeros((batch, height, width, 3)), jnp.zeros((batch, height, width, 1)))
    raise ValueError(f"unknown model {name!r}")


__all__ = [
    "DFNet",
    "FusionBlock",
    "ShiftRefineUNet",
    "CoarseNet",
    "SuperResolutionNet",
    "RefineNet",
    "PatchGANDiscriminator",
    "ZoomToInpaint",
    "MODELS",
    "get_model",
    "dummy_inputs",
    "build_model",
    "model_kwargs",
    "split_discriminator",
    "merge_discriminator",
]
