"""Training checkpoints: the orbax ``CheckpointManager`` of a training workdir (``WORKDIR/checkpoints``:
the train states, the config as JSON and the training record, ``training_record``), and the
trained networks read back from it.

A train state is stored as ``TrainState.to_tree()`` per state name ('g': the generator, 'd': the
Zoom-to-Inpaint discriminator). ``load_weights`` rebuilds a stage's generator from the config saved
with its checkpoint, so a training workdir can stand in for a weights directory (the refinement
stage's frozen DFNet, ``init_from``).

Integrity. The last thing a save does is write ``STEP/hrinpaint_manifest.json`` (atomically): every
file of the step with its size and sha256. Readers walk the steps newest first and take the newest
*intact* one: its manifest matches, or (a step written before manifests existed, or one whose
process was killed between orbax's final rename and the manifest) its items read back. A damaged
step is skipped with one warning line naming the file; a resuming run moves it to
``WORKDIR/damaged_checkpoints/`` so that its step number can be saved again. Only when no step is
intact is it an error (``CheckpointError``, one line). Every orbax / tensorstore failure is reported
as one line naming the file.

A save that fails (a full disk: ``atomic_files.NoSpaceError`` naming the folder and the space
needed) or is interrupted removes what it had written; earlier steps are untouched.

``WorkdirLock``: one training process per workdir (``WORKDIR/train.lock``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from ml_collections import ConfigDict

from hrinpaint_jax.atomic_files import atomic_write, check_free_space, no_space_error
from hrinpaint_jax.checkpoints import (
    CheckpointError,
    load_pretrained,
    orbax_errors_raised_only,
    quiet_closed_loop_callbacks,
)
from hrinpaint_jax.models import build_model

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
MANIFEST = "hrinpaint_manifest.json"
MANIFEST_FORMAT = "hrinpaint_jax.checkpoint_manifest.v1"
DAMAGED_DIR = "damaged_checkpoints"  # in the workdir, beside checkpoints/
LOCK_FILE = "train.lock"
ORBAX_TMP = ".orbax-checkpoint-tmp"  # orbax writes a step into STEP + this, then renames it

# The registered model (``models.get_model``) that a stage's generator state 'g' is.
STAGE_MODELS = {"dfnet": "dfnet", "shift_refine": "shift_refine", "zoom_joint": "zoom"}


class InitError(ValueError):
    """``config.init_from`` / stage-1 weights that do not fit."""


class WorkdirBusy(RuntimeError):
    """Another process trains in the workdir; the message names its PID and host."""


def checkpoint_manager(workdir: str | os.PathLike, config=None) -> ocp.CheckpointManager:
    quiet_closed_loop_callbacks()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints if config is not None else None,
        create=True,
        enable_async_checkpointing=False,
    )
    path = os.path.abspath(os.path.join(os.fspath(workdir), CHECKPOINT_DIR))
    return ocp.CheckpointManager(path, options=options, item_names=("state", "config", "record"))


def states_tree(states) -> dict[str, Any]:
    """The checkpointed tree of a dict of ``TrainState`` (no optimiser functions)."""
    return {name: s.to_tree() for name, s in states.items()}


def tree_nbytes(tree) -> int:
    return sum(int(np.asarray(x).nbytes) for x in jax.tree.leaves(tree))


# ------------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(manager, step: int, states, config, legs: list | None = None) -> None:
    """Saves the states, the config and (if given) the training legs up to ``step``, then the
    step's manifest. A failed or interrupted save leaves no trace of ``step``; a full disk raises
    ``NoSpaceError`` naming the folder and the space needed (also checked before writing)."""
    tree = jax.device_get(states_tree(states))
    directory = Path(manager.directory)
    needed = tree_nbytes(tree)
    check_free_space(directory, needed)
    existed = (directory / str(step)).exists()
    items = {
        "state": ocp.args.StandardSave(tree),
        "config": ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
    }
    if legs is not None:
        items["record"] = ocp.args.JsonSave({"legs": legs})
    try:
        with orbax_errors_raised_only():
            manager.save(step, args=ocp.args.Composite(**items), force=True)
            manager.wait_until_finished()
        if jax.process_index() == 0:
            write_manifest(directory / str(step))
    except BaseException as e:
        if jax.process_index() == 0:
            remove_partial_saves(directory, None if existed else step)
        full = no_space_error(e, directory, needed)
        if full is not None:
            raise full from None
        raise


def remove_partial_saves(directory: str | os.PathLike, step: int | None = None) -> None:
    """Deletes orbax's temporary folders in a checkpoints folder and, if given, step ``step`` (a
    save that did not complete). Only for the process that holds the workdir's lock."""
    directory = Path(directory)
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if ORBAX_TMP in entry.name:
                shutil.rmtree(entry.path, ignore_errors=True)
    if step is not None:
        shutil.rmtree(directory / str(step), ignore_errors=True)


