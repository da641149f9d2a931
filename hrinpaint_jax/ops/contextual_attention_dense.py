"""Contextual attention of Zoom-to-Inpaint, step by step as the reference computes it, and the dense map.

REFERENCE.md section 6 (and section 11 items 30-35). Mask convention: 1 = hole. Layout NHWC. These step
functions are the specification: :func:`attention_map_dense` + :func:`apply_attention_map` are the
literal formulation (B x N x N tensors, for tests and parity), and the memory-efficient path of
:mod:`hrinpaint_jax.ops.contextual_attention` reuses the same steps and must agree with them.

Notation. ``f`` [B, h, w, c] are the bottleneck features (after the module's first gated conv + BN),
``m_b`` [B, h, w, 1] the hole mask at the same resolution, ``r`` the attention rate (2). The attention
grid is h' x w' = h/r x w/r with N = h'w' positions; ``f_s`` / ``m_s`` are TF half-pixel nearest
downscales of f / m_b by r (for an integer factor: rows/columns r*i + r//2, a strided slice).

Dense map (sections 6.2-6.4), rows = queries p, columns = keys q, both flattened row-major p = y*w' + x:

- ``P_p`` [9C]: the 3x3 zero-padded patch of ``f_s`` around p, ordered (row offset, column offset,
  channel); ``Q_p = P_p / max(|P_p|, 1e-9)`` (QUIRK: only the query side is normalised), ``S = Q P^T``.
- Propagation (QUIRK: over *flattened* indices, so it wraps around): horizontal pass
  ``S1[p, q] = sum_d S[p+d, q+d]`` on row-major indices (p+1 from the last column is the first column of
  the next row), then vertical pass ``S2 = sum_e S1[.+e, .+e]`` on column-major indices
  ``k = x*h' + y`` (stepping down from the last row wraps to the top of the next column); terms outside
  [0, N) are 0 (zero padding only at the global ends).
- ``phi = maxpool3x3(m_s)`` (stride 1, SAME, padding ignored), one value per key;
  ``Z = scale * S2``; ``E = exp(Z - max_q Z) * (1 - phi_q)`` (QUIRK: the row max runs over *all* keys,
  masked ones included, so a hole query whose best key is masked gets a row sum < 1, or exactly 0 after
  float32 underflow); ``A = E / max(sum_q E, 1e-9)`` (QUIRK: 1e-9 clamp, all-masked rows become 0).

Application (section 6.5): ``V_q = space_to_depth(f, r)_q`` with TF ordering (dy*r + dx)*c + ch,
``U = A V``, ``G = depth_to_space(U)``, ``g = f (1 - m_b) + G m_b``.

Non-square generalisation (the reference only runs on square inputs: it declares the map as
h^2/r^2 x w^2/r^2, REFERENCE.md 6.6). Here the grid is h' x w' with the row-major index y*w' + x for
the horizontal pass and the column-major index x*h' + y for the vertical one; for h' = w' this is the
reference exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hrinpaint_jax.ops import pixel_shuffle

# Epsilons of the reference (REFERENCE.md 6.2 and 6.4).
PATCH_NORM_EPS = 1e-9
SOFTMAX_DENOM_EPS = 1e-9


# ---------------------------------------------------------------------------------------------
# The steps (REFERENCE.md 6.1-6.5), shared with the efficient path
# ---------------------------------------------------------------------------------------------


def downscale_nearest(x: jax.Array, rate: int) -> jax.Array:
    """TF half-pixel nearest downscale by an integer factor (REFERENCE.md 6.1 steps 2 and 4).

    ``floor((i + 0.5) * rate) = rate*i + rate//2``, i.e. a strided slice (rate 2 picks odd rows/cols).

    Args:
      x: [B, h, w, C] with h and w multiples of ``rate``.
    Returns:
      [B, h/rate, w/rate, C].
    """
    return x[:, rate // 2 :: rate, rate // 2 :: rate, :]


def space_to_depth(x: jax.Array, rate: int) -> jax.Array:
    """TF ``space_to_depth`` flattened over the grid: ``V[b, y*w' + x, (dy*r + dx)*c + ch] =
    x[b, r*y + dy, r*x + dx, ch]``.

    Args:
      x: [B, h, w, c] with h, w multiples of ``rate``.
    Returns:
      [B, N, r*r*c], N = (h/r)(w/r), row-major.
    """
    v = pixel_shuffle.space_to_depth(x, rate)
    return v.reshape(v.shape[0], v.shape[1] * v.shape[2], v.shape[3])


def depth_to_space(u: jax.Array, grid: tuple[int, int], rate: int) -> jax.Array:
    """Inverse of :func:`space_to_depth` (TF ``depth_to_space`` ordering):
    ``G[b, r*y + dy, r*x + dx, ch] = u[b, y*w' + x, (dy*r + dx)*c + ch]``.

    Args:
      u: [B, N, r*r*c] with N = h' * w'.
      grid: (h', w').
    Returns:
      [B, h'*r, w'*r, c].
    """
    return pixel_shuffle.depth_to_space(u.reshape(u.shape[0], *grid, u.shape[-1]), rate)


def extract_patches(x: jax.Array) -> jax.Array:
    """3x3 stride-1 zero-padded patches (REFERENCE.md 6.2).

    ``P[b, y*w' + x, (a*3 + b')*C + ch] = x[b, y + a - 1, x + b' - 1, ch]`` (0 outside the grid).

    Args:
      x: [B, h', w', C].
    Returns:
      [B, N, 9C], N = h'w' (row-major).
    """
    b, hs, ws, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    parts = [xp[:, a : a + hs, o : o + ws, :] for a in range(3) for o in range(3)]
    return jnp.concatenate(parts, axis=-1).reshape(b, hs * ws, 9 * c)


def normalize_queries(p: jax.Array) -> jax.Array:
    """``Q = P / max(|P|_2, 1e-9)`` along the last axis (QUIRK: only queries are normalised, with 1e-9).

    Args:
      p: [..., 9C].
    Returns:
      same shape.
    """
    norm = jnp.sqrt(jnp.sum(jnp.square(p), axis=-1, keepdims=True))
    return p / jnp.maximum(norm, PATCH_NORM_EPS)


def mask_filter(mask_small: jax.Array) -> jax.Array:
    """``phi = maxpool3x3(m_s)``, stride 1, SAME with the padding ignored (REFERENCE.md 6.4).

    Args:
      mask_small: [B, h', w', 1], 1 = hole.
    Returns:
      [B, N]: one value per key, row-major.
    """
    b, hs, ws, _ = mask_small.shape
    pooled = lax.reduce_window(
        mask_small, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "SAME"
    )  # -inf init: the padding never wins (padding ignored)
    return pooled.reshape(b, hs * ws)


def hole_queries(mask: jax.Array, rate: int) -> jax.Array:
    """Which attention-grid positions feed a hole pixel of ``m_b``: any pixel of the r x r block is 1.

    Note this is a block *any* of ``m_b``, not ``m_s`` (which samples one pixel per block).

    Args:
      mask: [B, h, w, 1] (``m_b``), 1 = hole.
    Returns:
      [B, N] bool.
    """
    b, h, w, _ = mask.shape
    hs, ws = h // rate, w // rate
    return jnp.any(mask.reshape(b, hs, rate, ws, rate) > 0, axis=(2, 4)).reshape(b, hs * ws)


# ---------------------------------------------------------------------------------------------
# The dense formulation (sections 6.2-6.5, literally)
# ---------------------------------------------------------------------------------------------


def _diagonal_shift_sum(s: jax.Array) -> jax.Array:
    """``out[p, q] = sum_{d in -1,0,1} s[p+d, q+d]``, a term being 0 outside [0, N) (both axes)."""
    n = s.shape[-1]
    sp = jnp.pad(s, ((0, 0), (1, 1), (1, 1)))
    return sp[:, 0:n, 0:n] + sp[:, 1 : n + 1, 1 : n + 1] + sp[:, 2 : n + 2, 2 : n + 2]


def column_major_order(grid_h: int, grid_w: int) -> np.ndarray:
    """``perm[k]`` = row-major index of column-major index ``k = x*h' + y`` (i.e. ``y*w' + x``).

    Returns:
      [N] int array.
    """
    return np.arange(grid_h * grid_w).reshape(grid_h, grid_w).T.reshape(-1)


def propagate_scores(s: jax.Array, grid_h: int, grid_w: int) -> jax.Array:
    """Dense propagation (REFERENCE.md 6.3): horizontal pass on row-major indices, then vertical pass on
    column-major indices, both with wrap-around across row / column ends (QUIRK: flattened indices, zero
    padding only at the global ends 0 and N-1).

    Args:
      s: [B, N, N] raw scores (rows = queries).
      grid_h, grid_w: h', w' with N = h'w' (non-square generalisation: see the module docstring).
    Returns:
      [B, N, N] propagated scores ``S2``.
    """
    s1 = _diagonal_shift_sum(s)  # horizontal: row-major neighbours, wraps from x = w'-1 to the next row
    perm = column_major_order(grid_h, grid_w)
    inv = np.argsort(perm)
    s1c = s1[:, perm][:, :, perm]  # to column-major order on both axes
    s2c = _diagonal_shift_sum(s1c)  # vertical: wraps from y = h'-1 to the top of the next column
    return s2c[:, inv][:, :, inv]


def attention_map_dense(
    feat_small: jax.Array,
    mask_small: jax.Array,
    *,
    softmax_scale: float = 10.0,
    precision=None,
) -> jax.Array:
    """The dense attention map (REFERENCE.md 6.2-6.4), materialising B x N x N tensors.

    Args:
      feat_small: [B, h', w', C] (``f_s``).
      mask_small: [B, h', w', 1] (``m_s``), 1 = hole.
      softmax_scale: the reference's 10; must be > 0 (the reference's <= 0 branch is unused, not ported).
      precision: optional ``lax.Precision`` for the score matmul (e.g. HIGHEST on GPUs with TF32).
    Returns:
      A [B, N, N], N = h'w', rows = queries, columns = keys (row-major flattened).
    """
    check_scale(softmax_scale)
    b, hs, ws, _ = feat_small.shape
    p = extract_patches(feat_small)
    q = normalize_queries(p)
    s = jnp.einsum("bpk,bqk->bpq", q, p, precision=precision)  # keys stay raw
    s2 = propagate_scores(s, hs, ws)
    keep = 1.0 - mask_filter(mask_small.astype(s2.dtype))  # [B, N], per key
    z = softmax_scale * s2
    # QUIRK: the stabilising max runs over ALL keys, masked ones included (row sums can be < 1 or 0).
    e = jnp.exp(z - jnp.max(z, axis=-1, keepdims=True)) * keep[:, None, :]
    # QUIRK: 1e-9 clamp of the denominator; rows with every key masked become all-zero.
    return e / jnp.maximum(jnp.sum(e, axis=-1, keepdims=True), SOFTMAX_DENOM_EPS)


def apply_attention_map(
    feat: jax.Array, att: jax.Array, mask: jax.Array, *, rate: int = 2, precision=None
) -> jax.Array:
    """Applies an attention map to r x r blocks (REFERENCE.md 6.5).

    Args:
      feat: [B, h, w, c] (``f``), h and w multiples of ``rate``.
      att: [B, N, N] with N = (h/r)(w/r), rows = queries.
      mask: [B, h, w, 1] (``m_b``), 1 = hole.
      rate: block size r.
      precision: optional ``lax.Precision`` for ``A V``.
    Returns:
      g [B, h, w, c] = f (1 - m_b) + depth_to_space(A space_to_depth(f)) m_b.
    """
    check_shapes(feat, mask, rate)
    b, h, w, c = feat.shape
    v = space_to_depth(feat, rate)
    u = jnp.einsum("bpq,bqd->bpd", att, v, precision=precision)
    g = depth_to_space(u, (h // rate, w // rate), rate)
    mask = mask.astype(feat.dtype)
    return feat * (1.0 - mask) + g * mask


def check_shapes(feat: jax.Array, mask: jax.Array, rate: int) -> None:
    """Raises ValueError unless ``feat`` is [B, h, w, c] and ``mask`` [B, h, w, 1] with h and w
    multiples of ``rate``."""
    if feat.ndim != 4 or mask.ndim != 4 or mask.shape[-1] != 1:
        raise ValueError(
            f"want features [B, h, w, c] and mask [B, h, w, 1], got {feat.shape}, {mask.shape}"
        )
    if mask.shape[:3] != feat.shape[:3]:
        raise ValueError(f"mask {mask.shape} does not match features {feat.shape}")
    if rate < 1 or feat.shape[1] % rate or feat.shape[2] % rate:
        raise ValueError(
            f"features height and width ({feat.shape[1]}, {feat.shape[2]}) must be multiples of "
            f"rate {rate}"
        )


def check_scale(softmax_scale: float) -> None:
    """Raises ValueError unless ``softmax_scale`` > 0."""
    if not softmax_scale > 0:  # the reference's unused <= 0 branch (map times phi) is not ported
        raise ValueError(f"softmax_scale must be > 0, got {softmax_scale}")


__all__ = [
    "PATCH_NORM_EPS",
    "SOFTMAX_DENOM_EPS",
    "apply_attention_map",
    "attention_map_dense",
    "check_scale",
    "check_shapes",
    "column_major_order",
    "depth_to_space",
    "downscale_nearest",
    "extract_patches",
    "hole_queries",
    "mask_filter",
    "normalize_queries",
    "propagate_scores",
    "space_to_depth",
]
