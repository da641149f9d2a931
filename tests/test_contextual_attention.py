"""Contextual attention (REFERENCE.md section 6): fixture parity of the dense formulation, the
propagation wrap-around by hand, and the memory-efficient path against the dense one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrinpaint_jax.ops.contextual_attention import attention_values_efficient, contextual_attention
from hrinpaint_jax.ops.contextual_attention_dense import (
    apply_attention_map,
    attention_map_dense,
    downscale_nearest,
    hole_queries,
    propagate_scores,
    space_to_depth,
)
from hrinpaint_jax.ops.contextual_attention_plan import block_plan, propagation_index_map


@pytest.fixture(scope="module")
def case(fixtures_dir):
    with np.load(fixtures_dir / "zti" / "contextual_attention_case.npz") as data:
        return {k: data[k] for k in data.files}


def _maxdiff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ---------------------------------------------------------------------------------------------
# Fixture parity
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", ["a", "b"])
def test_fixture_downscale_is_exact(case, p):
    assert np.array_equal(np.asarray(downscale_nearest(case[f"{p}_feat"], 2)), case[f"{p}_feat_small"])
    assert np.array_equal(np.asarray(downscale_nearest(case[f"{p}_mask_b"], 2)), case[f"{p}_mask_s"])


@pytest.mark.parametrize("p", ["a", "b"])
def test_fixture_attention_map_and_application(case, p):
    att = attention_map_dense(case[f"{p}_feat_small"], case[f"{p}_mask_s"])
    assert att.shape == case[f"{p}_att"].shape
    assert _maxdiff(att, case[f"{p}_att"]) < 1e-6
    applied = apply_attention_map(case[f"{p}_feat"], case[f"{p}_att"], case[f"{p}_mask_b"])
    assert _maxdiff(applied, case[f"{p}_applied"]) < 1e-5


@pytest.mark.parametrize("p", ["a", "b"])
@pytest.mark.parametrize(
    "implementation, blocks",
    [
        ("dense", (None, None)),
        ("efficient", (None, None)),
        ("efficient", (7, 5)),
        ("efficient", (24, 64)),
    ],
)
def test_fixture_contextual_attention(case, p, implementation, blocks):
    out = contextual_attention(
        case[f"{p}_feat"],
        case[f"{p}_mask_b"],
        implementation=implementation,
        query_block=blocks[0],
        key_block=blocks[1],
    )
    # Absolute tolerance: case b's hole rows are exactly 0 (float32 exp underflow, REFERENCE.md 6.4).
    assert _maxdiff(out, case[f"{p}_applied"]) < 1e-5


@pytest.mark.parametrize("p", ["a", "b"])
def test_fixture_quirk_row_sums_below_one(case, p):
    """The row max includes masked keys: every hole query keeps a row sum < 1 (case b: exactly 0)."""
    need = np.asarray(hole_queries(case[f"{p}_mask_b"], 2))
    ours = np.asarray(attention_map_dense(case[f"{p}_feat_small"], case[f"{p}_mask_s"])).sum(-1)
    ref = case[f"{p}_att"].sum(-1)
    assert need.sum() > 10
    assert np.all(ref[need] < 1) and np.all(ours[need] < 1)
    assert np.mean(ref[~need] > 0.999) > 0.5  # most known queries do sum to 1 (their best key is known)
    assert _maxdiff(ours, ref) < 1e-5
    if p == "b":
        assert np.all(ref[need] == 0) and np.all(ours[need] == 0)
        # sample 1: after the 3x3 max-pool every key is masked -> every row is 0
        assert np.all(ours[1] == 0) and np.all(ref[1] == 0)
    else:
        assert np.all(ours[need] > 0)  # tiny but not underflowed in case a


# ---------------------------------------------------------------------------------------------
# Propagation by hand
# ---------------------------------------------------------------------------------------------


def test_propagation_wraparound_by_hand():
    """2 x 3 grid, row-major 0 1 2 / 3 4 5; column-major order k: 0->0, 1->3, 2->1, 3->4, 4->2, 5->5."""
    rng = np.random.default_rng(0)
    s = rng.normal(size=(1, 6, 6)).astype(np.float64)
    s2 = np.asarray(propagate_scores(jnp.asarray(s, jnp.float32), 2, 3), np.float64)[0]
    S = s[0]

    def s1(i, j):  # horizontal pass: row-major neighbours, wrapping across row ends (2 -> 3)
        return sum(S[i + d, j + d] for d in (-1, 0, 1) if 0 <= i + d < 6 and 0 <= j + d < 6)

    # S2[0, 4]: p=0 (k=0), q=4=(1,1) (k=3). e=-1: k=-1 -> 0. e=0: S1[0, 4]. e=+1: k=1 -> p=3,
    # k=4 -> p=2: S1[3, 2] (column-major wrap from the bottom of column 0 to the top of column 1).
    want_04 = S[0, 4] + S[1, 5] + S[2, 1] + S[3, 2] + S[4, 3]
    assert want_04 == pytest.approx(s1(0, 4) + s1(3, 2))
    assert s2[0, 4] == pytest.approx(want_04, abs=1e-5)
    # S2[2, 3]: p=2=(0,2) (k=4), q=3=(1,0) (k=1). e=-1: k=3 -> p=4, k=0 -> p=0: S1[4, 0]
    # = S[4,0] + S[5,1] (S[3,-1] is outside). e=0: S1[2, 3] (2 -> 3 is the row-end wrap).
    # e=+1: k=5 -> p=5, k=2 -> p=1: S1[5, 1] = S[4,0] + S[5,1] (S[6,2] is outside).
    want_23 = (S[4, 0] + S[5, 1]) + (S[1, 2] + S[2, 3] + S[3, 4]) + (S[4, 0] + S[5, 1])
    assert want_23 == pytest.approx(s1(4, 0) + s1(2, 3) + s1(5, 1))
    assert s2[2, 3] == pytest.approx(want_23, abs=1e-5)
    # S2[5, 5]: k=5. e=-1: k=4 -> p=2: S1[2, 2]. e=0: S1[5, 5]. e=+1: None.
    want_55 = (S[1, 1] + S[2, 2] + S[3, 3]) + (S[4, 4] + S[5, 5])
    assert s2[5, 5] == pytest.approx(want_55, abs=1e-5)

    # The index map a(i, e, d) = R(Cm(i, e), d), t = (e+1)*3 + (d+1), -1 = None.
    amap = propagation_index_map(2, 3)
    assert list(amap[0]) == [-1, -1, -1, -1, 0, 1, 2, 3, 4]  # Cm(0,-1) None; Cm(0,+1) = 3
    assert list(amap[2]) == [3, 4, 5, 1, 2, 3, 4, 5, -1]  # Cm(2,-1) = 4, Cm(2,+1) = 5
    assert list(amap[3]) == [-1, 0, 1, 2, 3, 4, 0, 1, 2]  # Cm(3,-1) = 0, Cm(3,+1) = 1
    # ... and S2[p, q] = sum_t S[a(p,t), a(q,t)] on the whole grid
    want = np.zeros((6, 6))
    for p in range(6):
        for q in range(6):
            want[p, q] = sum(
                S[amap[p, t], amap[q, t]] for t in range(9) if amap[p, t] >= 0 and amap[q, t] >= 0
            )
    np.testing.assert_allclose(s2, want, atol=1e-5)


@pytest.mark.parametrize("grid", [(3, 5), (5, 3), (4, 4), (1, 6), (6, 1), (2, 2)])
def test_index_map_matches_dense_propagation(grid):
    n = grid[0] * grid[1]
    s = np.random.default_rng(n).normal(size=(1, n, n)).astype(np.float32)
    s2 = np.asarray(propagate_scores(jnp.asarray(s), *grid))[0]
    amap = propagation_index_map(*grid)
    pad = np.pad(s[0].astype(np.float64), ((0, 1), (0, 1)))  # index -1 -> the zero row/column
    want = sum(pad[np.ix_(amap[:, t], amap[:, t])] for t in range(9))
    np.testing.assert_allclose(s2, want, atol=1e-4)


@pytest.mark.parametrize("grid", [(1, 1), (1, 7), (7, 1), (2, 3), (5, 9), (9, 4), (16, 16)])
@pytest.mark.parametrize("block", [1, 2, 5, 16, 10_000])
def test_block_plan_self_check(grid, block):
    plan = block_plan(*grid, block)  # raises if its slice rule disagrees with the index map
    n = grid[0] * grid[1]
    assert plan.num_blocks * plan.block >= n > (plan.num_blocks - 1) * plan.block
    assert plan.window == plan.block + 2 * (grid[1] + 2)
    assert plan.valid.sum() == n


# ---------------------------------------------------------------------------------------------
# Efficient vs dense
# ---------------------------------------------------------------------------------------------


def _inputs(batch, h, w, c, seed, scale):
    """Random features and a mask with holes touching all four borders (m_b, 1 = hole)."""
    rng = np.random.default_rng(seed)
    f = rng.normal(0.0, scale, (batch, h, w, c)).astype(np.float32)
    m = np.zeros((batch, h, w, 1), np.float32)
    m[0, 0:1, 1 : max(2, w // 3)] = 1  # top
    m[0, h // 3 : h // 2 + 1, -2:] = 1  # right
    m[-1, -2:, w // 2 :] = 1  # bottom
    m[-1, 2 : h // 2 + 1, 0:1] = 1  # left
    y, x = rng.integers(1, h - 3), rng.integers(1, w - 4)
    m[:, y : y + 3, x : x + 4] = 1
    return f, m


_STATIC = ("rate", "query_block", "key_block", "skip_known")
# jitted once per shape (and reused across the feature scales) to keep the file quick
_attention = jax.jit(contextual_attention, static_argnames=_STATIC + ("implementation",))
_values = jax.jit(attention_values_efficient, static_argnames=_STATIC)


@jax.jit
def _dense_values(f, m):
    att = attention_map_dense(downscale_nearest(f, 2), downscale_nearest(m, 2))
    return att, att @ space_to_depth(f, 2)


# (batch, h, w, c, query_block, key_block): square, non-square, odd grids (h' or w' odd), blocks that
# do not divide N, blocks larger than N.
SHAPES = [
    (2, 16, 16, 8, None, None),
    (2, 12, 20, 4, 7, 11),
    (1, 18, 10, 6, 5, 64),
    (2, 14, 22, 3, 16, 9),
    (2, 6, 10, 5, 3, 2),
]
# Feature scales: soft attention (0.003), peaked (0.05), one-hot with underflowing hole rows (0.5).
SCALES = [0.003, 0.05, 0.5]


@pytest.mark.parametrize("shape", SHAPES)
def test_efficient_matches_dense(shape):
    batch, h, w, c, qb, kb = shape
    soft_rows = 0
    for scale in SCALES:
        f, m = _inputs(batch, h, w, c, h * w, scale)
        dense = _attention(f, m, implementation="dense")
        eff = _attention(f, m, query_block=qb, key_block=kb)
        assert _maxdiff(eff, dense) < 1e-5
        # A V for every query (skip_known off), relative to the feature scale so the soft case counts.
        att, u_dense = _dense_values(f, m)
        u_eff = _values(f, m, query_block=qb, key_block=kb, skip_known=False)
        assert _maxdiff(u_eff, u_dense) / scale < 1e-5
        rows = np.asarray(att.sum(-1))
        assert np.all(rows <= 1 + 1e-5)
        soft_rows += int(np.sum(np.asarray(att.max(-1)) < 0.5))
    assert soft_rows > 0  # the comparison covered non-one-hot rows, not only 0/1 ones


def test_efficient_all_keys_masked_and_nonsquare():
    """Sample 1 is all hole (every key masked: zero rows, g = 0 there); non-square 10 x 6 grid."""
    f, m = _inputs(2, 20, 12, 5, 3, 0.01)
    m[1] = 1
    dense = contextual_attention(f, m, implementation="dense")
    eff = contextual_attention(f, m, query_block=9, key_block=13)
    assert _maxdiff(eff, dense) < 1e-5
    assert np.all(np.asarray(eff[1]) == 0)
    hole = m[0, ..., 0] > 0
    assert np.abs(np.asarray(eff[0])[hole]).max() > 1e-3  # sample 0's hole does receive attention


def test_efficient_gradient_matches_dense():
    f, m = _inputs(2, 12, 10, 4, 5, 0.02)
    weight = np.random.default_rng(1).normal(size=f.shape).astype(np.float32)

    def loss(x, **kw):
        return jnp.sum(contextual_attention(x, m, **kw) * weight)

    g_dense = jax.grad(lambda x: loss(x, implementation="dense"))(f)
    g_eff = jax.jit(jax.grad(lambda x: loss(x, query_block=7, key_block=4)))(f)
    # the part of the gradient that flows through the attention (not the f (1 - m) blend)
    attn = np.asarray(g_dense) - weight * (1 - m)
    assert np.abs(attn).max() > 0.1
    assert np.all(np.isfinite(np.asarray(g_eff)))
    assert _maxdiff(g_eff, g_dense) < 1e-5 * max(1.0, float(np.abs(g_dense).max()))


def test_skip_known_agrees_at_hole_queries_and_skips():
    f, m = _inputs(1, 32, 16, 4, 9, 0.01)
    m[:] = 0
    m[:, 20:24, 3:9] = 1  # one hole in grid rows 10..11
    kw = dict(query_block=16, key_block=24)  # 8 grid columns: query blocks of 2 grid rows
    u_skip = attention_values_efficient(f, m, skip_known=True, **kw)
    u_full = attention_values_efficient(f, m, skip_known=False, **kw)
    need = np.asarray(hole_queries(m, 2))[0]
    assert _maxdiff(u_skip[0][need], u_full[0][need]) == 0.0
    rows = np.arange(need.size) // 16
    skipped = ~np.isin(rows, np.unique(rows[need]))
    assert skipped.sum() == need.size - 16  # every block but one is skipped ...
    assert np.all(np.asarray(u_skip[0])[skipped] == 0)  # ... and outputs zeros there
    assert np.abs(np.asarray(u_full[0])[skipped]).max() > 1e-3  # (they are not zero without skipping)
    g_skip = contextual_attention(f, m, skip_known=True, **kw)
    g_full = contextual_attention(f, m, skip_known=False, **kw)
    assert _maxdiff(g_skip, g_full) == 0.0


def test_jit():
    f, m = _inputs(2, 12, 16, 4, 2, 0.01)
    fn = jax.jit(
        contextual_attention, static_argnames=("rate", "implementation", "query_block", "key_block")
    )
    eager = contextual_attention(f, m, query_block=10, key_block=7)
    jitted = fn(f, m, query_block=10, key_block=7)
    assert _maxdiff(jitted, eager) < 1e-6
    assert _maxdiff(fn(f, m, implementation="dense"), eager) < 1e-5


def test_rate_4():
    f, m = _inputs(1, 16, 24, 3, 4, 0.01)
    dense = contextual_attention(f, m, rate=4, implementation="dense")
    eff = contextual_attention(f, m, rate=4, query_block=5, key_block=7)
    assert dense.shape == f.shape
    assert _maxdiff(eff, dense) < 1e-5


def test_efficient_memory_is_linear():
    """Compiled temp memory of the efficient path grows ~linearly in N; the dense one quadratically."""

    def temp(grid, impl):
        x = jax.ShapeDtypeStruct((1, 2 * grid, 2 * grid, 16), jnp.float32)
        mk = jax.ShapeDtypeStruct((1, 2 * grid, 2 * grid, 1), jnp.float32)
        fn = jax.jit(
            lambda f, m: contextual_attention(f, m, implementation=impl, query_block=256, key_block=256)
        )
        return fn.lower(x, mk).compile().memory_analysis().temp_size_in_bytes

    small, big = temp(32, "efficient"), temp(64, "efficient")  # N = 1024 -> 4096
    nxn = 4 * 4096**2
    assert big < nxn / 4  # well below one dense N x N float32 tensor
    assert big / small < 6  # 4x the positions: linear growth plus block-size constants
    assert temp(64, "dense") > nxn  # the dense formulation does hold N x N tensors


def test_errors():
    f = np.zeros((1, 6, 8, 2), np.float32)
    m = np.zeros((1, 6, 8, 1), np.float32)
    with pytest.raises(ValueError, match="multiples of rate"):
        contextual_attention(f, m, rate=4)
    with pytest.raises(ValueError, match="implementation"):
        contextual_attention(f, m, implementation="flash")
    with pytest.raises(ValueError, match="does not match"):
        contextual_attention(f, m[:, :4])
    with pytest.raises(ValueError, match="softmax_scale"):
        contextual_attention(f, m, softmax_scale=0.0)
