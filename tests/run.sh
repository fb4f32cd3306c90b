#!/usr/bin/env bash
# tests/run.sh [unit|e2e|hostile|node|all] - runs the suite and ends with one summary line.
#
# Every test program prints TAP lines ("ok N - name", "not ok N - name", "# SKIP" suffix);
# this script counts them. A program that fails without printing "not ok" counts as one failure.
# STOCKADE_BUILD picks the build directory (build-asan in `make test`).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${STOCKADE_BUILD:-build}
export STOCKADE_ROOT=$ROOT
export STOCKADE_BUILD_DIR=$ROOT/$BUILD
export STOCKADE_BIN=$ROOT/$BUILD/stockade
export STOCKADE_AGENT_BIN=$ROOT/$BUILD/stockade-agent
export STOCKADE_HOSTILE_DIR=$ROOT/build/hostile
# Sanitizers: report and fail on UB; leaks are checked in unit tests only (long-running
# servers and forked children exit through _exit by design).
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
UNIT_ASAN=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
E2E_ASAN=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}
what=${1:-all}
LOGS=$ROOT/$BUILD/test-logs
mkdir -p "$LOGS"
PER_FILE_TIMEOUT=${STOCKADE_TEST_TIMEOUT:-900}

pass=0 fail=0 skip=0
failed_names=()

run_one() { # name, command...
  local name=$1; shift
  local log=$LOGS/$(echo "$name" | tr '/ ' '__').log
  local t0=$SECONDS
  timeout --kill-after=10 "$PER_FILE_TIMEOUT" "$@" >"$log" 2>&1 </dev/null
  local rc=$?
  local p f s
  p=$(grep -cE '^ok [0-9]+' "$log" | tr -d ' ')
  s=$(grep -cE '^ok [0-9]+.*# SKIP' "$log" | tr -d ' ')
  f=$(grep -cE '^not ok [0-9]+' "$log" | tr -d ' ')
  p=$((p - s))
  grep -E '^(not ok|ok) [0-9]+' "$log" | sed "s|^|  |"
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1
    echo "  not ok - $name exited with status $rc"
  fi
  pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
  if [ "$f" -gt 0 ]; then
    failed_names+=("$name")
    echo "  --- $name failed; last lines of $log:"
    tail -n 30 "$log" | sed 's/^/  | /'
  fi
  echo "# $name: $p passed, $f failed, $s skipped ($((SECONDS - t0))s)"
}

if [ "$what" = all ] || [ "$what" = unit ]; then
  for t in "$ROOT/$BUILD"/tests/test-*; do
    [ -x "$t" ] || continue
    ASAN_OPTIONS=$UNIT_ASAN run_one "unit/$(basename "$t")" "$t"
  done
fi
if [ "$what" = all ] || [ "$what" = e2e ]; then
  for t in "$ROOT"/tests/e2e/*.sh; do
    [ -f "$t" ] || continue
    ASAN_OPTIONS=$E2E_ASAN run_one "e2e/$(basename "$t")" bash "$t"
  done
fi
if [ "$what" = all ] || [ "$what" = hostile ]; then
  for t in "$ROOT"/tests/hostile/*.sh; do
    [ -f "$t" ] || continue
    ASAN_OPTIONS=$E2E_ASAN run_one "hostile/$(basename "$t")" bash "$t"
  done
fi
if [ "$what" = all ] || [ "$what" = node ]; then
  for t in "$ROOT"/tests/node/*.test.mjs; do
    [ -f "$t" ] || continue
    ASAN_OPTIONS=$E2E_ASAN run_one "node/$(basename "$t")" node "$t"
  done
fi

echo
if [ ${#failed_names[@]} -gt 0 ]; then
  echo "failed: ${failed_names[*]}"
fi
echo "SUMMARY: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
