"""Training metrics without TensorFlow: TensorBoard event files, a CSV file and log lines.

``clu.metric_writers`` imports TensorFlow, which the GPU image lacks. ``MetricWriter`` writes the
same event files with the ``tensorboard`` package's own pure-Python pieces (``EventFileWriter``
and the ``tensorboard.compat.proto`` protos; without TensorFlow tensorboard uses its bundled
``tensorflow_stub``):

* scalars as ``simple_value`` summaries (TensorBoard's Scalars tab; ``EventAccumulator.Scalars``),
* images as PNG image summaries (Images tab; ``EventAccumulator.Images``),
* hyperparameters as the hparams plugin's summary plus a Markdown table in the Text tab.

Process 0 (``primary=True``) writes ``LOGDIR/events.out.tfevents.*`` (a new file per run or
resume, as TensorBoard expects) and appends every scalar to ``LOGDIR/metrics.csv`` in long
format: a header ``step,name,value`` and then one row per scalar (``repr`` of the float, so the
value reads back exactly). A run resumed from a checkpoint (``resume_step``) first drops the rows
after that step (the steps a killed run did past its last checkpoint, which the resumed run redoes),
so every step appears once. Every process logs its scalars
(``logging`` at INFO: ``[step] name=value, ...``); the others write no files.

``ReportProgress`` replaces ``clu.periodic_actions.ReportProgress``: every ``every_steps`` steps
it writes ``steps_per_sec``, ``eta_seconds`` and ``uptime`` (elapsed seconds; clu's name) as
scalars (events and CSV) and logs them.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from hrinpaint_jax.atomic_files import atomic_write

logger = logging.getLogger(__name__)

CSV_NAME = "metrics.csv"
CSV_HEADER = ("step", "name", "value")


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _as_uint8(image: Any) -> np.ndarray:
    """(H, W, C) uint8 from uint8 or float [0, 1] input with C in 1, 3, 4; 1 channel -> (H, W)."""
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"an image must be (H, W, 1|3|4), got {x.shape}")
    if x.dtype != np.uint8:
        x = np.round(np.clip(x.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    return x[..., 0] if x.shape[-1] == 1 else x


class MetricWriter:
    """Scalars, images and hparams to TensorBoard event files + ``metrics.csv`` + the log.

    Args:
      logdir: directory of the event files and ``metrics.csv`` (created on the primary process).
      primary: True on the process that writes files (process 0); False only logs.
      resume_step: the checkpoint a resumed run starts from: rows of later steps are removed from
        ``metrics.csv`` (atomically) before anything is appended.
    """

    def __init__(self, logdir: str | os.PathLike, primary: bool = True, resume_step: int | None = None):
        self.logdir = os.fspath(logdir)
        self.primary = primary
        self._events = None
        self._csv_file = None
        self._csv = None
        if primary:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            os.makedirs(self.logdir, exist_ok=True)
            self._events = EventFileWriter(self.logdir)
            path = os.path.join(self.logdir, CSV_NAME)
            if resume_step is not None and os.path.exists(path):
                _drop_rows_after(path, resume_step)
            new = not os.path.exists(path) or os.path.getsize(path) == 0
            self._csv_file = open(path, "a", newline="")  # noqa: SIM115 - closed in close()
            self._csv = csv.writer(self._csv_file)
            if new:
                self._csv.writerow(CSV_HEADER)

    # ----------------------------------------------------------------------------------------------

    def _add(self, step: int, values: list) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        if self._events is None or not values:
            return
        summary = summary_pb2.Summary(value=values)
        self._events.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def write_scalars(self, step: int, scalars: Mapping[str, Any], *, log: bool = True) -> None:
        """One value per name at ``step`` (anything ``float()`` accepts, e.g. 0-d arrays), to the
        event file, ``metrics.csv`` and (``log``) the log."""
        from tensorboard.compat.proto import summary_pb2

        values = {k: float(np.asarray(v)) for k, v in scalars.items()}
        if log:
            logger.info("[%d] %s", step, ", ".join(f"{k}={v:.6g}" for k, v in values.items()))
        if not self.primary:
            return
        self._add(step, [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
        for k, v in values.items():
            self._csv.writerow((int(step), k, repr(v)))
        self._csv_file.flush()

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        """``{name: (N, H, W, C) or (H, W, C)}``, uint8 or float in [0, 1], C in 1, 3, 4. One image
        is tagged ``name``; N > 1 images ``name/0``, ``name/1``, ..."""
        from tensorboard.compat.proto import summary_pb2

        values = []
        for name, batch in images.items():
            batch = np.asarray(batch)
            batch = batch[None] if batch.ndim == 3 else batch
            logger.info("[%d] image %s %s", step, name, batch.shape)
            for i, image in enumerate(batch):
                x = _as_uint8(image)
                encoded = summary_pb2.Summary.Image(
                    height=x.shape[0],
                    width=x.shape[1],
                    colorspace=1 if x.ndim == 2 else x.shape[2],
                    encoded_image_string=_png(x),
                )
                tag = name if len(batch) == 1 else f"{name}/{i}"
                values.append(summary_pb2.Summary.Value(tag=tag, image=encoded))
        if self.primary:
            self._add(step, values)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Flat {name: bool | int | float | str} (others become ``str``): the TensorBoard hparams
        plugin's session summary and a Markdown table under the text tag ``hparams``."""
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb
        from tensorboard.plugins.text.summary_v2 import text_pb

        clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()}
        logger.info("hparams: %s", ", ".join(f"{k}={v}" for k, v in clean.items()))
        if not self.primary:
            return
        self._add(0, list(hparams_pb(clean).value))
        rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(clean.items()))
        self._add(0, list(text_pb("hparams", f"| name | value |\n|---|---|\n{rows}").value))

    def flush(self) -> None:
        if self._events is not None:
            self._events.flush()
        if self._csv_file is not None:
            self._csv_file.flush()

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = self._csv = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _drop_rows_after(path: str, step: int) -> None:
    """Rewrites ``metrics.csv`` without the rows of steps after ``step`` (atomically; untouched
    when there are none). A torn last row (a kill while writing) goes too."""
    with open(path, newline="") as f:
        text = f.read()
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(rows[0]) != CSV_HEADER:
        return
    keep = [rows[0]] + [r for r in rows[1:] if len(r) == 3 and r[0].isdigit() and int(r[0]) <= step]
    if len(keep) == len(rows) and text.endswith("\n"):
        return

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(keep)

    atomic_write(path, write)


