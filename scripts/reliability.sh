#!/usr/bin/env bash
# The long runs of the reliability scenarios (RELIABILITY.md), one after another on the
# real daemon. Not part of CI: it takes about an hour on a 2-core machine.
#
#   sudo scripts/reliability.sh [scenario ...]      # default: all of them
#
# Scenarios and the knobs that make them long (set any of them to change the size):
#   churn         e2e/test_churn.py                 CRIB_CHURN_CYCLES=1000
#   restart       e2e/test_restart_at_scale.py      CRIB_RESTART_PODS=200
#   disconnects   e2e/test_streaming_disconnects.py CRIB_DISCONNECTS=1000
#   failpoints    e2e/test_failpoints.py            CRIB_FAILPOINT_RUNS=3 (whole file, repeated)
#   concurrency   e2e/test_concurrency.py           CRIB_CONCURRENCY_RUNS=5 (whole file, repeated)
#   fuzz          e2e/test_fuzz_*.py                CRIB_FUZZ_EXAMPLES=100 (per RPC)
#   full-disk     e2e/test_full_disk.py
#   damaged-state e2e/test_damaged_state.py
# A scenario whose test files are absent is reported as such, not as a failure.
#
# Results go to CRIB_RELIABILITY_OUT (default reliability-results/<UTC time>): per run a
# JUnit report and the pytest output, churn.json (the churn's RSS/fd/thread samples and
# leftovers), and summary.md / summary.json, the rows RELIABILITY.md quotes. The exit
# status is 1 when any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${CRIB_PYTHON:-.venv/bin/python}
[ -x "$py" ] || { echo "reliability.sh: run scripts/install.sh first (no $py)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "reliability.sh: the e2e tests need root" >&2; exit 1; }

export CRIB_CHURN_CYCLES=${CRIB_CHURN_CYCLES:-1000}
export CRIB_RESTART_PODS=${CRIB_RESTART_PODS:-200}
export CRIB_DISCONNECTS=${CRIB_DISCONNECTS:-1000}
export CRIB_FUZZ_EXAMPLES=${CRIB_FUZZ_EXAMPLES:-100}
failpoint_runs=${CRIB_FAILPOINT_RUNS:-3}
concurrency_runs=${CRIB_CONCURRENCY_RUNS:-5}
out=${CRIB_RELIABILITY_OUT:-reliability-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export CRIB_CHURN_RESULTS="$out/churn.json"
# The tests of this checkout, whatever the venv has installed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

all=(churn restart disconnects failpoints concurrency fuzz full-disk damaged-state)
chosen=("$@")
[ ${#chosen[@]} -gt 0 ] || chosen=("${all[@]}")

# scenario name -> "runs|env shown in the command|test files (globs)"
declare -A plan=(
    [churn]="1|CRIB_CHURN_CYCLES=$CRIB_CHURN_CYCLES|e2e/test_churn.py"
    [restart]="1|CRIB_RESTART_PODS=$CRIB_RESTART_PODS|e2e/test_restart_at_scale.py"
    [disconnects]="1|CRIB_DISCONNECTS=$CRIB_DISCONNECTS|e2e/test_streaming_disconnects.py"
    [failpoints]="$failpoint_runs||e2e/test_failpoints.py"
    [concurrency]="$concurrency_runs||e2e/test_concurrency.py"
    [fuzz]="1|CRIB_FUZZ_EXAMPLES=$CRIB_FUZZ_EXAMPLES|e2e/test_fuzz_*.py"
    [full-disk]="1||e2e/test_full_disk.py"
    [damaged-state]="1||e2e/test_damaged_state.py"
)

failed=0
for name in "${chosen[@]}"; do
    [ -n "${plan[$name]+x}" ] || { echo "reliability.sh: no scenario '$name' (${all[*]})" >&2; exit 2; }
    IFS='|' read -r runs shown globs <<<"${plan[$name]}"
    # Globs that match nothing drop out: another scenario's tests may not exist yet.
    files=()
    shopt -s nullglob
    for g in $globs; do
        for f in $g; do [ -e "$f" ] && files+=("$f"); done
    done
    shopt -u nullglob
    if [ ${#files[@]} -eq 0 ]; then
        echo "== $name: absent ($globs)"
        echo "$globs" >"$out/$name.absent"
        continue
    fi
    for ((run = 1; run <= runs; run++)); do
        echo "== $name run $run/$runs: ${shown:+$shown }pytest ${files[*]}"
        # One test at a time (no -n): the churn's memory samples and the restart's recovery
        # time are cribd's alone. -s keeps what the tests print (their measurements).
        if ! "$py" -m pytest -q -s -rfEs -p no:cacheprovider --timeout="${CRIB_RELIABILITY_TIMEOUT:-7200}" \
            --junitxml="$out/$name-$run.xml" "${files[@]}" >"$out/$name-$run.log" 2>&1; then
            failed=1
            echo "   FAILED (see $out/$name-$run.log)"
        fi
        tail -n 1 "$out/$name-$run.log" | sed 's/^/   /'
    done
    printf '%s\n' "$shown" >"$out/$name.env"
    printf '%s\n' "${files[@]}" >"$out/$name.files"
done

"$py" scripts/reliability_summary.py "$out" "${chosen[@]}"
exit $failed
