# tests/tools/hostile.bash - helpers for the hostile suite (tests/hostile/jail-*.sh).
# Source after tests/lib.sh. Each case runs an attack program from build/hostile/ inside
# `stockade jail`, reads the JSON report with jq, and checks two things:
#   1. the attack failed: the program printed BLOCKED lines and no ESCAPED line (or seccomp
#      killed it: status sandbox_violation), and
#   2. the host is untouched: the marker path stays absent, no process carrying this run's tag
#      survives, no mount or cgroup is left behind (checked once at the end, hostile_end).
#
# HOSTILE_AS=nobody runs every jail as uid 65534 (the rootless path); default: as the caller.

: "${HOSTILE_AS:=}"
H_BIN=$STOCKADE_HOSTILE_DIR
H_TAG=hostile$$r$RANDOM
# Host scratch space lives outside /tmp so that a path printed from inside a jail (whose /tmp
# is its own tmpfs) can never be confused with a host path.
H_TMP=$(mktemp -d /var/tmp/stockade-hostile.XXXXXX)
chmod 755 "$H_TMP"
# Reports are written by the supervisor, which runs as uid 65534 in the rootless cases.
mkdir -m 1777 "$H_TMP/reports"
H_MARKER=$H_TMP/host-marker
H_SECRET_TOKEN=secret$RANDOM$RANDOM
H_HOST_TAG=hostonly$$r$RANDOM
H_PIDS=()
# Every jail of this run nests its cgroup under a parent of our own, so a leftover cgroup is
# ours for sure (and the parent is removed at the end).
export STOCKADE_CGROUP_PARENT=stockade-hostile-$$-$RANDOM
_h_cg_parents() { find /sys/fs/cgroup -mindepth 1 -maxdepth 6 -type d -name "$STOCKADE_CGROUP_PARENT" 2>/dev/null; }

_h_cleanup() {
  local p
  for p in "${H_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$H_TMP"
  local d
  for d in $(_h_cg_parents); do rmdir "$d" 2>/dev/null; done
}
trap _h_cleanup EXIT

# Host state before the suite, compared by hostile_end.
_h_mounts() { awk '{print $5}' /proc/self/mountinfo | sort; }
H_MOUNTS_BEFORE=$(_h_mounts)
H_STOCKADE_SUM=$(sha256sum "$STOCKADE_BIN" 2>/dev/null | cut -d' ' -f1)

# Run a command as the jail user of this run (root or nobody).
h_as() {
  if [ "$HOSTILE_AS" = nobody ]; then
    setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all --bounding-set=-all \
      --reset-env -- env PATH=/usr/bin:/bin "$@"
  else
    "$@"
  fi
}

# jrun [jail options] -- CMD...: run a jail, leave the results in J_STATUS, J_OUT (program
# stdout, from the pass-through or the report), J_ERR, J_REPORT (JSON), J_RC.
jrun() {
  local rep=$H_TMP/reports/report.$$.json
  rm -f "$rep"
  h_as timeout -k 5 60 "$STOCKADE_BIN" jail --report "$rep" --ro-bind "$H_BIN" /hostile "$@" \
    >"$H_TMP/out" 2>"$H_TMP/err" </dev/null
  J_RC=$?
  J_REPORT=$(cat "$rep" 2>/dev/null)
  J_STATUS=$(json_get "$J_REPORT" '.status // "none"')
  J_STATUS=${J_STATUS:-none}
  J_OUT=$(cat "$H_TMP/out"; json_get "$J_REPORT" '.stdout // empty')
  J_ERR=$(cat "$H_TMP/err"; json_get "$J_REPORT" '.stderr // empty')
}

# Explain a failure in TAP comments.
_h_diag() {
  printf '#   status=%s rc=%s\n' "$J_STATUS" "$J_RC"
  printf '%s\n' "$J_OUT" | head -n 15 | sed 's/^/#   out: /'
  printf '%s\n' "$J_ERR" | head -n 8 | sed 's/^/#   err: /'
  printf '%s\n' "$J_REPORT" | head -c 600 | sed 's/^/#   report: /'
  echo
}

