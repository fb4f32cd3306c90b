#!/usr/bin/env bash
# exec-jail-refusal.sh - the js-executor is always jailed: where the jail cannot be built it
# refuses to start, naming the missing piece (user namespaces) and the seccomp profile that
# allows it. The jail is made impossible for real, not by a test switch: the server runs in a
# user namespace whose own limit of nested user namespaces is 0, so the zygote's
# clone(CLONE_NEWUSER) fails the way it does under a container's default seccomp profile.
. "$(dirname "$0")/../lib.sh"

if ! command -v unshare >/dev/null ||
  ! unshare --user --map-root-user sh -c 'echo 0 >/proc/sys/user/max_user_namespaces' 2>/dev/null; then
  skip "js-executor refuses to start without a jail" "cannot make a user namespace with no nested ones here"
  done_testing; exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stockade-refusal.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PORT=$(free_port)

# shellcheck disable=SC2016 # expanded by the inner shell
out=$(timeout 120 unshare --user --map-root-user sh -c \
  'echo 0 >/proc/sys/user/max_user_namespaces && exec "$0" serve --role js-executor \
     --listen "127.0.0.1:$1" --data-dir "$2"' \
  "$STOCKADE_BIN" "$PORT" "$TMP/data" 2>&1)
rc=$?
check_eq "js-executor exits with status 1 when the jail cannot be built" "$rc" 1
check_contains "it says it refuses to start" "$out" "js-executor refuses to start"
check_contains "it names the missing piece" "$out" "user namespaces are unavailable or forbidden"
check_contains "it names the seccomp profile that fixes it" "$out" "deploy/seccomp/stockade-executor.json"
check "the named profile exists" test -f "$STOCKADE_ROOT/deploy/seccomp/stockade-executor.json"
check_not_contains "it never falls back to running unjailed" "$out" "UNSANDBOXED"
if curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz"; then
  not_ok "it does not keep listening"
else
  ok "it does not keep listening"
fi

# The same setting without the refusal's cause: the code-executor may run unsandboxed only
# when told so, so by default it refuses as well.
out=$(timeout 120 unshare --user --map-root-user sh -c \
  'echo 0 >/proc/sys/user/max_user_namespaces && exec "$0" serve --role code-executor \
     --listen "127.0.0.1:$1" --data-dir "$2"' \
  "$STOCKADE_BIN" "$PORT" "$TMP/data2" 2>&1)
rc=$?
check_eq "code-executor (jailed by default) also exits with status 1" "$rc" 1
check_contains "and names the missing piece" "$out" "user namespaces are unavailable or forbidden"
done_testing
