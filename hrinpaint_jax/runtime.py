"""Process-level settings of the command-line tools: XLA CPU flags (set before JAX is imported),
the persistent compile cache, and one run's signal and warning handling (``command_process``).

On CPU, jaxlib 0.10 lowers convolutions to YNNPACK fusions by default. Sending them to XLA's own
(Eigen) convolution instead (``--xla_cpu_experimental_ynn_fusion_type=`` with an empty value) made
the refinement U-Net 12-24 % faster on a 2-core AVX-512 machine and left DFNet within 7 %
(``benchmarks/forward_cpu.py``; numbers in docs/benchmarks.md). The flag is experimental, and XLA
aborts on flags it does not know. So it is added only for jaxlib versions where it was measured,
only when the user has not set it, and never when ``HRINPAINT_XLA_TUNING=0``.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import signal
import threading

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
    ``JAX_COMPILATION_CACHE_DIR`` wins; an unwritable folder leaves the cache off, silently. An
    unreadable entry (a run killed while writing it, a bad disk) is removed and rewritten by the
    run that finds it, with one warning (``heal_cache_reads``).
    """
    import jax

    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        _heal_jax_cache_reads()
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
    _heal_jax_cache_reads()
    return path


_log = logging.getLogger(__name__)
_warned = False


def _heal_jax_cache_reads() -> bool:
    try:
        from jax._src import compilation_cache
    except ImportError:
        return False
    return heal_cache_reads(compilation_cache)


def heal_cache_reads(module) -> bool:
    """Makes ``module.get_executable_and_time`` (JAX's persistent-cache read) remove an entry it
    cannot read and report a miss, so the executable is compiled and written afresh.

    JAX itself warns about such an entry and recompiles, but never overwrites it, so every later
    run pays the compile again. Here the entry's files are deleted instead and one "warning: ..."
    line is logged per process. Returns False (JAX's own behaviour is left) if the module has no
    such function; installing twice is a no-op.
    """
    read = getattr(module, "get_executable_and_time", None)
    if read is None or not callable(read):
        return False
    if getattr(read, "_hrinpaint_heals", False):
        return True

    def read_or_forget(cache_key, *args, **kwargs):
        try:
            return read(cache_key, *args, **kwargs)
        except Exception as e:
            if not isinstance(cache_key, str) or not cache_key or _raise_cache_errors():
                raise
            removed = _forget(cache_key)
            _warn_once(cache_key, e, removed)
            return None, None

    read_or_forget._hrinpaint_heals = True
    module.get_executable_and_time = read_or_forget
    return True


def _raise_cache_errors() -> bool:
    """True where the user asked JAX to raise on cache errors (``jax_raise_persistent_cache_errors``)."""
    import jax

    return bool(getattr(jax.config, "jax_raise_persistent_cache_errors", False))


def _cache_folder() -> str | None:
    import jax

    return getattr(jax.config, "jax_compilation_cache_dir", None)


def _forget(cache_key: str) -> bool:
    """Deletes the local files of the cache entry ``cache_key`` (``KEY-cache``, ``KEY-atime``)."""
    folder = _cache_folder()
    if not folder or "://" in folder:
        return False
    found = glob.glob(os.path.join(glob.escape(folder), glob.escape(cache_key) + "-*"))
    try:
        for path in found:
            os.remove(path)
    except OSError:
        return False
    return bool(found)


def _warn_once(cache_key: str, error: Exception, removed: bool) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    what = "removed; compiled again and rewritten" if removed else "could not be removed"
    reason = f"{type(error).__name__}: {error}".splitlines()[0]
    _log.warning(f"unreadable compile cache entry {cache_key} ({reason}) {what}; others found in this "
                 "run are replaced silently")  # fmt: skip


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C (files cleaned up)."""


@contextlib.contextmanager
def command_process():
    """For one run: the package's warnings (e.g. a switch to tiled refinement) as "warning: ..."
    stderr lines, shown once (not also by a root handler some library installed), and SIGTERM
    turned into :class:`Terminated`. Both are undone afterwards (``cli.main`` may run in-process)."""
    logger = logging.getLogger("hrinpaint_jax")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False

    def terminate(signum, frame):
        raise Terminated()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if in_main_thread else None
    try:
        yield
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
