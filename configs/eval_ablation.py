"""Zoom-to-Inpaint ablation (paper Table 3 and the frequency analysis of Table 7; REFERENCE.md 10.2):
no zoom / bicubic zoom / SR zoom side by side under the ZTI test protocol (``eval_zoom.py``), plus
SSIM per band of a 2-level Laplacian pyramid (5-tap [1, 4, 6, 4, 1]/16 Gaussian).

The variants are one checkpoint run with the model's zoom option (``ZoomToInpaint(zoom=...)``, see
``hrinpaint_jax/evaluation/methods.py``): no zoom = no SR stage (refinement at 256), bicubic zoom =
SR net replaced by TF bicubic x2, SR zoom = the full model. The paper retrained each variant.
"""

from configs import eval_zoom


def get_config():
    config = eval_zoom.get_config()
    config.protocol = "zoom_ablation"
    config.methods = ("zoom_no_zoom", "zoom_bicubic", "zoom")
    config.metrics = ("psnr", "ssim", "ms_ssim", "l1", "band_ssim")
    config.report.table_metrics = ("psnr", "ssim", "ms_ssim", "l1")
    return config
