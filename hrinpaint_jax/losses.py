"""Training losses of both papers as pure functions (REFERENCE.md section 8).

Feature extractors are passed in as callables, so every loss can be tested on hand-checkable
features and the training code decides which VGG (and which weights) to use:

* DFNet / seed-000: ``features(x) -> [pool1, pool2, pool3]`` of VGG16 on the raw [0, 1] image
  (REFERENCE 8.1: no ImageNet normalisation; channel order as the caller feeds the network).
* Zoom-to-Inpaint: ``features(x) -> block4_conv1`` (after ReLU) of VGG19 on the *preprocessed* 224 x 224
  image (``zti_vgg_input``).

Shapes are NHWC. "Per sample" functions return [B]; the Zoom-to-Inpaint training divides their sum
by the global batch size (``compute_average_loss``), i.e. takes the batch mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from hrinpaint_jax.ops.resize import image_gradients_tf, resize_bilinear_tf, resize_bilinear_torch

FeatureFn = Callable[[jax.Array], Sequence[jax.Array]]

# DFNet config.yaml weights; also the seed-000 refinement loss (paper eq. 1).
DFNET_WEIGHTS = {"l1": 6.0, "perceptual": 0.1, "style": 240.0, "tv": 0.1}
# Zoom-to-Inpaint config defaults (REFERENCE 8.3).
ZTI_WEIGHTS = {"l1": 1.0, "vgg": 0.01, "vgg_refine": 1e-5, "gan": 0.5}
# Caffe BGR means of the Keras VGG19 weights.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def _per_sample_mean(x: jax.Array) -> jax.Array:
    return jnp.mean(x.reshape(x.shape[0], -1), axis=1)


# --------------------------------------------------------------------------------------------------
# Building blocks.


def gram_matrix(f: jax.Array) -> jax.Array:
    """``G = F F^T / (C H W)`` per sample, F = C x HW (DFNet). [B, H, W, C] -> [B, C, C]."""
    b, h, w, c = f.shape
    flat = f.reshape(b, h * w, c)
    return jnp.einsum("bnc,bnd->bcd", flat, flat) / (c * h * w)


def tv_stencil(x: jax.Array) -> jax.Array:
    """DFNet's TV operator: ``T(x)[y, x] = x[y-1, x] + x[y, x-1] - 2 x[y, x]`` per channel, zero
    padding. QUIRK (reference): the *sum* of two backward differences, not a sum of absolute values.
    [B, H, W, C] -> [B, H, W, C]."""
    up = jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]
    left = jnp.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]
    return up + left - 2.0 * x


# --------------------------------------------------------------------------------------------------
# DFNet (REFERENCE 8.1) and the seed-000 refinement (8.2).


def dfnet_loss(
    results: Sequence[jax.Array],
    target: jax.Array,
    known: jax.Array,
    features: FeatureFn,
    weights: Mapping[str, float] = DFNET_WEIGHTS,
) -> dict[str, jax.Array]:
    """DFNet's multi-scale loss.

    Args:
      results: the 6 fused outputs, finest first ([B, H/2^k, W/2^k, 3]).
      target: [B, H, W, 3] ground truth (same channel order as the results).
      known: [B, H, W, 1] the model's mask (DFNet polarity, 1 = known), used by the TV term.
      features: VGG16 -> [pool1, pool2, pool3] on raw [0, 1] images.
    Returns:
      {'l1', 'perceptual', 'style', 'tv', 'total'} (scalars; 'total' weighted by ``weights``).
    """
    targets = [resize_bilinear_torch(target, r.shape[1:3]) for r in results]  # no antialias
    l1 = sum(jnp.mean(jnp.abs(r - t)) for r, t in zip(results, targets, strict=True)) / len(results)
    perceptual = style = tv = 0.0
    texture = (0, 1, 2)
    for k in texture:
        f_t, f_r = features(targets[k]), features(results[k])
        for a, b in zip(f_t, f_r, strict=True):
            perceptual = perceptual + jnp.mean(jnp.abs(a - b))
            style = style + jnp.mean(jnp.abs(gram_matrix(a) - gram_matrix(b)))
        # QUIRK (reference): the texture branch swaps results and targets, so TV is taken on the
        # *targets*: a constant with zero gradient. Kept for comparable loss values.
        mask_k = resize_bilinear_torch(known.astype(target.dtype), targets[k].shape[1:3])
        tv = tv + jnp.mean(jnp.abs(tv_stencil(targets[k]) * mask_k))
    perceptual, style, tv = (v / len(texture) for v in (perceptual, style, tv))
    terms = {"l1": l1, "perceptual": perceptual, "style": style, "tv": tv}
    terms["total"] = sum(weights[k] * v for k, v in terms.items())
    return terms


def refinement_loss(
    output: jax.Array,
    target: jax.Array,
    hole: jax.Array,
    features: FeatureFn,
    weights: Mapping[str, float] = DFNET_WEIGHTS,
) -> dict[str, jax.Array]:
    """seed-000 refinement loss (paper eq. 1): ``0.1 L_tv + 6 L1 + 0.1 L_p + 240 L_s``.

    The paper lists the terms but not the layers or the TV operator; this uses DFNet's choices
    (VGG16 pool1-3, the same TV stencil) on the single output. Unlike DFNet's quirk, TV is taken on
    the *prediction*, inside the hole ("total variation in the masked area"), so it is a real
    smoothness term.

    Args:
      output, target: [B, H, W, 3]; hole: [B, H, W, 1], 1 = hole.
    Returns:
      {'l1', 'perceptual', 'style', 'tv', 'total'}.
    """
    f_o, f_t = features(output), features(target)
    terms = {
        "l1": jnp.mean(jnp.abs(output - target)),
        "perceptual": sum(jnp.mean(jnp.abs(a - b)) for a, b in zip(f_o, f_t, strict=True)),
        "style": sum(
            jnp.mean(jnp.abs(gram_matrix(a) - gram_matrix(b))) for a, b in zip(f_o, f_t, strict=True)
        ),
        "tv": jnp.mean(jnp.abs(tv_stencil(output) * hole.astype(output.dtype))),
    }
    terms["total"] = sum(weights[k] * v for k, v in terms.items())
    return terms


# --------------------------------------------------------------------------------------------------
# Zoom-to-Inpaint (REFERENCE 8.3).


def l1_per_sample(x: jax.Array, y: jax.Array) -> jax.Array:
    """Per-sample mean over H, W (and C) of ``|x - y|``. [B, H, W, C] -> [B]."""
    return _per_sample_mean(jnp.abs(x - y))


def gradient_loss_per_sample(x: jax.Array, y: jax.Array) -> jax.Array:
    """Per-sample mean of ``dx^2 + dy^2`` of the TF forward-difference gradients of ``x - y``
    (last row / column are 0 and stay in the mean). Squared, as the reference (not L1)."""
    dy, dx = image_gradients_tf(x - y)
    return _per_sample_mean(jnp.square(dx) + jnp.square(dy))


def zti_vgg_input(x: jax.Array, size: int = 224) -> jax.Array:
    """Keras VGG19 preprocessing as the reference's VGG loss does it: ``x * 255``, RGB -> BGR, minus
    the Caffe means, **then** an antialiased bilinear resize to 224 x 224 (order kept on purpose)."""
    bgr = x[..., ::-1] * 255.0 - jnp.asarray(CAFFE_BGR_MEAN, x.dtype)
    return resize_bilinear_tf(bgr, (size, size), antialias=True)


def vgg_loss_per_sample(x: jax.Array, y: jax.Array, features: Callable, size: int = 224) -> jax.Array:
    """Per-sample mean ``|phi(x) - phi(y)|`` of VGG19 ``block4_conv1`` (after ReLU) on the
    preprocessed ``size`` x ``size`` inputs (224 in the reference). ``features`` maps the
    ``zti_vgg_input`` to that activation."""
    phi = lambda z: features(zti_vgg_input(z, size))  # noqa: E731
    return _per_sample_mean(jnp.abs(phi(x) - phi(y)))


def hinge_d_per_sample(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))`` per sample. [B, K] -> [B]."""
    return _per_sample_mean(jax.nn.relu(1.0 - real_logits)) + _per_sample_mean(
        jax.nn.relu(1.0 + fake_logits)
    )


