"""PyTorch / TF -> hrinpaint_jax weight conversion: one mapping table per source model.

Run as ``python -m convert_weights --model {dfnet,refinement,zoom,auto} --input SOURCE --output DIR``.
"""

from convert_weights import dfnet, shift_refine, zoom

# Converter model name -> table. 'refinement' is the name the authors' file uses.
TABLES = {"dfnet": dfnet.table(), "shift_refine": shift_refine.table(), "zoom": zoom.table()}
ALIASES = {"refinement": "shift_refine"}
