#!/bin/bash
# On nvidia-h200-x2 (2 GPUs, NCCL), from the checkout's root, with .devdeps and the data in
# .x2data/ carried (tokenizer, one pretraining part):
#   1. NCCL data parallel is the same step as one GPU: tiny model, fp32, 1 vs 2 ranks, same
#      global batch, parameters compared with swq ckpt-diff;
#   2. data-parallel CDT throughput at 124M shapes (configs/dp_bench_124m.cfg), 1 and 2 GPUs
#      at a fixed per-GPU batch, and the all-reduce time per step;
#   3. sweep throughput (cells per hour) of configs/sweep_tiny.cfg on 1 and 2 GPU ranks.
set -uo pipefail
cd "$(dirname "$0")/.."
source .devdeps/env.sh
[ -e /usr/include/cjson ] || ln -s /opt/devdeps/usr/include/cjson /usr/include/cjson
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0 OPENBLAS_NUM_THREADS=4
LOG=${OUT:-/tmp}/dist
mkdir -p "$LOG"
B=build-x2
MPI=(mpirun -np 2 --oversubscribe -x NCCL_NVLS_ENABLE -x OPENBLAS_NUM_THREADS -x LD_LIBRARY_PATH)
nvidia-smi -L
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 > "$LOG/cmake.log" 2>&1 &&
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
timeout 300 $B/swq train -c configs/dp_bench_124m.cfg "${sets[@]}" --set train.batch_size=8 --out $LOG/dp1 > $LOG/dp1.log 2>&1 || tail -20 $LOG/dp1.log
timeout 300 "${MPI[@]}" $B/swq train -c configs/dp_bench_124m.cfg "${sets[@]}" --set train.batch_size=16 --out $LOG/dp2 > $LOG/dp2.log 2>&1 || tail -20 $LOG/dp2.log
grep -E "^step" $LOG/dp1.log | tail -2; grep -E "^step" $LOG/dp2.log | tail -2
python3 - "$LOG" <<'PY'
import csv, statistics, sys
d = sys.argv[1]
def stats(run):
    rows = list(csv.DictReader(open(f"{d}/{run}/train_log.csv")))[5:]   # after warm-up
    return statistics.median(float(r["tokens_per_s"]) for r in rows), statistics.median(float(r["allreduce_ms"]) for r in rows)
t1, _ = stats("dp1"); t2, ar = stats("dp2")
print(f"| GPUs | tokens/s | scaling | all-reduce ms/step |\n|---|---:|---:|---:|\n| 1 | {t1:.0f} | 1.00x | - |\n| 2 | {t2:.0f} | {t2/t1:.2f}x | {ar:.2f} |")
PY

echo "== 3. sweep throughput on GPUs"
sed 's/sets = \[ "train.steps=3" \];/sets = [ "train.steps=3", "run.device=\\"cuda\\"" ];/' configs/sweep_tiny.cfg > $LOG/sweep_gpu.cfg
grep sets $LOG/sweep_gpu.cfg
for n in 1 2; do
    s=$(date +%s.%N)
    if [ $n = 1 ]; then $B/swq sweep -c $LOG/sweep_gpu.cfg --out $LOG/sw$n > $LOG/sw$n.log 2>&1
    else "${MPI[@]}" $B/swq sweep -c $LOG/sweep_gpu.cfg --out $LOG/sw$n > $LOG/sw$n.log 2>&1; fi
    e=$(date +%s.%N)
    cells=$(grep -c . $LOG/sw$n/table.csv)
    python3 -c "print('sweep ranks=$n: %d cells in %.1f s = %.0f cells/hour' % ($cells-1, $e-$s, ($cells-1)*3600/($e-$s)))"
done
tail -3 $LOG/sw2.log
