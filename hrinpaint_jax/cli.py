"""The ``hrinpaint`` command.

hrinpaint demo [--out DIR]          convert the fixture weights, run both networks on a bundled photo
hrinpaint convert ...               same as ``python -m convert_weights ...``
hrinpaint info WEIGHTS_DIR          print a converted weights directory's metadata
"""

from __future__ import annotations

import argparse
import json
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hrinpaint",
        description=__doc__.strip().splitlines()[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run both networks on a bundled photo")
    demo.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    demo.add_argument(
        "--fixtures",
        default=None,
        help="parity-fixture folder (default $HRINPAINT_FIXTURES or ../shared/fixtures)",
    )
    demo.add_argument(
        "--refine-size",
        type=int,
        default=1024,
        help="resolution of the refinement run (multiple of 256; default 1024)",
    )
    sub.add_parser(
        "convert",
        help="convert a PyTorch checkpoint (see python -m convert_weights -h)",
        add_help=False,
    )
    info = sub.add_parser("info", help="print the metadata of a weights directory")
    info.add_argument("weights", help="directory written by convert_weights")
    return p


def main(argv=None) -> int:
    from hrinpaint_jax.runtime import tune_cpu_flags

    tune_cpu_flags()  # before anything imports jax
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["convert"]:
        from convert_weights.__main__ import main as convert_main

        return convert_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from hrinpaint_jax.demo import run_demo

            if args.refine_size <= 0 or args.refine_size % 256:
                raise ValueError(
                    f"--refine-size must be a positive multiple of 256, got {args.refine_size}"
                )
            run_demo(args.out, args.fixtures, args.refine_size)
        elif args.command == "info":
            from hrinpaint_jax.checkpoints import read_metadata

            print(json.dumps(read_metadata(args.weights), indent=2))
    except ValueError as e:  # includes the converter's and the weights loader's errors
        print(f"hrinpaint: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"hrinpaint: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
