#!/usr/bin/env bash
# tests/e2e/sandbox-api.sh - the agent sandbox end to end through `stockade serve` with real
# runsc: lifecycle, exec (sync, NDJSON, SSE, stdin, timeout), files (50 MB round trip, listing,
# mkdir, delete), pause/resume, snapshots (round trip, tampering), preview proxy and tokens,
# WebSocket upgrade through the preview proxy, direct exec with the sandbox's own token,
# egress (HTTP and HTTPS CONNECT allowed, denied, blocked after resolution), limits (429s), idle
# and lifetime expiry, and recovery after kill -9. SBX_RUNTIME=jail runs the same suite on the
# jail runtime. (tests/e2e/sandbox-state.sh covers the store records and recovery in depth.)
. "$(dirname "$0")/sandbox-lib.bash"

if ! why=$(sbx_can_run); then
  skip "agent sandbox e2e" "$why"; rm -rf "$SBX_D"; done_testing; exit 0
fi
trap sbx_cleanup EXIT

# A loopback HTTP server on the host, reachable only through the egress proxy.
EG_PORT=$(free_port)
mkdir -p "$SBX_D/www" && echo "egress-ok" >"$SBX_D/www/hello.txt"
python3 -m http.server "$EG_PORT" --bind 127.0.0.2 --directory "$SBX_D/www" >/dev/null 2>&1 &
EG_PID=$!
# A loopback TLS server (throwaway self-signed certificate) for HTTPS CONNECT through the proxy.
TLS_PORT=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.2 \
  -keyout "$SBX_D/tls.key" -out "$SBX_D/tls.crt" >/dev/null 2>&1
openssl s_server -accept "127.0.0.2:$TLS_PORT" -cert "$SBX_D/tls.crt" -key "$SBX_D/tls.key" \
  -www -quiet </dev/null >/dev/null 2>&1 &
TLS_PID=$!
trap 'kill $EG_PID $TLS_PID 2>/dev/null; sbx_cleanup' EXIT

sbx_config "    proxy:
      allowedDomains: [127.0.0.2, localhost, 169.254.169.254]
      blockedCidrs: [127.0.0.1/32, 169.254.0.0/16, 10.0.0.0/8, 192.168.0.0/16]
    scaling: {prewarmPoolSize: 1, maxTotalJobs: 4, maxConcurrentCreates: 2, perUserSandboxLimit: 3}" \
  "workspaceSizeMb: 256, memoryMb: 512, pids: 256"
sbx_start || { not_ok "service starts"; done_testing; exit 1; }
ok "service starts with the agent sandbox ($SBX_RUNTIME)"

# rr.agentSandbox.apiSecret: a service credential for the sandbox API, and only for it
out=$(SBX_TOKEN=$(cat "$SBX_D/keys/api_secret.txt") api GET /api/v1/sandboxes)
check_eq "apiSecret: the sandbox API accepts it" "$(status)" 200
SBX_TOKEN=wrong-$(cat "$SBX_D/keys/api_secret.txt") api GET /api/v1/sandboxes >/dev/null
check_eq "apiSecret: anything else is 401" "$(status)" 401

# ---- lifecycle ------------------------------------------------------------------------------
echo "# t=${SECONDS}s lifecycle"
create || not_ok "create"
A=$SBX_ID
A_TOK=$SBX_TOK
check_contains "create returns an id" "$A" "sb-"
check_contains "create returns a token" "$A_TOK" "eyJ"
out=$(api GET "/api/v1/sandboxes/$A")
check_eq "get: 200" "$(status)" 200
check_eq "get: running" "$(json_get "$out" .state)" running
out=$(api GET /api/v1/sandboxes)
check_contains "list has it" "$out" "$A"
out=$(SBX_TOKEN=$TOKB api GET /api/v1/sandboxes)
check_not_contains "another principal's list does not" "$out" "$A"
SBX_TOKEN=$TOKB api GET "/api/v1/sandboxes/$A" >/dev/null
check_eq "another principal gets 404" "$(status)" 404

