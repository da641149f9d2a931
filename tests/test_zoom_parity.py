"""Zoom-to-Inpaint: the converted TF2 fixture checkpoint against the reference's stored outputs.

``fixtures/zti/zti_case.npz`` holds every stage of the reference test pipeline (TF 2.4, float32) on a
real photo. Tolerances (max abs diff): 1e-4 for every stage fed the stored output of the previous
stage ("isolated"), as the issue asks; the chained refinement output gets 2e-4 because TF's own
float32 noise there reaches 1.2e-4 (fixtures/zti/README.md: even a float64 run of the reference
differs from the stored values by 7.3e-5). Mean |diff| < 2e-6 everywhere catches systematic errors
much more sharply than the max. The discriminator is compared at 1e-5.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrinpaint_jax.checkpoints import load_pretrained
from hrinpaint_jax.ops.pixels import to_uint8
from hrinpaint_jax.ops.resize import resize_bicubic_tf
from hrinpaint_jax.pipelines.zoom import zoom_forward

ATOL = 1e-4
MEAN_ATOL = 2e-6


@pytest.fixture(scope="module")
def case(fixtures_dir):
    return dict(np.load(fixtures_dir / "zti" / "zti_case.npz"))


@pytest.fixture(scope="module")
def zoom(converted_zoom):
    model, variables, meta = load_pretrained(converted_zoom)
    return model, variables, meta


@pytest.fixture(scope="module")
def chained(zoom, case):
    model, variables, _ = zoom
    return jax.tree.map(
        np.asarray,
        zoom_forward(model, variables, jnp.asarray(case["lr_image"]), jnp.asarray(case["mask_lr"])),
    )


def assert_close(got, want, atol, name, mean_atol=MEAN_ATOL):
    got = np.asarray(got)
    assert got.shape == want.shape, name
    diff = np.abs(got.astype(np.float64) - want)
    assert diff.max() <= atol, f"{name}: max |diff| {diff.max():.3g} > {atol}"
    assert diff.mean() <= mean_atol, f"{name}: mean |diff| {diff.mean():.3g} > {mean_atol}"


def test_metadata_and_parameter_count(zoom):
    _, variables, meta = zoom
    assert meta["model"] == "zoom"
    count = lambda tree: sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))  # noqa: E731
    params = variables["params"]
    assert count(params["coarse"]) + count(params["refine"]) == 4_034_502
    assert count(params["coarse"]) + count(params["refine"]) + count(params["sr"]) == 4_481_161
    assert count(params["discriminator"]) == 4_308_160
    assert count(variables["spectral"]) == 18_660
    assert meta["num_params"] == 4_481_161 + 4_308_160


def test_chained_generators_match(chained, case):
    assert_close(chained["coarse"], case["coarse_out"], ATOL, "coarse_out")
    assert_close(chained["sr"], case["sr_out"], ATOL, "sr_out")
    assert_close(chained["refine"], case["refine_out"], 2 * ATOL, "refine_out (chained)")
    assert_close(chained["refine_lr"], case["refine_out_lr"], ATOL, "refine_out_lr")
    assert_close(chained["final"], case["final_out"], ATOL, "final_out")


def run_stage(model, variables, stage, x):
    """One generator of the bundle, jit-compiled, on a stored input."""
    fn = jax.jit(lambda v, x: model.apply(v, x, method=lambda m, x: getattr(m, stage)(x)))
    return np.asarray(fn(variables, jnp.asarray(x)))


def test_each_stage_on_the_stored_input(zoom, case):
    model, variables, _ = zoom
    sr = run_stage(model, variables, "sr", case["coarse_out"])
    assert_close(sr, case["sr_out"], 1e-5, "sr_out (isolated)")
    refine_in = np.concatenate([case["sr_out"], case["mask_hr"]], axis=-1)
    refine = run_stage(model, variables, "refine", refine_in)
    assert_close(refine, case["refine_out"], ATOL, "refine_out (isolated)")
    # The reference's literal N x N attention gives the same network output.
    dense = run_stage(model.clone(attention="dense"), variables, "refine", refine_in)
    np.testing.assert_allclose(dense, refine, rtol=0, atol=2e-5)
    refine_lr = resize_bicubic_tf(jnp.asarray(case["refine_out"]), (256, 256), antialias=True)
    assert_close(refine_lr, case["refine_out_lr"], 2e-6, "refine_out_lr (isolated)")


def test_saved_png_matches(chained, case):
    """The uint8 truncation of ``final``: equal except where the float sits on a 1/255 boundary."""
    png = to_uint8(np.asarray(chained["final"][0]), rounding="truncate")
    diff = np.abs(png.astype(int) - case["final_png_u8"].astype(int))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= 10  # of 196,608 values


def test_discriminator_two_calls_with_in_place_spectral_norm(zoom, case):
    """First call after the restore, then a second call on the kernels the first one rescaled."""
    model, variables, _ = zoom
    mask_hr = jnp.asarray(case["mask_hr"])
    composite = case["refine_out"] * case["mask_hr"] + case["hr_image"] * (1 - case["mask_hr"])
    apply = jax.jit(
        lambda v: model.apply(
            v,
            jnp.asarray(composite),
            mask_hr,
            method="discriminate",
            mutable=["params", "spectral", "intermediates"],
        )
    )
    state = dict(variables)
    for call in (1, 2):
        out, updates = apply(state)
        want = case["disc_out" if call == 1 else "disc_out_2"]
        assert_close(out, want, 1e-5, f"disc_out call {call}", mean_atol=1e-6)
        disc = updates["intermediates"]["discriminator"]
        sigma = np.array([disc[f"sn_conv{k}"]["sigma"][0] for k in range(5)])
        np.testing.assert_allclose(sigma, case["disc_sigma"][call - 1], rtol=1e-5)
        for k in range(5):
            sn = updates["spectral"]["discriminator"][f"sn_conv{k}"]
            for vec in "uv":
                np.testing.assert_allclose(
                    np.asarray(sn[vec]), case[f"disc_sn{k}_{vec}_after{call}"], rtol=0, atol=1e-6
                )
        kernel_before = state["params"]["discriminator"]["sn_conv0"]["kernel"]
        kernel_after = updates["params"]["discriminator"]["sn_conv0"]["kernel"]
        # QUIRK: the stored kernel itself is divided by sigma at every call.
        np.testing.assert_allclose(
            np.asarray(kernel_after), np.asarray(kernel_before) / sigma[0], rtol=1e-6
        )
        state = {**state, "params": updates["params"], "spectral": updates["spectral"]}
