#!/usr/bin/env bash
# The published container seccomp profiles (deploy/seccomp/) are sufficient, and needed:
#   - stockade-executor.json: as uid 65534 under exactly that profile (loaded the way a
#     container runtime loads it, by tests/tools/oci-seccomp-exec.c), `stockade jail` comes up
#     rootless with its isolation intact; without the profile's additions it cannot;
#     the profile itself still refuses what the service never needs;
#   - stockade-agent-sandbox.json: runsc (rootless, no network) runs a command under it.
. "$(dirname "$0")/../lib.sh"
. "$STOCKADE_ROOT/tests/tools/hostile.bash"
PROFILES=$STOCKADE_ROOT/deploy/seccomp
EXEC_PROFILE=$PROFILES/stockade-executor.json
AGENT_PROFILE=$PROFILES/stockade-agent-sandbox.json

check "executor profile is valid JSON with a deny default" jq -e '.defaultAction == "SCMP_ACT_ERRNO" and (.syscalls | length > 10)' "$EXEC_PROFILE"
check "agent sandbox profile is valid JSON with a deny default" jq -e '.defaultAction == "SCMP_ACT_ERRNO" and (.syscalls | length > 3)' "$AGENT_PROFILE"

if [ "$(id -u)" != 0 ]; then
  skip "profile runs" "needs root to load a profile and switch to uid 65534"; done_testing; exit 0
fi
OSE=$H_TMP/oci-seccomp-exec
if ! cc -std=gnu17 -O1 -o "$OSE" "$STOCKADE_ROOT/tests/tools/oci-seccomp-exec.c" -lseccomp -ljansson 2>"$H_TMP/cc.err"; then
  not_ok "build tests/tools/oci-seccomp-exec.c" "$(head -c 600 "$H_TMP/cc.err")"; done_testing; exit 1
fi
chmod 755 "$OSE"
hostile_require_jail

# prun PROFILE CMD...: run CMD as uid/gid 65534 under PROFILE; output in P_OUT, status in P_RC.
prun() {
  local prof=$1; shift
  P_OUT=$(timeout -k 5 60 "$OSE" "$prof" -- "$@" 2>&1 </dev/null)
  P_RC=$?
}

# 1. The loader really applies the profile: a syscall outside it is refused in the service.
prun "$EXEC_PROFILE" "$H_BIN/sockets" packet
check_contains "executor profile: AF_PACKET refused to the service itself" "$P_OUT" "BLOCKED packet"
prun "$EXEC_PROFILE" "$H_BIN/kernel" keyctl
check_contains "executor profile: keyctl refused to the service itself" "$P_OUT" "BLOCKED keyctl"
prun "$EXEC_PROFILE" "$H_BIN/ptrace" sibling
check_contains "executor profile: ptrace refused to the service itself" "$P_OUT" "BLOCKED sibling"
prun "$EXEC_PROFILE" "$H_BIN/privs" idprobe
check_contains "executor profile: the service runs as uid 65534 with no capability" "$P_OUT" "ID euid=65534 egid=65534 CapEff=0000000000000000"

# 2. A jail comes up under it, rootless, with its isolation.
jail=("$STOCKADE_BIN" jail --report "$H_TMP/reports/p.json" --ro-bind "$H_BIN" /hostile)
for c in "privs caps" "procexe scan-pids $(rev <<<"$H_HOST_TAG")" "fds scan-fds" "mounts root-ro" \
  "userns unshare-user" "mounts mount-tmpfs" "sockets inet" "kernel io-uring" "cgroup release-agent"; do
  rm -f "$H_TMP/reports/p.json"
  # shellcheck disable=SC2086
  prun "$EXEC_PROFILE" "${jail[@]}" -- /hostile/$c
  st=$(jq -r .status "$H_TMP/reports/p.json" 2>/dev/null)
  if { [ "$st" = ok ] && [[ "$P_OUT" == *BLOCKED* ]] || [ "$st" = sandbox_violation ]; } && [[ "$P_OUT" != *ESCAPED* ]]; then
    ok "executor profile, uid 65534: jail holds against '$(cut -d" " -f1-2 <<<"$c")' ($st)"
  else
    not_ok "executor profile, uid 65534: jail holds against '$(cut -d" " -f1-2 <<<"$c")'" "status '$st'" "${P_OUT:0:600}"
  fi
done
rm -f "$H_TMP/reports/p.json"
prun "$EXEC_PROFILE" "${jail[@]}" --hostname in-profile -- /bin/sh -c 'cat /proc/self/uid_map; hostname; ls /proc | grep -c "^[0-9]"; echo done'
check_eq "executor profile, uid 65534: /bin/true-like run reports ok" "$(jq -r .status "$H_TMP/reports/p.json" 2>/dev/null)" ok
check_contains "executor profile, uid 65534: own hostname inside" "$P_OUT" "in-profile"
check_contains "executor profile, uid 65534: uid 0 inside maps to 65534 outside" "$(echo "$P_OUT" | head -1 | tr -s ' ')" " 0 65534 1"

# 3. The additions are needed: the same profile without them cannot build a jail.
jq '.syscalls |= map(select(((.comment // "") | startswith("stockade:")) | not))' "$EXEC_PROFILE" >"$H_TMP/reduced.json"
rm -f "$H_TMP/reports/p.json"
prun "$H_TMP/reduced.json" "${jail[@]}" -- /bin/true
check_eq "executor profile without its stockade additions: the jail cannot be built" \
  "$(jq -r .status "$H_TMP/reports/p.json" 2>/dev/null)" setup_error