# ---- exec -------------------------------------------------------------------------------------
echo "# t=${SECONDS}s exec"
out=$(run "$A" echo '["hi"]')
check_eq "exec echo: stdout" "$(json_get "$out" .stdout)" "hi"
check_eq "exec echo: exit 0" "$(json_get "$out" .exitCode)" 0
out=$(run "$A" sh '["-c","echo out; echo err >&2; exit 7"]')
check_eq "exec: stderr" "$(json_get "$out" .stderr)" "err"
check_eq "exec: exit code" "$(json_get "$out" .exitCode)" 7
out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"cat","stdin":"piped input"}')
check_eq "exec: stdin" "$(json_get "$out" .stdout)" "piped input"
out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"sh","args":["-c","echo $FOO in $(pwd)"],"env":{"FOO":"bar"},"cwd":"."}')
check_eq "exec: env and cwd" "$(json_get "$out" .stdout)" "bar in /workspace"
out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"sleep","args":["30"],"timeoutMs":500}')
check_eq "exec: timeout" "$(json_get "$out" .timedOut)" true
api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"no-such-command"}' >/dev/null
check_eq "exec: unknown command is 400" "$(status)" 400
api POST "/api/v1/sandboxes/$A/exec" -d '{"args":["x"]}' >/dev/null
check_eq "exec: missing cmd is 400" "$(status)" 400
out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"echo","argv":["x"]}')
check_eq "exec: unknown field is 400 naming it" "$(status) $(json_get "$out" .error.field)" "400 argv"
out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"echo","args":["streamed"],"stream":"sse"}')
check_contains "exec: \"stream\": \"sse\" in the body streams events" "$out" "event: exit"
out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"echo","args":["$HOME;","*","a  b"]}')
check_eq "exec: args reach the command as given (no shell)" "$(json_get "$out" .stdout)" '$HOME; * a  b'
out=$(run "$A" sh '["-c","mkdir -p bin && printf \"#!/bin/sh\\necho from-path\\n\" > bin/hello && chmod 755 bin/hello && printf x > bin/plain"]')
out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"hello","env":{"PATH":"/workspace/bin:/usr/bin:/bin"}}')
check_eq "exec: cmd is looked up in the request's PATH" "$(json_get "$out" .stdout)" "from-path"
out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"bin/plain"}')
check_eq "exec: a file that is not executable is 400 command_not_runnable" "$(status) $(json_get "$out" .error.code // .code)" "400 command_not_runnable"
# file metadata, which some gVisor releases refuse to coreutils (statx with AT_NO_AUTOMOUNT:
# the agent then preloads stockade-compat.so)
out=$(run "$A" sh '["-c","printf abc > st.txt && stat -c %s st.txt && ls -l st.txt | cut -c1-10 && rm st.txt"]')
check_eq "exec: stat and ls -l see file metadata" "$(json_get "$out" '.stdout + "/" + .stderr')" "3
-rw-r--r--
/"
out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"sh","args":["-c","echo \"[$LD_PRELOAD]\""],"env":{"LD_PRELOAD":"/usr/lib/x86_64-linux-gnu/libm.so.6"}}')
check_contains "exec: a request's own LD_PRELOAD is kept" "$(json_get "$out" .stdout)" "libm.so.6]"
out=$(run "$A" sh '["-c","echo \"[$LANG][$LC_CTYPE]\""]')
check_eq "exec: UTF-8 by default through LC_CTYPE" "$(json_get "$out" .stdout)" "[][C.UTF-8]"
out=$(run "$A" python3 '["-c","import sys; print(sys.stdout.encoding, len(\"\u00e9\".encode()))"]')
check_eq "exec: python sees UTF-8" "$(json_get "$out" .stdout)" "utf-8 2"
out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"sh","args":["-c","echo \"[$LANG][$LC_CTYPE]\""],"env":{"LANG":"C"}}')
check_eq "exec: a request's LANG is not overridden by the default LC_CTYPE" "$(json_get "$out" .stdout)" "[C][]"
# More concurrent requests than the agent keeps spare handlers for: each still gets one.
conc_pids=()
for i in 1 2 3 4 5; do
  curl -s -X POST -H "Authorization: Bearer $TOKA" "$SBX_U/api/v1/sandboxes/$A/exec" \
    -d "{\"cmd\":\"sh\",\"args\":[\"-c\",\"sleep 0.3; echo c$i\"]}" >"$SBX_D/conc$i" &
  conc_pids+=($!)
