"""Evaluate inpainting methods with the papers' metrics and protocols.

    python evaluate.py --config configs/eval_zoom.py --workdir DIR [--config.weights=WEIGHTS]

Protocols are configs: ``configs/eval_zoom.py`` (Zoom-to-Inpaint's test protocol),
``configs/eval_twostage_multires.py`` (seed-000's multi-resolution comparison),
``configs/eval_ablation.py`` (the zoom ablation). Any field can be overridden on the command line,
e.g. ``--config.methods='(opencv_telea, two_stage)' --config.resolutions='(512, 1024)'`` (names
quoted or not); ``--config.dtype=bfloat16`` runs the networks in bfloat16 (weights float32).
Multi-host: start one process per host with ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID`` set (or under a scheduler JAX detects); the images are split over the processes,
each process's batches over its devices, and process 0 writes the reports.

Thin entry point: flags are parsed here, everything else is ``hrinpaint_jax.evaluation``.
"""

import os
import signal
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from hrinpaint_jax import entry

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined when ``entry.run`` parses (ml_collections reads the config file right here)."""
    config_flags.DEFINE_config_file(
        "config",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "eval_zoom.py"),
        "Evaluation protocol config (configs/eval_*.py).",
        lock_config=True,
    )
    flags.DEFINE_string(
        "workdir", None, "Folder for the per-image CSV, summary, table, plots and strips."
    )
    flags.DEFINE_alias("output", "workdir")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv):
    """Exit status: 0 done, 2 refused (bad argument, input or weights), 130 Ctrl-C, 143 SIGTERM."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.workdir:
        print("evaluate.py: error: --workdir (or --output) is required", file=sys.stderr)
        return 2
    if not FLAGS["verbosity"].present:
        # absl turns INFO on by default; the checkpoint loader's INFO lines would bury the report.
        absl_logging.set_verbosity(absl_logging.WARNING)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        from hrinpaint_jax.runtime import tune_cpu_flags

        tune_cpu_flags()  # before anything imports jax
        from hrinpaint_jax.conversion import ConversionError
        from hrinpaint_jax.evaluation import run_evaluation
        from hrinpaint_jax.image_io import InputError
        from hrinpaint_jax.parallel import initialize_distributed

        try:
            initialize_distributed()  # a no-op unless a multi-host run is asked for
            run_evaluation(FLAGS.config, FLAGS.workdir)
        except (InputError, ConversionError, OSError) as e:  # ConversionError: VGG / LPIPS weights
            print(f"evaluate.py: error: {e}", file=sys.stderr)
            return 2
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(f"evaluate.py: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    return 0


if __name__ == "__main__":
    entry.run(main, define_flags)
