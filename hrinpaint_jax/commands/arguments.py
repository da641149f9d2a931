"""Argument types shared by the commands: argparse calls them on the raw text, so a bad value is a
usage error (``hrinpaint CMD: error: argument --flag: ...``, exit 2) before any work starts."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number_range(convert, low, high) -> Callable[[str], float]:
    """``convert(text)``, finite and in ``low..high`` (``high`` None: no upper bound)."""
    show = str if convert is int else (lambda v: format(v, "g"))
    want = f"in {show(low)}..{show(high)}" if high is not None else f">= {show(low)}"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        bad = value is None or not math.isfinite(value) or value < low
        if bad or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return value

    return parse


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in ``low..high`` (``high`` None: no upper bound)."""
    return _number_range(int, low, high)


def float_range(low: float, high: float | None = None) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (``high`` None: no upper bound)."""
    return _number_range(float, low, high)
