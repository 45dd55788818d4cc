#!/usr/bin/env bash
# README command (1): set up, build, and run the embedded default job
# (tiny GPT-2, generated SQuAD-layout data, CPU, CDT over 5 precision configs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export OPENBLAS_NUM_THREADS=1
rm -rf runs/quickstart
exec build/swq train -c configs/quickstart.cfg "$@"
