"""GPU continuation training of the bundled models (phase e of ``tools/device_run.sh``):
``--config configs/gpu.py:STAGE`` with STAGE in ``STAGES``.

Each GPU run continues from the weights the last one committed (``init_from`` = the embedded
default weights in ``hrinpaint_jax/assets/weights``), so training accumulates across runs, and
stops on the device run's clock rather than on a step count: the driver sends SIGTERM at the
stage's deadline, ``train_lib`` saves a checkpoint and returns, and the model is exported as
float16 weights (``hrinpaint export``), small enough to come back (at most 16 MiB per file).

Every choice, and why:
* widths: those of the bundled models (``configs/ours.py``: DFNet 16 -> 128, refinement 16 -> 128,
  Zoom-to-Inpaint width 16). Continuing needs the same shapes, and they export at about 4 MB in
  float16 (the papers' widths: 66 MB for DFNet alone, too big to come back or ship);
* bfloat16 compute, float32 params / optimiser / BatchNorm statistics / losses (``config.dtype``);
* batches: 32 crops for DFNet (256 px), 16 squares for the refinement (1024 px squares, 256
  patches; stage 1 runs inside the step) and 16 for Zoom-to-Inpaint (LR 128 / HR 256). The CPU runs
  used 4 and 2; larger batches give steadier BatchNorm statistics and use the GPU;
* learning rate: constant (no stair: the run length is set by the clock, not by a step count):
  5e-4 for DFNet and the refinement (the CPU recipe's main value for DFNet; half the refinement's,
  since these runs continue trained weights rather than start), Zoom-to-Inpaint's joint-stage 1e-4
  (GAN training);
* the time split of the training phase (``SHARE``): DFNet 0.45 (stage 1 limits the two-stage
  fill the most: its hole PSNR is 0.2-0.8 dB under the two-stage result and 1-2 dB under OpenCV),
  Zoom-to-Inpaint 0.35, the refinement 0.20 (trained on the DFNet this run exported);
* data: the photo pack of ``make device-bundle`` (``.device/data/{small,large}``).
"""

from configs import ours

STAGES = ("dfnet", "shift_refine", "zoom_joint")
SHARE = {"dfnet": 0.45, "zoom_joint": 0.35, "shift_refine": 0.20}
WEIGHTS = "hrinpaint_jax/assets/weights"
DATA = ".device/data"
BATCH = {"dfnet": 32, "shift_refine": 16, "zoom_joint": 16}
# A run that is not stopped by the driver ends here (about an hour of H200 time at the rates the
# CPU recipe implies); the driver always stops it first.
MAX_STEPS = 200_000


def get_config(stage: str = "dfnet"):
    if stage not in STAGES:
        raise ValueError(f"unknown GPU stage {stage!r}; known: {', '.join(STAGES)}")
    config = ours.get_config("zoom_joint_large" if stage == "zoom_joint" else stage)
    config.dtype = "bfloat16"
    config.data.global_batch_size = BATCH[stage]
    config.data.source = f"folder:{DATA}/{'small' if stage == 'dfnet' else 'large'}"
    config.num_train_steps = MAX_STEPS
    config.optim.boundaries = ()
    config.log_every = 20
    config.checkpoint_every = 1_000_000  # the SIGTERM save is the only one needed
    config.keep_checkpoints = 1
    config.sample_every = 0
    if stage == "dfnet":
        config.optim.lr = 5e-4
        config.init_from = f"{WEIGHTS}/dfnet"
    elif stage == "shift_refine":
        config.optim.lr = 5e-4
        config.init_from = f"{WEIGHTS}/shift_refine"
        config.refine.stage1_weights = f"{WEIGHTS}/dfnet"  # the driver passes this run's new DFNet
    else:
        config.optim.lr = 1e-4
        config.init_from = f"{WEIGHTS}/zoom"
    return config
