"""Helpers for the absl-based entry points (``train.py``, ``evaluate.py``).

``run`` parses the flags itself, before ``absl.app.run``, so that a bad flag or config override
(``--config.nosuch=1``, ``--config=configs/nosuch.py``, ``--config.num_train_steps=abc``) ends in
one line naming it and exit status 2, not a traceback. ml_collections reads the config file and
its overrides when the ``--config`` flag is defined, so the flags are defined here too.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable

from absl import app, flags

USAGE_ERROR = 2


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _override_of(key: str, argv: list[str]) -> str:
    """The ``--config.A.B=V`` argument that names the unknown field ``key``."""
    for arg in argv:
        m = re.match(r"--?(\w+)\.([\w.]+)", arg)
        if m and key in m.group(2).split("."):
            return arg
    return key


def describe_flag_error(e: BaseException, argv: list[str]) -> str:
    """One line for a flag / config-file error."""
    if isinstance(e, (KeyError, AttributeError)):  # a --config.FIELD override naming no field
        key = str(e).strip("'\" ")
        return f"unknown config field {key!r} in {_override_of(key, argv)}"
    if isinstance(e, flags.Error):
        text = str(e).strip()
        first, last = text.splitlines()[0], _last_line(text)
        if "Error whilst parsing config file" in first:  # get_config raised: its last line says why
            first = first.split(": Error whilst", 1)[0]
        return first if last == first or last in first else f"{first.rstrip(':')}: {last}"
    cause = e.__cause__ or e
    text = str(cause)
    if "Failed loading config file" in text:  # e.g. --config=configs/nosuch.py
        return f"--config: cannot load the config file ({_last_line(text)})"
    return _last_line(text) or type(e).__name__


def run(main: Callable, define_flags: Callable[[], None] | None = None) -> None:
    """``absl.app.run(main)`` after defining (``define_flags``) and parsing the flags here: a bad
    flag prints ``PROG: error: ...`` and exits 2; ``--help`` exits 0 (absl uses 1)."""
    prog = os.path.basename(sys.argv[0])
    if any(arg in ("-h", "--help", "--helpshort") for arg in sys.argv[1:]):
        if define_flags is not None:
            with contextlib.suppress(Exception):  # a bad --config beside --help: still help
                define_flags()
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)
    argv = list(sys.argv)
    try:
        if define_flags is not None:
            define_flags()
        app.define_help_flags()
        argv = flags.FLAGS(argv)
        if "config" in flags.FLAGS:
            flags.FLAGS.config.keys()  # ml_collections defers a load error to the first use
    except Exception as e:  # noqa: BLE001 - absl, ml_collections and the config file raise any type
        print(f"{prog}: error: {describe_flag_error(e, sys.argv[1:])}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    app.run(main, argv=argv, flags_parser=lambda _: argv)
