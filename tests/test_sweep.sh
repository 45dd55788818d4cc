#!/usr/bin/env bash
# swq sweep: 1 rank and 2 ranks give the same table (grid order); both ranks work; a re-launch
# skips journaled cells and rebuilds the same table; failing cells are recorded and marked (a
# lora_rank = 0 grid value is refused in LoRA mode only);
# bad sweep files, an oversized grid and a foreign journal are refused by rank 0 before any
# work, every rank exiting non-zero; slices + --collate give the same table.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SW=configs/sweep_tiny.cfg

"$SWQ_BIN" sweep -c $SW --out "$T/one" > "$T/one.log" 2>&1 || { cat "$T/one.log"; fail "1-rank sweep failed"; }
"${MPIRUN[@]}" -np 2 "$SWQ_BIN" sweep -c $SW --out "$T/two" > "$T/two.log" 2>&1 || { cat "$T/two.log"; fail "2-rank sweep failed"; }
cmp "$T/one/table.csv" "$T/two/table.csv" || fail "1-rank and 2-rank tables differ"
cmp "$T/one/table.md" "$T/two/table.md" || fail "1-rank and 2-rank Markdown differ"
[ "$(grep -c '<rect class="cell"' "$T/one/heatmap.svg" 2>/dev/null)" = 4 ] || fail "heatmap.svg without one rect per cell of the 2 x 2 grid"
[ "$(grep -c '"status":"ok"' "$T/two/journal.jsonl")" = 4 ] || fail "journal does not hold 4 ok cells"
grep -q '"rank":1' "$T/two/journal.jsonl" || fail "the worker (rank 1) ran no cell"
grep -q '"rank":0' "$T/two/journal.jsonl" || fail "rank 0 did not work on a 4-cell queue"
grep -q '^sweep: 4/4 cells done, 0 running, 0 failed' "$T/two.log" || fail "no final progress line"
# grid order, first axis slowest
[ "$(sed -n '2,5p' "$T/one/table.csv" | cut -d, -f3,4 | tr '\n' ' ')" = "4,0 4,1 3,0 3,1 " ] || fail "rows not in grid order"
# the 4 trained models are not all the same (the axes reach the runs)
[ "$(sed -n '2,5p' "$T/one/table.csv" | cut -d, -f5 | sort -u | wc -l)" -ge 2 ] || fail "every cell gave the same loss"

# resume: drop the last two journaled cells, re-launch with another rank count
head -n 3 "$T/two/journal.jsonl" > "$T/j" && mv "$T/j" "$T/two/journal.jsonl"
rm "$T/two/table.csv"
"${MPIRUN[@]}" -np 3 "$SWQ_BIN" sweep -c $SW --out "$T/two" > "$T/re.log" 2>&1 || { cat "$T/re.log"; fail "re-launch failed"; }
grep -q "4 cells, 2 finished before, 2 to run" "$T/re.log" || { cat "$T/re.log"; fail "re-launch did not skip finished cells"; }
cmp "$T/one/table.csv" "$T/two/table.csv" || fail "resumed table differs"

# failing cells: a refused value and a diverging run are recorded, the sweep goes on
cat > "$T/fail.cfg" <<CFG
base = "configs/sweep_tiny_base.cfg";
sets = [ "train.steps=3" ];
cells = ( [ "train.lr=1e-3" ], [ "quant.configs.[1].bits=99" ], [ "train.lr=1e30" ], [ "train.lr=2e-3" ] );
CFG
"${MPIRUN[@]}" -np 2 "$SWQ_BIN" sweep -c "$T/fail.cfg" --out "$T/fail" > "$T/fail.log" 2>&1 || { cat "$T/fail.log"; fail "sweep with failing cells did not finish"; }
grep -q '^| c0000 | 1e-3 |.*| ok |$' "$T/fail/table.md" || { cat "$T/fail/table.md"; fail "cell 0 not ok"; }
grep -q '^| c0001 |.*FAILED.*out of range' "$T/fail/table.md" || { cat "$T/fail/table.md"; fail "cell 1 not marked failed"; }
grep -q '^| c0002 |.*FAILED.*diverged' "$T/fail/table.md" || { cat "$T/fail/table.md"; fail "cell 2 (NaN loss) not marked failed"; }
grep -q '^| c0003 |.*| ok |$' "$T/fail/table.md" || fail "the sweep did not go on after failures"
grep -q "4/4 cells done, 0 running, 2 failed" "$T/fail.log" || fail "progress does not count failures"
# a grid value lora_rank = 0 goes through the run's validation: fine with finetune full, refused in LoRA mode
cat > "$T/r0.cfg" <<CFG
base = "configs/sweep_tiny_base.cfg";
sets = [ "train.steps=2" ];
axes = ( { name = "finetune"; values = [ "full", "lora" ]; }, { name = "lora_rank"; config = 1; values = [0]; } );
CFG
"$SWQ_BIN" sweep -c "$T/r0.cfg" --out "$T/r0" > "$T/r0.log" 2>&1 || { cat "$T/r0.log"; fail "rank-0 sweep did not finish"; }
grep -q '^| c0000 | full | 0 |.*| ok |$' "$T/r0/table.md" || { cat "$T/r0/table.md"; fail "rank 0 with finetune full not ok"; }
grep -q '^| c0001 | lora | 0 |.*FAILED.*nothing to train' "$T/r0/table.md" || { cat "$T/r0/table.md"; fail "rank 0 in LoRA mode not refused"; }

