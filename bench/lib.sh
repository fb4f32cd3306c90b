# bench/lib.sh - helpers for benchmark scripts (source it).
#   bench_build_forkexec       compiles bench/forkexec.c; prints the binary's path
#   bench_summary FILE [BASE]  FILE holds "LABEL usec status" lines; prints a table of median,
#                              p90 and the ratio of each median to BASE's median
: "${STOCKADE_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${STOCKADE_BIN:=$STOCKADE_ROOT/build/stockade}"
BENCH_TMP=$(mktemp -d /tmp/stockade-bench.XXXXXX)
trap 'rm -rf "$BENCH_TMP"' EXIT

bench_build_forkexec() {
  cc -std=gnu17 -O2 -o "$BENCH_TMP/forkexec" "$STOCKADE_ROOT/bench/forkexec.c" || return 1
  echo "$BENCH_TMP/forkexec"
}

bench_summary() {
  local file=$1 base=${2:-}
  awk -v base="$base" '
    { t[$1] = t[$1] " " $2; if ($3 != 0) bad[$1]++; if (!($1 in seen)) { order[++n] = $1; seen[$1] = 1 } }
    END {
      for (i = 1; i <= n; i++) {
        l = order[i]; k = split(substr(t[l], 2), v, " ")
        # insertion sort (N is small)
        for (a = 2; a <= k; a++) { x = v[a] + 0; b = a - 1; while (b > 0 && v[b] + 0 > x) { v[b + 1] = v[b]; b-- } v[b + 1] = x }
        med[l] = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
        p90[l] = v[int(0.9 * k + 0.999)]; cnt[l] = k
      }
      printf "%-44s %6s %10s %10s %10s %8s\n", "command", "runs", "median ms", "p90 ms", "vs " (base == "" ? "-" : base), "failed"
      for (i = 1; i <= n; i++) {
        l = order[i]
        r = (base != "" && med[base] > 0) ? sprintf("%.2fx", med[l] / med[base]) : "-"
        printf "%-44s %6d %10.2f %10.2f %10s %8d\n", l, cnt[l], med[l] / 1000, p90[l] / 1000, r, bad[l] + 0
      }
    }' "$file"
}
