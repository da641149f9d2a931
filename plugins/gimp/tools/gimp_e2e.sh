#!/usr/bin/env bash
# End-to-end test of the GIMP 3 plug-in in a real GIMP 3, headless (see plugins/gimp/README.md).
#
#   bash plugins/gimp/tools/gimp_e2e.sh [test|build-root|screenshots]    (make test-gimp = test)
#
# GIMP 3 is packaged in Debian 13 (trixie) only, so the first run builds a trixie root with debootstrap
# at $GIMP_ROOT (default: gimp-root beside the repository) and installs gimp there; that needs root and
# the Debian mirror. Later runs reuse it. The test installs the plug-in with `hrinpaint
# install-gimp-plugin` into a fresh GIMP config folder, converts the fixture weights, and runs
# gimp-console-3.0 in batch mode on a bundled photo (tools/e2e_batch.py); tools/e2e_check.py then checks
# the exported layers on the host. The project's Python must run inside the root for the plug-in's
# subprocess: the repository, the venv's base interpreter and the work folder are bind-mounted at their
# own paths in a private mount namespace (unshare), so the mounts vanish when the test ends.
#
# Settings (environment): GIMP_ROOT (where the root lives), PROJECT_PYTHON (default .venv/bin/python),
# DEBIAN_MIRROR (default: the host's), HRINPAINT_E2E_KEEP=1 (keep the work folder with its logs).
# `screenshots [OUT]` also installs Xvfb, xdotool and netpbm in the root and writes the README images.
set -euo pipefail

TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$TOOLS/../../.." && pwd)
GIMP_ROOT=${GIMP_ROOT:-$(dirname "$REPO")/gimp-root}
PROJECT_PYTHON=${PROJECT_PYTHON:-$REPO/.venv/bin/python}
PACKAGES="gimp python3 python3-gi gir1.2-gimp-3.0"
SCREENSHOT_PACKAGES="xvfb x11-apps netpbm xdotool"

die() { echo "gimp_e2e: error: $*" >&2; exit 1; }

debian_mirror() {
  # The host's own Debian mirror (deb822 or one-line sources), else the default one.
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)
  echo "${DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

# in_root ROOT CMD...: runs CMD in the root with proc/dev/sys and BINDS (host paths, mounted at the
# same path) in a private mount namespace, from an empty environment plus ROOT_ENV.
BINDS=()
ROOT_ENV=()
in_root() {
  local root=$1
  shift
  unshare --mount --propagation private -- bash -euc '
    root=$1; nbinds=$2; shift 2
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    for ((i = 0; i < nbinds; i++)); do
      mkdir -p "$root$1"
      mount --bind "$1" "$root$1"
      shift
    done
    exec chroot "$root" "$@"
  ' in_root "$root" "${#BINDS[@]}" "${BINDS[@]}" \
    /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "${ROOT_ENV[@]}" "$@"
}

build_root() {
  [ -f "$GIMP_ROOT/.hrinpaint-ready" ] && return 0
  need_root "building the trixie root at $GIMP_ROOT"
  local start=$SECONDS partial="$GIMP_ROOT.partial"
  if ! command -v debootstrap >/dev/null; then
    apt-get install -y debootstrap >/dev/null || die "could not install debootstrap (apt-get update first?)"
  fi
  rm -rf "$partial"
  echo "== debootstrap trixie into $partial ($(debian_mirror))"
  debootstrap --variant=minbase trixie "$partial" "$(debian_mirror)" >"$partial.log" 2>&1 \
    || die "debootstrap failed, see $partial.log"
  cp /etc/resolv.conf "$partial/etc/resolv.conf"
  echo "== apt-get install $PACKAGES"
  BINDS=() ROOT_ENV=(DEBIAN_FRONTEND=noninteractive)
  in_root "$partial" apt-get install -y --no-install-recommends $PACKAGES >>"$partial.log" 2>&1 \
    || die "installing gimp in the root failed, see $partial.log"
  in_root "$partial" apt-get clean
  touch "$partial/.hrinpaint-ready"
  rm -rf "$GIMP_ROOT"
  mv "$partial" "$GIMP_ROOT"
  rm -f "$partial.log"
  echo "== trixie root with GIMP ready at $GIMP_ROOT ($((SECONDS - start)) s)"
}

# Sets BINDS for running the project's Python in the root: the repository (venv, plug-in sources),
# the interpreter the venv was made from, and the extra folders given.
project_binds() {
  [ -x "$PROJECT_PYTHON" ] || die "no project Python at $PROJECT_PYTHON (run make venv, or set PROJECT_PYTHON)"
  local base
  base=$("$PROJECT_PYTHON" -c 'import sys; print(sys.base_prefix)')
  case "$base" in
    /usr | /usr/local | /) die "the venv's interpreter lives in $base, which cannot be mounted over the root's; make the venv from a self-contained Python (e.g. pyenv)" ;;
  esac
  BINDS=("$REPO" "$base" "$@")
}

