#!/usr/bin/env bash
# Run a command with a display: the current one, or a virtual one from Xvfb. On a bare Debian/Ubuntu
# machine as root, installs Xvfb and Mesa first; otherwise says what to install.
set -euo pipefail

if [ -n "${DISPLAY:-}" ] || [ "$(uname -s)" != "Linux" ]; then
  exec "$@"
fi

packages="xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libdbus-1-3 libfontconfig1
  libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
  libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0"

missing=()
command -v xvfb-run >/dev/null 2>&1 || missing+=(xvfb-run)
if command -v dpkg-query >/dev/null 2>&1; then
  for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing a virtual display and Mesa (apt-get): ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
  else
    echo "No display, and these are missing: ${missing[*]}" >&2
    echo "Install them (Debian/Ubuntu: sudo apt-get install $(echo $packages)) or set DISPLAY." >&2
    exit 1
  fi
fi

exec xvfb-run -a -s "-screen 0 1280x1024x24" "$@"
