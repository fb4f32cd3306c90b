#!/usr/bin/env bash
# bench/exec-http.sh - executions over HTTP on loopback with keep-alive, against spawning an
# interpreter under bwrap per request, in the same invocation.
#
#   bash bench/exec-http.sh [--record]      (--record appends a dated section to bench/RESULTS.md)
#
# Cases: `return 1+1` in JavaScript and Python, and Python using pandas (a DataFrame sum), each
# back to back (closed loop) and spaced (50 ms between a reply and the next request).
# Stockade: `stockade serve --role code-executor` (release build) driven by bench/httpload.c
# (libcurl multi, keep-alive), one connection for latency and 4 for throughput.
# Also the host's ceiling for forking a zygote per execution (bench/forkceil.c).
# Baselines: `bwrap ... node -e`, `bwrap ... python3 -c`, and `bwrap ... python3 -c 'import
# pandas ...'`, run sequentially from a small Python timer (its own overhead, ~1 ms, counts
# against the baseline, which makes the ratios conservative). The interpreters are named by
# path: Debian's /usr/bin/python3 (the CPython whose libpython the engine embeds, with
# python3-pandas) and the node on PATH resolved, never a version manager's shim earlier on
# PATH (a shim adds its own start-up, and its Python may not have pandas). A baseline whose
# command fails stops the run: timing an error would make a meaningless ratio.
# Env: N (requests per Stockade case, default 300), BN (runs per baseline, default 10);
# STOCKADE_ENGINE_WARM / STOCKADE_ENGINE_PREFAULT (docs/engines.md) pass through to the
# server, e.g. =0 to measure without warm children or prefaulting.
# Not a test: nothing here fails because the machine is slow.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${STOCKADE_BIN:-$ROOT/build/stockade}
N=${N:-300}
BN=${BN:-10}
RECORD=0; [ "${1:-}" = --record ] && RECORD=1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/stockade-bench.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

[ -x "$BIN" ] || { echo "build first: make build" >&2; exit 1; }
cc -O2 -o "$TMP/httpload" "$ROOT/bench/httpload.c" $(pkg-config --cflags --libs libcurl) || exit 1

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=bench_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
STOCKADE_API_TOKEN=$TOKEN "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" \
  --role code-executor >"$TMP/server.log" 2>&1 &
PID=$!
for i in $(seq 1 300); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && break
  kill -0 "$PID" 2>/dev/null || { cat "$TMP/server.log"; exit 1; }
  sleep 0.1
done
URL=http://127.0.0.1:$PORT/api/v1/execute

