#!/usr/bin/env bash
# tests/e2e/migrate-cli.sh - `stockade migrate status|retry` on the default SQLite store: usage
# errors, a background data migration that fails, is refused a retry while it runs, and
# succeeds on retry once its cause is fixed (driven by the test-only canary migration).
set -uo pipefail
. "$(dirname "$0")/../lib.sh"

D=$(mktemp -d /tmp/stockade-migrate-cli.XXXXXX)
trap 'rm -rf "$D"' EXIT
CTL=$D/canary
export STOCKADE_TEST_DATA_MIGRATION=$CTL

"$STOCKADE_BIN" migrate --help >/dev/null
check_eq "--help exits 0" "$?" 0
"$STOCKADE_BIN" migrate >/dev/null 2>&1
check_eq "no subcommand is a usage error" "$?" 2
out=$("$STOCKADE_BIN" migrate frobnicate --data-dir "$D" 2>&1)
check_eq "unknown subcommand exits 2" "$?" 2
check_contains "unknown subcommand is named" "$out" "unknown subcommand 'frobnicate'"
out=$("$STOCKADE_BIN" migrate status --data-dir "$D/missing" 2>&1)
check_eq "missing data dir exits 1" "$?" 1
check_contains "missing data dir is named" "$out" "data directory '$D/missing' does not exist"

json=$("$STOCKADE_BIN" migrate status --data-dir "$D" --json 2>/dev/null)
check_eq "status on a fresh store exits 0" "$?" 0
check_eq "backend is sqlite" "$(json_get "$json" .backend)" sqlite
check_eq "namespace defaults to stockade" "$(json_get "$json" .namespace)" stockade
check_eq "fresh store is ok" "$(json_get "$json" .ok)" true
check "the database file exists with mode 0600" test "$(stat -c %a "$D/stockade.db")" = 600

echo fail >"$CTL"
out=$("$STOCKADE_BIN" migrate retry test-canary --data-dir "$D" 2>&1)
check_eq "failing canary: retry exits 1" "$?" 1
check_contains "the failure names the cause" "$out" "test canary failed as asked"
text=$("$STOCKADE_BIN" migrate status --data-dir "$D" 2>&1)
check_contains "human status shows it failed" "$text" "test-canary"
check_contains "human status says how to resolve" "$text" "stockade migrate retry test-canary"
json=$("$STOCKADE_BIN" migrate status --data-dir "$D" --json 2>/dev/null)
check_eq "json status: ok is false" "$(json_get "$json" .ok)" false
check_eq "json status: the error is recorded" \
  "$(json_get "$json" '.data[] | select(.name == "test-canary") | .error' | grep -c 'test canary failed')" 1

# A slow, failing run in the background; a second retry while it runs is refused.
printf 'sleep 4000\nfail\n' >"$CTL"
"$STOCKADE_BIN" migrate retry test-canary --data-dir "$D" >/dev/null 2>&1 &
bg=$!
state=
for _ in $(seq 1 100); do
  state=$(json_get "$("$STOCKADE_BIN" migrate status --data-dir "$D" --json 2>/dev/null)" \
    '.data[] | select(.name == "test-canary") | .state')
  [ "$state" = running ] && break
  sleep 0.1
done
check_eq "the retried migration is running" "$state" running
out=$("$STOCKADE_BIN" migrate retry test-canary --data-dir "$D" 2>&1)
check_eq "retry while running exits 1" "$?" 1
check_contains "retry while running is refused with a reason" "$out" "is already running"
wait "$bg"
check_eq "the slow run failed (exit 1)" "$?" 1

rm -f "$CTL"
out=$("$STOCKADE_BIN" migrate retry test-canary --data-dir "$D" 2>&1)
check_eq "retry after fixing the cause exits 0" "$?" 0
check_contains "retry reports done" "$out" "data migration 'test-canary' done"
json=$("$STOCKADE_BIN" migrate status --data-dir "$D" --json 2>/dev/null)
check_eq "store is ok again" "$(json_get "$json" .ok)" true
check_eq "attempts counted" "$(json_get "$json" '.data[] | select(.name == "test-canary") | .attempts')" 3
out=$("$STOCKADE_BIN" migrate retry test-canary --data-dir "$D" 2>&1)
check_eq "retry of a done migration exits 1" "$?" 1
check_contains "and says it is done" "$out" "already done"
out=$("$STOCKADE_BIN" migrate retry nope --data-dir "$D" 2>&1)
check_contains "retry of an unknown name says so" "$out" "no data migration named 'nope'"

