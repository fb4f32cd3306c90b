#!/usr/bin/env bash
# api-exec.sh - the code-executor API over HTTP with the real engines: every result status,
# bad input (400/413 naming the field), isolation between executions, 50 concurrent requests,
# a zygote killed mid-run, queue full (429), graceful shutdown with an execution in flight.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-serve.sh"

SERVE_ENV="STOCKADE_ENGINE_QUEUE_SIZE=64" start_role code-executor
ok "server starts with --role code-executor"

REQ_TOKEN=none req GET /api/checkHealth
check_eq "checkHealth 200" "$REQ_STATUS" 200
check_eq "jailed by default" "$(json_get "$REQ_BODY" .sandboxed)" true

# ---- statuses --------------------------------------------------------------------------------
exec_js 'return 1 + 1'
check_eq "js ok: 200" "$REQ_STATUS" 200
check_eq "js ok: status" "$(json_get "$REQ_BODY" .status)" ok
check_eq "js ok: result" "$(json_get "$REQ_BODY" .result)" 2
check_eq "js ok: sandboxed" "$(json_get "$REQ_BODY" .sandboxed)" true
check "js ok: stats" test "$(json_get "$REQ_BODY" '.stats | has("wallMs") and has("cpuMs") and has("maxRssKb")')" = true

# Before its first fork each zygote moves its code and heap to 2 MiB pages (engine-huge.c);
# best effort, so only where the kernel offers transparent huge pages.
if grep -q '\[never\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null ||
   [ ! -r /sys/kernel/mm/transparent_hugepage/enabled ]; then
  skip "zygote on huge pages" "transparent huge pages are off on this host"
else
  huge=0
  for zp in $(pgrep -P "$SERVER_PID" -f stockade-zygote-javascript); do
    kb=$(awk '/^AnonHugePages:/ { print $2 }' "/proc/$zp/smaps_rollup" 2>/dev/null)
    [ "${kb:-0}" -gt 0 ] && huge=1
  done
  check_eq "the javascript zygote's memory is on huge pages" "$huge" 1
fi

exec_py 'return params["a"] * 2' '{"a": 21}'
check_eq "python ok with params" "$(json_get "$REQ_BODY" .result)" 42

exec_js 'console.log("hello", params.who); return params.who' '{"who":"world"}'
check_eq "js stdout captured" "$(json_get "$REQ_BODY" .stdout)" "hello world"

exec_py 'print("out"); import sys; print("err", file=sys.stderr); return None'
check_eq "python stdout" "$(json_get "$REQ_BODY" .stdout)" "out"
check_eq "python stderr" "$(json_get "$REQ_BODY" .stderr)" "err"

exec_js 'const x = 1;
throw new TypeError("boom");'
check_eq "js error: 200" "$REQ_STATUS" 200
check_eq "js error: status" "$(json_get "$REQ_BODY" .status)" error
check_eq "js error: name" "$(json_get "$REQ_BODY" .error.name)" TypeError
check_eq "js error: message" "$(json_get "$REQ_BODY" .error.message)" boom
check_eq "js error: line in user code" "$(json_get "$REQ_BODY" .error.line)" 2

exec_py 'x = 1
return 1 / 0'
check_eq "python error: status" "$(json_get "$REQ_BODY" .status)" error
check_eq "python error: name" "$(json_get "$REQ_BODY" .error.name)" ZeroDivisionError
check_eq "python error: line" "$(json_get "$REQ_BODY" .error.line)" 2

req POST /api/v1/execute '{"language":"javascript","code":"while (true) {}","timeoutMs":300}'
check_eq "timeout: 200" "$REQ_STATUS" 200
check_eq "timeout: status" "$(json_get "$REQ_BODY" .status)" timeout

req POST /api/v1/execute '{"language":"python","code":"while True: pass","timeoutMs":300}'
check_eq "python timeout" "$(json_get "$REQ_BODY" .status)" timeout

req POST /api/v1/execute '{"language":"python","code":"x = []\nwhile True:\n    x.append(bytearray(8 << 20))","memoryMb":64,"timeoutMs":10000}'
check_eq "python memory bomb: memory_limit" "$(json_get "$REQ_BODY" .status)" memory_limit

