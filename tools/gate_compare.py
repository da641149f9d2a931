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
``hrinpaint_jax/assets/weights`` and writes their rows into ``docs/gate/per_image_*.csv``, as one
transaction (``install``): a kill at any point leaves the old set or the new set, never a mix, and the
next run finishes or undoes it first. README, docs/results.md and docs/gate tables are then updated
by hand (``tests/test_readme.py`` checks the README's training totals against the new metadata).
``--reuse`` takes ``WORKDIR/per_image.csv`` only if ``WORKDIR/candidate.json`` says it was made from
the same networks (paths and metadata). Every network in CANDIDATE is loaded before anything is
evaluated or touched; one that cannot be is refused in one line.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from contextlib import contextmanager
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
STAGED = ".gate_compare-"  # prefix of every copy and journal --ship keeps beside what it replaces
JOURNAL = ".gate_compare-journal.json"  # in BUNDLED while a --ship is under way


_installed: list[str] = []  # what this run's --ship installed, for the message if it is then stopped


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


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


def check_candidate(candidate: Path, present: list[str]) -> None:
    """Loads each of the candidate's networks: one that cannot be used (empty, damaged, another
    model) ends the run in one line naming it, before anything is evaluated or touched."""
    from hrinpaint_jax.checkpoints import load_pretrained, read_metadata

    for name in present:
        folder = candidate / name
        try:
            model = read_metadata(folder).get("model")
            if model != name:
                raise ValueError(f"{folder} holds a {model!r} network, not {name}")
            load_pretrained(folder)
        except Exception as e:  # noqa: BLE001 - orbax, tensorstore and the models raise many types
            reason = (str(e).strip() or type(e).__name__).splitlines()[0]
            raise SystemExit(f"gate_compare: the candidate's {name}/ cannot be used: {reason}") from None


def digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative paths, sizes and bytes) in order;
    empty for nothing at ``path``."""
    if not path.exists():
        return ""
    if path.is_file():
        files = [(path, "")]
    else:
        files = sorted(((f, f.relative_to(path).as_posix()) for f in path.rglob("*") if f.is_file()),
                       key=lambda x: x[1])  # fmt: skip
    h = hashlib.sha256()
    for file, rel in files:
        h.update(f"{rel}\0{file.stat().st_size}\0".encode())
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def digest_text(text: str) -> str:
    """``digest`` of a file holding ``text`` (UTF-8)."""
    data = text.encode()
    return hashlib.sha256(f"\0{len(data)}\0".encode() + data).hexdigest()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_journal(entries: list[dict], phase: str) -> None:
    """``BUNDLED/JOURNAL`` replaced atomically (and synced) by one saying ``phase``."""
    path = BUNDLED / JOURNAL
    tmp = path.with_name(f"{JOURNAL}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump({"phase": phase, "entries": entries}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(BUNDLED)


@contextmanager
def _signals_held():
    """Ctrl-C and SIGTERM wait until the block is done (a SIGKILL cannot: the journal covers it)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def _bundle_locked():
    """One --ship (or recovery) at a time: an exclusive ``flock`` on the BUNDLED folder itself."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    fd = os.open(BUNDLED, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"gate_compare: another gate_compare is installing into {BUNDLED}; "
                             "run again when it is done") from None  # fmt: skip
        yield
    finally:
        os.close(fd)


def _paths(entry: dict) -> tuple[Path, Path, Path]:
    return Path(entry["target"]), Path(entry["new"]), Path(entry["old"])


def _inconsistent(target: Path) -> SystemExit:
    return SystemExit(f"gate_compare: {target} and its copies in {BUNDLED / JOURNAL} do not agree; "
                      "sort them out by hand, then delete the journal")  # fmt: skip


def _switch(entry: dict) -> None:
    target, new, old = _paths(entry)
    if entry["had_old"]:
        os.replace(target, old)
    os.replace(new, target)


def _new_copy_complete(entry: dict) -> bool:
    """The new copy is whole: at ``new`` (not switched yet) or at ``target`` (switched)."""
    target, new, old = _paths(entry)
    if new.exists():
        return digest(new) == entry["sha256"]
    switched = old.exists() or not entry["had_old"]
    return switched and digest(target) == entry["sha256"]


def _roll_forward(entries: list[dict]) -> None:
    for entry in entries:
        target, new, old = _paths(entry)
        if not new.exists():
            continue  # switched already
        if entry["had_old"] and target.exists():
            if old.exists():
                raise _inconsistent(target)
            os.replace(target, old)
        os.replace(new, target)
    _write_journal(entries, "committed")


def _roll_back(entries: list[dict]) -> None:
    """Puts every old copy back (the new ones go back to their staging names), then deletes the
    new copies and the journal."""
    for entry in reversed(entries):
        target, new, old = _paths(entry)
        if old.exists():
            if target.exists():
                if new.exists():
                    raise _inconsistent(target)
                os.replace(target, new)
            os.replace(old, target)
        elif not entry["had_old"] and target.exists() and not new.exists():
            os.replace(target, new)
    _fsync_dir(BUNDLED)
    for entry in entries:
        _remove(Path(entry["new"]))
    (BUNDLED / JOURNAL).unlink()


def _finish(entries: list[dict]) -> None:
    """After the commit: the old copies go, then the journal."""
    for entry in entries:
        _remove(Path(entry["old"]))
        _remove(Path(entry["new"]))
    (BUNDLED / JOURNAL).unlink(missing_ok=True)


def _clear_stale(folders: list[Path]) -> list[str]:
    """Without a journal, ``.gate_compare-*`` items are copies a run killed before its switch left
    (or, from older versions of this tool, folders of replaced networks): a copy whose original is
    missing is put back, the rest deleted. Returns the names put back."""
    restored = []
    for folder in folders:
        for stale in sorted(folder.glob(STAGED + "*")):
            if stale.name == JOURNAL:
                continue
            if stale.name.startswith(STAGED + "old-"):
                parts = stale.name[len(STAGED + "old-") :].split("-", 2)
                if len(parts) == 3:  # .gate_compare-old-PID-RANDOM-NAME: one replaced item
                    pairs = [(stale, folder / parts[2])]
                else:  # an older version's folder of replaced networks
                    pairs = [(stale / n, BUNDLED / n) for n in NETWORKS if (stale / n).is_dir()]
                for old, target in pairs:
                    if not target.exists():
                        os.replace(old, target)
                        restored.append(target.name)
            _remove(stale)
    return restored


def recover(folders: list[Path]) -> str | None:
    """Finishes or undoes a --ship that was killed; says what it did (None: nothing to do).

    The journal's phase decides: ``committed`` -> delete the old copies; ``switching`` -> roll
    forward when every new copy is whole (checksums), else back; ``rolling back`` -> back.
    ``folders``: where copies of a run killed before writing its journal may be left."""
    path = BUNDLED / JOURNAL
    if not path.exists():
        restored = _clear_stale(folders)
        return f"put back {', '.join(restored)} from an interrupted --ship" if restored else None
    keys = ("target", "new", "old", "sha256")
    try:
        journal = json.loads(path.read_text())
        phase, entries = journal["phase"], journal["entries"]
        if not all(
            isinstance(e, dict) and all(isinstance(e.get(k), str) for k in keys) for e in entries
        ):
            raise ValueError("an entry lacks one of " + ", ".join(keys))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(
            f"gate_compare: cannot read {path} ({type(e).__name__}: {e}), the journal of an "
            "interrupted --ship: put back the networks it names by hand, then delete it"
        ) from None
    names = ", ".join(Path(e["target"]).name for e in entries)
    if phase == "committed":
        _finish(entries)
        _clear_stale(folders)
        return f"finished an interrupted --ship: {names} installed"
    with _signals_held():
        if phase == "switching" and all(_new_copy_complete(e) for e in entries):
            _roll_forward(entries)
            forward = True
        else:
            if phase != "rolling back":
                _write_journal(entries, "rolling back")
            _roll_back(entries)
            forward = False
    if forward:
        _finish(entries)
    _clear_stale(folders)  # a journal's temporary file
    if forward:
        return f"completed an interrupted --ship: {names} installed"
    return f"undid an interrupted --ship: the earlier {names} kept"


def install(candidate: Path, names: list[str], files: dict[Path, str]) -> None:
    """Installs ``candidate/NAME`` as ``BUNDLED/NAME`` for each of ``names`` and writes ``files``
    ({path: text}), all or nothing.

    Each item is first copied beside its target (``.gate_compare-new-*``) and checked against its
    source; then a journal (``BUNDLED/.gate_compare-journal.json``, replaced atomically) lists them,
    each target is renamed to ``.gate_compare-old-*`` and its copy renamed into its place, and the
    journal is marked committed. Only then are the old copies deleted. A run killed on the way
    leaves the journal, and ``recover`` (which every later run calls first) completes or undoes the
    switch; Ctrl-C and SIGTERM wait for the switch and the clean-up.
    """
    token = f"{os.getpid()}-{secrets.token_hex(4)}"

    def entry(target: Path) -> dict:
        staged = {k: str(target.with_name(f"{STAGED}{k}-{token}-{target.name}")) for k in ("new", "old")}
        return {"target": str(target), **staged, "had_old": target.exists()}

    entries = [entry(BUNDLED / n) for n in names] + [entry(Path(p)) for p in files]
    sources = [(candidate / n, None) for n in names] + [(None, t) for t in files.values()]
    try:
        for item, (source, text) in zip(entries, sources, strict=True):
            new = Path(item["new"])
            if source is not None:
                shutil.copytree(source, new)
                wanted = digest(source)
            else:
                with open(new, "wb") as f:
                    f.write(text.encode())
                    f.flush()
                    os.fsync(f.fileno())
                wanted = digest_text(text)
            item["sha256"] = digest(new)
            if item["sha256"] != wanted:
                raise SystemExit(
                    f"gate_compare: the copy {new} does not match its source; nothing installed"
                )
        with _signals_held():
            _write_journal(entries, "switching")
            try:
                for item in entries:
                    _switch(item)
                for folder in {Path(item["target"]).parent for item in entries}:
                    _fsync_dir(folder)
            except BaseException:
                _write_journal(entries, "rolling back")
                _roll_back(entries)
                raise
            _write_journal(entries, "committed")
            _installed.extend(names)
            _finish(entries)
    finally:
        if not (BUNDLED / JOURNAL).exists():  # not switched (or done): the new copies are only copies
            for item in entries:
                _remove(Path(item["new"]))


def baseline_text(path: Path, rows: list[dict[str, str]], methods: tuple[str, ...]) -> str:
    """``path``'s CSV with the rows of ``methods`` replaced by the candidate's (other methods kept)."""
    import io

    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, kept = reader.fieldnames, [r for r in reader if r["method"] not in methods]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows([r for r in rows if r["method"] in methods] + kept)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Runs the tool; exit 0, or 130 after Ctrl-C and 143 after SIGTERM (one line each); other
    failures end in one ``gate_compare: ...`` line (SystemExit)."""

    def terminate(signum, frame):
        raise Terminated()

    _installed.clear()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if in_main else None
    try:
        return _main(argv)
    except KeyboardInterrupt as e:
        state = f"; {', '.join(_installed)} installed" if _installed else ""
        stopped = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"gate_compare: {stopped}{state}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"gate_compare: the evaluation failed (exit status {e.returncode})") from None
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        raise SystemExit(f"gate_compare: {e.strerror or e}{where}") from None
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "candidate", type=Path, nargs="?", help="folder with any of dfnet/, shift_refine/, zoom/"
    )
    p.add_argument("--workdir", type=Path, default=REPO / "results" / "gate_candidate")
    p.add_argument("--baseline", type=Path, default=BASELINE, help="folder of per_image_*.csv")
    p.add_argument("--reuse", action="store_true", help="use WORKDIR/per_image.csv if it is there")
    p.add_argument("--ship", action="store_true", help="install the networks that win")
    p.add_argument(
        "--recover", action="store_true", help="only finish or undo an interrupted --ship, then stop"
    )
    args = p.parse_args(argv)
    if args.candidate is None and not args.recover:
        p.error("the candidate folder is required (or --recover alone)")

    with _bundle_locked():
        recovered = recover([BUNDLED, args.baseline])
    if recovered:
        print(f"gate_compare: {recovered}", file=sys.stderr)
    if args.recover:
        if not recovered:
            print("gate_compare: no interrupted --ship to recover", file=sys.stderr)
        return 0
    present = [n for n in NETWORKS if (args.candidate / n).is_dir()]
    if not present:
        raise SystemExit(f"gate_compare: {args.candidate} holds none of {', '.join(NETWORKS)}")
    check_candidate(args.candidate, present)
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
        files = {
            args.baseline / SETS[m][2]: baseline_text(args.baseline / SETS[m][2], new_rows, SETS[m][1])
            for m in ship
        }
        if names:
            with _bundle_locked():
                install(args.candidate, names, files)
            print(f"installed {', '.join(names)} into {BUNDLED} and their rows into {args.baseline}")
        if ship:
            print("now update README.md (training totals: hrinpaint info ... --training; the gate "
                  "table), docs/results.md and docs/gate/tables.md from", args.workdir)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
