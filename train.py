"""Train a hrinpaint_jax network: ``python train.py --config configs/X.py --workdir DIR``.

Thin entry point: flags are parsed here, the loop lives in the library. Config fields can be
overridden on the command line, e.g. ``--config.dfnet.base_features=32``.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from hrinpaint_jax import entry

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.py"),
    "Training configuration file.",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and TensorBoard logs.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    print(
        "train.py: the training loop is not yet available in this version of hrinpaint_jax; "
        "the networks, the weight converter and inference are.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    entry.run(main)
