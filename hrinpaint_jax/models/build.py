"""The config -> model mapping (scenic's ``build_flax_model``): every network a stage trains, built
from the architecture fields of a training config (``config.dfnet``, ``config.shift_refine``,
``config.zoom``), and the packing of Zoom-to-Inpaint's discriminator inside the model's variables.

``model_kwargs`` is what a weights directory records (``checkpoints.save_pretrained``); ``build_model``
adds the options that do not change the weights (contextual-attention implementation, BatchNorm
axis, computation dtype).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from hrinpaint_jax.models.dfnet import DFNet
from hrinpaint_jax.models.shift_refine import ShiftRefineUNet
from hrinpaint_jax.models.zoom import CoarseNet, RefineNet, SuperResolutionNet, ZoomToInpaint

DISCRIMINATOR = "discriminator"  # ZoomToInpaint's submodule (and variable subtree) name

_NETWORKS: dict[str, type[nn.Module]] = {
    "dfnet": DFNet,
    "shift_refine": ShiftRefineUNet,
    "zoom": ZoomToInpaint,
    "coarse": CoarseNet,
    "refine": RefineNet,
    "sr": SuperResolutionNet,
}


def model_kwargs(name: str, config) -> dict[str, Any]:
    """Architecture (constructor fields that shape the weights) of network ``name`` from ``config``.

    ``name``: a registered model ('dfnet', 'shift_refine', 'zoom') or a Zoom-to-Inpaint sub-network
    trained on its own ('coarse', 'refine', 'sr')."""
    if name == "dfnet":
        d = config.dfnet
        return {
            "en_ksize": tuple(d.en_ksize),
            "de_ksize": tuple(d.de_ksize),
            "blend_layers": tuple(d.blend_layers),
            "base_features": d.base_features,
            "max_features": d.max_features,
        }
    if name == "shift_refine":
        r = config.shift_refine
        return {
            "en_ksize": tuple(r.en_ksize),
            "base_features": r.base_features,
            "max_features": r.max_features,
        }
    z = config.zoom
    if name == "zoom":
        return {
            "width": z.width,
            "sr_scale": z.sr_scale,
            "sr_features": z.sr_features,
            "sr_blocks": z.sr_blocks,
            "disc_features": tuple(z.disc_features),
        }
    if name in ("coarse", "refine"):
        return {"width": z.width}
    if name == "sr":
        return {"scale": z.sr_scale, "features": z.sr_features, "num_blocks": z.sr_blocks}
    raise ValueError(f"unknown network {name!r}; known: {', '.join(_NETWORKS)}")


def build_model(name: str, config, *, bn_axis_name: str | None = None, dtype=None) -> nn.Module:
    """Network ``name`` (see ``model_kwargs``) as ``config`` describes it.

    Args:
      bn_axis_name: the ``pmap`` axis BatchNorm averages its statistics over (training); ignored by
        the SR net, which has no BatchNorm.
      dtype: computation dtype (None: float32).
    """
    kwargs = model_kwargs(name, config)
    if name in ("zoom", "refine"):
        kwargs["attention"] = config.zoom.attention
    if name != "sr":
        kwargs["bn_axis_name"] = bn_axis_name
    return _NETWORKS[name](**kwargs, dtype=dtype)


def split_discriminator(variables) -> tuple[dict, dict]:
    """(generator variables, discriminator variables) of a ``ZoomToInpaint`` variables tree.

    The discriminator's are ``{'params': ..., 'spectral': ...}`` taken out of the
    ``'discriminator'`` subtrees (empty when the tree has no discriminator); the generator's are the
    rest, without the 'spectral' collection (only the discriminator has one)."""
    variables = dict(variables)
    params = dict(variables.pop("params"))
    spectral = dict(variables.pop("spectral", {}))
    generator = {"params": params, **variables}
    if DISCRIMINATOR not in params:
        return generator, {}
    return generator, {"params": params.pop(DISCRIMINATOR), "spectral": spectral.pop(DISCRIMINATOR, {})}


def merge_discriminator(generator, discriminator) -> dict:
    """The inverse of ``split_discriminator``: one ``ZoomToInpaint`` variables tree."""
    generator = dict(generator)
    params = {**generator.pop("params"), DISCRIMINATOR: discriminator["params"]}
    return {"params": params, **generator, "spectral": {DISCRIMINATOR: discriminator["spectral"]}}
