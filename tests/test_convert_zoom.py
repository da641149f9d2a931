"""The TF2 (Zoom-to-Inpaint) converter: key mapping, accepted inputs and every rejection path."""

import os
import re

import numpy as np
import pytest

from convert_weights import TABLES
from convert_weights.__main__ import main
from hrinpaint_jax.checkpoints import load_pretrained, read_metadata
from hrinpaint_jax.conversion import load_tf_checkpoint


def convert(src, dst, *extra, model="auto"):
    return main(["--model", model, "--input", str(src), "--output", str(dst), *extra])


@pytest.fixture(scope="module")
def zti_state(zti_ckpt):
    return load_tf_checkpoint(zti_ckpt)


def write_tf_checkpoint(state, prefix):
    """Writes {key: array} as an object-based TF checkpoint with exactly these variable keys."""
    import tensorflow as tf
    from tensorflow.python.trackable.autotrackable import AutoTrackable

    roots = {}
    for key, value in state.items():
        if "/" not in key:  # save_counter: tf.train.Checkpoint keeps its own
            continue
        *path, leaf = key.split("/")
        node = roots.setdefault(path[0], AutoTrackable())
        for part in path[1:]:
            if not hasattr(node, part):
                setattr(node, part, AutoTrackable())
            node = getattr(node, part)
        setattr(node, leaf, tf.Variable(value))
    return tf.train.Checkpoint(**roots).write(str(prefix))


def test_table_accounts_for_every_fixture_key(fixtures_dir):
    lines = (fixtures_dir / "zti" / "variables.txt").read_text().splitlines()
    keys = [ln.split("\t")[0] for ln in lines if ln and not ln.startswith("#")]
    variables = {k.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE") for k in keys}
    variables -= {"_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter"}
    table = TABLES["zoom"]
    assert {r.torch_key for r in table.rules} == variables
    assert len(table.rules) == 104 + 22 + 122 + 20
    # The optimizer entries of a real training checkpoint are ignored, never mapped.
    assert table.is_ignored("save_counter")
    assert table.is_ignored("optimizer_d/iter")
    assert table.is_ignored("model/layer_with_weights-0/bias/.OPTIMIZER_SLOT/optimizer/m")
    assert not table.is_ignored("model/layer_with_weights-0/bias")


def test_layers_land_by_keras_order(converted_zoom, zti_state):
    _, variables, meta = load_pretrained(converted_zoom)
    p, bs, sn = variables["params"], variables["batch_stats"], variables["spectral"]
    refine = p["refine"]
    pairs = [
        (p["coarse"]["enc1_0"]["gc"]["conv"]["kernel"], "model/layer_with_weights-0/kernel"),
        (bs["coarse"]["enc1_0"]["bn"]["var"], "model/layer_with_weights-1/moving_variance"),
        (p["coarse"]["head"]["conv"]["kernel"], "model/layer_with_weights-34/kernel"),
        # Same shapes, told apart only by order: bottleneck 14 / 16, attention 18 / 20.
        (refine["bottleneck_1"]["gc"]["conv"]["kernel"], "model_refine/layer_with_weights-14/kernel"),
        (refine["bottleneck_2"]["gc"]["conv"]["kernel"], "model_refine/layer_with_weights-16/kernel"),
        (refine["ca_in"]["gc"]["conv"]["kernel"], "model_refine/layer_with_weights-18/kernel"),
        (refine["ca_out"]["gc"]["conv"]["kernel"], "model_refine/layer_with_weights-20/kernel"),
        (refine["merge"]["bn"]["scale"], "model_refine/layer_with_weights-23/gamma"),
        (refine["dec2_0"]["gc"]["conv"]["kernel"], "model_refine/layer_with_weights-24/kernel"),
        (refine["head"]["conv"]["bias"], "model_refine/layer_with_weights-40/bias"),
        (p["sr"]["expand"]["kernel"], "model_sr/layer_with_weights-9/kernel"),
        (p["sr"]["res3_b"]["bias"], "model_sr/layer_with_weights-8/bias"),
        (p["discriminator"]["sn_conv3"]["bias"], "model_d/layer_with_weights-3/layer/bias"),
        (sn["discriminator"]["sn_conv3"]["v"], "model_d/layer_with_weights-3/spectral_norm_v"),
    ]
    for ours, key in pairs:
        np.testing.assert_array_equal(np.asarray(ours), zti_state[key], err_msg=key)
    assert len(meta["source_sha256"]) == 64 and meta["source"] == "ckpt-1.index"


def test_index_file_and_folder_inputs_are_accepted(converted_zoom, zti_ckpt, tmp_path):
    _, want, _ = load_pretrained(converted_zoom)
    for i, src in enumerate([f"{zti_ckpt}.index", zti_ckpt.parent]):
        assert convert(src, tmp_path / f"o{i}") == 0  # auto-detects a TF checkpoint
        assert read_metadata(tmp_path / f"o{i}")["model"] == "zoom"
    _, got, _ = load_pretrained(tmp_path / "o1")
    np.testing.assert_array_equal(
        np.asarray(got["params"]["refine"]["merge"]["gc"]["conv"]["kernel"]),
        np.asarray(want["params"]["refine"]["merge"]["gc"]["conv"]["kernel"]),
    )


def test_training_checkpoint_with_optimizer_state_converts(zti_state, tmp_path):
    state = dict(zti_state)
    state["optimizer/iter"] = np.int64(1500)
    state["optimizer_d/beta_1"] = np.float32(0.9)
    prefix = write_tf_checkpoint(state, tmp_path / "train" / "ckpt-1500")
    assert convert(prefix, tmp_path / "o", model="zoom") == 0


def _drop_bn_mean(state):
    del state["model_refine/layer_with_weights-19/moving_mean"]


def _add_layer(state):
    state["model/layer_with_weights-35/kernel"] = np.zeros((3, 3, 32, 3), np.float32)


def _reshape_expand(state):
    state["model_sr/layer_with_weights-9/kernel"] = np.zeros((3, 3, 64, 128), np.float32)


@pytest.mark.parametrize(
    "edit, message",
    [
        (_drop_bn_mean, "1 missing key(s): model_refine/layer_with_weights-19/moving_mean"),
        (_add_layer, "1 unexpected key(s): model/layer_with_weights-35/kernel"),
        (
            _reshape_expand,
            "1 mis-shaped key(s): model_sr/layer_with_weights-9/kernel (3, 3, 64, 128) "
            "(expected (3, 3, 64, 256))",
        ),
    ],
    ids=["missing", "extra", "misshaped"],
)
def test_rejects_missing_extra_and_misshaped_keys(zti_state, tmp_path, capsys, edit, message):
    state = dict(zti_state)
    edit(state)
    prefix = write_tf_checkpoint(state, tmp_path / "bad" / "ckpt-1")
    assert convert(prefix, tmp_path / "o") == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "o").exists()


