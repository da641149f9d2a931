"""Zoom-to-Inpaint contextual attention: a dense reference version and a memory-efficient exact one.

REFERENCE.md section 6 (and section 11 items 30-35). Mask convention: 1 = hole. Layout NHWC.

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

Memory-efficient exact path (``contextual_attention(..., implementation="efficient")``, the default).
With ``a(i, e, d) = R(Cm(i, e), d)`` (column-major step e, then row-major step d; None when out of
range) the propagated score is ``S2[p, q] = sum_{e,d} S[a(p,e,d), a(q,e,d)]`` (a None term is 0).
Away from the first/last grid row ``a(i, e, d) = i + e*w' + d``; in the first (last) grid row the
column-major step wraps to the previous (next) column, which in row-major numbering is the cyclic index
``i - w' - 1 (+ d)`` (``i + w' + 1 (+ d)``) mod N. So every index a block of positions [s, s + n) needs
lies in the cyclic window [s - w' - 2, s + n + w' + 2) mod N (halo w' + 2 on each side). For a query
block and a key block the raw scores of the two windows, ``S_ext = Q[win_q] P[win_k]^T``, come from one
matmul (patches gathered from the zero-padded f_s per window, never materialised for all N). Because a
window is contiguous in row-major order, the horizontal pass is a sum of 3 diagonal-shifted slices of
S_ext (with the None terms at positions 0 / N-1 masked out) and the vertical pass a sum of 3 slices at
offsets e*w', where for queries (keys) in the first/last grid row the e = -1 / +1 slice is taken one
slot further (the column-major wrap), selected with static per-block row (column) masks; the
gather-free equivalent of ``S2_block = sum_t S_ext[pos_q(t), pos_k(t)]``. Keys are visited in blocks
with an online softmax (running max, running sum, running accumulator, both rescaled by
exp(M_old - M_new)) whose running max covers all keys, masked ones included, as the dense quirk
requires; the output is acc / max(l, 1e-9). The per-block masks and patch indices are built on the host
with NumPy (and checked against :func:`propagation_index_map`); blocks are padded to one size and
iterated with ``lax.scan`` (query blocks outer, key blocks inner, batch inside the body), block bodies
are ``jax.checkpoint``-ed (reverse-mode memory stays linear too), and query blocks with no hole query
in any sample are skipped with ``lax.cond`` (their output is discarded by the final blend). Memory is
O(N c) plus O(block^2) temporaries; the score matmul costs the dense FLOPs times
(1 + 2(w'+2)/query_block)(1 + 2(w'+2)/key_block) (about 1.27 with :func:`default_block`).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hrinpaint_jax.ops import pixel_shuffle

# Epsilons of the reference (REFERENCE.md 6.2 and 6.4).
PATCH_NORM_EPS = 1e-9
SOFTMAX_DENOM_EPS = 1e-9
# Default block size of the efficient path (see default_block): about 16 halos (16 (w' + 2) positions,
# so the window of a block is ~12 % longer than the block on each side: ~1.27x score-matmul FLOPs),
# clamped to [1024, 4096]. A 4096 x 4096 block pair keeps the forward temporaries at ~0.4 GB and the
# backward ones at ~1.5 GB (float32, B = 1, c = 128); 1024 keeps the backward at N = 4096 (training
# size) at ~0.15 GB, below the dense formulation's.
BLOCK_HALOS = 16
MIN_BLOCK, MAX_BLOCK = 1024, 4096
# The 9 propagation terms t = (e + 1) * 3 + (d + 1): e = column-major (vertical) step, d = row-major.
_STEPS = tuple((e, d) for e in (-1, 0, 1) for d in (-1, 0, 1))


# ---------------------------------------------------------------------------------------------
# Small shared pieces
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
# Dense reference formulation (sections 6.2-6.5, literally)
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
    _check_scale(softmax_scale)
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
    _check_shapes(feat, mask, rate)
    b, h, w, c = feat.shape
    v = space_to_depth(feat, rate)
    u = jnp.einsum("bpq,bqd->bpd", att, v, precision=precision)
    g = depth_to_space(u, (h // rate, w // rate), rate)
    mask = mask.astype(feat.dtype)
    return feat * (1.0 - mask) + g * mask


# ---------------------------------------------------------------------------------------------
# Index maps of the efficient path (host, NumPy)
# ---------------------------------------------------------------------------------------------


def propagation_index_map(grid_h: int, grid_w: int) -> np.ndarray:
    """``a(i, e, d) = R(Cm(i, e), d)`` for every position i and the 9 steps (REFERENCE.md 6.3).

    ``Cm(i, e)``: step e along the column-major order (wraps from the last row to the top of the next
    column), ``R(j, d)``: step d along the row-major order (wraps across row ends); -1 = None (stepped
    outside [0, N)). Then ``S2[p, q] = sum_t S[a(p, t), a(q, t)]`` with None terms 0.

    Returns:
      [N, 9] int64 of row-major indices or -1; column t = (e + 1) * 3 + (d + 1).
    """
    n = grid_h * grid_w
    p = np.arange(n)
    k = (p % grid_w) * grid_h + p // grid_w  # column-major index of p
    out = np.empty((n, 9), np.int64)
    for t, (e, d) in enumerate(_STEPS):
        k2 = k + e
        ok = (k2 >= 0) & (k2 < n)
        k2 = np.clip(k2, 0, n - 1)
        j = (k2 % grid_h) * grid_w + k2 // grid_h + d  # back to row-major, then the row-major step
        ok &= (j >= 0) & (j < n)
        out[:, t] = np.where(ok, j, -1)
    return out


@dataclass(frozen=True)
class BlockPlan:
    """Static per-block data of one side (queries or keys) of the efficient path (host NumPy arrays).

    The grid's row-major positions are cut into ``num_blocks`` blocks of ``block`` positions (the last
    one padded); block ``b`` covers [s_b, s_b + block) and its window is the cyclic range
    [s_b - halo, s_b + block + halo) mod N of ``window = block + 2*halo`` positions, halo = w' + 2.
    Window slot ``u`` holds position ``(s_b - halo + u) mod N``; block position i sits at slot
    ``i + halo``.

    Attributes:
      starts: [nb] int32, s_b.
      valid: [nb, block] bool, position < N (False on the padding of the last block).
      first_row, last_row: [nb, block] bool, position in grid row 0 / h'-1 (where the column-major step
        e = -1 / +1 wraps to the previous / next column, one slot further than the interior rule).
      is_first, is_last: [nb, block] bool, position 0 / N-1 (column-major step e = -1 / +1 is None).
      slot_not_first, slot_not_last: [nb, window] bool, the slot's position is not 0 / not N-1 (the
        row-major step d = -1 / +1 from it stays inside [0, N)).
      patch_index: [nb, window, 9] int32 rows of the zero-padded, flattened f_s grid
        ((h'+2)(w'+2) rows) forming each slot's 3x3 patch, ordered like :func:`extract_patches`.
    """

    grid: tuple[int, int]
    block: int
    num_blocks: int
    halo: int
    window: int
    starts: np.ndarray
    valid: np.ndarray
    first_row: np.ndarray
    last_row: np.ndarray
    is_first: np.ndarray
    is_last: np.ndarray
    slot_not_first: np.ndarray
    slot_not_last: np.ndarray
    patch_index: np.ndarray

    def term_index(self, step: int) -> np.ndarray:
        """Row-major index the slice rule of :func:`_propagate_block` reads for propagation term
        ``step`` = t = (e+1)*3 + (d+1) of each block position, or -1 where it reads 0 (None).

        Returns:
          [nb, block] int64 (used to verify the plan against :func:`propagation_index_map`).
        """
        e, d = _STEPS[step]
        n = self.grid[0] * self.grid[1]
        # the column-major wrap reads one slot further (in the direction of e)
        shift = e * {-1: self.first_row, 0: self.valid & False, 1: self.last_row}[e].astype(np.int64)
        slot = np.arange(self.block)[None, :] + self.halo + e * self.grid[1] + shift  # of Cm(p, e)
        index = np.mod(self.starts[:, None] - self.halo + slot + d, n)
        cm = np.mod(self.starts[:, None] - self.halo + slot, n)  # row-major index of Cm(p, e)
        none = {-1: self.is_first, 0: np.zeros_like(self.valid), 1: self.is_last}[e]
        none = none | ((d == -1) & (cm == 0)) | ((d == 1) & (cm == n - 1))
        return np.where(none, -1, index)


def block_plan(grid_h: int, grid_w: int, block: int) -> BlockPlan:
    """Builds (and verifies) the :class:`BlockPlan` of an h' x w' grid for blocks of ``block`` positions.

    Every index a(i, e, d) a block needs lies in its window: away from the first/last grid row it is
    i + e*w' + d (|offset| <= w' + 1); in grid row 0 the column-major step e = -1 lands on
    (h'-1, x-1) = i - w' - 1 (mod N), in row h'-1 the step e = +1 on (0, x+1) = i + w' + 1 (mod N),
    so |offset| <= w' + 2 = halo. Raises AssertionError if the slice rule disagrees with
    :func:`propagation_index_map` (it cannot, but the check is cheap).
    """
    n = grid_h * grid_w
    block = max(1, min(int(block), n))
    nb = -(-n // block)
    halo = grid_w + 2
    window = block + 2 * halo
    starts = np.arange(nb, dtype=np.int64) * block
    positions = starts[:, None] + np.arange(block)[None, :]
    valid = positions < n
    slots = np.mod(starts[:, None] - halo + np.arange(window)[None, :], n)  # [nb, window]
    pw = grid_w + 2
    sy, sx = slots // grid_w, slots % grid_w
    patch_index = np.stack([(sy + a) * pw + (sx + o) for a in range(3) for o in range(3)], axis=-1)
    plan = BlockPlan(
        grid=(grid_h, grid_w),
        block=block,
        num_blocks=nb,
        halo=halo,
        window=window,
        starts=starts.astype(np.int32),
        valid=valid,
        first_row=valid & (positions < grid_w),
        last_row=valid & (positions >= n - grid_w),
        is_first=positions == 0,
        is_last=positions == n - 1,
        slot_not_first=slots != 0,
        slot_not_last=slots != n - 1,
        patch_index=patch_index.astype(np.int32),
    )
    amap = propagation_index_map(grid_h, grid_w)[np.minimum(positions, n - 1)]  # [nb, block, 9]
    for t in range(9):
        if not np.array_equal(plan.term_index(t)[valid], amap[..., t][valid]):
            raise AssertionError(f"contextual attention block plan disagrees with a(i, e, d), term {t}")
    return plan


def default_block(grid_h: int, grid_w: int) -> int:
    """Default query/key block size for an h' x w' grid.

    Target ``16 (w' + 2)`` positions clamped to [1024, 4096] (the halo then costs ~1.27x score-matmul
    FLOPs, e.g. 64 x 64 -> 1024, 128 x 128 -> 2048, 256 x 256 -> 4096), then balanced: the fewest
    blocks of at most the target, equally sized (a grid of at most the target is one block).
    """
    n = grid_h * grid_w
    target = min(MAX_BLOCK, max(MIN_BLOCK, BLOCK_HALOS * (grid_w + 2)))
    nb = -(-n // target)
    return -(-n // nb)


# ---------------------------------------------------------------------------------------------
# Efficient path
# ---------------------------------------------------------------------------------------------


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
    _check_shapes(feat, mask, rate)
    _check_scale(softmax_scale)
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
    _check_shapes(features, mask, rate)
    _check_scale(softmax_scale)
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


def _check_shapes(feat: jax.Array, mask: jax.Array, rate: int) -> None:
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


def _check_scale(softmax_scale: float) -> None:
    if not softmax_scale > 0:  # the reference's unused <= 0 branch (map times phi) is not ported
        raise ValueError(f"softmax_scale must be > 0, got {softmax_scale}")


__all__ = [
    "BlockPlan",
    "apply_attention_map",
    "attention_map_dense",
    "attention_values_efficient",
    "block_plan",
    "column_major_order",
    "contextual_attention",
    "default_block",
    "depth_to_space",
    "downscale_nearest",
    "extract_patches",
    "hole_queries",
    "mask_filter",
    "normalize_queries",
    "propagate_scores",
    "propagation_index_map",
    "space_to_depth",
]