# 4. The service itself: `stockade serve --role code-executor` as uid 65534 under the profile,
# one execution. When the service cannot run as a non-root user even without any profile, the
# cause is not the profile: skip with the service's own message.
serve_try() { # PREFIX... : start, run one execution, stop; sets S_LOG, S_RESULT
  local port; port=$(free_port)
  local data=$H_TMP/reports/serve-$port tok=tok_$H_TAG$RANDOM
  S_LOG=$H_TMP/serve-$port.log
  "$@" env STOCKADE_API_TOKEN="$tok" "$STOCKADE_BIN" serve --listen "127.0.0.1:$port" \
    --data-dir "$data" --role code-executor >"$S_LOG" 2>&1 </dev/null &
  local pid=$! i
  S_RESULT=
  for i in $(seq 150); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    S_RESULT=$(curl -s --max-time 30 -H "Authorization: Bearer $tok" -H 'content-type: application/json' \
      -d '{"language":"python","code":"import os\nreturn [os.getuid(), open(\"/proc/self/status\").read().count(\"NoNewPrivs:\\t1\")]"}' \
      "http://127.0.0.1:$port/api/v1/execute")
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
}
if "$STOCKADE_BIN" serve --help 2>/dev/null | grep -q code-executor; then
  serve_try "$OSE" "$EXEC_PROFILE" --
  if [ "$(json_get "$S_RESULT" .status)" = ok ]; then
    ok "executor profile, uid 65534: stockade serve runs an execution ($(json_get "$S_RESULT" -c .result))"
  else
    serve_try setpriv --reuid 65534 --regid 65534 --clear-groups --
    if [ "$(json_get "$S_RESULT" .status)" != ok ]; then
      skip "executor profile, uid 65534: stockade serve runs an execution" \
        "the service does not run as uid 65534 even without the profile: $(grep -v '"level"' "$S_LOG" | tail -1 | cut -c1-200)"
    else
      not_ok "executor profile, uid 65534: stockade serve runs an execution" "works without the profile, not under it" "$(tail -3 "$S_LOG")"
    fi
  fi
else
  skip "executor profile, uid 65534: stockade serve runs an execution" "no 'stockade serve' with a code-executor role in this build"
fi

# 4b. The git server (the chart runs it under the executor profile too): as uid 65534 under
# the profile, a push and a clone with the real git client go through git http-backend,
# pack-objects and index-pack.
if "$STOCKADE_BIN" serve --help 2>/dev/null | grep -q git-server && command -v git >/dev/null; then
  port=$(free_port); tok=tok_$H_TAG$RANDOM; gdata=$H_TMP/reports/git-$port
  "$OSE" "$EXEC_PROFILE" -- env STOCKADE_API_TOKEN="$tok" "$STOCKADE_BIN" serve \
    --listen "127.0.0.1:$port" --data-dir "$gdata" --role git-server >"$H_TMP/git.log" 2>&1 </dev/null &
  gpid=$!
  for i in $(seq 150); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz" && break
    kill -0 "$gpid" 2>/dev/null || break
    sleep 0.2
  done
  curl -s -o /dev/null -H "Authorization: Bearer $tok" -d '{"name":"p"}' "http://127.0.0.1:$port/api/v1/git/repos"
  gw=$H_TMP/gitwork; rm -rf "$gw"; mkdir -p "$gw/src"
  (cd "$gw/src" && git init -q -b main && echo profiled >f && git add f &&
    git -c user.name=t -c user.email=t@t commit -qm m &&
    GIT_TERMINAL_PROMPT=0 git push -q "http://x:$tok@127.0.0.1:$port/git/p.git" main) >"$H_TMP/git-push.log" 2>&1
  GIT_TERMINAL_PROMPT=0 git clone -q "http://x:$tok@127.0.0.1:$port/git/p.git" "$gw/clone" >>"$H_TMP/git-push.log" 2>&1
  if [ "$(cat "$gw/clone/f" 2>/dev/null)" = profiled ]; then
    ok "executor profile, uid 65534: the git server takes a push and serves a clone"
  else
    not_ok "executor profile, uid 65534: the git server takes a push and serves a clone" \
      "$(tail -3 "$H_TMP/git-push.log")" "$(grep -v '"request"' "$H_TMP/git.log" | tail -3)"
  fi
  kill -TERM "$gpid" 2>/dev/null
  for i in $(seq 100); do kill -0 "$gpid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$gpid" 2>/dev/null; wait "$gpid" 2>/dev/null
else
  skip "executor profile, uid 65534: the git server takes a push and serves a clone" "no git server or no git"
fi

# 5. The gVisor agent sandbox under its profile.
if command -v runsc >/dev/null; then
  prun "$AGENT_PROFILE" env HOME=/tmp runsc --rootless --network=none --platform=ptrace \
    --root "$H_TMP/reports/runsc" do /bin/echo agent-sandbox-up
  check_contains "agent sandbox profile, uid 65534: runsc runs a command" "$P_OUT" agent-sandbox-up
  prun "$AGENT_PROFILE" "$H_BIN/kernel" io-uring
  check_contains "agent sandbox profile: io_uring refused" "$P_OUT" "BLOCKED io-uring"
  prun "$AGENT_PROFILE" "$H_BIN/userns" fsopen
  check_contains "agent sandbox profile: fsopen refused" "$P_OUT" "BLOCKED fsopen"
else
  skip "agent sandbox profile: runsc runs a command" "runsc not installed"
fi

done_testing
