"""The quality gate of our own trained models (``configs/ours.py``, the bundled default weights) on
the six held-out photos (``hrinpaint_jax/photos.py:HOLDOUT``, never trained on).

Every photo is centre-cropped to a square and resized to a 2048 px master; the 1024 px images are
nearest-neighbour downsamples of it (seed-000's rule). Masks: a centred square a third of the side
(seed-000) and Zoom-to-Inpaint's seeded large strokes, drawn at 256 px (the generator's scale) and
nearest-resized, so they cover the same 15 % of the image at both sizes (drawn directly at 2048
they would be thin lines that any diffusion fills). Metrics inside the hole (PSNR, SSIM, LPIPS)
and on the whole image (the papers' L1 / PSNR / SSIM, and MS-SSIM / LPIPS of Zoom-to-Inpaint).

The two-stage pipeline, its stage 1 alone (upscaled: ``dfnet_only``) and OpenCV run at the full
resolution; Zoom-to-Inpaint runs on the image resized to 256 (its paper's test size, and the
``work_size`` recorded in the bundled weights) and its fill is resized back into the hole
(``zoom.run_at``); ``zoom_no_zoom`` is the same checkpoint with the SR zoom switched off (refinement
at 256, see ``configs/eval_ablation.py``).

    python evaluate.py --config configs/eval_gate.py --workdir results/gate
    python evaluate.py --config configs/eval_gate.py --workdir results/gate_1024 \\
        --config.resolutions='(1024,)'
"""

from configs import eval_zoom


def get_config():
    config = eval_zoom.get_config()
    config.protocol = "gate"
    config.data.source = "folder:data/photos/holdout"
    config.data.size = 2048
    config.masks.kinds = ("centre", "large")
    config.masks.stroke_size = 256  # the generator's own scale: thick strokes at 1024 and 2048
    config.resolutions = (1024, 2048)
    config.downsample = "nearest"
    config.run_at = "native"
    config.zoom.run_at = "training_size"
    # 256, the paper's test size. Our nets were trained on crops of 512-768 px photos, but at 512 the
    # coarse net's ~80 px receptive radius is less than the half-width of the centred square (170 px)
    # and the middle of the hole gets an average colour; at 256 the same weights gave +0.5 / +0.6 dB
    # hole PSNR at 1024 (centre / strokes; 384: +0.2 / +0.4).
    config.zoom.test_size = 256
    config.methods = ("two_stage", "dfnet_only", "zoom", "zoom_no_zoom", "opencv_telea", "opencv_ns")
    config.metrics = ("l1_255", "psnr", "ssim", "ms_ssim", "lpips")
    config.hole_metrics = ("hole_psnr", "hole_ssim", "hole_lpips")
    config.batch_size = 1
    config.report.table_metrics = ("hole_psnr", "hole_ssim", "hole_lpips", "psnr", "ssim", "lpips")
    config.report.num_strips = 6
    config.report.strip_size = 320
    return config
