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
import os
import sys

from hrinpaint_jax.commands import COMMANDS, convert
from hrinpaint_jax.runtime import Terminated, command_process, tune_cpu_flags


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hrinpaint",
        description=__doc__.strip().splitlines()[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return p


# A Ctrl-C / SIGTERM can land while XLA compiles on its own threads (jaxlib checks for signals
# during compilation). Freeing the interrupted frames then pulls objects from under those threads
# and the process died by SIGSEGV (exit -11) instead of 143. So the interruption is kept alive here
# and ``program`` leaves through ``os._exit`` once the outputs have been cleaned up.
_INTERRUPTED: list[BaseException] = []


def program() -> None:
    """The ``hrinpaint`` console script: ``main()``, then exit with its code (see ``_INTERRUPTED``)."""
    code = main()
    if code in (130, 143) and _INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv=None) -> int:
    """Runs one command; returns its exit code: 0, 2 refused, 130 Ctrl-C, 143 SIGTERM."""
    tune_cpu_flags()  # before anything imports jax
    argv = list(sys.argv[1:] if argv is None else argv)
    with command_process():
        try:
            if argv[:1] == ["convert"]:
                return convert.run_argv(argv[1:])
            try:
                args = build_parser().parse_args(argv)
            except SystemExit as e:  # --help (0) or a usage error (2): argparse printed it
                return e.code
            return args.run(args)
        except KeyboardInterrupt as e:  # partial outputs are removed on the way out
            _INTERRUPTED.append(e)
            terminated = isinstance(e, Terminated)
            print(f"hrinpaint: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
            return 143 if terminated else 130
        except ValueError as e:  # InputError, CheckpointError, ConversionError, argument checks
            print(f"hrinpaint: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            print(f"hrinpaint: error: {e.strerror or e}{where}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    program()
