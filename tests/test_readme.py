"""The commands the README and docs/ show still exist (issue 21: a documented form was rejected).

Every ``hrinpaint SUBCOMMAND ...`` line in a code block must name a real subcommand and only flags
that subcommand has; every ``--config.methods=...`` value must name known evaluation methods.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _code_lines():
    for path in DOCS:
        inside = False
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                inside = not inside
            elif inside:
                yield path.name, number, line.split("  #")[0].strip()


def _subparsers():
    import argparse

    from hrinpaint_jax.cli import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_documented_hrinpaint_commands_use_real_subcommands_and_flags():
    commands = _subparsers()
    checked = 0
    for name, number, line in _code_lines():
        words = line.replace("[", " ").replace("]", " ").split()
        if not words or Path(words[0]).name != "hrinpaint" or len(words) < 2:
            continue
        sub = words[1]
        assert sub in commands, f"{name}:{number}: unknown subcommand {sub!r}"
        known = set(commands[sub]._option_string_actions)
        if sub == "convert":  # parsed by the converter itself (python -m convert_weights)
            from convert_weights.__main__ import build_parser as converter_parser

            known = set(converter_parser()._option_string_actions)
        for word in words[2:]:
            flag = word.split("=")[0]
            if flag.startswith("--"):
                assert flag in known, f"{name}:{number}: hrinpaint {sub} has no {flag}"
        checked += 1
    assert checked >= 10, checked


def test_documented_evaluation_method_lists_name_known_methods():
    from hrinpaint_jax.evaluation import METHODS, split_names

    found = 0
    for path in DOCS:
        for value in re.findall(r"--config\.methods=('[^']*'|[^\s`]+)", path.read_text()):
            names = split_names(shlex.split(value)[0] if value.startswith("'") else value)
            unknown = [n for n in names if n not in METHODS and n != "..."]
            assert not unknown, f"{path.name}: --config.methods={value} names unknown {unknown}"
            found += 1
    assert found >= 2, found


def test_readme_training_totals_match_the_bundled_weights():
    """The README's table of how long each bundled network trained is the totals of the training
    record in its metadata (a shipped GPU run must update both)."""
    from hrinpaint_jax.checkpoints import read_metadata

    text = (ROOT / "README.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] in ("`dfnet`", "`shift_refine`", "`zoom`"):
            rows[cells[0].strip("`")] = cells[1:]
    assert set(rows) == {"dfnet", "shift_refine", "zoom"}, rows
    for name, cells in rows.items():
        t = read_metadata(ROOT / "hrinpaint_jax" / "assets" / "weights" / name)["training"]["totals"][
            "all"
        ]
        expected = [
            f"{t['updates']:,}",
            f"{t['accelerator_updates']:,}",
            f"{t['seconds'] / 3600:.2f}",
            f"{t['accelerator_seconds'] / 60:.1f}",
            ", ".join(t["devices"]),
        ]
        assert cells == expected, (name, cells, expected)
