"""Test setup: 4 fake CPU devices (set before jax is imported) and the shared parity fixtures."""

import os
from pathlib import Path

# pmap tests need several devices; on CPU XLA fakes them. Must run before jax is imported.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The flags this process's JAX runs with (the backend is initialised right here, before any test
# can change XLA_FLAGS, e.g. through the CLI's runtime.tune_cpu_flags): for subprocess workers that
# must compute exactly what this process computes.
os.environ["HRINPAINT_TEST_XLA_FLAGS"] = os.environ["XLA_FLAGS"]
# The CLI keeps compiled pipelines in ~/.cache between runs; tests that want it set their own folder.
os.environ.setdefault("HRINPAINT_COMPILE_CACHE", "0")

import signal  # noqa: E402

# A suite started in the background (nohup, `cmd &` in a script) inherits SIGINT ignored, and so
# would every process a test starts: the Ctrl-C tests need it delivered. A handled signal is reset
# to its default in a child at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import jax  # noqa: E402
import pytest  # noqa: E402

jax.devices()


def find_fixtures() -> Path:
    from hrinpaint_jax.fixtures import find_fixtures as find

    try:
        return find()
    except FileNotFoundError as e:  # fail loudly, never skip: parity is the point of the suite
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return find_fixtures()


@pytest.fixture(scope="session")
def dfnet_pth(fixtures_dir, tmp_path_factory) -> Path:
    """The fixture DFNet checkpoint (bare state_dict), decompressed to a temporary file."""
    from hrinpaint_jax.fixtures import gunzip

    return gunzip(
        fixtures_dir / "dfnet_random.pth.gz", tmp_path_factory.mktemp("pth") / "dfnet_random.pth"
    )


@pytest.fixture(scope="session")
def refinement_pth(fixtures_dir, tmp_path_factory) -> Path:
    """The fixture refinement checkpoint ({'state_dict': ...} wrapper), decompressed."""
    from hrinpaint_jax.fixtures import gunzip

    return gunzip(
        fixtures_dir / "refinement_random.pth.gz",
        tmp_path_factory.mktemp("pth") / "refinement_random.pth",
    )


@pytest.fixture(scope="session")
def converted(dfnet_pth, refinement_pth, tmp_path_factory) -> dict[str, Path]:
    """Both fixture checkpoints converted once through the command-line converter."""
    from convert_weights.__main__ import main

    out = tmp_path_factory.mktemp("weights")
    dirs = {"dfnet": out / "dfnet", "shift_refine": out / "shift_refine"}
    assert main(["--model", "dfnet", "--input", str(dfnet_pth), "--output", str(dirs["dfnet"])]) == 0
    assert (
        main(
            [
                "--model",
                "refinement",
                "--input",
                str(refinement_pth),
                "--output",
                str(dirs["shift_refine"]),
            ]
        )
        == 0
    )
    return dirs


@pytest.fixture(scope="session")
def zti_ckpt(fixtures_dir, tmp_path_factory) -> Path:
    """The Zoom-to-Inpaint fixture checkpoint, data file decompressed beside its index.

    Returns the checkpoint prefix (``.../ckpt-1``)."""
    from hrinpaint_jax.fixtures import unpack_zti_checkpoint

    return unpack_zti_checkpoint(fixtures_dir, tmp_path_factory.mktemp("zti_ckpt"))


@pytest.fixture(scope="session")
def converted_zoom(zti_ckpt, tmp_path_factory) -> Path:
    """The fixture TF checkpoint converted once through the command-line converter."""
    from convert_weights.__main__ import main

    out = tmp_path_factory.mktemp("weights") / "zoom"
    assert main(["--model", "zoom", "--input", str(zti_ckpt), "--output", str(out)]) == 0
    return out
