#!/usr/bin/env bash
# Hostile suite, part 1: escapes through the terminal, /proc, descriptors, namespaces, cgroups,
# ptrace, other syscall ABIs, mounts and privileges. See docs/security.md for the defence that
# stops each case.
. "$(dirname "$0")/../lib.sh"
. "$STOCKADE_ROOT/tests/tools/hostile.bash"
hostile_require_jail
h_host_sleeper

# --- TIOCSTI / TIOCLINUX: the jail runs on a real pty (script(1)) so there is a tty to target.
tty_case() { # name variant
  local rep=$H_TMP/reports/tty.json
  rm -f "$rep"
  J_OUT=$(h_as script -qec "timeout -k 5 30 $STOCKADE_BIN jail --report $rep --ro-bind $H_BIN /hostile -- /hostile/tty $2" /dev/null 2>&1 </dev/null)
  J_REPORT=$(cat "$rep" 2>/dev/null); J_STATUS=$(json_get "$J_REPORT" '.status // "none"'); J_STATUS=${J_STATUS:-none}; J_ERR=; J_RC=
  J_OUT+=$(json_get "$J_REPORT" '.stdout // empty')
  if _h_blocked && ! h_host_dirty >/dev/null; then ok "$1"; else not_ok "$1"; _h_diag; fi
}
tty_case "tiocsti: TIOCSTI on the caller's pty is refused" tiocsti
tty_case "tiocsti-hibits: TIOCSTI as 0x100005412 via syscall(SYS_ioctl) is refused" tiocsti-hibits
tty_case "tioclinux: TIOCLINUX paste on every reachable tty is refused" tioclinux

# --- CVE-2019-5736: the supervisor's binary through /proc/<pid>/exe.
expect_blocked "proc-exe: /proc/self/exe not writable (direct and O_PATH reopen)" -- /hostile/procexe self-exe
expect_blocked "proc-exe: parent's and pid 1's exe not writable" -- /hostile/procexe parent-exe
expect_blocked "proc-exe: no host pid visible, no exe writable in /proc" -- /hostile/procexe scan-pids "$(rev <<<"$H_HOST_TAG")"
expect_blocked "proc-exe: 1 s race reopening pid 1's exe for writing" -- /hostile/procexe exe-race

# --- CVE-2024-21626: descriptors and cwd leaked from the host. The caller holds fds 5, 7 and
# 9 open on a host directory and a secret file, and starts the jail from inside that directory.
mkdir -p "$H_TMP/hostdir" && echo "$H_SECRET_TOKEN" >"$H_TMP/hostdir/HOST_SECRET" && chmod 644 "$H_TMP/hostdir/HOST_SECRET"
fd_case() { # name variant
  (cd "$H_TMP/hostdir" && exec 5<"$H_TMP/hostdir" 7<"$H_TMP/hostdir/HOST_SECRET" 9<"$H_TMP" && expect_blocked "$@")
}
fd_case_run() {
  local name=$1 v=$2 out
  out=$(fd_case "$name" -- /hostile/fds "$v")
  _t_n=$((_t_n + 1))
  case "$out" in
    ok*) if [[ "$out" == *"$H_SECRET_TOKEN"* ]]; then echo "not ok $_t_n - $name"; _t_failed=$((_t_failed + 1)); echo "#   host secret read"; else echo "ok $_t_n - $name"; fi ;;
    *) echo "not ok $_t_n - $name"; _t_failed=$((_t_failed + 1)); printf '%s\n' "$out" | tail -n +2 ;;
  esac
}
fd_case_run "leaked-fds: only fds 0-2 inside (host held 5, 7, 9 open)" scan-fds
fd_case_run "leaked-fds: fchdir on any inherited fd reaches no host dir" fchdir
fd_case_run "leaked-fds: openat on any inherited fd reads no host file" openat
fd_case_run "leaked-cwd: cwd started in a host dir does not leak into the jail" cwd

# --- nested user namespaces and the new mount API (CVE-2022-0185).
expect_blocked "userns: unshare(CLONE_NEWUSER and others) refused" -- /hostile/userns unshare-user
expect_blocked "userns: clone(CLONE_NEWUSER|CLONE_NEWNS) refused" -- /hostile/userns clone-newuser
jrun -- /hostile/userns clone3
check_contains "userns: clone3 fails with ENOSYS and fork still works" "$J_STATUS $J_OUT" "ok BLOCKED clone3: clone3: ENOSYS"
expect_blocked "userns: fsopen refused" -- /hostile/userns fsopen
expect_blocked "userns: fsconfig/fsmount refused" -- /hostile/userns fsconfig
expect_blocked "userns: open_tree/move_mount refused" -- /hostile/userns open-tree
expect_blocked "userns: setns into /proc/1/ns/* refused" -- /hostile/userns setns

# --- cgroup v1 release_agent (CVE-2022-0492).
expect_blocked "cgroup: mounting cgroup v1/v2 refused" -- /hostile/cgroup mount-v1
expect_blocked "cgroup: no writable release_agent or cgroupfs inside" -- /hostile/cgroup release-agent
expect_blocked "cgroup: own cgroup namespace (paths are /)" -- /hostile/cgroup view