body() { jq -cn --arg l "$1" --arg c "$2" '{language:$l, code:$c}'; }
JS_TRIVIAL=$(body javascript 'return 1+1')
PY_TRIVIAL=$(body python 'return 1+1')
PY_PANDAS=$(body python 'import pandas as pd
return int(pd.DataFrame({"a": [1, 2, 3]})["a"].sum())')

load() { # name body conns n
  "$TMP/httpload" -u "$URL" -m POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "$2" -c "$3" -n "$4" -w 50 -e '"status":"ok"' \
    >"$TMP/$1.json" || echo "# $1: some requests failed" >&2
}
load js1 "$JS_TRIVIAL" 1 "$N"
load js4 "$JS_TRIVIAL" 4 "$N"
load py1 "$PY_TRIVIAL" 1 "$N"
load py4 "$PY_TRIVIAL" 4 "$N"
load pd1 "$PY_PANDAS" 1 "$((N / 4))"
load pd4 "$PY_PANDAS" 4 "$((N / 4))"
# An interactive client: one connection, 50 ms between a reply and the next request, so warm
# children are ready when a request comes (the rows above send back to back, which drains them).
spaced() { # name body n
  "$TMP/httpload" -u "$URL" -m POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "$2" -c 1 -n "$3" -w 5 -p 50 -e '"status":"ok"' \
    >"$TMP/$1.json" || echo "# $1: some requests failed" >&2
}
spaced jsp "$JS_TRIVIAL" "$((N / 3))"
spaced pyp "$PY_TRIVIAL" "$((N / 3))"
spaced pdp "$PY_PANDAS" "$((N / 6))"

# the HTTP layer's own floor: a request that runs no code (health checks included)
"$TMP/httpload" -u "http://127.0.0.1:$PORT/healthz" -c 1 -n "$((N * 5))" -w 50 >"$TMP/hz.json" || true
mem=$(curl -s -H "Authorization: Bearer $TOKEN" -d "$PY_PANDAS" "$URL" | jq -r .stats.maxRssKb)
memjs=$(curl -s -H "Authorization: Bearer $TOKEN" -d "$JS_TRIVIAL" "$URL" | jq -r .stats.maxRssKb)
metrics=$(curl -s "http://127.0.0.1:$PORT/metrics")
zrss_js=$(echo "$metrics" | awk '/^stockade_engine_zygote_rss_bytes.*javascript/ {print int($2/1048576)}' | head -1)
zrss_py=$(echo "$metrics" | awk '/^stockade_engine_zygote_rss_bytes.*python/ {print int($2/1048576)}' | head -1)
kill -TERM "$PID"; wait "$PID" 2>/dev/null; PID=

# baselines: one fresh sandboxed interpreter per request
NODE=$(readlink -f "$(command -v node)")
/usr/bin/python3 - "$BN" "$NODE" >"$TMP/base.json" <<'PY' || exit 1
import json, subprocess, sys, time
n, node = int(sys.argv[1]), sys.argv[2]
bw = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev",
      "--proc", "/proc", "--tmpfs", "/tmp", "--new-session"]