done
wait "${conc_pids[@]}"
check_eq "exec: five concurrent commands all answer" "$(for i in 1 2 3 4 5; do jq -j .stdout "$SBX_D/conc$i"; done | sort | tr '\n' ' ')" "c1 c2 c3 c4 c5 "
out=$(api POST "/api/v1/sandboxes/$A/exec?stream=ndjson" -d '{"cmd":"sh","args":["-c","echo one; sleep 0.2; echo two >&2; exit 2"]}')
check_contains "stream ndjson: stdout chunk" "$out" '{"type":"stdout","data":"one\n"}'
check_contains "stream ndjson: stderr chunk" "$out" '{"type":"stderr","data":"two\n"}'
check_eq "stream ndjson: exit event last" "$(echo "$out" | tail -1 | jq -r '.type + " " + (.exitCode|tostring)')" "exit 2"
out=$(api POST "/api/v1/sandboxes/$A/exec?stream=sse" -d '{"cmd":"echo","args":["sse"]}')
check_contains "stream sse: stdout event" "$out" "event: stdout"
check_contains "stream sse: exit event" "$out" "event: exit"

# ---- files -------------------------------------------------------------------------------------
echo "# t=${SECONDS}s files"
head -c 50000000 /dev/urandom >"$SBX_D/big.bin"
api PUT "/api/v1/sandboxes/$A/files?path=data/big.bin" --data-binary @"$SBX_D/big.bin" >/dev/null
check_eq "upload 50 MB: 201" "$(status)" 201
curl -s -H "Authorization: Bearer $TOKA" "$SBX_U/api/v1/sandboxes/$A/files?path=data/big.bin" -o "$SBX_D/big.out"
check_eq "download 50 MB: identical" "$(md5sum <"$SBX_D/big.out")" "$(md5sum <"$SBX_D/big.bin")"
out=$(run "$A" md5sum '["data/big.bin"]')
check_eq "the sandbox sees the same bytes" "$(json_get "$out" .stdout | cut -d' ' -f1)" "$(md5sum <"$SBX_D/big.bin" | cut -d' ' -f1)"
rm -f "$SBX_D/big.out"
api POST "/api/v1/sandboxes/$A/files/mkdir?path=d1/d2" >/dev/null
check_eq "mkdir: 201" "$(status)" 201
out=$(api GET "/api/v1/sandboxes/$A/files?path=data/")
check_eq "listing: type and size" "$(json_get "$out" '.entries[] | select(.name=="big.bin") | .type + " " + (.size|tostring)')" "file 50000000"
out=$(api GET "/api/v1/sandboxes/$A/files/list?path=d1")
check_eq "listing: directory type" "$(json_get "$out" '.entries[0].type')" "dir"
api DELETE "/api/v1/sandboxes/$A/files?path=data/big.bin" >/dev/null
check_eq "delete file: 200" "$(status)" 200
api GET "/api/v1/sandboxes/$A/files?path=data/big.bin" >/dev/null
check_eq "deleted file: 404" "$(status)" 404
api DELETE "/api/v1/sandboxes/$A/files?path=d1" >/dev/null
check_eq "delete non-empty dir without recursive: 409" "$(status)" 409
api DELETE "/api/v1/sandboxes/$A/files?path=d1&recursive=true" >/dev/null
check_eq "delete dir recursive: 200" "$(status)" 200

