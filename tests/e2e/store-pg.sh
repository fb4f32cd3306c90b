#!/usr/bin/env bash
# tests/e2e/store-pg.sh - the state store against a real Postgres started here (tests/pg.sh):
# the whole store unit suite on Postgres (including a server restart in the middle and
# concurrent processes applying migrations), then `stockade migrate` against it, with several
# processes bootstrapping the same fresh schema at once.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
. "$STOCKADE_ROOT/tests/pg.sh"
: "${STOCKADE_BUILD_DIR:=$STOCKADE_ROOT/build}"

if ! pg_available; then
  skip "store on postgres" "no postgres server binaries under /usr/lib/postgresql"
  done_testing; exit 0
fi
if ! pg_start; then
  not_ok "private postgres starts"
  done_testing; exit 1
fi
ok "private postgres started on port $PG_PORT"

# A control script the unit cases use to stop/start/restart this server.
CTL=$PG_DIR/ctl.sh
cat >"$CTL" <<EOF
#!/usr/bin/env bash
PG_DIR='$PG_DIR' PG_PORT='$PG_PORT'
. '$STOCKADE_ROOT/tests/pg.sh'
PG_DIR='$PG_DIR'; PG_PORT='$PG_PORT'
case "\$1" in
  stop) _pg_as_owner "\$PG_BINDIR/pg_ctl" -D "\$PG_DIR/data" -m fast -w -t 60 stop >/dev/null ;;
  start) _pg_ctl_start ;;
  restart) pg_restart ;;
  *) exit 2 ;;
esac
EOF
chmod 0755 "$CTL"

