#!/usr/bin/env bash
# README command (1): set up, build, and run the embedded default job
# (tiny GPT-2, generated SQuAD-layout data, CPU, CDT over 5 precision configs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# two MPI ranks, data-parallel CDT (one OpenBLAS thread each: one core per rank)
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rm -rf runs/quickstart
exec mpirun -np 2 --oversubscribe build/swq train -c configs/quickstart.cfg "$@"