# ---- pause / resume ----------------------------------------------------------------------------
echo "# t=${SECONDS}s pause / resume"
api POST "/api/v1/sandboxes/$A/pause" >/dev/null
check_eq "pause: 200" "$(status)" 200
run "$A" true >/dev/null
check_eq "exec while paused: 409" "$(status)" 409
api POST "/api/v1/sandboxes/$A/resume" >/dev/null
out=$(run "$A" echo '["back"]')
check_eq "resume: exec works again" "$(json_get "$out" .stdout)" "back"

# ---- snapshots -----------------------------------------------------------------------------------
echo "# t=${SECONDS}s snapshots"
api PUT "/api/v1/sandboxes/$A/files?path=proj/a.txt" --data-binary "alpha" >/dev/null
head -c 3000000 /dev/urandom >"$SBX_D/b.bin"
api PUT "/api/v1/sandboxes/$A/files?path=proj/sub/b.bin" --data-binary @"$SBX_D/b.bin" >/dev/null
run "$A" ln '["-s","a.txt","proj/link"]' >/dev/null
sum_a=$(json_get "$(run "$A" sh '["-c","cd proj && find . | sort && cat a.txt sub/b.bin | md5sum && readlink link"]')" .stdout)
out=$(api POST "/api/v1/sandboxes/$A/snapshots")
check_eq "snapshot: 201" "$(status)" 201
SNAP=$(json_get "$out" .id)
create "{\"fromSnapshot\":\"$SNAP\"}" || not_ok "create from snapshot"
R=$SBX_ID
sum_r=$(json_get "$(run "$R" sh '["-c","cd proj && find . | sort && cat a.txt sub/b.bin | md5sum && readlink link"]')" .stdout)
check_eq "restore: identical tree, content and symlink" "$sum_r" "$sum_a"
api DELETE "/api/v1/sandboxes/$R" >/dev/null
check_eq "destroy restored: 200" "$(status)" 200
SBX_TOKEN=$TOKB api POST /api/v1/sandboxes -d "{\"fromSnapshot\":\"$SNAP\"}" >/dev/null
check_eq "another principal cannot restore the snapshot (404)" "$(status)" 404
# A restore that wrongly succeeded must not hold a slot the limit tests below count on.
drop_wrongly_restored() {
  local id
  id=$(json_get "$1" .id)
  if [ -n "$id" ] && [ "$id" != null ]; then api DELETE "/api/v1/sandboxes/$id" >/dev/null; fi
}
snapfile=$(find "$SBX_D" -path '*snapshots*' -name "$SNAP*" -type f | head -1)
if [ -n "$snapfile" ]; then
  cp "$snapfile" "$SBX_D/snap.orig"
  # Invert one byte (writing a fixed byte would change nothing one time in 256).
  byte=$(od -An -tu1 -j100 -N1 "$snapfile" | tr -d ' ')
  printf "\\$(printf '%03o' $((byte ^ 255)))" | dd of="$snapfile" bs=1 seek=100 conv=notrunc 2>/dev/null
  if cmp -s "$snapfile" "$SBX_D/snap.orig"; then not_ok "tampered snapshot: the file changed"; else ok "tampered snapshot: the file changed"; fi
  out=$(api POST /api/v1/sandboxes -d "{\"fromSnapshot\":\"$SNAP\"}")
  check_eq "tampered snapshot: 422" "$(status)" 422
  check_contains "tampered snapshot: says integrity" "$out" "integrity"
  drop_wrongly_restored "$out"
  head -c 2000 "$SBX_D/snap.orig" >"$snapfile"
  out=$(api POST /api/v1/sandboxes -d "{\"fromSnapshot\":\"$SNAP\"}")
  check_eq "truncated snapshot: 422" "$(status)" 422
  drop_wrongly_restored "$out"
  cp "$SBX_D/snap.orig" "$snapfile"
else
  not_ok "snapshot object found in blob storage"
