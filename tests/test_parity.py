"""Parity of the converted fixture checkpoints with the reference PyTorch code's stored outputs.

The fixtures (../shared/fixtures/README.md) hold random, quantised weights in the released layouts
and the reference code's own eval-mode outputs. Tolerance: max abs diff <= 1e-5 (the issue asks for
1e-4; float32 XLA on CPU lands at ~1e-6, and the reference's own 1-vs-2-thread noise is ~2e-7).
"""

import jax
import numpy as np
import pytest

from hrinpaint_jax.checkpoints import load_pretrained
from hrinpaint_jax.ops.shift import reference_shift, shift_refine_input

ATOL = 1e-5


def nhwc(a):
    return np.transpose(a, (0, 2, 3, 1))


@pytest.mark.parametrize("case", ["dfnet_case", "dfnet_case_256x768"])
def test_dfnet_matches_reference(case, converted, fixtures_dir):
    data = np.load(fixtures_dir / f"{case}.npz")
    model, variables, _ = load_pretrained(converted["dfnet"])
    outputs = jax.jit(lambda v, x, m: model.apply(v, x, m, train=False))(
        variables, nhwc(data["img_miss"]), nhwc(data["mask"])
    )
    assert len(outputs) == 6
    for k, out in enumerate(outputs):
        want = nhwc(data[f"out_{k}"])
        assert out.shape == want.shape, k
        np.testing.assert_allclose(np.asarray(out), want, rtol=0, atol=ATOL, err_msg=f"out_{k}")


def test_shift_refine_matches_reference(converted, fixtures_dir):
    data = np.load(fixtures_dir / "refinement_case.npz")
    model, variables, _ = load_pretrained(converted["shift_refine"])
    image, mask = nhwc(data["img"]), nhwc(data["mask"])
    out = jax.jit(lambda v, x, m: model.apply(v, x, m, train=False))(variables, image, mask)
    want = nhwc(data["out"])
    np.testing.assert_allclose(np.asarray(out), want, rtol=0, atol=ATOL)
    # Outside the hole the output is the matched image, bit for bit.
    known = mask[..., 0] == 0
    np.testing.assert_array_equal(np.asarray(out)[known], image[..., :3][known])


def test_shift_input_matches_reference(fixtures_dir):
    """The 19 image channels equal the reference pipeline's own, built from channels 0-2 + mask."""
    data = np.load(fixtures_dir / "refinement_case.npz")
    image, mask = nhwc(data["img"]), nhwc(data["mask"])
    assert reference_shift(image.shape[1]) == 100
    built = shift_refine_input(image[..., :3], mask, reference_shift(image.shape[1]))
    np.testing.assert_array_equal(np.asarray(built), image)


def test_bf16_weights_are_exact(converted):
    """The fixture weights are bf16-representable, as their README states; the converter keeps
    them bit-exact in float32."""
    _, variables, _ = load_pretrained(converted["dfnet"])
    for leaf in jax.tree.leaves(variables):
        leaf = np.asarray(leaf)
        np.testing.assert_array_equal(leaf.astype(jax.numpy.bfloat16).astype(np.float32), leaf)
