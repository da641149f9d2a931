"""The ``hrinpaint`` command.

hrinpaint inpaint --image IMG --mask MASK --output OUT [--weights DIR]   inpaint one image
hrinpaint inpaint --image DIR --mask DIR --output DIR [--weights DIR]   ... or a folder (by name)
hrinpaint inpaint --method zoom ...                                     ... with Zoom-to-Inpaint
hrinpaint demo [--out DIR]          inpaint two bundled photos with both methods (bundled weights)
hrinpaint convert ...               same as ``python -m convert_weights ...``
hrinpaint info WEIGHTS_DIR          print a converted weights directory's metadata
hrinpaint export WORKDIR OUT        the latest trained model of a train.py workdir as weights
hrinpaint plot-curves RUN... --out PNG   loss curves of train.py workdirs (TensorBoard logs)
hrinpaint prepare-photos SRC OUT    held-out set and training folders from a folder of photos
hrinpaint install-gimp-plugin       add Filters > Enhance > HR Inpaint... to GIMP 3
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hrinpaint",
        description=__doc__.strip().splitlines()[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    inp = sub.add_parser("inpaint", help="fill the holes of an image (or a folder of images)")
    inp.add_argument("--image", required=True, help="image file, or a folder of images")
    inp.add_argument(
        "--mask",
        required=True,
        help="mask file, or a folder of masks paired with the images by file name",
    )
    inp.add_argument("--output", required=True, help="output file, or a folder in folder mode")
    inp.add_argument(
        "--weights",
        default=None,
        help="weights folder (default $HRINPAINT_WEIGHTS): dfnet/ and shift_refine/ for "
        "two_stage, zoom/ for zoom",
    )
    inp.add_argument(
        "--method",
        default="two_stage",
        choices=["two_stage", "zoom"],
        help="two_stage: DFNet + shift refinement (Moskalenko et al.; default); zoom: "
        "Zoom-to-Inpaint (Kim et al.), run at the image's own resolution",
    )
    inp.add_argument(
        "--zoom-size",
        default="auto",
        help="zoom only: run on the image shrunk to this longer side and paste the fill back "
        "(auto: the size recorded with the weights, e.g. 512 for the bundled model; 0: the "
        "image's own resolution)",
    )
    inp.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="computation dtype of the networks (weights stay float32): float32 (default; exact "
        "reference results) or bfloat16 (faster on GPUs/TPUs; slightly different pixels)",
    )
    inp.add_argument(
        "--hole-value",
        default="white",
        choices=["white", "black"],
        help="which mask value marks the hole (default white, as the reference's masks)",
    )
    inp.add_argument(
        "--mask-threshold",
        type=int,
        default=128,
        help="binarisation threshold for antialiased masks, 1..255 (default 128)",
    )
    inp.add_argument("--dilate", type=int, default=0, help="grow the hole by N pixels (default 0)")
    inp.add_argument("--overwrite", action="store_true", help="replace existing output files")
    inp.add_argument(
        "--fixed",
        action="store_true",
        help="two_stage only: fix the reference's bugs instead of reproducing it exactly (see README)",
    )
    inp.add_argument(
        "--no-hole-local",
        action="store_true",
        help="two_stage only: run the refinement decoder on the whole image (same result, slower)",
    )
    inp.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="two_stage only: refine in overlapping tiles of this size (multiple of 256) when "
        "the image is larger, to bound memory; approximate",
    )
    inp.add_argument(
        "--memory-budget",
        type=float,
        default=None,
        metavar="GB",
        help="refine in tiles when the refinement would need more host memory than this "
        "(default: 80%% of the memory available now, on CPU)",
    )
    demo = sub.add_parser("demo", help="run both networks on a bundled photo")
    demo.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    demo.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="timed calls per photo and method; the first compiles (default 2)",
    )
    demo.add_argument(
        "--trained",
        default=None,
        metavar="WORKDIR",
        help="first inpaint the held-out photo with the model trained there by "
        "train.py --config configs/demo.py (make demo does)",
    )
    demo.add_argument(
        "--weights",
        default=None,
        help="weights folder with dfnet/, shift_refine/ and zoom/ (default $HRINPAINT_WEIGHTS, "
        "else the bundled weights)",
    )
    sub.add_parser(
        "convert",
        help="convert a PyTorch checkpoint (see python -m convert_weights -h)",
        add_help=False,
    )
    export = sub.add_parser(
        "export", help="write the latest trained model of a train.py workdir as a weights directory"
    )
    export.add_argument("workdir", help="train.py --workdir of a dfnet, shift_refine or zoom_joint run")
    export.add_argument("output", help="new weights directory, e.g. weights_ours/dfnet")
    export.add_argument("--overwrite", action="store_true", help="replace an existing output")
    export.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="storage type of the weights (loaded back as float32; default float32)",
    )
    export.add_argument(
        "--work-size",
        type=int,
        default=None,
        help="zoom only: record the longer image side the model runs at (--zoom-size auto)",
    )
    export.add_argument(
        "--precise-bn",
        type=int,
        default=0,
        metavar="N",
        help="replace the BatchNorm running averages by the statistics of one train-mode forward "
        "on N training images of the run's config (for small-batch runs; 32 is a good N; the "
        "workdir is not changed)",
    )
    photos = sub.add_parser(
        "prepare-photos",
        help="split photos into a held-out set and downscaled training folders (configs/ours.py)",
    )
    photos.add_argument("source", help="folder of photos, e.g. from get_train_photos.sh")
    photos.add_argument("out", help="output folder, e.g. data/photos (reruns skip existing files)")
    curves = sub.add_parser("plot-curves", help="plot the loss curves of train.py workdirs to a PNG")
    curves.add_argument("workdirs", nargs="+", help="train.py --workdir folders (one panel each)")
    curves.add_argument("--out", required=True, help="PNG to write")
    curves.add_argument("--smoothing", type=float, default=0.6, help="EMA weight, 0..1 (default 0.6)")
    curves.add_argument("--csv", default=None, help="also write every logged scalar to this CSV")
    info = sub.add_parser("info", help="print the metadata of a weights directory")
    info.add_argument("weights", help="directory written by convert_weights")
    gimp = sub.add_parser(
        "install-gimp-plugin",
        help="install the GIMP 3 plug-in (Filters > Enhance > HR Inpaint...) into a GIMP profile",
    )
    gimp.add_argument(
        "--gimp-dir",
        default=None,
        help="GIMP 3 profile folder (default $GIMP3_DIRECTORY, else e.g. ~/.config/GIMP/3.0)",
    )
    gimp.add_argument(
        "--python",
        default=None,
        help="the project's Python the plug-in runs (default: the one running this command)",
    )
    gimp.add_argument(
        "--weights",
        default=None,
        help="default weights folder of the dialog (default $HRINPAINT_WEIGHTS)",
    )
    gimp.add_argument(
        "--link",
        action="store_true",
        help="symlink the plug-in files to this checkout instead of copying",
    )
    return p


def main(argv=None) -> int:
    from hrinpaint_jax.runtime import tune_cpu_flags

    tune_cpu_flags()  # before anything imports jax
    argv = list(sys.argv[1:] if argv is None else argv)
    # The package's warnings (e.g. a switch to tiled refinement) reach the user as stderr lines.
    logger = logging.getLogger("hrinpaint_jax")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
    if argv[:1] == ["convert"]:
        from convert_weights.__main__ import main as convert_main

        return convert_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from hrinpaint_jax.demo import run_demo, run_trained_demo

            if args.trained:
                run_trained_demo(args.trained, args.out)
            run_demo(args.out, args.weights, repeats=args.repeats)
        elif args.command == "inpaint":
            from hrinpaint_jax.inpaint import MaskOptions, run_inpaint
            from hrinpaint_jax.pipelines.load import default_memory_budget_gb

            if args.tile_size is not None and (args.tile_size <= 0 or args.tile_size % 256):
                raise ValueError(f"--tile-size must be a positive multiple of 256, got {args.tile_size}")
            zoom_size = args.zoom_size
            if zoom_size != "auto":
                if not zoom_size.isdigit() or 0 < int(zoom_size) < 16:
                    raise ValueError(f"--zoom-size must be auto, 0 or >= 16, got {zoom_size}")
                zoom_size = int(zoom_size)
            if args.method != "zoom" and args.zoom_size != "auto":
                raise ValueError("--zoom-size: only for --method zoom")
            if args.method == "zoom":
                used = [
                    flag
                    for flag, on in (
                        ("--fixed", args.fixed),
                        ("--no-hole-local", args.no_hole_local),
                        ("--tile-size", args.tile_size is not None),
                    )
                    if on
                ]
                if used:
                    raise ValueError(f"{', '.join(used)}: only for --method two_stage")
            return run_inpaint(
                args.image,
                args.mask,
                args.output,
                weights=args.weights,
                method=args.method,
                mask_options=MaskOptions(args.hole_value, args.mask_threshold, args.dilate),
                overwrite=args.overwrite,
                faithful=not args.fixed,
                hole_local=False if args.no_hole_local else None,
                tile_size=args.tile_size,
                memory_budget_gb=args.memory_budget
                if args.memory_budget is not None
                else default_memory_budget_gb(),
                zoom_size=zoom_size,
                dtype=args.dtype,
            )
        elif args.command == "info":
            from hrinpaint_jax.checkpoints import read_metadata

            print(json.dumps(read_metadata(args.weights), indent=2))
        elif args.command == "export":
            from hrinpaint_jax.train_lib import export_weights, is_workdir

            if not is_workdir(args.workdir):
                raise ValueError(f"{args.workdir} is not a train.py workdir (no checkpoints/ inside)")
            if args.precise_bn > 0:
                print(f"BatchNorm statistics: one train-mode forward on {args.precise_bn} training "
                      "images (about a minute on a CPU)", file=sys.stderr)  # fmt: skip
            print(export_weights(args.workdir, args.output, overwrite=args.overwrite, dtype=args.dtype,
                                 work_size=args.work_size, precise_bn=args.precise_bn))  # fmt: skip
        elif args.command == "plot-curves":
            from hrinpaint_jax.curves import plot_curves

            print(plot_curves(args.workdirs, args.out, smoothing=args.smoothing))
            if args.csv:
                from hrinpaint_jax.curves import write_csv

                print(write_csv(args.workdirs, args.csv))
        elif args.command == "prepare-photos":
            from hrinpaint_jax.photos import prepare_photos

            def show(done, total, name):
                print(f"\r[{done}/{total}] {name:<48}", end="", file=sys.stderr, flush=True)

            counts = prepare_photos(args.source, args.out, progress=show)
            print(file=sys.stderr)
            print(", ".join(f"{k}: {v} files" for k, v in counts.items()))
        elif args.command == "install-gimp-plugin":
            from hrinpaint_jax.gimp import install_plugin

            install_plugin(args.gimp_dir, args.python, args.weights, link=args.link)
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
