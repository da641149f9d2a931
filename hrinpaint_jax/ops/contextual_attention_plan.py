"""The static block plan of the memory-efficient contextual attention (host-side NumPy index maps).

The efficient path (:mod:`hrinpaint_jax.ops.contextual_attention`) never builds the N x N score map of
:mod:`hrinpaint_jax.ops.contextual_attention_dense`; it cuts the h' x w' attention grid's row-major
positions into blocks and computes each (query block, key block) pair of propagated scores from the raw
scores of two windows. This module says, per block, which positions those windows hold and where the
reference's wrap-around propagation (REFERENCE.md 6.3) reads; everything here is NumPy, computed once
per grid shape at trace time.

With ``a(i, e, d) = R(Cm(i, e), d)`` (column-major step e, then row-major step d; None when out of
range) the propagated score is ``S2[p, q] = sum_{e,d} S[a(p,e,d), a(q,e,d)]`` (a None term is 0).
Away from the first/last grid row ``a(i, e, d) = i + e*w' + d``; in the first (last) grid row the
column-major step wraps to the previous (next) column, which in row-major numbering is the cyclic index
``i - w' - 1 (+ d)`` (``i + w' + 1 (+ d)``) mod N. So every index a block of positions [s, s + n) needs
lies in the cyclic window [s - w' - 2, s + n + w' + 2) mod N (halo w' + 2 on each side). Every plan is
checked against :func:`propagation_index_map`, the literal a(i, e, d), when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Default block size of the efficient path (see default_block): about 16 halos (16 (w' + 2) positions,
# so the window of a block is ~12 % longer than the block on each side: ~1.27x score-matmul FLOPs),
# clamped to [1024, 4096]. A 4096 x 4096 block pair keeps the forward temporaries at ~0.4 GB and the
# backward ones at ~1.5 GB (float32, B = 1, c = 128); 1024 keeps the backward at N = 4096 (training
# size) at ~0.15 GB, below the dense formulation's.
BLOCK_HALOS = 16
MIN_BLOCK, MAX_BLOCK = 1024, 4096
# The 9 propagation terms t = (e + 1) * 3 + (d + 1): e = column-major (vertical) step, d = row-major.
_STEPS = tuple((e, d) for e in (-1, 0, 1) for d in (-1, 0, 1))


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
        """Row-major index the slice rule of the efficient path's block propagation
        (``contextual_attention._propagate_block``) reads for propagation term
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


__all__ = ["BlockPlan", "block_plan", "default_block", "propagation_index_map"]
