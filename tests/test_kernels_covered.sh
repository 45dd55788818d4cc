#!/bin/bash
# Every kernel of the CUDA backend lives in a header under cuda/ (device code only) and is run by a
# simulator test (tests/test_*_sim.cpp, through cuda/tools/warp_sim.h): a __global__ in a .cu file,
# or a kernel that no simulator test names, fails here with its name. The exceptions are the
# sm_90a kernels on the TMA and wgmma, which the simulator cannot run: each is listed below with the
# GPU check that compares it, bit for bit, with the simulated kernel it stands in for.
on_gpu="flash_fwd_wgmma_kernel:cuda_ops_check --attention (attention_fwd wgmma = mma.sync)
wgmma_available_kernel:sets one flag (cu_wgmma_compiled); every check above runs with its answer"
set -uo pipefail
cd "${SWQ_SRC:-$(dirname "$0")/..}"
fail=0
for f in cuda/*.cu; do
    if grep -n "__global__" "$f" >/dev/null; then
        grep -n "__global__" "$f" | sed "s|^|$f:|; s|\$| (kernels go in a cuda/*.cuh header with a simulator test)|"
        fail=1
    fi
done
kernels=$(grep -hoE "__global__ void( __launch_bounds__\([^)]*\))? *[A-Za-z_0-9]+" cuda/*.cuh | awk '{print $NF}' | sort -u)
[ -n "$kernels" ] || { echo "test_kernels_covered: no kernels found in cuda/*.cuh"; exit 1; }
n=0
for k in $kernels; do
    n=$((n + 1))
    grep -q "\b$k\b" tests/test_*_sim.cpp && continue
    if echo "$on_gpu" | grep -q "^$k:"; then
        grep -q "\b$k\b" cuda/tools/cuda_ops_check.c cuda/*.cu || { echo "test_kernels_covered: $k is launched nowhere"; fail=1; }
        continue
    fi
    echo "test_kernels_covered: $k is run by no tests/test_*_sim.cpp"; fail=1
done
echo "test_kernels_covered: $n kernels, $([ $fail = 0 ] && echo all in headers and simulated || echo NOT all covered)"
exit $fail
