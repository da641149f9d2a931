"""Conversion of PyTorch and TensorFlow checkpoints into Flax variables by explicit mapping tables.

A table is a list of ``Rule(source_key, flax_path, transform)`` rows plus the source keys that are
known and deliberately dropped (``num_batches_tracked``) and patterns of keys that are ignored
(TF optimizer slots, the checkpoint's object graph). Conversion is strict: every table key must be
present, no other key may be, and every converted array must have the shape the Flax model
expects; otherwise ``ConversionError`` lists all offending keys at once.

The tables themselves live beside the entry point in ``convert_weights/`` (one per source model).
Reading ``.pth`` files needs ``torch`` (CPU), reading TF object-based checkpoints needs
``tensorflow``; both are imported lazily.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from hrinpaint_jax.checkpoints import check_output_dir, expected_shapes, load_pretrained, save_pretrained

# Conv kernels: PyTorch OIHW -> Flax HWIO.
OIHW_TO_HWIO = "oihw_to_hwio"
IDENTITY = "identity"
_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    OIHW_TO_HWIO: lambda a: np.transpose(a, (2, 3, 1, 0)),
    IDENTITY: lambda a: a,
}


class ConversionError(ValueError):
    """A checkpoint that cannot be converted; the message says exactly why."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """One row of a mapping table.

    Attributes:
      torch_key: key in the source file: a PyTorch state_dict key (without any ``module.`` prefix) or
        a TF checkpoint key without its ``/.ATTRIBUTES/VARIABLE_VALUE`` suffix.
      flax_path: (collection, *module path, leaf), e.g. ('params', 'en_0', 'conv', 'conv', 'kernel').
      transform: one of ``OIHW_TO_HWIO``, ``IDENTITY``.
    """

    torch_key: str
    flax_path: tuple[str, ...]
    transform: str = IDENTITY


TORCH = "torch"
TF = "tf"


@dataclasses.dataclass(frozen=True)
class Table:
    """A model's complete mapping: rules for every parameter, and keys dropped on purpose.

    Attributes:
      source: file kind the table reads, ``TORCH`` (.pth) or ``TF`` (object-based checkpoint).
      ignored: regular expressions (``re.search``) of source keys that are skipped silently.
    """

    model: str
    rules: tuple[Rule, ...]
    dropped: tuple[str, ...] = ()
    source: str = TORCH
    ignored: tuple[str, ...] = ()

    def is_ignored(self, key: str) -> bool:
        return any(re.search(pattern, key) for pattern in self.ignored)


class TableBuilder:
    """Collects the rows of a table one PyTorch layer at a time."""

    def __init__(self, model: str, source: str = TORCH, ignored: Sequence[str] = ()):
        self.model = model
        self.source = source
        self.ignored = tuple(ignored)
        self.rules: list[Rule] = []
        self.dropped: list[str] = []

    def conv(self, torch_prefix: str, flax_module: Sequence[str]) -> None:
        """A PyTorch ``Conv2d`` with bias mapped onto a Flax ``nn.Conv``."""
        self.rules += [
            Rule(f"{torch_prefix}.weight", ("params", *flax_module, "kernel"), OIHW_TO_HWIO),
            Rule(f"{torch_prefix}.bias", ("params", *flax_module, "bias")),
        ]

    def batchnorm(self, torch_prefix: str, flax_module: Sequence[str]) -> None:
        """A PyTorch ``BatchNorm2d``: affine params, running stats to ``batch_stats``, and its
        ``num_batches_tracked`` counter dropped (Flax keeps no such counter)."""
        self.rules += [
            Rule(f"{torch_prefix}.weight", ("params", *flax_module, "scale")),
            Rule(f"{torch_prefix}.bias", ("params", *flax_module, "bias")),
            Rule(f"{torch_prefix}.running_mean", ("batch_stats", *flax_module, "mean")),
            Rule(f"{torch_prefix}.running_var", ("batch_stats", *flax_module, "var")),
        ]
        self.dropped.append(f"{torch_prefix}.num_batches_tracked")

    def add(self, source_key: str, flax_path: Sequence[str], transform: str = IDENTITY) -> None:
        """One array, copied (or transformed) as is."""
        self.rules.append(Rule(source_key, tuple(flax_path), transform))

    def keras_conv(self, source_prefix: str, flax_module: Sequence[str]) -> None:
        """A Keras ``Conv2D`` with bias (HWIO already, no transpose)."""
        self.rules += [
            Rule(f"{source_prefix}/kernel", ("params", *flax_module, "kernel")),
            Rule(f"{source_prefix}/bias", ("params", *flax_module, "bias")),
        ]

    def keras_batchnorm(self, source_prefix: str, flax_module: Sequence[str]) -> None:
        """A Keras ``(Sync)BatchNormalization``: gamma, beta -> scale, bias; moving_* -> batch_stats."""
        self.rules += [
            Rule(f"{source_prefix}/gamma", ("params", *flax_module, "scale")),
            Rule(f"{source_prefix}/beta", ("params", *flax_module, "bias")),
            Rule(f"{source_prefix}/moving_mean", ("batch_stats", *flax_module, "mean")),
            Rule(f"{source_prefix}/moving_variance", ("batch_stats", *flax_module, "var")),
        ]

    def build(self) -> Table:
        return Table(self.model, tuple(self.rules), tuple(self.dropped), self.source, self.ignored)


# --------------------------------------------------------------------------------------------------
# Reading PyTorch files.


def load_torch_file(path: str | os.PathLike) -> Any:
    """``torch.load(path, map_location='cpu', weights_only=True)`` with one-line errors.

    Reads both the zip container (torch >= 1.6) and the legacy pickle container.
    """
    import torch

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConversionError(f"input checkpoint not found: {path}")
    if not os.path.isfile(path):
        raise ConversionError(f"input checkpoint is not a file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a malformed file
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"cannot read {path} as a PyTorch checkpoint: {first_line}") from e


def extract_state_dict(obj: Any) -> dict[str, np.ndarray]:
    """Finds the state_dict in a loaded checkpoint and returns it as float32/int NumPy arrays.

    Accepts a bare state_dict, the ``{'state_dict': ...}`` wrapper of the released ``refinement.pth``
    and keys prefixed with ``module.`` (``DataParallel``).
    """
    import torch

    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(f"checkpoint holds no state_dict (found {type(obj).__name__})")
    non_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        raise ConversionError(
            "checkpoint is not a state_dict: entries that are not tensors: "
            + _short_list(map(str, non_tensors))
        )
    state = {}
    for key, value in obj.items():
        key = str(key)
        if key.startswith("module."):
            key = key[len("module.") :]
        if key in state:
            raise ConversionError(f"duplicate key after removing the 'module.' prefix: {key}")
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        state[key] = value.numpy()
    return state


# --------------------------------------------------------------------------------------------------
# Reading TensorFlow object-based checkpoints.

TF_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def tf_checkpoint_prefix(path: str | os.PathLike) -> str:
    """Resolves ``path`` to a TF checkpoint prefix (``.../ckpt-1``).

    Accepts the prefix itself, its ``.index`` file, or a folder holding a ``checkpoint`` state file
    (the latest checkpoint is taken, as ``tf.train.latest_checkpoint`` does).
    """
    path = os.fspath(path)
    if path.endswith(".index"):
        path = path[: -len(".index")]
    if os.path.isdir(path):
        state = os.path.join(path, "checkpoint")
        if not os.path.isfile(state):
            raise ConversionError(f"no TF checkpoint state file ('checkpoint') in folder {path}")
        match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', _read_text(state), re.M)
        if not match:
            raise ConversionError(f"cannot read the latest checkpoint from {state}")
        path = os.path.join(path, match.group(1))
    if not os.path.isfile(path + ".index"):
        raise ConversionError(f"TF checkpoint not found: {path}.index does not exist")
    data = glob.glob(glob.escape(path) + ".data-*")
    if not data:
        raise ConversionError(f"TF checkpoint {path} has an index but no data file ({path}.data-*)")
    return path


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def looks_like_tf_checkpoint(path: str | os.PathLike) -> bool:
    """True for a TF checkpoint prefix, its ``.index`` file or a checkpoint folder."""
    path = os.fspath(path)
    return (
        path.endswith(".index")
        or os.path.isfile(path + ".index")
        or os.path.isfile(os.path.join(path, "checkpoint"))
    )


def load_tf_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every variable of a TF object-based checkpoint (``tf.train.load_checkpoint``).

    Returns:
      {key without ``/.ATTRIBUTES/VARIABLE_VALUE``: array}; the serialized object graph
      (``_CHECKPOINTABLE_OBJECT_GRAPH``) is not a variable and is left out.
    """
    prefix = tf_checkpoint_prefix(path)
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ConversionError(
            "reading TensorFlow checkpoints needs tensorflow (pip install tensorflow-cpu)"
        ) from e
    try:
        reader = tf.train.load_checkpoint(prefix)
        keys = sorted(reader.get_variable_to_shape_map())
        state = {}
        for key in keys:
            if key == "_CHECKPOINTABLE_OBJECT_GRAPH":
                continue
            value = np.asarray(reader.get_tensor(key))
            name = key[: -len(TF_VALUE_SUFFIX)] if key.endswith(TF_VALUE_SUFFIX) else key
            state[name] = value.astype(np.float32) if value.dtype.kind == "f" else value
    except Exception as e:  # noqa: BLE001 - TF raises its own error types for damaged files
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"cannot read {prefix} as a TF checkpoint: {first_line}") from e
    return state


