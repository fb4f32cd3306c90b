#!/usr/bin/env bash
# bench/sandbox.sh - agent sandbox speed, against `runsc do true` measured in the same run:
# warm-pool create (a claim), cold create, `echo hi` exec through the API (and its legs: HTTP alone,
# the agent alone, a shell, a static binary), snapshot and restore
# of a 100 MB workspace, and the idle memory of one sandbox (sentry + gofer, agent included).
# Then the same warm create and `echo hi` exec with `runtime: jail` (JAIL=0 skips that part).
# Needs root and runsc. Prints a Markdown table. Not a test: nothing here fails on slowness.
#   N=20 bash bench/sandbox.sh          (PAUSE=0 sends the requests back to back)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export STOCKADE_BIN=${STOCKADE_BIN:-$ROOT/build/stockade}
export STOCKADE_ROOT=$ROOT
N=${N:-15}
. "$ROOT/tests/e2e/sandbox-lib.bash"
sbx_can_run >/dev/null || { echo "needs root and runsc"; exit 1; }
trap sbx_cleanup EXIT

# Requests of one kind are sent one after another with PAUSE seconds between them, as an
# interactive client (an agent that reads each result) does; PAUSE=0 measures back to back.
PAUSE=${PAUSE:-0.05}
p50() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else printf "%.1f", a[int((NR+1)/2)]}'; }
ms_of() { awk '{printf "%.2f\n", $1*1000}'; }

# Baseline: runsc start-up for a trivial command, same flags as the service.
base_root=$SBX_D/base-root
# Once first, checked: the time of a failing command is no baseline.
if ! err=$(runsc --root="$base_root" --platform=ptrace --network=none do true 2>&1 >/dev/null); then
  echo "baseline failed: runsc --platform=ptrace --network=none do true: ${err: -600}" >&2
  exit 1
fi
for _ in $(seq 1 5); do
  s=$(date +%s%N)
  runsc --root="$base_root" --platform=ptrace --network=none do true >/dev/null 2>&1
  echo $(( ($(date +%s%N) - s) / 1000 ))
done | awk '{print $1/1000}' >"$SBX_D/base"
base=$(p50 <"$SBX_D/base")
# Baseline: the same command started on the host itself, no sandbox (posix_spawn + wait).
host_echo=$(python3 - "$N" <<'PY'
import os, sys, time
ts = []
for _ in range(int(sys.argv[1]) * 2):
    t = time.perf_counter()
    pid = os.posix_spawn("/bin/echo", ["echo", "hi"], dict(os.environ),
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)])
    os.waitpid(pid, 0)
    ts.append((time.perf_counter() - t) * 1000)
