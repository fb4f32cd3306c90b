/*
 * jail-ns.c - the child side of jail_run: everything after clone().
 *
 * The cloned child is pid 1 of its new pid namespace (and owns new user, mount, net, ipc and
 * uts namespaces). Its life:
 *   1. wait until the supervisor has written uid_map/gid_map;
 *   2. become root of the user namespace (mapped to an unprivileged uid outside) with no
 *      supplementary groups, then hostname, loopback and the new root; then wait until the
 *      supervisor has put us in the jail's cgroup (it creates it meanwhile) and take a
 *      cgroup namespace;
 *   3. make itself non-dumpable (the program cannot open /proc/1/exe, the supervisor's
 *      binary: CVE-2019-5736), then start the payload vfork-style (CLONE_VM | CLONE_VFORK on
 *      a stack of its own: no copy of the address space, the init waits until the exec).
 *      The payload takes a new session (no controlling tty: TIOCSTI has no target), its
 *      stdio, working dir and rlimits, closes every other fd, drops every capability, sets
 *      no_new_privs, loads the seccomp filter (handing the user-notify listener to the
 *      supervisor) and execs the program. Until the exec it shares the init's memory, so
 *      like everything here it only makes syscalls and writes only its own stack;
 *   4. stay as a reaping init: drop its own privileges, reap everything, and when the
 *      payload exits send its wait status up and exit, which makes the kernel kill whatever
 *      is left in the pid namespace.
 * Setup failures go to the supervisor as a fixed-size message naming the step and errno.
 * Nothing here allocates: the supervisor may be multi-threaded (see jail-internal.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail/jail-internal.h"

static void copy_str(char *dst, size_t size, const char *src)
{
	size_t i = 0;
	for (; src && src[i] && i + 1 < size; i++)
		dst[i] = src[i];
	dst[i] = '\0';
}

static void send_msg(int fd, const struct jail__msg *m)
{
	ssize_t w;
	do
		w = write(fd, m, sizeof(*m));
	while (w < 0 && errno == EINTR);
}

void jail__child_fail(struct jail__child *c, const char *step, const char *detail, int e)
{
	struct jail__msg m;
	memset(&m, 0, sizeof(m));
	m.kind = JAIL__MSG_SETUP_ERROR;
	m.err = e < 0 ? -e : e;
	copy_str(m.step, sizeof(m.step), step);
	copy_str(m.detail, sizeof(m.detail), detail);
	send_msg(c->ctl_wr, &m);
	_exit(125);
}

int jail_loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	copy_str(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	int r = 0;
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		r = -errno;
	} else {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
			r = -errno;
	}
	close(s);
	return r;
}

static int send_fd(int sock, int fd)
{
	char dummy = 'n';
	struct iovec iov = {.iov_base = &dummy, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = u.buf,
	                    .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	ssize_t r;
	do
		r = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

/* execve argv[0], searched in PATH when it has no slash (execvpe would read our own PATH). */
static int exec_program(struct jail__child *c)
{
	const char *prog = c->argv[0];
	if (strchr(prog, '/')) {
		execve(prog, c->argv, c->envp);
		return -errno;
	}
	int saved = ENOENT;
	char buf[4096];
	const char *p = c->path_env;
	while (p) {
		const char *end = strchr(p, ':');
		size_t dl = end ? (size_t)(end - p) : strlen(p);
		size_t pl = strlen(prog);
		if (dl == 0) {
			dl = 1;
			p = ".";
		}
		if (dl + pl + 2 <= sizeof(buf)) {
			memcpy(buf, p, dl);
			buf[dl] = '/';
			memcpy(buf + dl + 1, prog, pl + 1);
			execve(buf, c->argv, c->envp);
			if (errno == EACCES)
				saved = EACCES;
			else if (errno != ENOENT && errno != ENOTDIR)
				return -errno;
		}
		p = end ? end + 1 : NULL;
	}
	return -saved;
}

__attribute__((noreturn)) static void payload_main(struct jail__child *c)
{
	const char *step = "setsid";
	if (setsid() < 0)
		jail__child_fail(c, step, NULL, errno);
	step = "set up stdio";
	if (dup2(c->stdin_fd, 0) < 0 || dup2(c->out_wr, 1) < 0 || dup2(c->err_wr, 2) < 0)
		jail__child_fail(c, step, NULL, errno);
	if (chdir(c->cwd) < 0)
		jail__child_fail(c, "chdir", c->cwd, errno);
	int r = jail__apply_rlimits_raw(&c->spec->limits, &step);
	if (r < 0)
		jail__child_fail(c, step, NULL, r);
	/* Every fd but 0-2 goes: closed now, or (the two we still need to report through)
	   closed by the exec. */
	if (syscall(SYS_close_range, 3, ~0u, CLOSE_RANGE_CLOEXEC) < 0) {
		for (int fd = 3; fd < 1024; fd++)
			if (fd != c->ctl_wr && fd != c->sock_wr)
				close(fd);
	}
	r = jail__drop_privileges_raw(true, &step); /* the init emptied the bounding set */
	if (r < 0)
		jail__child_fail(c, step, NULL, r);
	if (c->bpf) {
		r = jail__seccomp_install(c->bpf, c->notify, 0);
		if (r < 0 && c->notify) {
			/* No user-notify here (nested under a filter that refuses it?): violations
			   kill the process instead; the report then cannot name the syscall. */
			r = -ENOTSUP;
		}
		if (r < 0)
			jail__child_fail(c, "load seccomp filter", NULL, r);
		if (c->notify) {
			int lfd = r;
			r = send_fd(c->sock_wr, lfd);
			close(lfd);
			if (r < 0)
				jail__child_fail(c, "hand over seccomp listener", NULL, r);
		}
	}
	close(c->sock_wr);
	r = exec_program(c);
	jail__child_fail(c, "execve", c->argv[0], r);
}