fi
api POST /api/v1/sandboxes -d '{"fromSnapshot":"snap-0000000000000000000000"}' >/dev/null
check_eq "unknown snapshot: 404" "$(status)" 404
# create refuses what it would otherwise ignore (a refusal creates nothing: the per-user count
# the limit cases below rely on is unchanged)
out=$(api POST /api/v1/sandboxes -d '{"network":{"allowEgres":true}}')
check_eq "create: misspelt network field is 400 naming it" "$(status) $(json_get "$out" .error.field)" "400 network.allowEgres"
check_contains "create: ... and suggests the accepted one" "$(json_get "$out" .error.message)" "did you mean 'allowEgress'"
out=$(api POST /api/v1/sandboxes -d '{"network":{"allowEgress":"yes"}}')
check_eq "create: non-boolean allowEgress is 400" "$(status) $(json_get "$out" .error.field)" "400 network.allowEgress"
out=$(api POST /api/v1/sandboxes -d '{"timeouts":600000}')
check_eq "create: timeouts that is not an object is 400" "$(status) $(json_get "$out" .error.field)" "400 timeouts"
out=$(api POST /api/v1/sandboxes -d '{"timeouts":{"idleTimeout":1000}}')
check_eq "create: unknown timeouts field is 400" "$(status) $(json_get "$out" .error.field)" "400 timeouts.idleTimeout"

# ---- preview proxy -------------------------------------------------------------------------------
echo "# t=${SECONDS}s preview proxy"
api PUT "/api/v1/sandboxes/$A/files?path=site/index.html" --data-binary "preview-ok" >/dev/null
api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"python3","args":["-m","http.server","8000","--bind","127.0.0.1","--directory","site"],"background":true}' >/dev/null
check_eq "background server started" "$(status)" 200
got=""
for _ in $(seq 1 50); do
  got=$(curl -s -H "Authorization: Bearer $A_TOK" "$SBX_U/sandboxes/$A/ports/8000/index.html")
  [ "$got" = preview-ok ] && break
  sleep 0.2
done
check_eq "preview: bearer token" "$got" "preview-ok"
code=$(curl -s -o /dev/null -w '%{http_code}' "$SBX_U/sandboxes/$A/ports/8000/index.html")
check_eq "preview: no token 401" "$code" 401
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKA" "$SBX_U/sandboxes/$A/ports/8000/index.html")
check_eq "preview: an API token is not a sandbox token (401)" "$code" 401
hdrs=$(curl -s -D - -o "$SBX_D/pv" "$SBX_U/sandboxes/$A/ports/8000/index.html?stockade_token=$A_TOK")
check_eq "preview: query token" "$(cat "$SBX_D/pv")" "preview-ok"
check_contains "preview: query token sets a path-scoped cookie" "$hdrs" "Path=/sandboxes/$A/"
got=$(curl -s -H "Cookie: stockade_sandbox_token=$A_TOK" "$SBX_U/sandboxes/$A/ports/8000/index.html")
check_eq "preview: cookie token" "$got" "preview-ok"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $A_TOK" "$SBX_U/sandboxes/$A/ports/8001/")
check_eq "preview: closed port 502" "$code" 502

# WebSocket: an echo server inside the sandbox, a client on the host, through the proxy.
api PUT "/api/v1/sandboxes/$A/files?path=ws-echo.py" --data-binary @"$STOCKADE_ROOT/tests/tools/ws-echo-server.py" >/dev/null
api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"python3","args":["ws-echo.py","8100"],"background":true}' >/dev/null
check_eq "websocket echo server started in the sandbox" "$(status)" 200
ws=""
for _ in $(seq 1 50); do
  ws=$(python3 "$STOCKADE_ROOT/tests/tools/ws-client.py" "$SBX_U/sandboxes/$A/ports/8100/ws" "$A_TOK" 2>&1)
  case "$ws" in *"101"*) break ;; esac
  sleep 0.2