req POST /api/v1/execute '{"language":"javascript","code":"const a = []; while (true) a.push(new Array(1 << 20).fill(7));","memoryMb":64,"timeoutMs":10000}'
check_eq "js memory bomb: memory_limit" "$(json_get "$REQ_BODY" .status)" memory_limit

exec_py 'while True: print("x" * 10000)'
check_eq "output flood: output_limit" "$(json_get "$REQ_BODY" .status)" output_limit

exec_py 'import ctypes
libc = ctypes.CDLL(None)
return libc.syscall(101, 0, 0, 0, 0)'
check_eq "ptrace via ctypes: sandbox_violation" "$(json_get "$REQ_BODY" .status)" sandbox_violation

exec_py 'import ctypes
ctypes.string_at(0)'
st=$(json_get "$REQ_BODY" .status)
if [ "$st" = internal ] && case "$STOCKADE_BIN" in *build-asan*) true ;; *) false ;; esac; then
  # in the sanitizer build the forked child still has ASan's SIGSEGV handler, which exits
  # instead of dying by the signal
  skip "segfault: killed" "ASan build: the child exits through ASan's SIGSEGV handler"
else
  check_eq "segfault: killed" "$st" killed
fi

exec_js 'return 2 + 2'
check_eq "service answers after the hostile ones" "$(json_get "$REQ_BODY" .result)" 4

# ---- bad input -------------------------------------------------------------------------------
bad() { # name body field [status]
  req POST /api/v1/execute "$2"
  check_eq "$1: ${4:-400}" "$REQ_STATUS" "${4:-400}"
  check_eq "$1: names '$3'" "$(json_get "$REQ_BODY" .error.field)" "$3"
}
req POST /api/v1/execute '{"language": "javascript", "code": '
check_eq "invalid JSON: 400" "$REQ_STATUS" 400
check_eq "invalid JSON: code" "$(json_get "$REQ_BODY" .error.code)" invalid_json
bad "missing language" '{"code":"return 1"}' language
bad "mistyped language" '{"language":5,"code":"return 1"}' language
bad "unknown language" '{"language":"ruby","code":"return 1"}' language
bad "missing code" '{"language":"python"}' code
bad "mistyped code" '{"language":"python","code":["x"]}' code
bad "mistyped timeoutMs" '{"language":"python","code":"return 1","timeoutMs":"fast"}' timeoutMs
bad "negative timeoutMs" '{"language":"python","code":"return 1","timeoutMs":-5}' timeoutMs
bad "timeoutMs above the maximum" '{"language":"python","code":"return 1","timeoutMs":999999999}' timeoutMs
bad "memoryMb above the maximum" '{"language":"python","code":"return 1","memoryMb":99999999}' memoryMb
bad "fractional memoryMb" '{"language":"python","code":"return 1","memoryMb":1.5}' memoryMb
bad "misspelt timeoutMs" '{"language":"python","code":"return 1","timeout":50}' timeout
check_contains "misspelt field: suggests the accepted name" "$(json_get "$REQ_BODY" .error.message)" "did you mean 'timeoutMs'"
bad "unknown field" '{"language":"python","code":"return 1","sandbox":false}' sandbox
check_contains "unknown field: lists the accepted ones" "$(json_get "$REQ_BODY" .error.message)" "language, code, params, timeoutMs, memoryMb"
{ printf '{"language":"python","code":"'; head -c 2000000 /dev/zero | tr '\0' '#'; printf '"}'; } >"$_serve_tmp/bigcode.json"
req POST /api/v1/execute "@$_serve_tmp/bigcode.json"
check_eq "code over the cap: 413" "$REQ_STATUS" 413
check_eq "code over the cap: names 'code'" "$(json_get "$REQ_BODY" .error.field)" code
REQ_TOKEN=none req POST /api/v1/execute '{"language":"python","code":"return 1"}'
check_eq "execute without a token: 401" "$REQ_STATUS" 401

