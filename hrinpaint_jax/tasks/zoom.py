"""Zoom-to-Inpaint's training stages (REFERENCE.md 9.3): each generator pretrained alone, then the
joint GAN training.

  zoom_pretrain_coarse   coarse net @256, L1 + 0.01 VGG.
  zoom_pretrain_refine   refinement net @256 on the masked image, L1 + 0.01 VGG.
  zoom_pretrain_sr       SR x2 (LR 64 -> HR 128), L1.
  zoom_joint             coarse + SR + refine + PatchGAN D, loss 8.3 (small / large masks).

Host batches hold 'image_hr' (and 'mask', 'mask_hr'); the LR image is computed on the device inside
the step (``base.with_lr_image``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hrinpaint_jax import losses
from hrinpaint_jax.models import ZoomToInpaint, build_model, merge_discriminator, split_discriminator
from hrinpaint_jax.parallel import AXIS, pmean
from hrinpaint_jax.tasks.base import (
    Task,
    TrainState,
    f32,
    make_optimizer,
    make_schedule,
    merge_variables,
    split_variables,
    with_lr_image,
)
from hrinpaint_jax.tasks.perceptual import load_zti_vgg, zti_features


class _ZoomPretrain(Task):
    """ZTI pretraining of one generator (REFERENCE 9.3 stages 1a-1c)."""

    def frozen(self):
        if self.config.loss.vgg == 0:
            return {}  # SR pretraining: lambda_vgg = 0 (the reference computes VGG x 0; skipped here)
        _, params = load_zti_vgg(self.config)
        return {"vgg": params}

    def _vgg_fn(self, frozen):
        return zti_features(frozen["vgg"], 19 if self.config.loss.vgg19_weights else 16, self.dtype)

    def _loss_terms(self, out, target, frozen):
        out = f32(out)
        terms = {"l1": jnp.mean(losses.l1_per_sample(out, target))}
        total = self.config.loss.l1 * terms["l1"]
        if self.config.loss.vgg:
            size = self.config.loss.vgg_input_size
            vgg = losses.vgg_loss_per_sample(out, target, self._vgg_fn(frozen), size)
            terms["vgg"] = jnp.mean(vgg)
            total = total + self.config.loss.vgg * terms["vgg"]
        return total, terms


class ZoomCoarseTask(_ZoomPretrain):
    network = "coarse"

    def model(self):
        return build_model(self.network, self.config, bn_axis_name=AXIS, dtype=self.dtype)

    def init_inputs(self):
        s = self.config.data.crop_size
        return (jnp.zeros((1, s, s, 4)),)

    def _forward(self, variables, batch, train):
        x, m = batch["image_hr"], batch["mask"]
        inputs = jnp.concatenate([x * (1.0 - m), m], axis=-1)
        if train:
            return self.model().apply(variables, inputs, train=True, mutable=["batch_stats"])
        return self.model().apply(variables, inputs)

    def loss(self, params, model_state, frozen, batch, rng):
        out, new_state = self._forward(merge_variables(params, model_state), batch, True)
        total, terms = self._loss_terms(out, batch["image_hr"], frozen)
        return total, (terms, new_state)

    def predict(self, state, frozen, batch):
        x, m = batch["image_hr"], batch["mask"]
        out = f32(self._forward(merge_variables(state.params, state.model_state), batch, False))
        return {"input": x * (1.0 - m), "mask": m, "output": out * m + x * (1.0 - m), "target": x}


class ZoomRefineTask(ZoomCoarseTask):
    """Refinement pretraining @256: input = [masked image, mask], output = head + masked image."""

    network = "refine"


class ZoomSRTask(_ZoomPretrain):
    """SR pretraining: LR (TF bicubic antialiased downscale of the HR crop) -> HR, L1 only."""

    def model(self):
        return build_model("sr", self.config, dtype=self.dtype)

    def init_inputs(self):
        s = self.config.data.crop_size // self.config.data.lr_scale
        return (jnp.zeros((1, s, s, 3)),)

    def loss(self, params, model_state, frozen, batch, rng):
        batch = with_lr_image(batch, self.config.data.lr_scale)
        out = self.model().apply(merge_variables(params, model_state), batch["image_lr"], train=True)
        total, terms = self._loss_terms(out, batch["image_hr"], frozen)
        return total, (terms, model_state)

    def predict(self, state, frozen, batch):
        batch = with_lr_image(batch, self.config.data.lr_scale)
        variables = merge_variables(state.params, state.model_state)
        out = f32(self.model().apply(variables, batch["image_lr"]))
        up = jnp.repeat(jnp.repeat(batch["image_lr"], 2, axis=1), 2, axis=2)
        target = batch["image_hr"]
        return {"input": up, "mask": jnp.zeros_like(target[..., :1]), "output": out, "target": target}


class ZoomJointTask(_ZoomPretrain):
    """ZTI joint training (REFERENCE 9.3 stages 2-3, loss 8.3) with the PatchGAN discriminator.

    One step = one forward of every net; G's gradient (of the total G loss, w.r.t. coarse, SR and
    refine) and D's (of the hinge D loss) both come from that forward, as in the reference, so the
    update is simultaneous; the two optimisers are then applied (D, then G: the order does not
    matter for simultaneous gradients). D is called on the real, then on the fake image, each call
    one power iteration that writes the spectrally normalised kernel back (the reference's quirk);
    D's optimiser updates those written-back kernels.

    State 'g' holds the generators' variables, state 'd' the discriminator's (the model's
    'discriminator' subtrees, ``models.split_discriminator``)."""

    state_names = ("g", "d")

    def model(self):
        return build_model("zoom", self.config, bn_axis_name=AXIS, dtype=self.dtype)

    def init_inputs(self):
        s = self.config.data.crop_size // self.config.data.lr_scale
        return (jnp.zeros((1, s, s, 3)), jnp.zeros((1, s, s, 1)))

    def init_states(self, rng):
        params, model_state = self.init_variables(rng)
        generator, discriminator = split_discriminator(merge_variables(params, model_state))
        optim = self.config.optim
        d_tx = make_optimizer(optim, make_schedule(optim, optim.d_lr_ratio))
        return {
            "g": TrainState.create(*split_variables(generator), make_optimizer(optim, self.schedule)),
            "d": TrainState.create(*split_variables(discriminator), d_tx),
        }

    def _discriminate(self, d_variables, image_hr, mask_hr):
        """(logits, D's variables after the call's power iteration) (``ZoomToInpaint.discriminate``)."""
        logits, written = self.model().apply(
            merge_discriminator({"params": {}}, d_variables),
            image_hr,
            mask_hr,
            method=ZoomToInpaint.discriminate,
            mutable=["params", "spectral"],
        )
        return f32(logits), split_discriminator(written)[1]

    def _forward(self, g_params, g_state, d_params, d_state, frozen, batch):
        """Both losses of one step; the LR input is made from 'image_hr' here (``with_lr_image``)."""
        batch = with_lr_image(batch, self.config.data.lr_scale)
        lr, m, hr = batch["image_lr"], batch["mask"], batch["image_hr"]
        out, g_new = self.model().apply(
            merge_variables(g_params, g_state), lr, m, train=True, mutable=["batch_stats"]
        )
        out = f32(out)
        composite = losses.zti_composite(out["refine"], hr, out["mask_hr"])
        real, d_written = self._discriminate(merge_variables(d_params, d_state), hr, out["mask_hr"])
        fake, d_written = self._discriminate(d_written, composite, out["mask_hr"])
        g_terms = losses.zti_generator_loss(
            out, lr, hr, fake, self._vgg_fn(frozen), self._weights(), self.config.loss.vgg_input_size
        )
        d_loss = losses.zti_discriminator_loss(real, fake)
        aux = (g_terms, g_new, d_written, {"d_real": jnp.mean(real), "d_fake": jnp.mean(fake)})
        return (g_terms["total"], d_loss), aux

    def _weights(self):
        w = self.config.loss
        return {"l1": w.l1, "vgg": w.vgg, "vgg_refine": w.vgg_refine, "gan": w.gan}

    def train_forward(self, states, frozen, batch, rng):
        g, d = states["g"], states["d"]
        return self._forward(g.params, g.model_state, d.params, d.model_state, frozen, batch)

    def train_step(self, states, frozen, batch, rng):
        g, d = states["g"], states["d"]
        lr = self.schedule(g.step)

        def both(g_params, d_params):
            return self._forward(g_params, g.model_state, d_params, d.model_state, frozen, batch)

        (g_loss, d_loss), vjp, aux = jax.vjp(both, g.params, d.params, has_aux=True)
        g_terms, g_state, d_written, d_metrics = aux
        one, zero = jnp.ones_like(g_loss), jnp.zeros_like(g_loss)
        g_grads = pmean(vjp((one, zero))[0])
        d_grads = pmean(vjp((zero, one))[1])
        d_params, d_state = split_variables(d_written)
        d = d.apply_gradients(d_grads, params=d_params).replace(model_state=d_state)
        g = g.apply_gradients(g_grads).replace(model_state=g_state)
        metrics = {**g_terms, **d_metrics, "loss": g_loss, "d_loss": d_loss, "lr": lr}
        return {"g": g, "d": d}, pmean(metrics)

    def predict(self, state, frozen, batch):
        batch = with_lr_image(batch, self.config.data.lr_scale)
        variables = merge_variables(state.params, state.model_state)
        out = f32(self.model().apply(variables, batch["image_lr"], batch["mask"]))
        hr, m = batch["image_hr"], out["mask_hr"]
        output = losses.zti_composite(out["refine"], hr, m)
        return {"input": hr * (1.0 - m), "mask": m, "output": output, "target": hr}
