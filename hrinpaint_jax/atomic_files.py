"""Writing files so that nothing is ever half-written, silently replaced or left behind.

``atomic_write`` writes to a temporary file beside the target and moves it into place when it is
complete. The temporary name carries the writer's PID, so a later write to the same target removes
what a killed process (``kill -9``) left behind. Permission bits follow the umask for a new file and
are kept for a replaced one (``mkstemp`` alone would make every output 0600).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


class OutputExistsError(FileExistsError):
    """The output appeared while we were writing it (another process won the race)."""

    def __init__(self, path: Path):
        super().__init__(f"output exists, not overwriting (use --overwrite): {path}")
        self.path = path

    def __str__(self) -> str:
        return self.args[0]


def _umask() -> int:
    try:  # Linux >= 4.7 reports it without changing it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.hrinpaint-"


def _remove_stale_temps(path: Path) -> None:
    """Deletes temporary files for ``path`` left by a process that no longer exists (kill -9 while
    writing); a live writer's file is left alone. Names: ``.NAME.hrinpaint-PID-RANDOM...``."""
    prefix = _temp_prefix(path)
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except OSError:  # another user's live process (EPERM)
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[str], None],
    suffix: str = ".tmp",
    overwrite: bool = True,
) -> Path:
    """Calls ``write(tmp)`` for a temporary file beside ``path`` (name ending in ``suffix``), then
    moves it into place: an existing file is replaced only by a complete new one (keeping its
    permission bits), and a failed or interrupted write leaves nothing behind.

    With ``overwrite=False`` the final step is an exclusive create (a hard link, which fails if the
    name exists): when two processes race for one output, the second gets ``OutputExistsError``
    instead of silently replacing the first one's result."""
    path = Path(path)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{_temp_prefix(path)}{os.getpid()}-", suffix=suffix, dir=path.parent
    )
    os.close(fd)
    try:
        write(tmp)
        try:
            mode = os.stat(path).st_mode & 0o7777 if overwrite else None
        except FileNotFoundError:
            mode = None
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_exclusive(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _link_exclusive(tmp: str, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(path) from None
    except OSError:
        # A filesystem without hard links (FAT, some network mounts): O_EXCL claims the name
        # first, then the complete file replaces the claim.
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            raise OutputExistsError(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)
