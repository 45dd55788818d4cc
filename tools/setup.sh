#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks (as root, or with sudo), then builds swq
# into build/. Sourced by tools/quickstart.sh and tools/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="build-essential cmake pkg-config libopenmpi-dev openmpi-bin libconfig-dev libzstd-dev libcjson-dev libpcre2-dev libopenblas-dev zstd python3"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    echo "swq setup: installing$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${SWQ_CMAKE_ARGS:-} >/dev/null
cmake --build build -j"$(nproc)"
