"""The evaluation on every device and host (issue 20, item 6): batches split over the local devices
and images split over processes give the numbers of one device.

Tiny on purpose: the two bundled photos at 64 px, OpenCV Telea and Zoom-to-Inpaint with the
fixture weights (random, so the outputs are noise: the point is that they are the same noise).
"""

import os
import socket
import subprocess
import sys

import jax
import pytest

from configs import eval_zoom
from hrinpaint_jax import evaluation as E

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run by each of the two processes of the multi-process test: argv = port, process id, weights
# folder, workdir.
WORKER = """
import sys

from hrinpaint_jax import parallel
from hrinpaint_jax.evaluation import run_evaluation
from tests.test_evaluation_parallel import tiny_config

port, pid, weights, workdir = sys.argv[1:]
parallel.initialize_distributed(f"localhost:{port}", 2, int(pid), timeout_s=120)
import jax

assert jax.process_count() == 2 and jax.local_device_count() == 4, jax.devices()
summary = run_evaluation(tiny_config(weights), workdir, log=lambda m: None)
print("images", summary["images"])
"""


def tiny_config(weights):
    config = eval_zoom.get_config()
    config.weights = str(weights)
    config.methods = ("zoom", "opencv_telea")
    config.masks.kinds = ("small",)
    config.resolutions = (64,)
    config.run_at = "native"
    config.metrics = ("psnr", "ssim", "l1")
    config.hole_metrics = ("hole_psnr", "hole_l1")
    config.report.table_metrics = ("psnr", "ssim", "l1")
    config.report.num_strips = 0
    config.report.plots = False
    config.batch_size = 2
    config.progress = False
    return config


@pytest.fixture(scope="module")
def weights(converted_zoom, tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel_weights")
    os.symlink(converted_zoom, root / "zoom")
    return root


@pytest.fixture(scope="module")
def one_device(weights, tmp_path_factory):
    """per_image.csv of the run on one device of one process."""
    out = tmp_path_factory.mktemp("one_device")
    E.run_evaluation(tiny_config(weights), out, log=lambda m: None, devices=jax.local_devices()[:1])
    return (out / "per_image.csv").read_bytes()


def test_four_devices_give_the_numbers_of_one(weights, one_device, tmp_path):
    """The batch (2, rounded up to the 4 devices) is split over the 4 fake CPU devices: the Zoom
    networks and the metrics run sharded, the per-image CSV is byte for byte that of one device."""
    assert jax.local_device_count() == 4
    methods = E.build_methods(tiny_config(weights))
    variables = jax.tree.leaves(methods[0].variables)
    assert all(len(v.sharding.device_set) == 4 for v in variables)  # replicated once
    E.run_evaluation(tiny_config(weights), tmp_path, log=lambda m: None)
    assert (tmp_path / "per_image.csv").read_bytes() == one_device


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_numbers_of_one(weights, one_device, tmp_path):
    """Two processes (4 CPU devices each) split the images, process 0 gathers the rows and writes
    the reports: the per-image CSV is byte for byte that of one device of one process."""
    port = _free_port()
    # The XLA CPU client of this process: the flags it was started with (tests/conftest.py; later
    # tests may add the CPU tuning flag to XLA_FLAGS) and its 4 devices. The last bits of a
    # convolution depend on the client's flags and device count (its thread partition), not on the
    # evaluation.
    env = {**os.environ, "XLA_FLAGS": os.environ["HRINPAINT_TEST_XLA_FLAGS"], "PYTHONPATH": REPO}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(port), str(i), str(weights), str(tmp_path / "out")],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "images ['astronaut', 'coffee']" in out  # every process returns the whole summary
    assert (tmp_path / "out" / "per_image.csv").read_bytes() == one_device
    assert (tmp_path / "out" / "summary.json").is_file()