def read_csv(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``metrics.csv`` as {name: [(step, value), ...]} in file order; a repeated (step, name) (a
    resumed run redoing steps) keeps its last value."""
    found: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if tuple(header or ()) != CSV_HEADER:
            raise ValueError(f"{path}: not a metrics CSV (header {header})")
        for step, name, value in rows:
            found.setdefault(name, {})[int(step)] = float(value)
    return {name: sorted(steps.items()) for name, steps in found.items()}


class ReportProgress:
    """Steps/s, ETA and elapsed time every ``every_steps`` steps (and at ``num_train_steps``),
    written as scalars ``steps_per_sec``, ``eta_seconds``, ``uptime`` and logged.

    Call it after each step with the number of steps done. Steps/s is measured over the steps
    since the previous report; the first window starts after the first step (which includes
    compilation) when it can, so the rate is the steady one. ``uptime`` (elapsed seconds) counts
    from the construction (this process's run, not the whole resumed training).
    """

    def __init__(
        self,
        num_train_steps: int,
        writer: MetricWriter | None,
        every_steps: int,
        start_step: int = 0,
        clock=time.monotonic,
    ):
        self.num_train_steps = int(num_train_steps)
        self.writer = writer
        self.every_steps = max(int(every_steps), 1)
        self._clock = clock
        self._start = (int(start_step), clock())
        self._window: tuple[int, float] | None = None

    def __call__(self, step: int) -> dict[str, float] | None:
        now = self._clock()
        if self._window is None:
            self._window = (step, now)  # after the first (compiling) step
        if step % self.every_steps and step != self.num_train_steps:
            return None
        first, t0 = self._window if self._window[0] < step else self._start
        rate = (step - first) / max(now - t0, 1e-9)
        remaining = max(self.num_train_steps - step, 0)
        report = {
            "steps_per_sec": rate,
            "eta_seconds": remaining / rate if rate > 0 else float("inf"),
            "uptime": now - self._start[1],
        }
        self._window = (step, now)
        logger.info(
            "step %d/%d: %.3g steps/s, ETA %s, elapsed %s",
            step,
            self.num_train_steps,
            rate,
            _duration(report["eta_seconds"]),
            _duration(report["uptime"]),
        )
        if self.writer is not None:
            self.writer.write_scalars(step, report, log=False)  # logged above, in words
        return report


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
