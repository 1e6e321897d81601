#!/usr/bin/env bash
# Runs every ctest test in a build tree and sums Criterion's per-test counts, ending with
# one line "<label>: N passed, N failed". Exit status is non-zero on any failure.
set -uo pipefail
build=${1:?build dir}
label=${2:-tests}
shift 2 || true
log="$build/test-output.log"
ctest --test-dir "$build" --output-on-failure -V -j "${RP_TEST_JOBS:-2}" "$@" >"$log" 2>&1
rc=$?
# The last "Synthesis" line of every Criterion binary carries its counts.
read -r tested passed failed crashed < <(
  grep -a 'Synthesis: Tested:' "$log" | sed 's/\x1b\[[0-9;]*m//g' |
    awk -F"Tested:|Passing:|Failing:|Crashing:" '{t+=$2; p+=$3; f+=$4; c+=$5} END {printf "%d %d %d %d\n", t, p, f, c}')
grep -aE '(Failed|\*\*\*Timeout|Not Run|Exception)' "$log" | grep -a ' Test ' | sed 's/^/  /' || true
grep -aE '^\s*[0-9]+% tests passed' "$log" || true
if [ "$rc" -ne 0 ]; then
  grep -a -E '\[FAIL\]|\[----\].*(Assertion|Crash|Timeout)|ERROR: AddressSanitizer|runtime error' "$log" | head -50
  echo "full log: $log"
fi
echo "$label: $((passed)) passed, $((failed + crashed)) failed"
exit $rc
