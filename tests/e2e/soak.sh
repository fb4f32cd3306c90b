#!/usr/bin/env bash
# soak.sh - many executions of every kind, from several clients at once, against one
# code-executor; afterwards the service holds what it held before: no file descriptors,
# threads, mounts or per-execution cgroups left behind, no zombie processes, and it answers.
# Each execution must end with its own status (ok, error, timeout, memory_limit,
# output_limit, sandbox_violation), whatever runs beside it.
#
# By default a short run (4 clients x 3 rounds of the 12 cases) that is part of the suite.
# STOCKADE_SOAK_SECONDS=N keeps the clients going for N seconds instead (`make soak`: 600),
# and then also reports the server's resident memory before and after.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../lib-serve.sh"

SOAK_SECONDS=${STOCKADE_SOAK_SECONDS:-0}
CLIENTS=4
ROUNDS=3

start_role code-executor
exec_js 'return 1'
if [ "$(json_get "$REQ_BODY" .status)" != ok ]; then
  skip "soak" "the engine cannot run here: $REQ_BODY"; done_testing; exit 0
fi

# The cases: name, language, timeoutMs, memoryMb, expected status, code.
W=$(mktemp -d)
cleanup_soak() { _serve_cleanup; rm -rf "$W"; }
trap cleanup_soak EXIT
case_file=$W/cases.jsonl
add_case() { # name lang timeout memory status code
  jq -cn --arg n "$1" --arg l "$2" --argjson t "$3" --argjson m "$4" --arg s "$5" --arg c "$6" \
    '{name:$n, want:$s, body:{language:$l, code:$c, timeoutMs:$t, memoryMb:$m}}' >>"$case_file"
}
add_case js-ok javascript 5000 128 ok 'return [1, 2, 3].map(x => x * 2)'
add_case py-ok python 5000 128 ok 'return sum(range(10))'
add_case js-throw javascript 5000 128 error 'throw new TypeError("soak")'
add_case py-raise python 5000 128 error 'raise ValueError("soak")'
add_case js-timeout javascript 200 128 timeout 'while (true) {}'
add_case py-timeout python 200 128 timeout 'while True: pass'
add_case js-memory javascript 5000 64 memory_limit 'let a = []; while (true) a.push(new Array(1e6).fill(1))'
add_case py-flood python 5000 128 output_limit 'while True: print("x" * 10000)'
add_case py-violation python 5000 128 sandbox_violation 'import ctypes
ctypes.CDLL(None).syscall(165, 0, 0, 0, 0, 0)'
add_case py-fork python 3000 128 ok 'import os
while True:
    try:
        os.fork()
    except OSError:
        return "refused"'
add_case js-async javascript 5000 128 ok 'await new Promise(r => setTimeout(r, 5)); return "late"'
add_case py-tmp python 5000 128 ok 'open("/tmp/soak", "w").write("x" * 100000)
return len(open("/tmp/soak").read())'
n_cases=$(wc -l <"$case_file")

# One client: sends every case in turn, round after round (or until the deadline), and
# writes "<case> <http status> <execution status>" per request.
client() { # id
  local id=$1 round=0 deadline=$(($(date +%s) + SOAK_SECONDS)) name body want code st
  while :; do
    round=$((round + 1))
    if [ "$SOAK_SECONDS" -gt 0 ]; then
      [ "$(date +%s)" -lt "$deadline" ] || break
    else
      [ "$round" -le "$ROUNDS" ] || break
    fi
    while IFS= read -r line; do
      name=$(jq -r .name <<<"$line"); want=$(jq -r .want <<<"$line")
      body=$(jq -c .body <<<"$line")
      code=$(curl -s -o "$W/c$id.body" -w '%{http_code}' --max-time 60 \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary "$body" "$BASE_URL/api/v1/execute")
      st=$(jq -r .status "$W/c$id.body" 2>/dev/null)
      echo "$name $want $code ${st:-none}" >>"$W/c$id.log"
    done <"$case_file"
  done
}

# The per-execution cgroups live under the service's own one, next to the test's cgroup.
cg_dir=$(engine_cgroup_parent)/stockade-engine-$SERVER_PID

