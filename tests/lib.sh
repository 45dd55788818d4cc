# Shared preamble of the shell tests (sourced; cwd is the repo root):
#   SWQ_BIN   the swq binary (ctest sets it), checked to be executable
#   MPIRUN    mpirun with the flags this container needs (oversubscribe; root allowed)
#   T         a fresh temp dir, removed at exit after the test's own test_cleanup (if it
#             defines one) and after killing a background job whose pid is left in MP
#   fail MSG  one line on stderr, exit 1 (for tests that stop at the first problem)
#   ok / not_ok MSG / summary NAME   counters and the "NAME: N passed, M failed" line
set -u
SWQ_BIN=${SWQ_BIN:-$PWD/build/swq}
export OPENBLAS_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe); [ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)

fail() { echo "FAIL: $*" >&2; exit 1; }

n_pass=0; n_fail=0
ok() { n_pass=$((n_pass + 1)); }
not_ok() { echo "FAIL $*"; n_fail=$((n_fail + 1)); }
summary() { echo "$1: $n_pass passed, $n_fail failed"; [ $n_fail -eq 0 ]; }

# pid of rank $2 among the children of mpirun $1
rank_pid() {
    local p
    for p in $(pgrep -P "$1"); do
        tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return 0; }
    done
    return 1
}

MP=
T=$(mktemp -d /tmp/swq_test.XXXXXX) || fail "cannot create a temp dir"
lib_exit() {
    declare -F test_cleanup > /dev/null && test_cleanup
    [ -n "$MP" ] && kill -9 "$MP" 2>/dev/null
    rm -rf "$T"
}
trap lib_exit EXIT

[ -x "$SWQ_BIN" ] || fail "SWQ_BIN=$SWQ_BIN is not an executable"