ts.sort()
print("%.1f" % ts[(len(ts) + 1) // 2 - 1])
PY
)

sbx_config "    scaling: {prewarmPoolSize: 2, maxTotalJobs: 20, maxConcurrentCreates: 2, perUserSandboxLimit: 20}" \
  "workspaceSizeMb: 512, memoryMb: 1024"
sbx_start || exit 1

wait_pool() { # wait until the pool has $1 ready sandboxes (containers minus claimed ones)
  local want=$1 claimed=$2
  for _ in $(seq 1 300); do
    local n
    n=$(sbx_runtime_ids | grep -c '^sb-')
    [ $((n - claimed)) -ge "$want" ] && sleep 0.3 && return 0
    sleep 0.1
  done
}

# Warm create: the pool holds 2; claim, delete, let it refill.
wait_pool 2 0
for _ in $(seq 1 "$N"); do
  t=$(curl -s -o "$SBX_D/c" -w '%{time_total}' -X POST -H "Authorization: Bearer $TOKA" "$SBX_U/api/v1/sandboxes" -d '{}')
  id=$(jq -r .id <"$SBX_D/c")
  echo "$t" | ms_of >>"$SBX_D/warm"
  curl -s -o /dev/null -X DELETE -H "Authorization: Bearer $TOKA" "$SBX_U/api/v1/sandboxes/$id"
  wait_pool 2 0
done
warm=$(p50 <"$SBX_D/warm")

# exec `echo hi` through the API (HTTP + agent + fork/exec inside gVisor).
create
A=$SBX_ID
SOCK=$SBX_STATE/sb/$A/chan/agent.sock
# Legs of an exec, each measured alone: the HTTP round trip without the agent (GET of the
# sandbox), the agent round trip without a command (ping over its socket from the host), and
# the same `echo hi` sent straight to the agent (no HTTP).
for _ in $(seq 1 "$((N * 2))"); do
  curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKA" "$SBX_U/api/v1/sandboxes/$A" | ms_of
done >"$SBX_D/http"
http_p50=$(p50 <"$SBX_D/http")
agent_rtt() { # agent_rtt PAUSE N op [cmd args...]: one line per request, milliseconds
  python3 - "$SOCK" "$@" <<'PY'
import socket, struct, sys, time
sock, pause, n, op, argv = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
kv = [("op", op)] + ([("cmd", argv[0])] + [("arg", a) for a in argv[1:]] if argv else [])
req = b"".join(k.encode() + b"=" + v.encode() + b"\0" for k, v in kv)
for _ in range(n):
    time.sleep(pause)
    t = time.perf_counter()
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b"Q" + struct.pack(">I", len(req)) + req)
    while True:  # until the reply (ping) or the exit record (exec), then EOF
        h = s.recv(5, socket.MSG_WAITALL)
        if len(h) < 5:
            break
        n2 = struct.unpack(">I", h[1:])[0]
        if n2:
            s.recv(n2, socket.MSG_WAITALL)
        if h[:1] in (b"X", b"R") or (op == "ping" and h[:1] == b"K"):
            break
    s.close()
    print("%.2f" % ((time.perf_counter() - t) * 1000))
PY
}
agent_rtt "$PAUSE" "$((N * 2))" ping >"$SBX_D/ping"
ping_p50=$(p50 <"$SBX_D/ping")
agent_rtt "$PAUSE" "$((N * 2))" exec echo hi >"$SBX_D/direct"
direct_p50=$(p50 <"$SBX_D/direct")
agent_rtt 0 "$((N * 2))" exec echo hi >"$SBX_D/b2b"
b2b_p50=$(p50 <"$SBX_D/b2b")
# The same through a shell, and a static binary that does nothing (no ld.so, no locale).
for _ in $(seq 1 "$N"); do
  sleep "$PAUSE"
  curl -s -o /dev/null -w '%{time_total}\n' -X POST -H "Authorization: Bearer $TOKA" \
    "$SBX_U/api/v1/sandboxes/$A/exec" -d '{"cmd":"sh","args":["-c","echo hi"]}' | ms_of
done >"$SBX_D/sh"
sh_p50=$(p50 <"$SBX_D/sh")
static_p50=n/a
if printf 'int main(void){return 0;}\n' | gcc -x c -O2 -static -o "$SBX_D/static-true" - 2>/dev/null; then
  api PUT "/api/v1/sandboxes/$A/files?path=static-true" --data-binary @"$SBX_D/static-true" >/dev/null
  api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"chmod","args":["755","static-true"]}' >/dev/null
  for _ in $(seq 1 "$N"); do
    sleep "$PAUSE"
    curl -s -o /dev/null -w '%{time_total}\n' -X POST -H "Authorization: Bearer $TOKA" \
      "$SBX_U/api/v1/sandboxes/$A/exec" -d '{"cmd":"./static-true"}' | ms_of
  done >"$SBX_D/static"
  static_p50=$(p50 <"$SBX_D/static")
fi
for _ in $(seq 1 "$((N * 2))"); do
  sleep "$PAUSE"
  curl -s -o /dev/null -w '%{time_total}\n' -X POST -H "Authorization: Bearer $TOKA" \
    "$SBX_U/api/v1/sandboxes/$A/exec" -d '{"cmd":"echo","args":["hi"]}' | ms_of
