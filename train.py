"""Train a hrinpaint_jax stage: ``python train.py --config configs/X.py --workdir DIR``.

Thin entry point: flags are parsed here, the loop lives in ``hrinpaint_jax.train_lib``. Config
fields can be overridden on the command line, e.g. ``--config.optim.lr=1e-4``. Multi-host: start one
process per host with ``--coordinator_address=HOST:PORT --num_processes=N --process_id=I`` (or the
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID variables, or a SLURM job).
"""

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from hrinpaint_jax import entry

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "tiny.py"),
    "Training configuration file (configs/<stage>.py; configs/tiny.py:<stage> for smoke runs).",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, samples and TensorBoard logs.")
flags.DEFINE_string("coordinator_address", None, "Multi-host: HOST:PORT of process 0.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: index of this process.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from hrinpaint_jax import parallel, train_lib

    logging.getLogger("hrinpaint_jax").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:  # orbax logs every save and restore at INFO
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or "/orbax/" not in r.pathname)
    parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    try:
        train_lib.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (train_lib.TrainingDiverged, train_lib.InitError, FileNotFoundError, ValueError) as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 3 if isinstance(e, train_lib.TrainingDiverged) else 2
    return 0


if __name__ == "__main__":
    entry.run(main)
