"""The methods under evaluation and where they run.

``METHODS``: the two-stage pipeline, ``dfnet_only`` (its stage 1 upscaled and pasted into the hole:
the seed-000 paper's main baseline, ``TwoStageInpainter.stage1``), Zoom-to-Inpaint and its ablation
variants, and OpenCV's classical ``cv2.inpaint`` (Telea, Navier-Stokes). ``run_at='native'`` runs
every method at the evaluation resolution; ``'training_size'`` runs a learnt method at the size it
was trained for (ZTI: 256, DFNet: 512) with the image resized there and its output resized back and
pasted into the hole (``pipelines.zoom.resize_run_paste``, as the ZTI paper did for HiFill;
REFERENCE.md 10.1).

Zoom-to-Inpaint ablation variants (ZTI Table 3; REFERENCE.md 10.2) are *inference-time* variants
of one checkpoint, ``ZoomToInpaint(zoom=...)``: ``zoom`` = coarse -> SR x2 -> refine ->
bicubic-antialias down (the full model); ``zoom_bicubic`` = the SR net replaced by TF bicubic x2;
``zoom_no_zoom`` = no zoom, refinement at the low resolution and no downscale. The paper retrained
each variant; with one checkpoint the variants show what the zoom stage contributes to *that*
model, not the paper's numbers.

Methods that run batched networks (``Method.batched``: Zoom-to-Inpaint) take their batch split over
this process's devices (``Devices``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrinpaint_jax.image_io import InputError
from hrinpaint_jax.ops.pixels import from_uint8, to_uint8
from hrinpaint_jax.parallel import device_sharding

# Zoom-to-Inpaint ablation variants: the model's zoom stage (``ZoomToInpaint.zoom``).
ZOOM_VARIANTS = {"zoom": "sr", "zoom_bicubic": "bicubic", "zoom_no_zoom": "none"}
METHODS = (
    "two_stage",
    "dfnet_only",
    "zoom",
    "zoom_bicubic",
    "zoom_no_zoom",
    "opencv_telea",
    "opencv_ns",
)
_WEIGHTS_OF = {"two_stage": "two_stage", "dfnet_only": "two_stage"} | {k: "zoom" for k in ZOOM_VARIANTS}


class Devices:
    """Where batched computations run: a batch's leading axis split over ``devices`` (this
    process's local devices by default; ``parallel.device_sharding``), parameters replicated.
    Each process computes on its own devices only, so no step needs the other processes."""

    def __init__(self, devices: Sequence | None = None):
        self.batch = device_sharding(devices)
        self.replicated = jax.sharding.NamedSharding(self.batch.mesh, jax.sharding.PartitionSpec())
        self.count = self.batch.mesh.devices.size

    def shard(self, x):
        """``x`` with its leading axis split over the devices (it must divide evenly)."""
        return jax.device_put(x, self.batch)

    def replicate(self, tree):
        return jax.device_put(tree, self.replicated)


class Method(abc.ABC):
    """A method under evaluation. ``run`` maps [B, S, S, 3] float images in [0, 1] and [B, S, S, 1]
    holes (1 = hole) to [B, S, S, 3] float outputs with the known pixels kept.

    Attributes:
      name: registry name.
      training_size: the square side the method was trained at (None: any size).
      batched: True if ``run`` handles a batch in one compiled call, split over the devices (the
        runner then pads the last batch to full size so that it does not compile again).
    """

    name: str = ""
    training_size: int | None = None
    batched: bool = False

    @abc.abstractmethod
    def run(self, images: np.ndarray, holes: np.ndarray) -> np.ndarray:
        """[B, S, S, 3] float images, [B, S, S, 1] holes -> [B, S, S, 3] float outputs."""


def _per_image(fill, images, holes) -> np.ndarray:
    """A uint8 pipeline ``fill(image_u8, hole_bool) -> uint8`` over a float batch."""
    images, holes = np.asarray(images), np.asarray(holes)
    out = [
        from_uint8(fill(to_uint8(image), hole[..., 0] > 0.5))
        for image, hole in zip(images, holes, strict=True)
    ]
    return np.stack(out)


class OpenCVMethod(Method):
    """``cv2.inpaint`` (Telea's fast marching, or Navier-Stokes) on uint8, radius ``radius``."""

    def __init__(self, name: str, flag: int, radius: float):
        self.name, self.flag, self.radius = name, flag, radius

    def run(self, images, holes):
        import cv2

        def fill(image, hole):
            return cv2.inpaint(image, hole.astype(np.uint8) * 255, self.radius, self.flag)

        return _per_image(fill, images, holes)


class TwoStageMethod(Method):
    """The whole two-stage pipeline (``TwoStageInpainter``), one image at a time (uint8 in/out)."""

    name = "two_stage"
    training_size = 512  # DFNet's training size; the refinement works at any size

    def __init__(self, inpainter):
        self.inpainter = inpainter

    def run(self, images, holes):
        return _per_image(self.inpainter, images, holes)


class DFNetOnlyMethod(TwoStageMethod):
    """``TwoStageInpainter.stage1``: DFNet at 512, upscaled, pasted into the hole."""

    name = "dfnet_only"

    def run(self, images, holes):
        return _per_image(self.inpainter.stage1, images, holes)


class ZoomMethod(Method):
    """Zoom-to-Inpaint (or an ablation variant: ``ZoomInpainter.with_zoom``) on float batches at the
    given size (``ZoomInpainter.fill``: padded by edge replication to the networks' multiple).
    Outputs are the unquantised ``final`` the paper's metrics use."""

    batched = True

    def __init__(self, name: str, inpainter, training_size: int, devices: Devices):
        self.name, self.training_size, self.devices = name, training_size, devices
        self.inpainter = inpainter.with_zoom(ZOOM_VARIANTS[name])

    @property
    def model(self):
        return self.inpainter.model

    @property
    def variables(self):
        return self.inpainter.variables

    def run(self, images, holes):
        images, holes = jnp.asarray(images, jnp.float32), jnp.asarray(holes, jnp.float32)
        if len(images) % self.devices.count == 0:
            images, holes = self.devices.shard(images), self.devices.shard(holes)
        return np.asarray(self.inpainter.fill(images, holes))


def check_methods(names: Sequence[str]) -> None:
    if not names:
        raise InputError("no methods configured (config.methods)")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise InputError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise InputError(f"config.methods lists a method twice: {', '.join(names)}")


def resolve_method_weights(config) -> dict[str, Path]:
    """The weights folder of every learnt method (``config.weights`` or $HRINPAINT_WEIGHTS; it
    must hold ``dfnet/`` and ``shift_refine/`` for the two-stage methods, ``zoom/`` for zoom)."""
    from hrinpaint_jax.pipelines.load import resolve_weights

    kinds = {_WEIGHTS_OF[m] for m in config.methods if m in _WEIGHTS_OF}
    return {kind: resolve_weights(config.weights or None, kind) for kind in sorted(kinds)}


def _load_inpainter(config, kind: str, weights: Path, devices: Devices):
    from hrinpaint_jax.pipelines.load import load_inpainter
    from hrinpaint_jax.pipelines.zoom import ZoomInpainter

    dtype = config.get("dtype", "float32")
    if kind == "zoom":
        zoom = load_inpainter(str(weights), method="zoom", dtype=dtype)
        # Replicated once on the devices the batches are split over (not copied at every call).
        return ZoomInpainter(zoom.model, devices.replicate(zoom.variables), work_size=zoom.work_size)
    hole_local = {"auto": None, "on": True, "off": False}[config.two_stage.hole_local]
    faithful = config.two_stage.faithful
    return load_inpainter(str(weights), faithful=faithful, hole_local=hole_local, dtype=dtype)


def build_methods(config, devices: Devices | None = None) -> list[Method]:
    """Loads every configured method (networks once per weights folder)."""
    import cv2

    devices = devices or Devices()
    weights = resolve_method_weights(config)
    loaded: dict[str, Any] = {}
    for kind in weights:
        loaded[kind] = _load_inpainter(config, kind, weights[kind], devices)
    methods: list[Method] = []
    for name in config.methods:
        if name == "two_stage":
            methods.append(TwoStageMethod(loaded["two_stage"]))
        elif name == "dfnet_only":
            methods.append(DFNetOnlyMethod(loaded["two_stage"]))
        elif name in ZOOM_VARIANTS:
            methods.append(ZoomMethod(name, loaded["zoom"], config.zoom.test_size, devices))
        elif name == "opencv_telea":
            methods.append(OpenCVMethod(name, cv2.INPAINT_TELEA, config.opencv.radius))
        else:
            methods.append(OpenCVMethod(name, cv2.INPAINT_NS, config.opencv.radius))
    return methods


def run_at_text(config) -> str:
    text = config.run_at.replace("_", " ")
    zoom = config.zoom.get("run_at", "")
    if zoom and zoom != config.run_at and any(m in ZOOM_VARIANTS for m in config.methods):
        text += f" (Zoom-to-Inpaint: {zoom.replace('_', ' ')}, {config.zoom.test_size} px)"
    return text


def method_run_at(config, name: str) -> str:
    """Where ``name`` runs: ``config.run_at``, or ``config.zoom.run_at`` for the zoom variants."""
    if name in ZOOM_VARIANTS and config.zoom.get("run_at", ""):
        return config.zoom.run_at
    return config.run_at


def run_method(method: Method, images: np.ndarray, holes: np.ndarray, run_at: str) -> np.ndarray:
    """``method.run`` at the evaluation size, or at its training size (resized there and back, the
    output pasted into the hole; known pixels stay exact). Returns float [B, S, S, 3]."""
    from hrinpaint_jax.pipelines.zoom import resize_run_paste

    size = images.shape[1]
    train = method.training_size
    if run_at == "native" or train is None or train == size:
        return method.run(images, holes)

    def run(small, small_holes):
        return method.run(np.asarray(small), np.asarray(small_holes))

    return np.asarray(resize_run_paste(run, images, holes, (train, train)))
