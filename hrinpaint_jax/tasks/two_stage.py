"""The seed-000 two-stage method's training stages (REFERENCE.md 9.1-9.2).

dfnet          DFNet (stage 1) on crops with irregular holes, multi-scale loss 8.1.
shift_refine   the refinement U-Net on 512 patches of stage-1 results, eq. 1 loss.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hrinpaint_jax import losses
from hrinpaint_jax.models import build_model
from hrinpaint_jax.models.vgg import load_vgg16_lpips_weights
from hrinpaint_jax.parallel import AXIS
from hrinpaint_jax.pipelines.two_stage import refinement_patches, training_stage1
from hrinpaint_jax.refinement_data import refinement_batches
from hrinpaint_jax.tasks.base import Task, data_config, f32, mask_sampler, merge_variables
from hrinpaint_jax.tasks.perceptual import vgg16_pool_features
from hrinpaint_jax.train_checkpoints import load_weights


class FrozenNet(struct.PyTreeNode):
    """A frozen network as a step input: its module (static) and its variables (arrays)."""

    module: nn.Module = struct.field(pytree_node=False)
    variables: Any


class DFNetTask(Task):
    """seed-000 stage 1 (REFERENCE 9.1): DFNet on 512 crops with irregular holes, loss 8.1.

    The network works in BGR, like the released Places2 model that the two-stage pipeline expects
    (its QUIRK step 2 flips RGB -> BGR before DFNet), so trained weights drop into that pipeline."""

    def model(self):
        return build_model("dfnet", self.config, bn_axis_name=AXIS, dtype=self.dtype)

    def init_inputs(self):
        s = self.config.data.crop_size
        return (jnp.zeros((1, s, s, 3)), jnp.ones((1, s, s, 1)))

    def frozen(self):
        return {"vgg16": load_vgg16_lpips_weights()}

    def loss(self, params, model_state, frozen, batch, rng):
        x = batch["image_hr"][..., ::-1]  # RGB -> BGR (see the class docstring)
        known = 1.0 - batch["mask"]
        results, new_state = self.model().apply(
            merge_variables(params, model_state), x * known, known, train=True, mutable=["batch_stats"]
        )
        terms = losses.dfnet_loss(
            f32(results),
            x,
            known,
            vgg16_pool_features(frozen["vgg16"], self.dtype),
            weights=dict(self.config.loss.dfnet),
        )
        return terms["total"], (terms, new_state)

    def predict(self, state, frozen, batch):
        x = batch["image_hr"]
        known = 1.0 - batch["mask"]
        variables = merge_variables(state.params, state.model_state)
        out = self.model().apply(variables, (x * known)[..., ::-1], known)
        output = f32(out[0])[..., ::-1] * (1.0 - known) + x * known
        return {"input": x * known, "mask": batch["mask"], "output": output, "target": x}


class ShiftRefineTask(Task):
    """seed-000 refinement U-Net (REFERENCE 9.2): 512 patches (hole 10-90 %) of whole stage-1
    results (frozen DFNet on the fly, or precomputed), 20-channel input, eq. 1 loss.

    On the fly, the frozen stage 1 is a step input like the VGG weights: ``frozen()['dfnet']`` is a
    ``FrozenNet`` (the DFNet module, computing in the run's dtype, and its variables)."""

    def model(self):
        return build_model("shift_refine", self.config, bn_axis_name=AXIS, dtype=self.dtype)

    def init_inputs(self):
        s = self.config.refine.patch_size
        return (jnp.zeros((1, s, s, 19)), jnp.zeros((1, s, s, 1)))

    def frozen(self):
        frozen = {"vgg16": load_vgg16_lpips_weights()}
        r = self.config.refine
        if not r.stage1_dir:
            if not r.stage1_weights:
                raise ValueError(
                    "shift_refine needs config.refine.stage1_weights (a DFNet weights dir or DFNet "
                    "training workdir) or a precomputed config.refine.stage1_dir"
                )
            model, variables = load_weights(r.stage1_weights, expect_model="dfnet")
            # The frozen stage 1 computes in the run's dtype too.
            frozen["dfnet"] = FrozenNet(model.clone(dtype=self.dtype), variables)
        return frozen

    def batches(self, start_step, **layout):
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
        """(20-channel inputs, hole, target) patches of the batch's stage-1 results: precomputed
        ('stage1' in the batch) or from the frozen DFNet."""
        images, holes = batch["image_hr"], batch["mask"]
        if "stage1" in batch:
            matched = jnp.where(holes > 0.5, batch["stage1"], images)
        else:
            stage1 = frozen["dfnet"]
            matched = training_stage1(
                stage1.module,
                stage1.variables,
                images,
                holes,
                faithful=self.config.refine.stage1_faithful,
            )
        matched = jax.lax.stop_gradient(matched)
        return refinement_patches(
            matched,
            holes,
            images,
            batch["patch_top"],
            batch["patch_left"],
            size=self.config.refine.patch_size,
        )

    def loss(self, params, model_state, frozen, batch, rng):
        inputs, hole, target = self._patches(frozen, batch)
        out, new_state = self.model().apply(
            merge_variables(params, model_state), inputs, hole, train=True, mutable=["batch_stats"]
        )
        terms = losses.refinement_loss(
            f32(out),
            target,
            hole,
            vgg16_pool_features(frozen["vgg16"], self.dtype),
            weights=dict(self.config.loss.dfnet),
        )
        return terms["total"], (terms, new_state)

    def predict(self, state, frozen, batch):
        inputs, hole, target = self._patches(frozen, batch)
        variables = merge_variables(state.params, state.model_state)
        out = f32(self.model().apply(variables, inputs, hole))
        output = out * hole + target * (1.0 - hole)
        return {"input": inputs[..., :3], "mask": hole, "output": output, "target": target}
