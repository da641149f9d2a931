"""Writing files so that nothing is ever half-written, silently replaced or left behind.

``atomic_write`` writes to a temporary file beside the target and moves it into place when it is
complete. The temporary name carries the writer's PID, so a later write to the same target removes
what a killed process (``kill -9``) left behind. Permission bits follow the umask for a new file and
are kept for a replaced one (``mkstemp`` alone would make every output 0600).

A full disk (``ENOSPC``) or an exhausted quota (``EDQUOT``) becomes ``NoSpaceError``: one line with
the path and the space the write needs (``check_free_space`` before a large write, ``no_space_error``
for what a library raised while writing, tensorstore's ``ValueError`` text included).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
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


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXT = tuple(os.strerror(code) for code in NO_SPACE_ERRNOS)  # "No space left on device"


class NoSpaceError(OSError):
    """Not enough free space (or quota) for a write: names the path and the space needed."""

    def __init__(self, path: str | os.PathLike, needed: int, free: int | None = None, code: int = 0):
        code = code or errno.ENOSPC
        have = f", {human_bytes(free)} free" if free is not None else ""
        message = f"{os.strerror(code)} (the write needs about {human_bytes(needed)}{have})"
        super().__init__(code, message, os.fspath(path))
        self.needed, self.free = needed, free

    def __str__(self) -> str:
        return f"{self.strerror}: {self.filename}"


def human_bytes(n: int | float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes for an unprivileged writer on the filesystem of ``path`` (or of its nearest
    existing parent); None when that cannot be told."""
    path = os.path.abspath(os.fspath(path))
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def check_free_space(path: str | os.PathLike, needed: int) -> None:
    """Raises ``NoSpaceError`` when the filesystem of ``path`` has less than ``needed`` bytes free
    (plus 10 % and 64 KiB for metadata). A cheap check before a large write; quotas are not seen here."""
    needed = int(needed * 1.1) + (64 << 10)
    free = free_bytes(path)
    if free is not None and free < needed:
        raise NoSpaceError(path, needed, free)


def no_space_error(e: BaseException, path: str | os.PathLike, needed: int) -> NoSpaceError | None:
    """``NoSpaceError`` for ``e`` when it (or an exception it was raised from) is a full disk or
    quota, whatever type the library wrapped it in; else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, NoSpaceError):
            return e
        code = getattr(e, "errno", None)
        if code in NO_SPACE_ERRNOS or any(t in str(e) for t in _NO_SPACE_TEXT):
            if code not in NO_SPACE_ERRNOS:
                code = errno.EDQUOT if _NO_SPACE_TEXT[1] in str(e) else errno.ENOSPC
            return NoSpaceError(path, needed, None, code)  # free: what is left is no guide
        e = e.__cause__ or e.__context__
    return None


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
        if entry.name.startswith(prefix) and left_by_dead_writer(entry.name, prefix):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def left_by_dead_writer(name: str, prefix: str) -> bool:
    """True if ``name`` (``PREFIX + PID-...``, a temporary file or folder) carries the PID of a process
    that no longer exists; False for this process, a live writer or a name without a PID."""
    pid_text = name[len(prefix) :].split("-", 1)[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's live process (EPERM)
        return False
    return False  # still running


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