def test_rejects_bad_tf_inputs(zti_ckpt, tmp_path, capsys):
    assert convert(tmp_path / "missing" / "ckpt-1", tmp_path / "o", model="zoom") == 2
    assert "TF checkpoint not found" in capsys.readouterr().err
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "ckpt-1.index").write_bytes((zti_ckpt.parent / "ckpt-1.index").read_bytes())
    assert convert(tmp_path / "idx" / "ckpt-1", tmp_path / "o") == 2
    assert "no data file" in capsys.readouterr().err
    (tmp_path / "idx" / "ckpt-1.data-00000-of-00001").write_bytes(b"\0" * 100)  # truncated
    assert convert(tmp_path / "idx" / "ckpt-1", tmp_path / "o") == 2
    assert re.search(r"cannot read .* as a TF checkpoint", capsys.readouterr().err)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "checkpoint").write_text("nothing useful\n")
    assert convert(tmp_path / "empty", tmp_path / "o") == 2
    assert "cannot read the latest checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_verify_runs_the_converted_framework(zti_ckpt, tmp_path, capsys):
    assert convert(zti_ckpt, tmp_path / "v", "--verify") == 0
    out = capsys.readouterr().out
    assert "verify: zoom forward at 256x256" in out
    for name, shape in [("coarse", "(1, 256, 256, 3)"), ("refine", "(1, 512, 512, 3)")]:
        assert f"output {name}: shape {shape}" in out
