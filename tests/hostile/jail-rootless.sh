#!/usr/bin/env bash
# Hostile suite, part 6: the core escape cases again with `stockade jail` run as uid 65534 (the
# rootless path through user namespaces, as in the `seccomp` service mode).
. "$(dirname "$0")/../lib.sh"
HOSTILE_AS=nobody
. "$STOCKADE_ROOT/tests/tools/hostile.bash"
if ! setpriv --reuid 65534 --regid 65534 --clear-groups true 2>/dev/null; then
  skip "rootless hostile cases" "cannot switch to uid 65534 (not root)"; done_testing; exit 0
fi
hostile_require_jail
h_host_sleeper

expect_blocked "rootless: capabilities zero and not raisable" -- /hostile/privs caps
expect_blocked "rootless: only fds 0-2" -- /hostile/fds scan-fds
expect_blocked "rootless: no host pid visible, no exe writable" -- /hostile/procexe scan-pids "$(rev <<<"$H_HOST_TAG")"
expect_blocked "rootless: /proc/self/exe not writable" -- /hostile/procexe self-exe
expect_blocked "rootless: nested unshare(CLONE_NEWUSER) refused" -- /hostile/userns unshare-user
expect_blocked "rootless: mount refused" -- /hostile/mounts mount-tmpfs
expect_blocked "rootless: root read-only" -- /hostile/mounts root-ro
expect_blocked "rootless: ptrace refused" -- /hostile/ptrace sibling
expect_blocked "rootless: no cgroupfs inside" -- /hostile/cgroup release-agent
expect_blocked "rootless: AF_INET refused" -- /hostile/sockets inet
expect_blocked "rootless: io_uring refused" -- /hostile/kernel io-uring
expect_blocked "rootless: keyctl refused" -- /hostile/kernel keyctl
expect_blocked "rootless: /proc/sys not writable" -- /hostile/privs procsys
expect_status "rootless: --time-limit 1 kills a SIGTERM-ignoring process" timeout --time-limit 1 -- /hostile/dos ignore-term "$H_TAG"
jrun --time-limit 5 -- /hostile/dos double-fork "$H_TAG"
if d=$(h_host_dirty); then not_ok "rootless: double fork does not outlive the jail" "$d"; else ok "rootless: double fork does not outlive the jail ($J_STATUS)"; fi
if kill -0 "$H_HOST_SLEEPER" 2>/dev/null; then ok "rootless: host process untouched"; else not_ok "rootless: host process untouched"; fi

hostile_end
done_testing
