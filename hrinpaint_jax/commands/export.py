"""`hrinpaint export WORKDIR OUT`: the latest trained model of a ``train.py`` workdir as a weights
directory (the layout ``convert_weights`` writes)."""

from __future__ import annotations

import argparse
import sys

from hrinpaint_jax.commands.arguments import int_range


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write the latest trained model of a train.py workdir as a weights directory"
    )
    p.add_argument("workdir", help="train.py --workdir of a dfnet, shift_refine or zoom_joint run")
    p.add_argument("output", help="new weights directory, e.g. weights_ours/dfnet")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="storage type of the weights (loaded back as float32; default float32)",
    )
    p.add_argument(
        "--work-size",
        type=int,
        default=None,
        help="zoom only: record the longer image side the model runs at (--zoom-size auto)",
    )
    p.add_argument(
        "--precise-bn",
        type=int_range(0),
        default=0,
        metavar="N",
        help="replace the BatchNorm running averages by the statistics of one train-mode forward "
        "on N training images of the run's config (for small-batch runs; 32 is a good N; the "
        "workdir is not changed)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hrinpaint_jax.export import export_weights
    from hrinpaint_jax.train_checkpoints import is_workdir

    if not is_workdir(args.workdir):
        raise ValueError(f"{args.workdir} is not a train.py workdir (no checkpoints/ inside)")
    if args.precise_bn > 0:
        print(
            f"BatchNorm statistics: one train-mode forward on {args.precise_bn} training "
            "images (about a minute on a CPU)",
            file=sys.stderr,
        )
    out = export_weights(
        args.workdir,
        args.output,
        overwrite=args.overwrite,
        dtype=args.dtype,
        work_size=args.work_size,
        precise_bn=args.precise_bn,
    )
    print(out)
    return 0
