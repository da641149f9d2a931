"""Command line: convert a released checkpoint into a hrinpaint_jax weights directory.

  python -m convert_weights --model auto --input model_places2.pth --output weights/dfnet [--verify]
  python -m convert_weights --model auto --input refinement.pth --output weights/shift_refine
  python -m convert_weights --model zoom --input ckpt/ckpt-1500 --output weights/zoom

PyTorch files (DFNet, the shift refinement U-Net) need torch; the Zoom-to-Inpaint TF2 checkpoint
(a prefix such as ckpt/ckpt-1500, its .index file, or the folder with the 'checkpoint' file) needs
tensorflow.
"""

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert_weights",
        description=__doc__.strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default="auto",
        choices=["auto", "dfnet", "refinement", "shift_refine", "zoom"],
        help="source model; 'auto' detects it from the file and its keys (default)",
    )
    p.add_argument(
        "--input",
        required=True,
        help="PyTorch checkpoint (.pth, zip or legacy format) or TF checkpoint prefix / folder",
    )
    p.add_argument("--output", required=True, help="weights directory to create")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output directory (only once the new one is complete)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="load the result and run it on a fixed input (512x512; 256x256 for zoom); print statistics",
    )
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from hrinpaint_jax.runtime import tune_cpu_flags

    tune_cpu_flags()  # before anything imports jax
    from convert_weights import ALIASES, TABLES
    from hrinpaint_jax.checkpoints import CheckpointError
    from hrinpaint_jax.conversion import ConversionError, convert_checkpoint

    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    try:
        model, out = convert_checkpoint(
            args.input,
            args.output,
            TABLES,
            model=ALIASES.get(args.model, args.model),
            overwrite=args.overwrite,
            log=log,
        )
        if args.verify:
            from hrinpaint_jax.conversion import verify_pretrained

            verify_pretrained(out, log=print)
    except (ConversionError, CheckpointError) as e:
        print(f"convert_weights: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permissions, ... while writing
        print(f"convert_weights: error: {e.strerror or e}: {e.filename or args.output}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
