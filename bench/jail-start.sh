#!/usr/bin/env bash
# bench/jail-start.sh - how long until a jailed /bin/true has run and been reaped, against the
# peers, in one run, round-robin. BENCH_N runs each (default 200). Uses the release build.
# Goal (issue): stockade's median at most 0.6x bwrap's.
# Also prints what each namespace costs alone (bench/nscost.c).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
N=${BENCH_N:-200}
FE=$(bench_build_forkexec) || { echo "cannot build bench/forkexec.c"; exit 1; }
[ -x "$STOCKADE_BIN" ] || { echo "no release build at $STOCKADE_BIN: run 'make build'"; exit 1; }

FLOOR="$BENCH_TMP/jailfloor"
cc -std=gnu17 -O2 -o "$FLOOR" "$STOCKADE_ROOT/bench/jailfloor.c" || { echo "cannot build bench/jailfloor.c"; exit 1; }

TRUE=/bin/true
args=(fork+exec "$TRUE"
  --- floor "$FLOOR" "$TRUE"
  --- unshare-Urpmnui "$(command -v unshare)" -Urpmnui --fork "$TRUE"
  --- bwrap "$(command -v bwrap)" --unshare-all --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp "$TRUE"
  --- stockade-jail "$STOCKADE_BIN" jail -- /bin/true
  --- stockade-jail-no-cgroup "$STOCKADE_BIN" jail --no-cgroup -- /bin/true)
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  args+=(--- stockade-jail-uid65534 "$(command -v setpriv)" --reuid 65534 --regid 65534 --clear-groups "$STOCKADE_BIN" jail -- /bin/true)
fi

echo "# jail start-up: $N runs each, round-robin; $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, $(uname -r)"
echo "# $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo "# fork+exec: /bin/true | unshare-Urpmnui: unshare -Urpmnui --fork /bin/true"
echo "# floor: bench/jailfloor.c, one clone3 with the jail's namespaces + uid/gid map + exec + wait (no mounts, cgroup, seccomp)"
echo "# bwrap: bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp /bin/true"
echo "# stockade-jail: $STOCKADE_BIN jail -- /bin/true (-no-cgroup: with --no-cgroup; -uid65534: as nobody via setpriv)"
"$FE" "$N" "${args[@]}" >"$BENCH_TMP/times" || exit 1
bench_summary "$BENCH_TMP/times" bwrap
awk '$1 ~ /^stockade/ && $3 != 0 { n++ } END { if (n) print "# warning: " n " stockade runs did not exit 0" }' "$BENCH_TMP/times"

# What each namespace costs by itself here (clone3 with that flag + exec /bin/true + wait): the
# part of the floor no jail can avoid.
NSC="$BENCH_TMP/nscost"
if cc -std=gnu17 -O2 -Wall -o "$NSC" "$STOCKADE_ROOT/bench/nscost.c"; then
  echo
  echo "# per namespace (bench/nscost.c):"
  "$NSC" "$N" "$TRUE"
fi
