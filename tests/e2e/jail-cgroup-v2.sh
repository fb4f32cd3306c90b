#!/usr/bin/env bash
# tests/e2e/jail-cgroup-v2.sh - the cgroup v2 backend alone (STOCKADE_CGROUP_VERSION=2): a
# cgroup per jail under the parent, processes attached, the whole cgroup killed
# (cgroup.kill) and removed at the end; limits whose controller is missing on this host are
# warnings, those present are enforced. Then the v1 backend alone for comparison.
. "$(dirname "$0")/../lib.sh"
if [ "$(id -u)" != 0 ]; then skip "cgroup tests" "need root"; done_testing; exit; fi
V2=
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then V2=/sys/fs/cgroup
elif [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then V2=/sys/fs/cgroup/unified; fi
export STOCKADE_CGROUP_PARENT=stockade-e2e-v2-$$
cleanup() { find /sys/fs/cgroup -maxdepth 4 -type d -name "$STOCKADE_CGROUP_PARENT" -exec rmdir {} + 2>/dev/null; }
trap cleanup EXIT
J() { "$STOCKADE_BIN" jail "$@"; }

if [ -z "$V2" ]; then skip "cgroup v2" "no cgroup2 hierarchy mounted"; else
  own=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup); [ "$own" = / ] && own=
  base=$V2$own/$STOCKADE_CGROUP_PARENT
  ctrls=$(cat "$V2$own/cgroup.controllers" 2>/dev/null)
  STOCKADE_CGROUP_VERSION=2 J --report /tmp/v2-report-$$ --memory 64 --pids 32 -- /bin/sh -c 'sleep 977.5 & sleep 30' &
  jp=$!
  for _ in $(seq 50); do ls -d "$base"/jail-* >/dev/null 2>&1 && break; sleep 0.1; done
  cg=$(ls -d "$base"/jail-* 2>/dev/null | head -1)
  check "v2: a cgroup per jail under the parent" test -n "$cg"
  n=$(cat "$cg/cgroup.procs" 2>/dev/null | wc -l)
  check "v2: the jail's processes are in it" test "$n" -ge 3
  # end the jail from outside by killing its supervisor's child tree through cgroup.kill
  # semantics: the supervisor's wall limit is not set, so kill the program's init instead
  kill -9 "$(head -1 "$cg/cgroup.procs")" 2>/dev/null
  wait "$jp"
  check_eq "v2: background process gone" "$(pgrep -f 'sleep 977.5')" ""
  check_eq "v2: jail cgroup removed" "$(ls -d "$base"/jail-* 2>/dev/null)" ""
  r=$(cat /tmp/v2-report-$$ 2>/dev/null); rm -f /tmp/v2-report-$$
  case " $ctrls " in
    *" memory "*) ok "v2: memory controller present (enforced below)" ;;
    *) check_contains "v2: missing memory controller is a warning" "$(json_get "$r" '.warnings|join(" ")')" "memory limit not enforced" ;;
  esac
  case " $ctrls " in
    *" pids "*) ok "v2: pids controller present" ;;
    *) check_contains "v2: missing pids controller is a warning" "$(json_get "$r" '.warnings|join(" ")')" "pids limit not enforced" ;;
  esac
  r=$(STOCKADE_CGROUP_VERSION=2 J --report - --time-limit 1 -- /bin/sh -c 'sleep 976.5 & sleep 100' 2>/dev/null | tail -1)
  check_eq "v2: timeout kills the whole cgroup" "$(json_get "$r" .status)" "timeout"
  check_eq "v2: nothing survives" "$(pgrep -f 'sleep 976.5')" ""
  r=$(STOCKADE_CGROUP_VERSION=2 J --report - --cpu-time 1 --time-limit 30 -- /bin/sh -c 'while :; do :; done & while :; do :; done' 2>/dev/null | tail -1)
  check_eq "v2: cpu.stat accounting ends a multi-process spin" "$(json_get "$r" .status)" "timeout"
  case " $ctrls " in *" memory "*)
    r=$(STOCKADE_CGROUP_VERSION=2 J --report - --memory 32 -- python3 -c 'a=[]
while True: a.append(bytearray(1 << 20))' 2>/dev/null | tail -1)
    check_eq "v2: memory_limit" "$(json_get "$r" .status)" "memory_limit" ;;
  esac
fi

# v1 alone, where mounted.
if [ -d /sys/fs/cgroup/memory ] && [ "$(stat -fc %T /sys/fs/cgroup/memory)" = cgroup ]; then
  r=$(STOCKADE_CGROUP_VERSION=1 J --report - --memory 32 -- python3 -c 'a=[]
while True: a.append(bytearray(1 << 20))' 2>/dev/null | tail -1)
  check_eq "v1: memory_limit" "$(json_get "$r" .status)" "memory_limit"
  check "v1: peak memory reported" test "$(json_get "$r" .maxRssKb)" -gt 16000
  r=$(STOCKADE_CGROUP_VERSION=1 J --report - --pids 8 --time-limit 3 -- /bin/sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done; wait' 2>/dev/null | tail -1)
  check_contains "v1: pids limit hit" "$(json_get "$r" '.limitsHit|join(",")')" "pids"
  own=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ {print $3}' /proc/self/cgroup); [ "$own" = / ] && own=
  out=$(STOCKADE_CGROUP_VERSION=1 J --cpus 0.5 -- /bin/sh -c 'sleep 1' & sleep 0.5; cat /sys/fs/cgroup/cpu$own/$STOCKADE_CGROUP_PARENT/jail-*/cpu.cfs_quota_us 2>/dev/null; wait)
  check_contains "v1: cpu quota written" "$out" "50000"
  check_eq "v1: cgroups removed" "$(find /sys/fs/cgroup -mindepth 2 -maxdepth 6 -type d -path "*/$STOCKADE_CGROUP_PARENT/*" 2>/dev/null)" ""
else
  skip "cgroup v1" "no v1 memory hierarchy"
fi
done_testing
