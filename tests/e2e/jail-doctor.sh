#!/usr/bin/env bash
# tests/e2e/jail-doctor.sh - `stockade doctor`: human and JSON output name what the host
# supports and which modes work.
. "$(dirname "$0")/../lib.sh"
export STOCKADE_CGROUP_PARENT=stockade-e2e-doctor-$$
trap 'find /sys/fs/cgroup -maxdepth 4 -type d -name "$STOCKADE_CGROUP_PARENT" -exec rmdir {} + 2>/dev/null' EXIT
out=$("$STOCKADE_BIN" doctor 2>&1)
check_contains "doctor: user namespaces section" "$out" "user namespaces:"
check_contains "doctor: cgroups section" "$out" "cgroups:"
check_contains "doctor: seccomp actions" "$out" "seccomp filters"
check_contains "doctor: modes" "$out" "privileged (root"
j=$("$STOCKADE_BIN" doctor --json)
check "doctor --json is JSON" test -n "$(json_get "$j" .modes.seccomp.works)"
check_contains "doctor --json: seccomp actions read" "$(json_get "$j" .seccomp.actionsAvailable)" "errno"
check_eq "doctor --json: the git server's backend" "$(json_get "$j" .gitHttpBackend.path)" /usr/lib/git-core/git-http-backend
check_contains "doctor: git http-backend line" "$out" "git http-backend (git server"
check_eq "doctor --json: user-notify" "$(json_get "$j" .seccomp.userNotify)" "true"
if [ "$(id -u)" = 0 ]; then
  check_eq "doctor: privileged mode works as root" "$(json_get "$j" .modes.privileged.works)" "true"
  check_eq "doctor: the agent sandbox's jail runtime works as root" "$(json_get "$j" .modes.agentSandboxJail.works)" "true"
  j=$(cd / && setpriv --reuid=65534 --regid=65534 --clear-groups "$STOCKADE_BIN" doctor --json)
  check_eq "doctor as non-root: privileged mode missing" "$(json_get "$j" .modes.privileged.works)" "false"
  check_contains "doctor as non-root: a fix is given" "$(json_get "$j" .modes.privileged.fix)" "root"
  check_eq "doctor as non-root: the jail runtime is missing" "$(json_get "$j" .modes.agentSandboxJail.works)" "false"
  check_contains "doctor as non-root: the jail runtime's fix names gvisor" "$(json_get "$j" .modes.agentSandboxJail.fix)" "gvisor"
fi
"$STOCKADE_BIN" doctor --bogus 2>/dev/null
check_eq "doctor: bad option exits 2" "$?" 2
done_testing
