#!/usr/bin/env bash
# Hostile suite, part 5: denial of service and attempts to outlive the jail. Every limit must be
# hit and reported, and nothing may survive the jail: children carry this run's tag in argv, and
# the host is searched for it after each case.
. "$(dirname "$0")/../lib.sh"
. "$STOCKADE_ROOT/tests/tools/hostile.bash"
hostile_require_jail

hits() { json_get "$J_REPORT" '(.limitsHit // []) | join(",")'; }

expect_blocked "dos: fork bomb contained by --pids 32" --pids 32 --time-limit 20 -- /hostile/dos forkbomb
check_contains "dos: fork bomb reported in limitsHit" "$(hits)" pids
check "dos: the host forks fine after the fork bomb" bash -c 'for i in 1 2 3 4 5; do /bin/true || exit 1; done'

expect_status "dos: memory balloon stopped by --memory 64 (memory_limit)" memory_limit --memory 64 --time-limit 30 -- /hostile/dos balloon
check_contains "dos: memory balloon reported in limitsHit" "$(hits)" memory

expect_blocked "dos: filling a --tmpfs of 8M stops at ENOSPC" --tmpfs /fill:8M -- /hostile/dos tmpfill /fill
bytes=$(printf '%s\n' "$J_OUT" | sed -n 's/^FILL bytes=\([0-9]*\) errno=.*/\1/p')
check "dos: no more than 8 MiB written to the 8M tmpfs (wrote ${bytes:-?})" test "${bytes:-999999999}" -le $((8 << 20))
expect_blocked "dos: filling the default /tmp stops (ENOSPC or EFBIG)" -- /hostile/dos tmpfill /tmp
check_contains "dos: /tmp fill ends with ENOSPC or EFBIG" "$(printf '%s\n' "$J_OUT" | grep '^FILL' | sed 's/ENOSPC/EFBIG/')" "errno=EFBIG"

expect_blocked "dos: one file past RLIMIT_FSIZE gets EFBIG" --tmpfs /big:256M -- /hostile/dos fsize /big
check_contains "dos: fsize limit errno" "$(printf '%s\n' "$J_OUT" | grep '^FILL')" "errno=EFBIG"

expect_status "dos: output flood capped (output_limit)" output_limit --output-limit 65536 --time-limit 30 -- /hostile/dos output
size=$(( $(wc -c <"$H_TMP/out") + $(json_get "$J_REPORT" '.stdout // ""' | wc -c) ))
check "dos: captured output stays near the cap (got $size bytes)" test "$size" -le $((65536 * 2))

expect_status "dos: sleep 100 with --time-limit 1 ends in timeout" timeout --time-limit 1 -- /hostile/dos sleep
expect_status "dos: CPU spin with --cpu-time 1 ends in timeout" timeout --cpu-time 1 --time-limit 20 -- /hostile/dos spin
check_contains "dos: CPU limit reported in limitsHit" "$(hits)" cpu
expect_status "dos: CPU spin with --time-limit 1 ends in timeout" timeout --time-limit 1 -- /hostile/dos spin
expect_status "dos: a process ignoring SIGTERM/SIGINT/SIGHUP is still killed at the limit" timeout --time-limit 1 -- /hostile/dos ignore-term "$H_TAG"

# Children left behind when the main program exits: the jail must take them down with it
# (status ok, or timeout when the jail waits for them; either way none may survive).
outlive_case() { # name variant
  jrun --time-limit 5 -- /hostile/dos "$2" "$H_TAG"
  local why=
  case "$J_STATUS" in ok | timeout) ;; *) why="status $J_STATUS" ;; esac
  local d; d=$(h_host_dirty) && why="$why $d"
  if [ -z "$why" ]; then ok "$1 ($J_STATUS)"; else not_ok "$1" "$why"; _h_diag; fi
}
outlive_case "dos: vfork and clone(CLONE_VM) children die with the jail" vfork
outlive_case "dos: setsid + double fork does not escape the jail" double-fork
outlive_case "dos: a SIGSTOPped child dies with the jail" stopped

hostile_end
done_testing
