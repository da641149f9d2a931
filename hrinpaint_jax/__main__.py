"""``python -m hrinpaint_jax``: the ``hrinpaint`` command."""

import sys

from hrinpaint_jax.cli import main

sys.exit(main())