# bad input: clear error from rank 0 (once), every rank non-zero, no work done
bad() {   # name, expected message, sweep text [ranks]
    printf '%s\n' "$3" > "$T/$1.cfg"
    local run=("$SWQ_BIN"); [ "${4:-1}" -gt 1 ] && run=("${MPIRUN[@]}" -np "$4" "$SWQ_BIN")
    "${run[@]}" sweep -c "$T/$1.cfg" --out "$T/$1" > "$T/$1.log" 2>&1 && fail "$1: accepted"
    grep -q -- "$2" "$T/$1.log" || { cat "$T/$1.log"; fail "$1: expected '$2'"; }
    [ "$(grep -c -- "$2" "$T/$1.log")" = 1 ] || fail "$1: message printed more than once"
    [ -e "$T/$1/cells" ] && fail "$1: cells ran"
    return 0
}
B='base = "configs/sweep_tiny_base.cfg";'
bad unknown_axis "axis 'attn_bitz': unknown axis name" "$B axes = ( { name = \"attn_bitz\"; values = [4]; } );" 2
bad unknown_key "unknown key" "$B axes = ( { name = \"x\"; key = \"train.nosuch\"; values = [4]; } );"
bad no_element "has no element \[7\]" "$B axes = ( { name = \"bits\"; config = 7; values = [4]; } );"
bad empty_values "axis 'beta': values is empty" "$B axes = ( { name = \"beta\"; values = []; } );"
bad too_big "more than the limit of 3; pass --force" "$B max_cells = 3; axes = ( { name = \"beta\"; values = [0.0, 0.5, 1.0, 2.0]; } );" 2
bad no_report "no precision config named '2-bit'" "$B report = [ \"2-bit\" ]; axes = ( { name = \"beta\"; values = [0.0]; } );"
# a journal of another sweep in the output directory
"${MPIRUN[@]}" -np 2 "$SWQ_BIN" sweep -c "$T/fail.cfg" --out "$T/one" > "$T/foreign.log" 2>&1 && fail "foreign journal accepted"
grep -q "journal of a different sweep" "$T/foreign.log" || { cat "$T/foreign.log"; fail "no foreign-journal message"; }

# kind "eval": one trained switchable checkpoint evaluated with other bits for its 4-bit config
cat > "$T/ev.cfg" <<CFG
kind = "eval";
checkpoint = "$T/one/cells/c0000";
axes = ( { name = "bits"; config = 1; values = [4, 3, 2]; } );
report = [ "4-bit" ];
CFG
"$SWQ_BIN" sweep -c "$T/ev.cfg" --out "$T/ev" > "$T/ev.log" 2>&1 || { cat "$T/ev.log"; fail "eval sweep failed"; }
[ "$(grep -c '| ok |$' "$T/ev/table.md")" = 3 ] || fail "eval sweep: expected 3 ok rows"
[ "$(sed -n '2,4p' "$T/ev/table.csv" | cut -d, -f4 | sort -u | wc -l)" = 3 ] || fail "eval sweep: bits did not change the loss"

# slices (job-array tasks) then --collate give the same table
"$SWQ_BIN" sweep -c $SW --out "$T/sl" --collate > "$T/c0.log" 2>&1 && fail "collate of an empty sweep succeeded"
# a journal whose first line is not a header is refused (swq writes a new journal's header to a
# temp file and renames it into place: test_slurm's array tasks once read one before its header)
mkdir -p "$T/sl"
printf 'not a header\n' > "$T/sl/journal.bad.jsonl"
"$SWQ_BIN" sweep -c $SW --out "$T/sl" --slice 0/3 > "$T/slbad.log" 2>&1 && fail "a journal without a header accepted"
grep -q "journal.bad.jsonl: not a swq sweep journal" "$T/slbad.log" || { cat "$T/slbad.log"; fail "no message for a journal without a header"; }
rm "$T/sl/journal.bad.jsonl"
for i in 0 1 2; do "$SWQ_BIN" sweep -c $SW --out "$T/sl" --slice $i/3 > "$T/sl$i.log" 2>&1 || { cat "$T/sl$i.log"; fail "slice $i failed"; }; done
[ -s "$T/sl/journal.slice-1-of-3.jsonl" ] || fail "no slice journal"
"$SWQ_BIN" sweep -c $SW --out "$T/sl" --collate > "$T/c.log" 2>&1 || { cat "$T/c.log"; fail "collate failed"; }
cmp "$T/one/table.csv" "$T/sl/table.csv" || fail "collated table differs"
echo "test_sweep: OK"