done
check_contains "preview websocket: 101 Switching Protocols" "$ws" "101"
check_contains "preview websocket: the upstream's Sec-WebSocket-Accept passes through" "$ws" "accept-ok"
check_contains "preview websocket: a frame goes in and its echo comes back" "$ws" "echo:hello-ws"
ws=$(python3 "$STOCKADE_ROOT/tests/tools/ws-client.py" "$SBX_U/sandboxes/$A/ports/8100/ws" 2>&1)
check_contains "preview websocket: no token 401" "$ws" "401"

# Direct exec with the sandbox's own ES256 token (no API token).
out=$(curl -s -w '\n%{http_code}' -X POST -H "Authorization: Bearer $A_TOK" "$SBX_U/sandboxes/$A/exec" -d '{"cmd":"cat","args":["site/index.html"]}')
check_eq "direct exec with the sandbox token: 200" "$(echo "$out" | tail -1)" 200
check_eq "direct exec with the sandbox token: output" "$(json_get "$(echo "$out" | head -1)" .stdout)" "preview-ok"
out=$(curl -s -X POST -H "Authorization: Bearer $A_TOK" "$SBX_U/sandboxes/$A/exec?stream=ndjson" -d '{"cmd":"echo","args":["streamed"]}')
check_contains "direct exec: streaming works too" "$out" '"data":"streamed\n"'
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SBX_U/sandboxes/$A/exec" -d '{"cmd":"true"}')
check_eq "direct exec without a token: 401" "$code" 401
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKA" "$SBX_U/sandboxes/$A/exec" -d '{"cmd":"true"}')
check_eq "direct exec with an API token: 401 (the API route takes those)" "$code" 401
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Cookie: stockade_sandbox_token=$A_TOK" "$SBX_U/sandboxes/$A/exec" -d '{"cmd":"true"}')
check_eq "direct exec: the preview cookie is not accepted" "$code" 401

# ---- egress ----------------------------------------------------------------------------------------
echo "# t=${SECONDS}s egress"
create '{"network":{"allowEgress":true}}' || not_ok "create with egress"
B=$SBX_ID
B_TOK=$SBX_TOK
out=$(runp "$B" "[\"-s\",\"-x\",\"http://127.0.0.1:3128\",\"http://127.0.0.2:$EG_PORT/hello.txt\"]")
check_eq "egress: allowed host reached through the proxy" "$(json_get "$out" .stdout)" "egress-ok"
out=$(runp "$B" "[\"-s\",\"-x\",\"http://127.0.0.1:3128\",\"http://example.com/\"]")
check_contains "egress: host outside the allowlist denied" "$(json_get "$out" .stdout)" "not in the egress allowlist"
out=$(runp "$B" "[\"-s\",\"-x\",\"http://127.0.0.1:3128\",\"http://localhost:$EG_PORT/hello.txt\"]")
check_contains "egress: allowlisted name resolving to a blocked address denied (rebinding)" "$(json_get "$out" .stdout)" "blocked range"
out=$(runp "$B" "[\"-s\",\"-x\",\"http://127.0.0.1:3128\",\"http://169.254.169.254/latest/meta-data/\"]")
check_contains "egress: metadata address denied" "$(json_get "$out" .stdout)" "blocked range"
out=$(runp "$B" "[\"-s\",\"-p\",\"-x\",\"http://127.0.0.1:3128\",\"https://localhost:$EG_PORT/\"]")
check_eq "egress: CONNECT to a blocked address fails" "$(json_get "$out" .exitCode)" 56
# a head the proxy cannot act on: 400 with the reason (sent raw: curl would not send it)
raw=$(jq -cn --arg s 'exec 3<>/dev/tcp/127.0.0.1/3128 && printf "GET https://x.example/ HTTP/1.1\r\n\r\n" >&3 && cat <&3' '["-c",$s]')
out=$(run "$B" bash "$raw")
check_contains "egress: an https:// URL without CONNECT: 400" "$(json_get "$out" .stdout)" "400 Bad Request"
check_contains "egress: ... with the reason" "$(json_get "$out" .stdout)" "HTTPS goes through CONNECT"
out=$(run "$B" curl "[\"-s\",\"-m\",\"3\",\"--noproxy\",\"*\",\"http://127.0.0.2:$EG_PORT/hello.txt\"]")
check_eq "egress: no route around the proxy" "$(json_get "$out" .stdout)" ""
out=$(run "$A" curl "[\"-s\",\"-x\",\"http://127.0.0.1:3128\",\"http://127.0.0.2:$EG_PORT/hello.txt\"]")
check_contains "egress: off by default" "$(json_get "$out" .stdout)" "egress is disabled"
check_contains "egress decisions are logged" "$(cat "$SBX_D/serve.log")" "egress denied"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $B_TOK" "$SBX_U/sandboxes/$A/ports/8000/index.html")
check_eq "preview: another sandbox's token 401" "$code" 401
out=$(curl -s -w '\n%{http_code}' -X POST -H "Authorization: Bearer $B_TOK" "$SBX_U/sandboxes/$A/exec" -d '{"cmd":"touch","args":["from-b"]}')
check_eq "direct exec: sandbox B's token cannot exec in A (401)" "$(echo "$out" | tail -1)" 401
out=$(run "$A" sh '["-c","test -e from-b"]')
check_eq "direct exec: nothing ran in A" "$(json_get "$out" .exitCode)" 1
out=$(curl -s -X POST -H "Authorization: Bearer $B_TOK" "$SBX_U/sandboxes/$B/exec" -d '{"cmd":"echo","args":["b"]}')
check_eq "direct exec: B's token works in B" "$(json_get "$out" .stdout)" "b"

