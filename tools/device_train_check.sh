#!/bin/bash
# On the GPU machine, after `source .devdeps/env.sh` and a CUDA build of swq in $BUILD
# (default build-dev): `swq train` end to end on CUDA.
#   1. the quickstart (tiny model, generated SQuAD-layout questions, 5 CDT configs) in bf16;
#   2. pretraining of the GPT-2 124M shape on real text in bf16 (B=8, T=1024, 200 steps, an
#      evaluation every 100), with CUDA graphs on and off: per-step losses side by side.
# $E2E_DATA (default build-e2e) holds gpt2-tokenizer/ and pretrain/ (a part or more of
# ../shared/data/pretrain). Logs go to $OUT (default /tmp); runs and checkpoints to a temp dir.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build-dev}
D=${E2E_DATA:-build-e2e}
LOG=${OUT:-/tmp}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

timeout 300 "$B/swq" train -c configs/quickstart.cfg --set run.device='"cuda"' --set run.precision='"bf16"' \
    --out "$W/qs" >"$LOG/e2e_quickstart.log" 2>&1
echo "device_train_check: quickstart rc=$?"
grep -E "^\| |^step +1200" "$LOG/e2e_quickstart.log" | tail -n 8

for g in 1 0; do
    SWQ_CUDA_GRAPHS=$g timeout 300 "$B/swq" train -c configs/pretrain_124m.cfg \
        --set data.tokenizer="\"$D/gpt2-tokenizer\"" --set data.train_file="\"$D/pretrain\"" \
        --set run.device='"cuda"' --set run.precision='"bf16"' --set train.steps=200 \
        --set train.batch_size=8 --set train.eval_every=100 --set train.ckpt_every=0 \
        --set train.log_every=50 --out "$W/pt$g" >"$LOG/e2e_pretrain_graphs$g.log" 2>&1
    echo "device_train_check: pretrain (SWQ_CUDA_GRAPHS=$g) rc=$?"
    grep -E "^step|^\| |evaluated" "$LOG/e2e_pretrain_graphs$g.log" | tail -n 10
done
if [ -f "$W/pt1/train_log.csv" ] && [ -f "$W/pt0/train_log.csv" ]; then
    paste -d, <(cut -d, -f2 "$W/pt1/train_log.csv") <(cut -d, -f2 "$W/pt0/train_log.csv") |
        awk -F, 'NR > 1 { d = $1 - $2; if (d < 0) d = -d; r = d / $2; if (r > m) m = r; n++ }
                 END { printf "device_train_check: %d steps, largest relative loss difference graphs on/off %.2e\n", n, m }'
fi
