"""Where the reference parity fixtures live (used by the tests, the demo and the benchmarks).

``$HRINPAINT_FIXTURES`` if set, else ``../shared/fixtures`` beside the repository.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

FIXTURES_ENV = "HRINPAINT_FIXTURES"


def find_fixtures(start: str | os.PathLike | None = None) -> Path:
    """The parity-fixture folder: ``$HRINPAINT_FIXTURES``, else ``../shared/fixtures`` beside the
    repository (or beside ``start``). Raises FileNotFoundError saying where to put it."""
    candidates = []
    if os.environ.get(FIXTURES_ENV):
        candidates.append(Path(os.environ[FIXTURES_ENV]))
    repo = Path(start) if start else Path(__file__).resolve().parents[1]
    candidates.append(repo.parent / "shared" / "fixtures")
    for path in candidates:
        if (path / "dfnet_random.pth.gz").is_file():
            return path
    raise FileNotFoundError(
        "parity fixtures not found (looked in " + ", ".join(map(str, candidates)) + "); put the "
        f"fixtures folder at {candidates[-1]} or set ${FIXTURES_ENV} to its path"
    )


def gunzip(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Decompresses one of the fixtures' ``.gz`` files to ``dst``; returns ``dst``."""
    with gzip.open(src, "rb") as f, open(dst, "wb") as g:
        shutil.copyfileobj(f, g)
    return Path(dst)


def unpack_zti_checkpoint(fixtures: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Puts the Zoom-to-Inpaint fixture checkpoint in folder ``dst``: its index and state file
    copied, its data file (stored gzip-compressed) decompressed beside them, as TF reads them.
    Returns the checkpoint prefix ``dst/ckpt-1``."""
    src, dst = Path(fixtures) / "zti" / "ckpt", Path(dst)
    shutil.copyfile(src / "ckpt-1.index", dst / "ckpt-1.index")
    shutil.copyfile(src / "checkpoint", dst / "checkpoint")
    gunzip(src / "ckpt-1.data-00000-of-00001.gz", dst / "ckpt-1.data-00000-of-00001")
    return dst / "ckpt-1"