# --config finds the same store through dataDir.
printf 'dataDir: %s\napiTokens: ["0123456789abcdef0123456789abcdef"]\n' "$D" >"$D/stockade.yaml"
json=$("$STOCKADE_BIN" migrate status --config "$D/stockade.yaml" --json 2>/dev/null)
check_eq "--config reads the store under dataDir" \
  "$(json_get "$json" '.data[] | select(.name == "test-canary") | .state')" done
out=$("$STOCKADE_BIN" migrate status --config "$D/stockade.yaml" --data-dir "$D" 2>&1)
check_eq "two store options are a usage error" "$?" 2
# Three `stockade migrate up` processes at once apply each declared migration exactly once.
export STOCKADE_TEST_SCHEMA_MIGRATIONS=1
pids=()
for i in 1 2 3; do
  "$STOCKADE_BIN" migrate up --data-dir "$D" >"$D/up.$i" 2>"$D/up.$i.err" &
  pids+=($!)
done
all_ok=1
for p in "${pids[@]}"; do wait "$p" || all_ok=0; done
check_eq "3 concurrent 'migrate up' all succeed" "$all_ok" 1
[ "$all_ok" = 1 ] || cat "$D"/up.*.err | sed 's/^/#   /'
total=$(cat "$D"/up.? | sed -n 's/^applied \([0-9]*\) .*/\1/p' | awk '{ n += $1 } END { print n + 0 }')
check_eq "together they applied 3 migrations" "$total" 3
json=$("$STOCKADE_BIN" migrate status --data-dir "$D" --json 2>/dev/null)
check_eq "status: test-schema at version 3" \
  "$(json_get "$json" '[.schema[] | select(.component == "test-schema")] | length')" 3
check_eq "status: nothing pending" "$(json_get "$json" '.pending_schema | length')" 0
out=$("$STOCKADE_BIN" migrate up --data-dir "$D" 2>&1)
check_eq "a later 'migrate up' is a no-op" "$out" "applied 0 schema migrations in namespace 'stockade'"

# The integrity check: a released migration whose recorded checksum differs fails it with the
# reason; after the database is repaired, a retry completes it.
db=$D/stockade.db
orig=$(sqlite3 "$db" "select checksum from stockade_schema_migrations where component = 'test-schema' and version = 2")
sqlite3 "$db" "update stockade_schema_migrations set checksum = 'feedfacefeedface' where component = 'test-schema' and version = 2"
out=$("$STOCKADE_BIN" migrate retry schema-integrity-check --data-dir "$D" 2>&1)
check_eq "integrity check over an edited migration fails (exit 1)" "$?" 1
check_contains "and names it" "$out" "schema migration test-schema/2 'insert-two' was applied with checksum feedfacefeed"
sqlite3 "$db" "update stockade_schema_migrations set checksum = '$orig' where component = 'test-schema' and version = 2"
out=$("$STOCKADE_BIN" migrate retry schema-integrity-check --data-dir "$D" 2>&1)
check_eq "after the repair, retry completes it" "$?" 0
unset STOCKADE_TEST_SCHEMA_MIGRATIONS
check_eq "each insert happened once" "$(sqlite3 "$D/stockade.db" 'select group_concat(v) from stockade_test_log')" "2,3"

# Upgrade gate through the service: a failed data migration of a previous release that this
# release no longer ships keeps `stockade serve` from starting, with the way out in the message.
G=$D/gate
mkdir -p "$G"
"$STOCKADE_BIN" migrate status --data-dir "$G" >/dev/null 2>&1
sqlite3 "$G/stockade.db" "insert into stockade_data_migrations (name, state, error, attempts, created_at) values ('normalize-permissions', 'failed', 'space 42: dangling row', 2, 1)"
out=$(timeout 60 "$STOCKADE_BIN" serve --data-dir "$G" --listen 127.0.0.1:0 2>&1)
rc=$?
check_eq "serve refuses to start over a failed migration (exit 1)" "$rc" 1
check_contains "it names the migration and its error" "$out" "'normalize-permissions' (failed after 2 attempts: space 42: dangling row)"
check_contains "it says how to resolve it" "$out" "stockade migrate retry NAME"
check_contains "or roll back" "$out" "roll back"
sqlite3 "$G/stockade.db" "update stockade_data_migrations set state = 'done', error = null where name = 'normalize-permissions'"
text=$("$STOCKADE_BIN" migrate status --data-dir "$G" 2>&1)
check_not_contains "once resolved, status shows no failure" "$text" "failed;"

done_testing
