"""The persistent compile cache (``runtime.enable_compile_cache``) heals: an entry it cannot read is
removed and written afresh by the run that finds it, with one warning line, not one per entry and
run (issue 27)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hrinpaint_jax import runtime

REPO = Path(__file__).resolve().parents[1]
# A tiny jitted function in a fresh process with the cache in argv[1]; the package's warnings as
# "warning: ..." lines, like the command-line tool prints them.
SCRIPT = """
import logging, sys
logging.basicConfig(format="warning: %(message)s")
from hrinpaint_jax.runtime import enable_compile_cache
assert enable_compile_cache() == sys.argv[1]
import jax, jax.numpy as jnp
print(float(jax.jit(lambda x: jnp.sin(x) * 2 + 1)(jnp.arange(4.0)).sum()))
"""


def run_cached(cache: Path) -> str:
    env = {**os.environ, "HRINPAINT_COMPILE_CACHE": str(cache)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(cache)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def entries(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(cache.iterdir()) if p.is_file()}


def test_garbled_entries_are_replaced_with_one_warning(tmp_path):
    cache = tmp_path / "xla"
    assert run_cached(cache) == ""
    good = entries(cache)
    assert good and any(name.startswith("jit__lambda-") for name in good), sorted(good)
    for i, name in enumerate(good):  # zeroed in the middle, truncated, emptied
        data, half = good[name], len(good[name]) // 2
        broken = [data[:half] + bytes(64) + data[half + 64 :], data[:half], b""][i % 3]
        (cache / name).write_bytes(broken)
    garbled = entries(cache)
    assert all(garbled[n] != good[n] for n in good)

    err = run_cached(cache)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: unreadable compile cache entry"), err
    assert "UserWarning" not in err
    healed = entries(cache)
    assert set(healed) == set(good) and all(healed[n] != garbled[n] for n in good)

    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert run_cached(cache) == ""  # the rewritten entries are read: no warning, nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps


def fake_jax_cache(read):
    return types.SimpleNamespace(get_executable_and_time=read)


def test_an_unreadable_entry_is_deleted_and_reported_as_a_miss(tmp_path, monkeypatch, caplog):
    """In-process, on a stand-in for JAX's cache module: the failing key's files go, others stay."""
    monkeypatch.setattr(runtime, "_cache_folder", lambda: str(tmp_path))
    monkeypatch.setattr(runtime, "_warned", False)
    for name in ("jit_f-abc-cache", "jit_f-abc-atime", "jit_g-abc-cache"):
        (tmp_path / name).write_bytes(b"x")

    def read(cache_key, *args):
        raise ValueError(f"bad entry {cache_key}")

    module = fake_jax_cache(read)
    assert runtime.heal_cache_reads(module) and runtime.heal_cache_reads(module)  # twice: no-op
    assert module.get_executable_and_time("jit_f-abc", None, None, None) == (None, None)
    assert module.get_executable_and_time("jit_g-abc", None, None, None) == (None, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    warned = [r.getMessage() for r in caplog.records if "compile cache" in r.getMessage()]
    assert len(warned) == 1 and "jit_f-abc" in warned[0] and "ValueError" in warned[0], warned


def test_an_unknown_jax_leaves_the_cache_as_it_was():
    """A JAX without the hooked function: nothing installed, no error."""
    assert not runtime.heal_cache_reads(types.SimpleNamespace())
    module = fake_jax_cache(lambda *a: ("exe", 3))
    assert runtime.heal_cache_reads(module)
    assert module.get_executable_and_time("k", None, None, None) == ("exe", 3)


def test_raising_cache_errors_is_still_honoured(monkeypatch):
    """``jax_raise_persistent_cache_errors`` set: the error reaches JAX as before."""
    monkeypatch.setattr(runtime, "_raise_cache_errors", lambda: True)

    def read(cache_key, *args):
        raise ValueError("bad entry")

    module = fake_jax_cache(read)
    runtime.heal_cache_reads(module)
    with pytest.raises(ValueError, match="bad entry"):
        module.get_executable_and_time("k", None, None, None)