# Host checks done after every case; prints a reason and returns 1 when dirty.
h_host_dirty() {
  if [ -e "$H_MARKER" ]; then echo "host marker $H_MARKER appeared"; rm -f "$H_MARKER"; return 0; fi
  local left
  # No settling delay: the jail kills its whole cgroup before it reports, so anything still
  # alive when the report is out has outlived the jail.
  left=$(pgrep -f "$H_TAG" | tr '\n' ' ')
  if [ -n "$left" ]; then
    echo "processes outlived the jail: $left ($(ps -o pid=,args= -p "${left// /,}" 2>/dev/null | head -3 | tr '\n' ';'))"
    local p; for p in $left; do kill -9 "$p" 2>/dev/null; done
    return 0
  fi
  return 1
}

# blocked_ok: decide whether the last jail run counts as "attack failed".
_h_blocked() {
  case "$J_OUT" in *ESCAPED*) return 1 ;; esac
  case "$J_STATUS" in
    sandbox_violation) return 0 ;;
    ok) case "$J_OUT" in *BLOCKED*) return 0 ;; esac; return 1 ;;
    signaled)
      # A kill by SIGSYS is the filter working even if not classified as a violation.
      [ "$(json_get "$J_REPORT" '.signal')" = 31 ] && { echo "# note: SIGSYS reported as signaled, not sandbox_violation"; return 0; }
      return 1 ;;
    *) return 1 ;;
  esac
}

# expect_blocked NAME [jail options] -- /hostile/PROG VARIANT [ARGS]
expect_blocked() {
  local name=$1; shift
  jrun "$@"
  local why
  if ! _h_blocked; then
    not_ok "$name" "the attack was not shown to fail"; _h_diag
  elif why=$(h_host_dirty); then
    not_ok "$name" "host touched: $why"; _h_diag
  else
    local vs; vs=$(json_get "$J_REPORT" '.violation.syscall // empty')
    ok "$name${vs:+ (killed at $vs)}"
  fi
}

# expect_status NAME STATUS [jail options] -- CMD: the jail must end with STATUS (a limit hit)
# and leave the host clean.
expect_status() {
  local name=$1 want=$2; shift 2
  jrun "$@"
  local why
  if [ "$J_STATUS" != "$want" ]; then
    not_ok "$name" "status '$J_STATUS', want '$want'"; _h_diag
  elif case "$J_OUT" in *ESCAPED*) true ;; *) false ;; esac; then
    not_ok "$name" "program reports an escape"; _h_diag
  elif why=$(h_host_dirty); then
    not_ok "$name" "host touched: $why"; _h_diag
  else
    ok "$name"
  fi
}

# A process on the host carrying the tag (a target the jail must not see or signal).
h_host_sleeper() {
  bash -c "exec -a '$H_HOST_TAG' sleep 300" &
  H_HOST_SLEEPER=$!
  H_PIDS+=("$H_HOST_SLEEPER")
}

# stockade jail must be usable at all, or every case is meaningless.
hostile_require_jail() {
  if [ ! -x "$STOCKADE_BIN" ] || ! nm "$STOCKADE_BIN" 2>/dev/null | grep -q ' T cmd_jail$'; then
    skip "hostile suite" "'stockade jail' is not built in $STOCKADE_BIN"
    done_testing; exit 0
  fi
  if [ ! -x "$H_BIN/fds" ]; then
    not_ok "attack programs built" "missing $H_BIN/fds: run 'make build'"
    done_testing; exit 1
  fi
  jrun -- /bin/true
  if [ "$J_STATUS" != ok ]; then
    not_ok "a jail comes up (/bin/true)" "the suite cannot run"; _h_diag
    done_testing; exit 1
  fi
}

# End of a script: the supervisor still works, the host forks, nothing was left behind.
hostile_end() {
  jrun -- /bin/echo still-fine
  case "$J_STATUS/$J_OUT" in ok/*still-fine*) ok "supervisor still runs a jail afterwards" ;;
    *) not_ok "supervisor still runs a jail afterwards"; _h_diag ;; esac
  check "host still forks and execs" /bin/true
  check_eq "stockade binary unchanged" "$(sha256sum "$STOCKADE_BIN" | cut -d' ' -f1)" "$H_STOCKADE_SUM"
  local new
  # Other test runs on the same machine mount under their own temp dirs: only mounts under
  # ours, or outside the usual scratch places, can be leaks of this suite.
  new=$(comm -13 <(echo "$H_MOUNTS_BEFORE") <(_h_mounts) | grep -v '^$' |
    grep -E "^$H_TMP|^/(usr|etc|bin|sbin|lib|lib64|proc|sys|dev|root|home|boot|opt|srv)?(/|\$)" | head -5)
  check_eq "no mount left on the host" "$new" ""
  sleep 0.3
  new=$(for d in $(_h_cg_parents); do find "$d" -mindepth 1 -type d; done | head -5)
  check_eq "no cgroup left on the host" "$new" ""
  check_eq "no process of this run left" "$(pgrep -f "$H_TAG" | tr '\n' ' ')" ""
}
