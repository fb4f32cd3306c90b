#!/usr/bin/env bash
# tests/e2e/sandbox-state.sh - the agent sandbox's records in the state store, end to end with
# real runsc, once on SQLite and once on a private Postgres (tests/pg.sh): sandbox and snapshot
# rows, snapshot listing (per user, per sandbox), ownership (404), delete (object removed,
# restore refused; a delete racing a restore leaves it whole or 404, never half-read), `kill -9`
# of the service with one sandbox's runtime killed meanwhile -> running and paused sandboxes
# re-adopted (workspace and sealed env intact), the dead one marked lost with no directory,
# container, mount or cgroup left, every snapshot still there. On the SQLite round also
# scaling.maxConcurrentCreates -> 429 with Retry-After.
. "$(dirname "$0")/sandbox-lib.bash"
. "$STOCKADE_ROOT/tests/pg.sh"

if ! why=$(sbx_can_run); then
  skip "agent sandbox state e2e" "$why"; rm -rf "$SBX_D"; done_testing; exit 0
fi
HAVE_PG=0
if pg_available && pg_start; then HAVE_PG=1; fi
trap 'sbx_cleanup; [ "$HAVE_PG" = 1 ] && pg_stop' EXIT

# sql QUERY: rows of the store ('|' between columns); table names through $T_SB / $T_SNAP.
sql() {
  if [ "$BACKEND" = sqlite ]; then
    sqlite3 "$SBX_D/data/stockade.db" "$1"
  else
    psql "$PG_CONNINFO" -At -c "$1"
  fi
}

