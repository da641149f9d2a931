"""After a GPU run: do the new weights beat the bundled ones on the quality gate? And ship them if so.

    python tools/gate_compare.py results/gpu/gpu_weights                 # evaluate, compare, verdict
    python tools/gate_compare.py results/gpu/gpu_weights --ship          # ... and install the winners

CANDIDATE is the ``gpu_weights`` folder of a device run's ``e_training.tar.gz`` (any of ``dfnet/``,
``shift_refine/``, ``zoom/``). The networks it lacks are taken from the bundled weights, so a run
that trained only DFNet is judged as the two-stage pipeline with the new DFNet and the old
refinement. Only the candidate's methods are evaluated (``configs/eval_gate.py``: ``two_stage`` and
``dfnet_only`` for the two-stage networks, ``zoom`` and ``zoom_no_zoom`` for Zoom-to-Inpaint; about
25 minutes per method pair on 2 cores); the bundled weights' rows and OpenCV's come from the committed
``docs/gate/per_image_*.csv`` (OpenCV does not depend on the weights).

Verdict per method (``two_stage``, ``zoom``): **ship** when, averaged over the gate's four settings
(1024 / 2048 x centred square / large strokes), the candidate's hole LPIPS is lower and its hole
PSNR is not lower than the bundled weights'; otherwise **keep**. The gate's goals (issue 22) are
printed per setting either way. ``--ship`` installs the winning networks into
``hrinpaint_jax/assets/weights`` (all copied first, then each folder swapped in by renames) and
writes their rows into ``docs/gate/per_image_*.csv``; README, docs/results.md and docs/gate tables
are then updated by hand (``tests/test_readme.py`` checks the README's training totals against the
new metadata). ``--reuse`` takes ``WORKDIR/per_image.csv`` only if ``WORKDIR/candidate.json`` says
it was made from the same networks (paths and metadata).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "hrinpaint_jax" / "assets" / "weights"
BASELINE = REPO / "docs" / "gate"
NETWORKS = ("dfnet", "shift_refine", "zoom")
# method judged -> (networks it uses, methods evaluated with it, baseline CSV)
SETS = {
    "two_stage": (("dfnet", "shift_refine"), ("two_stage", "dfnet_only"), "per_image_two_stage.csv"),
    "zoom": (("zoom",), ("zoom", "zoom_no_zoom"), "per_image_zoom.csv"),
}
SETTINGS = [(m, r) for r in ("1024", "2048") for m in ("centre", "large")]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def means(rows: list[dict[str, str]]) -> dict[tuple[str, str, str], dict[str, float]]:
    """{(method, mask, resolution): {'hole_psnr', 'hole_lpips', 'n'}} averaged over the photos."""
    acc: dict[tuple, list] = defaultdict(list)
    for r in rows:
        acc[(r["method"], r["mask"], r["resolution"])].append(r)
    return {
        key: {
            "hole_psnr": sum(float(r["hole_psnr"]) for r in group) / len(group),
            "hole_lpips": sum(float(r["hole_lpips"]) for r in group) / len(group),
            "n": len(group),
        }
        for key, group in acc.items()
    }


def verdict(old: dict, new: dict, method: str) -> tuple[bool, float, float]:
    """(ship?, mean hole-PSNR change in dB, mean hole-LPIPS change) of ``method`` over the four
    settings; ship needs lower LPIPS and no lower PSNR."""
    keys = [(method, m, r) for m, r in SETTINGS]
    missing = [k for k in keys if k not in old or k not in new]
    if missing:
        raise SystemExit(f"gate_compare: no rows for {', '.join('/'.join(k) for k in missing)}")
    if any(old[k]["n"] != new[k]["n"] for k in keys):
        raise SystemExit(f"gate_compare: {method}: the candidate was evaluated on other photos")
    d_psnr = sum(new[k]["hole_psnr"] - old[k]["hole_psnr"] for k in keys) / len(keys)
    d_lpips = sum(new[k]["hole_lpips"] - old[k]["hole_lpips"] for k in keys) / len(keys)
    return d_lpips < 0 and d_psnr >= 0, d_psnr, d_lpips


def goals(table: dict, method: str) -> list[str]:
    """The issue's gate goals for ``method``, one line per setting."""
    lines = []
    for m, r in SETTINGS:
        row = table[(method, m, r)]
        telea, ns = table[("opencv_telea", m, r)], table[("opencv_ns", m, r)]
        checks = [("LPIPS < Telea", row["hole_lpips"] < telea["hole_lpips"])]
        if method == "two_stage":
            stage1 = table[("dfnet_only", m, r)]
            checks += [
                ("LPIPS < Navier-Stokes", row["hole_lpips"] < ns["hole_lpips"]),
                ("beats stage 1 (PSNR and LPIPS)",
                 row["hole_psnr"] > stage1["hole_psnr"] and row["hole_lpips"] < stage1["hole_lpips"]),
            ]  # fmt: skip
        else:
            plain = table[("zoom_no_zoom", m, r)]
            better = row["hole_psnr"] > plain["hole_psnr"] and row["hole_lpips"] < plain["hole_lpips"]
            checks.append(("beats no-zoom (PSNR and LPIPS)", better))
        said = ", ".join(f"{name}: {'yes' if ok else 'no'}" for name, ok in checks)
        lines.append(f"  {r} {m}: {said}")
    return lines


