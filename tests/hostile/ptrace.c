/*
 * ptrace.c - reach another process's memory.
 *   sibling       fork a child and PTRACE_ATTACH / PTRACE_SEIZE it
 *   traceme       PTRACE_TRACEME in a child, then the parent peeks at it
 *   pid1          PTRACE_ATTACH the jail's pid 1
 *   vm-readv      process_vm_readv from a child
 *   vm-writev     process_vm_writev into a child
 *   kill-all      kill(-1, SIGKILL): only the jail's own processes may be hit (the script
 *                 checks a host process with its tag is still alive)
 */
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "hostile.h"

static volatile long secret = 0x5ec7e7;

static pid_t spawn_sleeper(void)
{
	pid_t p = fork();
	if (p == 0) {
		for (;;)
			pause();
	}
	return p;
}

static void reap(pid_t p)
{
	if (p > 0) {
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
	}
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "sibling";
	if (!strcmp(h_variant, "sibling")) {
		pid_t p = spawn_sleeper();
		EXPECT_FAIL(ptrace(PTRACE_ATTACH, p, 0, 0), "ptrace(ATTACH, child)");
		EXPECT_FAIL(ptrace(PTRACE_SEIZE, p, 0, 0), "ptrace(SEIZE, child)");
		reap(p);
	} else if (!strcmp(h_variant, "traceme")) {
		int pfd[2];
		if (pipe(pfd) < 0)
			return 1;
		pid_t p = fork();
		if (p == 0) {
			long r = ptrace(PTRACE_TRACEME, 0, 0, 0);
			char c = r == 0 ? 'y' : 'n';
			if (write(pfd[1], &c, 1) < 0)
				_exit(1);
			if (r == 0)
				raise(SIGSTOP);
			_exit(0);
		}
		char c = 'n';
		if (read(pfd[0], &c, 1) < 0)
			c = 'n';
		if (c == 'y') {
			errno = 0;
			long v = ptrace(PTRACE_PEEKDATA, p, (void *)&secret, 0);
			if (errno == 0 && v == secret)
				ESCAPED("PTRACE_TRACEME child readable with PEEKDATA");
			else
				BLOCKED("TRACEME allowed but PEEKDATA: %s", strerror(errno));
		} else {
			BLOCKED("PTRACE_TRACEME refused");
		}
		reap(p);
	} else if (!strcmp(h_variant, "pid1")) {
		EXPECT_FAIL(ptrace(PTRACE_ATTACH, 1, 0, 0), "ptrace(ATTACH, 1)");
	} else if (!strcmp(h_variant, "vm-readv") || !strcmp(h_variant, "vm-writev")) {
		pid_t p = spawn_sleeper();
		long buf = 0;
		struct iovec l = {&buf, sizeof buf}, r = {(void *)&secret, sizeof secret};
		if (!strcmp(h_variant, "vm-readv")) {
			long n = process_vm_readv(p, &l, 1, &r, 1, 0);
			EXPECT_FAIL(n, "process_vm_readv(child)");
			n = process_vm_readv(1, &l, 1, &r, 1, 0);
			EXPECT_FAIL(n, "process_vm_readv(1)");
		} else {
			buf = 1;
			EXPECT_FAIL(process_vm_writev(p, &l, 1, &r, 1, 0), "process_vm_writev(child)");
			EXPECT_FAIL(process_vm_writev(1, &l, 1, &r, 1, 0), "process_vm_writev(1)");
		}
		reap(p);
	} else if (!strcmp(h_variant, "kill-all")) {
		signal(SIGTERM, SIG_IGN);
		int r = kill(-1, SIGKILL);
		INFO("kill(-1, SIGKILL) = %d (%s)", r, r ? strerror(errno) : "ok");
		BLOCKED("signals stay inside the pid namespace (host check decides)");
	}
	return h_finish();
}