def tf_checkpoint_files(path: str | os.PathLike) -> list[str]:
    """The files that make up a TF checkpoint (index first, then data shards)."""
    prefix = tf_checkpoint_prefix(path)
    return [prefix + ".index", *sorted(glob.glob(glob.escape(prefix) + ".data-*"))]


# --------------------------------------------------------------------------------------------------
# Applying a table.


def apply_table(
    state: Mapping[str, np.ndarray], table: Table, shapes: Mapping[tuple[str, ...], tuple[int, ...]]
) -> dict[str, Any]:
    """Maps a state_dict onto Flax variables strictly.

    Args:
      state: torch key -> array (from ``extract_state_dict``).
      table: the model's mapping table.
      shapes: {flax_path: shape} of the target model's variables (``expected_shapes``).
    Returns:
      Nested variables dict {'params': ..., 'batch_stats': ...} of float32 NumPy arrays.
    Raises:
      ConversionError listing every missing, unexpected and mis-shaped key.
    """
    from flax import traverse_util

    table_paths = {rule.flax_path for rule in table.rules}
    if table_paths != set(shapes):
        # A table that does not cover the model is a bug in this package, not in the user's file.
        raise AssertionError(
            f"table for {table.model} does not match the model: {sorted(set(shapes) ^ table_paths)[:5]}"
        )
    known = {rule.torch_key for rule in table.rules} | set(table.dropped)
    missing = [rule.torch_key for rule in table.rules if rule.torch_key not in state]
    unexpected = [key for key in state if key not in known and not table.is_ignored(key)]
    misshaped, flat = [], {}
    for rule in table.rules:
        if rule.torch_key not in state:
            continue
        array = state[rule.torch_key]
        want = shapes[rule.flax_path]
        if rule.transform == OIHW_TO_HWIO and array.ndim != 4:
            misshaped.append(f"{rule.torch_key} {tuple(array.shape)} (expected a 4-D conv weight)")
            continue
        value = _TRANSFORMS[rule.transform](array)
        if tuple(value.shape) != want:
            torch_want = want if rule.transform == IDENTITY else (want[3], want[2], want[0], want[1])
            misshaped.append(f"{rule.torch_key} {tuple(array.shape)} (expected {torch_want})")
            continue
        if not np.issubdtype(value.dtype, np.floating):
            misshaped.append(f"{rule.torch_key} has dtype {value.dtype} (expected floating)")
            continue
        flat[rule.flax_path] = np.ascontiguousarray(value, dtype=np.float32)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_short_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_short_list(unexpected)}")
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped key(s): {_short_list(misshaped)}")
    if problems:
        raise ConversionError(f"checkpoint does not match {table.model}: " + "; ".join(problems))
    return traverse_util.unflatten_dict(flat)


