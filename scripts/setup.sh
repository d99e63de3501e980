#!/usr/bin/env bash
# Set up edgepad in ./.venv on Debian/Ubuntu (x86-64, Python >= 3.10; root for the apt step).
#   bash scripts/setup.sh runtime   # what `edgepad demo` / `run` / `serve` need (numpy, onnxruntime, OpenCV, yaml)
#   bash scripts/setup.sh dev       # everything for development and the test suite (adds CPU torch, onnx, ...)
# Pins come from constraints.txt (torch==2.13.0 CPU, opencv-python-headless<5, pyrealsense2==2.59.1.11053).
# On a Jetson do not use this script: see README "Jetson".
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-runtime}"
PY="${PYTHON:-python3}"

apt_pkgs=(libusb-1.0-0)                     # pyrealsense2's shared library
if [ "$extras" = "dev" ]; then apt_pkgs+=(chromium); fi   # headless browser for the live-view end-to-end test
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
      echo "setup: please install with root: apt-get install -y ${missing[*]}" >&2
    fi
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
export PIP_CONSTRAINT="$PWD/constraints.txt"
.venv/bin/python -m pip install -q --upgrade "pip>=23"
.venv/bin/python -m pip install -q -e ".[$extras]"
echo "setup: edgepad installed in .venv with extras [$extras]"