def _digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def write_manifest(step_dir: str | os.PathLike) -> None:
    """``STEP/hrinpaint_manifest.json``: size and sha256 of every file of a saved step."""
    step_dir = Path(step_dir)
    files = {}
    for root, dirs, names in os.walk(step_dir):
        dirs.sort()
        for name in sorted(names):
            if name.startswith((MANIFEST, f".{MANIFEST}")):
                continue
            path = Path(root) / name
            size, sha = _digest(path)
            files[path.relative_to(step_dir).as_posix()] = {"size": size, "sha256": sha}
    text = json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1)
    atomic_write(step_dir / MANIFEST, lambda tmp: Path(tmp).write_text(text))


# ------------------------------------------------------------------------------------------------
# Reading: the newest intact step


def step_dirs(workdir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of the finished steps of a training workdir, newest first."""
    directory = Path(workdir) / CHECKPOINT_DIR
    try:
        entries = [e for e in os.scandir(directory) if e.name.isdigit() and e.is_dir()]
    except OSError:
        return []
    return sorted(((int(e.name), Path(e.path)) for e in entries), reverse=True)


def check_manifest(step_dir: Path) -> str | None:
    """What differs from the step's manifest (one phrase naming the file), or None when every file
    matches or the step has no manifest (written before manifests existed)."""
    path = step_dir / MANIFEST
    if not path.exists():
        return None
    try:
        files = json.loads(path.read_text())["files"]
        wanted = [(rel, int(f["size"]), str(f["sha256"])) for rel, f in files.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST} is unreadable"
    for rel, size, sha in wanted:
        try:
            got_size, got_sha = _digest(step_dir / rel)
        except FileNotFoundError:
            return f"{rel} is missing"
        except OSError as e:
            return f"{rel} is unreadable ({e.strerror or e})"
        if got_size != size:
            return f"{rel} has {got_size} bytes, {size} were written"
        if got_sha != sha:
            return f"{rel} does not match its checksum"
    return None


_LOCAL_FILE = re.compile(r'local file "([^"]+)"')


def _reason(e: BaseException, step_dir: Path, item: str) -> str:
    """One phrase for an orbax / tensorstore / JSON failure reading ``item`` of a step, naming the
    file where the message tells it (else the item's folder)."""
    text = re.sub(r"\s*\[tensorstore_spec=.*", "", str(e), flags=re.S).strip()
    files = _LOCAL_FILE.findall(text)
    if files:
        name = files[-1]
        detail = text.rsplit(f'local file "{name}"', 1)[1].lstrip(": ")
        with contextlib.suppress(ValueError):
            name = Path(name).relative_to(step_dir).as_posix() or name
        return f"{name}: {detail.splitlines()[0] if detail else type(e).__name__}"
    first = text.splitlines()[0] if text else type(e).__name__
    if isinstance(e, json.JSONDecodeError) or "JSON" in type(e).__name__:
        where = "state/_METADATA" if item == "state" else f"{item}/metadata"
        return f"{where}: not valid JSON ({first})"
    return f"{item}/: {first}"


def _read_item(step_dir: Path, item: str, args) -> Any:
    """One item of a step, any failure as ``CheckpointError`` (one line naming the file)."""
    if not (step_dir / item).is_dir():
        raise CheckpointError(f"{item}/ is missing")
    quiet_closed_loop_callbacks()
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    try:
        with orbax_errors_raised_only():
            return getattr(checkpointer.restore(step_dir, ocp.args.Composite(**{item: args})), item)
    except Exception as e:  # noqa: BLE001 - orbax, tensorstore and json raise many types
        raise CheckpointError(_reason(e, step_dir, item)) from None
    finally:
        checkpointer.close()


def _read_step(step_dir: Path, state: str | None = "raw", config: bool = False) -> dict[str, Any]:
    """{'legs'[, 'state'][, 'config']} of a step, or ``CheckpointError`` saying what is damaged.

    The files are checked against the step's manifest. ``state``: 'raw' reads the state tree as
    stored; 'check' reads it only for a step without a manifest (written before manifests existed),
    where reading is the only check; None skips it. A resuming run then restores the state into its
    own structure: a failure there is a config that does not fit, not damage."""
    problem = check_manifest(step_dir)
    if problem:
        raise CheckpointError(problem)
    out: dict[str, Any] = {"legs": []}
    if (step_dir / "record").exists():
        record = _read_item(step_dir, "record", ocp.args.JsonRestore())
        if not isinstance(record, dict) or not isinstance(record.get("legs", []), list):
            raise CheckpointError("record/metadata: not a training record")
        out["legs"] = [dict(leg) for leg in record.get("legs", [])]
    if config:
        out["config"] = _read_item(step_dir, "config", ocp.args.JsonRestore())
        if not isinstance(out["config"], dict) or "task" not in out["config"]:
            raise CheckpointError("config/metadata: not a training config")
    if state == "raw" or (state == "check" and not (step_dir / MANIFEST).exists()):
        out["state"] = _read_item(step_dir, "state", ocp.args.StandardRestore())
    return out


def _skipped_text(skipped: list[tuple[int, str]]) -> str:
    return "; ".join(f"step {step}: {problem}" for step, problem in skipped)


def _newest_intact(workdir, **read) -> tuple[int, Path, dict[str, Any], list[tuple[int, str]]] | None:
    """(step, folder, ``_read_step`` result, [(skipped step, problem)]) of the newest intact step;
    None for no step; ``CheckpointError`` when every step is damaged."""
    skipped = []
    for step, step_dir in step_dirs(workdir):
        try:
            return step, step_dir, _read_step(step_dir, **read), skipped
        except CheckpointError as e:
            skipped.append((step, str(e)))
    if skipped:
        where = Path(workdir) / CHECKPOINT_DIR
        raise CheckpointError(f"no intact checkpoint in {where} ({_skipped_text(skipped)})")
    return None


def _move_aside(workdir: Path, step: int) -> Path:
    """Moves a damaged step to ``WORKDIR/damaged_checkpoints/STEP[-N]`` (kept for inspection)."""
    aside = workdir / DAMAGED_DIR
    aside.mkdir(exist_ok=True)
    target, n = aside / str(step), 1
    while target.exists():
        target, n = aside / f"{step}-{n}", n + 1
    os.replace(workdir / CHECKPOINT_DIR / str(step), target)
    return target


def restore_latest(workdir: str | os.PathLike, states, move_aside: bool = True):
    """(step, states, legs) of the newest intact checkpoint of a training workdir restored into the
    structure of freshly initialised ``states``, or None when it holds no checkpoint.

    Damaged newer steps are skipped with one warning line and (``move_aside``: the process that
    holds the workdir's lock) moved to ``WORKDIR/damaged_checkpoints``."""
    workdir = Path(os.path.abspath(os.fspath(workdir)))
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype), states_tree(states)
    )
    found = _newest_intact(workdir, state="check")
    if found is None:
        return None
    step, step_dir, read, skipped = found
    read.pop("state", None)
    try:
        restored = _restore_state(step_dir, abstract)
    except CheckpointError as e:
        raise InitError(f"checkpoint {step} in {workdir} does not fit this config: {e}") from None
    if skipped:
        damaged = ", ".join(str(s) for s, _ in skipped)
        where = f"moved to {workdir / DAMAGED_DIR}" if move_aside else "left in place"
        if move_aside:
            for s, _ in skipped:
                _move_aside(workdir, s)
        logger.warning(
            "damaged checkpoint%s %s skipped (%s), %s; resuming from step %d",
            "s" if len(skipped) > 1 else "",
            damaged,
            _skipped_text(skipped),
            where,
            step,
        )
    return step, {name: s.from_tree(restored[name]) for name, s in states.items()}, read["legs"]


