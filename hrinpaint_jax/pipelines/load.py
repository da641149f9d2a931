"""Finding and loading the inpainting pipelines' weights: ``--weights``, ``$HRINPAINT_WEIGHTS`` or
the bundled models, and the host-memory default for the pipelines' tiling budget."""

from __future__ import annotations

import os
from pathlib import Path

from hrinpaint_jax.image_io import InputError

WEIGHTS_ENV = "HRINPAINT_WEIGHTS"
# The embedded default: our own models trained on real photos (configs/ours.py, make weights-ours),
# stored as float16 and restored as float32.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "weights"


# Present in DEFAULT_WEIGHTS while ``tools/gate_compare.py --ship`` swaps networks in, and left there
# by a killed one until its next run finishes or undoes the switch.
SHIP_JOURNAL = ".gate_compare-journal.json"

# Weights subfolders each method needs (written by python -m convert_weights or make demo).
METHOD_WEIGHTS = {"two_stage": ("dfnet", "shift_refine"), "zoom": ("zoom",)}


def resolve_weights(weights: str | None, method: str = "two_stage") -> Path:
    """The weights folder: ``--weights``, else ``$HRINPAINT_WEIGHTS``, else the bundled default
    (``DEFAULT_WEIGHTS``: our models trained on real photos, ``configs/ours.py``). It must hold the
    method's subfolders (``dfnet/`` and ``shift_refine/``, or ``zoom/``) written by ``python -m
    convert_weights`` or ``hrinpaint export``."""
    need = METHOD_WEIGHTS[method]
    wanted = " and ".join(f"{n}/" for n in need)
    chosen = weights or os.environ.get(WEIGHTS_ENV)
    if not chosen:
        if (DEFAULT_WEIGHTS / SHIP_JOURNAL).exists():
            raise InputError(
                f"the bundled weights in {DEFAULT_WEIGHTS} are mid-switch (an interrupted or running "
                "tools/gate_compare.py --ship); run 'python tools/gate_compare.py --recover' to finish "
                "or undo it"
            )
        if all((DEFAULT_WEIGHTS / name).is_dir() for name in need):
            return DEFAULT_WEIGHTS
        raise InputError(
            f"no weights: pass --weights DIR or set ${WEIGHTS_ENV} (the bundled {DEFAULT_WEIGHTS} "
            f"lacks {wanted}); for --method {method} DIR holds {wanted} made by python -m "
            "convert_weights or hrinpaint export"
        )
    path = Path(chosen)
    if _is_model_dir(path):
        # A converted model folder itself (``convert_weights --output weights/zoom``): accept it when
        # it is the method's only network or sits beside the others in its parent.
        if len(need) == 1 and path.name != need[0] and _model_name(path) == need[0]:
            return _single_model_view(path, need[0])
        if path.name in need:
            path = path.parent
    missing = [name for name in need if not (path / name).is_dir()]
    if not path.is_dir() or missing:
        raise InputError(
            f"weights folder {path} lacks {', '.join(missing) or 'its subfolders'}/ "
            f"(--method {method} expects {wanted} from python -m convert_weights)"
        )
    return path


def default_memory_budget_gb() -> float | None:
    """80 % of the memory available now (Linux ``MemAvailable``) when JAX runs on the CPU; None
    elsewhere (accelerator memory is not host memory) or when it cannot be read."""
    import jax

    if jax.default_backend() != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return 0.8 * int(fields["MemAvailable"].split()[0]) * 1024 / 1e9
    except (OSError, KeyError, ValueError):
        return None


def load_inpainter(
    weights: str | None,
    faithful: bool = True,
    hole_local: bool | None = None,
    tile_size: int | None = None,
    memory_budget_gb: float | None = None,
    method: str = "two_stage",
    zoom_size: int | str | None = "auto",
    dtype: str = "float32",
):
    """Loads the method's networks: a ``TwoStageInpainter`` or a ``ZoomInpainter`` (both are called
    as ``inpainter(rgb_uint8, hole_bool) -> rgb_uint8``, True = hole; ``pipelines/inputs.py``).
    ``dtype``: the networks' computation dtype, 'float32' (reference parity) or 'bfloat16'
    (parameters stay float32)."""
    from hrinpaint_jax.checkpoints import CheckpointError
    from hrinpaint_jax.pipelines.two_stage import TwoStageInpainter

    path = resolve_weights(weights, method)
    if method == "zoom":
        from hrinpaint_jax.pipelines.zoom import ZoomInpainter

        try:
            return ZoomInpainter.from_pretrained(
                path / "zoom", memory_budget_gb=memory_budget_gb, work_size=zoom_size, dtype=dtype
            )
        except CheckpointError as e:
            raise InputError(str(e)) from None
    try:
        return TwoStageInpainter.from_pretrained(
            path / "dfnet",
            path / "shift_refine",
            faithful=faithful,
            hole_local=hole_local,
            tile_size=tile_size,
            memory_budget_gb=memory_budget_gb,
            dtype=dtype,
        )
    except CheckpointError as e:
        raise InputError(str(e)) from None


def _is_model_dir(path: Path) -> bool:
    return (path / "metadata").is_dir() and (path / "variables").is_dir()


def _model_name(path: Path) -> str | None:
    from hrinpaint_jax.checkpoints import CheckpointError, read_metadata

    try:
        return read_metadata(path).get("model")
    except CheckpointError:  # a damaged folder is reported by the loader itself
        return None


def _single_model_view(path: Path, name: str) -> Path:
    """A weights folder holding ``name/`` -> ``path`` (a symlink in a private temporary folder), for
    a model folder the user named differently (``--weights my_zoom_run``)."""
    import atexit
    import shutil
    import tempfile

    view = Path(tempfile.mkdtemp(prefix="hrinpaint_weights_"))
    atexit.register(shutil.rmtree, view, ignore_errors=True)
    (view / name).symlink_to(path.resolve(), target_is_directory=True)
    return view
