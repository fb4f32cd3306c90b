#!/usr/bin/env bash
# tests/e2e/jail-rootless.sh - the same core checks with `stockade jail` run by an
# unprivileged user (uid 65534) through user namespaces, and with --rootless as root. Without
# a writable delegated cgroup subtree the limits that need one are reported as not enforced.
. "$(dirname "$0")/../lib.sh"
if [ "$(id -u)" != 0 ]; then skip "rootless jail tests" "need root to switch to uid 65534"; done_testing; exit; fi
export STOCKADE_CGROUP_PARENT=stockade-e2e-rootless-$$
cleanup() { find /sys/fs/cgroup -maxdepth 4 -type d -name "$STOCKADE_CGROUP_PARENT" -exec rmdir {} + 2>/dev/null; }
trap cleanup EXIT
U() { (cd / && setpriv --reuid=65534 --regid=65534 --clear-groups "$STOCKADE_BIN" jail "$@"); }
report() { U --report - "$@" 2>/dev/null | tail -n 1; }

if ! U -- true 2>/dev/null; then
  skip "rootless jails" "unprivileged user namespaces are not available here"; done_testing; exit
fi
out=$(U -- /bin/sh -c 'grep -E "^(NoNewPrivs|Seccomp|CapEff):" /proc/self/status; cat /proc/self/uid_map')
check_contains "rootless: NoNewPrivs is 1" "$out" $'NoNewPrivs:\t1'
check_contains "rootless: Seccomp is 2" "$out" $'Seccomp:\t2'
check_contains "rootless: no capabilities" "$out" $'CapEff:\t0000000000000000'
check_contains "rootless: root inside is the caller outside" "$out" "65534"
out=$(U -- /bin/sh -c 'ls /proc | grep -c "^[0-9]"; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "; touch /x 2>&1')
check "rootless: only the jail's processes" test "$(echo "$out" | head -1)" -le 5
check_contains "rootless: only lo" "$out" $'\nlo\n'
check_contains "rootless: root read-only" "$out" "Read-only file system"

r=$(report --memory 32 -- true)
check_eq "rootless: program runs without cgroups" "$(json_get "$r" .status)" "ok"
check_contains "rootless: unenforced memory limit is named" "$(json_get "$r" '.warnings|join(" ")')" "memory limit not enforced"

r=$(report --time-limit 1 -- sleep 100)
check_eq "rootless: timeout" "$(json_get "$r" .status)" "timeout"
r=$(report --cpu-time 1 --time-limit 30 -- /bin/sh -c 'while :; do :; done')
check_eq "rootless: cpu timeout (RLIMIT_CPU)" "$(json_get "$r" .status)" "timeout"
check_contains "rootless: cpu in limitsHit" "$(json_get "$r" '.limitsHit|join(",")')" "cpu"
r=$(U --report - --output-limit 1000 -- yes 2>/dev/null | tail -n 1)
check_eq "rootless: output_limit" "$(json_get "$r" .status)" "output_limit"
r=$(report -- python3 -c 'import ctypes; ctypes.CDLL(None).syscall(101, 16, 1, 0, 0)')
check_eq "rootless: violation" "$(json_get "$r" .status)" "sandbox_violation"
check_eq "rootless: violation names ptrace" "$(json_get "$r" .violation.syscall)" "ptrace"
r=$(report --ro-bind /nonexistent-stockade /x -- true)
check_eq "rootless: setup error step" "$(json_get "$r" .setupError.step)" "ro-bind source"
out=$(U --ro-bind /root /r -- ls /r 2>&1)
check_contains "rootless: a bind gives no more access than the user has" "$out" "Permission denied"
mark="97$$.5"
U -- /bin/sh -c "sleep $mark & echo started" >/dev/null
sleep 0.2
check_eq "rootless: nothing outlives the jail" "$(pgrep -f "sleep $mark")" ""

# --rootless as root: the same path the unprivileged user takes (root maps to root's uid).
out=$("$STOCKADE_BIN" jail --rootless -- /bin/sh -c 'cat /proc/self/uid_map; grep CapEff /proc/self/status')
check_contains "--rootless: caller's uid mapped" "$out" "0          0          1"
check_contains "--rootless: no capabilities" "$out" $'CapEff:\t0000000000000000'
done_testing