def _restore_state(step_dir: Path, abstract) -> dict[str, Any]:
    restored = _read_item(step_dir, "state", ocp.args.StandardRestore(abstract))
    # orbax restores stored shapes even when the target disagrees: check them here
    want = jax.tree_util.tree_flatten_with_path(abstract)[0]
    got = dict(jax.tree_util.tree_flatten_with_path(restored)[0])
    for path, leaf in want:
        if path not in got or np.shape(got[path]) != leaf.shape:
            name = jax.tree_util.keystr(path)
            found = np.shape(got[path]) if path in got else "nothing"
            raise CheckpointError(f"{name} is {found}, expected {leaf.shape}")
    return restored


def _reader_warning(workdir, step: int, skipped) -> None:
    if skipped:
        logger.warning(
            "%s: damaged checkpoint%s %s skipped (%s); using step %d",
            workdir,
            "s" if len(skipped) > 1 else "",
            ", ".join(str(s) for s, _ in skipped),
            _skipped_text(skipped),
            step,
        )


def restore_legs(manager, step: int) -> list[dict]:
    """The training legs stored with checkpoint ``step``; [] for checkpoints written before the
    record existed."""
    step_dir = Path(manager.directory) / str(step)
    if not (step_dir / "record").is_dir():
        return []
    return _read_step(step_dir, state=None)["legs"]