def hinge_g_per_sample(fake_logits: jax.Array) -> jax.Array:
    """``-mean(D(fake))`` per sample. [B, K] -> [B]."""
    return -_per_sample_mean(fake_logits)


def zti_generator_loss(
    outputs: Mapping[str, jax.Array],
    label_lr: jax.Array,
    label_hr: jax.Array,
    fake_logits: jax.Array | None,
    features: Callable,
    weights: Mapping[str, float] = ZTI_WEIGHTS,
    vgg_size: int = 224,
) -> dict[str, jax.Array]:
    """The joint-training generator loss of Zoom-to-Inpaint (per-sample values, batch-averaged).

    Args:
      outputs: ``ZoomToInpaint`` outputs: 'coarse', 'sr', 'refine', 'mask_hr'.
      label_lr, label_hr: the LR and HR labels.
      fake_logits: D on ``[composite, mask_hr]`` (see ``zti_composite``), or None without GAN.
      features: VGG19 ``block4_conv1`` on preprocessed inputs.
    Returns:
      {'coarse', 'sr', 'refine', 'total'} and the individual terms.
    """
    composite = zti_composite(outputs["refine"], label_hr, outputs["mask_hr"])
    terms = {
        "coarse_l1": l1_per_sample(outputs["coarse"], label_lr),
        "coarse_vgg": vgg_loss_per_sample(outputs["coarse"], label_lr, features, vgg_size),
        "sr_l1": l1_per_sample(outputs["sr"], label_hr),  # whole image, no masking
        "refine_l1": l1_per_sample(composite, label_hr),
        "refine_grad": gradient_loss_per_sample(composite, label_hr),
        "refine_vgg": vgg_loss_per_sample(composite, label_hr, features, vgg_size),
    }
    if fake_logits is not None:
        terms["refine_gan"] = hinge_g_per_sample(fake_logits)
    terms = {k: jnp.mean(v) for k, v in terms.items()}
    coarse = weights["l1"] * terms["coarse_l1"] + weights["vgg"] * terms["coarse_vgg"]
    sr = weights["l1"] * terms["sr_l1"]
    # The gradient loss shares lambda_l1 (REFERENCE 8.3).
    refine = weights["l1"] * (terms["refine_l1"] + terms["refine_grad"])
    refine = refine + weights["vgg_refine"] * terms["refine_vgg"]
    if fake_logits is not None:
        refine = refine + weights["gan"] * terms["refine_gan"]
    return {**terms, "coarse": coarse, "sr": sr, "refine": refine, "total": coarse + sr + refine}


def zti_composite(refine: jax.Array, label_hr: jax.Array, mask_hr: jax.Array) -> jax.Array:
    """``r * m_hr + x_hr * (1 - m_hr)``: the refinement output blended with the **HR label** (not
    with the SR output), which both the generator losses and D see."""
    return refine * mask_hr + label_hr * (1.0 - mask_hr)


def zti_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Hinge loss of D, batch-averaged."""
    return jnp.mean(hinge_d_per_sample(real_logits, fake_logits))
