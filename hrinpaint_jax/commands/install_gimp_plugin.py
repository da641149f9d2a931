"""`hrinpaint install-gimp-plugin`: puts the GIMP 3 plug-in (``plugins/gimp/hrinpaint/``) into a GIMP
profile and records which Python runs the inpainting.

GIMP 3 loads a plug-in from ``<profile>/plug-ins/<name>/<name>.py``. The plug-in cannot import JAX
(GIMP runs it with its own Python), so it starts the project's interpreter as a subprocess; the
settings file written beside it names that interpreter (this one, ``sys.executable``, unless told
otherwise) and the default weights folder of its dialog.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from hrinpaint_jax.image_io import InputError

PLUGIN_NAME = "hrinpaint"
PLUGIN_SOURCE = Path(__file__).resolve().parents[2] / "plugins" / "gimp" / PLUGIN_NAME
# The plug-in's files: the executable GIMP starts, and its GIMP-free logic.
PLUGIN_FILES = (f"{PLUGIN_NAME}.py", f"{PLUGIN_NAME}_core.py")
# Kept in step with hrinpaint_core.SETTINGS_FILE (the plug-in does not import this package).
SETTINGS_FILE = "hrinpaint-settings.json"
GIMP_DIR_ENV = "GIMP3_DIRECTORY"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "install-gimp-plugin",
        help="install the GIMP 3 plug-in (Filters > Enhance > HR Inpaint...) into a GIMP profile",
    )
    p.add_argument(
        "--gimp-dir",
        default=None,
        help="GIMP 3 profile folder (default $GIMP3_DIRECTORY, else e.g. ~/.config/GIMP/3.0)",
    )
    p.add_argument(
        "--python",
        default=None,
        help="the project's Python the plug-in runs (default: the one running this command)",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="default weights folder of the dialog (default $HRINPAINT_WEIGHTS)",
    )
    p.add_argument(
        "--link",
        action="store_true",
        help="symlink the plug-in files to this checkout instead of copying",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    install_plugin(args.gimp_dir, args.python, args.weights, link=args.link)
    return 0


def gimp_profile_dir(environ=os.environ, platform: str = sys.platform, home: Path | None = None) -> Path:
    """GIMP 3's profile folder: ``$GIMP3_DIRECTORY``, else the platform's default
    (``~/.config/GIMP/3.0`` on Linux, honouring ``$XDG_CONFIG_HOME``)."""
    if environ.get(GIMP_DIR_ENV):
        return Path(environ[GIMP_DIR_ENV])
    home = Path(home) if home is not None else Path.home()
    if platform == "darwin":
        return home / "Library" / "Application Support" / "GIMP" / "3.0"
    if platform.startswith("win"):
        appdata = environ.get("APPDATA")
        return (Path(appdata) if appdata else home / "AppData" / "Roaming") / "GIMP" / "3.0"
    config = environ.get("XDG_CONFIG_HOME")
    return (Path(config) if config else home / ".config") / "GIMP" / "3.0"


def _check_python(python: str) -> str:
    """The interpreter's absolute path (not resolved: a venv's python is a symlink whose target has
    none of the venv's packages), checked to import hrinpaint_jax."""
    path = Path(python).absolute()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise InputError(f"--python {python} is not an executable file")
    if str(path) != str(Path(sys.executable).absolute()):
        probe = subprocess.run(
            [str(path), "-c", "import hrinpaint_jax.cli"], capture_output=True, text=True, timeout=120
        )
        if probe.returncode:
            last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
            raise InputError(f"--python {python} cannot import hrinpaint_jax: {last}")
    return str(path)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def install_plugin(
    gimp_dir: str | os.PathLike | None = None,
    python: str | None = None,
    weights: str | None = None,
    link: bool = False,
    source: Path = PLUGIN_SOURCE,
    environ=os.environ,
    log: Callable[[str], None] = print,
) -> Path:
    """Installs the plug-in; returns its folder ``<gimp_dir>/plug-ins/hrinpaint``.

    Args:
      gimp_dir: GIMP 3 profile folder (default :func:`gimp_profile_dir`).
      python: the project's interpreter the plug-in runs (default this one).
      weights: default weights folder of the dialog (default ``$HRINPAINT_WEIGHTS``, else the
        bundled weights).
      link: symlink the plug-in files to this checkout (edits take effect at GIMP's next start)
        instead of copying them.
    """
    missing = [name for name in PLUGIN_FILES if not (source / name).is_file()]
    if missing:
        raise InputError(
            f"plug-in sources not found in {source} ({', '.join(missing)}): install from a checkout "
            "of the repository (pip install -e .)"
        )
    python = _check_python(python or sys.executable)
    weights = weights or environ.get("HRINPAINT_WEIGHTS") or ""
    if not weights:
        from hrinpaint_jax.pipelines.load import DEFAULT_WEIGHTS

        # The bundled models (all three subfolders), when this install has them.
        if all((DEFAULT_WEIGHTS / n).is_dir() for n in ("dfnet", "shift_refine", "zoom")):
            weights = str(DEFAULT_WEIGHTS)
    if weights:
        if not Path(weights).is_dir():
            raise InputError(f"--weights {weights} is not a folder")
        weights = str(Path(weights).absolute())
    profile = Path(gimp_dir) if gimp_dir else gimp_profile_dir(environ)
    target = profile / "plug-ins" / PLUGIN_NAME
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InputError(f"{target} exists and is not a folder: remove it first")
    target.mkdir(parents=True, exist_ok=True)
    for name in PLUGIN_FILES:
        dest = target / name
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        if link:
            dest.symlink_to((source / name).resolve())
        else:
            shutil.copyfile(source / name, dest)
    if not link:
        main = target / PLUGIN_FILES[0]
        main.chmod(main.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    settings = {"python": python, "weights": weights}
    _write_atomic(target / SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")
    log(
        f"installed the GIMP 3 plug-in in {target} ({'linked to' if link else 'copied from'} {source}); "
        f"it runs {python}" + (f", default weights {weights}" if weights else "")
    )
    log("restart GIMP, then use Filters > Enhance > HR Inpaint...")
    return target
