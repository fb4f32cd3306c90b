/*
 * abi.c - seccomp bypass through other syscall ABIs.
 *   i386-getpid    int $0x80 with the i386 number of getpid (20): a filter that checks the
 *                  architecture kills it; a filter that forgot must not let it run
 *   i386-unshare   int $0x80 with the i386 number of unshare (310), CLONE_NEWUSER
 *   i386-ptrace    int $0x80 ptrace (26) PTRACE_TRACEME
 *   x32-getpid     syscall(39 | 0x40000000)
 *   x32-unshare    syscall(272 | 0x40000000, CLONE_NEWUSER)
 * Reaching the kernel through another ABI means the filter's numbers did not apply.
 */
#include <sched.h>
#include <sys/syscall.h>

#include "hostile.h"

static long int80(long nr, long a1)
{
	long ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a1), "c"(0), "d"(0) : "memory");
	return ret;
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "i386-getpid";
	long r;
	if (!strcmp(h_variant, "i386-getpid")) {
		r = int80(20, 0);
		if (r > 0)
			ESCAPED("i386 getpid ran (returned %ld): no architecture check", r);
		else
			BLOCKED("i386 getpid returned %ld", r);
	} else if (!strcmp(h_variant, "i386-unshare")) {
		r = int80(310, CLONE_NEWUSER);
		if (r == 0)
			ESCAPED("i386 unshare(CLONE_NEWUSER) succeeded");
		else
			BLOCKED("i386 unshare returned %ld", r);
	} else if (!strcmp(h_variant, "i386-ptrace")) {
		r = int80(26, 0);
		if (r == 0)
			ESCAPED("i386 ptrace(TRACEME) succeeded");
		else
			BLOCKED("i386 ptrace returned %ld", r);
	} else if (!strcmp(h_variant, "x32-getpid")) {
		r = syscall(39 | 0x40000000L);
		if (r > 0)
			ESCAPED("x32 getpid ran (returned %ld)", r);
		else
			BLOCKED("x32 getpid: %s", strerror(errno));
	} else if (!strcmp(h_variant, "x32-unshare")) {
		r = syscall(272 | 0x40000000L, CLONE_NEWUSER);
		if (r == 0)
			ESCAPED("x32 unshare(CLONE_NEWUSER) succeeded");
		else
			BLOCKED("x32 unshare: %s", strerror(errno));
	}
	return h_finish();
}
