#!/usr/bin/env bash
# tests/e2e/jail.sh - `stockade jail` end to end, privileged (as root): what the program sees
# inside, each limit reached and reported, setup errors named, nothing left behind.
. "$(dirname "$0")/../lib.sh"
if [ "$(id -u)" != 0 ]; then skip "privileged jail tests" "need root"; done_testing; exit; fi
export STOCKADE_CGROUP_PARENT=stockade-e2e-jail-$$
T=$(mktemp -d /tmp/stockade-e2e-jail.XXXXXX)
chmod 755 "$T"
cleanup() {
  find /sys/fs/cgroup -maxdepth 4 -type d -name "$STOCKADE_CGROUP_PARENT" -exec rmdir {} + 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
J() { "$STOCKADE_BIN" jail "$@"; }
report() { J --report - "$@" 2>/dev/null | tail -n 1; }

out=$(J -- /bin/sh -c 'grep -E "^(NoNewPrivs|Seccomp|CapEff|CapBnd|CapPrm):" /proc/self/status')
check_contains "NoNewPrivs is 1" "$out" $'NoNewPrivs:\t1'
check_contains "Seccomp is 2 (filter)" "$out" $'Seccomp:\t2'
check_contains "no effective capabilities" "$out" $'CapEff:\t0000000000000000'
check_contains "no bounding capabilities" "$out" $'CapBnd:\t0000000000000000'

out=$(J -- /bin/sh -c "ls /proc | grep -c '^[0-9]'; [ -e /proc/$$ ] && echo host-visible; readlink /proc/1/exe || echo exe-hidden")
check "only the jail's processes in /proc" test "$(echo "$out" | head -1)" -le 5
check_not_contains "host pids invisible" "$out" host-visible
check_contains "init's exe (the supervisor binary) unreachable" "$out" exe-hidden

out=$(J -- /bin/sh -c 'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "')
check_eq "only lo in the network namespace" "$out" "lo"

out=$(J -- /bin/sh -c 'touch /x 2>&1; touch /usr/x 2>&1; echo ok > /tmp/x && cat /tmp/x')
check_contains "root is read-only" "$out" "/x': Read-only file system"
check_contains "/usr is read-only" "$out" "/usr/x': Read-only file system"
check_contains "/tmp is writable" "$out" "ok"

out=$(J --tmp-size 1M -- /bin/sh -c 'dd if=/dev/zero of=/tmp/a bs=64k count=8 2>/dev/null && echo small-ok; dd if=/dev/zero of=/tmp/b bs=64k count=32 2>&1 | head -1')
check_contains "/tmp takes a file below its size" "$out" "small-ok"
check_contains "/tmp refuses past its size" "$out" "No space left on device"

out=$(J --hostname box7 -- /bin/sh -c 'uname -n; id -u; id -un; cat /etc/hosts')
check_contains "hostname set" "$out" "box7"
check_contains "root inside, named by /etc/passwd" "$out" $'0\njail'

out=$(SECRET=leak J --env FOO=bar -- /bin/sh -c 'env')
check_not_contains "caller environment not inherited" "$out" "SECRET"
check_contains "--env passed" "$out" "FOO=bar"

out=$(exec 7</etc/hostname; J -- /bin/sh -c 'ls /proc/self/fd | tr "\n" " "')
check_eq "only fds 0-2 inherited" "$out" "0 1 2 3 "

mkdir -p "$T/rw" "$T/ro"; echo data > "$T/ro/f"; chmod 777 "$T/rw"
out=$(J --bind "$T/rw" /work --ro-bind "$T/ro" /data --chdir /work -- /bin/sh -c 'cat /data/f; echo w > out; pwd; touch /data/g 2>&1')
check_contains "--ro-bind readable" "$out" "data"
check_contains "--ro-bind read-only" "$out" "Read-only file system"
check_contains "--chdir" "$out" "/work"
check_eq "--bind writes reach the host" "$(cat "$T/rw/out" 2>/dev/null)" "w"

# A symlink planted in a bound directory cannot redirect a mount.
mkdir -p "$T/evil"; ln -s /etc "$T/evil/link"
r=$(report --bind "$T/evil" /w --tmpfs /w/link/x -- true)
check_eq "planted symlink: setup_error" "$(json_get "$r" .status)" "setup_error"
check_contains "planted symlink: step named" "$(json_get "$r" .setupError.step)" "mount point"
check "planted symlink: host untouched" test ! -e /etc/x
r=$(STOCKADE_JAIL_NO_OPENAT2=1 report --bind "$T/evil" /w --tmpfs /w/link/x -- true)
check_eq "planted symlink refused without openat2 too" "$(json_get "$r" .status)" "setup_error"
r=$(STOCKADE_JAIL_NO_OPENAT2=1 report --tmpfs /a/b/c -- /bin/sh -c 'test -d /a/b/c')
check_eq "mounts work with the O_NOFOLLOW fallback" "$(json_get "$r" .status)" "ok"

# Limits, each reached and reported.
r=$(report --memory 32 --time-limit 30 -- python3 -c 'a=[]
while True: a.append(bytearray(1 << 20))')
check_eq "memory balloon: memory_limit" "$(json_get "$r" .status)" "memory_limit"
check_contains "memory balloon: limitsHit" "$(json_get "$r" '.limitsHit|join(",")')" "memory"
J --memory 32 -- python3 -c 'a=[]
while True: a.append(bytearray(1 << 20))' >/dev/null 2>&1
check_eq "memory limit exit code 137" "$?" 137

r=$(report --pids 16 --time-limit 3 -- /bin/sh -c 'f() { f | f & }; f; sleep 10')
check_contains "fork bomb: pids in limitsHit" "$(json_get "$r" '.limitsHit|join(",")')" "pids"
check_eq "fork bomb: ended by the time limit" "$(json_get "$r" .status)" "timeout"

J --time-limit 1 -- sleep 100; rc=$?
check_eq "sleep 100 with --time-limit 1: exit 124" "$rc" 124
r=$(report --time-limit 1 -- sleep 100)
check_eq "time limit: timeout" "$(json_get "$r" .status)" "timeout"
check_contains "time limit: wall in limitsHit" "$(json_get "$r" '.limitsHit|join(",")')" "wall"

r=$(report --cpu-time 1 --time-limit 30 -- /bin/sh -c 'while :; do :; done')
check_eq "cpu spin: timeout" "$(json_get "$r" .status)" "timeout"
check_contains "cpu spin: cpu in limitsHit" "$(json_get "$r" '.limitsHit|join(",")')" "cpu"

r=$(J --report - --output-limit 4096 --time-limit 30 -- yes 2>/dev/null | tail -n 1)
check_eq "output flood: output_limit" "$(json_get "$r" .status)" "output_limit"
check_eq "output flood: truncation marked" "$(json_get "$r" .stdoutTruncated)" "true"
n=$(J --output-limit 4096 -- yes 2>/dev/null | wc -c)
check_eq "output flood: exactly the cap passed through" "$n" 4096

r=$(report -- python3 -c 'import ctypes; ctypes.CDLL(None).syscall(101, 16, 1, 0, 0); print("alive")')
check_eq "ptrace: sandbox_violation" "$(json_get "$r" .status)" "sandbox_violation"
check_eq "ptrace: syscall named" "$(json_get "$r" .violation.syscall)" "ptrace"
J -- python3 -c 'import ctypes; ctypes.CDLL(None).syscall(272, 0)' 2>/dev/null; rc=$?
check_eq "unshare: exit 159" "$rc" 159
out=$(J -- python3 -c '
import socket, errno, fcntl, termios
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM); print("inet-allowed")
except OSError as e: print("inet", errno.errorcode[e.errno])
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x"); print("tiocsti-allowed")
except OSError as e: print("tiocsti", errno.errorcode[e.errno])
' 2>&1)
check_contains "AF_INET refused by the default policy" "$out" "inet EAFNOSUPPORT"
check_contains "TIOCSTI refused" "$out" "tiocsti EPERM"

out=$(J --seccomp egress -- python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
c = socket.create_connection(s.getsockname()); print("loopback-ok")')
check_contains "egress policy + loopback: lo is up" "$out" "loopback-ok"
out=$(J --seccomp egress --net none -- python3 -c '
import socket
s = socket.socket()
try:
    s.connect(("127.0.0.1", 9)); print("connected")
except OSError as e: print("down", e.errno)' 2>&1)
check_contains "--net none: lo is down" "$out" "down 101"

r=$(report --ro-bind /nonexistent-stockade /x -- true)
check_eq "missing bind source: setup_error" "$(json_get "$r" .status)" "setup_error"
check_eq "missing bind source: step" "$(json_get "$r" .setupError.step)" "ro-bind source"
check_contains "missing bind source: errno text" "$(json_get "$r" .setupError.message)" "No such file"
J --ro-bind /nonexistent-stockade /x -- true 2>/dev/null
check_eq "setup error: exit 125" "$?" 125
r=$(report -- /no/such/program)
check_eq "missing program: step execve" "$(json_get "$r" .setupError.step)" "execve"

# Nothing outlives the jail; its cgroup is removed.
mark="98$$.5"
J -- /bin/sh -c "sleep $mark & echo started" >/dev/null
sleep 0.2
check_eq "a background process inside is gone afterwards" "$(pgrep -f "sleep $mark")" ""
left=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 6 -type d -path "*/$STOCKADE_CGROUP_PARENT/*" 2>/dev/null)
check_eq "the jail's cgroups are removed" "$left" ""

J -- /bin/sh -c 'exit 7'
check_eq "exit code passed through" "$?" 7
out=$("$STOCKADE_BIN" jail --help)
check_contains "--help documents exit codes" "$out" "124 timeout"
"$STOCKADE_BIN" jail --memory lots -- true 2>/dev/null
check_eq "bad option value: exit 2" "$?" 2
done_testing