done >"$SBX_D/exec"
exec_p50=$(p50 <"$SBX_D/exec")
# The agent's own view: wall time of the command from spawn to exit inside the sandbox.
for _ in $(seq 1 "$N"); do
  sleep "$PAUSE"
  api POST "/api/v1/sandboxes/$A/exec" -d '{"cmd":"echo","args":["hi"]}' | jq -r .wallMs
done >"$SBX_D/execin"
execin=$(p50 <"$SBX_D/execin")

# Idle memory of one sandbox: PSS of its runsc processes (the agent runs inside the sentry).
sleep 2
pss=0
for pid in $(pgrep -f "runsc.*$A"); do
  v=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null)
  pss=$((pss + ${v:-0}))
done
rss=0
for pid in $(pgrep -f "runsc.*$A"); do
  v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
  rss=$((rss + ${v:-0}))
done

# Snapshot and restore of a 100 MB workspace (incompressible data: the worst case for zstd).
head -c 100000000 /dev/urandom >"$SBX_D/100m"
api PUT "/api/v1/sandboxes/$A/files?path=big/100m.bin" --data-binary @"$SBX_D/100m" >/dev/null
snap_t=$(curl -s -o "$SBX_D/s" -w '%{time_total}' -X POST -H "Authorization: Bearer $TOKA" "$SBX_U/api/v1/sandboxes/$A/snapshots" | ms_of)
SNAP=$(jq -r .id <"$SBX_D/s")
snap_size=$(jq -r .sizeBytes <"$SBX_D/s")
rest_t=$(curl -s -o "$SBX_D/r" -w '%{time_total}' -X POST -H "Authorization: Bearer $TOKA" "$SBX_U/api/v1/sandboxes" -d "{\"fromSnapshot\":\"$SNAP\"}" | ms_of)
R=$(jq -r .id <"$SBX_D/r")
same=$(api POST "/api/v1/sandboxes/$R/exec" -d '{"cmd":"md5sum","args":["big/100m.bin"]}' | jq -r .stdout | cut -d' ' -f1)
[ "$same" = "$(md5sum <"$SBX_D/100m" | cut -d' ' -f1)" ] && same=identical || same=DIFFERENT
api DELETE "/api/v1/sandboxes/$R" >/dev/null
api DELETE "/api/v1/sandboxes/$A" >/dev/null

# Cold create: an empty pool (restart with prewarmPoolSize 0).
sbx_stop
sed -i 's/prewarmPoolSize: 2/prewarmPoolSize: 0/' "$SBX_D/cfg.yaml"
sbx_start || exit 1
for _ in $(seq 1 "$((N / 2 + 1))"); do
  t=$(curl -s -o "$SBX_D/c" -w '%{time_total}' -X POST -H "Authorization: Bearer $TOKA" "$SBX_U/api/v1/sandboxes" -d '{}')
  id=$(jq -r .id <"$SBX_D/c")
  echo "$t" | ms_of >>"$SBX_D/cold"
  curl -s -o /dev/null -X DELETE -H "Authorization: Bearer $TOKA" "$SBX_U/api/v1/sandboxes/$id"
done
cold=$(p50 <"$SBX_D/cold")

