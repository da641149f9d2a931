"""`hrinpaint convert ...`: the same as ``python -m convert_weights ...``.

The converter owns its arguments (``-h`` included), so the dispatcher hands it the raw argument
list through :func:`run_argv` instead of parsing them; the subparser only lists it in ``--help``.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a PyTorch checkpoint (see python -m convert_weights -h)",
        add_help=False,
    )
    p.set_defaults(run=run)


def run_argv(argv: list[str]) -> int:
    from convert_weights.__main__ import main as convert_main

    return convert_main(argv)


def run(args: argparse.Namespace) -> int:  # only reached through parse_args, i.e. never in cli.main
    return run_argv([])
