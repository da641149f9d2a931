"""seed-000's objective comparison (REFERENCE.md 10.3; paper Table 1): one centred square hole, the
same images at 1024, 1536, 1792 and 2048 px made from the 2048 px master by nearest-neighbour
downsampling, every method run at full resolution, L1 (0..255 scale) / PSNR / SSIM per resolution.

Usage: ``python evaluate.py --config configs/eval_twostage_multires.py --workdir DIR``; small runs
override e.g. ``--config.resolutions='(256, 512)'``.
"""

from configs import eval_zoom


def get_config():
    config = eval_zoom.get_config()
    config.protocol = "twostage_multires"
    config.masks.kinds = ("centre",)
    config.resolutions = (1024, 1536, 1792, 2048)
    config.downsample = "nearest"
    config.run_at = "native"
    config.methods = ("two_stage", "dfnet_only", "opencv_telea", "opencv_ns")
    config.metrics = ("l1_255", "psnr", "ssim")
    config.hole_metrics = ("hole_l1_255", "hole_psnr", "hole_ssim")
    config.batch_size = 1  # One 2048^2 image at a time bounds the memory.
    config.report.layout = "resolution_columns"
    config.report.table_metrics = ("l1_255", "psnr", "ssim")
    return config
