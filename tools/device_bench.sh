#!/bin/bash
# On the GPU machine, from the checkout's root, after `source .devdeps/env.sh` and the CMake
# build of swq in $BUILD (default build-dev, built with SWQ_CUDA=ON):
#   tools/device_bench.sh [check|flash|lazy|copies|sanitize|bench|peer|table|all]   (default all)
#   check     cuda/tools/cuda_step_check: whole CDT steps, CPU against CUDA, every precision (and
#             with the switches' non-default paths)
#   flash     flash attention's block shapes (SWQ_CUDA_FLASH_ROWS/KEYS): checked, timed, and the
#             pretraining and CDT steps timed with each
#   lazy      the head's output left padded for xent_kl (default; SWQ_CUDA_LAZY_HEAD=0 packs it): op checks, and
#             plain training timed with it and without
#   copies    bf16 cached weights as reals with kept copies (default) against codes: losses, time, memory
#   sanitize  compute-sanitizer memcheck on a short step check
#   bench     swq bench at the peer's settings (and plain bf16 training for MFU)
#   peer      the peer, $PEER (default build-peer/torch_cdt_bench.py, a copy of
#             shared/peer/torch_cdt_bench.py), eager and --compile, LM and span QA
#   table     the comparison table of the JSON lines in $LOG (ratios written as N.Nx peer)
# Logs (and bench.jsonl) go to $OUT when set. Each part is time-limited, so one slow part
# does not hide the others.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build-dev}
LOG=${OUT:-$B/bench-logs}
PEER=${PEER:-build-peer/torch_cdt_bench.py}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-16}
mkdir -p "$LOG"
J="$LOG/bench.jsonl"

build_check() {
    [ -x "$B/cuda_step_check" ] && [ "$B/cuda_step_check" -nt cuda/tools/cuda_step_check.c ] && return 0
    local cudalib=${CUDA_HOME:-/usr/local/cuda}/lib64
    gcc -std=c11 -O2 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -I. cuda/tools/cuda_step_check.c \
        "$B/libswq_core.a" "$B/libswq_cuda.a" -L"$cudalib" -lcublasLt -lcublas -lcudart -lopenblas -lstdc++ -lm -lpthread \
        -ldl -lrt -o "$B/cuda_step_check"
}