/* The payload's stack while it shares the init's memory (until its execve). Each jail's
   init is a process of its own, with its own copy of this (untouched, so free, until used). */
static char payload_stack[256 * 1024] __attribute__((aligned(64)));

static int payload_entry(void *arg)
{
	payload_main(arg);
}

__attribute__((noreturn)) static void init_loop(struct jail__child *c, pid_t payload)
{
	/* Keep only the control pipe: the supervisor sees EOF on the program's output as soon
	   as the program and its descendants are gone. */
	int ctl = c->ctl_wr;
	if (syscall(SYS_close_range, 0, ctl - 1, 0) < 0 ||
	    syscall(SYS_close_range, ctl + 1, ~0u, 0) < 0) {
		for (int fd = 0; fd < 1024; fd++)
			if (fd != ctl)
				close(fd);
	}
	const char *step;
	(void)jail__drop_privileges_raw(true, &step);
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, __WALL);
		if (p < 0) {
			if (errno == EINTR)
				continue;
			_exit(0);
		}
		if (p == payload) {
			struct jail__msg m;
			memset(&m, 0, sizeof(m));
			m.kind = JAIL__MSG_EXIT;
			m.status = st;
			send_msg(ctl, &m);
			_exit(0);
		}
	}
}

void jail__child_main(struct jail__child *c)
{
	char b;
	/* The supervisor dying must not leave a jail behind. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	ssize_t r;
	do
		r = read(c->sync_rd, &b, 1);
	while (r < 0 && errno == EINTR);
	if (r != 1)
		_exit(125); /* the supervisor gave up on us */

	/* Become root of the user namespace first: uid/gid 0 inside, the unprivileged ids
	   outside, no supplementary groups. The jail is then built with the jail user's own
	   access to host paths (it cannot bind what it could not read), and the files it creates
	   are owned by a mapped id. */
	/* Raw syscalls: glibc's wrappers would try to apply the change to every thread it
	   believes exists (the supervisor's, which are not in this process) and wait forever. */
	if (syscall(SYS_setresgid, 0, 0, 0) < 0)
		jail__child_fail(c, "setresgid", NULL, errno);
	if (!c->rootless && syscall(SYS_setgroups, 0, NULL) < 0)
		jail__child_fail(c, "setgroups", NULL, errno);
	if (syscall(SYS_setresuid, 0, 0, 0) < 0)
		jail__child_fail(c, "setresuid", NULL, errno);
	if (sethostname(c->hostname, strlen(c->hostname)) < 0)
		jail__child_fail(c, "sethostname", c->hostname, errno);
	if (c->spec->net == JAIL_NET_LOOPBACK) {
		int e = jail_loopback_up();
		if (e < 0)
			jail__child_fail(c, "bring up lo", NULL, e);
	}
	const char *step = "mount";
	char detail[128] = "";
	int e = jail__mount_root(c, &step, detail, sizeof(detail));
	if (e < 0)
		jail__child_fail(c, step, detail, e);

	/* The supervisor created our cgroup and put us in it meanwhile: it says so with a
	   second byte. That cgroup then becomes our "/". */
	do
		r = read(c->sync_rd, &b, 1);
	while (r < 0 && errno == EINTR);
	if (r != 1)
		_exit(125); /* the supervisor gave up on us (it reports why) */
	close(c->sync_rd);
	if (unshare(CLONE_NEWCGROUP) < 0 && errno != EINVAL)
		jail__child_fail(c, "unshare cgroup namespace", NULL, errno);

	/* Before the payload exists: nothing in the jail ever sees a dumpable init. (The
	   payload shares this mm until its exec, which gives the program a fresh one.) */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* Securebits and the bounding set once, here, for both of us: the payload inherits them
	   (nothing left needs a capability the program could gain back by exec). */
	e = jail__lock_bounding_raw(&step);
	if (e < 0)
		jail__child_fail(c, step, NULL, e);
	/* glibc's clone() wrapper, not fork(): fork would take malloc locks that threads of
	   the supervisor (which do not exist here) may have held at clone time, and copy the
	   whole address space only for the payload to replace it. */
	pid_t p = clone(payload_entry, payload_stack + sizeof(payload_stack),
	                CLONE_VM | CLONE_VFORK | SIGCHLD, c);
	if (p < 0)
		jail__child_fail(c, "start payload", NULL, errno);
	init_loop(c, p);
}
