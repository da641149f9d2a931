"""The package's shape (issue 20): no import cycle inside hrinpaint_jax, no oversized module, a thin
CLI dispatcher and a README written for users; and the repository's (issue 27): no result or
document ignored by git."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hrinpaint_jax"
MAX_MODULE_LINES = 520


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Package modules imported by ``path`` anywhere (function-level imports included: a lazy
    import still makes a cycle, it only hides it until the call)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and t != "hrinpaint_jax":
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_inside_the_package():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_oversized_module():
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    big = {str(p): n for p, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_cli_is_a_dispatcher():
    assert len((PACKAGE / "cli.py").read_text().splitlines()) <= 100


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 350


# Folders whose files are results or documentation: none of them may be ignored by git (issue 27: a
# root-level "results/" rule once swallowed benchmarks/results/ and the GPU run's raw tables).
KEPT = ("benchmarks/results", "docs")
# Names a device run adds later (tools/device_run.py --collect), probed as well as what is there.
PROBES = (
    "benchmarks/results/device/2026-12-07_h100/a_env.md",
    "benchmarks/results/device/2026-12-07_h100/b_parity.csv",
    "benchmarks/results/device/2026-12-07_h100/run.log",
    "benchmarks/results/new_table.csv",
    "docs/new_page.md",
    "data/new_manifest.tsv",
)


def _git(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, input=stdin, capture_output=True, text=True)


def _ignored(paths: list[str]) -> set[str]:
    """Which of ``paths`` the ignore rules match, tracked files included (``--no-index``)."""
    proc = _git("check-ignore", "--no-index", "--stdin", stdin="\n".join(paths) + "\n")
    assert proc.returncode in (0, 1), proc.stderr  # 1: none ignored
    return set(proc.stdout.split())


@pytest.fixture(scope="module")
def git_checkout():
    if shutil.which("git") is None or _git("rev-parse", "--show-toplevel").returncode:
        pytest.skip("not a git checkout")


def test_results_docs_and_data_tables_are_never_ignored(git_checkout):
    listed = _git("ls-files", "--cached", "--others", "--", *KEPT, "data/*.tsv").stdout.split()
    ignored_here = _git(
        "ls-files", "--others", "--ignored", "--exclude-standard", "--", *KEPT, "data/*.tsv"
    ).stdout.split()
    assert not ignored_here, f"ignored by .gitignore, so never committed: {ignored_here}"
    assert "data/photos_manifest.tsv" in listed
    bad = _ignored([*listed, *PROBES])
    assert not bad, f"ignored by .gitignore, so never committed: {sorted(bad)}"


def test_run_outputs_and_the_weights_tarball_are_ignored(git_checkout):
    outputs = [
        "results/device_rehearsal/b_parity.csv",
        "runs/gpu/dfnet/metrics.csv",
        ".device/vgg16_conv1_4.npz",
        "data/photos/small/a.jpg",
        "benchmarks/results/device/2026-12-07_h100/e_training.tar.gz",
    ]
    assert _ignored(outputs) == set(outputs)
