/*
 * jailfloor.c - the "floor" row of bench/jail-start.sh: the least any namespace jail can do on
 * this host. One clone3 with the namespaces `stockade jail` creates (user, mount, pid, net,
 * ipc, uts), the uid/gid maps written by the parent (root inside -> the caller's ids, or
 * 65534 when run as root, as stockade does), then the child execs the program and the parent
 * waits. No mounts, no cgroup, no seccomp, no second process: whatever a real jail costs on
 * top of this is its own work.
 *
 *   jailfloor PROGRAM [ARGS]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int write_file(pid_t pid, const char *file, const char *s)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, s, strlen(s));
	close(fd);
	return w < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: jailfloor PROGRAM [ARGS]\n");
		return 2;
	}
	int sync[2];
	if (pipe2(sync, O_CLOEXEC) < 0)
		return 1;
	struct clone_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
	           CLONE_NEWUTS;
	ca.exit_signal = SIGCHLD;
	pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0) {
		perror("clone3");
		return 1;
	}
	if (pid == 0) {
		char b;
		close(sync[1]);
		if (read(sync[0], &b, 1) != 1)
			_exit(125);
		if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0)
			_exit(125);
		execve(argv[1], argv + 1, environ);
		_exit(127);
	}
	close(sync[0]);
	int root = geteuid() == 0;
	char map[64];
	if (!root && write_file(pid, "setgroups", "deny") < 0)
		return 1;
	snprintf(map, sizeof(map), "0 %d 1\n", root ? 65534 : (int)geteuid());
	if (write_file(pid, "uid_map", map) < 0)
		return 1;
	snprintf(map, sizeof(map), "0 %d 1\n", root ? 65534 : (int)getegid());
	if (write_file(pid, "gid_map", map) < 0)
		return 1;
	if (write(sync[1], "g", 1) != 1)
		return 1;
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return 1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
