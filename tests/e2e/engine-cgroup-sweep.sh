#!/usr/bin/env bash
# engine-cgroup-sweep.sh - a code-executor that starts removes the cgroups a killed
# predecessor left in the same parent ("stockade-engine-<dead pid>" and its executions'
# "x<N>"), keeps those of a live process, and a killed service's own cgroups are removed by
# the next start.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-serve.sh"

if [ "$(id -u)" != 0 ]; then
  skip "cgroup sweep" "needs root (cgroups of the test's own parent)"
  done_testing; exit 0
fi
# The parent the server will use: its own memory cgroup (v1), or its v2 cgroup.
parent=$(engine_cgroup_parent)
sh -c 'exit 0' & dead=$!
wait "$dead"
stale=$parent/stockade-engine-$dead
live=$parent/stockade-engine-$$
if ! mkdir "$stale" 2>/dev/null; then
  skip "cgroup sweep" "cannot create a cgroup under '$parent'"
  done_testing; exit 0
fi
mkdir -p "$stale/x7" "$live"

start_server --role code-executor
if [ -z "$SERVER_PID" ]; then
  if grep -q "not part of this build" "$SERVER_LOG" 2>/dev/null; then
    skip "code-executor" "the execution engine is not part of this build"
  else
    not_ok "server starts with --role code-executor"
  fi
  rmdir "$stale/x7" "$stale" "$live" 2>/dev/null
  done_testing; exit 0
fi
check "a dead service's cgroup is removed at start" test ! -d "$stale"
check "a live process's cgroup of that name stays" test -d "$live"
check_contains "the removal is logged" "$(cat "$SERVER_LOG")" "left by a service that is gone"
rmdir "$live"

# kill -9 of a service with executions in flight, then a new one cleans up after it.
exec_js 'return 1'
check_eq "an execution runs" "$(json_get "$REQ_BODY" .result)" 1
old_pid=$SERVER_PID
old_cg=$parent/stockade-engine-$old_pid
check "the service has its cgroup" test -d "$old_cg"
kill -9 "$old_pid"
wait "$old_pid" 2>/dev/null
SERVER_PID=
# Its zygotes leave when their control socket closes: wait until its cgroups hold nothing.
for _ in $(seq 1 100); do
  [ "$(find "$old_cg" -name cgroup.procs -exec cat {} + 2>/dev/null | wc -l)" = 0 ] && break
  sleep 0.1
done
start_server --role code-executor
check "the killed service's cgroup is gone after the next start" test ! -d "$old_cg"
exec_js 'return 2'
check_eq "the new service runs executions" "$(json_get "$REQ_BODY" .result)" 2
stop_server

done_testing
