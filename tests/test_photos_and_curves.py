"""Training-photo preparation (hrinpaint prepare-photos) and the loss-curve plot (plot-curves)."""

import numpy as np
import pytest
from PIL import Image

from hrinpaint_jax.cli import main as cli_main
from hrinpaint_jax.commands.prepare_photos import prepare_photos
from hrinpaint_jax.image_io import InputError


def _photo(path, w, h, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def test_prepare_photos_holds_out_and_only_downscales(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _photo(src / "a.jpg", 300, 200, 0)
    _photo(src / "b.png", 90, 120, 1)  # shorter side 90: only the 64 scale
    _photo(src / "keep.png", 250, 160, 2)
    scales = {"small": (64, 96), "large": (128,)}
    counts = prepare_photos(src, tmp_path / "out", holdout=("keep.png",), scales=scales)
    assert counts == {"holdout": 1, "small": 3, "large": 1}
    out = tmp_path / "out"
    with Image.open(out / "holdout" / "keep.png") as im:
        assert im.size == (250, 160)  # full resolution, never trained on
    with Image.open(out / "small" / "a@96.png") as im:
        assert im.size == (144, 96)  # aspect kept, shorter side 96
    assert not (out / "large" / "b@128.png").exists() and not (out / "small" / "keep@64.png").exists()
    before = (out / "small" / "a@64.png").stat().st_mtime_ns
    assert prepare_photos(src, out, holdout=("keep.png",), scales=scales) == counts  # rerun
    assert (out / "small" / "a@64.png").stat().st_mtime_ns == before  # kept, not rewritten
    with pytest.raises(InputError, match="holdout photo nope.png is not in"):
        prepare_photos(src, out, holdout=("nope.png",), scales=scales)
    with pytest.raises(InputError, match="no photo left for training"):
        prepare_photos(src, out, holdout=("a.jpg", "b.png", "keep.png"), scales=scales)


def test_plot_curves_reads_the_training_logs(tmp_path, capsys):
    from hrinpaint_jax.commands.plot_curves import read_scalars
    from hrinpaint_jax.metric_writers import MetricWriter

    run = tmp_path / "run"
    with MetricWriter(str(run)) as writer:  # the training loop's writer (no TensorFlow)
        for step in (10, 20, 30):
            writer.write_scalars(step, {"l1": 1.0 / step, "lr": 1e-3, "total": 2.0 / step,
                                        "eta_seconds": 60.0 - step})  # fmt: skip
    scalars = read_scalars(run)
    np.testing.assert_array_equal(scalars["l1"][0], [10, 20, 30])
    np.testing.assert_allclose(scalars["total"][1], [0.2, 0.1, 2.0 / 30], rtol=1e-6)
    png = tmp_path / "curves.png"
    table = tmp_path / "scalars.csv"
    assert cli_main(["plot-curves", str(run), "--out", str(png), "--csv", str(table)]) == 0
    with Image.open(png) as im:
        assert im.size[0] > 300 and im.size[1] > 200
    lines = table.read_text().splitlines()
    assert lines[0] == "run,tag,step,value" and "run,l1,20,0.05" in lines and len(lines) == 13
    (tmp_path / "empty").mkdir()
    assert cli_main(["plot-curves", str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")]) == 2
    assert "no TensorBoard event files in" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
