"""Losses of both papers on hand-checkable cases (REFERENCE.md section 8)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrinpaint_jax import losses


def avg_pool(x, k):
    b, h, w, c = x.shape
    return x.reshape(b, h // k, k, w // k, k, c).mean(axis=(2, 4))


def fake_pools(x):
    """A stand-in for VGG16 pool1..pool3 with the same resolutions (2, 4, 8)."""
    return [avg_pool(x, 2), avg_pool(x, 4), avg_pool(x, 8)]


def test_gram_matrix_normalisation():
    f = jnp.ones((2, 4, 3, 5))
    np.testing.assert_allclose(np.asarray(losses.gram_matrix(f)), np.full((2, 5, 5), 12 / 60))
    f = jnp.zeros((1, 1, 2, 2)).at[0, 0, 0, 0].set(2.0).at[0, 0, 1, 1].set(3.0)
    np.testing.assert_allclose(np.asarray(losses.gram_matrix(f)[0]), [[4 / 4, 0], [0, 9 / 4]])


def test_tv_stencil_is_the_sum_of_two_backward_differences():
    x = jnp.asarray([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    # T[y, x] = x[y-1, x] + x[y, x-1] - 2 x[y, x], zero padding.
    want = [[0 + 0 - 2, 0 + 1 - 4], [1 + 0 - 6, 2 + 3 - 8]]
    np.testing.assert_array_equal(np.asarray(losses.tv_stencil(x))[0, ..., 0], want)


def test_l1_and_gradient_loss():
    y = jnp.zeros((2, 2, 3, 1))
    x = jnp.broadcast_to(jnp.arange(3.0)[None, None, :, None], (2, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(losses.l1_per_sample(x, y)), [1.0, 1.0])
    # dx = 1, 1, 0 along each row (last column 0, kept in the mean), dy = 0: mean(dx^2) = 2/3.
    np.testing.assert_allclose(np.asarray(losses.gradient_loss_per_sample(x, y)), [2 / 3] * 2)
    # Squared, not absolute: doubling the ramp quadruples the loss.
    np.testing.assert_allclose(np.asarray(losses.gradient_loss_per_sample(2 * x, y)), [8 / 3] * 2)


def test_hinge_losses():
    real = jnp.asarray([[0.5, 2.0], [-1.0, 1.0]])
    fake = jnp.asarray([[-2.0, 0.0], [1.0, -0.5]])
    # sample 0: mean(relu(1 - [0.5, 2])) = 0.25, mean(relu(1 + [-2, 0])) = 0.5
    # sample 1: mean(relu(1 - [-1, 1])) = 1.0,  mean(relu(1 + [1, -0.5])) = 1.25
    np.testing.assert_allclose(np.asarray(losses.hinge_d_per_sample(real, fake)), [0.75, 2.25])
    np.testing.assert_allclose(np.asarray(losses.hinge_g_per_sample(fake)), [1.0, -0.25])
    assert float(losses.zti_discriminator_loss(real, fake)) == pytest.approx(1.5)


def _pyramid(target):
    from hrinpaint_jax.ops.resize import resize_bilinear_torch

    return [resize_bilinear_torch(target, (32 // 2**k, 32 // 2**k)) for k in range(6)]


def test_dfnet_loss_terms_and_the_tv_quirk():
    rng = np.random.default_rng(0)
    target = jnp.asarray(rng.uniform(size=(2, 32, 32, 3)), jnp.float32)
    known = jnp.ones((2, 32, 32, 1)).at[:, 8:24, 8:24].set(0.0)
    exact = losses.dfnet_loss(_pyramid(target), target, known, fake_pools)
    for term in ("l1", "perceptual", "style"):
        assert float(exact[term]) == pytest.approx(0.0, abs=1e-7), term
    assert float(exact["tv"]) > 0
    shifted = losses.dfnet_loss([r + 0.1 for r in _pyramid(target)], target, known, fake_pools)
    assert float(shifted["l1"]) == pytest.approx(0.1, rel=1e-5)
    assert float(shifted["perceptual"]) == pytest.approx(0.3, rel=1e-5)  # 3 pools x 0.1, mean of 3
    assert float(shifted["tv"]) == pytest.approx(float(exact["tv"]))
    total = sum(losses.DFNET_WEIGHTS[k] * shifted[k] for k in ("l1", "perceptual", "style", "tv"))
    assert float(shifted["total"]) == pytest.approx(float(total))
    # QUIRK: TV is computed on the targets, so it has no gradient with respect to the results.
    grads = jax.grad(lambda rs: losses.dfnet_loss(rs, target, known, fake_pools)["tv"])(_pyramid(target))
    assert all(float(jnp.abs(g).max()) == 0 for g in grads)


def test_refinement_loss_tv_acts_on_the_prediction_inside_the_hole():
    rng = np.random.default_rng(1)
    target = jnp.asarray(rng.uniform(size=(1, 16, 16, 3)), jnp.float32)
    hole = jnp.zeros((1, 16, 16, 1)).at[:, 4:12, 4:12].set(1.0)
    same = losses.refinement_loss(target, target, hole, fake_pools)
    assert float(same["l1"]) == 0 and float(same["style"]) == 0
    grad = jax.grad(lambda o: losses.refinement_loss(o, target, hole, fake_pools)["tv"])(target)
    assert float(jnp.abs(grad[:, 5:11, 5:11]).max()) > 0
    assert float(jnp.abs(grad[:, :2, :2]).max()) == 0  # far from the hole: no TV gradient


def test_zti_vgg_input_preprocessing():
    x = jnp.full((1, 64, 48, 3), 0.5).at[..., 0].set(1.0)  # R = 1, G = B = 0.5
    z = losses.zti_vgg_input(x)
    assert z.shape == (1, 224, 224, 3)
    b, g, r = 127.5 - 103.939, 127.5 - 116.779, 255.0 - 123.68  # BGR order, Caffe means
    np.testing.assert_allclose(np.asarray(z[0, 100, 100]), [b, g, r], rtol=1e-5)


def test_zti_generator_loss_blends_with_the_hr_label():
    rng = np.random.default_rng(2)
    label_hr = jnp.asarray(rng.uniform(size=(2, 16, 16, 3)), jnp.float32)
    label_lr = avg_pool(label_hr, 2)
    mask_hr = jnp.zeros((2, 16, 16, 1)).at[:, 4:8, 4:8].set(1.0)
    garbage_outside = jnp.where(mask_hr > 0, label_hr, 5.0)  # right in the hole, wrong elsewhere
    outputs = {"coarse": label_lr, "sr": label_hr, "refine": garbage_outside, "mask_hr": mask_hr}
    features = lambda z: avg_pool(z, 8)  # noqa: E731 - a stand-in for block4_conv1 at 224 / 8
    fake = jnp.full((2, 4), 0.25)
    out = losses.zti_generator_loss(outputs, label_lr, label_hr, fake, features)
    for term in ("coarse_l1", "coarse_vgg", "sr_l1", "refine_l1", "refine_grad", "refine_vgg"):
        assert float(out[term]) == pytest.approx(0.0, abs=1e-6), term
    assert float(out["refine"]) == pytest.approx(0.5 * -0.25)
    assert float(out["total"]) == pytest.approx(float(out["coarse"] + out["sr"] + out["refine"]))
    worse = losses.zti_generator_loss(
        {**outputs, "sr": label_hr + 0.2}, label_lr, label_hr, None, features
    )
    assert float(worse["sr"]) == pytest.approx(0.2, rel=1e-5) and "refine_gan" not in worse