# What the service holds: fds threads mounts cgroups zombies processes rss-kb
holdings() {
  local fds thr mnt cg zomb procs rss
  fds=$(find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  thr=$(find "/proc/$SERVER_PID/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  mnt=$(wc -l <"/proc/$SERVER_PID/mountinfo")
  cg=$(find "$cg_dir" -mindepth 1 -type d 2>/dev/null | wc -l)
  # every descendant of the server, and which of them are zombies
  read -r procs zomb < <(ps -e -o pid=,ppid=,stat= | awk -v root="$SERVER_PID" '
    { parent[$1] = $2; stat[$1] = $3 }
    END {
      n = 0; z = 0
      for (p in parent) {
        q = p
        while (q in parent && q != root && q > 1) q = parent[q]
        if (q == root && p != root) { n++; if (stat[p] ~ /^Z/) z++ }
      }
      print n, z
    }')
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status")
  echo "$fds $thr $mnt $cg $zomb $procs $rss"
}

# Settled: no execution running, the warm children back, nothing left to reap. Waits (up to
# 60 s) until two readings a second apart agree and hold no zombie, then prints the reading.
settled() {
  local a b i
  a=$(holdings)
  for i in $(seq 1 60); do
    sleep 1
    b=$(holdings)
    if [ "$a" = "$b" ] || [ "$(cut -d' ' -f1-5 <<<"$a")" = "$(cut -d' ' -f1-5 <<<"$b")" ]; then
      [ "$(cut -d' ' -f5 <<<"$b")" = 0 ] && break
    fi
    a=$b
  done
  echo "$b"
}

# One pass of every case first, so that whatever the service creates lazily exists before
# the baseline is taken.
client warm
rm -f "$W/cwarm.log"
before=$(settled)
read -r fds0 thr0 mnt0 cg0 _ _ rss0 <<<"$before"

pids=()
for c in $(seq 1 "$CLIENTS"); do
  client "$c" &
  pids+=($!)
done
wait "${pids[@]}"

cat "$W"/c[0-9]*.log >"$W/all.log"
total=$(wc -l <"$W/all.log")
check "the clients sent at least one round of every case ($total requests)" \
  test "$total" -ge $((CLIENTS * n_cases))
check_eq "every request answered 200" "$(awk '$3 != 200' "$W/all.log" | head -3)" ""
while IFS= read -r line; do
  name=$(jq -r .name <<<"$line"); want=$(jq -r .want <<<"$line")
  got=$(awk -v n="$name" '$1 == n { print $4 }' "$W/all.log" | sort | uniq -c | tr -s ' ' | sed 's/^ //')
  check_eq "$name: every run ended '$want'" "$got" "$(awk -v n="$name" '$1 == n' "$W/all.log" | wc -l) $want"
done <"$case_file"

after=$(settled)
read -r fds1 thr1 mnt1 cg1 zomb1 _ rss1 <<<"$after"
echo "# before: fds threads mounts cgroups zombies processes rssKiB = $before"
echo "# after:  $after"
check "no file descriptors left behind ($fds0 -> $fds1)" test "$fds1" -le $((fds0 + 4))
check "no threads left behind ($thr0 -> $thr1)" test "$thr1" -le $((thr0 + 2))
check_eq "no mounts left behind" "$mnt1" "$mnt0"
if [ -d "$cg_dir" ]; then
  check "no per-execution cgroups left behind ($cg0 -> $cg1)" test "$cg1" -le "$cg0"
else
  skip "no per-execution cgroups left behind" "the service's cgroup is not at '$cg_dir'"
fi
check_eq "no zombie processes" "$zomb1" 0
if [ "$SOAK_SECONDS" -gt 0 ]; then
  echo "# resident memory of the service: $rss0 KiB before, $rss1 KiB after $total executions"
fi
exec_py 'return "still here"'
check_eq "the service answers afterwards" "$(json_get "$REQ_BODY" .result)" "still here"
check "the server is still running" kill -0 "$SERVER_PID"
done_testing
