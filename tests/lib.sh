# tests/lib.sh - helpers for shell test files (source it). Prints TAP lines that tests/run.sh
# counts. Usage:
#   . "$(dirname "$0")/../lib.sh"
#   check "root is read-only" ! "$STOCKADE_BIN" jail -- touch /x
#   check_eq "exit code" "$got" 0
#   check_contains "report names the syscall" "$json" '"syscall":"ptrace"'
#   skip "v2 memory controller" "not available on this host"
#   done_testing
: "${STOCKADE_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${STOCKADE_BIN:=$STOCKADE_ROOT/build/stockade}"
: "${STOCKADE_HOSTILE_DIR:=$STOCKADE_ROOT/build/hostile}"
_t_n=0
_t_failed=0

ok() { _t_n=$((_t_n + 1)); echo "ok $_t_n - $1"; }
not_ok() {
  _t_n=$((_t_n + 1)); _t_failed=$((_t_failed + 1))
  echo "not ok $_t_n - $1"
  [ $# -gt 1 ] && printf '#   %s\n' "${@:2}"
  return 0
}
skip() { _t_n=$((_t_n + 1)); echo "ok $_t_n - $1 # SKIP $2"; }

# check NAME CMD... : passes when CMD succeeds (use `!` to invert).
check() {
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "command: $*" "output: ${out:0:600}"; fi
}
check_eq() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got:  '$2'" "want: '$3'"; fi; }
check_contains() {
  case "$2" in *"$3"*) ok "$1" ;; *) not_ok "$1" "'${2:0:600}' does not contain '$3'" ;; esac
}
check_not_contains() {
  case "$2" in *"$3"*) not_ok "$1" "'${2:0:600}' contains '$3'" ;; *) ok "$1" ;; esac
}
# json_get JSON JQ-FILTER
json_get() { printf '%s' "$1" | jq -r "$2" 2>/dev/null; }

done_testing() { echo "1..$_t_n"; [ "$_t_failed" -eq 0 ]; }

# A free TCP port on loopback.
free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}
