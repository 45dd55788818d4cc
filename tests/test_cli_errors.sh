#!/usr/bin/env bash
# Bad input through the swq command: each case must exit non-zero with exactly one line on
# stderr naming the file/key and the problem, and leave no output behind.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TINY=tests/fixtures/cli/tiny.cfg

# expect_fail NAME PATTERN OUTDIR -- command...
expect_fail() {
    local name=$1 pat=$2 out=$3; shift 3
    "$@" >"$T/stdout" 2>"$T/stderr"
    local rc=$? lines
    lines=$(wc -l <"$T/stderr")
    if [ $rc -eq 0 ]; then not_ok "$name: exit 0"; return; fi
    if [ "$lines" -ne 1 ]; then not_ok "$name: $lines lines on stderr:"; cat "$T/stderr"; return; fi
    if ! grep -q -- "$pat" "$T/stderr"; then not_ok "$name: stderr '$(cat "$T/stderr")' lacks '$pat'"; return; fi
    if [ -n "$out" ] && [ -e "$out" ]; then not_ok "$name: left $out behind"; find "$out"; return; fi
    ok
}
expect_ok() {
    local name=$1; shift
    if "$@" >"$T/stdout" 2>"$T/stderr"; then ok; else not_ok "$name:"; cat "$T/stderr"; fi
}
cfg() { printf '%s\n' "$2" >"$T/$1"; echo "$T/$1"; }

expect_fail missing-config "nope.cfg" "$T/o1" "$SWQ_BIN" train -c "$T/nope.cfg" --out "$T/o1"
c=$(cfg syntax.cfg 'model = { n_layer = = 2; };')
expect_fail malformed-config "syntax.cfg:1" "$T/o2" "$SWQ_BIN" train -c "$c" --out "$T/o2"
expect_fail unknown-key "n_layr" "$T/o3" "$SWQ_BIN" train -c $TINY --set model.n_layr=3 --out "$T/o3"
expect_fail wrong-type "train.lr" "$T/o3" "$SWQ_BIN" train -c $TINY --set train.lr='"fast"' --out "$T/o3"
c=$(cfg layer.cfg 'quant = { configs = ( { bits = 8; linears = ( { name = "h.9.mlp_in"; w = 4; } ); } ); };')
expect_fail unknown-layer "h.9.mlp_in" "$T/o4" "$SWQ_BIN" train -c "$c" --out "$T/o4"
c=$(cfg comp.cfg 'quant = { configs = ( { bits = 8; components = { ffn = 4; }; } ); };')
expect_fail unknown-component "ffn" "$T/o5" "$SWQ_BIN" train -c "$c" --out "$T/o5"
expect_fail bits-range "out of range" "$T/o6" "$SWQ_BIN" train -c $TINY --set 'quant.configs.[0].bits=40' --out "$T/o6"
expect_fail bits-range-low "out of range" "$T/o6" "$SWQ_BIN" train -c $TINY --set 'quant.configs.[0].bits=1' --out "$T/o6"
expect_fail rank-range "lora_rank=-1: -1 is out of range 0..4096" "$T/o7" "$SWQ_BIN" train -c $TINY --set 'quant.configs.[1].lora_rank=-1' --out "$T/o7"
expect_fail rank-zero-lora 'lora_rank=0: 0 (no adapter) needs train.finetune = "full"' "$T/o7" "$SWQ_BIN" train -c $TINY --set train.finetune=lora --set 'quant.configs.[1].lora_rank=0' --out "$T/o7"
printf '{"version": "1.1", "articles": []}' >"$T/notsquad.json"
expect_fail not-squad "not SQuAD layout" "$T/o8" "$SWQ_BIN" train -c $TINY --set "data.train_file=\"$T/notsquad.json\"" --out "$T/o8"
printf 'this is not json' >"$T/text.json"
expect_fail not-json "text.json" "$T/o8" "$SWQ_BIN" train -c $TINY --set "data.train_file=\"$T/text.json\"" --out "$T/o8"
expect_fail missing-data "missing.json" "$T/o8" "$SWQ_BIN" train -c $TINY --set "data.train_file=\"$T/missing.json\"" --out "$T/o8"
expect_fail unknown-option "--bogus" "" "$SWQ_BIN" train -c $TINY --bogus
expect_fail unknown-command "frobnicate" "" "$SWQ_BIN" frobnicate
# no GPU here: with the CUDA backend built, "no CUDA device"; without it, "built without"
if ! command -v nvidia-smi > /dev/null || ! nvidia-smi > /dev/null 2>&1; then
    expect_fail cuda-without-gpu "cuda" "$T/o9" "$SWQ_BIN" train -c $TINY --set 'run.device="cuda"' --out "$T/o9"
