#!/usr/bin/env bash
# Hostile suite, part 3: covert channels between two jails running at the same time
# (flock on a file both see, /dev/shm, SysV IPC). Jail A holds, jail B probes.
. "$(dirname "$0")/../lib.sh"
. "$STOCKADE_ROOT/tests/tools/hostile.bash"
hostile_require_jail

# start_holder OUTFILE ARGS...: jail A in the background; waits until it printed its READY word.
start_holder() {
  local out=$1 word=$2; shift 2
  h_as timeout -k 5 30 "$STOCKADE_BIN" jail --report "$out.json" --ro-bind "$H_BIN" /hostile "$@" >"$out" 2>"$out.err" </dev/null &
  H_HOLDER=$!
  H_PIDS+=("$H_HOLDER")
  for _ in $(seq 100); do grep -q "$word" "$out" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

covert_case() { # name holder-word holder-args... -- probe-args...
  local name=$1 word=$2; shift 2
  local hold=() ; while [ "$1" != "--" ]; do hold+=("$1"); shift; done; shift
  if ! start_holder "$H_TMP/reports/holder" "$word" -- "${hold[@]}"; then
    not_ok "$name" "holder jail did not come up: $(head -c 300 "$H_TMP/reports/holder" "$H_TMP/reports/holder.err" 2>/dev/null)"
    wait "$H_HOLDER" 2>/dev/null; return
  fi
  expect_blocked "$name" -- "$@"
  wait "$H_HOLDER" 2>/dev/null
}

covert_case "covert: flock/OFD lock on a shared read-only file not visible across jails" LOCKED \
  /hostile/covert flock-hold /hostile/covert 4 -- /hostile/covert flock-probe /hostile/covert
covert_case "covert: /dev/shm is private to each jail" WRITTEN \
  /hostile/covert shm-write "covert-$H_HOST_TAG" "$H_SECRET_TOKEN" -- /hostile/covert shm-read "covert-$H_HOST_TAG"
check "covert: nothing written to the host's /dev/shm" test ! -e "/dev/shm/covert-$H_HOST_TAG"
covert_case "covert: SysV shm/msg/sem of another jail not visible (own IPC ns)" LOCKED \
  /hostile/covert sysv-hold 0x5354 4 -- /hostile/covert sysv-probe 0x5354
check "covert: SysV key 0x5354 not on the host" bash -c '! ipcs -m | grep -qi "0x00005354"'
expect_blocked "covert: keyctl session keyring refused (no shared keyring channel)" -- /hostile/kernel keyctl

hostile_end
done_testing
