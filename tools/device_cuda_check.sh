#!/bin/bash
# Builds the CUDA backend, the CPU reference and cuda/tools/cuda_ops_check with nvcc/gcc
# directly (no CMake, so other parts' unfinished files don't matter), then on a GPU runs
# the CPU-vs-CUDA op check at full size, compute-sanitizer memcheck on small shapes and
# GPU op timings at GPT-2 small shapes (informative: they never fail the script).
#   tools/device_cuda_check.sh [build|check|sanitize|time|all]   (default all)
# On the device machine: source .devdeps/env.sh first (OpenBLAS for the CPU reference).
# Logs go to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
B=${BUILD_DIR:-build-cudacheck}
ARCH=${CUDA_ARCH:--arch=sm_90}
LOG=${OUT:-$B}
mkdir -p "$B" "$LOG"

build() {
    local pids=() f
    for f in cuda/*.cu; do
        nvcc $ARCH -std=c++17 -O2 -lineinfo -I. -Xcompiler -Wall,-Wextra,-Wno-unused-parameter \
            -c "$f" -o "$B/$(basename "$f" .cu).o" &
        pids+=($!)
    done
    gcc -std=c11 -O2 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -I. \
        -c model/backend_cpu.c -o "$B/backend_cpu.o" &
    pids+=($!)
    gcc -std=c11 -O2 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -I. \
        -c cuda/tools/cuda_ops_check.c -o "$B/cuda_ops_check.o" &
    pids+=($!)
    local p rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    [ $rc = 0 ] || { echo "device_cuda_check: compile failed"; exit 1; }
    nvcc $ARCH -o "$B/cuda_ops_check" "$B"/*.o -lcublasLt -lcublas -lopenblas -lm
    echo "device_cuda_check: built $B/cuda_ops_check"
}

check() {
    set -o pipefail
    "$B/cuda_ops_check" "$@" 2>&1 | tee "$LOG/cuda_ops_check.log"
}

sanitize() {
    set -o pipefail
    compute-sanitizer --tool memcheck --leak-check full --error-exitcode 3 \
        "$B/cuda_ops_check" --small 2>&1 | tee "$LOG/sanitizer.log" | tail -n 25
}

timing() {
    "$B/cuda_ops_check" --time 2>&1 | tee "$LOG/timing.log"
}

case "$what" in
    build) build ;;
    check) shift; check "$@" ;;
    sanitize) sanitize ;;
    time) timing ;;
    all)
        build
        rc=0
        check || rc=$?
        src=0
        sanitize || src=$?
        timing || echo "device_cuda_check: timing failed"
        echo "device_cuda_check: check rc=$rc, sanitizer rc=$src"
        [ $rc = 0 ] && [ $src = 0 ]
        ;;
    *) echo "usage: $0 [build|check|sanitize|time|all]"; exit 2 ;;
esac
