"""Evaluate inpainting methods with the papers' metrics: ``python evaluate.py --config configs/X.py``.

Thin entry point: flags are parsed here, the protocols live in the library.
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
    "Evaluation configuration file.",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Directory for the per-image CSV, summary and plots.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    print(
        "evaluate.py: evaluation protocols are not yet available in this version of "
        "hrinpaint_jax; the networks, the weight converter and inference are.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    entry.run(main)
