"""Process-level XLA settings, applied by the command-line tools before JAX is imported.

On CPU, jaxlib 0.10 lowers convolutions to YNNPACK fusions by default. Sending them to XLA's own
(Eigen) convolution instead (``--xla_cpu_experimental_ynn_fusion_type=`` with an empty value) made
the refinement U-Net 12-24 % faster on a 2-core AVX-512 machine and left DFNet within 7 %
(``benchmarks/forward_cpu.py``; numbers in docs/benchmarks.md). The flag is experimental, and XLA
aborts on flags it does not know. So it is added only for jaxlib versions where it was measured,
only when the user has not set it, and never when ``HRINPAINT_XLA_TUNING=0``.
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


CACHE_ENV = "HRINPAINT_COMPILE_CACHE"


def compile_cache_dir(environ=os.environ) -> str | None:
    """Where compiled pipelines are kept between runs: ``$HRINPAINT_COMPILE_CACHE`` (``0`` turns the
    cache off), else ``$XDG_CACHE_HOME/hrinpaint_jax/xla`` (``~/.cache/hrinpaint_jax/xla``)."""
    chosen = environ.get(CACHE_ENV, "").strip()
    if chosen == "0":
        return None
    if chosen:
        return chosen
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hrinpaint_jax", "xla")


def enable_compile_cache(environ=os.environ) -> str | None:
    """Turns on JAX's persistent compilation cache for a command-line run; returns its folder.

    A one-image run is mostly XLA compilation (the pipeline's backend compile is several seconds on
    a CPU; the forward pass itself about as long). JAX caches only executables that took >= 1 s to
    compile by default; every pipeline executable is kept here, so a second run of the same size
    bucket skips the backend compile (tracing and lowering still run). A user's own
    ``JAX_COMPILATION_CACHE_DIR`` wins; an unwritable folder leaves the cache off, silently.
    """
    import jax

    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return environ["JAX_COMPILATION_CACHE_DIR"]
    path = compile_cache_dir(environ)
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    if not os.access(path, os.W_OK | os.X_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
