#!/usr/bin/env bash
# Sets up recon on a fresh Debian machine: system libraries, a virtualenv in .venv, the package (editable).
# Safe to run again: installed pieces are skipped. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libusb-1.0-0 libgl1 libegl1 libgomp1)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# constraints.txt pins torch to the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import recon, torch, open3d, pymeshlab, skimage, trimesh, click, ruff, pytest" 2>/dev/null \
    || [ setup.cfg -nt .venv/.recon-installed ]; then
    .venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
    # machines of this kind keep the CPU torch wheel in /opt/wheels
    find_links=(); [ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
    .venv/bin/python -m pip install -q "${find_links[@]}" -c constraints.txt -e '.[dev]'
    touch .venv/.recon-installed
fi
echo "recon is set up in $(pwd)/.venv (run: .venv/bin/recon --help)"
