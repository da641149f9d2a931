"""uint8 <-> float pixel conversions shared by the pipelines, evaluation and training samples.

Images inside the package are float32 in [0, 1]; files and the pipelines' public API are uint8.
These two functions are the only places that cross that boundary.
"""

from __future__ import annotations

import numpy as np

# float32(v) / float32(255) for every uint8 v, correctly rounded (IEEE division, as torch's
# ``tensor.float() / 255``). XLA rewrites ``u8 / 255.0`` into ``u8 * (1 / 255)``, which is one ulp
# off for 126 of the 256 values; indexing this table is bit-identical to the reference instead.
_U8_TO_UNIT = np.arange(256, dtype=np.float32) / np.float32(255.0)


def from_uint8(pixels):
    """uint8 array (NumPy or JAX, any shape) -> float32 in [0, 1], bit-identical to ``u8 / 255``
    computed by IEEE division (the PyTorch reference)."""
    if isinstance(pixels, np.ndarray):
        return _U8_TO_UNIT[pixels]
    import jax.numpy as jnp

    return jnp.asarray(_U8_TO_UNIT)[pixels.astype(jnp.int32)]


def to_uint8(x, *, rounding: str = "round"):
    """float array in [0, 1] (NumPy or JAX) -> uint8.

    rounding: ``"round"``: nearest level after clipping to [0, 1] (what a user expects);
      ``"truncate"``: ``x * 255`` truncated toward zero, as torch's ``.byte()`` in the two-stage
      reference (QUIRK, REFERENCE.md section 4 steps 7 and 17); values outside [0, 1] are clipped
      first so the conversion never wraps.
    """
    if rounding not in ("round", "truncate"):
        raise ValueError(f"rounding must be 'round' or 'truncate', got {rounding!r}")
    if isinstance(x, np.ndarray) or np.isscalar(x):
        xp = np
        x = np.asarray(x, np.float32)
    else:
        import jax.numpy as jnp

        xp = jnp
    scaled = xp.clip(x, 0.0, 1.0) * 255.0
    if rounding == "round":
        scaled = xp.round(scaled)
    return scaled.astype(xp.uint8)