# Re-emit the unit binaries' TAP lines as ours, prefixed with "pg: ": the store's own cases,
# and the git server's storage cases (replicas, push lease) on Postgres.
for unit in "$STOCKADE_BUILD_DIR/tests/test-store-pg" "$STOCKADE_BUILD_DIR/tests/test-git"; do
if [ -x "$unit" ]; then
  out=$(STOCKADE_TEST_PG="$PG_CONNINFO" STOCKADE_TEST_PG_CTL="$CTL" "$unit" 2>&1)
  rc=$?
  while IFS= read -r line; do
    case "$line" in
      "not ok "*) not_ok "pg: ${line#not ok * - }" ;;
      "ok "*"# SKIP"*) name=${line#ok * - }; skip "pg: ${name%% # SKIP*}" "${name#*# SKIP }" ;;
      "ok "*) ok "pg: ${line#ok * - }" ;;
    esac
  done <<<"$out"
  if [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out" | grep -v '"level":"info"' | tail -n 40 | sed 's/^/#   /'
  fi
else
  not_ok "unit binary $unit exists (run make)"
fi
done

# The CLI against Postgres: four processes bootstrap a fresh schema at the same time.
pids=()
for i in 1 2 3 4; do
  "$STOCKADE_BIN" migrate status --pg "$PG_CONNINFO" --namespace e2e_cli --json \
    >"$PG_DIR/status.$i" 2>"$PG_DIR/status.$i.err" &
  pids+=($!)
done
all_ok=1
for p in "${pids[@]}"; do wait "$p" || all_ok=0; done
check_eq "4 concurrent 'migrate status' on a fresh schema all succeed" "$all_ok" 1
[ "$all_ok" = 1 ] || cat "$PG_DIR"/status.*.err | sed 's/^/#   /'
json=$(cat "$PG_DIR/status.1")
check_eq "status reports the postgres backend" "$(json_get "$json" .backend)" postgres
check_eq "status is ok" "$(json_get "$json" .ok)" true
tables=$(psql "$PG_CONNINFO" -Atc "select string_agg(table_name, ',' order by table_name) from information_schema.tables where table_schema = 'e2e_cli'")
check_eq "bookkeeping tables live in schema e2e_cli" "$tables" "data_migrations,schema_migrations"

# Data migration failure -> retry -> done through the binary, on Postgres.
ctl=$PG_DIR/canary
echo fail >"$ctl"
out=$(STOCKADE_TEST_DATA_MIGRATION=$ctl "$STOCKADE_BIN" migrate retry test-canary --pg "$PG_CONNINFO" --namespace e2e_cli 2>&1)
check_eq "a canary told to fail makes retry exit 1" "$?" 1
check_contains "the failure is reported" "$out" "test canary failed"
json=$("$STOCKADE_BIN" migrate status --pg "$PG_CONNINFO" --namespace e2e_cli --json 2>/dev/null)
check_eq "status lists the failed migration" "$(json_get "$json" '.failed[0]')" test-canary
rm -f "$ctl"
out=$(STOCKADE_TEST_DATA_MIGRATION=$ctl "$STOCKADE_BIN" migrate retry test-canary --pg "$PG_CONNINFO" --namespace e2e_cli 2>&1)
check_eq "retry after the fix exits 0" "$?" 0
check_contains "retry says done" "$out" "done"
json=$("$STOCKADE_BIN" migrate status --pg "$PG_CONNINFO" --namespace e2e_cli --json 2>/dev/null)
check_eq "status is ok again" "$(json_get "$json" .ok)" true

# Three `stockade migrate up` processes at once apply each declared migration exactly once.
export STOCKADE_TEST_SCHEMA_MIGRATIONS=1
pids=()
for i in 1 2 3; do
  "$STOCKADE_BIN" migrate up --pg "$PG_CONNINFO" --namespace e2e_up >"$PG_DIR/up.$i" 2>"$PG_DIR/up.$i.err" &
  pids+=($!)
done
all_ok=1
for p in "${pids[@]}"; do wait "$p" || all_ok=0; done
check_eq "3 concurrent 'migrate up' all succeed" "$all_ok" 1
[ "$all_ok" = 1 ] || cat "$PG_DIR"/up.*.err | sed 's/^/#   /'
total=$(cat "$PG_DIR"/up.? | sed -n 's/^applied \([0-9]*\) .*/\1/p' | awk '{ n += $1 } END { print n + 0 }')
check_eq "together they applied 3 migrations" "$total" 3
json=$("$STOCKADE_BIN" migrate status --pg "$PG_CONNINFO" --namespace e2e_up --json 2>/dev/null)
check_eq "status: test-schema at version 3" \
  "$(json_get "$json" '[.schema[] | select(.component == "test-schema")] | length')" 3
check_eq "status: nothing pending" "$(json_get "$json" '.pending_schema | length')" 0
out=$("$STOCKADE_BIN" migrate up --pg "$PG_CONNINFO" --namespace e2e_up 2>&1)
check_eq "a later 'migrate up' is a no-op" "$out" "applied 0 schema migrations in namespace 'e2e_up'"
unset STOCKADE_TEST_SCHEMA_MIGRATIONS
check_eq "each insert happened once" \
  "$(psql "$PG_CONNINFO" -Atc "select string_agg(v::text, ',' order by v) from e2e_up.test_log")" "2,3"

# --config with a postgresql block reaches the same database (schema 'public' maps to the
# namespace's own schema).
cat >"$PG_DIR/stockade.yaml" <<EOF
dataDir: $PG_DIR
apiTokens: ["0123456789abcdef0123456789abcdef"]
postgresql:
  host: 127.0.0.1
  port: $PG_PORT
  user: postgres
  db: postgres
EOF
json=$("$STOCKADE_BIN" migrate status --config "$PG_DIR/stockade.yaml" --namespace e2e_cli --json 2>&1)
check_eq "--config uses the configured postgres" "$(json_get "$json" .backend)" postgres
check_eq "--config sees the canary's state" \
  "$(json_get "$json" '.data[] | select(.name == "test-canary") | .state')" done

dir=$PG_DIR
pg_stop
check "the private postgres is stopped and its directory removed" test ! -e "$dir"
if pgrep -f -- "[p]ostgres -D $dir/data" >/dev/null; then
  not_ok "no postgres of ours is left running"
else
  ok "no postgres of ours is left running"
fi
done_testing
