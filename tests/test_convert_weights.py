"""The PyTorch converter: accepted layouts and every rejection path (end to end through the CLI)."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch

from convert_weights import TABLES
from convert_weights.__main__ import main
from hrinpaint_jax.checkpoints import load_pretrained, read_metadata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dfnet_state(dfnet_pth):
    return torch.load(dfnet_pth, map_location="cpu", weights_only=True)


def convert(src, dst, *extra, model="auto"):
    return main(["--model", model, "--input", str(src), "--output", str(dst), *extra])


def assert_same_variables(dir_a, dir_b):
    _, va, _ = load_pretrained(dir_a)
    _, vb, _ = load_pretrained(dir_b)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), va, vb)


def test_auto_detects_both_models(converted, dfnet_pth, refinement_pth, tmp_path):
    assert convert(dfnet_pth, tmp_path / "a") == 0
    assert read_metadata(tmp_path / "a")["model"] == "dfnet"
    assert convert(refinement_pth, tmp_path / "b") == 0  # the {'state_dict': ...} wrapper
    assert read_metadata(tmp_path / "b")["model"] == "shift_refine"
    assert_same_variables(tmp_path / "a", converted["dfnet"])


def test_running_statistics_land_in_batch_stats(converted, dfnet_state):
    _, variables, meta = load_pretrained(converted["dfnet"])
    np.testing.assert_array_equal(
        np.asarray(variables["batch_stats"]["en_1"]["bn"]["var"]),
        dfnet_state["en_1.encode.1.running_var"].numpy(),
    )
    np.testing.assert_array_equal(
        np.asarray(variables["params"]["en_0"]["conv"]["conv"]["kernel"]),
        dfnet_state["en_0.encode.0.conv.1.weight"].numpy().transpose(2, 3, 1, 0),
    )
    assert meta["num_params"] == 32_880_504
    assert len(meta["source_sha256"]) == 64


def test_module_prefix_and_legacy_format(converted, dfnet_state, tmp_path):
    prefixed = {f"module.{k}": v for k, v in dfnet_state.items()}
    torch.save(prefixed, tmp_path / "prefixed.pth")
    assert convert(tmp_path / "prefixed.pth", tmp_path / "p") == 0
    assert_same_variables(tmp_path / "p", converted["dfnet"])
    # The pre-1.6 (non-zip) container, wrapped like the released refinement.pth.
    torch.save(
        {"state_dict": dfnet_state}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False
    )
    with open(tmp_path / "legacy.pth", "rb") as f:
        assert f.read(2) != b"PK"  # not a zip archive
    assert convert(tmp_path / "legacy.pth", tmp_path / "l", model="dfnet") == 0
    assert_same_variables(tmp_path / "l", converted["dfnet"])


def broken_states(state):
    """(name, modified state_dict, text the error must contain)."""
    missing = dict(state)
    del missing["de_3.decode.1.running_var"]
    extra = dict(state)
    extra["fuse_6.map2img.0.conv.weight"] = torch.zeros(3, 512, 1, 1)
    shaped = dict(state)
    shaped["en_2.encode.0.conv.1.weight"] = torch.zeros(256, 128, 3, 3)
    return [
        ("missing", missing, "1 missing key(s): de_3.decode.1.running_var"),
        ("extra", extra, "1 unexpected key(s): fuse_6.map2img.0.conv.weight"),
        (
            "shape",
            shaped,
            "en_2.encode.0.conv.1.weight (256, 128, 3, 3) (expected (256, 128, 5, 5))",
        ),
    ]


def test_rejects_missing_extra_and_misshaped_keys(dfnet_state, tmp_path, capsys):
    for name, state, message in broken_states(dfnet_state):
        src = tmp_path / f"{name}.pth"
        torch.save(state, src)
        out = tmp_path / f"out_{name}"
        assert convert(src, out, model="dfnet") == 2, name
        err = capsys.readouterr().err
        assert message in err, err
        assert "convert_weights: error: checkpoint does not match dfnet" in err
        assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging leftovers


def test_wrong_model_is_rejected(refinement_pth, tmp_path, capsys):
    assert convert(refinement_pth, tmp_path / "x", model="dfnet") == 2
    err = capsys.readouterr().err
    n_rules, n_dropped = len(TABLES["dfnet"].rules), len(TABLES["dfnet"].dropped)
    assert n_rules + n_dropped == 215  # every key of the released layout is accounted for
    assert f"{n_rules} missing key(s)" in err
    assert "109 unexpected key(s)" in err


def test_rejects_bad_files(tmp_path, capsys):
    assert convert(tmp_path / "nope.pth", tmp_path / "o") == 2
    assert "input checkpoint not found" in capsys.readouterr().err
    (tmp_path / "corrupt.pth").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    assert convert(tmp_path / "corrupt.pth", tmp_path / "o") == 2
    assert "cannot read" in capsys.readouterr().err
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "notensors.pth")
    assert convert(tmp_path / "notensors.pth", tmp_path / "o") == 2
    assert "not a state_dict" in capsys.readouterr().err
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "unknown.pth")
    assert convert(tmp_path / "unknown.pth", tmp_path / "o") == 2
    assert "cannot detect the model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_existing_output_is_kept_unless_overwrite(dfnet_pth, refinement_pth, tmp_path, capsys):
    out = tmp_path / "w"
    assert convert(dfnet_pth, out) == 0
    assert convert(refinement_pth, out) == 2
    assert "output exists" in capsys.readouterr().err
    assert read_metadata(out)["model"] == "dfnet"
    # A failing conversion with --overwrite leaves the old directory intact.
    (tmp_path / "junk.pth").write_bytes(b"junk")
    assert convert(tmp_path / "junk.pth", out, "--overwrite") == 2
    assert read_metadata(out)["model"] == "dfnet"
    assert convert(refinement_pth, out, "--overwrite") == 0
    assert read_metadata(out)["model"] == "shift_refine"
    assert sorted(os.listdir(tmp_path)) == ["junk.pth", "w"]


def test_command_line_verify(refinement_pth, tmp_path):
    """`python -m convert_weights --verify` in a subprocess: exit code, and printed statistics that
    equal a forward of the loaded weights on the same fixed input."""
    from hrinpaint_jax.conversion import output_statistics, verification_inputs

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "convert_weights",
            "--input",
            str(refinement_pth),
            "--output",
            str(tmp_path / "v"),
            "--verify",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[4/4] writing" in proc.stderr
    model, variables, _ = load_pretrained(tmp_path / "v")
    out = model.apply(variables, *verification_inputs("shift_refine"), train=False)
    want = output_statistics(out)[0]
    line = [ln for ln in proc.stdout.splitlines() if "output 0" in ln][0]
    assert line == (
        f"  output 0: shape (1, 512, 512, 3) min {want['min']:.6f} max {want['max']:.6f} "
        f"mean {want['mean']:.6f} std {want['std']:.6f}"
    )


def test_overwrite_only_replaces_weights_directories(dfnet_pth, tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert convert(dfnet_pth, precious, "--overwrite") == 2
    assert "not a hrinpaint_jax weights directory" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"
    # The input file itself is not a directory we may replace either.
    assert convert(dfnet_pth, dfnet_pth, "--overwrite") == 2
    assert dfnet_pth.stat().st_size > 100_000_000
    # An output whose parent is a file: one line, exit 2, before any work.
    assert convert(dfnet_pth, tmp_path / "precious" / "notes.txt" / "w") == 2
    assert "cannot create the output's parent folder" in capsys.readouterr().err


def test_failed_writes_leave_nothing_and_keep_the_old_directory(
    dfnet_pth, tmp_path, monkeypatch, capsys
):
    import orbax.checkpoint as ocp

    out = tmp_path / "w"
    assert convert(dfnet_pth, out) == 0
    before = sorted(p.name for p in out.rglob("*"))

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ocp.Checkpointer, "save", disk_full)
    assert convert(dfnet_pth, tmp_path / "new") == 2
    assert "No space left on device" in capsys.readouterr().err
    assert convert(dfnet_pth, out, "--overwrite") == 2
    monkeypatch.undo()
    assert sorted(p.name for p in out.rglob("*")) == before
    assert sorted(os.listdir(tmp_path)) == ["w"]  # no staging or trash folders left

    # The final rename fails: the old directory is put back.
    real_replace = os.replace

    def replace(src, dst):
        if ".partial-" in str(src):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert convert(dfnet_pth, out, "--overwrite") == 2
    monkeypatch.undo()
    assert read_metadata(out)["model"] == "dfnet"
    assert sorted(p.name for p in out.rglob("*")) == before
    assert sorted(os.listdir(tmp_path)) == ["w"]