# prepare_work: a work folder (removed on exit unless HRINPAINT_E2E_KEEP=1) with the fixture weights,
# a fresh GIMP profile holding the installed plug-in, and the bundled photos.
prepare_work() {
  PROJECT_PYTHON=$(cd "$(dirname "$PROJECT_PYTHON")" && pwd)/$(basename "$PROJECT_PYTHON")
  WORK=$(mktemp -d /tmp/hrinpaint-gimp-e2e.XXXXXX)
  if [ "${HRINPAINT_E2E_KEEP:-0}" = 1 ]; then
    echo "== keeping $WORK"
  else
    # The bind mounts are gone with their namespace; their empty mount point in the root is not.
    trap 'rm -rf "$WORK"; rmdir "$GIMP_ROOT$WORK" 2>/dev/null || true' EXIT
  fi
  echo "== converting the fixture weights into $WORK/weights"
  if ! "$PROJECT_PYTHON" "$TOOLS/e2e_check.py" weights "$WORK/weights" >"$WORK/convert.log" 2>&1; then
    tail -n 20 "$WORK/convert.log" >&2
    die "converting the fixture weights failed"
  fi
  echo "== hrinpaint install-gimp-plugin into a fresh GIMP profile"
  "$PROJECT_PYTHON" -m hrinpaint_jax install-gimp-plugin --gimp-dir "$WORK/profile" --python "$PROJECT_PYTHON" \
    --weights "$WORK/weights"
  cp "$REPO/hrinpaint_jax/assets/samples/astronaut.png" "$REPO/hrinpaint_jax/assets/samples/coffee.png" "$WORK/"
}

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root (debootstrap, chroot, mount namespaces)"
}

run_test() {
  need_root "the GIMP e2e test"
  build_root
  local start=$SECONDS
  prepare_work
  project_binds "$WORK"
  ROOT_ENV=(GIMP3_DIRECTORY="$WORK/profile" HRINPAINT_E2E_WORK="$WORK" JAX_PLATFORMS=cpu)
  echo "== gimp-console-3.0 batch run in $GIMP_ROOT (log: $WORK/gimp.log)"
  local gimp_start=$SECONDS
  if ! in_root "$GIMP_ROOT" gimp-console-3.0 -i --batch-interpreter=python-fu-eval \
    -b "exec(open('$TOOLS/e2e_batch.py').read())" --quit >"$WORK/gimp.log" 2>&1; then
    grep -v -e 'cannot open display' -e 'gimp_wire_read' -e 'Broken pipe' -e '^$' "$WORK/gimp.log" | tail -n 30 >&2
    die "the GIMP batch run failed"
  fi
  local gimp_s=$((SECONDS - gimp_start))
  "$PROJECT_PYTHON" "$TOOLS/e2e_check.py" check "$WORK" || die "the layers GIMP made are wrong"
  echo "GIMP e2e test passed in $((SECONDS - start)) s (GIMP batch run $gimp_s s)"
}

# screenshots [OUT]: the dialog, before / after and an error message, from GIMP 3 on Xvfb, into OUT
# (default docs/gimp).
screenshots() {
  local out=${1:-$REPO/docs/gimp}
  need_root "taking screenshots"
  build_root
  if [ ! -x "$GIMP_ROOT/usr/bin/Xvfb" ] || [ ! -x "$GIMP_ROOT/usr/bin/xdotool" ]; then
    BINDS=() ROOT_ENV=(DEBIAN_FRONTEND=noninteractive)
    { in_root "$GIMP_ROOT" apt-get update && in_root "$GIMP_ROOT" apt-get install -y \
      --no-install-recommends $SCREENSHOT_PACKAGES; } >/dev/null || die "installing $SCREENSHOT_PACKAGES in the root failed"
  fi
  prepare_work
  project_binds "$WORK"
  ROOT_ENV=(JAX_PLATFORMS=cpu)
  echo "== GIMP 3 on Xvfb (logs in $WORK)"
  in_root "$GIMP_ROOT" bash "$TOOLS/screenshots_driver.sh" "$WORK" \
    || die "the screenshot run failed (HRINPAINT_E2E_KEEP=1 keeps its logs)"
  mkdir -p "$out"
  "$PROJECT_PYTHON" "$TOOLS/e2e_check.py" shots "$WORK/shots" "$out"
}

case "${1:-test}" in
  test) run_test ;;
  screenshots) screenshots "${2:-}" ;;
  build-root) build_root ;;
  *) die "unknown command ${1}" ;;
esac
