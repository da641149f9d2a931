"""Zoom-to-Inpaint's test protocol (REFERENCE.md 10.1-10.2; paper Table 1).

Square test images at 256x256 with the reference's seeded small and large stroke masks (image i gets
``random_mask(256, kind, seed=config.seed + i)``); every method runs at its training size (ZTI at 256;
DFNet-based methods get the image bicubic-upscaled to 512 and the hole nearest-upscaled, and their
output is downscaled back, as the paper did for HiFill); PSNR / SSIM / MS-SSIM / L1 (TF definitions)
and LPIPS on the unquantised outputs, whole image and inside the hole.

This file holds every evaluation field; the other ``eval_*.py`` configs import it and override a few.
Usage: ``python evaluate.py --config configs/eval_zoom.py --workdir DIR --config.weights=WEIGHTS``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.protocol = "zoom"  # Name of the protocol, used in the report titles.
    config.seed = 0  # Stroke masks: image i gets the reference's seeded mask with seed `seed + i`.

    config.data = ml_collections.ConfigDict()
    config.data.source = "samples"  # 'samples' (bundled photos), 'folder:PATH' or 'tfds:NAME'.
    config.data.split = "validation"  # TFDS split (tfds sources only).
    config.data.data_dir = ""  # TFDS data_dir ('' = TFDS default).
    config.data.max_images = 0  # Use only the first N images (0 = all).
    config.data.size = 0  # Master side: centre square crop resized here (0 = largest resolution).
    config.data.mask_dir = ""  # Folder of masks matched to images by name (needs 'folder' in kinds).
    config.data.mask_hole_value = "white"  # Which mask colour is the hole: 'white' or 'black'.
    config.data.mask_threshold = 128  # Mask pixels this strong (0..255) or more are holes.

    config.masks = ml_collections.ConfigDict()
    config.masks.kinds = ("small", "large")  # Any of 'centre', 'small', 'large', 'folder'.
    # Strokes drawn at this side and nearest-resized to each resolution, so that they cover the same
    # share of the image at every size (0: drawn at the evaluation size, as the ZTI protocol).
    config.masks.stroke_size = 0

    config.resolutions = (256,)  # Square test sides; each is made from the master image.
    config.downsample = "nearest"  # Master -> smaller resolutions: 'nearest' (OpenCV) or 'bicubic'.
    config.run_at = "training_size"  # 'training_size' (resize there and back) or 'native'.
    # Methods: two_stage, dfnet_only, zoom, zoom_bicubic, zoom_no_zoom, opencv_telea, opencv_ns.
    config.methods = ("zoom", "two_stage", "dfnet_only", "opencv_telea", "opencv_ns")
    config.weights = ""  # Folder with dfnet/, shift_refine/, zoom/ ('' = $HRINPAINT_WEIGHTS).
    # Metrics (hrinpaint_jax.metrics): l1, l1_255, psnr, ssim, ms_ssim, lpips, band_ssim.
    config.metrics = ("psnr", "ssim", "ms_ssim", "l1", "lpips")
    config.hole_metrics = ("hole_psnr", "hole_ssim", "hole_l1")  # The same, inside the hole only.
    config.batch_size = 4  # Images per compiled call (the last batch is padded to this size).
    config.dtype = "float32"  # Networks' computation dtype: 'float32' (parity) or 'bfloat16'.
    config.progress = True  # Progress bar over images on stderr.

    config.two_stage = ml_collections.ConfigDict()
    config.two_stage.faithful = True  # Reproduce the reference pipeline bit for bit (quirks kept).
    config.two_stage.hole_local = "auto"  # Refinement decoder on the hole window: auto, on, off.

    config.zoom = ml_collections.ConfigDict()
    config.zoom.test_size = 256  # Zoom-to-Inpaint's test (training) resolution.
    config.zoom.run_at = ""  # Where the zoom variants run ('' = config.run_at).

    config.opencv = ml_collections.ConfigDict()
    config.opencv.radius = 3.0  # cv2.inpaint neighbourhood radius in pixels.

    config.report = ml_collections.ConfigDict()
    config.report.layout = "metric_columns"  # 'metric_columns' (ZTI tables) or 'resolution_columns'.
    config.report.table_metrics = ("psnr", "ssim", "ms_ssim", "l1", "lpips")  # Main-table columns.
    config.report.plots = True  # Write metric_vs_resolution.png (and band_ssim.png when measured).
    config.report.num_strips = 4  # Comparison strips for the first N images (0 = none).
    config.report.strip_size = 256  # Side of each panel in the strips, in pixels.
    return config
