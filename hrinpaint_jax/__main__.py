"""``python -m hrinpaint_jax``: the ``hrinpaint`` command."""

from hrinpaint_jax.cli import program

program()
