/*
 * tty.c - terminal injection from inside a jail (CVE-2017-5226, CVE-2019-10063).
 *   tiocsti         ioctl(fd, TIOCSTI) on fds 0-2 and /dev/tty
 *   tiocsti-hibits  the same with 0x100005412 through syscall(SYS_ioctl): the kernel truncates
 *                   the request to 32 bits, so a filter that compares 64 bits is bypassed
 *   tioclinux       ioctl(fd, TIOCLINUX) subcodes (selection paste) on the same fds
 * The defence: setsid (no controlling tty) and an ioctl filter on the low 32 bits.
 */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "hostile.h"

static void try_fd(int fd, const char *name, unsigned long req, const char *reqname)
{
	char c = '#';
	char what[128];
	snprintf(what, sizeof what, "%s on %s", reqname, name);
	long r;
	if (req == TIOCLINUX) {
		char sub[8] = {3, 0}; /* TIOCL_PASTESEL */
		r = syscall(SYS_ioctl, fd, req, sub);
	} else {
		r = syscall(SYS_ioctl, fd, req, &c);
	}
	EXPECT_FAIL(r, what);
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "tiocsti";
	unsigned long req = TIOCSTI;
	const char *reqname = "TIOCSTI";
	if (!strcmp(h_variant, "tiocsti-hibits")) {
		req = 0x100005412UL;
		reqname = "TIOCSTI|1<<32";
	} else if (!strcmp(h_variant, "tioclinux")) {
		req = TIOCLINUX;
		reqname = "TIOCLINUX";
	}
	INFO("isatty 0/1/2 = %d/%d/%d, sid=%d pgid=%d", isatty(0), isatty(1), isatty(2),
	     (int)getsid(0), (int)getpgrp());
	try_fd(0, "stdin", req, reqname);
	try_fd(1, "stdout", req, reqname);
	try_fd(2, "stderr", req, reqname);
	int t = open("/dev/tty", O_RDWR | O_CLOEXEC);
	if (t < 0)
		BLOCKED("open /dev/tty: %s", strerror(errno));
	else
		try_fd(t, "/dev/tty", req, reqname);
	/* A console device is the other way in for TIOCLINUX. */
	const char *cons[] = {"/dev/tty0", "/dev/console", "/dev/tty1"};
	for (size_t i = 0; i < 3; i++) {
		int c = open(cons[i], O_RDWR | O_CLOEXEC | O_NOCTTY);
		if (c < 0)
			BLOCKED("open %s: %s", cons[i], strerror(errno));
		else
			try_fd(c, cons[i], req, reqname);
	}
	return h_finish();
}