# HTTPS through CONNECT: an allowed host is tunnelled end to end (TLS inside the tunnel), a
# host outside the allowlist is refused at the CONNECT and the decision logged.
out=$(runp "$B" "[\"-s\",\"-k\",\"-p\",\"-x\",\"http://127.0.0.1:3128\",\"https://127.0.0.2:$TLS_PORT/\"]")
check_eq "egress: HTTPS CONNECT to an allowed host: exit 0" "$(json_get "$out" .exitCode)" 0
check_contains "egress: HTTPS CONNECT to an allowed host: the TLS server answered" "$(json_get "$out" .stdout)" "s_server"
out=$(runp "$B" "[\"-s\",\"-k\",\"-p\",\"-x\",\"http://127.0.0.1:3128\",\"-w\",\"%{http_connect}\",\"https://example.com/\"]")
check_eq "egress: HTTPS CONNECT to a disallowed host refused (curl exit 56)" "$(json_get "$out" .exitCode)" 56
check_eq "egress: the proxy answered the CONNECT with 403" "$(json_get "$out" .stdout)" 403
check_contains "egress: CONNECT allowed logged" "$(cat "$SBX_D/serve.log")" "egress allowed: sandbox '$B' CONNECT 127.0.0.2:$TLS_PORT"
check_contains "egress: CONNECT denied logged" "$(cat "$SBX_D/serve.log")" "egress denied: sandbox '$B' CONNECT example.com:443"

# ---- limits ------------------------------------------------------------------------------------------
echo "# t=${SECONDS}s limits"
create || not_ok "third sandbox"
C=$SBX_ID
out=$(api POST /api/v1/sandboxes -d '{}')
check_eq "perUserSandboxLimit: 429" "$(status)" 429
check_contains "perUserSandboxLimit: named" "$out" "perUserSandboxLimit"
SBX_TOKEN=$TOKB create || not_ok "other principal creates"
D=$SBX_ID
out=$(SBX_TOKEN=$TOKB api POST /api/v1/sandboxes -d '{}')
check_eq "maxTotalJobs: 429" "$(status)" 429
check_contains "maxTotalJobs: named" "$out" "maxTotalJobs"
SBX_TOKEN=$TOKB api DELETE "/api/v1/sandboxes/$D" >/dev/null
api DELETE "/api/v1/sandboxes/$C" >/dev/null
check_eq "destroy: 200" "$(status)" 200
api GET "/api/v1/sandboxes/$C" >/dev/null
check_eq "destroyed sandbox: 404" "$(status)" 404

