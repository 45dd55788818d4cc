#!/usr/bin/env bash
# Data-parallel training: 2 MPI ranks give the same parameters after k steps as 1 rank with the
# same global batch (fp32 summation-order tolerance); a different run does not (control);
# ranks with different configs are refused at start-up by rank 0, all exiting non-zero.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CFG=configs/sweep_tiny_base.cfg
SET=(--set train.steps=5 --set train.batch_size=6)

"$SWQ_BIN" train -c $CFG "${SET[@]}" --out "$T/one" > "$T/one.log" 2>&1 || { cat "$T/one.log"; fail "1-rank training failed"; }
"${MPIRUN[@]}" -np 2 "$SWQ_BIN" train -c $CFG "${SET[@]}" --out "$T/two" > "$T/two.log" 2>&1 || { cat "$T/two.log"; fail "2-rank training failed"; }
grep -q "| 2 ranks" "$T/two.log" || fail "2-rank run did not report 2 ranks"
[ "$(grep -c '^swq train:' "$T/two.log")" = 1 ] || fail "more than one rank printed the header"
"$SWQ_BIN" ckpt-diff "$T/one" "$T/two" --tol 1e-5 || fail "2 ranks and 1 rank differ"
# control: a different global batch must differ, so the comparison can fail
"$SWQ_BIN" train -c $CFG --set train.steps=5 --set train.batch_size=4 --out "$T/other" > /dev/null 2>&1 || fail "control run failed"
if "$SWQ_BIN" ckpt-diff "$T/one" "$T/other" --tol 1e-5 > /dev/null; then fail "ckpt-diff did not notice a different run"; fi
# 3 ranks over a global batch of 6 (uneven shards work too)
"${MPIRUN[@]}" -np 3 "$SWQ_BIN" train -c $CFG "${SET[@]}" --out "$T/three" > "$T/three.log" 2>&1 || { cat "$T/three.log"; fail "3-rank training failed"; }
"$SWQ_BIN" ckpt-diff "$T/one" "$T/three" --tol 1e-5 || fail "3 ranks and 1 rank differ"
# only rank 0 writes: one checkpoint file, one log
[ "$(ls "$T/two/checkpoints" | grep -c '\.swqc$')" = 1 ] || fail "expected exactly one checkpoint in the 2-rank run"

# mismatched configs: rank 1 runs another seed -> clear error from rank 0, job exits non-zero
cp $CFG "$T/other.cfg"; sed -i 's/seed = 7/seed = 8/' "$T/other.cfg"
"${MPIRUN[@]}" -np 2 bash -c 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then c="$1"; else c="$2"; fi; exec "$0" train -c "$c" --out "$3"' \
    "$SWQ_BIN" "$T/other.cfg" "$CFG" "$T/mismatch" > "$T/mm.log" 2>&1 && fail "mismatched configs were accepted"
grep -q "rank 1 runs a different run config" "$T/mm.log" || { cat "$T/mm.log"; fail "no clear mismatch message"; }
[ -e "$T/mismatch/checkpoints" ] && fail "a mismatched job trained"
echo "test_dist: OK"