check() {
    build_check || { echo "device_bench: cannot build cuda_step_check"; return 1; }
    # every variant, the 124M ones too, for the issue's 20 steps; one precision a run (each ~3 min on an H100)
    local p
    for p in fp32 tf32 bf16; do
        timeout ${CHECK_TIMEOUT:-400} "$B/cuda_step_check" --precision $p ${CHECK_ARGS:---steps 20 --bt-124m 1:32} \
            2>&1 | tee "$LOG/step_check_$p.log" | grep -E "^==|FAIL|worst|cuda_step_check|\(.*s\)"
    done
    echo "== fp32 and tf32 linears in the CPU reference's order (SWQ_CUDA_F32_FUSE=0 SWQ_CUDA_LORA_GRADS=0)"
    for p in fp32 tf32; do
        SWQ_CUDA_F32_FUSE=0 SWQ_CUDA_LORA_GRADS=0 timeout ${CHECK_TIMEOUT:-400} "$B/cuda_step_check" --precision $p \
            --variants small,small-full,small-qa,124m --steps 10 --steps-124m 3 --bt-124m 1:32 \
            2>&1 | tee "$LOG/step_check_f32ref_$p.log" | grep -E "^==|FAIL|worst|cuda_step_check"
    done
    # bf16 with no room for kept operand copies: every new copy evicts the others the op in hand is
    # not using, so a copy an op still needs (or one that is a value's only form) being evicted shows
    echo "== bf16, no room for kept operand copies (SWQ_CUDA_BF16_CACHE_MB=0)"
    SWQ_CUDA_BF16_CACHE_MB=0 timeout ${CHECK_TIMEOUT:-240} "$B/cuda_step_check" --precision bf16 \
        --variants small,small-full,small-plain,small-qa,124m --steps 10 --steps-124m 4 --bt-124m 1:32 \
        2>&1 | tee "$LOG/step_check_evict.log" | grep -E "^==|FAIL|worst|cuda_step_check"
    echo "== bf16, the head's output packed before xent_kl (SWQ_CUDA_LAZY_HEAD=0; left padded is the default)"
    SWQ_CUDA_LAZY_HEAD=0 timeout ${CHECK_TIMEOUT:-240} "$B/cuda_step_check" --precision bf16 \
        --variants 124m-plain --steps-124m 3 --bt-124m 1:64 \
        2>&1 | tee "$LOG/step_check_lazy.log" | grep -E "^==|FAIL|worst|cuda_step_check"
    echo "== bf16, cached weights as codes expanded before each use (SWQ_CUDA_WEIGHT_COPIES=0; kept copies are the default)"
    SWQ_CUDA_WEIGHT_COPIES=0 timeout ${CHECK_TIMEOUT:-240} "$B/cuda_step_check" --precision bf16 \
        --variants small,small-act8,small-qa,124m --steps 10 --steps-124m 3 --bt-124m 1:64 \
        2>&1 | tee "$LOG/step_check_copies.log" | grep -E "^==|FAIL|worst|cuda_step_check"
    echo "== bf16, the body's linears by the [w ; A] GEMM and fused pass (SWQ_CUDA_BODY_KEXT=0; one K-extended GEMM is the default)"
    SWQ_CUDA_BODY_KEXT=0 timeout ${CHECK_TIMEOUT:-240} "$B/cuda_step_check" --precision bf16 \
        --variants small,small-qa,124m --steps 10 --steps-124m 3 --bt-124m 1:32 \
        2>&1 | tee "$LOG/step_check_kext0.log" | grep -E "^==|FAIL|worst|cuda_step_check"
    echo "== bf16, flash attention's forward by mma.sync (SWQ_CUDA_WGMMA=0; the TMA / wgmma kernel is the default on an H100/H200)"
    SWQ_CUDA_WGMMA=0 timeout ${CHECK_TIMEOUT:-240} "$B/cuda_step_check" --precision bf16 \
        --variants small,124m --steps 10 --steps-124m 3 --bt-124m 1:32 \
        2>&1 | tee "$LOG/step_check_wgmma0.log" | grep -E "^==|FAIL|worst|cuda_step_check"
    echo "== bf16, every layernorm as its own launch (SWQ_CUDA_LN_FUSE=0; inside the next linear's first launch is the default)"
    SWQ_CUDA_LN_FUSE=0 timeout ${CHECK_TIMEOUT:-240} "$B/cuda_step_check" --precision bf16 \
        --variants small,124m --steps 10 --steps-124m 3 --bt-124m 1:32 \
        2>&1 | tee "$LOG/step_check_lnfuse0.log" | grep -E "^==|FAIL|worst|cuda_step_check"
    local fb
    for fb in 128 64; do
        echo "== bf16, flash attention blocks of $fb query rows (forward) and $fb keys (backward)"
        SWQ_CUDA_FLASH_ROWS=$fb SWQ_CUDA_FLASH_KEYS=$fb timeout ${CHECK_TIMEOUT:-240} "$B/cuda_step_check" --precision bf16 \
            --variants small,124m --steps 10 --steps-124m 3 --bt-124m 1:160 \
            2>&1 | tee "$LOG/step_check_flash$fb.log" | grep -E "^==|FAIL|worst|cuda_step_check"
    done
}

# the head's output left padded (SWQ_CUDA_LAZY_HEAD=1, the default) against packed, alternated: plain
# training at the pretraining batch and at B=8 T=512, and the op checks with it off
lazy() {
    SWQ_CUDA_LAZY_HEAD=0 timeout 300 "$B/cuda_ops_check" --precision bf16 2>&1 | tee "$LOG/lazy_check.log" |
        grep -E "FAIL|checks failed"
    alternated SWQ_CUDA_LAZY_HEAD "0 1 0 1" "--batch 32 --seq 1024 --steps 6 --set bench.plain=1" \
        "--batch 8 --seq 512 --steps 10 --set bench.plain=1" | tee "$LOG/lazy_bench.log"
}

# swq bench --precision bf16 with the switch $1 set to each value of $2 in turn, for each argument
# string after them: time, peak memory and the losses
alternated() {
    local var=$1 vals=$2 on args
    shift 2
    for on in $vals; do
        for args in "$@"; do
            echo "$var=$on swq bench --precision bf16 $args: $(
                env "$var=$on" timeout 120 "$B/swq" bench --precision bf16 $args 2>&1 |
                grep -oE 'loss first step [0-9.]+, last [0-9.]+|step [0-9.]* ms.*GiB' | tr '\n' ' ')"
        done
    done
}

flash() {
    timeout 300 "$B/cuda_ops_check" --precision bf16 --attention 2>&1 | tee "$LOG/flash_check.log" |
        grep -E "FAIL|checks failed|flash attention blocks"
    timeout 200 "$B/cuda_ops_check" --precision bf16 --attention --time 2>&1 | tee "$LOG/flash_time.log" |
        grep -E "attention|blocks"
    local shape args
    for shape in "64 64" "128 64" "64 128" "128 128" "64 64"; do
        set -- $shape
        for args in "--batch 32 --seq 1024 --steps 6 --set bench.plain=1" "--batch 8 --seq 512 --steps 10"; do
            echo "SWQ_CUDA_FLASH_ROWS=$1 SWQ_CUDA_FLASH_KEYS=$2 swq bench --precision bf16 $args: $(
                SWQ_CUDA_FLASH_ROWS=$1 SWQ_CUDA_FLASH_KEYS=$2 timeout 120 "$B/swq" bench --precision bf16 $args 2>&1 |
                grep -o 'step [0-9.]* ms.*GiB')"
        done
    done | tee "$LOG/flash_bench.log"
}

