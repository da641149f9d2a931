"""Evaluation protocols of the two papers, methods to compare, and readable reports.

``run_evaluation(config, workdir)`` is what ``evaluate.py --config configs/eval_*.py`` calls. The
package follows big_vision's evaluators: ``data.py`` (held-out photos, masters, masks),
``methods.py`` (the methods under evaluation and where they run), ``protocol.py`` (the run, on every
device and host) and ``reports.py`` (CSV, JSON, Markdown tables, plots, strips).
"""

from hrinpaint_jax.evaluation.data import SAMPLES, EvalImage, hole_at, image_at, load_images
from hrinpaint_jax.evaluation.methods import (
    METHODS,
    ZOOM_VARIANTS,
    Devices,
    build_methods,
    method_run_at,
    run_method,
)
from hrinpaint_jax.evaluation.protocol import run_evaluation, split_names, validate_config

__all__ = [
    "METHODS",
    "SAMPLES",
    "ZOOM_VARIANTS",
    "Devices",
    "EvalImage",
    "build_methods",
    "hole_at",
    "image_at",
    "load_images",
    "method_run_at",
    "run_evaluation",
    "run_method",
    "split_names",
    "validate_config",
]