def detect_model(state: Mapping[str, np.ndarray], tables: Mapping[str, Table]) -> str:
    """Picks the table whose keys overlap the state_dict most (``--model auto``)."""
    keys = set(state)
    scores = {name: len(keys & {r.torch_key for r in t.rules}) for name, t in tables.items()}
    best = max(scores, key=scores.get)
    if scores[best] == 0:
        raise ConversionError(
            "cannot detect the model: no key matches any known model; first keys: "
            + _short_list(sorted(keys), limit=5)
        )
    return best


def _short_list(items: Iterable[str], limit: int = 8) -> str:
    items = list(items)
    text = ", ".join(items[:limit])
    return text + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


# --------------------------------------------------------------------------------------------------
# The whole conversion, and a smoke run of its result.


def read_source(path: str | os.PathLike, source: str) -> dict[str, np.ndarray]:
    """Reads a checkpoint of kind ``source`` (``TORCH`` or ``TF``) into {key: array}."""
    if source == TF:
        return load_tf_checkpoint(path)
    return extract_state_dict(load_torch_file(path))


def source_files(path: str | os.PathLike, source: str) -> list[str]:
    """The files whose bytes identify the source checkpoint (hashed into the metadata)."""
    return tf_checkpoint_files(path) if source == TF else [os.fspath(path)]