# ---- isolation -------------------------------------------------------------------------------
exec_js 'globalThis.leak = 42; return 1'
exec_js 'return typeof globalThis.leak'
check_eq "js globals do not survive" "$(json_get "$REQ_BODY" .result)" undefined
exec_js 'Array.prototype.push = function () { return -1 }; JSON.stringify = () => "hacked"; return 1'
exec_js 'const a = []; a.push(5); return [a.length, JSON.stringify({a: 1})]'
check_eq "js monkey-patched builtins do not survive" "$(jq -c .result <<<"$REQ_BODY")" '[1,"{\"a\":1}"]'
exec_py 'import json, builtins
json.leak = 1
builtins.len = lambda x: 42
globals()["g"] = 1
return 1'
exec_py 'import json
return [hasattr(json, "leak"), len([1, 2]), "g" in globals()]'
check_eq "python module state and builtins do not survive" "$(jq -c .result <<<"$REQ_BODY")" '[false,2,false]'
exec_py 'open("/tmp/leak.txt", "w").write("secret"); return 1'
exec_py 'import os
return os.path.exists("/tmp/leak.txt")'
check_eq "/tmp files do not survive" "$(json_get "$REQ_BODY" .result)" false
# Every execution is a fork of the same zygote: random number generators whose state lives in
# the process must not hand two executions the same sequence.
distinct() { # name lang code: three executions, three different results
  local seen=""
  for _ in 1 2 3; do
    if [ "$2" = js ]; then exec_js "$3"; else exec_py "$3"; fi
    seen="$seen $(jq -c .result <<<"$REQ_BODY")"
  done
  check_eq "$1" "$(tr ' ' '\n' <<<"$seen" | grep -v '^$' | sort -u | wc -l | tr -d ' ')" 3
}
distinct "js Math.random differs between executions" js 'return [Math.random(), Math.random()]'
distinct "python random differs between executions" py 'import random
return random.random()'
distinct "numpy's global generator differs between executions" py 'import numpy
return float(numpy.random.random())'
exec_js 'const d = Object.getOwnPropertyDescriptor(Math, "random"); const xs = Array.from({length: 10000}, Math.random);
return [String(Math.random).includes("[native code]"), d.writable, d.enumerable, d.configurable,
  xs.every(x => x >= 0 && x < 1), new Set(xs).size]'
check_eq "js Math.random: native, usual attributes, values in [0, 1)" "$(jq -c .result <<<"$REQ_BODY")" '[true,true,false,true,true,10000]'

# ---- 50 concurrent requests ------------------------------------------------------------------
mkdir -p "$_serve_tmp/conc"
pids=()
for i in $(seq 1 50); do
  lang=javascript; [ $((i % 2)) -eq 0 ] && lang=python
  curl -s --max-time 120 -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"language\":\"$lang\",\"code\":\"return params['n'] * 3\",\"params\":{\"n\":$i}}" \
    -o "$_serve_tmp/conc/$i.json" "$BASE_URL/api/v1/execute" &
  pids+=($!)
done
wait "${pids[@]}"
good=0
for i in $(seq 1 50); do
  [ "$(jq -r .result "$_serve_tmp/conc/$i.json" 2>/dev/null)" = $((i * 3)) ] && good=$((good + 1))
done
check_eq "50 concurrent requests all correct" "$good" 50

# ---- queue full -> 429 -----------------------------------------------------------------------
stop_server
SERVE_ENV="STOCKADE_ENGINE_QUEUE_SIZE=1 STOCKADE_ENGINE_CONCURRENCY=1" start_server --role code-executor
pids=()
for i in $(seq 1 6); do
  curl -s --max-time 60 -o "$_serve_tmp/q$i.out" -w '%{http_code}\n' -H "Authorization: Bearer $TOKEN" \
    -d '{"language":"javascript","code":"const t = Date.now(); while (Date.now() - t < 1500) {} return 1","timeoutMs":5000}' \
    -D "$_serve_tmp/q$i.hdr" "$BASE_URL/api/v1/execute" >"$_serve_tmp/q$i.code" &
  pids+=($!)
