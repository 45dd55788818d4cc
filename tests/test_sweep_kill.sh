#!/usr/bin/env bash
# A worker killed (SIGKILL) mid-sweep: the job ends non-zero within a bound, the journal keeps
# the finished cells, no orphan cell process survives, and a re-launch finishes the sweep with
# the same table as an uninterrupted run.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cat > "$T/sw.cfg" <<CFG
base = "configs/sweep_tiny_base.cfg";
sets = [ "train.steps=60" ];
axes = ( { name = "beta"; values = [0.0, 0.5, 1.0, 2.0, 4.0]; } );
CFG
"$SWQ_BIN" sweep -c "$T/sw.cfg" --out "$T/ref" > "$T/ref.log" 2>&1 || { cat "$T/ref.log"; fail "reference sweep failed"; }

"${MPIRUN[@]}" -np 2 "$SWQ_BIN" sweep -c "$T/sw.cfg" --out "$T/run" > "$T/run.log" 2>&1 &
MP=$!
for _ in $(seq 600); do [ "$(cat "$T/run/journal.jsonl" 2>/dev/null | wc -l)" -ge 2 ] && break; sleep 0.05; done
[ "$(wc -l < "$T/run/journal.jsonl")" -ge 2 ] || fail "no cell finished within 30 s"
R1=$(rank_pid $MP 1) || fail "cannot find the worker"
kill -9 "$R1"
for _ in $(seq 600); do kill -0 $MP 2>/dev/null || break; sleep 0.1; done
kill -0 $MP 2>/dev/null && fail "sweep still running 60 s after its worker died"
wait $MP; rc=$?; MP=
[ "$rc" != 0 ] || fail "sweep exited 0 after a worker died"
kept=$(($(wc -l < "$T/run/journal.jsonl") - 1))
echo "sweep exited $rc after the worker died; journal kept $kept finished cell(s)"
[ "$kept" -ge 1 ] && [ "$kept" -lt 5 ] || fail "journal kept $kept cells"
sleep 1
pgrep -f "$T/run/cells" > /dev/null && fail "a cell process outlived its rank"
"${MPIRUN[@]}" -np 2 "$SWQ_BIN" sweep -c "$T/sw.cfg" --out "$T/run" > "$T/re.log" 2>&1 || { cat "$T/re.log"; fail "re-launch failed"; }
grep -q "5 cells, $kept finished before" "$T/re.log" || { cat "$T/re.log"; fail "re-launch did not skip the journaled cells"; }
cmp "$T/ref/table.csv" "$T/run/table.csv" || fail "table after the re-launch differs from an uninterrupted run"
echo "test_sweep_kill: OK"
