#!/usr/bin/env bash
# README command (2): set up, build (CUDA backend too when nvcc is present), run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 1500
