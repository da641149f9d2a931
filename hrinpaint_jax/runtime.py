"""Process-level XLA settings, applied by the command-line tools before JAX is imported.

On CPU, jaxlib 0.10 lowers convolutions to YNNPACK fusions by default. Sending them to XLA's own
(Eigen) convolution instead (``--xla_cpu_experimental_ynn_fusion_type=`` with an empty value) made
the refinement U-Net 12-24 % faster on a 2-core AVX-512 machine and left DFNet within 7 %
(``benchmarks/forward_cpu.py``; numbers in the README). The flag is experimental, and XLA aborts on
flags it does not know. So it is added only for jaxlib versions where it was measured, only when the
user has not set it, and never when ``HRINPAINT_XLA_TUNING=0``.
"""

from __future__ import annotations

import os

YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
_MEASURED_JAXLIB = ("0.10.",)


def tune_cpu_flags(environ=os.environ) -> bool:
    """Adds the measured CPU convolution flag to ``XLA_FLAGS``; returns True if it did.

    Must run before JAX initialises its backends (flags are read once per process). GPU/TPU
    backends ignore XLA CPU flags.
    """
    from importlib.metadata import PackageNotFoundError, version

    if environ.get("HRINPAINT_XLA_TUNING", "1") == "0":
        return False
    flags = environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" in flags:
        return False
    try:
        jaxlib_version = version("jaxlib")
    except PackageNotFoundError:
        return False
    if not jaxlib_version.startswith(_MEASURED_JAXLIB):
        return False
    environ["XLA_FLAGS"] = f"{flags} {YNN_OFF}".strip()
    return True
