#!/bin/bash
# On nvidia-h200-x2 (2 GPUs, NCCL), from the checkout's root, with .devdeps and the data in
# .x2data/ carried (tokenizer, one pretraining part):
#   1. NCCL data parallel is the same step as one GPU: tiny model, fp32, 1 vs 2 ranks, same
#      global batch, parameters compared with swq ckpt-diff;
#   2. data-parallel CDT throughput at 124M shapes (configs/dp_bench_124m.cfg), 1, 2, 4, ...
#      up to NGPU GPUs (default 2; NGPU=8 on an 8-GPU machine) at a fixed per-GPU batch, and
#      the all-reduce time per step;
#   3. sweep throughput (cells per hour) of configs/sweep_tiny.cfg on 1 and NGPU GPU ranks.
# Preparing .x2data here, once per checkout:
#   mkdir -p .x2data/gpt2-tokenizer && cp ../shared/data/gpt2-tokenizer/{vocab.json,merges.txt} .x2data/gpt2-tokenizer/
#   cp ../shared/data/pretrain/part-000.txt.zst .x2data/ && echo /.x2data/ >> .git/info/exclude
#   ../shared/device/prepare.sh --blas          # .devdeps
# then device run: `bash tools/device_dist.sh` (NGPU=8 on an 8-GPU kind), carry [".devdeps", ".x2data"].
set -uo pipefail
cd "$(dirname "$0")/.."
source .devdeps/env.sh
[ -e /usr/include/cjson ] || ln -s /opt/devdeps/usr/include/cjson /usr/include/cjson
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0 OPENBLAS_NUM_THREADS=4
LOG=${OUT:-/tmp}/dist
mkdir -p "$LOG"
B=build-x2
NGPU=${NGPU:-2}
MPIX=(--oversubscribe -x NCCL_NVLS_ENABLE -x OPENBLAS_NUM_THREADS -x LD_LIBRARY_PATH)
MPI=(mpirun -np 2 "${MPIX[@]}")
nvidia-smi -L
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a > "$LOG/cmake.log" 2>&1 &&
    cmake --build $B -j32 --target swq > "$LOG/build.log" 2>&1 || { tail -30 "$LOG/cmake.log" "$LOG/build.log"; exit 1; }
grep -q "SWQ_HAVE_NCCL" $B/CMakeFiles/swq_cuda.dir/flags.make && echo "NCCL: built in" || echo "NCCL: NOT FOUND"
D=.x2data
sets=(--set "data.tokenizer=\"$D/gpt2-tokenizer\"" --set "data.train_file=\"$D/part-000.txt.zst\"")

echo "== 1. 1 GPU vs 2 GPUs (NCCL), tiny model, fp32"
T=(-c configs/sweep_tiny_base.cfg --set 'run.device="cuda"' --set train.steps=5 --set train.batch_size=6)
$B/swq train "${T[@]}" --out $LOG/one > $LOG/one.log 2>&1 || tail -5 $LOG/one.log
"${MPI[@]}" $B/swq train "${T[@]}" --out $LOG/two > $LOG/two.log 2>&1 || tail -20 $LOG/two.log
$B/swq ckpt-diff $LOG/one $LOG/two --tol 1e-4 && echo "dp-check: OK" || echo "dp-check: FAILED"

echo "== 2. data-parallel CDT throughput, GPT-2 124M shapes, bf16, 8 x 512 tokens per GPU"
runs=""
for n in 1 2 4 8 16; do
    [ $n -le $NGPU ] || break
    timeout 300 mpirun -np $n "${MPIX[@]}" $B/swq train -c configs/dp_bench_124m.cfg "${sets[@]}" \
        --set train.batch_size=$((8 * n)) --out $LOG/dp$n > $LOG/dp$n.log 2>&1 || tail -20 $LOG/dp$n.log
    grep -E "^step" $LOG/dp$n.log | tail -1
    runs="$runs $n"
done
python3 - "$LOG" $runs <<'PY'
import csv, statistics, sys
d, ns = sys.argv[1], [int(x) for x in sys.argv[2:]]
def stats(n):
    rows = list(csv.DictReader(open(f"{d}/dp{n}/train_log.csv")))[5:]   # after warm-up
    return statistics.median(float(r["tokens_per_s"]) for r in rows), statistics.median(float(r["allreduce_ms"]) for r in rows)
t1 = stats(1)[0]
print("| GPUs | tokens/s | scaling | all-reduce ms/step |\n|---|---:|---:|---:|")
for n in ns:
    t, ar = stats(n)
    print(f"| {n} | {t:.0f} | {t/t1:.2f}x | {ar:.2f} |")
PY

echo "== 3. sweep throughput on GPUs"
sed 's/sets = \[ "train.steps=3" \];/sets = [ "train.steps=3", "run.device=\\"cuda\\"" ];/' configs/sweep_tiny.cfg > $LOG/sweep_gpu.cfg
grep sets $LOG/sweep_gpu.cfg
for n in 1 $NGPU; do
    s=$(date +%s.%N)
    if [ $n = 1 ]; then $B/swq sweep -c $LOG/sweep_gpu.cfg --out $LOG/sw$n > $LOG/sw$n.log 2>&1
    else mpirun -np $NGPU "${MPIX[@]}" $B/swq sweep -c $LOG/sweep_gpu.cfg --out $LOG/sw$n > $LOG/sw$n.log 2>&1; fi
    e=$(date +%s.%N)
    cells=$(grep -c . $LOG/sw$n/table.csv)
    python3 -c "print('sweep ranks=$n: %d cells in %.1f s = %.0f cells/hour' % ($cells-1, $e-$s, ($cells-1)*3600/($e-$s)))"
done
tail -3 $LOG/sw$NGPU.log
