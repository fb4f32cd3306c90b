# tests/lib-serve.sh - run a real `stockade serve` for end-to-end tests (source it after lib.sh).
#
#   . "$(dirname "$0")/../lib.sh"
#   . "$(dirname "$0")/../lib-serve.sh"
#   start_server --role code-executor          # any extra `stockade serve` arguments
#   req POST /api/v1/execute '{"language":"javascript","code":"return 1+1"}'
#   check_eq "status" "$REQ_STATUS" 200
#   check_eq "result" "$(json_get "$REQ_BODY" .result)" 2
#   stop_server                                 # also done by the EXIT trap
#
# start_server picks a free loopback port, a fresh data dir and a random API token (given to
# the server through STOCKADE_API_TOKEN), waits until /healthz answers, and exports:
#   BASE_URL  http://127.0.0.1:PORT      TOKEN        the API token
#   SERVER_PID, SERVER_LOG (its stderr), SERVER_DATA (its --data-dir)
# start_role ROLE ends the test file when the server does not start; engine_cgroup_parent
# says where a started server puts its engine cgroups.
# Pass --config FILE, --role ROLE etc. as arguments. Set SERVE_ENV="VAR=value ..." to give the
# server extra environment, SERVE_DATA_DIR=DIR to reuse a data dir (restart tests).
# The server is a background job of the test shell: wait for your own jobs by pid
# (`wait "${pids[@]}"`), never with a bare `wait`, which would wait for the server too. The EXIT trap stops the server and removes the data dir.
: "${STOCKADE_BIN:?source tests/lib.sh first}"
SERVER_PID=
_serve_tmp=

_serve_cleanup() {
  stop_server >/dev/null 2>&1 || true
  # A data dir too long for socket paths keeps its sandbox state in /run/stockade/sbx-<hash>
  # (see config__default_workspace_dir); remove the ones this run's data dirs used.
  local d h
  for d in "$_serve_tmp"/data-*; do
    [ -d "$d" ] || continue
    h=$(printf '%s' "$d/sandboxes" | sha256sum | cut -c1-8)
    rm -rf "/run/stockade/sbx-$h" "/tmp/stockade/sbx-$h" 2>/dev/null
  done
  [ -n "$_serve_tmp" ] && rm -rf "$_serve_tmp"
  _serve_tmp=
}
trap _serve_cleanup EXIT

start_server() {
  [ -n "$SERVER_PID" ] && stop_server
  [ -n "$_serve_tmp" ] || _serve_tmp=$(mktemp -d "${TMPDIR:-/tmp}/stockade-e2e.XXXXXX")
  local port
  port=$(free_port)
  SERVER_DATA=${SERVE_DATA_DIR:-$_serve_tmp/data-$port}
  SERVER_LOG=$_serve_tmp/server-$port.log
  : "${TOKEN:=tok_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
  BASE_URL=http://127.0.0.1:$port
  export BASE_URL TOKEN SERVER_DATA SERVER_LOG
  # shellcheck disable=SC2086
  env STOCKADE_API_TOKEN="$TOKEN" ${SERVE_ENV:-} "$STOCKADE_BIN" serve --listen "127.0.0.1:$port" \
    --data-dir "$SERVER_DATA" "$@" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  export SERVER_PID
  local i
  for i in $(seq 1 300); do
    if curl -s -o /dev/null --max-time 1 "$BASE_URL/healthz"; then
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "# server exited during start; log:" >&2
      sed 's/^/#   /' "$SERVER_LOG" >&2
      wait "$SERVER_PID" 2>/dev/null
      SERVER_PID=
      return 1
    fi
    sleep 0.1
  done
  echo "# server did not answer /healthz within 30 s; log:" >&2
  sed 's/^/#   /' "$SERVER_LOG" >&2
  return 1
}

# stop_server [SIGNAL] - stop (default TERM), wait up to 60 s (then KILL), print nothing;
# returns the server's exit status.
stop_server() {
  local sig=${1:-TERM} rc=0 i
  [ -n "$SERVER_PID" ] || return 0
  kill "-$sig" "$SERVER_PID" 2>/dev/null
  for i in $(seq 1 600); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "# server did not stop within 60 s: killing it" >&2
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  wait "$SERVER_PID" 2>/dev/null
  rc=$?
  SERVER_PID=
  return $rc
}

# req METHOD PATH [JSON-BODY] [extra curl args...] - an authenticated request (Bearer $TOKEN
# unless REQ_TOKEN is set; REQ_TOKEN=none sends no Authorization). Sets REQ_STATUS, REQ_BODY,
# REQ_HEADERS (never exits the test on failure). A body of "@FILE" sends that file.
req() {
  local method=$1 path=$2 body=${3-} tok=${REQ_TOKEN:-$TOKEN}
  shift 2; [ $# -gt 0 ] && shift
  local f=$_serve_tmp/req.$$.$RANDOM
  local args=(-s -X "$method" -o "$f.body" -D "$f.hdr" -w '%{http_code}' --max-time "${REQ_TIMEOUT:-60}")
  [ "$tok" != none ] && args+=(-H "Authorization: Bearer $tok")
  if [ -n "$body" ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$body")
  fi
  REQ_STATUS=$(curl "${args[@]}" "$@" "$BASE_URL$path" 2>/dev/null)
  REQ_BODY=$(cat "$f.body" 2>/dev/null)
  REQ_HEADERS=$(cat "$f.hdr" 2>/dev/null)
  rm -f "$f.body" "$f.hdr"
}

# exec_js CODE [PARAMS-JSON] / exec_py CODE [PARAMS-JSON] - POST /api/v1/execute.
exec_lang() {
  local lang=$1 code=$2 params=${3:-null}
  req POST /api/v1/execute "$(jq -cn --arg l "$lang" --arg c "$code" --argjson p "$params" \
    '{language:$l, code:$c, params:$p}')"
}
exec_js() { exec_lang javascript "$@"; }
exec_py() { exec_lang python "$@"; }

# start_role ROLE [ARGS...] - start_server --role ROLE; when it does not start, the test file
# ends here: skipped if this build has no execution engine, failed otherwise.
start_role() {
  local role=$1
  shift
  start_server --role "$role" "$@"
  [ -n "$SERVER_PID" ] && return 0
  if grep -q "not part of this build" "$SERVER_LOG" 2>/dev/null; then
    skip "$role" "the execution engine is not part of this build"
    done_testing; exit 0
  fi
  not_ok "server starts with --role $role"; done_testing; exit 1
}

# engine_cgroup_parent - where a server started by this test puts its engine cgroups
# ("stockade-engine-<pid>"): the test's own memory cgroup (v1), or its v2 cgroup.
engine_cgroup_parent() {
  local rel
  rel=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
  if [ -n "$rel" ] && [ -d /sys/fs/cgroup/memory ]; then
    echo "/sys/fs/cgroup/memory${rel%/}"
  else
    rel=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
    echo "/sys/fs/cgroup${rel%/}"
  fi
}
