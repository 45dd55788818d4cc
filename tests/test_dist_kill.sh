#!/usr/bin/env bash
# A rank killed (SIGKILL) mid-training makes the whole job exit non-zero within a bound (no
# hang), and --resume continues from the last checkpoint, losing at most one interval.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CFG=configs/sweep_tiny_base.cfg
EVERY=10
"${MPIRUN[@]}" -np 2 "$SWQ_BIN" train -c $CFG --set train.steps=100000 --set train.ckpt_every=$EVERY --set train.log_every=0 \
    --out "$T/run" > "$T/log" 2>&1 &
MP=$!
for _ in $(seq 300); do [ -s "$T/run/checkpoints/latest" ] && break; sleep 0.1; done
[ -s "$T/run/checkpoints/latest" ] || { cat "$T/log"; fail "no checkpoint after 30 s"; }
sleep 0.5
R1=$(rank_pid $MP 1) || fail "cannot find rank 1 of mpirun $MP"
t0=$(date +%s.%N)
kill -9 "$R1"
for _ in $(seq 600); do kill -0 $MP 2>/dev/null || break; sleep 0.1; done
if kill -0 $MP 2>/dev/null; then fail "job still running 60 s after rank 1 was killed (hang)"; fi
wait $MP; rc=$?; MP=
el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "job exited with $rc ${el}s after SIGKILL of rank 1"
[ "$rc" != 0 ] || fail "job exited 0 after a rank died"
awk -v e="$el" 'BEGIN { exit !(e < 30) }' || fail "job took ${el}s to exit"
last=$(tail -n 1 "$T/run/train_log.csv" | cut -d, -f1)
ck=$(basename "$(cat "$T/run/checkpoints/latest")" .swqc); ck=$((10#${ck#step_}))
echo "last logged step $last, latest checkpoint step $ck"
[ $((last - ck)) -le $EVERY ] || fail "resume would lose $((last - ck)) steps (> $EVERY)"
"${MPIRUN[@]}" -np 2 "$SWQ_BIN" train -c $CFG --set train.steps=$((ck + 3)) --set train.ckpt_every=$EVERY \
    --resume "$T/run" > "$T/log2" 2>&1 || { cat "$T/log2"; fail "resume after the kill failed"; }
grep -q "resuming from .*step_$(printf %08d $ck).swqc at step $ck" "$T/log2" || { cat "$T/log2"; fail "did not resume from step $ck"; }
[ -e "$T/run/checkpoints/step_$(printf %08d $((ck + 3))).swqc" ] || fail "resumed run did not reach step $((ck + 3))"
echo "test_dist_kill: OK"
