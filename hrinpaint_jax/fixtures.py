"""Where the reference parity fixtures live (used by the tests, the demo and the benchmarks).

``$HRINPAINT_FIXTURES`` if set, else ``../shared/fixtures`` beside the repository.
"""

from __future__ import annotations

import os
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
