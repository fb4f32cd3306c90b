#!/usr/bin/env bash
# engine-python.sh - hostile Python through `stockade run`: each abuse must be contained
# (a clean status, nothing escapes) and the engine must answer correctly afterwards.
. "$(dirname "$0")/../lib.sh"

B=$STOCKADE_BIN
# The zygote imports only the standard library here (pandas would slow every start); the
# default module set is covered by the unit tests.
py() { "$B" run --lang python --python-modules json,math,os,ctypes,socket "$@" 2>/dev/null; }
after() { # the next execution still answers
  local o; o=$(py -c 'return 6 * 7')
  check_eq "  ...and the next execution answers ($1)" "$(json_get "$o" .result)" 42
}

out=$(py -c 'return 1')
if [ "$(json_get "$out" .status)" != ok ]; then
  skip "hostile python" "the engine cannot start here"; done_testing; exit
fi

out=$(py --timeout-ms 3000 -c 'import os
n = 0
while True:
    try:
        os.fork(); n += 1
    except OSError:
        return "fork refused"')
check_eq "fork bomb: fork is refused" "$(json_get "$out" .result)" "fork refused"
after fork

out=$(py -c 'import subprocess
subprocess.run(["/bin/sh", "-c", "id"])')
check_eq "subprocess: refused" "$(json_get "$out" .status)" error
after subprocess

for sc in "101:ptrace" "272:unshare" "165:mount" "250:keyctl" "321:bpf" "298:perf_event_open" "310:process_vm_readv" "155:pivot_root" "59:execve"; do
  nr=${sc%%:*}; name=${sc#*:}
  out=$(py -c "import ctypes
ctypes.CDLL(None).syscall($nr, 0, 0, 0, 0, 0)")
  check_eq "ctypes raw $name: sandbox_violation" "$(json_get "$out" .status)" sandbox_violation
  check_eq "ctypes raw $name: names the syscall" "$(json_get "$out" .violation.syscall)" "$name"
done
after syscalls

out=$(py -c 'import ctypes
return ctypes.CDLL(None, use_errno=True).syscall(41, 2, 1, 0)')
check_eq "ctypes raw socket(AF_INET): refused" "$(json_get "$out" .result)" "-1"

for f in /etc/shadow /root /etc/passwd_nonexistent /var/lib /home "$STOCKADE_ROOT"; do
  out=$(py -c "import os
p = '$f'
try:
    return os.listdir(p) if os.path.isdir(p) else open(p).read()
except OSError as e:
    return 'denied: ' + type(e).__name__")
  check_contains "host path $f is not visible" "$(json_get "$out" .result)" "denied"
done

out=$(py -c 'import socket
try:
    socket.create_connection(("127.0.0.1", 22), timeout=1)
except OSError as e:
    return "denied: " + type(e).__name__')
check_contains "TCP socket: denied" "$(json_get "$out" .result)" "denied"

out=$(py -c 'import socket
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind("\0stockade-covert")
except OSError as e:
    return "denied: " + type(e).__name__')
check_contains "abstract unix socket: denied" "$(json_get "$out" .result)" "denied"

for p in /usr/x /etc/x /x /opt/x /proc/x; do
  out=$(py -c "try:
    open('$p', 'w').write('x')
except OSError as e:
    return 'denied: ' + type(e).__name__")
  check_contains "write outside /tmp ($p): denied" "$(json_get "$out" .result)" "denied"
done
out=$(py -c 'open("/tmp/ok", "w").write("x")
return open("/tmp/ok").read()')
check_eq "write inside /tmp works" "$(json_get "$out" .result)" x

out=$(py --timeout-ms 500 -c 'while True: pass')
check_eq "infinite loop: timeout" "$(json_get "$out" .status)" timeout
after loop

out=$(py --memory-mb 64 --timeout-ms 20000 -c 'a = []
while True: a.append(bytearray(1 << 20))')
check_eq "memory bomb: memory_limit" "$(json_get "$out" .status)" memory_limit
after memory

out=$(py -c 'def f(n): return f(n + 1)
f(0)')
check_eq "deep recursion: RecursionError" "$(json_get "$out" .error.name)" RecursionError
out=$(py -c 'import sys
sys.setrecursionlimit(10**7)
def f(n): return f(n + 1)
f(0)')
check "deep recursion past the C stack: contained" test "$(json_get "$out" .status)" != ok
after recursion

out=$(py -c 'while True: print("x" * 10000)')
check_eq "output flood: output_limit" "$(json_get "$out" .status)" output_limit
after flood

out=$(py -c 'import signal, os
os.kill(1, signal.SIGKILL)
return "survived"')
check "kill pid 1 of its own namespace: contained" test -n "$(json_get "$out" .status)"
out=$(py -c 'import os
return [p for p in os.listdir("/proc") if p.isdigit()]')
check_eq "no other process is visible" "$(json_get "$out" '.result | length')" 1

out=$(py -c 'import os
return os.uname().nodename')
check_eq "hostname is the jail's" "$(json_get "$out" .result)" stockade

# The runner's own code after the user's must not depend on builtins the code can remove.
out=$(py -c 'import builtins
del builtins.len
builtins.all = None
builtins.isinstance = lambda *a: False
return {"a": [1, 2.5]}')
check_eq "deleted and replaced builtins: the result still converts" \
  "$(jq -c '[.status, .result]' <<<"$out")" '["ok",{"a":[1,2.5]}]'

done_testing