fi

# a real checkpoint to damage
expect_ok train-tiny "$SWQ_BIN" train -c $TINY --out "$T/run"
ck=$(ls "$T"/run/checkpoints/step_*.swqc | tail -1)
expect_ok eval-good "$SWQ_BIN" eval -c $TINY --checkpoint "$T/run" --out "$T/evalgood"
[ -f "$T/evalgood/table.csv" ] && [ "$(wc -l <"$T/evalgood/table.csv")" -eq 3 ] && ok || not_ok "eval table"
[ "$(grep -c '<circle class="config"' "$T/evalgood/pareto.svg" 2>/dev/null)" = 2 ] && ok || not_ok "pareto.svg with one point per config"
[ -s "$T/evalgood/predictions/8-bit.json" ] && [ -s "$T/evalgood/predictions/4-bit.json" ] && ok || not_ok "predictions per config"
size=$(stat -c %s "$ck")
head -c $((size / 2)) "$ck" >"$T/trunc.swqc"
expect_fail truncated-ckpt "trunc.swqc" "$T/e1" "$SWQ_BIN" eval -c $TINY --checkpoint "$T/trunc.swqc" --out "$T/e1"
cp "$ck" "$T/flip.swqc"
printf '\x5a' | dd of="$T/flip.swqc" bs=1 seek=$((size / 3)) conv=notrunc status=none
expect_fail flipped-byte "flip.swqc" "$T/e2" "$SWQ_BIN" eval -c $TINY --checkpoint "$T/flip.swqc" --out "$T/e2"
expect_fail other-size "checkpoint is for a model" "$T/e3" "$SWQ_BIN" eval -c $TINY --set model.n_embd=32 --checkpoint "$ck" --out "$T/e3"
expect_fail not-ckpt "not an swq checkpoint" "$T/e4" "$SWQ_BIN" eval -c $TINY --checkpoint "$TINY" --out "$T/e4"
expect_fail resume-nothing "no checkpoint" "" "$SWQ_BIN" train --resume "$T/o1"
# the damaged files did not replace the good checkpoint, and help works
expect_ok eval-still-good "$SWQ_BIN" eval --checkpoint "$ck" --out "$T/evalgood2"
expect_ok help "$SWQ_BIN" --help
expect_ok train-help "$SWQ_BIN" train --help
grep -q -- "--resume" "$T/stdout" && ok || not_ok "train --help lacks --resume"
# swq bench records the backend switches a run had (SWQ_CUDA_*), in its text and in valid JSON
BENCH=(bench --device cpu --batch 1 --seq 16 --steps 1 --warmup 0 --set model.n_layer=1 --set model.n_embd=64
       --set model.n_head=2 --set model.vocab_size=256 --json)
expect_ok bench-switches env SWQ_CUDA_FLASH_ROWS=128 'SWQ_CUDA_ODD=a"b' "$SWQ_BIN" "${BENCH[@]}"
grep -q "switches: .*SWQ_CUDA_FLASH_ROWS=128" "$T/stdout" && ok || not_ok "bench does not print its switches"
grep '^{' "$T/stdout" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if "SWQ_CUDA_FLASH_ROWS=128" in r["switches"] else 1)' \
    && ok || not_ok "bench JSON lacks its switches or does not parse"
expect_ok bench-no-switches env -i PATH="$PATH" OPENBLAS_NUM_THREADS=1 "$SWQ_BIN" "${BENCH[@]}"
grep -q "switches:" "$T/stdout" && not_ok "bench prints switches that were not set" || ok

summary test_cli_errors