def convert_checkpoint(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    tables: Mapping[str, Table],
    model: str = "auto",
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[str, str]:
    """Reads a checkpoint, maps it through a table and writes a weights directory.

    Nothing is written unless every key maps cleanly; the output appears atomically.

    Args:
      input_path: ``.pth`` file (zip or legacy container) or a TF checkpoint prefix / folder.
      output_dir: weights directory to create (``hrinpaint_jax.checkpoints`` layout).
      tables: model name -> mapping table.
      model: a key of ``tables``, or 'auto' to detect it (TF checkpoints -> the TF table; PyTorch
        files -> the table whose keys overlap most).
      overwrite: replace an existing ``output_dir``.
      log: progress messages.
    Returns:
      (model name, absolute output path).
    """
    import hashlib
    import time

    import jax

    from hrinpaint_jax import __version__
    from hrinpaint_jax.models import dummy_inputs, get_model

    start = time.perf_counter()
    if model != "auto" and model not in tables:
        raise ConversionError(f"unknown model {model!r}; known: {', '.join(sorted(tables))}, auto")
    check_output_dir(output_dir, overwrite)  # fail before the slow part
    if model == "auto":
        source = TF if looks_like_tf_checkpoint(input_path) else TORCH
        candidates = {k: t for k, t in tables.items() if t.source == source}
    else:
        source = tables[model].source
        candidates = {model: tables[model]}
    log(f"[1/4] reading {input_path}")
    state = read_source(input_path, source)
    if model == "auto":
        model = detect_model(state, candidates)
        log(f"      detected model: {model}")
    log(f"[2/4] mapping {len(state)} arrays onto {model}")
    flax_model = get_model(model)
    abstract = jax.eval_shape(
        lambda: flax_model.init(jax.random.key(0), *dummy_inputs(model), train=False)
    )
    variables = apply_table(state, tables[model], expected_shapes(abstract))
    n_params = sum(a.size for a in jax.tree.leaves(variables["params"]))
    log(f"      {n_params:,} trainable parameters")
    log("[3/4] hashing the source file(s)")
    digest = hashlib.sha256()
    files = source_files(input_path, source)
    for name in files:
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    log(f"[4/4] writing {output_dir}")
    out = save_pretrained(
        output_dir,
        model,
        variables,
        metadata={
            "source": os.path.basename(files[0]),
            "source_sha256": digest.hexdigest(),
            "num_params": int(n_params),
            "converter": f"hrinpaint_jax {__version__}",
        },
        overwrite=overwrite,
    )
    log(f"done in {time.perf_counter() - start:.1f} s")
    return model, out


def verification_inputs(model: str, height: int = 512, width: int = 512):
    """A fixed, seeded input for ``--verify``: a smooth colour image with a centred square hole."""
    import jax.numpy as jnp

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [0.5 + 0.4 * np.sin(x / 37.0), 0.5 + 0.4 * np.cos(y / 23.0), (x + y) / (height + width)],
        axis=-1,
    )[None]
    from hrinpaint_jax.masks import centre_square_mask

    hole = centre_square_mask(height, width)[None, ..., None]
    if model == "dfnet":  # DFNet: BGR order, mask 1 = known, holes zeroed
        known = 1.0 - hole
        return jnp.asarray(image[..., ::-1] * known), jnp.asarray(known)
    if model == "zoom":  # Zoom-to-Inpaint: the low-resolution RGB image and its mask (1 = hole)
        return jnp.asarray(image), jnp.asarray(hole)
    # Refinement: the image with its four shifted copies, shifted like the reference pipeline.
    from hrinpaint_jax.ops.shift import reference_shift, shift_refine_input

    image, hole = jnp.asarray(image), jnp.asarray(hole)
    return shift_refine_input(image, hole, reference_shift(height)), hole


def output_statistics(outputs) -> list[dict[str, Any]]:
    """min / max / mean / std and shape of each output array (a list, a dict or a single array)."""
    if isinstance(outputs, Mapping):
        return [{"name": k, **output_statistics(v)[0]} for k, v in outputs.items()]
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [
        {
            "shape": tuple(int(d) for d in o.shape),
            "min": float(o.min()),
            "max": float(o.max()),
            "mean": float(o.mean()),
            "std": float(o.std()),
        }
        for o in map(np.asarray, outputs)
    ]


def verify_pretrained(
    directory: str | os.PathLike, size: int | None = None, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Loads a weights directory, runs one eval forward on ``verification_inputs`` and logs
    statistics of every output (the numbers to compare with the original code on the same input).

    ``size`` defaults to the reference's test size: 512 for the PyTorch models, 256 (the
    low-resolution input) for Zoom-to-Inpaint."""
    import time

    import jax

    model, variables, meta = load_pretrained(directory)
    size = size or (256 if meta["model"] == "zoom" else 512)
    inputs = verification_inputs(meta["model"], size, size)
    forward = jax.jit(lambda v, *x: model.apply(v, *x, train=False))
    start = time.perf_counter()
    outputs = jax.block_until_ready(forward(variables, *inputs))
    log(
        f"verify: {meta['model']} forward at {size}x{size} in "
        f"{time.perf_counter() - start:.2f} s (including compilation)"
    )
    stats = output_statistics(outputs)
    for i, s in enumerate(stats):
        log(
            f"  output {s.get('name', i)}: shape {s['shape']} min {s['min']:.6f} max {s['max']:.6f} "
            f"mean {s['mean']:.6f} std {s['std']:.6f}"
        )
    return stats
