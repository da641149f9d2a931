"""hrinpaint_jax: JAX/Flax high-resolution image inpainting (two-stage DFNet + shift refinement,
and Zoom-to-Inpaint)."""

__version__ = "0.1.0"
