"""What every training stage shares: the train state, the optimiser and its schedule, the data and
masks a config asks for, and the ``Task`` plumbing (init, the data-parallel step, samples).

A stage (``tasks/two_stage.py``, ``tasks/zoom.py``) provides its network (``model``), the inputs that
initialise it, a ``loss`` and a ``predict``; ``Task.train_step`` turns them into one pure step run
under ``pmap`` (axis ``parallel.AXIS``). The learning-rate schedule is built once (``make_schedule``),
given to the optimiser and logged as it is.

Mixed precision (``config.dtype = 'bfloat16'``): the trained networks and the frozen ones (VGG, the
stage-1 DFNet) compute in bfloat16; parameters, optimiser state, BatchNorm statistics, gradients and
every loss term stay float32 (network outputs and VGG features are cast to float32 before a loss).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from hrinpaint_jax import masks as masks_lib
from hrinpaint_jax.input_pipeline import DataConfig, host_batches
from hrinpaint_jax.layers import compute_dtype
from hrinpaint_jax.ops.resize import resize_bicubic_tf
from hrinpaint_jax.parallel import device_rng, pmean


def f32(x):
    """Network outputs (arrays, lists or dicts of them) as float32, for the losses."""
    return jax.tree.map(lambda a: a.astype(jnp.float32), x)


def split_variables(variables) -> tuple[Any, dict]:
    """(params, the other collections) of a Flax variables tree."""
    variables = dict(variables)
    params = variables.pop("params")
    return params, variables


def merge_variables(params, model_state) -> dict:
    return {"params": params, **model_state}


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
        return self.replace(
            step=self.step + 1, params=optax.apply_updates(params, updates), opt_state=opt_state
        )

    def to_tree(self) -> dict[str, Any]:
        """What a checkpoint stores (no optimiser function)."""
        return {
            "step": self.step,
            "params": self.params,
            "model_state": self.model_state,
            "opt_state": self.opt_state,
        }

    def from_tree(self, tree: dict[str, Any]) -> TrainState:
        return self.replace(**tree)


def make_schedule(optim, lr_scale: float = 1.0) -> optax.Schedule:
    """The stair schedule ``lr * decay^k`` once the update count exceeds k boundaries.

    TF's PiecewiseConstantDecay keeps value i while ``step <= boundary_i`` (REFERENCE 9.3); optax
    switches at ``count >= boundary``, hence the ``+ 1``."""
    return optax.piecewise_constant_schedule(
        optim.lr * lr_scale, {int(b) + 1: float(optim.decay) for b in optim.boundaries}
    )


def make_optimizer(optim, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Adam on ``schedule``. Adam's eps: see the configs (Keras uses 1e-7 in its eps-hat form,
    PyTorch 1e-8)."""
    return optax.adam(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps)


def data_config(config, **overrides) -> DataConfig:
    """The ``input_pipeline.DataConfig`` of ``config.data`` (and ``config.seed``)."""
    d = config.data
    fields = dict(
        source=d.source,
        split=d.split,
        data_dir=d.data_dir or None,
        crop_size=d.crop_size,
        lr_scale=d.lr_scale,
        global_batch_size=d.global_batch_size,
        seed=config.seed,
        shuffle_buffer=d.shuffle_buffer,
        flip=d.flip,
        holdout=tuple(d.holdout),
        cache_mb=d.get("cache_mb", DataConfig.cache_mb),  # configs saved before the field
    )
    return DataConfig(**{**fields, **overrides})


def mask_sampler(masks) -> Callable | None:
    """``config.masks.kind``: 'none'; 'irregular' (seed-000, hole ratio in [min_ratio, max_ratio]);
    or a ``MaskSchedule`` kind of ZTI stroke masks ('small', 'large', 'progressive', 'ramp')."""
    if masks.kind == "none":
        return None
    if masks.kind == "irregular":

        def irregular(step, batch, height, width, rng):
            holes = [
                masks_lib.irregular_mask(
                    height, width, rng, min_ratio=masks.min_ratio, max_ratio=masks.max_ratio
                )
                for _ in range(batch)
            ]
            return np.stack(holes)[..., None]

        return irregular
    schedule = masks_lib.MaskSchedule.from_config(masks)

    def strokes(step, batch, height, width, rng):
        return masks_lib.sample_masks(schedule, step, batch, height, width, rng)

    return strokes


class Task:
    """One training stage; ``config`` is the whole ml_collections config.

    Every method is pure in its arguments: the config, the computation dtype and the generator's
    learning-rate ``schedule`` are fixed at construction."""

    state_names: tuple[str, ...] = ("g",)

    def __init__(self, config):
        self.config = config
        # The networks' computation dtype (None: float32); validates config.dtype up front.
        self.dtype = compute_dtype(config.get("dtype", "float32"), "config.dtype")
        self.schedule = make_schedule(config.optim)

    # -- a stage provides ----------------------------------------------------------------------
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

    def frozen(self) -> dict[str, Any]:
        """Inputs of the step that are not trained (VGG weights, a frozen stage 1)."""
        return {}

    # -- shared --------------------------------------------------------------------------------
    def batches(self, start_step: int, **layout) -> Iterator[dict[str, np.ndarray]]:
        sampler = mask_sampler(self.config.masks)
        return host_batches(data_config(self.config), sampler, start_step=start_step, **layout)

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

    def init_variables(self, rng: jax.Array) -> tuple[Any, dict]:
        """(params, other collections) of a freshly initialised ``model()``."""
        variables = jax.jit(lambda r: self.model().init(r, *self.init_inputs(), train=False))(rng)
        return split_variables(variables)

    def init_states(self, rng: jax.Array) -> dict[str, TrainState]:
        params, model_state = self.init_variables(rng)
        tx = make_optimizer(self.config.optim, self.schedule)
        return {"g": TrainState.create(params, model_state, tx)}

    def train_step(self, states, frozen, batch, rng):
        """One data-parallel step (inside ``pmap``): gradients, metrics (and BatchNorm statistics,
        synchronised in the layers) averaged over all devices. 'lr' is the schedule's value at
        this update."""
        g = states["g"]
        lr = self.schedule(g.step)
        grad_fn = jax.value_and_grad(self.loss, has_aux=True)
        (loss, (metrics, model_state)), grads = grad_fn(
            g.params, g.model_state, frozen, batch, device_rng(rng, g.step)
        )
        g = g.apply_gradients(pmean(grads)).replace(model_state=model_state)
        return {"g": g}, pmean({**metrics, "loss": loss, "lr": lr})

    def train_forward(self, states, frozen, batch, rng) -> Any:
        """The train-mode forward of ``train_step`` without gradients or updates (inside ``pmap``;
        ``precise_bn`` watches its BatchNorms)."""
        g = states["g"]
        return self.loss(g.params, g.model_state, frozen, batch, device_rng(rng, g.step))

    def samples(self, states, frozen, batch):
        return self.predict(states["g"], frozen, batch)
