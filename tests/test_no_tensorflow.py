"""The GPU image's environment: no tensorflow, tensorflow-datasets, clu or lpips-jax, and the package
not pip-installed (``tools/no_tf/sitecustomize.py`` hides them from subprocesses). Training runs
from a checkout with the VGG16 loss weights from ``$HRINPAINT_VGG16`` (a trimmed float16 export),
and ``python -m hrinpaint_jax inpaint`` runs both methods."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrinpaint_jax.models.vgg import VGG16_ENV, export_vgg16_trimmed

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("tensorflow", "tensorflow_datasets", "clu", "lpips_jax")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Subprocess environment: the blocker first on PYTHONPATH, the package found only through the
    checkout (its editable install ignored), the trimmed VGG16 weights exported here (this process
    has lpips-jax)."""
    vgg = export_vgg16_trimmed(tmp_path_factory.mktemp("vgg") / "vgg16_conv1_4.npz")
    return {
        **os.environ,
        "PYTHONPATH": str(REPO / "tools" / "no_tf"),
        "NO_TF_NOT_INSTALLED": "hrinpaint_jax,convert_weights",
        VGG16_ENV: str(vgg),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",  # one image per step: fast
    }


def run(args, env, cwd, timeout=600):
    proc = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_blocker_hides_the_packages_and_the_library_imports(env, tmp_path):
    code = f"""
import importlib.util, sys
for name in {BLOCKED!r}:
    assert importlib.util.find_spec(name) is None, name
    try:
        __import__(name)
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError(name + " imported")
sys.path.insert(0, {str(REPO)!r})
import hrinpaint_jax.train_lib, hrinpaint_jax.tasks, hrinpaint_jax.cli, hrinpaint_jax.lpips
import hrinpaint_jax.export, hrinpaint_jax.refinement_data
from hrinpaint_jax.models import vgg
assert hrinpaint_jax.__file__.startswith({str(REPO)!r})
assert list(vgg.load_vgg16_lpips_weights())[-1] == "block4_conv1"
from hrinpaint_jax.metric_writers import MetricWriter
with MetricWriter({str(tmp_path)!r}) as w:
    w.write_scalars(1, {{"loss": 1.0}})
    w.write_images(1, {{"x": __import__("numpy").zeros((4, 4, 3), "uint8")}})
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator({str(tmp_path)!r}); acc.Reload()
assert acc.Scalars("loss")[0].value == 1.0 and acc.Images("x")
bad = sorted(m for m in sys.modules if m.partition(".")[0] in {BLOCKED!r})
assert not bad, bad
print("ok")
"""
    assert run(["-c", code], env, tmp_path).stdout.strip().endswith("ok")


def test_tiny_dfnet_trains_without_tensorflow(env, tmp_path):
    """train.py from another directory: DFNet's pool1..pool3 loss on the trimmed weights, events,
    metrics.csv, a sample grid and a checkpoint; nothing imports the blocked packages."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from hrinpaint_jax.metric_writers import read_csv

    work = tmp_path / "work"
    flags = ["--config.num_train_steps=2", "--config.sample_every=2", "--config.log_every=1",
             "--config.checkpoint_every=2", "--config.data.global_batch_size=1"]  # fmt: skip
    run([str(REPO / "train.py"), f"--config={REPO}/configs/tiny.py:dfnet", f"--workdir={work}",
         *flags], env, tmp_path)  # fmt: skip
    assert (work / "checkpoints" / "2").is_dir() and (work / "samples" / "step_0000002.png").is_file()
    rows = read_csv(work / "metrics.csv")
    assert [s for s, _ in rows["loss"]] == [1, 2]
    assert {"perceptual", "style", "steps_per_sec", "eta_seconds", "uptime"} <= set(rows)
    assert all(np.isfinite(v) and v > 0 for _, v in rows["perceptual"])
    acc = EventAccumulator(str(work), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [1, 2] and acc.Images("samples")


@pytest.mark.parametrize("method", ["two_stage", "zoom"])
def test_python_m_inpaint_both_methods(method, env, tmp_path):
    """``python -m hrinpaint_jax inpaint`` (from the checkout) with the bundled weights."""
    photo = Image.open(REPO / "hrinpaint_jax/assets/samples/astronaut.png").convert("RGB")
    photo.resize((256, 256), Image.BICUBIC).save(tmp_path / "photo.png")
    mask = np.zeros((256, 256), np.uint8)
    mask[96:160, 80:176] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / f"{method}.png"
    run(["-m", "hrinpaint_jax", "inpaint", "--method", method, "--image", str(tmp_path / "photo.png"),
         "--mask", str(tmp_path / "mask.png"), "--output", str(out)], env, REPO)  # fmt: skip
    result = np.asarray(Image.open(out).convert("RGB"), np.float32)
    source = np.asarray(Image.open(tmp_path / "photo.png"), np.float32)
    assert result.shape == (256, 256, 3)
    known = mask == 0
    assert np.abs(result[known] - source[known]).max() <= 1.0
    assert np.abs(result[~known] - source[~known]).mean() > 0  # the hole was filled, not copied
