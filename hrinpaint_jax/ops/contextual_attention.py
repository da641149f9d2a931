"""Zoom-to-Inpaint contextual attention: the public entry point and its memory-efficient exact path.

REFERENCE.md section 6. :func:`contextual_attention` takes the features f [B, h, w, c] and the hole
mask m_b [B, h, w, 1] (1 = hole) and returns g = f (1 - m_b) + G m_b. Two implementations compute G:
``"dense"`` is the reference's literal formulation, B x N x N tensors
(:mod:`hrinpaint_jax.ops.contextual_attention_dense`, which also holds the notation and the quirks),
and ``"efficient"`` (the default, below) gives the same result up to float summation order in memory
linear in the number of positions N.

Memory-efficient exact path. Query and key positions are cut into blocks (the static
:class:`~hrinpaint_jax.ops.contextual_attention_plan.BlockPlan`, which also derives the windows and
their halo w' + 2). For a query block and a key block the raw scores of the two windows,
``S_ext = Q[win_q] P[win_k]^T``, come from one matmul (patches gathered from the zero-padded f_s per
window, never materialised for all N). Because a window is contiguous in row-major order, the
horizontal pass is a sum of 3 diagonal-shifted slices of S_ext (with the None terms at positions 0 /
N-1 masked out) and the vertical pass a sum of 3 slices at offsets e*w', where for queries (keys) in
the first/last grid row the e = -1 / +1 slice is taken one slot further (the column-major wrap),
selected with static per-block row (column) masks; the gather-free equivalent of
``S2_block = sum_t S_ext[pos_q(t), pos_k(t)]``. Keys are visited in blocks with an online softmax
(running max, running sum, running accumulator, both rescaled by exp(M_old - M_new)) whose running max
covers all keys, masked ones included, as the dense quirk requires; the output is acc / max(l, 1e-9).
Blocks are padded to one size and iterated with ``lax.scan`` (query blocks outer, key blocks inner,
batch inside the body), block bodies are ``jax.checkpoint``-ed (reverse-mode memory stays linear too),
and query blocks with no hole query in any sample are skipped with ``lax.cond`` (their output is
discarded by the final blend). Memory is O(N c) plus O(block^2) temporaries; the score matmul costs
the dense FLOPs times (1 + 2(w'+2)/query_block)(1 + 2(w'+2)/key_block) (about 1.27 with
:func:`~hrinpaint_jax.ops.contextual_attention_plan.default_block`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from hrinpaint_jax.ops.contextual_attention_dense import (
    SOFTMAX_DENOM_EPS,
    apply_attention_map,
    attention_map_dense,
    check_scale,
    check_shapes,
    depth_to_space,
    downscale_nearest,
    hole_queries,
    mask_filter,
    normalize_queries,
    space_to_depth,
)
from hrinpaint_jax.ops.contextual_attention_plan import BlockPlan, block_plan, default_block


def _gather_patches(fpad: jax.Array, patch_index: jax.Array) -> jax.Array:
    """[B, R, C] zero-padded flat grid, [W, 9] rows -> [B, W, 9C] patches (extract_patches ordering)."""
    b, _, c = fpad.shape
    w = patch_index.shape[0]
    rows = jnp.take(fpad, patch_index.reshape(-1), axis=1, mode="clip")
    return rows.reshape(b, w, 9 * c)


def _propagate_block(s_ext: jax.Array, qside: dict, kside: dict, grid_w: int, halo: int) -> jax.Array:
    """S2 of one (query block, key block) pair from the raw scores of their windows.

    Args:
      s_ext: [B, Wq, Wk] raw scores ``Q[window_q] P[window_k]^T``.
      qside, kside: that block's rows of the :class:`BlockPlan` masks (see there).
    Returns:
      [B, Bq, Bk] = S2 rows/columns of the two blocks (REFERENCE.md 6.3, exact).
    """
    bq = qside["valid"].shape[0]
    bk = kside["valid"].shape[0]

    def rows(m):  # [n] -> broadcast along the query axis
        return m[None, :, None]

    def cols(m):
        return m[None, None, :]

    # Horizontal pass on the windows: S1[u, v] = sum_d S[u+d, v+d], slots 1 .. W-2. The window is
    # contiguous in row-major order, so the row-major neighbour of a slot is the next slot, wrapping
    # across row ends as in the reference (QUIRK); the step is None only from position 0 (d = -1) or
    # N-1 (d = +1), on either side, where the term is 0 (zero padding at the global ends only).
    s1 = s_ext[:, 1:-1, 1:-1]
    s1 = s1 + jnp.where(
        rows(qside["slot_not_first"][1:-1]) & cols(kside["slot_not_first"][1:-1]), s_ext[:, :-2, :-2], 0
    )
    s1 = s1 + jnp.where(
        rows(qside["slot_not_last"][1:-1]) & cols(kside["slot_not_last"][1:-1]), s_ext[:, 2:, 2:], 0
    )

    # Vertical pass: S2[p, q] = sum_e S1[Cm(p, e), Cm(q, e)]. Cm(p, e) is the slot of p (i + halo) plus
    # e*w', plus one more slot in the direction of e where the column-major step wraps (QUIRK: from row 0
    # to the bottom of the previous column, from row h'-1 to the top of the next one), None (term 0) at
    # positions 0 (e = -1) and N-1 (e = +1). s1 slot u is s_ext slot u + 1.
    def piece(e, dq, dk):
        r0 = halo - 1 + e * grid_w + dq
        c0 = halo - 1 + e * grid_w + dk
        return s1[:, r0 : r0 + bq, c0 : c0 + bk]

    s2 = piece(0, 0, 0)
    for e, wrap, none in ((-1, "first_row", "is_first"), (1, "last_row", "is_last")):
        kw = cols(kside[wrap])
        plain = jnp.where(kw, piece(e, 0, e), piece(e, 0, 0))
        wrapped = jnp.where(kw, piece(e, e, e), piece(e, e, 0))
        term = jnp.where(rows(qside[wrap]), wrapped, plain)
        s2 = s2 + jnp.where(rows(qside[none]) | cols(kside[none]), 0, term)
    return s2


_SIDE_KEYS = ("valid", "first_row", "last_row", "is_first", "is_last", "slot_not_first", "slot_not_last")


def _side_arrays(plan: BlockPlan) -> dict:
    return {k: jnp.asarray(getattr(plan, k)) for k in _SIDE_KEYS + ("patch_index", "starts")}


def attention_values_efficient(
    feat: jax.Array,
    mask: jax.Array,
    *,
    rate: int = 2,
    softmax_scale: float = 10.0,
    query_block: int | None = None,
    key_block: int | None = None,
    skip_known: bool = True,
    precision=None,
) -> jax.Array:
    """``U = A V`` of the efficient path without materialising A (online softmax over key blocks).

    Args: as :func:`contextual_attention` (``feat`` = f, ``mask`` = m_b, 1 = hole).
    Returns:
      U [B, N, r*r*c], rows = queries (row-major on the h/r x w/r grid), TF space_to_depth ordering;
      equals ``attention_map_dense(f_s, m_s) @ space_to_depth(f)`` up to float summation order, except
      that with ``skip_known`` the rows of query blocks holding no hole query (in any sample) are 0.
    """
    check_shapes(feat, mask, rate)
    check_scale(softmax_scale)
    mask = mask.astype(feat.dtype)
    b, h, w, c = feat.shape
    dtype = feat.dtype
    hs, ws = h // rate, w // rate
    n = hs * ws
    depth = rate * rate * c
    qplan = block_plan(hs, ws, query_block or default_block(hs, ws))
    kplan = block_plan(hs, ws, key_block or default_block(hs, ws))

    f_s = downscale_nearest(feat, rate)
    m_s = downscale_nearest(mask, rate)
    cs = f_s.shape[-1]
    fpad = jnp.pad(f_s, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(b, (hs + 2) * (ws + 2), cs)

    nk = kplan.num_blocks * kplan.block
    v = jnp.pad(space_to_depth(feat, rate), ((0, 0), (0, nk - n), (0, 0)))
    keep = jnp.pad(1.0 - mask_filter(m_s), ((0, 0), (0, nk - n)))  # [B, nk], padding keys weigh 0
    nq = qplan.num_blocks * qplan.block
    need = jnp.pad(hole_queries(mask, rate), ((0, 0), (0, nq - n)))
    need = jnp.any(need.reshape(b, qplan.num_blocks, qplan.block), axis=(0, 2))  # [nqb], batch-wide
    kxs = _side_arrays(kplan)
    qxs = _side_arrays(qplan)

    def query_block_out(qside):
        """U rows of one query block: [B, Bq, depth]."""
        qwin = normalize_queries(_gather_patches(fpad, qside["patch_index"]))  # [B, Wq, 9C]

        @jax.checkpoint
        def key_step(carry, kside):
            m_run, l_run, acc = carry
            pwin = _gather_patches(fpad, kside["patch_index"])  # raw keys [B, Wk, 9C]
            s_ext = jnp.einsum("bik,bjk->bij", qwin, pwin, precision=precision)
            s2 = _propagate_block(s_ext, qside, kside, ws, qplan.halo)
            z = softmax_scale * s2
            z = jnp.where(kside["valid"][None, None, :], z, -jnp.inf)  # padding keys are not keys
            # QUIRK kept: the running max covers every real key, masked ones included.
            m_new = jnp.maximum(m_run, jnp.max(z, axis=-1))
            alpha = jnp.exp(m_run - m_new)
            kkeep = lax.dynamic_slice_in_dim(keep, kside["starts"], kplan.block, axis=1)  # [B, Bk]
            kv = lax.dynamic_slice_in_dim(v, kside["starts"], kplan.block, axis=1)  # [B, Bk, depth]
            e = jnp.exp(z - m_new[..., None]) * kkeep[:, None, :]
            l_new = l_run * alpha + jnp.sum(e, axis=-1)
            acc = acc * alpha[..., None] + jnp.einsum("bqk,bkd->bqd", e, kv, precision=precision)
            return (m_new, l_new, acc), None

        init = (
            jnp.full((b, qplan.block), -jnp.inf, dtype),
            jnp.zeros((b, qplan.block), dtype),
            jnp.zeros((b, qplan.block, depth), dtype),
        )
        (_, l_fin, acc), _ = lax.scan(key_step, init, kxs)
        # QUIRK: 1e-9 clamp of the softmax denominator (all keys masked -> zero row).
        return acc / jnp.maximum(l_fin, SOFTMAX_DENOM_EPS)[..., None]

    @jax.checkpoint
    def query_step(_, xs):
        qside, needed = xs
        if not skip_known:
            return None, query_block_out(qside)
        # The batch is handled inside the body (no vmap), so this stays a real branch, not a select.
        out = lax.cond(
            needed,
            query_block_out,
            lambda _: jnp.zeros((b, qplan.block, depth), dtype),
            qside,
        )
        return None, out

    _, u = lax.scan(query_step, None, (qxs, need))  # [nqb, B, Bq, depth]
    return u.transpose(1, 0, 2, 3).reshape(b, nq, depth)[:, :n]


# Compiled once per shape and setting: called eagerly (e.g. inside a Flax ``init``), the nested scans
# would otherwise be re-traced op by op on every call; under an outer jit this is simply inlined.
_attention_values_efficient_jit = jax.jit(
    attention_values_efficient,
    static_argnames=(
        "rate",
        "softmax_scale",
        "query_block",
        "key_block",
        "skip_known",
        "precision",
    ),
)


def contextual_attention(
    features: jax.Array,
    mask: jax.Array,
    *,
    rate: int = 2,
    softmax_scale: float = 10.0,
    implementation: str = "efficient",
    query_block: int | None = None,
    key_block: int | None = None,
    skip_known: bool = True,
    precision=None,
) -> jax.Array:
    """Steps 4-6 of REFERENCE.md 6.1: downscale, attention map, application.

    Args:
      features: f [B, h, w, c], the bottleneck features after the module's first gated conv + BN.
      mask: m_b [B, h, w, 1] at the same resolution, 1 = hole. h and w must be multiples of ``rate``.
      rate: attention rate r (the reference's 2).
      softmax_scale: the reference's 10 (> 0).
      implementation: ``"efficient"`` (default: blocked, online softmax, O(N) memory, exact up to float
        summation order) or ``"dense"`` (:func:`attention_map_dense` + :func:`apply_attention_map`,
        B x N x N tensors).
      query_block, key_block: efficient path only: positions per query / key block (None:
        :func:`default_block`; a given value is used as is, capped at N, the last block padded).
      skip_known: efficient path only: skip query blocks without a hole query in any batch sample
        (their attention output would be discarded by the final blend anyway).
      precision: optional ``lax.Precision`` for the matmuls (e.g. HIGHEST on GPUs that default to TF32).
    Returns:
      g [B, h, w, c] = f (1 - m_b) + G m_b.
    """
    check_shapes(features, mask, rate)
    check_scale(softmax_scale)
    mask = mask.astype(features.dtype)
    if implementation == "dense":
        att = attention_map_dense(
            downscale_nearest(features, rate),
            downscale_nearest(mask, rate),
            softmax_scale=softmax_scale,
            precision=precision,
        )
        return apply_attention_map(features, att, mask, rate=rate, precision=precision)
    if implementation != "efficient":
        raise ValueError(f"implementation must be 'efficient' or 'dense', got {implementation!r}")
    b, h, w, c = features.shape
    u = _attention_values_efficient_jit(
        features,
        mask,
        rate=rate,
        softmax_scale=softmax_scale,
        query_block=query_block,
        key_block=key_block,
        skip_known=skip_known,
        precision=precision,
    )
    g = depth_to_space(u, (h // rate, w // rate), rate)
    return features * (1.0 - mask) + g * mask


__all__ = ["attention_values_efficient", "contextual_attention"]
