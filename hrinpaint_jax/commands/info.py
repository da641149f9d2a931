"""`hrinpaint info WEIGHTS_DIR`: a weights directory's metadata, as JSON; ``--training``: the
per-task totals of its training record (updates, hours, accelerator device-minutes) as a Markdown
table."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="print the metadata of a weights directory")
    p.add_argument("weights", help="directory written by convert_weights or hrinpaint export")
    p.add_argument(
        "--training",
        action="store_true",
        help="print only the totals of the training record, as a Markdown table",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hrinpaint_jax.checkpoints import read_metadata
    from hrinpaint_jax.training_record import table

    meta = read_metadata(args.weights)
    if not args.training:
        print(json.dumps(meta, indent=2))
        return 0
    text = table(meta)
    if not text:
        print(
            f"hrinpaint: {args.weights} has no training record (converted weights, or exported "
            "before the record existed)",
            file=sys.stderr,
        )
        return 1
    print(text)
    return 0
