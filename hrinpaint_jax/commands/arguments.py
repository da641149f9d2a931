"""Argument types shared by the commands: argparse calls them on the raw text, so a bad value is a
usage error (``hrinpaint CMD: error: argument --flag: ...``, exit 2) before any work starts."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in ``low..high`` (``high`` None: no upper bound)."""
    want = f"in {low}..{high}" if high is not None else f">= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return value

    return parse


def float_range(low: float, high: float | None = None) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (``high`` None: no upper bound)."""
    want = f"in {low:g}..{high:g}" if high is not None else f">= {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        bad = value is None or not math.isfinite(value) or value < low
        if bad or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return value

    return parse