cases = {
    "node": (bw + [node, "-e", "console.log(1+1)"], b"2"),
    "python": (bw + ["/usr/bin/python3", "-c", "print(1+1)"], b"2"),
    "pandas": (bw + ["/usr/bin/python3", "-c",
                     "import pandas as pd; print(int(pd.DataFrame({'a':[1,2,3]})['a'].sum()))"],
               b"6"),
}
out = {}
for name, (cmd, want) in cases.items():
    r = subprocess.run(cmd, capture_output=True)  # warms caches, and checks the command works
    if r.returncode != 0 or r.stdout.strip() != want:
        sys.exit("baseline %s failed (exit %d, stdout %r): %s\n%s" % (
            name, r.returncode, r.stdout[:200], " ".join(cmd), r.stderr.decode(errors="replace")[-600:]))
    lat = []
    t_all = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        lat.append((time.perf_counter() - t0) * 1000)
        if r.returncode != 0 or r.stdout.strip() != want:
            sys.exit("baseline %s failed on run %d (exit %d)" % (name, len(lat), r.returncode))
    secs = time.perf_counter() - t_all
    lat.sort()
    out[name] = {"p50_ms": lat[len(lat) // 2], "p99_ms": lat[min(len(lat) - 1, int(0.99 * (len(lat) - 1) + 0.5))],
                 "rps": n / secs}
print(json.dumps(out))
PY

# The host's ceiling for any fork-per-execution design: a process the JavaScript zygote's size
# forking children that each write ~300 pages (what a trivial execution's child writes:
# bench/RESULTS.md, "Where a JavaScript execution's time goes") and exit, one worker per CPU.
CEIL=
if cc -std=gnu17 -O2 -Wall -o "$TMP/forkceil" "$ROOT/bench/forkceil.c"; then
  "$TMP/forkceil" "${zrss_js:-93}" 300 >"$TMP/ceil.txt" 2>&1 || true
  CEIL=$(awk '/namespaces/ {for (i = 1; i <= NF; i++) if ($(i+1) == "/s") print $i}' "$TMP/ceil.txt")
fi

j() { jq -r "$2" "$TMP/$1.json"; }
b() { jq -r "$1" "$TMP/base.json"; }
ratio() { python3 -c "print(f'{$1 / $2:.1f}x')"; }
date_s=$(date -u +%Y-%m-%dT%H:%MZ)
report=$(cat <<MD
### exec-http ($date_s, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), N=$N, baseline runs=$BN, warm children ${STOCKADE_ENGINE_WARM:-default}, prefault ${STOCKADE_ENGINE_PREFAULT:-default})

| case | p50 ms | p99 ms | exec/s (1 conn) | exec/s (4 conns) |
|---|---|---|---|---|
| Stockade JS \`return 1+1\` | $(j js1 .p50_ms) | $(j js1 .p99_ms) | $(j js1 .rps) | $(j js4 .rps) |
| Stockade Python \`return 1+1\` | $(j py1 .p50_ms) | $(j py1 .p99_ms) | $(j py1 .rps) | $(j py4 .rps) |
| Stockade Python pandas | $(j pd1 .p50_ms) | $(j pd1 .p99_ms) | $(j pd1 .rps) | $(j pd4 .rps) |
| spaced (50 ms pause, 1 conn): JS | $(j jsp .p50_ms) | $(j jsp .p99_ms) | | |
| spaced (50 ms pause, 1 conn): Python | $(j pyp .p50_ms) | $(j pyp .p99_ms) | | |
| spaced (50 ms pause, 1 conn): pandas | $(j pdp .p50_ms) | $(j pdp .p99_ms) | | |
| HTTP floor: \`GET /healthz\` (no execution) | $(j hz .p50_ms) | $(j hz .p99_ms) | $(j hz .rps) | |
| bwrap + \`node -e\` | $(b '.node.p50_ms*1000|round/1000') | $(b '.node.p99_ms*1000|round/1000') | $(b '.node.rps*10|round/10') | |
| bwrap + \`/usr/bin/python3 -c\` | $(b '.python.p50_ms*1000|round/1000') | $(b '.python.p99_ms*1000|round/1000') | $(b '.python.rps*10|round/10') | |
| bwrap + /usr/bin/python3 importing pandas | $(b '.pandas.p50_ms*1000|round/1000') | $(b '.pandas.p99_ms*1000|round/1000') | $(b '.pandas.rps*10|round/10') | |
| host ceiling: clone of a ${zrss_js:-93} MiB process, child writes 300 pages and exits (bench/forkceil.c, $(nproc) workers) | | | | ${CEIL:-?} |

Ratios of p50 latency (baseline / Stockade): JS $(ratio "$(b .node.p50_ms)" "$(j js1 .p50_ms)"),
Python $(ratio "$(b .python.p50_ms)" "$(j py1 .p50_ms)"), pandas $(ratio "$(b .pandas.p50_ms)" "$(j pd1 .p50_ms)");
spaced: JS $(ratio "$(b .node.p50_ms)" "$(j jsp .p50_ms)"), Python $(ratio "$(b .python.p50_ms)" "$(j pyp .p50_ms)"), pandas $(ratio "$(b .pandas.p50_ms)" "$(j pdp .p50_ms)").
Errors (Stockade): JS $(j js1 .errors)/$(j js4 .errors), Python $(j py1 .errors)/$(j py4 .errors), pandas $(j pd1 .errors)/$(j pd4 .errors).
Zygote RSS: JavaScript ${zrss_js:-?} MiB, Python (numpy+pandas imported) ${zrss_py:-?} MiB; per-execution max RSS
(the forked child, shared pages included): JS ${memjs:-?} KiB, Python pandas ${mem:-?} KiB.

\`\`\`
$(cat "$TMP/ceil.txt" 2>/dev/null)
\`\`\`
MD
)
echo "$report"
if [ "$RECORD" = 1 ]; then
  [ -f "$ROOT/bench/RESULTS.md" ] || printf '# Benchmark results\n' >"$ROOT/bench/RESULTS.md"
  { echo; echo "$report"; } >>"$ROOT/bench/RESULTS.md"
  echo "(appended to bench/RESULTS.md)"
fi