# The same warm create and exec with `runtime: jail` (the service restarted on that runtime).
jwarm=n/a jexec=n/a jexecin=n/a jdirect=n/a
if [ "${JAIL:-1}" = 1 ]; then
  sbx_stop
  sed -i 's/prewarmPoolSize: 0/prewarmPoolSize: 2/; s/runtime: gvisor/runtime: jail/' "$SBX_D/cfg.yaml"
  SBX_RUNTIME=jail
  sbx_start || exit 1
  wait_pool 2 0
  for _ in $(seq 1 "$N"); do
    t=$(curl -s -o "$SBX_D/c" -w '%{time_total}' -X POST -H "Authorization: Bearer $TOKA" "$SBX_U/api/v1/sandboxes" -d '{}')
    id=$(jq -r .id <"$SBX_D/c")
    echo "$t" | ms_of >>"$SBX_D/jwarm"
    curl -s -o /dev/null -X DELETE -H "Authorization: Bearer $TOKA" "$SBX_U/api/v1/sandboxes/$id"
    wait_pool 2 0
  done
  jwarm=$(p50 <"$SBX_D/jwarm")
  create
  J=$SBX_ID
  SOCK=$SBX_STATE/sb/$J/chan/agent.sock
  agent_rtt "$PAUSE" "$((N * 2))" exec echo hi >"$SBX_D/jdirect"
  jdirect=$(p50 <"$SBX_D/jdirect")
  for _ in $(seq 1 "$((N * 2))"); do
    sleep "$PAUSE"
    curl -s -o /dev/null -w '%{time_total}\n' -X POST -H "Authorization: Bearer $TOKA" \
      "$SBX_U/api/v1/sandboxes/$J/exec" -d '{"cmd":"echo","args":["hi"]}' | ms_of
  done >"$SBX_D/jexec"
  jexec=$(p50 <"$SBX_D/jexec")
  for _ in $(seq 1 "$N"); do
    sleep "$PAUSE"
    api POST "/api/v1/sandboxes/$J/exec" -d '{"cmd":"echo","args":["hi"]}' | jq -r .wallMs
  done >"$SBX_D/jexecin"
  jexecin=$(p50 <"$SBX_D/jexecin")
  api DELETE "/api/v1/sandboxes/$J" >/dev/null
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
cat <<EOF
## Agent sandbox ($(date -u +%Y-%m-%d\ %H:%M) UTC, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), runsc $(runsc --version | head -1 | awk '{print $3}'), platform ptrace, pause ${PAUSE}s)

| measure | p50 | vs \`runsc do true\` ($base ms) | goal |
|---|---|---|---|
| create from the warm pool (HTTP, claim + token) | $warm ms | $(ratio "$warm" "$base") | ≤ 20 ms |
| cold create (boot + agent ready, HTTP) | $cold ms | $(ratio "$cold" "$base") | reported |
| \`echo hi\` exec through the API (HTTP round trip) | $exec_p50 ms | $(ratio "$exec_p50" "$base") | ≤ 10 ms |
| baseline: \`echo hi\` spawned on the host itself, no sandbox | $host_echo ms | $(ratio "$host_echo" "$base") | |
| \`echo hi\` spawn → exit inside the sandbox (agent's wallMs) | $execin ms | | |
| leg: HTTP round trip without the agent (GET of the sandbox) | $http_p50 ms | | |
| leg: agent round trip without a command (ping, host → agent → host) | $ping_p50 ms | | |
| leg: \`echo hi\` straight to the agent socket (no HTTP) | $direct_p50 ms | | |
| the same back to back (no pause: each handler is replaced while the next request runs) | $b2b_p50 ms | | |
| \`sh -c 'echo hi'\` exec through the API | $sh_p50 ms | $(ratio "$sh_p50" "$base") | |
| a static binary that does nothing, exec through the API | $static_p50 ms | $(ratio "$static_p50" "$base") | |
| snapshot of a 100 MB workspace (pause, tar+zstd, AES-GCM, store) | $snap_t ms | | reported |
| restore of it (create fromSnapshot: verify, extract) | $rest_t ms ($same) | | reported |
| sealed snapshot size | $snap_size bytes | | |
| idle sandbox memory, PSS (sentry + gofer + agent) | $((pss / 1024)) MiB (RSS $((rss / 1024)) MiB) | | reported |
| \`runtime: jail\`: create from the warm pool (HTTP, claim + token) | $jwarm ms | $(ratio "$jwarm" "$base") | ≤ 20 ms |
| \`runtime: jail\`: \`echo hi\` exec through the API (HTTP round trip) | $jexec ms | $(ratio "$jexec" "$base") | ≤ 3 ms |
| \`runtime: jail\`: \`echo hi\` straight to the agent's socket (no HTTP) | $jdirect ms | | |
| \`runtime: jail\`: \`echo hi\` fork → exit inside the sandbox (agent's wallMs) | $jexecin ms | | |
EOF