leftovers() { # ID: what the host still holds for that sandbox
  local id=$1 n=0
  [ -e "$SBX_STATE/sb/$id" ] && { echo "directory"; n=1; }
  runsc --root "$SBX_STATE/runsc" list -quiet 2>/dev/null | grep -q "$id" && { echo "container"; n=1; }
  grep -q "$SBX_STATE/sb/$id" /proc/mounts && { echo "mount"; n=1; }
  ls -d /sys/fs/cgroup/*/stockade/"$id" /sys/fs/cgroup/stockade/"$id" >/dev/null 2>&1 && { echo "cgroup"; n=1; }
  [ "$n" = 0 ] && echo none
}

round() {
  BACKEND=$1
  local b=$BACKEND
  if [ "$b" = sqlite ]; then T_SB=agent_executor_sandboxes; T_SNAP=agent_executor_snapshots
  else T_SB=agent_executor.sandboxes; T_SNAP=agent_executor.snapshots; fi
  echo "# t=${SECONDS}s $b"
  rm -rf "$SBX_D/data" "$SBX_D/blobs" "$SBX_D/keys"
  sbx_config "    scaling: {prewarmPoolSize: 0, maxTotalJobs: 8, maxConcurrentCreates: 1, perUserSandboxLimit: 5}" \
    "workspaceSizeMb: 64, memoryMb: 256"
  if [ "$b" = postgres ]; then
    printf 'postgresql: {host: 127.0.0.1, port: %s, user: postgres, db: postgres}\n' "$PG_PORT" >>"$SBX_D/cfg.yaml"
  fi
  sbx_start || { not_ok "$b: service starts"; return; }
  ok "$b: service starts"
  out=$("$STOCKADE_BIN" migrate status --config "$SBX_D/cfg.yaml" --namespace agent_executor --json 2>/dev/null)
  check_eq "$b: migrate status sees the agent_sandbox schema" \
    "$(json_get "$out" '[.schema[] | select(.component == "agent_sandbox") | .name] | join(",")')" \
    "create-sandboxes,create-snapshots"

  create '{"env":{"SECRET_X":"s3cr3t-value"}}' || not_ok "$b: create A"
  local A=$SBX_ID
  create || not_ok "$b: create P"
  local P=$SBX_ID
  create '{"network":{"allowEgress":true}}' || not_ok "$b: create L"
  local L=$SBX_ID
  api PUT "/api/v1/sandboxes/$A/files?path=keep.txt" --data-binary "survives" >/dev/null
  api PUT "/api/v1/sandboxes/$L/files?path=l.txt" --data-binary "from L" >/dev/null
  local out S1 S2
  out=$(api POST "/api/v1/sandboxes/$A/snapshots")
  check_eq "$b: snapshot of A: 201" "$(status)" 201
  S1=$(json_get "$out" .id)
  check_eq "$b: snapshot reply has the object's sha256" "$(json_get "$out" '.sha256 | length')" 64
  out=$(api POST "/api/v1/sandboxes/$L/snapshots")
  S2=$(json_get "$out" .id)

  # The records.
  check_eq "$b: sandbox row: owner and state" "$(sql "SELECT owner || ' ' || state FROM $T_SB WHERE id = '$A'")" "token-1 running"
  check_eq "$b: sandbox row: limits and runtime" "$(sql "SELECT runtime || ' ' || memory_bytes || ' ' || workspace_bytes || ' ' || allow_egress FROM $T_SB WHERE id = '$L'")" "gvisor 268435456 67108864 1"
  check_eq "$b: env is sealed in the store" "$(sql "SELECT env_sealed FROM $T_SB WHERE id = '$A'")" 1
  check_not_contains "$b: no env value in the clear" "$(sql "SELECT env FROM $T_SB WHERE id = '$A'")" "s3cr3t"
  check_eq "$b: snapshot rows" "$(sql "SELECT sandbox_id || ' ' || state || ' ' || cipher FROM $T_SNAP WHERE id = '$S1'")" "$A ready aes-256-gcm-stream-v2"

  # Listing and ownership.
  out=$(api GET /api/v1/snapshots)
  check_eq "$b: list: both snapshots, newest first" "$(json_get "$out" '[.snapshots[].id] | join(",")')" "$S2,$S1"
  out=$(api GET "/api/v1/snapshots?sandboxId=$A")
  check_eq "$b: list ?sandboxId=" "$(json_get "$out" '[.snapshots[].id] | join(",")')" "$S1"
  out=$(api GET "/api/v1/sandboxes/$L/snapshots")
  check_eq "$b: list per sandbox" "$(json_get "$out" '[.snapshots[] | .id + " " + .sandboxId] | join(",")')" "$S2 $L"
  out=$(api GET "/api/v1/snapshots/$S1")
  check_eq "$b: get snapshot" "$(json_get "$out" .sandboxId)" "$A"
  out=$(SBX_TOKEN=$TOKB api GET /api/v1/snapshots)
  check_eq "$b: another principal's list is empty" "$(json_get "$out" '.snapshots | length')" 0
  SBX_TOKEN=$TOKB api GET "/api/v1/snapshots/$S1" >/dev/null
  check_eq "$b: another principal's snapshot: 404" "$(status)" 404
  SBX_TOKEN=$TOKB api DELETE "/api/v1/snapshots/$S1" >/dev/null
  check_eq "$b: another principal cannot delete it: 404" "$(status)" 404
  SBX_TOKEN=$TOKB api GET "/api/v1/sandboxes/$A/snapshots" >/dev/null
  check_eq "$b: another principal's sandbox snapshot list: 404" "$(status)" 404

  if [ "$b" = sqlite ]; then
    # maxConcurrentCreates is 1 and the pool is empty: of three creates at once, the ones
    # arriving while the first boots are refused with 429 and Retry-After.
    local i pids=""
    for i in 1 2 3; do
      curl -s -D "$SBX_D/h$i" -o "$SBX_D/c$i" -X POST -H "Authorization: Bearer $TOKB" \
        "$SBX_U/api/v1/sandboxes" -d '{}' &
      pids="$pids $!"
    done
    wait $pids
    local n429=0 hdr=""
    for i in 1 2 3; do
      if head -1 "$SBX_D/h$i" | grep -q ' 429'; then
        n429=$((n429 + 1)); hdr=$(cat "$SBX_D/h$i" "$SBX_D/c$i")
      else
        id=$(json_get "$(cat "$SBX_D/c$i")" .id)
        [ -n "$id" ] && SBX_TOKEN=$TOKB api DELETE "/api/v1/sandboxes/$id" >/dev/null
      fi
    done
    check "maxConcurrentCreates: concurrent creates get 429" test "$n429" -ge 1
    check_contains "maxConcurrentCreates: Retry-After" "$hdr" "Retry-After:"
    check_contains "maxConcurrentCreates: the limit is named" "$hdr" "maxConcurrentCreates"
  fi

  api POST "/api/v1/sandboxes/$P/pause" >/dev/null
  check_eq "$b: paused recorded" "$(sql "SELECT state FROM $T_SB WHERE id = '$P'")" paused

  # kill -9, and L's runtime dies while the service is down.
  kill -9 "$SBX_PID"; wait "$SBX_PID" 2>/dev/null; SBX_PID=
  runsc --root "$SBX_STATE/runsc" kill "$L" KILL >/dev/null 2>&1
  sleep 0.5
  sbx_start || { not_ok "$b: restart"; return; }
  out=$(run "$A" cat '["keep.txt"]')
  check_eq "$b: A re-adopted: workspace intact" "$(json_get "$out" .stdout)" "survives"
  out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"sh","args":["-c","echo $SECRET_X"]}')
  check_eq "$b: A re-adopted: env from the sealed record" "$(json_get "$out" .stdout)" "s3cr3t-value"
  out=$(api GET "/api/v1/sandboxes/$P")
  check_eq "$b: P re-adopted paused" "$(json_get "$out" .state)" paused
  api POST "/api/v1/sandboxes/$P/resume" >/dev/null
  out=$(run "$P" echo '["resumed"]')
  check_eq "$b: P resumes after the restart" "$(json_get "$out" .stdout)" "resumed"
  api GET "/api/v1/sandboxes/$L" >/dev/null
  check_eq "$b: L (runtime died) is gone: 404" "$(status)" 404
  check_eq "$b: L marked lost in the store" "$(sql "SELECT state FROM $T_SB WHERE id = '$L' AND ended_at IS NOT NULL")" lost
  check_eq "$b: L left nothing on the host" "$(leftovers "$L")" none
  check_contains "$b: L's loss logged" "$(cat "$SBX_D/serve.log")" "sandbox '$L' lost"
  out=$(api GET /api/v1/snapshots)
  check_eq "$b: every snapshot survives the restart" "$(json_get "$out" '[.snapshots[].id] | join(",")')" "$S2,$S1"
  out=$(api GET "/api/v1/sandboxes/$L/snapshots")
  check_eq "$b: a lost sandbox's snapshots are still listed" "$(json_get "$out" '[.snapshots[].id] | join(",")')" "$S2"
  create "{\"fromSnapshot\":\"$S2\"}" || not_ok "$b: restore S2"
  local R=$SBX_ID
  out=$(run "$R" cat '["l.txt"]')
  check_eq "$b: restore of the lost sandbox's snapshot" "$(json_get "$out" .stdout)" "from L"

  # Delete.
  api DELETE "/api/v1/snapshots/$S1" >/dev/null
  check_eq "$b: delete snapshot: 200" "$(status)" 200
  check_eq "$b: its object is gone" "$(find "$SBX_D/blobs" -name "$S1*" | wc -l)" 0
  check_eq "$b: its row is gone" "$(sql "SELECT count(*) FROM $T_SNAP WHERE id = '$S1'")" 0
  api GET "/api/v1/snapshots/$S1" >/dev/null
  check_eq "$b: deleted snapshot: 404" "$(status)" 404
  api POST /api/v1/sandboxes -d "{\"fromSnapshot\":\"$S1\"}" >/dev/null
  check_eq "$b: restore of a deleted snapshot: 404" "$(status)" 404
  api DELETE "/api/v1/snapshots/$S1" >/dev/null
  check_eq "$b: deleting it again: 404" "$(status)" 404
  out=$(api GET /api/v1/snapshots)
  check_eq "$b: list after delete" "$(json_get "$out" '[.snapshots[].id] | join(",")')" "$S2"

  # Delete while a restore reads it: the delete succeeds; the restore either completes with the
  # whole content (it started first) or finds no snapshot (404), never a half-read object.
  head -c 40000000 /dev/urandom >"$SBX_D/big.bin"
  api PUT "/api/v1/sandboxes/$A/files?path=big.bin" --data-binary @"$SBX_D/big.bin" >/dev/null
  out=$(api POST "/api/v1/sandboxes/$A/snapshots")
  local S3 rpid rcode R3
  S3=$(json_get "$out" .id)
  curl -s -o "$SBX_D/r3" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKA" \
    "$SBX_U/api/v1/sandboxes" -d "{\"fromSnapshot\":\"$S3\"}" >"$SBX_D/r3code" &
  rpid=$!
  sleep 0.2
  api DELETE "/api/v1/snapshots/$S3" >/dev/null
  check_eq "$b: delete during a restore: 200" "$(status)" 200
  wait "$rpid"
  rcode=$(cat "$SBX_D/r3code")
  if [ "$rcode" = 201 ]; then
    R3=$(json_get "$(cat "$SBX_D/r3")" .id)
    out=$(run "$R3" md5sum '["big.bin"]')
    check_eq "$b: the restore that was reading completed with the whole content" \
      "$(json_get "$out" .stdout | cut -d' ' -f1)" "$(md5sum <"$SBX_D/big.bin" | cut -d' ' -f1)"
    api DELETE "/api/v1/sandboxes/$R3" >/dev/null
  else
    check_eq "$b: a restore that came after the delete: 404" "$rcode" 404
  fi
  check_eq "$b: the deleted snapshot's object is gone" "$(find "$SBX_D/blobs" -name "$S3*" | wc -l)" 0
  check_eq "$b: no snapshot row left half-way" "$(sql "SELECT count(*) FROM $T_SNAP WHERE state <> 'ready'")" 0

  for id in "$A" "$P" "$R"; do api DELETE "/api/v1/sandboxes/$id" >/dev/null; done
  check_eq "$b: destroyed recorded" "$(sql "SELECT state FROM $T_SB WHERE id = '$A'")" destroyed
  check_eq "$b: no open rows left" "$(sql "SELECT count(*) FROM $T_SB WHERE ended_at IS NULL")" 0
  sbx_stop
  check_eq "$b: no container left" "$(runsc --root "$SBX_STATE/runsc" list -quiet 2>/dev/null | grep -c '^sb-')" 0
  check_eq "$b: no mount left" "$(grep -c "$SBX_STATE/sb/" /proc/mounts)" 0
}

round sqlite
if [ "$HAVE_PG" = 1 ]; then
  round postgres
else
  skip "postgres round" "no postgres server binaries"
fi
done_testing
