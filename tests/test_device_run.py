"""The GPU run's own pieces that the CPU rehearsal (``make test`` ends with it) does not pin down:
configs/gpu.py continues the bundled weights exactly, and the bundle's travel count."""

import jax
import numpy as np
import pytest
from flax import traverse_util

from configs import gpu
from hrinpaint_jax.init_from import source_states
from hrinpaint_jax.tasks import get_task


@pytest.mark.parametrize("stage", gpu.STAGES)
def test_gpu_config_continues_the_bundled_weights(stage):
    """Every stage starts from the embedded weights (init_from), and every leaf of them fits the
    stage's freshly initialised states (same widths), in bfloat16 compute with float32 params."""
    config = gpu.get_config(stage)
    assert config.dtype == "bfloat16" and config.optim.boundaries == ()
    assert config.num_train_steps == gpu.MAX_STEPS and 0 < gpu.SHARE[stage] < 1
    task = get_task(config)
    states = jax.eval_shape(task.init_states, jax.random.key(0))
    sources = source_states(config.init_from)
    for name, src in sources.items():
        want = traverse_util.flatten_dict({"params": states[name].params, **states[name].model_state})
        got = traverse_util.flatten_dict({"params": src["params"], **src["model_state"]})
        assert set(got) == set(want), f"{stage}/{name}: {set(got) ^ set(want)}"
        for key, leaf in got.items():
            assert np.shape(leaf) == want[key].shape, (stage, name, key)
            if key[0] == "params":
                assert want[key].dtype == np.float32, (stage, name, key)
    assert abs(sum(gpu.SHARE.values()) - 1.0) < 1e-9


def test_gpu_config_rejects_unknown_stage():
    with pytest.raises(ValueError, match="unknown GPU stage"):
        gpu.get_config("nope")


def test_travel_count_sees_tracked_files():
    from tools.device_bundle import MIB, tree_bytes

    total = tree_bytes()
    # The embedded weights alone are several MiB; the whole tree must stay under the 64 MiB limit.
    assert 4 * MIB < total < 60 * MIB
