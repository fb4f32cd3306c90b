#!/usr/bin/env bash
# Hostile suite, part 2: kernel attack surface and network reach. Each syscall family is tried
# with arguments that would act if let through; refusal or a seccomp kill passes.
. "$(dirname "$0")/../lib.sh"
. "$STOCKADE_ROOT/tests/tools/hostile.bash"
hostile_require_jail

expect_blocked "bpf: BPF_MAP_CREATE refused" -- /hostile/kernel bpf
expect_blocked "perf_event_open refused" -- /hostile/kernel perf-event
expect_blocked "userfaultfd (syscall and /dev/userfaultfd) refused" -- /hostile/kernel userfaultfd
expect_blocked "kexec_load/kexec_file_load refused" -- /hostile/kernel kexec
expect_blocked "init_module/finit_module/delete_module refused" -- /hostile/kernel modules
expect_blocked "reboot refused" -- /hostile/kernel reboot
expect_blocked "swapon/swapoff refused" -- /hostile/kernel swap
expect_blocked "acct refused" -- /hostile/kernel acct
expect_blocked "io_uring_setup/enter/register refused" -- /hostile/kernel io-uring
expect_blocked "keyctl refused" -- /hostile/kernel keyctl
expect_blocked "add_key refused" -- /hostile/kernel add-key
expect_blocked "request_key refused" -- /hostile/kernel request-key
expect_blocked "open_by_handle_at (shocker) opens nothing" -- /hostile/kernel shocker

expect_blocked "socket: AF_VSOCK refused" -- /hostile/sockets vsock
expect_blocked "socket: AF_PACKET refused (CVE-2020-14386 class)" -- /hostile/sockets packet
expect_blocked "socket: AF_NETLINK refused" -- /hostile/sockets netlink
expect_blocked "socket: AF_INET refused without egress" -- /hostile/sockets inet
expect_blocked "socket: AF_INET6 refused without egress" -- /hostile/sockets inet6
expect_blocked "socket: raw IP sockets refused" -- /hostile/sockets raw
expect_blocked "socket: raw IP sockets refused with --net none" --net none -- /hostile/sockets raw

# Host listeners the jail must not reach: TCP on 127.0.0.1 and an abstract unix socket.
port=$(free_port)
abstract=stockade-hostile-$H_HOST_TAG
python3 - "$port" "$abstract" <<'PY' &
import socket, sys, threading, time
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", int(sys.argv[1]))); t.listen(8)
u = socket.socket(socket.AF_UNIX); u.bind("\0" + sys.argv[2]); u.listen(8)
def serve(s):
    while True:
        c, _ = s.accept()
        try: c.sendall(b"host-secret\n")
        except OSError: pass
        c.close()
for s in (t, u): threading.Thread(target=serve, args=(s,), daemon=True).start()
time.sleep(120)
PY
H_PIDS+=($!)
for _ in $(seq 50); do python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('\0'+sys.argv[1])" "$abstract" 2>/dev/null && break; sleep 0.1; done
expect_blocked "net: host's 127.0.0.1:$port listener not reachable" -- /hostile/sockets inet-host "$port"
expect_blocked "net: host's abstract unix socket not reachable (own netns)" -- /hostile/sockets abstract "$abstract"
expect_blocked "net: host's abstract unix socket not reachable with --net none" --net none -- /hostile/sockets abstract "$abstract"
jrun -- /hostile/sockets unix-ok
check_contains "net: AF_UNIX socketpair still works inside" "$J_OUT" "BLOCKED unix-ok"

hostile_end
done_testing