# --- ptrace and cross-process memory.
expect_blocked "ptrace: attach/seize a sibling refused" -- /hostile/ptrace sibling
expect_blocked "ptrace: PTRACE_TRACEME + PEEKDATA refused" -- /hostile/ptrace traceme
expect_blocked "ptrace: attach pid 1 refused" -- /hostile/ptrace pid1
expect_blocked "ptrace: process_vm_readv refused" -- /hostile/ptrace vm-readv
expect_blocked "ptrace: process_vm_writev refused" -- /hostile/ptrace vm-writev
expect_blocked "signals: kill(-1, SIGKILL) stays inside" -- /hostile/ptrace kill-all
if kill -0 "$H_HOST_SLEEPER" 2>/dev/null; then ok "signals: host process survived kill(-1)"; else not_ok "signals: host process survived kill(-1)"; fi

# --- other ABIs. This VM may not run int 0x80 at all (SIGSEGV on the host too); then the
# case still checks nothing ran, and a SIGSEGV inside counts as refused by the kernel.
abi_case() { # name variant
  jrun -- /hostile/abi "$2"
  if [ "$J_STATUS" = signaled ] && [ "$(json_get "$J_REPORT" .signal)" = 11 ] && ! ("$H_BIN/abi" "$2") >/dev/null 2>&1; then
    ok "$1 # (int 0x80 is not available on this host kernel/VM)"
  elif _h_blocked && ! h_host_dirty >/dev/null; then ok "$1"; else not_ok "$1"; _h_diag; fi
}
abi_case "abi: i386 getpid through int 0x80 does not run" i386-getpid
abi_case "abi: i386 unshare(CLONE_NEWUSER) through int 0x80 refused" i386-unshare
abi_case "abi: i386 ptrace through int 0x80 refused" i386-ptrace
expect_blocked "abi: x32 getpid (39|0x40000000) refused" -- /hostile/abi x32-getpid
expect_blocked "abi: x32 unshare (272|0x40000000) refused" -- /hostile/abi x32-unshare

# --- mounts and the filesystem view.
expect_blocked "mount: tmpfs/proc/sysfs/bind mounts refused" -- /hostile/mounts mount-tmpfs
expect_blocked "mount: remounting / and /usr read-write refused" -- /hostile/mounts remount-rw
expect_blocked "mount: umount2 of /proc, /usr, / refused" -- /hostile/mounts umount
expect_blocked "mount: pivot_root refused" -- /hostile/mounts pivot-root
expect_blocked "mknod: char 1:1 and block 8:0 refused" -- /hostile/mounts mknod
expect_blocked "chroot: chroot-in-chroot walk-up reaches no host file" -- /hostile/mounts chroot "$H_TMP/hostdir/HOST_SECRET"
expect_blocked "root: /, /usr, /etc read-only" -- /hostile/mounts root-ro

# --- privileges and host files.
expect_blocked "caps: every capability set zero, NoNewPrivs, Seccomp 2, none can be raised" -- /hostile/privs caps
mkdir -p "$H_TMP/suid" && cp "$H_BIN/privs" "$H_TMP/suid/privs" && chown 0:0 "$H_TMP/suid/privs" && chmod 4755 "$H_TMP/suid/privs"
expect_blocked "setuid: a setuid-root binary gains nothing (no_new_privs, nosuid)" --ro-bind "$H_TMP/suid" /suid -- /hostile/privs suid /suid/privs
cp "$H_BIN/privs" "$H_TMP/suid/privs-g" && chown 0:0 "$H_TMP/suid/privs-g" && chmod 2755 "$H_TMP/suid/privs-g"
expect_blocked "setgid: a setgid-root binary gains nothing" --ro-bind "$H_TMP/suid" /suid -- /hostile/privs suid /suid/privs-g
expect_blocked "sysrq: /proc/sysrq-trigger not writable" -- /hostile/privs sysrq
expect_blocked "procsys: machine-wide /proc/sys files not writable, kcore/kmsg unreadable" -- /hostile/privs procsys
expect_blocked "sys: /sys files acting on the host not writable" -- /hostile/privs sys
export HOSTILE_TOKEN=$H_SECRET_TOKEN
jrun -- /hostile/privs hostfiles HOSTILE_TOKEN
if _h_blocked && [[ "$J_OUT" != *"$H_SECRET_TOKEN"* ]] && [[ "$J_OUT" != *"INFO hostfiles: /root/"* ]]; then
  ok "hostfiles: /etc/shadow, /root and the host's environment not readable"
else not_ok "hostfiles: /etc/shadow, /root and the host's environment not readable"; _h_diag; fi
unset HOSTILE_TOKEN
host_name=$(hostname)
jrun --hostname "jail-$H_TAG" -- /hostile/privs hostname
check_contains "hostname: --hostname is the jail's name" "$J_OUT" "NODENAME jail-$H_TAG"
check_eq "hostname: changing it inside leaves the host's alone" "$(hostname)" "$host_name"

hostile_end
done_testing
