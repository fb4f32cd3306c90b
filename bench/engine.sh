#!/usr/bin/env bash
# bench/engine.sh - in-process engine latency (`stockade run --repeat N`: zygote fork, jail,
# run, result; no HTTP) against spawning an interpreter per request under bubblewrap.
# Prints one JSON line per case. Not a test: numbers depend on the machine and its load.
#   bash bench/engine.sh [N]
# COMPARE=1 also runs the trivial cases with warm children and prefaulting switched off
# (STOCKADE_ENGINE_WARM=0 STOCKADE_ENGINE_PREFAULT=0), interleaved, to show what they buy.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${STOCKADE_BIN:-$ROOT/build/stockade}
N=${1:-200}
NB=${BWRAP_RUNS:-$(( N < 50 ? N : 50 ))}

engine() { # name lang code [extra args]
  local name=$1 lang=$2 code=$3; shift 3
  printf '{"case":"%s",' "$name"
  "$B" run --lang "$lang" --repeat "$N" -c "$code" "$@" | sed 's/^{//'
}

# p50/p99 of N wall-clock runs of a command, in ms. A command that fails is reported, not
# timed: the time of an error is no baseline.
spawn() { # name cmd...
  local name=$1; shift
  local ts=() err
  if ! err=$("$@" 2>&1 >/dev/null); then
    printf '{"case":"%s","error":%s}\n' "$name" "$(printf '%s' "$err" | tail -c 600 | jq -Rs .)"
    return 0
  fi
  for ((i = 0; i < NB; i++)); do
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    ts+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${ts[@]}" | sort -n | awk -v name="$name" -v n="$NB" '
    { v[NR] = $1 } END {
      i99 = int(n * 0.99); if (i99 < 1) i99 = 1
      printf "{\"case\":\"%s\",\"runs\":%d,\"p50Ms\":%.3f,\"p99Ms\":%.3f}\n", name, n,
        v[int(n * 0.5) + 1] / 1000, v[i99] / 1000 }'
}

BWRAP=(bwrap --ro-bind /usr /usr --ro-bind /etc /etc --symlink usr/lib /lib --symlink usr/lib64 /lib64
       --symlink usr/bin /bin --proc /proc --dev /dev --tmpfs /tmp --unshare-all
       --die-with-parent)

echo "# load: $(cut -d' ' -f1-3 /proc/loadavg), cpus: $(nproc)"
engine engine-js-1plus1 javascript 'return 1+1'
engine engine-python-1plus1 python 'return 1+1'
engine engine-python-pandas python 'import pandas as pd
df = pd.DataFrame({"a": range(100), "b": range(100)})
return int(df["a"].sum() + df["b"].mean())'
engine engine-js-lodash javascript 'const _ = require("lodash"); return _.sum(_.range(100))'
if [ "${COMPARE:-0}" = 1 ]; then
  for round in 1 2; do
    STOCKADE_ENGINE_WARM=0 STOCKADE_ENGINE_PREFAULT=0 engine "engine-js-1plus1-cold-$round" javascript 'return 1+1'
    engine "engine-js-1plus1-warm-$round" javascript 'return 1+1'
    STOCKADE_ENGINE_WARM=0 STOCKADE_ENGINE_PREFAULT=0 engine "engine-python-1plus1-cold-$round" python 'return 1+1'
    engine "engine-python-1plus1-warm-$round" python 'return 1+1'
  done
fi
if command -v bwrap >/dev/null; then
  # Debian's interpreter by path: the CPython the engine embeds, with python3-pandas.
  spawn bwrap-python3-1plus1 "${BWRAP[@]}" /usr/bin/python3 -c 'print(1+1)'
  spawn bwrap-python3-pandas "${BWRAP[@]}" /usr/bin/python3 -c 'import pandas as pd; print(int(pd.DataFrame({"a": range(100)})["a"].sum()))'
  if command -v node >/dev/null; then
    NODE=$(readlink -f "$(command -v node)")
    spawn bwrap-node-1plus1 "${BWRAP[@]}" --ro-bind "$NODE" "$NODE" "$NODE" -e 'console.log(1+1)'
  fi
else
  echo '# bwrap not installed: no baseline'
fi
# Memory: zygote RSS is printed above (zygoteRssKb); per-execution memory is the cgroup peak:
for lang in javascript python; do
  printf '{"case":"per-execution-memory-%s","maxRssKb":%s}\n' "$lang" \
    "$("$B" run --lang "$lang" -c 'return 1+1' | jq .stats.maxRssKb)"
done