def checkpoint_legs(workdir: str | os.PathLike, step: int | None = None) -> list[dict]:
    """The training legs of checkpoint ``step`` (default: the newest intact one) of a training
    workdir; [] for none."""
    if step is not None:
        step_dir = Path(workdir) / CHECKPOINT_DIR / str(step)
        return _read_step(step_dir, state=None)["legs"] if step_dir.is_dir() else []
    found = _newest_intact(workdir, state=None)
    return [] if found is None else found[2]["legs"]


def restore_checkpoint(manager, step: int, states):
    """Restores step ``step`` into the structure of freshly initialised ``states``."""
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype), states_tree(states)
    )
    restored = _restore_state(Path(manager.directory) / str(step), abstract)
    return {name: s.from_tree(restored[name]) for name, s in states.items()}


def latest_state_tree(workdir: str | os.PathLike) -> tuple[int, dict[str, Any], dict]:
    """(step, raw state tree, saved config dict) of the newest intact checkpoint of a training
    workdir; damaged newer steps are skipped with a warning (and left in place)."""
    found = _newest_intact(workdir, config=True)
    if found is None:
        raise InitError(f"no checkpoint in training workdir {workdir}")
    step, _, read, skipped = found
    _reader_warning(workdir, step, skipped)
    return step, read["state"], read["config"]


# ------------------------------------------------------------------------------------------------
# One training process per workdir


class WorkdirLock:
    """An exclusive ``fcntl.flock`` on ``WORKDIR/train.lock``, which holds the owner's PID and host.

    A second process gets ``WorkdirBusy`` naming them, without writing anything. The kernel drops
    the lock when its process dies (kill -9 included), so a stale file is simply taken over. On NFS,
    Linux maps flock onto NFS byte-range locks: they work across hosts when the server supports
    locking (not with the ``nolock`` mount option), and a crashed client's lock lasts until the
    server's lease runs out."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = Path(workdir) / LOCK_FILE
        self._fd = None

    def acquire(self) -> WorkdirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise WorkdirBusy(
                f"{self.path.parent} is in use by another training process ({holder}); "
                "wait for it to finish or use another --workdir"
            ) from None
        previous = _read_holder(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} host {socket.gethostname()}\n".encode(), 0)
        if previous:
            logger.info("took over %s (last held by %s)", self.path, previous)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd: int) -> str:
    try:
        words = os.pread(fd, 200, 0).decode(errors="replace").split()
    except OSError:
        return ""
    info = dict(zip(words[::2], words[1::2], strict=False))
    if "pid" not in info:
        return ""
    return f"PID {info['pid']} on host {info.get('host', '?')}"


def is_workdir(path: str | os.PathLike) -> bool:
    return (Path(path) / CHECKPOINT_DIR).is_dir()


def stage_model(config) -> str:
    """The registered model a stage trains (its export), or a ``ValueError``."""
    if config.task not in STAGE_MODELS:
        raise ValueError(f"stage {config.task} has no stand-alone inference model to export")
    return STAGE_MODELS[config.task]


def load_weights(path: str, expect_model: str | None = None) -> tuple[Any, dict]:
    """(Flax module, variables) of a weights directory (``convert_weights`` / ``export_weights``)
    or of the generator state of a training workdir (module rebuilt from its saved config)."""
    if is_workdir(path):
        _, tree, saved = latest_state_tree(path)
        config = ConfigDict(saved)
        name = stage_model(config)
        if expect_model and name != expect_model:
            raise InitError(f"{path} trains {name}, expected {expect_model}")
        state = tree["g"]
        variables = {"params": state["params"], **state["model_state"]}
        return build_model(name, config), jax.tree.map(jnp.asarray, variables)
    model, variables, meta = load_pretrained(path)
    if expect_model and meta["model"] != expect_model:
        raise InitError(f"weights in {path} are a {meta['model']} model, expected {expect_model}")
    return model, variables