done
wait "${pids[@]}"
n429=$(cat "$_serve_tmp"/q*.code | grep -c 429)
n200=$(cat "$_serve_tmp"/q*.code | grep -c 200)
check "queue full: some requests get 429" test "$n429" -ge 1
check "queue full: admitted requests still succeed" test "$n200" -ge 2
check_contains "429 carries Retry-After" "$(cat "$_serve_tmp"/q*.hdr)" "Retry-After:"
REQ_TOKEN=none req GET /metrics
check_contains "metrics: queue depth" "$REQ_BODY" "stockade_engine_queue_depth"
check_contains "metrics: executions by status" "$REQ_BODY" 'stockade_executions_total{language="javascript",status="ok"}'
check_contains "metrics: rejected" "$REQ_BODY" 'stockade_executions_rejected_total{reason="queue_full"}'
check_contains "metrics: warm children prepared for pandas" "$REQ_BODY" 'stockade_engine_warm_children{pool="code-executor",language="python",prepared_for="pandas"}'

# ---- memory pressure -> 503 -------------------------------------------------------------------
stop_server
SERVE_ENV="STOCKADE_ENGINE_MEMORY_BUDGET_MB=200 STOCKADE_ENGINE_CONCURRENCY=4" start_server --role code-executor
curl -s --max-time 60 -H "Authorization: Bearer $TOKEN" -o "$_serve_tmp/hog.json" \
  -d '{"language":"python","code":"import time\nx = bytearray(180 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(3)\nreturn 1","memoryMb":256,"timeoutMs":20000}' \
  "$BASE_URL/api/v1/execute" &
hog=$!
used=0
for i in $(seq 1 40); do
  sleep 0.1
  REQ_TOKEN=none req GET /metrics
  used=$(echo "$REQ_BODY" | awk '/^stockade_engine_memory_used_bytes/ {print $2}')
  [ "${used:-0}" -gt $((160 << 20)) ] 2>/dev/null && break
done
if [ "${used:-0}" -gt $((160 << 20)) ] 2>/dev/null; then
  exec_js 'return 1'
  check_eq "memory above 80% of the budget: 503" "$REQ_STATUS" 503
  check_eq "503 code" "$(json_get "$REQ_BODY" .error.code)" memory_pressure
  check_contains "503 carries Retry-After" "$REQ_HEADERS" "Retry-After:"
else
  skip "memory above 80% of the budget: 503" "the engine does not report execution memory use"
fi
wait $hog

# ---- a zygote killed mid-run -----------------------------------------------------------------
descendants() { local p c; for p in "$@"; do for c in $(ps -o pid= --ppid "$p"); do echo "$c"; descendants "$c"; done; done; }
stop_server
start_server --role code-executor
# exec_killing_engines OUT BODY: send BODY, kill every engine process of the server a second
# later, wait for the answer in OUT.
exec_killing_engines() {
  curl -s --max-time 60 -H "Authorization: Bearer $TOKEN" -o "$1" -d "$2" "$BASE_URL/api/v1/execute" &
  local cpid=$!
  sleep 1
  kill -KILL $(descendants "$SERVER_PID") 2>/dev/null
  wait $cpid
}
# The execution runs again on the replacement, within its deadline (no effect of it leaves its
# process, so nothing of the first run shows).
exec_killing_engines "$_serve_tmp/zk.json" \
  '{"language":"javascript","code":"await new Promise(r => setTimeout(r, 1500)); return \"done\"","timeoutMs":30000}'
check_eq "execution whose zygote died: run again" "$(jq -c '[.status, .result]' "$_serve_tmp/zk.json")" '["ok","done"]'
# One that cannot finish in the time left ends as timeout, and says why.
exec_killing_engines "$_serve_tmp/zk2.json" \
  '{"language":"javascript","code":"await new Promise(r => setTimeout(r, 60000))","timeoutMs":15000}'
check_eq "run again, out of time: timeout" "$(jq -r .status "$_serve_tmp/zk2.json")" timeout
check_contains "run again, out of time: the message says so" "$(jq -r .error.message "$_serve_tmp/zk2.json")" "started again"
check_contains "the server logged the second run" "$(cat "$SERVER_LOG")" "running it again"
ok_after=
for i in $(seq 1 300); do
  exec_js 'return "alive"'
  [ "$(json_get "$REQ_BODY" .result)" = alive ] && { ok_after=1; break; }
  sleep 0.2
