"""The command-line entry points: --help, exit codes, the demo and `hrinpaint info`."""

import json
import os
import subprocess
import sys

import jax
import pytest
from PIL import Image

from configs.default import get_config
from hrinpaint_jax.cli import main as cli_main
from hrinpaint_jax.models import dummy_inputs, get_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, timeout=600):  # a hang guard: a 3x slower, loaded machine must pass
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=timeout
    )


@pytest.mark.parametrize(
    "args",
    [
        ["train.py", "--help"],
        ["evaluate.py", "--help"],
        ["-m", "convert_weights", "--help"],
        ["-m", "hrinpaint_jax.cli", "--help"],
    ],
)
def test_help_exits_zero(args):
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    assert "--" in proc.stdout


def test_train_rejects_a_config_without_a_stage(tmp_path):
    proc = run("train.py", "--config", "configs/default.py", "--workdir", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert "train.py: config.task must be one of" in proc.stderr and "got ''" in proc.stderr


def test_evaluate_rejects_a_non_evaluation_config(tmp_path):
    proc = run("evaluate.py", "--config", "configs/default.py", "--workdir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "evaluate.py: error: this is not an evaluation config" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_default_config_builds_the_released_architectures():
    import jax

    config = get_config()
    for name, params in (("dfnet", 32_880_504), ("shift_refine", 36_858_507)):
        model = get_model(name, **config[name].to_dict())
        v = jax.eval_shape(
            lambda m=model, n=name: m.init(jax.random.key(0), *dummy_inputs(n), train=False)
        )
        assert sum(x.size for x in jax.tree.leaves(v["params"])) == params


def test_info_prints_metadata(converted, capsys):
    assert cli_main(["info", str(converted["dfnet"])]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["model"] == "dfnet" and meta["source"] == "dfnet_random.pth"
    assert cli_main(["info", str(converted["dfnet"] / "nope")]) == 2
    assert "weights directory not found" in capsys.readouterr().err
    # --training: the totals of the training record; converted weights have none
    assert cli_main(["info", str(converted["dfnet"]), "--training"]) == 1
    assert "has no training record" in capsys.readouterr().err
    assert cli_main(["info", os.path.join(REPO, "hrinpaint_jax/assets/weights/zoom"), "--training"]) == 0
    out = capsys.readouterr().out
    assert "| zoom_pretrain_coarse | 2,000 | 0 |" in out and "| zoom_joint | 732 | 602 |" in out


def test_demo_runs_end_to_end(tmp_path, capsys, monkeypatch):
    """make demo: both methods with the bundled weights on both bundled photos."""
    monkeypatch.delenv("HRINPAINT_WEIGHTS", raising=False)
    assert cli_main(["demo", "--out", str(tmp_path), "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for method in ("two_stage", "zoom"):
        assert f"| coffee.png | 600x400 | {method} |" in out
        assert f"| astronaut.png | 512x512 | {method} |" in out
    from PIL import Image

    with Image.open(tmp_path / "demo_strip.png") as im:
        assert im.size == (4 * 600, 400 + 512)  # before | mask | two_stage | zoom, one row per photo
    for name in ("coffee_zoom.png", "astronaut_two_stage.png", "coffee_mask.png"):
        assert (tmp_path / name).exists()
    # A file where the output folder should be: one line, exit 2.
    (tmp_path / "file").write_text("x")
    assert cli_main(["demo", "--out", str(tmp_path / "file")]) == 2
    assert "hrinpaint: error:" in capsys.readouterr().err


def test_refused_demo_leaves_no_output_folder(tmp_path, capsys, monkeypatch):
    """Missing weights or a workdir that is not one: one line, exit 2, and no (empty) --out folder."""
    monkeypatch.delenv("HRINPAINT_WEIGHTS", raising=False)
    out = tmp_path / "demo_out"
    assert cli_main(["demo", "--out", str(out), "--weights", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"hrinpaint: error: weights folder {tmp_path / 'missing'}"
    )
    assert not out.exists()
    assert cli_main(["demo", "--out", str(out), "--trained", str(tmp_path)]) == 2
    assert "is not a train.py workdir" in capsys.readouterr().err
    assert not out.exists()


def test_fixture_lookup_env_var_then_shared(fixtures_dir, tmp_path, monkeypatch):
    from hrinpaint_jax.fixtures import FIXTURES_ENV, find_fixtures

    monkeypatch.setenv(FIXTURES_ENV, str(fixtures_dir))
    assert find_fixtures(start=tmp_path / "repo") == fixtures_dir
    # Without the variable: ../shared/fixtures beside the repository.
    monkeypatch.delenv(FIXTURES_ENV)
    (tmp_path / "shared").symlink_to(fixtures_dir.parent)
    assert find_fixtures(start=tmp_path / "repo") == tmp_path / "shared" / "fixtures"
    # Neither: the error says where to put them.
    monkeypatch.setenv(FIXTURES_ENV, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="put the fixtures folder at"):
        find_fixtures(start=tmp_path / "elsewhere" / "repo")


def test_cpu_flag_tuning_respects_the_user():
    from hrinpaint_jax.runtime import YNN_OFF, tune_cpu_flags

    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert tune_cpu_flags(env)  # the pinned jaxlib is a measured version
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {YNN_OFF}"
    assert not tune_cpu_flags(env)  # already there: added once only
    user = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=foo"}
    assert not tune_cpu_flags(user) and user["XLA_FLAGS"].endswith("=foo")
    off = {"HRINPAINT_XLA_TUNING": "0"}
    assert not tune_cpu_flags(off) and "XLA_FLAGS" not in off


def test_bundled_weights_are_the_default(tmp_path, monkeypatch, capsys):
    """No --weights and no $HRINPAINT_WEIGHTS: the bundled trained models (float16 on disk, float32
    in memory); without them the error says how to get weights."""
    import numpy as np

    from hrinpaint_jax.checkpoints import load_pretrained, read_metadata
    from hrinpaint_jax.pipelines import load as inpaint

    monkeypatch.delenv("HRINPAINT_WEIGHTS", raising=False)
    for name in ("dfnet", "shift_refine", "zoom"):
        meta = read_metadata(inpaint.DEFAULT_WEIGHTS / name)
        assert meta["storage_dtype"] == "float16" and meta["task"], meta
    assert read_metadata(inpaint.DEFAULT_WEIGHTS / "zoom")["work_size"] == 256  # export --work-size
    _, variables, _ = load_pretrained(inpaint.DEFAULT_WEIGHTS / "dfnet")
    assert {x.dtype for x in jax.tree.leaves(variables)} == {np.dtype("float32")}
    photo = tmp_path / "in.png"
    Image.fromarray(np.full((64, 96, 3), 120, np.uint8)).save(photo)
    hole = np.zeros((64, 96), np.uint8)
    hole[20:40, 30:60] = 255
    Image.fromarray(hole).save(tmp_path / "mask.png")
    for method in ("two_stage", "zoom"):
        out = tmp_path / f"out_{method}.png"
        argv = ["inpaint", "--image", str(photo), "--mask", str(tmp_path / "mask.png"),
                "--output", str(out), "--method", method]  # fmt: skip
        assert cli_main(argv) == 0 and out.exists()
    monkeypatch.setattr(inpaint, "DEFAULT_WEIGHTS", tmp_path / "none")
    assert cli_main(argv[:-2] + ["--overwrite"]) == 2
    assert "no weights: pass --weights DIR" in capsys.readouterr().err


def test_weights_may_name_a_model_folder_itself(converted, converted_zoom, tmp_path):
    """Issue 21: ``--weights`` accepts the parent folder and also a converted model folder itself
    (``convert_weights --output weights/zoom``), under any name for a one-network method."""
    from hrinpaint_jax.image_io import InputError
    from hrinpaint_jax.pipelines.load import resolve_weights

    parent = converted["dfnet"].parent
    assert resolve_weights(str(parent), "two_stage") == parent
    assert resolve_weights(str(converted["dfnet"]), "two_stage") == parent  # its sibling is there
    renamed = tmp_path / "my_zoom_run"
    renamed.symlink_to(converted_zoom, target_is_directory=True)
    view = resolve_weights(str(renamed), "zoom")
    assert (view / "zoom").resolve() == converted_zoom.resolve()
    with pytest.raises(InputError, match="lacks zoom"):
        resolve_weights(str(converted["dfnet"]), "zoom")  # a DFNet folder is not a zoom model
