"""Pretrained-weight directories: an orbax checkpoint of Flax variables plus JSON metadata.

Layout (written by ``save_pretrained``, read by ``load_pretrained``)::

    DIR/variables/   orbax StandardSave of {'params': ..., 'batch_stats': ...}
    DIR/metadata/    orbax JsonSave: {'model': name, 'model_kwargs': {...}, 'format': ..., ...}

Writes are atomic: the checkpoint is written to a hidden sibling directory and renamed into place
only once complete, so an interrupted or failed write never leaves a half-written ``DIR`` and never
clobbers an existing one unless ``overwrite=True``. A full disk is ``atomic_files.NoSpaceError``
(one line: the folder and the space needed), checked before writing too; what a killed writer left
(``.DIR.partial-PID-*``) is removed by the next write of ``DIR``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from hrinpaint_jax.atomic_files import check_free_space, left_by_dead_writer, no_space_error

FORMAT = "hrinpaint_jax.pretrained.v1"


class CheckpointError(ValueError):
    """A weights directory that cannot be used; the message says why."""


def _checkpointer():
    import orbax.checkpoint as ocp

    quiet_closed_loop_callbacks()
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def _is_closed_loop_callback(unraisable) -> bool:
    exc = unraisable.exc_value
    return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


def quiet_closed_loop_callbacks() -> None:
    """Drops one kind of noise: when an orbax read or write fails, orbax's asyncio loop closes at
    the first error while tensorstore still completes the other reads / writes in flight; their
    completion callbacks (``loop.call_soon_threadsafe``) then raise "Event loop is closed", which
    tensorstore reports through ``sys.unraisablehook`` as a traceback each, after the error was
    already handled. Nothing is lost. Every other unraisable exception goes to the previous hook."""
    previous = sys.unraisablehook
    if getattr(previous, "_hrinpaint_quiet", False):
        return

    def hook(unraisable):
        if not _is_closed_loop_callback(unraisable):
            previous(unraisable)

    hook._hrinpaint_quiet = True
    sys.unraisablehook = hook


def _orbax_error_record(record) -> bool:
    return record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname


@contextlib.contextmanager
def orbax_errors_raised_only():
    """Within: orbax's background threads do not also log the error they hand back to the caller
    (``_SignalingThread.run() raised an exception`` with a traceback, through absl's logger); the
    caller reports it in one line. Other records pass."""

    def keep(record) -> bool:
        return not _orbax_error_record(record)

    loggers = [logging.getLogger("absl"), logging.getLogger()]
    handlers = {h for lg in loggers for h in lg.handlers}
    for target in (*loggers, *handlers):
        target.addFilter(keep)
    try:
        yield
    finally:
        for target in (*loggers, *handlers):
            target.removeFilter(keep)


def _partial_prefix(directory: str) -> str:
    return f".{os.path.basename(directory)}.partial-"


def remove_partial(staging: str) -> None:
    """Deletes a staging folder and what orbax wrote beside it (``STAGING.orbax-checkpoint-tmp*``)."""
    shutil.rmtree(staging, ignore_errors=True)
    parent, name = os.path.split(staging)
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if entry.name.startswith(f"{name}.orbax-checkpoint-tmp"):
                shutil.rmtree(entry.path, ignore_errors=True)


def _remove_stale_partials(directory: str) -> None:
    """Staging folders of ``directory`` left by writers that no longer run (kill -9): their names
    carry the writer's PID (``.NAME.partial-PID-HEX``)."""
    parent, prefix = os.path.dirname(directory), _partial_prefix(directory)
    try:
        entries = [e.name for e in os.scandir(parent) if e.name.startswith(prefix)]
    except OSError:
        return
    for name in entries:
        if left_by_dead_writer(name, prefix):
            remove_partial(os.path.join(parent, name.split(".orbax-checkpoint-tmp", 1)[0]))


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
    needed = sum(int(x.nbytes) for x in jax.tree.leaves(host_vars))
    _remove_stale_partials(directory)
    check_free_space(parent, needed)
    staging = os.path.join(parent, f"{_partial_prefix(directory)}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        try:
            with orbax_errors_raised_only():
                _checkpointer().save(
                    staging,
                    ocp.args.Composite(
                        variables=ocp.args.StandardSave(host_vars), metadata=ocp.args.JsonSave(meta)
                    ),
                )
        except Exception as e:
            full = no_space_error(e, parent, needed)
            if full is not None:
                raise full from None
            raise
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
        remove_partial(staging)
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