done
check_eq "the next request works after the zygote is replaced" "$ok_after" 1
for i in $(seq 1 300); do # every zygote back (readiness) before the next section
  REQ_TOKEN=none req GET /readyz
  [ "$REQ_STATUS" = 200 ] && break
  sleep 0.2
done
check_eq "ready again after the zygote was replaced" "$REQ_STATUS" 200

# ---- graceful shutdown with an execution in flight --------------------------------------------
curl -s --max-time 60 -H "Authorization: Bearer $TOKEN" -o "$_serve_tmp/gs.json" \
  -d '{"language":"python","code":"import time\ntime.sleep(1)\nreturn \"finished\"","timeoutMs":10000}' \
  "$BASE_URL/api/v1/execute" &
cpid=$!
for i in $(seq 1 100); do # until the execution is running
  REQ_TOKEN=none req GET /metrics
  echo "$REQ_BODY" | grep -q '^stockade_engine_in_flight{pool="code-executor"} [1-9]' && break
  sleep 0.1
done
kids_before=$(descendants "$SERVER_PID" | wc -l)
stop_server TERM; rc=$?
wait $cpid
check_eq "graceful stop: exit 0" "$rc" 0
check_eq "graceful stop: the in-flight execution finished" "$(jq -r .result "$_serve_tmp/gs.json" 2>/dev/null)" finished
echo "# in-flight reply: $(head -c 400 "$_serve_tmp/gs.json" 2>/dev/null)"
check "graceful stop: engine processes existed" test "$kids_before" -ge 1
leftover=$(ps -eo pid,args | grep -c "[s]tockade-engine-$SERVER_PID" || true)
check_eq "graceful stop: nothing orphaned" "$leftover" 0

# ---- configured limits: codeExecutor.limits.maxPids and tmpfsMb -------------------------------
printf 'codeExecutor:\n  limits:\n    maxPids: 16\n    tmpfsMb: 2\n' >"$_serve_tmp/limits.yaml"
if start_server --config "$_serve_tmp/limits.yaml" --role code-executor; then
  exec_py 'open("/tmp/f", "wb").write(b"x" * (1 << 20))
return 1'
  check_eq "tmpfsMb 2: 1 MiB fits in /tmp" "$(json_get "$REQ_BODY" .result)" 1
  exec_py 'open("/tmp/f", "wb").write(b"x" * (4 << 20))
return 1'
  check_eq "tmpfsMb 2: 4 MiB does not" "$(json_get "$REQ_BODY" .error.message)" \
    "[Errno 28] No space left on device"
  exec_py 'import threading
ev = threading.Event()
ts = []
try:
    for i in range(40):
        t = threading.Thread(target=ev.wait)
        t.start()
        ts.append(t)
except RuntimeError:
    pass
ev.set()
return len(ts)'
  n=$(json_get "$REQ_BODY" .result)
  check "maxPids 16: threads beyond it are refused (started: $n)" test "${n:-40}" -lt 16
  stop_server TERM
else
  not_ok "server starts with codeExecutor.limits"
fi

# ---- the explicit unsandboxed mode ----------------------------------------------------------
printf 'codeExecutor:\n  mode: unsandboxed\n' >"$_serve_tmp/unsandboxed.yaml"
if start_server --config "$_serve_tmp/unsandboxed.yaml" --role code-executor; then
  exec_py 'return 6 * 7'
  check_eq "unsandboxed: executions still run" "$(json_get "$REQ_BODY" .result)" 42
  check_eq "unsandboxed: every result says sandboxed:false" "$(json_get "$REQ_BODY" .sandboxed)" false
  REQ_TOKEN=none req GET /healthz
  check_eq "unsandboxed: /healthz is degraded" "$(json_get "$REQ_BODY" .status)" degraded
  check_contains "unsandboxed: /healthz warns" "$REQ_BODY" "UNSANDBOXED"
  check_contains "unsandboxed: warning at start" "$(cat "$SERVER_LOG")" "UNSANDBOXED"
  stop_server
else
  not_ok "server starts in unsandboxed mode"
fi

done_testing
