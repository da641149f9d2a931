"""The ``hrinpaint`` subcommands, one module each.

Every module has ``add_parser(subparsers)``, which registers the subcommand with its arguments and
help and sets ``run`` as its default, and ``run(args) -> int``, which runs it and returns the exit
code. ``hrinpaint_jax/cli.py`` builds the top-level parser from them and turns the package's
user-facing errors into one-line messages. Module-level imports stay light (no JAX): ``cli.py``
tunes the XLA flags before anything imports it.
"""

from hrinpaint_jax.commands import (
    convert,
    demo,
    export,
    info,
    inpaint,
    install_gimp_plugin,
    plot_curves,
    prepare_photos,
)

# In the order ``hrinpaint --help`` lists them.
COMMANDS = (inpaint, demo, convert, export, prepare_photos, plot_curves, info, install_gimp_plugin)
