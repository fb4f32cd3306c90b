#!/usr/bin/env bash
# bench/jail-start.sh - how long until a jailed /bin/true has run and been reaped, against the
# peers, in one run, round-robin. BENCH_N runs each (default 200). Uses the release build.
# Goal (issue): stockade's median at most 0.6x bwrap's.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
N=${BENCH_N:-200}
FE=$(bench_build_forkexec) || { echo "cannot build bench/forkexec.c"; exit 1; }
[ -x "$STOCKADE_BIN" ] || { echo "no release build at $STOCKADE_BIN: run 'make build'"; exit 1; }

TRUE=/bin/true
args=(fork+exec "$TRUE"
  --- unshare-Urpmnui "$(command -v unshare)" -Urpmnui --fork "$TRUE"
  --- bwrap "$(command -v bwrap)" --unshare-all --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp "$TRUE"
  --- stockade-jail "$STOCKADE_BIN" jail -- /bin/true
  --- stockade-jail-no-cgroup "$STOCKADE_BIN" jail --no-cgroup -- /bin/true)
# Diagnostic row: the same jail code linked with only what `stockade jail` uses (--as-needed),
# to separate the jail's own cost from loading every library the full binary links.
OBJ=$(dirname "$STOCKADE_BIN")/obj/src/cmd
if [ -f "$OBJ/cmd-jail.o" ] && [ -f "$(dirname "$STOCKADE_BIN")/libstockade.a" ]; then
  # shellcheck disable=SC2046
  if cc -o "$BENCH_TMP/stockade-lean" "$OBJ/main.o" "$OBJ/cmd-jail.o" "$(dirname "$STOCKADE_BIN")/libstockade.a" \
    -Wl,--as-needed $(pkg-config --libs libseccomp libcap jansson yaml-0.1 openssl libcurl sqlite3 libpq \
      libarchive libzstd libmicrohttpd javascriptcoregtk-4.1 python3-embed 2>/dev/null) -lpthread -lm -ldl 2>/dev/null; then
    args+=(--- stockade-jail-lean-link "$BENCH_TMP/stockade-lean" jail -- /bin/true)
    echo "# stockade-jail-lean-link: the same objects linked --as-needed ($(ldd "$BENCH_TMP/stockade-lean" | wc -l) shared objects vs $(ldd "$STOCKADE_BIN" | wc -l))"
  fi
fi
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  args+=(--- stockade-jail-uid65534 "$(command -v setpriv)" --reuid 65534 --regid 65534 --clear-groups "$STOCKADE_BIN" jail -- /bin/true)
fi

echo "# jail start-up: $N runs each, round-robin; $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, $(uname -r)"
echo "# $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo "# fork+exec: /bin/true | unshare-Urpmnui: unshare -Urpmnui --fork /bin/true"
echo "# bwrap: bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp /bin/true"
echo "# stockade-jail: $STOCKADE_BIN jail -- /bin/true (-no-cgroup: with --no-cgroup; -uid65534: as nobody via setpriv)"
"$FE" "$N" "${args[@]}" >"$BENCH_TMP/times" || exit 1
bench_summary "$BENCH_TMP/times" bwrap
awk '$1 ~ /^stockade/ && $3 != 0 { n++ } END { if (n) print "# warning: " n " stockade runs did not exit 0" }' "$BENCH_TMP/times"
