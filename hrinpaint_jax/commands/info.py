"""`hrinpaint info WEIGHTS_DIR`: a converted weights directory's metadata, as JSON."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="print the metadata of a weights directory")
    p.add_argument("weights", help="directory written by convert_weights")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hrinpaint_jax.checkpoints import read_metadata

    print(json.dumps(read_metadata(args.weights), indent=2))
    return 0