# bf16 cached weights as reals with kept bf16 copies (default) against codes expanded before each
# use (SWQ_CUDA_WEIGHT_COPIES=0), alternated: the same losses, time and peak memory
copies() {
    SWQ_CUDA_WEIGHT_COPIES=0 timeout 300 "$B/cuda_ops_check" --precision bf16 2>&1 | tee "$LOG/copies_check.log" |
        grep -E "FAIL|checks failed"
    alternated SWQ_CUDA_WEIGHT_COPIES "1 0 1 0" "--batch 8 --seq 512 --steps 10" "--batch 2 --seq 384 --steps 10" |
        tee "$LOG/copies_bench.log"
}

sanitize() {
    build_check || return 1
    local rc=0 wc
    for wc in 1 0; do   # bf16 cached weights with kept copies (default), then as codes expanded before each use
        SWQ_CUDA_WEIGHT_COPIES=$wc timeout ${SAN_TIMEOUT:-180} compute-sanitizer --tool memcheck --leak-check full \
            --error-exitcode 3 "$B/cuda_step_check" --precision bf16 --variants small,small-qa --steps 2 \
            >"$LOG/sanitizer_copies$wc.log" 2>&1 || rc=$?
        tail -n 4 "$LOG/sanitizer_copies$wc.log"
    done
    echo "device_bench: compute-sanitizer rc=$rc"
    return $rc
}

# BENCH_SET=lean: the peer's settings, tf32, plain training, and CUDA graphs off at the headline ones
bench() {
    local args runs
    runs=("--precision bf16 --batch 8 --seq 512" "--precision fp32 --batch 2 --seq 384" "--precision tf32 --batch 2 --seq 384"
          "--precision fp32 --task qa --batch 4 --seq 384" "--precision bf16 --batch 8 --seq 512 --set bench.plain=1")
    [ "${BENCH_SET:-full}" = lean ] || runs+=("--precision bf16 --batch 2 --seq 384" \
                "--precision bf16 --batch 8 --seq 512 --set quant.qcache=0" \
                "--precision bf16 --batch 8 --seq 512 --set model.vocab_size=1024" \
                "--precision bf16 --batch 64 --seq 64")
    for args in "${runs[@]}"; do
        timeout 120 "$B/swq" bench $args --steps ${BENCH_STEPS:-10} --json 2>&1 | tee -a "$LOG/swq_bench.log" |
            grep '^{' >>"$J"
    done
    # every op of every step issued by the host (no CUDA graph replays)
    for args in "--precision bf16 --batch 8 --seq 512" "--precision fp32 --batch 2 --seq 384"; do
        SWQ_CUDA_GRAPHS=0 timeout 120 "$B/swq" bench $args --steps ${BENCH_STEPS:-10} 2>&1 |
            sed 's/^swq bench:/swq bench (SWQ_CUDA_GRAPHS=0):/' >>"$LOG/swq_bench.log"
    done
    [ "${BENCH_SET:-full}" = lean ] && { grep -v '^{' "$LOG/swq_bench.log"; return 0; }
    # the LoRA adapter merged into the weight (opt-in; default: the three products one by one)
    for args in "--precision bf16 --batch 8 --seq 512" "--precision fp32 --batch 2 --seq 384"; do
        SWQ_CUDA_LORA_MERGE=1 timeout 120 "$B/swq" bench $args --steps ${BENCH_STEPS:-10} 2>&1 |
            sed 's/^swq bench:/swq bench (SWQ_CUDA_LORA_MERGE=1):/' >>"$LOG/swq_bench.log"
    done
    # the bf16 operand copies off (limit 0: every operand converted for each GEMM, as before)
    [ "${BENCH_SET:-full}" = lean ] ||
        SWQ_CUDA_BF16_CACHE_MB=0 timeout 120 "$B/swq" bench --precision bf16 --batch 8 --seq 512 --steps ${BENCH_STEPS:-10} 2>&1 |
        sed 's/^swq bench:/swq bench (SWQ_CUDA_BF16_CACHE_MB=0):/' >>"$LOG/swq_bench.log"
    grep -v '^{' "$LOG/swq_bench.log"
    # GEMM / conversion split (every GEMM synchronized: slower than the timed steps above)
    SWQ_CUDA_PROFILE=1 timeout 120 "$B/swq" bench --precision bf16 --batch 8 --seq 512 --warmup 1 --steps 3 2>&1 |
        tee "$LOG/swq_profile.log"
    # nothing synchronized: host enqueue time against its waits, then GPU time between consecutive ops (events)
    for tl in host 1; do
        SWQ_CUDA_TIMELINE=$tl timeout 120 "$B/swq" bench --precision bf16 --batch 8 --seq 512 --steps 5 \
            >"$LOG/swq_timeline_$tl.log" 2>&1
        head -n 1 "$LOG/swq_timeline_$tl.log"
    done
}

