#!/usr/bin/env bash
# Runs inside the trixie root (gimp_e2e.sh screenshots): GIMP 3 on Xvfb, driven with xdotool the way a
# user would (a keyboard shortcut for the menu item, Return, Filters > Repeat), with xwd screenshots
# into $1/shots. Menus and popups come out black in xwd's captures (no compositor), so the menu item
# gets a shortcut in the test profile instead of being clicked.
set -euo pipefail
WORK=$1
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHOTS=$WORK/shots
mkdir -p "$SHOTS"
export DISPLAY=:97 GIMP3_DIRECTORY=$WORK/profile HRINPAINT_E2E_WORK=$WORK

Xvfb "$DISPLAY" -screen 0 1400x900x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
XVFB=$!
GIMP=
cleanup() {
  [ -n "$GIMP" ] && kill "$GIMP" 2>/dev/null || true
  kill "$XVFB" 2>/dev/null || true
}
trap cleanup EXIT
sleep 1

shot() { # shot NAME [WINDOW]
  local what=(-root)
  [ -z "${2:-}" ] || what=(-id "$2")
  xwd -silent "${what[@]}" | xwdtopnm 2>/dev/null | pnmtopng >"$SHOTS/$1.png"
}
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds
  local limit=$1
  shift
  for ((i = 0; i < limit * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "screenshots: timed out waiting for: $*" >&2
  return 1
}
window() { xdotool search --name "$1" | tail -n1; }

# The menu item's action is named after the procedure.
echo '(action "plug-in-hrinpaint" "<Primary><Alt>h")' >"$GIMP3_DIRECTORY/shortcutsrc"
gimp-3.0 --no-splash --batch-interpreter=python-fu-eval \
  -b "exec(open('$TOOLS/screenshots_batch.py').read())" >"$WORK/gimp-gui.log" 2>&1 &
GIMP=$!
wait_for 90 test -f "$WORK/shown"
wait_for 30 xdotool search --name ' – GIMP$'
MAIN=$(window ' – GIMP$')
xdotool windowsize "$MAIN" 1400 900
AWAY=(mousemove 1390 890) # the pointer over the dock, so that no brush outline is drawn on the canvas
xdotool "${AWAY[@]}"
sleep 3
shot before "$MAIN"

# Filters > Enhance > HR Inpaint... (through its shortcut).
xdotool key ctrl+alt+h
wait_for 30 xdotool search --name '^HR Inpaint$'
DIALOG=$(window '^HR Inpaint$')
sleep 2
shot dialog "$DIALOG"
xdotool mousemove --window "$DIALOG" 393 365 click 1 # OK
xdotool "${AWAY[@]}"
wait_for 60 pgrep -f 'hrinpaint_ja[x] inpaint'
sleep 4
shot progress "$MAIN"
wait_for 300 bash -c '! pgrep -f "hrinpaint_ja[x] inpaint"'
sleep 3
xdotool key ctrl+t # View > Show Selection off: the filled region without marching ants
sleep 2
shot after "$MAIN"

# An error from the subprocess: the weights lose their DFNet, then Filters > Repeat (Ctrl+F).
mv "$WORK/weights/dfnet" "$WORK/weights/dfnet.away"
xdotool key ctrl+f
wait_for 60 xdotool search --name '^GIMP Message$'
sleep 2
shot error "$(window '^GIMP Message$')"
mv "$WORK/weights/dfnet.away" "$WORK/weights/dfnet"
