# tests/e2e/sandbox-lib.bash - shared setup for the agent sandbox suites (sourced, not run):
# a private state dir, generated keys, a config with small limits and timeouts, a service on a
# free port, helpers for API calls, and a cleanup that leaves no container, mount or process.
# Needs root and a working runsc; otherwise every suite skips.
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

SBX_RUNTIME=${SBX_RUNTIME:-gvisor}
SBX_D=$(mktemp -d /tmp/stk-sbx-XXXXXX)
SBX_PORT=$(free_port)
SBX_U=http://127.0.0.1:$SBX_PORT
TOKA=tokA-$RANDOM$RANDOM-0123456789abcdef
TOKB=tokB-$RANDOM$RANDOM-0123456789abcdef
SBX_PID=

sbx_can_run() {
  [ "$(id -u)" = 0 ] || { echo "not root"; return 1; }
  if [ "$SBX_RUNTIME" = jail ]; then
    "$STOCKADE_BIN" jail -- true >/dev/null 2>&1 || { echo "the jail does not work here (stockade doctor)"; return 1; }
    return 0
  fi
  command -v runsc >/dev/null || { echo "runsc not installed"; return 1; }
  return 0
}

# sbx_runtime_ids - ids of the sandboxes the runtime knows (runsc containers, jail records).
sbx_runtime_ids() {
  if [ "$SBX_RUNTIME" = jail ]; then
    for f in "$SBX_STATE"/jail/sb-*.json; do [ -e "$f" ] && basename "$f" .json; done
  else
    runsc --root "$SBX_STATE/runsc" list -quiet 2>/dev/null
  fi
}

# sbx_kill_runtime ID - kill a sandbox's runtime behind the service's back.
sbx_kill_runtime() {
  if [ "$SBX_RUNTIME" = jail ]; then
    local pid
    pid=$(jq -r .pid "$SBX_STATE/jail/$1.json" 2>/dev/null)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  else
    runsc --root "$SBX_STATE/runsc" kill "$1" KILL >/dev/null 2>&1
  fi
}

# sbx_jail_cgroups ID - the cgroup directories the jail runtime recorded for a sandbox.
sbx_jail_cgroups() { jq -r '.cgroups[]' "$SBX_STATE/jail/$1.json" 2>/dev/null; }

SBX_STATE=$SBX_D/sbx
# sbx_config [extra yaml lines for agentSandbox, indented 4] [extra keys of agentSandbox.sandbox]
sbx_config() {
  "$STOCKADE_BIN" keys generate --out "$SBX_D/keys" >/dev/null
  cat >"$SBX_D/cfg.yaml" <<EOF
listen: 127.0.0.1:$SBX_PORT
dataDir: $SBX_D/data
apiTokens: [$TOKA, $TOKB]
encryptionKey: backend-encryption-key-0123456789
jwtSecret: backend-jwt-secret-0123456789abcdef
rr:
  enabled: true
  jsExecutor: {enabled: false}
  gitServer: {enabled: false}
  blobStorage: {filesystem: {path: $SBX_D/blobs}}
  agentSandbox:
    enabled: true
    runtime: $SBX_RUNTIME
    platform: ptrace
    jwtPrivateKeyFile: $SBX_D/keys/private_key.pem
    jwtPublicKeyFile: $SBX_D/keys/public_key.pem
    encryptionKeyFile: $SBX_D/keys/encryption_key.txt
    apiSecretFile: $SBX_D/keys/api_secret.txt
    sandbox: {workspaceDir: $SBX_STATE${2:+, $2}}
${1:-}
EOF
}

sbx_start() {
  "$STOCKADE_BIN" serve --config "$SBX_D/cfg.yaml" --role agent-sandbox >>"$SBX_D/serve.log" 2>&1 &
  SBX_PID=$!
  for _ in $(seq 1 300); do
    curl -sf "$SBX_U/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$SBX_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "service did not start:"; tail -20 "$SBX_D/serve.log"
  return 1
}

sbx_stop() {
  [ -n "$SBX_PID" ] || return 0
  kill "$SBX_PID" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$SBX_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SBX_PID" 2>/dev/null
  wait "$SBX_PID" 2>/dev/null
  SBX_PID=
}

sbx_cleanup() {
  sbx_stop
  local root=$SBX_STATE/runsc
  if [ -d "$root" ]; then
    for id in $(runsc --root "$root" list -quiet 2>/dev/null); do
      runsc --root "$root" delete -force "$id" >/dev/null 2>&1
    done
  fi
  local f d
  for f in "$SBX_STATE"/jail/sb-*.json; do
    [ -e "$f" ] || continue
    for d in $(jq -r '.cgroups[]' "$f" 2>/dev/null); do
      [ -d "$d" ] || continue
      [ -e "$d/freezer.state" ] && echo THAWED >"$d/freezer.state" 2>/dev/null
      [ -e "$d/cgroup.freeze" ] && echo 0 >"$d/cgroup.freeze" 2>/dev/null
      [ -e "$d/cgroup.kill" ] && echo 1 >"$d/cgroup.kill" 2>/dev/null
      for _ in 1 2 3 4 5; do
        xargs -r kill -9 <"$d/cgroup.procs" 2>/dev/null
        [ -s "$d/cgroup.procs" ] || break
        sleep 0.1
      done
      # busy until the killed processes are reaped
      for _ in $(seq 1 30); do rmdir "$d" 2>/dev/null && break; [ -d "$d" ] || break; sleep 0.1; done
    done
  done
  grep -o "$SBX_D[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m"; done
  for c in /sys/fs/cgroup/*/stockade; do rmdir "$c" 2>/dev/null; done
  rm -rf "$SBX_D"
}

# api METHOD PATH [curl args...] -> body on stdout; status in $SBX_STATUS_FILE
SBX_STATUS_FILE=$SBX_D/status
api() {
  local m=$1 p=$2; shift 2
  curl -s -o "$SBX_D/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer ${SBX_TOKEN:-$TOKA}" \
    "$SBX_U$p" "$@" >"$SBX_STATUS_FILE"
  cat "$SBX_D/body"
}
status() { cat "$SBX_STATUS_FILE"; }

# create [json] -> sets SBX_ID and SBX_TOK
create() {
  local out body='{}'
  [ $# -gt 0 ] && body=$1
  out=$(api POST /api/v1/sandboxes -d "$body")
  SBX_ID=$(json_get "$out" .id)
  SBX_TOK=$(json_get "$out" .token)
  [ "$(status)" = 201 ] || { echo "create failed: $(status) $out" >&2; return 1; }
}

# run ID CMD ARGS-JSON -> the exec JSON
run() { api POST "/api/v1/sandboxes/$1/exec" -d "{\"cmd\":\"$2\",\"args\":${3:-[]}}"; }
# runp ID ARGS-JSON: curl through the in-sandbox proxy (NO_PROXY cleared so loopback names go
# through it too)
runp() {
  api POST "/api/v1/sandboxes/$1/exec" \
    -d "{\"cmd\":\"curl\",\"args\":$2,\"env\":{\"NO_PROXY\":\"\",\"no_proxy\":\"\"}}"
}