# ---- idle and lifetime expiry -------------------------------------------------------------------------
echo "# t=${SECONDS}s idle and lifetime expiry"
SBX_TOKEN=$TOKB create '{"timeouts":{"lifetimeMs":2500}}' || not_ok "create lifetime"
L=$SBX_ID
create '{"timeouts":{"idleTimeoutMs":1500}}' || not_ok "create idle"
E=$SBX_ID
out=$(run "$E" sleep '["2.5"]')
check_eq "a running command counts as activity" "$(json_get "$out" .exitCode)" 0
api GET "/api/v1/sandboxes/$E" >/dev/null
check_eq "still there right after the long command" "$(status)" 200
sleep 2.5
api GET "/api/v1/sandboxes/$E" >/dev/null
check_eq "idle sandbox reaped" "$(status)" 404
SBX_TOKEN=$TOKB api GET "/api/v1/sandboxes/$L" >/dev/null
check_eq "lifetime reached: reaped" "$(status)" 404

# ---- restart recovery ------------------------------------------------------------------------------------
echo "# t=${SECONDS}s restart recovery"
api PUT "/api/v1/sandboxes/$A/files?path=keep.txt" --data-binary "survives" >/dev/null
kill -9 "$SBX_PID"; wait "$SBX_PID" 2>/dev/null; SBX_PID=
# B's runtime dies while the service is down: it must come back as lost, not leak.
[ "$SBX_RUNTIME" = jail ] && B_CGROUPS=$(sbx_jail_cgroups "$B")
sbx_kill_runtime "$B"
sleep 0.5
sbx_start || not_ok "restart"
out=$(api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"cat","args":["keep.txt"]}')
check_eq "re-adopted after kill -9: workspace intact" "$(json_get "$out" .stdout)" "survives"
api GET "/api/v1/sandboxes/$B" >/dev/null
check_eq "sandbox whose runtime died: gone (404)" "$(status)" 404
check_contains "lost sandbox logged" "$(cat "$SBX_D/serve.log")" "lost"
check "lost sandbox left no directory" test ! -e "$SBX_STATE/sb/$B"
check "lost sandbox left no runtime record (container or jail record)" test -z "$(sbx_runtime_ids | grep "$B")"
if [ "$SBX_RUNTIME" = jail ]; then
  left_cg=0
  for d in $B_CGROUPS; do [ -d "$d" ] && left_cg=$((left_cg + 1)); done
  check_eq "lost sandbox left no cgroup" "$left_cg" 0
  check "lost sandbox left no mount" sh -c "! grep -q '$B' /proc/mounts"
fi
found=$(find "$SBX_D" -path '*snapshots*' -name "$SNAP*" -type f | wc -l)
check_eq "snapshot survives the restart" "$found" 1
api DELETE "/api/v1/sandboxes/$A" >/dev/null
check_eq "delete after restart" "$(status)" 200
left=9
for _ in $(seq 1 100); do
  left=$(sbx_runtime_ids | grep -c '^sb-' || true)
  [ "$left" = 1 ] && break
  sleep 0.2
done
check_eq "only the warm pool remains" "$left" 1
if [ "$SBX_RUNTIME" = jail ]; then
  pool=$(sbx_runtime_ids)
  pool_cgroups=$(for id in $pool; do sbx_jail_cgroups "$id"; done)
  pool_pids=$(for id in $pool; do jq -r .pid "$SBX_STATE/jail/$id.json"; done)
  sbx_stop
  check_eq "stopping the service removes the warm pool's jail" "$(sbx_runtime_ids | wc -l)" 0
  left_cg=0
  for d in $pool_cgroups; do [ -d "$d" ] && left_cg=$((left_cg + 1)); done
  check_eq "... and its cgroups" "$left_cg" 0
  alive=0
  for p in $pool_pids; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
  check_eq "... and its processes" "$alive" 0
fi
done_testing