def merged_weights(candidate: Path, into: Path) -> None:
    """``into``/{dfnet,shift_refine,zoom}: links to the candidate's networks, else the bundled ones."""
    into.mkdir(parents=True, exist_ok=True)
    for name in NETWORKS:
        link = into / name
        if link.is_symlink() or link.exists():
            link.unlink()
        source = candidate / name if (candidate / name).is_dir() else BUNDLED / name
        link.symlink_to(source.resolve(), target_is_directory=True)


def identity(weights: Path) -> dict[str, dict[str, str]]:
    """What a merged weights folder is made of: each network's real path and metadata hash."""
    from hrinpaint_jax.checkpoints import read_metadata

    out = {}
    for name in NETWORKS:
        meta = json.dumps(read_metadata(weights / name), sort_keys=True).encode()
        out[name] = {
            "path": str((weights / name).resolve()),
            "metadata_sha256": hashlib.sha256(meta).hexdigest(),
        }
    return out


def evaluate(weights: Path, methods: list[str], out: Path) -> None:
    cmd = [
        sys.executable,
        "evaluate.py",
        "--config",
        "configs/eval_gate.py",
        "--workdir",
        str(out),
        f"--config.methods=({','.join(repr(m) for m in methods)},)",
        f"--config.weights={weights}",
    ]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def install(candidate: Path, names: list[str]) -> None:
    """Replaces ``BUNDLED/name`` for each of ``names`` by the candidate's network. Every network is
    copied beside the bundle first (so a failed copy changes nothing), then each is swapped in with
    two renames; staging folders a killed run left behind are removed first."""
    for stale in BUNDLED.glob(".gate_compare-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".gate_compare-new-", dir=BUNDLED))
    trash = Path(tempfile.mkdtemp(prefix=".gate_compare-old-", dir=BUNDLED))
    try:
        for name in names:
            shutil.copytree(candidate / name, staging / name)
        for name in names:
            os.replace(BUNDLED / name, trash / name)
            try:
                os.replace(staging / name, BUNDLED / name)
            except BaseException:
                os.replace(trash / name, BUNDLED / name)
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(trash, ignore_errors=True)


def write_baseline(path: Path, rows: list[dict[str, str]], methods: tuple[str, ...]) -> None:
    """``path`` with the rows of ``methods`` replaced by the candidate's (other methods kept)."""
    import io

    from hrinpaint_jax.atomic_files import atomic_write

    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, kept = reader.fieldnames, [r for r in reader if r["method"] not in methods]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows([r for r in rows if r["method"] in methods] + kept)
    atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"gate_compare: the evaluation failed (exit status {e.returncode})") from None
    except OSError as e:
        raise SystemExit(f"gate_compare: {e.strerror or e}: {e.filename}") from None


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("candidate", type=Path, help="folder with any of dfnet/, shift_refine/, zoom/")
    p.add_argument("--workdir", type=Path, default=REPO / "results" / "gate_candidate")
    p.add_argument("--baseline", type=Path, default=BASELINE, help="folder of per_image_*.csv")
    p.add_argument("--reuse", action="store_true", help="use WORKDIR/per_image.csv if it is there")
    p.add_argument("--ship", action="store_true", help="install the networks that win")
    args = p.parse_args(argv)

    present = [n for n in NETWORKS if (args.candidate / n).is_dir()]
    if not present:
        raise SystemExit(f"gate_compare: {args.candidate} holds none of {', '.join(NETWORKS)}")
    judged = [m for m, (nets, _, _) in SETS.items() if any(n in present for n in nets)]
    methods = [x for m in judged for x in SETS[m][1]]
    results, stamp = args.workdir / "per_image.csv", args.workdir / "candidate.json"
    merged_weights(args.candidate, args.workdir / "weights")
    made_of = identity(args.workdir / "weights")
    if args.reuse:
        if not stamp.is_file() or json.loads(stamp.read_text()) != made_of or not results.is_file():
            raise SystemExit(
                f"gate_compare: {results} was not made from these weights; run without --reuse"
            )
    else:
        results.unlink(missing_ok=True)
        stamp.unlink(missing_ok=True)
        evaluate(args.workdir / "weights", methods, args.workdir)
        stamp.write_text(json.dumps(made_of, indent=1))
    new_rows = read_rows(results)
    # Every committed row of the bundled weights (OpenCV's included, in the two-stage file), once;
    # OpenCV does not depend on the weights, so the candidate is measured against the same rows.
    base_rows = [r for _, _, csv_name in SETS.values() for r in read_rows(args.baseline / csv_name)]
    opencv = [r for r in base_rows if r["method"].startswith("opencv")]
    old = means(base_rows)
    new = means([r for r in new_rows if r["method"] in methods] + opencv)
    ship = []
    for method in judged:
        nets = SETS[method][0]
        win, d_psnr, d_lpips = verdict(old, new, method)
        print(f"\n## {method} ({', '.join(n for n in nets if n in present)} from {args.candidate})")
        print("| setting | bundled hole PSNR / LPIPS | candidate | change |\n|---|---|---|---|")
        for m, r in SETTINGS:
            o, n = old[(method, m, r)], new[(method, m, r)]
            change = n["hole_psnr"] - o["hole_psnr"], n["hole_lpips"] - o["hole_lpips"]
            print(f"| {r} {m} | {o['hole_psnr']:.2f} / {o['hole_lpips']:.4f} | "
                  f"{n['hole_psnr']:.2f} / {n['hole_lpips']:.4f} | "
                  f"{change[0]:+.2f} dB / {change[1]:+.4f} |")  # fmt: skip
        print(f"mean change: {d_psnr:+.2f} dB hole PSNR, {d_lpips:+.4f} hole LPIPS -> "
              f"{'SHIP' if win else 'KEEP the bundled weights'}")  # fmt: skip
        print("gate goals of the candidate:")
        print("\n".join(goals(new, method)))
        if win:
            ship.append(method)
    if args.ship:
        names = [n for m in ship for n in SETS[m][0] if n in present]
        if names:
            install(args.candidate, names)
            print(f"installed {', '.join(names)} into {BUNDLED}")
        for method in ship:
            _, evaluated, baseline_csv = SETS[method]
            write_baseline(args.baseline / baseline_csv, new_rows, evaluated)
        if ship:
            print("now update README.md (training totals: hrinpaint info ... --training; the gate "
                  "table), docs/results.md and docs/gate/tables.md from", args.workdir)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