want() { case " ${PEER_PARTS:-eager qa compile} " in *" $1 "*) return 0 ;; esac; return 1; }

peer() {
    export PYTHONUNBUFFERED=1
    # PEER_PARTS: which of eager, qa, compile to run (a part left out can come from an earlier
    # run's JSON lines in $PEER_PRIOR, on the same kind of device)
    if [ -n "${PEER_PRIOR:-}" ]; then grep '^{"peer"' "$PEER_PRIOR" >>"$J"; fi
    if want eager; then
        timeout ${PEER_TIMEOUT:-150} python3 "$PEER" --settings 8:512:bfloat16,2:384:float32 --steps 10 \
            2>"$LOG/peer_eager.err" | tee -a "$J"
    fi
    if want qa; then
        timeout ${PEER_TIMEOUT:-150} python3 "$PEER" --task qa --settings 4:384:float32 --steps 10 \
            2>"$LOG/peer_qa.err" | tee -a "$J"
    fi
    if want compile; then
        timeout ${PEER_COMPILE_TIMEOUT:-480} python3 "$PEER" --compile --settings 8:512:bfloat16,2:384:float32 \
            --steps 10 2>"$LOG/peer_compile.err" | tee -a "$J"
    fi
    return 0
}

table() {
    python3 - "$J" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def key(r):
    dt = {"bfloat16": "bf16", "float32": "fp32"}.get(r.get("dtype"), r.get("precision", r.get("dtype")))
    return (r.get("task", "lm"), r["B"], r["T"], dt)
swq = {key(r): r for r in rows if r.get("tool") == "swq-bench" and r.get("configs") == 5 and "frozen" in r.get("mode", "") and r.get("qcache", 1)
       and r.get("vocab_size", 50257) == 50257 and r.get("n_layer", 12) == 12}
peer = {}
for r in rows:
    if "peer" in r: peer.setdefault(key(r), {})[r["peer"].split("-")[1]] = r
print("| setting | swq tok/s | swq ms/step | swq TFLOP/s (MFU) | swq peak GiB | eager tok/s | vs eager | compiled tok/s | vs compiled | peer peak GiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for k, s in sorted(swq.items()):
    p = peer.get(k, {})
    e, c = p.get("eager"), p.get("compile")
    ratio = lambda q: "%.1fx peer" % (s["tok_per_s"] / q["tok_per_s"]) if q else "-"
    print("| %s B=%d T=%d %s | %.0f | %.1f | %.1f (%.1f%%) | %.2f | %s | %s | %s | %s | %s |" % (
        k[0], k[1], k[2], k[3], s["tok_per_s"], s["step_ms"], s["model_tflops"], 100 * s["mfu"], s["peak_mem_gib"],
        e["tok_per_s"] if e else "-", ratio(e), c["tok_per_s"] if c else "-", ratio(c),
        "/".join("%.2f" % q["peak_mem_gib"] for q in (e, c) if q) or "-"))
for r in rows:
    if r.get("tool") == "swq-bench" and r not in swq.values():
        print("other swq: %s %s B=%d T=%d %s vocab %s qcache %s: %.1f ms/step, %.0f tok/s, %.1f TFLOP/s, MFU %.1f%%, peak %.2f GiB" % (
            r["mode"], r["task"], r["B"], r["T"], r["precision"], r.get("vocab_size"), r.get("qcache"), r["step_ms"], r["tok_per_s"], r["model_tflops"], 100 * r["mfu"],
            r["peak_mem_gib"]))
    if "error" in r: print("peer error:", r)
EOF
}

case "${1:-all}" in
    check) check ;;
    flash) flash ;;
    lazy) lazy ;;
    copies) copies ;;
    sanitize) sanitize ;;
    bench) bench ;;
    peer) peer ;;
    table) table ;;
    all)
        rm -f "$J"
        crc=0; check || crc=$?
        src=0; sanitize || src=$?
        bench
        peer
        table | tee "$LOG/table.md"
        echo "device_bench: step check rc=$crc, sanitizer rc=$src"
        ;;
    *) echo "usage: $0 [check|flash|lazy|copies|sanitize|bench|peer|table|all]"; exit 2 ;;
esac
