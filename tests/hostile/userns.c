/*
 * userns.c - reach the kernel through nested namespaces (CVE-2022-0185 and friends).
 *   unshare-user   unshare(CLONE_NEWUSER), then unshare(CLONE_NEWNS) and the others
 *   clone-newuser  raw clone(CLONE_NEWUSER|CLONE_NEWNS|SIGCHLD)
 *   clone3         clone3() must fail with ENOSYS so libc falls back to clone
 *   fsopen         fsopen("tmpfs"), then fsconfig/fsmount on whatever came back
 *   fsconfig       fsconfig() on a bad fd: EBADF means the syscall is reachable
 *   setns          open /proc/1/ns/<type> and setns() into each
 *   open-tree      open_tree()/move_mount() of /
 * A refusal (EPERM, ENOSYS, EACCES) or a seccomp kill is a pass.
 */
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "hostile.h"

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#define SYS_fsconfig 431
#define SYS_fsmount 432
#define SYS_open_tree 428
#define SYS_move_mount 429
#endif

/* EBADF/EINVAL mean the kernel looked at the arguments: the filter let it through. */
static void expect_refused(long r, const char *what)
{
	if (r >= 0)
		ESCAPED("%s succeeded (%ld)", what, r);
	else if (errno == EPERM || errno == ENOSYS || errno == EACCES)
		BLOCKED("%s: %s", what, strerror(errno));
	else
		ESCAPED("%s reached the kernel: %s (the filter let it through)", what,
		        strerror(errno));
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "unshare-user";
	if (!strcmp(h_variant, "unshare-user")) {
		EXPECT_FAIL(unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)");
		EXPECT_FAIL(unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)");
		EXPECT_FAIL(unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)");
		EXPECT_FAIL(unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWCGROUP),
		            "unshare(NEWUSER|NEWNS|NEWPID|NEWCGROUP)");
	} else if (!strcmp(h_variant, "clone-newuser")) {
		long r = syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
		if (r == 0)
			_exit(0);
		if (r > 0)
			waitpid((pid_t)r, NULL, 0);
		EXPECT_FAIL(r, "clone(CLONE_NEWUSER|CLONE_NEWNS)");
		r = syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0);
		if (r == 0)
			_exit(0);
		if (r > 0)
			waitpid((pid_t)r, NULL, 0);
		EXPECT_FAIL(r, "clone(CLONE_NEWNET)");
	} else if (!strcmp(h_variant, "clone3")) {
		struct {
			unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack,
			    stack_size, tls;
		} args = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
		long r = syscall(SYS_clone3, &args, sizeof args);
		if (r == 0)
			_exit(0);
		if (r > 0) {
			waitpid((pid_t)r, NULL, 0);
			ESCAPED("clone3(CLONE_NEWUSER) created pid %ld", r);
		} else if (errno == ENOSYS) {
			BLOCKED("clone3: ENOSYS (libc falls back to clone)");
		} else {
			ESCAPED("clone3 failed with %s, not ENOSYS: glibc will not fall back",
			        strerror(errno));
		}
		/* And a plain fork still works (through the clone fallback). */
		pid_t p = fork();
		if (p == 0)
			_exit(7);
		int st = 0;
		if (p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 7)
			INFO("fork works");
		else
			ESCAPED("fork broken after clone3 refusal");
	} else if (!strcmp(h_variant, "fsopen")) {
		long fd = syscall(SYS_fsopen, "tmpfs", 0);
		expect_refused(fd, "fsopen(tmpfs)");
		if (fd >= 0) {
			long r = syscall(SYS_fsconfig, fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0);
			INFO("fsconfig create: %ld %s", r, strerror(errno));
		}
		fd = syscall(SYS_fsopen, "cgroup", 0);
		expect_refused(fd, "fsopen(cgroup)");
	} else if (!strcmp(h_variant, "fsconfig")) {
		expect_refused(syscall(SYS_fsconfig, 99, FSCONFIG_SET_STRING, "source", "x", 0),
		               "fsconfig(99, SET_STRING)");
		expect_refused(syscall(SYS_fsmount, 99, 0, 0), "fsmount(99)");
	} else if (!strcmp(h_variant, "open-tree")) {
		expect_refused(syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */),
		               "open_tree(/)");
		expect_refused(syscall(SYS_move_mount, 99, "", AT_FDCWD, "/tmp", 0),
		               "move_mount");
	} else if (!strcmp(h_variant, "setns")) {
		const char *ns[] = {"user", "mnt", "net", "pid", "uts", "ipc", "cgroup"};
		for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
			char p[64];
			snprintf(p, sizeof p, "/proc/1/ns/%s", ns[i]);
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd < 0) {
				BLOCKED("open %s: %s", p, strerror(errno));
				continue;
			}
			char what[80];
			snprintf(what, sizeof what, "setns(%s)", p);
			/* Joining our own namespace is a no-op for some types; joining the
			   user namespace we are in is EINVAL. Either way it must not be 0
			   for a namespace we are not already in, and the filter should
			   refuse it outright. */
			long r = syscall(SYS_setns, fd, 0);
			expect_refused(r, what);
			close(fd);
		}
		expect_refused(syscall(SYS_setns, 99, 0), "setns(99)");
	}
	return h_finish();
}
