"""Building blocks against PyTorch / OpenCV on small hand-checkable or random cases."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from hrinpaint_jax.layers import SameConv, TorchBatchNorm, same_padding
from hrinpaint_jax.ops.resize import (
    nearest_indices_cv2,
    resize_bilinear_cv2_u8,
    resize_bilinear_torch,
    resize_nearest_cv2,
    upsample_nearest_2x,
)


@pytest.mark.parametrize(
    "k, s, want", [(7, 2, (2, 3)), (5, 2, (1, 2)), (3, 2, (0, 1)), (3, 1, (1, 1)), (1, 1, (0, 0))]
)
def test_same_padding_table(k, s, want):
    assert same_padding(k, s) == want


@pytest.mark.parametrize("size", [16, 17, 15])
@pytest.mark.parametrize("k", [7, 5, 3])
def test_same_conv_matches_torch_pad_then_conv(size, k):
    """Stride-2 conv with the extra pad on bottom/right; also for odd sizes, where XLA 'SAME'
    would put it elsewhere."""
    rng = np.random.default_rng(k * 100 + size)
    x = rng.normal(size=(1, size, size, 3)).astype(np.float32)
    conv = SameConv(4, k, stride=2)
    variables = conv.init(jax.random.key(0), x)
    ours = np.asarray(conv.apply(variables, x))
    kernel = np.array(variables["params"]["conv"]["kernel"])
    bias = np.array(variables["params"]["conv"]["bias"])
    lo = (k - 2) // 2
    xt = torch.nn.functional.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (lo, lo + 1, lo, lo + 1))
    ref = torch.nn.functional.conv2d(
        xt, torch.from_numpy(kernel).permute(3, 2, 0, 1), torch.from_numpy(bias), stride=2
    )
    assert ours.shape[1] == size // 2
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_batchnorm_matches_torch_train_and_eval():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(2, 2, 2, 5)).astype(np.float32)  # 8 values per channel
    bn_t = torch.nn.BatchNorm2d(5)
    with torch.no_grad():
        bn_t.weight.copy_(torch.linspace(0.5, 1.5, 5))
        bn_t.bias.copy_(torch.linspace(-1, 1, 5))
    bn = TorchBatchNorm(use_running_average=False)
    variables = bn.init(jax.random.key(0), x)
    variables = {
        "params": {"scale": jnp.linspace(0.5, 1.5, 5), "bias": jnp.linspace(-1, 1, 5)},
        "batch_stats": variables["batch_stats"],
    }
    y, updates = bn.apply(variables, x, mutable=["batch_stats"])
    yt = bn_t.train()(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(y), yt.detach().numpy(), atol=1e-5)
    # Running variance uses the unbiased batch variance, as torch does.
    np.testing.assert_allclose(
        np.asarray(updates["batch_stats"]["mean"]), bn_t.running_mean.numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(updates["batch_stats"]["var"]), bn_t.running_var.numpy(), atol=1e-6
    )
    # Eval mode normalises with the running statistics.
    variables = {"params": variables["params"], **updates}
    y_eval = TorchBatchNorm(use_running_average=True).apply(variables, x)
    yt_eval = bn_t.eval()(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(y_eval), yt_eval.detach().numpy(), atol=1e-5)


def test_synchronised_batchnorm_under_pmap_equals_whole_batch():
    """BatchNorm with axis_name over 4 devices = BatchNorm over the 4x batch on one device."""
    n = jax.local_device_count()
    assert n == 4, "conftest sets 4 fake CPU devices"
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n * 2, 3, 3, 6)).astype(np.float32)
    variables = TorchBatchNorm().init(jax.random.key(0), x)

    def step(v, xb, axis_name):
        return TorchBatchNorm(use_running_average=False, axis_name=axis_name).apply(
            v, xb, mutable=["batch_stats"]
        )

    y_one, upd_one = step(variables, x, None)
    replicated = jax.tree.map(lambda a: jnp.stack([a] * n), variables)
    y_p, upd_p = jax.pmap(lambda v, xb: step(v, xb, "batch"), axis_name="batch")(
        replicated, x.reshape(n, 2, 3, 3, 6)
    )
    np.testing.assert_allclose(np.asarray(y_p).reshape(x.shape), np.asarray(y_one), atol=1e-5)
    for key in ("mean", "var"):
        got = np.asarray(upd_p["batch_stats"][key])
        np.testing.assert_allclose(
            got, np.broadcast_to(upd_one["batch_stats"][key], got.shape), atol=1e-6
        )


def test_upsample_nearest_matches_torch():
    x = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    ref = (
        torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(0, 3, 1, 2), scale_factor=2, mode="nearest"
        )
        .permute(0, 2, 3, 1)
        .numpy()
    )
    np.testing.assert_array_equal(np.asarray(upsample_nearest_2x(x)), ref)


@pytest.mark.parametrize(
    "in_size, out_size",
    [
        ((64, 96), (32, 48)),
        ((64, 64), (8, 8)),
        ((32, 48), (32, 48)),
        ((20, 30), (7, 11)),
        ((8, 8), (20, 13)),
    ],
)
def test_bilinear_matches_torch_no_antialias(in_size, out_size):
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(1, *in_size, 3)).astype(np.float32)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2), size=out_size, mode="bilinear", align_corners=False
    )
    ours = np.asarray(resize_bilinear_torch(jnp.asarray(x), out_size))
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), atol=1e-6)


def test_bilinear_2x_downscale_is_the_2x2_mean_hand_case():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    # Factor 4: mean of the two central samples (1, 2) per axis -> rows/cols 1..2.
    np.testing.assert_allclose(
        np.asarray(resize_bilinear_torch(x, (1, 1)))[0, 0, 0, 0], (5 + 6 + 9 + 10) / 4
    )


def test_nearest_cv2_rule_and_opencv():
    np.testing.assert_array_equal(nearest_indices_cv2(16, 4), [0, 4, 8, 12])
    rng = np.random.default_rng(3)
    for (h, w), (oh, ow) in [
        ((1024, 1536), (341, 512)),
        ((300, 451), (512, 512)),
        ((3072, 2048), (512, 341)),
    ]:
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        ref = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(resize_nearest_cv2(img, (oh, ow)), ref)


@pytest.mark.parametrize(
    "in_size, out_size",
    [
        ((341, 512), (1024, 1536)),
        ((512, 341), (3072, 2048)),
        ((170, 512), (256, 768)),
        ((512, 512), (256, 256)),
        ((512, 512), (512, 512)),
        ((37, 53), (100, 61)),
    ],
)
def test_cv2_bilinear_uint8_is_bit_exact(in_size, out_size):
    rng = np.random.default_rng(sum(in_size))
    img = rng.integers(0, 256, size=(*in_size, 3), dtype=np.uint8)
    ref = cv2.resize(img, out_size[::-1], interpolation=cv2.INTER_LINEAR)
    ours = np.asarray(jax.jit(resize_bilinear_cv2_u8, static_argnums=1)(img, out_size))
    np.testing.assert_array_equal(ours, ref)
