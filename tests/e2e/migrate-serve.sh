#!/usr/bin/env bash
# tests/e2e/migrate-serve.sh - background data migrations through a running `stockade serve`:
# the test-only canary fails in the background while the service keeps answering, /healthz and
# /api/v1/admin/migrations report it, a retry is accepted, a second retry while it runs is
# refused (409), and it ends done with /healthz healthy again.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-serve.sh"

CTLDIR=$(mktemp -d /tmp/stockade-migrate-serve.XXXXXX)
CTL=$CTLDIR/canary
trap 'stop_server >/dev/null 2>&1; _serve_cleanup; rm -rf "$CTLDIR"' EXIT
echo fail >"$CTL"

SERVE_ENV="STOCKADE_TEST_DATA_MIGRATION=$CTL"
if ! start_server; then
  not_ok "server starts"
  done_testing; exit 1
fi
ok "server starts with a data migration that will fail"

# wait_state STATE: poll the admin API (up to 60 s) until the canary is in STATE; sets STATE_NOW
# and leaves the last response in REQ_BODY.
wait_state() {
  local i
  STATE_NOW=
  for i in $(seq 1 600); do
    req GET /api/v1/admin/migrations
    STATE_NOW=$(json_get "$REQ_BODY" '.data[] | select(.name == "test-canary") | .state')
    [ "$STATE_NOW" = "$1" ] && break
    sleep 0.1
  done
}

wait_state failed
check_eq "the canary fails in the background" "$STATE_NOW" failed
check_eq "admin migrations: ok is false" "$(json_get "$REQ_BODY" .ok)" false
check_contains "admin migrations: the error is shown" \
  "$(json_get "$REQ_BODY" '.data[] | select(.name == "test-canary") | .error')" "test canary failed"
req GET /healthz
check_eq "healthz still answers 200 (the service keeps working)" "$REQ_STATUS" 200
check_contains "healthz names the failed migration" "$REQ_BODY" "test-canary"

req POST /api/v1/admin/migrations '{"migration":"test-canary"}'
check_eq "a retry naming the migration in an unknown field is 400 naming it" \
  "$REQ_STATUS $(json_get "$REQ_BODY" .error.field)" "400 migration"
# Fix the cause, but make the next run slow enough to be seen running.
echo "sleep 8000" >"$CTL"
req POST /api/v1/admin/migrations '{"name":"test-canary"}'
check_eq "retry is accepted (202)" "$REQ_STATUS" 202
wait_state running
check_eq "the retried migration runs" "$STATE_NOW" running
req POST /api/v1/admin/migrations '{"name":"test-canary"}'
check_eq "a second retry while it runs is refused (409)" "$REQ_STATUS" 409
check_contains "with a reason" "$REQ_BODY" "migration_running"
out=$("$STOCKADE_BIN" migrate retry test-canary --data-dir "$SERVER_DATA" 2>&1)
check_contains "the CLI is refused too while it runs" "$out" "is already running"
wait_state done
check_eq "it finishes done" "$STATE_NOW" done
check_eq "admin migrations: ok again" "$(json_get "$REQ_BODY" .ok)" true
req GET /healthz
check_not_contains "healthz no longer reports a failed migration" "$REQ_BODY" "data migration failed"

stop_server
check_eq "server stops cleanly" "$?" 0
done_testing
