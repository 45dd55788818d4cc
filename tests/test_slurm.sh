#!/usr/bin/env bash
# The sweep scripts on a real SLURM: start munge, slurmctld and slurmd (Debian's slurm-wlm, one
# node, non-default ports, state in a temp dir), submit slurm/sweep.sbatch (srun --mpi=pmix,
# 2 tasks) and the job-array variant with its collate step, wait with a bound, check both
# collated tables equal the one from mpirun, stop the daemons this test started.
# Installs slurm-wlm/munge when missing, as root, in CI (CI=true) or with SWQ_TEST_SLURM=1.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# on failure, also show the tail of every daemon log and job output
fail() { echo "FAIL: $*" >&2; for f in "$T"/*.log "$T"/slurm-*.out; do [ -f "$f" ] && { echo "== $f"; tail -n 20 "$f"; }; done >&2; exit 1; }
SWQ_BIN=$(readlink -f "$SWQ_BIN")
REPO=$PWD
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
    if [ "$(id -u)" = 0 ] && { [ "${CI:-}" = true ] || [ "${SWQ_TEST_SLURM:-0}" = 1 ]; }; then
        { DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge > /tmp/swq-slurm-apt.log 2>&1 ||
          { apt-get update -qq >> /tmp/swq-slurm-apt.log 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge >> /tmp/swq-slurm-apt.log 2>&1; }; } ||
            fail "apt-get install slurm-wlm munge failed (see /tmp/swq-slurm-apt.log)"
    else
        echo "SKIP test_slurm: slurm-wlm/munge not installed (as root, CI=true or SWQ_TEST_SLURM=1 installs them)"
        exit 0
    fi
fi
[ "$(id -u)" = 0 ] || { echo "SKIP test_slurm: needs root to run slurmd"; [ "${CI:-}" = true ] && exit 1; exit 0; }

chmod 755 "$T"   # slurmd reads and writes here
# a munged of our own (own key, socket, pid and log in $T), so that other munge users or a
# second run of this test on the same machine cannot interfere
test_cleanup() {   # before lib.sh removes $T
    [ -f "$T/slurmd.pid" ] && kill "$(cat "$T/slurmd.pid")" 2>/dev/null
    [ -f "$T/slurmctld.pid" ] && kill "$(cat "$T/slurmctld.pid")" 2>/dev/null
    [ -f "$T/munged.pid" ] && kill "$(cat "$T/munged.pid")" 2>/dev/null
    sleep 0.5
}
mkdir -p "$T/munge"
chmod 700 "$T/munge"
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$T/munge/munge.key"
MUNGE_SOCKET=$T/munge/munge.socket
munged --force --key-file="$T/munge/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$T/munged.pid" \
    --log-file="$T/munged.log" --seed-file="$T/munge/seed" > "$T/munged.out" 2>&1 || fail "munged did not start"

HOST=$(hostname -s)
PORT=$((20000 + ($$ % 4000) * 2))
NCPU=$(nproc)
export SLURM_CONF=$T/slurm.conf
mkdir -p "$T/state" "$T/spool"
cat > "$SLURM_CONF" <<CONF
ClusterName=swqtest
SlurmctldHost=$HOST
SlurmUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
NodeName=$HOST CPUs=$NCPU RealMemory=1000 State=UNKNOWN
PartitionName=swq Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
slurmctld || fail "slurmctld did not start"
slurmd || fail "slurmd did not start"
for _ in $(seq 100); do sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix)' && break; sleep 0.2; done
sinfo -h -o %t | grep -qE '^(idle|mix)' || fail "node not idle after 20 s: $(sinfo 2>&1)"

SW=configs/sweep_tiny.cfg
"${MPIRUN[@]}" -np 2 "$SWQ_BIN" sweep -c $SW --out "$T/mpi" > "$T/mpirun.log" 2>&1 || fail "mpirun sweep failed"

wait_job() {   # job id, bound in seconds of wall time: 0 when it completed
    local s= end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
        s=$(timeout 10 scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
        case "$s" in COMPLETED) return 0 ;; FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) echo "job $1: $s" >&2; return 1 ;; esac
        sleep 0.2
    done
    echo "job $1 still $s after $2 s" >&2
    timeout 10 scancel "$1" 2>/dev/null
    return 1
}
export SWQ_BIN
J=$(sbatch --parsable -n 2 --chdir="$REPO" --output="$T/slurm-sweep.out" slurm/sweep.sbatch $SW "$T/slurm") || fail "sbatch failed"
wait_job "$J" 300 || fail "sweep job $J did not complete"
cmp "$T/mpi/table.csv" "$T/slurm/table.csv" || fail "table from sbatch differs from mpirun's"
grep -q '"rank":1' "$T/slurm/journal.jsonl" || fail "srun started no worker rank"

A=$(sbatch --parsable --array=0-1 --chdir="$REPO" --output="$T/slurm-array-%a.out" slurm/sweep_array.sbatch $SW "$T/array") || fail "sbatch --array failed"
C=$(sbatch --parsable --dependency=afterany:$A --chdir="$REPO" --output="$T/slurm-collate.out" slurm/sweep_collate.sbatch $SW "$T/array") || fail "sbatch collate failed"
wait_job "$C" 300 || fail "collate job $C did not complete"
cmp "$T/mpi/table.csv" "$T/array/table.csv" || fail "job-array table differs from mpirun's"
echo "test_slurm: OK (sweep job $J, array $A + collate $C)"
