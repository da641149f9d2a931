"""Helpers for the absl-based entry points (``train.py``, ``evaluate.py``)."""

import sys

from absl import app


def run(main) -> None:
    """``absl.app.run(main)``, except that ``--help`` exits with status 0 (absl uses 1)."""
    if any(arg in ("-h", "--help", "--helpshort") for arg in sys.argv[1:]):
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)
    app.run(main)
