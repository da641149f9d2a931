"""Pretrained-weight directories: an orbax checkpoint of Flax variables plus JSON metadata.

Layout (written by ``save_pretrained``, read by ``load_pretrained``)::

    DIR/variables/   orbax StandardSave of {'params': ..., 'batch_stats': ...}
    DIR/metadata/    orbax JsonSave: {'model': name, 'model_kwargs': {...}, 'format': ..., ...}

Writes are atomic: the checkpoint is written to a hidden sibling directory and renamed into place
only once complete, so an interrupted or failed write never leaves a half-written ``DIR`` and never
clobbers an existing one unless ``overwrite=True``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util

FORMAT = "hrinpaint_jax.pretrained.v1"


class CheckpointError(ValueError):
    """A weights directory that cannot be used; the message says why."""


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def save_pretrained(
    directory: str | os.PathLike,
    model: str,
    variables: Mapping[str, Any],
    model_kwargs: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Writes ``variables`` of registered model ``model`` to ``directory`` atomically.

    Args:
      directory: output directory; must not exist unless ``overwrite``.
      model: registry name (``hrinpaint_jax.models.get_model``).
      variables: {'params': ..., 'batch_stats': ...} (NumPy or JAX arrays).
      model_kwargs: JSON-serialisable constructor overrides needed to rebuild the model.
      metadata: extra JSON-serialisable provenance (source file, checksum, ...).
      overwrite: replace an existing ``directory`` (only after the new one is complete).
    Returns:
      The absolute output path.
    """
    import orbax.checkpoint as ocp

    directory = check_output_dir(directory, overwrite)
    parent = os.path.dirname(directory)
    meta = {
        "format": FORMAT,
        "model": model,
        "model_kwargs": dict(model_kwargs or {}),
        **dict(metadata or {}),
    }
    host_vars = jax.tree.map(np.asarray, dict(variables))
    staging = os.path.join(parent, f".{os.path.basename(directory)}.partial-{uuid.uuid4().hex[:8]}")
    try:
        _checkpointer().save(
            staging,
            ocp.args.Composite(
                variables=ocp.args.StandardSave(host_vars), metadata=ocp.args.JsonSave(meta)
            ),
        )
        if not os.path.exists(directory):
            os.replace(staging, directory)
            return directory
        # Swap: move the old directory aside, move the new one in, and put the old one back if
        # the second step fails, so the user keeps one complete directory whatever happens.
        trash = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.old-", dir=parent)
        old = os.path.join(trash, "old")
        os.replace(directory, old)
        try:
            os.replace(staging, directory)
        except BaseException:
            os.replace(old, directory)
            raise
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def expected_shapes(variables: Mapping[str, Any]) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Flattens a (possibly abstract) variables tree into {flax_path: shape}."""
    flat = traverse_util.flatten_dict(dict(variables))
    return {tuple(k): tuple(v.shape) for k, v in flat.items()}


def check_output_dir(directory: str | os.PathLike, overwrite: bool) -> str:
    """Validates an output weights directory before any work is done; returns its absolute path.

    Creates the parent. An existing path is only ever replaced with ``overwrite`` *and* if it is an
    empty directory or a weights directory (never an arbitrary folder or file).
    """
    directory = os.path.abspath(os.fspath(directory))
    if os.path.lexists(directory):
        if not overwrite:
            raise CheckpointError(f"output exists, not overwriting (use --overwrite): {directory}")
        if not os.path.isdir(directory) or (os.listdir(directory) and not _is_weights_dir(directory)):
            raise CheckpointError(
                f"refusing to overwrite {directory}: it is not a hrinpaint_jax weights directory"
            )
    parent = os.path.dirname(directory)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create the output's parent folder {parent}: {e.strerror}") from e
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CheckpointError(f"output folder is not writable: {parent}")
    return directory


def _is_weights_dir(directory: str) -> bool:
    try:
        read_metadata(directory)
    except CheckpointError:
        return False
    return True


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """Returns the JSON metadata of a weights directory (cheap: no arrays are read)."""
    import orbax.checkpoint as ocp

    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        raise CheckpointError(f"weights directory not found: {directory}")
    if not os.path.isdir(os.path.join(directory, "metadata")):
        raise CheckpointError(f"not a hrinpaint_jax weights directory (no metadata/): {directory}")
    try:
        meta = (
            _checkpointer()
            .restore(directory, ocp.args.Composite(metadata=ocp.args.JsonRestore()))
            .metadata
        )
    except Exception as e:  # noqa: BLE001 - orbax/json raise many types for a damaged folder
        raise CheckpointError(f"cannot read the metadata of {directory}: {_first_line(e)}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"unknown weights format in {directory}: {found!r}")
    return meta


def load_pretrained(directory: str | os.PathLike, **model_overrides):
    """Loads a weights directory in one call.

    Args:
      directory: written by ``save_pretrained`` / ``python -m convert_weights``.
      **model_overrides: constructor overrides applied on top of the stored ones (e.g. ``dtype``).
    Returns:
      (model, variables, metadata): the Flax module, its variables as JAX arrays, the JSON metadata.
    """
    import orbax.checkpoint as ocp

    from hrinpaint_jax.models import dummy_inputs, get_model

    meta = read_metadata(directory)
    name = meta["model"]
    # JSON turns tuples (kernel-size lists, ...) into lists; module fields must stay hashable.
    stored = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["model_kwargs"].items()}
    model = get_model(name, **{**stored, **model_overrides})
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), *dummy_inputs(name), train=False))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, np.float32), dict(abstract))
    try:
        restored = (
            _checkpointer()
            .restore(
                os.path.abspath(os.fspath(directory)),
                ocp.args.Composite(variables=ocp.args.StandardRestore(abstract)),
            )
            .variables
        )
    except ValueError as e:
        if "Structure mismatch" in str(e):  # orbax: the stored tree has other keys
            raise CheckpointError(
                f"weights in {directory} do not fit model {name}: {_first_line(e)}"
            ) from e
        raise CheckpointError(f"cannot read the weights in {directory}: {_first_line(e)}") from e
    except Exception as e:  # noqa: BLE001 - tensorstore raises its own types for damaged files
        raise CheckpointError(f"cannot read the weights in {directory}: {_first_line(e)}") from e
    # orbax restores the stored shapes even when the target disagrees: check them here.
    want, got = expected_shapes(abstract), expected_shapes(restored)
    bad = [f"{'/'.join(k)} {got[k]} (expected {want[k]})" for k in want if got.get(k) != want[k]]
    if bad:
        raise CheckpointError(f"weights in {directory} do not fit model {name}: " + ", ".join(bad[:5]))
    return model, jax.tree.map(jax.numpy.asarray, restored), meta
