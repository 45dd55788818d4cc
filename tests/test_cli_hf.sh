#!/usr/bin/env bash
# swq export and model.init_from through the command line: a trained model exported as a
# Hugging Face directory, imported into a new run and exported again gives the same file
# byte for byte (import and export are exact inverses on the base weights); the import
# really replaces the random init; a directory that is not a GPT-2 checkpoint is refused; a run
# whose configs have no LoRA adapter (rank 0) trains, evaluates and exports.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CFG=$T/hf.cfg
cat > "$CFG" <<'CONF'
model = { n_layer = 1; n_head = 2; n_embd = 16; n_ctx = 224; };
data = { task = "prompt"; synthetic_articles_train = 6; synthetic_articles_eval = 2; };
train = { steps = 3; batch_size = 2; lr = 3e-3; log_every = 0; threads = 1; finetune = "full"; seed = 5; };
eval = { max_questions = 4; batch_size = 4; };
quant = { configs = ( { name = "fp32"; bits = 32; lora_rank = 2; }, { name = "4-bit"; bits = 4; lora_rank = 2; } ); };
CONF
run() { "$SWQ_BIN" "$@" > "$T/log" 2>&1 || { cat "$T/log"; return 1; }; }

run train -c "$CFG" --out "$T/a" && ok || not_ok "training"
run export --checkpoint "$T/a" --out "$T/hf_a" --mode fp32 && ok || not_ok "export"
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); sys.exit(0 if (c['n_layer'],c['n_head'],c['n_embd'],c['n_positions'],c['vocab_size'])==(1,2,16,224,257) else 1)" \
    "$T/hf_a/config.json" && ok || not_ok "config.json does not give the model's shape"
# import into a run that does not move the weights (lr 0), then export again
run train -c "$CFG" --set "model.init_from=\"$T/hf_a\"" --set train.lr=0 --set train.steps=1 --out "$T/b" && ok || not_ok "init_from a HF directory"
run export --checkpoint "$T/b" --out "$T/hf_b" --mode fp32 && ok || not_ok "export of the imported model"
cmp -s "$T/hf_a/model.safetensors" "$T/hf_b/model.safetensors" && ok || not_ok "export -> import -> export changed the weights"
# without the import the same run has other weights, so the comparison above can fail
run train -c "$CFG" --set train.lr=0 --set train.steps=1 --out "$T/c" && run export --checkpoint "$T/c" --out "$T/hf_c" --mode fp32 && ok || not_ok "control run"
cmp -s "$T/hf_a/model.safetensors" "$T/hf_c/model.safetensors" && not_ok "the control has the trained weights" || ok
# a directory that is not a GPT-2 checkpoint: one clear line naming it, non-zero exit, no run
mkdir -p "$T/nothf" && echo '{}' > "$T/nothf/config.json"
"$SWQ_BIN" train -c "$CFG" --set "model.init_from=\"$T/nothf\"" --out "$T/bad" > /dev/null 2> "$T/err" && not_ok "a bad HF directory was accepted" || ok
[ "$(wc -l < "$T/err")" = 1 ] && grep -q "nothf" "$T/err" && ok || { cat "$T/err"; not_ok "bad HF directory: no one-line error naming it"; }
[ -e "$T/bad/checkpoints" ] && not_ok "a refused import trained" || ok
# no adapter (lora_rank = 0, full fine-tune): trains and evaluates with an empty LoRA bank, and
# merge-lora of such a config exports the base weights unchanged
sed 's/lora_rank = 2;/lora_rank = 0;/g' "$CFG" > "$T/r0.cfg"
run train -c "$T/r0.cfg" --out "$T/r0" && grep -q "params + 0 LoRA" "$T/log" && ok || not_ok "training without an adapter"
run eval -c "$T/r0.cfg" --checkpoint "$T/r0" --out "$T/r0_eval" && [ -s "$T/r0_eval/table.csv" ] && ok || not_ok "eval without an adapter"
run export --checkpoint "$T/r0" --out "$T/r0_fp32" --mode fp32 && ok || not_ok "fp32 export without an adapter"
run export --checkpoint "$T/r0" --out "$T/r0_merge" --mode merge-lora --config fp32 && ok || not_ok "merge-lora export without an adapter"
# the tensor bytes after the safetensors header (its metadata names the export mode)
same_tensors() { python3 -c "import struct,sys
d = lambda p: (lambda b: b[8 + struct.unpack('<Q', b[:8])[0]:])(open(p, 'rb').read())
sys.exit(0 if d(sys.argv[1]) == d(sys.argv[2]) else 1)" "$1" "$2"; }
same_tensors "$T/r0_fp32/model.safetensors" "$T/r0_merge/model.safetensors" && ok || not_ok "merge-lora without an adapter changed the weights"
run export --checkpoint "$T/r0" --out "$T/r0_fq" --mode fake-quant --config 4-bit && ok || not_ok "fake-quant export without an adapter"
same_tensors "$T/r0_fp32/model.safetensors" "$T/r0_fq/model.safetensors" && not_ok "fake-quant 4-bit export equals fp32" || ok
summary test_cli_hf
