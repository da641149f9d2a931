"""metric_writers: TensorBoard event files + metrics.csv + log lines without TensorFlow, read back
with TensorBoard's own EventAccumulator; progress reports."""

import io
import logging

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hrinpaint_jax.metric_writers import CSV_HEADER, MetricWriter, ReportProgress, read_csv


def accumulate(logdir) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_scalars_images_hparams_read_back(tmp_path):
    grid = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    with MetricWriter(tmp_path) as writer:
        writer.write_hparams({"optim.lr": 1e-4, "task": "dfnet", "crop": 256, "flip": True,
                              "sizes": [1, 2]})  # fmt: skip
        writer.write_scalars(1, {"loss": 0.5, "lr": np.float32(1e-4)})
        writer.write_scalars(2, {"loss": np.asarray(0.25)})
        writer.write_images(2, {"samples": grid[None], "pair": np.zeros((2, 4, 4, 1), np.float32)})
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    acc = accumulate(tmp_path)
    tags = acc.Tags()
    assert {"loss", "lr"} <= set(tags["scalars"])
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 0.5), (2, 0.25)]
    assert acc.Scalars("lr")[0].value == pytest.approx(1e-4)
    assert set(tags["images"]) == {"samples", "pair/0", "pair/1"}
    image = acc.Images("samples")[0]
    assert (image.step, image.width, image.height) == (2, 12, 8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(image.encoded_image_string))), grid)
    assert "hparams" in tags["tensors"]  # the Markdown table (text plugin)
    assert "_hparams_/session_start_info" in tags["tensors"]  # the hparams plugin
    text = acc.Tensors("hparams")[0].tensor_proto.string_val[0].decode()
    assert "| optim.lr | 0.0001 |" in text and "| sizes | [1, 2] |" in text

    csv = tmp_path / "metrics.csv"
    assert csv.read_text().splitlines()[:2] == [",".join(CSV_HEADER), "1,loss,0.5"]
    assert read_csv(csv) == {"loss": [(1, 0.5), (2, 0.25)], "lr": [(1, float(np.float32(1e-4)))]}


def test_a_resumed_run_appends_and_later_rows_win(tmp_path):
    with MetricWriter(tmp_path) as writer:
        writer.write_scalars(1, {"loss": 3.0})
        writer.write_scalars(2, {"loss": 2.0})
    with MetricWriter(tmp_path) as writer:  # resumed from the step-1 checkpoint: redoes step 2
        writer.write_scalars(2, {"loss": 1.5})
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines.count("step,name,value") == 1 and len(lines) == 4
    assert read_csv(tmp_path / "metrics.csv") == {"loss": [(1, 3.0), (2, 1.5)]}
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2  # TensorBoard merges a run's files


def test_other_processes_only_log(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="hrinpaint_jax.metric_writers"):
        with MetricWriter(tmp_path / "w", primary=False) as writer:
            writer.write_hparams({"a": 1})
            writer.write_scalars(3, {"loss": 0.125, "l1": 2.0})
            writer.write_images(3, {"samples": np.zeros((1, 4, 4, 3), np.uint8)})
    assert not (tmp_path / "w").exists()
    assert "[3] loss=0.125, l1=2" in caplog.text


def test_report_progress_rate_eta_elapsed(tmp_path, caplog):
    """Steps/s over the steps since the previous report, the first window starting after the first
    (compiling) step; ETA = remaining / rate; written as scalars and logged."""
    now = [100.0]
    with MetricWriter(tmp_path) as writer:
        report = ReportProgress(10, writer, every_steps=4, start_step=0, clock=lambda: now[0])
        with caplog.at_level(logging.INFO, logger="hrinpaint_jax.metric_writers"):
            now[0] = 130.0  # step 1 took 30 s (compilation)
            assert report(1) is None
            for step in (2, 3, 4):
                now[0] += 2.0
                result = report(step)
            assert result == {"steps_per_sec": 0.5, "eta_seconds": 12.0, "uptime": 36.0}
            for step in range(5, 11):
                now[0] += 1.0
                result = report(step)
            assert report(10)["eta_seconds"] == 0.0  # the last step always reports
    assert "step 4/10: 0.5 steps/s, ETA 0:00:12, elapsed 0:00:36" in caplog.text
    assert result["steps_per_sec"] == pytest.approx(1.0)
    rows = read_csv(tmp_path / "metrics.csv")
    assert [s for s, _ in rows["steps_per_sec"]] == [4, 8, 10]
    acc = accumulate(tmp_path)
    assert {"steps_per_sec", "eta_seconds", "uptime"} <= set(acc.Tags()["scalars"])


def test_report_progress_with_one_step_windows():
    """log_every = 1: the report at the first step measures from the start (compilation included)."""
    now = [0.0]
    report = ReportProgress(3, None, every_steps=1, clock=lambda: now[0])
    now[0] = 4.0
    assert report(1)["steps_per_sec"] == pytest.approx(0.25)
    now[0] = 5.0
    assert report(2)["steps_per_sec"] == pytest.approx(1.0)
