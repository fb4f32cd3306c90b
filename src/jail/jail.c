/*
 * jail.c - jail_run(): the supervisor side of a jail.
 *
 * Lifecycle of one jail (all state is local to the jail_run call: several threads may run
 * jails at once; no signal handlers, no SIGCHLD: the child is created with exit_signal 0 and
 * a pidfd, and waited for with poll + waitid(P_PIDFD)):
 *   PREPARE  everything the child needs is built here (mount list, /etc files, env, the
 *            seccomp program);
 *   CLONE    clone3 with new user/pid/mount/net/ipc/uts namespaces; the child waits;
 *   MAP      the supervisor writes uid_map/gid_map (root inside -> 65534 outside, or the
 *            caller's own ids when rootless), then releases the child, which builds its
 *            root (see jail-ns.c) ...
 *   CGROUP   ... while the supervisor creates the cgroup with its limits and attaches the
 *            child, then tells it so: only then does the child take its cgroup namespace
 *            and start the program, so nothing of the program runs outside the cgroup;
 *   RUN      the event loop: program output (capped), control messages (setup errors, the
 *            program's wait status), the seccomp listener and its notifications, wall and CPU
 *            deadlines;
 *   REAP     the jail's init is killed if still alive, the cgroup is killed and emptied,
 *            stats are read, the status is decided, the cgroup is removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail/jail-internal.h"

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
#define OUTSIDE_ID 65534 /* what root inside the jail is outside (privileged mode) */

void jail_spec_init(struct jail_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->net = JAIL_NET_LOOPBACK;
	spec->seccomp_policy = "default";
	spec->limits.tmp_bytes = 64ull << 20;
	spec->limits.nofile = 256;
	spec->limits.fsize_bytes = 64ull << 20;
	spec->limits.stack_bytes = 8ull << 20;
	spec->limits.output_bytes = 1ull << 20;
	spec->stdin_fd = -1;
}

/* ---- prepare ------------------------------------------------------------------------------ */

struct prep {
	struct jail__child c;
	struct jail__mnt mnts[96];
	size_t n_mnts;
	struct jail__symlink links[16];
	size_t n_links;
	struct jail__file files[8];
	size_t n_files;
	char *owned[64]; /* strings to free */
	size_t n_owned;
	char **envp;
};

static const char *keep(struct prep *p, char *s)
{
	if (p->n_owned < ST_ARRAY_SIZE(p->owned))
		p->owned[p->n_owned++] = s;
	return s;
}

static int add_mnt(struct prep *p, enum jail_mount_kind kind, const char *src, const char *dst,
                   uint64_t size, bool optional, struct st_error **err)
{
	if (p->n_mnts >= ST_ARRAY_SIZE(p->mnts))
		return st_error_make(err, E2BIG, "too many mounts (at most %zu)",
		                     ST_ARRAY_SIZE(p->mnts) - 16);
	if (dst == NULL || dst[0] != '/' || strlen(dst) >= 500 || strstr(dst, "/../") ||
	    st_str_has_suffix(dst, "/..") || strcmp(dst, "/") == 0)
		return st_error_make(
		    err, EINVAL,
		    "bad mount destination '%s': use an absolute path other than / "
		    "without '..'",
		    dst ? dst : "(null)");
	struct jail__mnt *m = &p->mnts[p->n_mnts++];
	memset(m, 0, sizeof(*m));
	m->kind = kind;
	m->src = src;
	while (*dst == '/')
		dst++;
	m->dst = dst;
	m->size = size;
	m->optional = optional;
	if (kind != JAIL_MOUNT_TMPFS) {
		struct stat st;
		if (src == NULL)
			return st_error_make(err, EINVAL, "bind mount of '/%s' has no source", dst);
		if (stat(src, &st) < 0) {
			if (optional) {
				p->n_mnts--;
				return 0;
			}
			/* Reported by the child as a setup error naming the step, like any other
			   mount failure: keep it (is_dir false). */
			return 0;
		}
		m->is_dir = S_ISDIR(st.st_mode);
		m->dev = S_ISCHR(st.st_mode);
	}
	return 0;
}

static bool under_mount(const struct prep *p, const char *path)
{
	while (*path == '/')
		path++;
	if (st_str_has_prefix(path, "tmp/") || strcmp(path, "tmp") == 0)
		return true;
	for (size_t i = 0; i < p->n_mnts; i++) {
		size_t n = strlen(p->mnts[i].dst);
		if (strncmp(path, p->mnts[i].dst, n) == 0 && (path[n] == '\0' || path[n] == '/'))
			return true;
	}
	return false;
}

static int prepare(struct prep *p, const struct jail_spec *spec, struct st_error **err)
{
	int r;
	const struct jail_limits *l = &spec->limits;
	if (!spec->no_default_mounts) {
		static const char *const dirs[] = {"usr", "bin", "sbin", "lib", "lib64", "lib32"};
		for (size_t i = 0; i < ST_ARRAY_SIZE(dirs); i++) {
			char host[16];
			snprintf(host, sizeof(host), "/%s", dirs[i]);
			struct stat st;
			if (lstat(host, &st) < 0)
				continue;
			if (S_ISLNK(st.st_mode)) {
				char target[256];
				ssize_t n = readlink(host, target, sizeof(target) - 1);
				if (n <= 0)
					continue;
				target[n] = '\0';
				p->links[p->n_links].target = keep(p, st_xstrdup(target));
				p->links[p->n_links++].path = dirs[i];
			} else if (S_ISDIR(st.st_mode)) {
				const char *h = keep(p, st_xstrdup(host));
				if ((r = add_mnt(p, JAIL_MOUNT_RO_BIND, h, h, 0, true, err)) < 0)
					return r;
			}
		}
		/* /etc: generated files plus the few host pieces programs need. */
		const char *opt_ro[] = {"/etc/ld.so.cache", "/etc/ssl/certs", "/etc/alternatives",
		                        "/etc/ca-certificates"};
		for (size_t i = 0; i < ST_ARRAY_SIZE(opt_ro); i++)
			if ((r = add_mnt(p, JAIL_MOUNT_RO_BIND, opt_ro[i], opt_ro[i], 0, true,
			                 err)) < 0)
				return r;
		/* Name resolution only matters when the policy lets the program open INET sockets. */
		if (spec->seccomp_policy && strcmp(spec->seccomp_policy, "egress") == 0 &&
		    (r = add_mnt(p, JAIL_MOUNT_RO_BIND, "/etc/resolv.conf", "/etc/resolv.conf", 0,
		                 true, err)) < 0)
			return r;
		char lt[256];
		ssize_t n = readlink("/etc/localtime", lt, sizeof(lt) - 1);
		if (n > 0) {
			lt[n] = '\0';
			p->links[p->n_links].target = keep(p, st_xstrdup(lt));
			p->links[p->n_links++].path = "etc/localtime";
		} else if ((r = add_mnt(p, JAIL_MOUNT_RO_BIND, "/etc/localtime", "/etc/localtime",
		                        0, true, err)) < 0) {
			return r;
		}
		p->files[p->n_files++] = (struct jail__file){
		    "etc/passwd",
		    "jail:x:0:0:Stockade jail:/tmp:/bin/sh\n"
		    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		    0644};
		p->files[p->n_files++] =
		    (struct jail__file){"etc/group", "jail:x:0:\nnogroup:x:65534:\n", 0644};
		p->files[p->n_files++] = (struct jail__file){
		    "etc/hosts",
		    keep(p,
		         st_xasprintf("127.0.0.1\tlocalhost %s\n::1\tlocalhost\n", p->c.hostname)),
		    0644};
		p->files[p->n_files++] = (struct jail__file){
		    "etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n", 0644};
	}
	/* /dev: a small tmpfs with the five harmless devices, private shm and stdio links. */
	if ((r = add_mnt(p, JAIL_MOUNT_TMPFS, NULL, "/dev", 256u << 10, false, err)) < 0)
		return r;
	static const char *const devs[] = {"null", "zero", "full", "random", "urandom"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(devs); i++) {
		char *d = st_xasprintf("/dev/%s", devs[i]);
		keep(p, d);
		if ((r = add_mnt(p, JAIL_MOUNT_BIND, d, d, 0, false, err)) < 0)
			return r;
		p->mnts[p->n_mnts - 1].dev = true;
	}
	if ((r = add_mnt(p, JAIL_MOUNT_TMPFS, NULL, "/dev/shm",
	                 l->tmp_bytes ? l->tmp_bytes : 64u << 20, false, err)) < 0)
		return r;
	if ((r = add_mnt(p, JAIL_MOUNT_TMPFS, NULL, "/tmp", l->tmp_bytes, false, err)) < 0)
		return r;
	for (size_t i = 0; i < spec->n_mounts; i++) {
		const struct jail_mount *m = &spec->mounts[i];
		if ((r = add_mnt(p, m->kind, m->src, m->dst,
		                 m->kind == JAIL_MOUNT_TMPFS ? (m->size ? m->size : l->tmp_bytes)
		                                             : 0,
		                 false, err)) < 0)
			return r;
	}
	if (!under_mount(p, p->c.cwd) && strcmp(p->c.cwd, "/") != 0) {
		if ((r = add_mnt(p, JAIL_MOUNT_TMPFS, NULL, p->c.cwd, l->tmp_bytes, false, err)) <
		    0)
			return r;
	}
	return 0;
}

static void prep_release(struct prep *p)
{
	for (size_t i = 0; i < p->n_owned; i++)
		free(p->owned[i]);
	if (p->envp) {
		for (size_t i = 0; p->envp[i]; i++)
			free(p->envp[i]);
		free(p->envp);
	}
}

static char **build_env(const struct jail_spec *spec)
{
	static const char *const defaults[] = {"PATH=" DEFAULT_PATH, "HOME=/tmp", "LANG=C.UTF-8",
	                                       "TMPDIR=/tmp", NULL};
	size_t n = 0;
	const char *const *src = spec->env ? (const char *const *)spec->env : defaults;
	while (src[n])
		n++;
	char **envp = st_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		envp[i] = st_xstrdup(src[i]);
	return envp;
}

/* ---- helpers --------------------------------------------------------------------------- */

static void report_warn(struct jail_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void report_warn(struct jail_report *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = NULL;
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	if (!m)
		return;
	char **w = realloc(r->warnings, (r->n_warnings + 1) * sizeof(*w));
	if (!w) {
		free(m);
		return;
	}
	r->warnings = w;
	r->warnings[r->n_warnings++] = m;
}

static void setup_error(struct jail_report *r, const char *step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void setup_error(struct jail_report *r, const char *step, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = NULL;
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	r->status = JAIL_SETUP_ERROR;
	free(r->setup_step);
	free(r->setup_error);
	r->setup_step = st_xstrdup(step);
	r->setup_error = m ? m : st_xstrdup("unknown error");
}

int jail_write_proc(pid_t pid, const char *file, const char *s)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, s, strlen(s));
	int e = errno;
	close(fd);
	return w < 0 ? -e : 0;
}

static int recv_fd(int sock)
{
	char dummy;
	struct iovec iov = {.iov_base = &dummy, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = u.buf,
	                    .msg_controllen = sizeof(u.buf)};
	ssize_t r;
	do
		r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return -1;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int)))
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

static atomic_uint jail_seq;

/* ---- output ------------------------------------------------------------------------------ */

struct stream {
	int fd; /* read end, -1 once at EOF */
	int pass_fd; /* -1: capture */
	struct st_buf buf;
	uint64_t seen, cap;
	bool truncated;
};

/* Returns true when the cap was passed. */
static bool stream_read(struct stream *s)
{
	char chunk[16384];
	ssize_t n = read(s->fd, chunk, sizeof(chunk));
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN)
			return false;
		n = 0;
	}
	if (n == 0) {
		close(s->fd);
		s->fd = -1;
		return false;
	}
	uint64_t room = s->seen < s->cap ? s->cap - s->seen : 0;
	size_t take = (uint64_t)n < room ? (size_t)n : (size_t)room;
	s->seen += (uint64_t)n;
	if (take) {
		if (s->pass_fd >= 0)
			(void)st_write_all(s->pass_fd, chunk, take);
		else
			(void)st_buf_append_trunc(&s->buf, chunk, take);
	}
	if (s->seen > s->cap && !s->truncated) {
		s->truncated = true;
		return true;
	}
	return false;
}

/* ---- run ---------------------------------------------------------------------------------- */

static void kill_jail(int pidfd, struct jail_cgroup *cg)
{
	syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	if (cg)
		(void)jail_cgroup_kill(cg, NULL);
}

int jail_run(const struct jail_spec *spec, struct jail_report *report, struct st_error **err)
{
	memset(report, 0, sizeof(*report));
	report->max_rss_kb = -1;
	if (spec->argv == NULL || spec->argv[0] == NULL || spec->argv[0][0] == '\0')
		return st_error_make(err, EINVAL, "no command to run in the jail");
	int64_t t_start = st_now_ms();
	bool rootless = spec->rootless || geteuid() != 0;

	struct prep *p = st_xcalloc(1, sizeof(*p));
	struct jail__child *c = &p->c;
	c->spec = spec;
	c->argv = spec->argv;
	c->hostname = spec->hostname ? spec->hostname : "stockade";
	c->cwd = spec->cwd ? spec->cwd : "/tmp";
	c->rootless = rootless;
	c->no_openat2 = getenv("STOCKADE_JAIL_NO_OPENAT2") != NULL;
	c->sync_rd = c->ctl_wr = c->sock_wr = c->out_wr = c->err_wr = c->stdin_fd = -1;
	int ret = 0;
	struct jail_cgroup *cg = NULL;
	bool bpf_owned = false;
	int sync_wr = -1, ctl_rd = -1, sock_rd = -1, out_rd = -1, err_rd = -1, pidfd = -1;
	int devnull = -1, notify_fd = -1;
	pid_t pid = -1;
	struct stream so = {.fd = -1}, se = {.fd = -1};

	if (strlen(c->hostname) > 64 || c->cwd[0] != '/') {
		ret = st_error_make(err, EINVAL, "bad hostname or working directory '%s'", c->cwd);
		goto out;
	}
	if ((ret = prepare(p, spec, err)) < 0)
		goto out;
	c->mnts = p->mnts;
	c->n_mnts = p->n_mnts;
	c->links = p->links;
	c->n_links = p->n_links;
	c->files = p->files;
	c->n_files = p->n_files;
	p->envp = build_env(spec);
	c->envp = p->envp;
	c->path_env = DEFAULT_PATH;
	for (size_t i = 0; p->envp[i]; i++)
		if (st_str_has_prefix(p->envp[i], "PATH="))
			c->path_env = p->envp[i] + 5;

	const char *policy = spec->seccomp_policy ? spec->seccomp_policy : "default";
	if (strcmp(policy, "none") == 0) {
		report_warn(report, "seccomp disabled (policy 'none'): the jail has no syscall "
		                    "filter; for debugging only");
	} else {
		struct st_error *e = NULL;
		ret = jail__seccomp_compile(policy, spec->seccomp_extra_allow, true, &c->bpf,
		                            &bpf_owned, &e);
		if (ret < 0) {
			ret = 0;
			setup_error(report, "seccomp policy", "%s", st_error_msg(e));
			st_error_free(e);
			goto out;
		}
		c->notify = true;
	}

	int fds[2];
	int sp[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		goto sys_fail;
	c->sync_rd = fds[0];
	sync_wr = fds[1];
	if (pipe2(fds, O_CLOEXEC) < 0)
		goto sys_fail;
	ctl_rd = fds[0];
	c->ctl_wr = fds[1];
	if (pipe2(fds, O_CLOEXEC) < 0)
		goto sys_fail;
	out_rd = fds[0];
	c->out_wr = fds[1];
	if (pipe2(fds, O_CLOEXEC) < 0)
		goto sys_fail;
	err_rd = fds[0];
	c->err_wr = fds[1];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		goto sys_fail;
	sock_rd = sp[0];
	c->sock_wr = sp[1];
	if (spec->stdin_fd >= 0) {
		c->stdin_fd = spec->stdin_fd;
	} else {
		devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (devnull < 0)
			goto sys_fail;
		c->stdin_fd = devnull;
	}

	struct clone_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
	           CLONE_NEWUTS | CLONE_PIDFD;
	ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
	ca.exit_signal = 0; /* no SIGCHLD: whatever handler the host process has is not ours */
	pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0) {
		setup_error(report, "clone", "cannot create namespaces: %s%s", strerror(errno),
		            errno == EPERM || errno == ENOSPC
		                ? " (user namespaces disabled? see 'stockade doctor')"
		                : "");
		pid = -1;
		goto out;
	}
	if (pid == 0)
		jail__child_main(c); /* never returns */

	/* Our copy of sync_rd stays open until the last byte is written: a child that failed
	   its set-up and exited must not turn that write into SIGPIPE. */
	close(c->ctl_wr);
	close(c->sock_wr);
	close(c->out_wr);
	close(c->err_wr);
	c->ctl_wr = c->sock_wr = c->out_wr = c->err_wr = -1;

	/* MAP */
	{
		char map[64];
		int r;
		int uid = rootless ? (int)geteuid() : OUTSIDE_ID;
		int gid = rootless ? (int)getegid() : OUTSIDE_ID;
		if (rootless && (r = jail_write_proc(pid, "setgroups", "deny")) < 0) {
			setup_error(report, "write setgroups", "%s", strerror(-r));
			goto out;
		}
		snprintf(map, sizeof(map), "0 %d 1\n", uid);
		if ((r = jail_write_proc(pid, "uid_map", map)) < 0) {
			setup_error(report, "write uid_map", "%s", strerror(-r));
			goto out;
		}
		snprintf(map, sizeof(map), "0 %d 1\n", gid);
		if ((r = jail_write_proc(pid, "gid_map", map)) < 0) {
			setup_error(report, "write gid_map", "%s", strerror(-r));
			goto out;
		}
	}
	if (write(sync_wr, "g", 1) != 1)
		goto sys_fail;

	/* CGROUP, while the child builds its root on the other CPU: it waits for the second
	   byte before it takes its cgroup namespace and starts the program. */
	if (!spec->no_cgroup) {
		char name[64];
		if (spec->cgroup_name)
			st_strlcpy(name, spec->cgroup_name, sizeof(name));
		else
			snprintf(name, sizeof(name), "jail-%d-%u", (int)getpid(),
			         atomic_fetch_add(&jail_seq, 1));
		struct st_error *e = NULL;
		if (jail_cgroup_create(name, &spec->limits, &cg, &e) < 0) {
			if (rootless) {
				report_warn(report,
				            "no cgroup: %s; memory, pids and cpu limits are not "
				            "enforced",
				            st_error_msg(e));
			} else {
				setup_error(report, "cgroup", "%s", st_error_msg(e));
				st_error_free(e);
				goto out;
			}
			st_error_free(e);
		}
		size_t nw;
		const char *const *w = jail_cgroup_warnings(cg, &nw);
		for (size_t i = 0; i < nw; i++)
			report_warn(report, "%s", w[i]);
	}

	if (cg) {
		struct st_error *e = NULL;
		if (jail_cgroup_attach(cg, pid, &e) < 0) {
			/* A child that failed its own set-up meanwhile is gone: the event loop
			   reports its message. Otherwise the attach itself is the failure. */
			struct pollfd pf = {.fd = pidfd, .events = POLLIN};
			if (poll(&pf, 1, 0) != 1) {
				setup_error(report, "cgroup attach", "%s", st_error_msg(e));
				st_error_free(e);
				goto out;
			}
		}
		st_error_free(e);
	}
	if (write(sync_wr, "c", 1) != 1)
		goto sys_fail;
	close(sync_wr);
	sync_wr = -1;
	close(c->sync_rd);
	c->sync_rd = -1;

	/* RUN */
	so.fd = out_rd;
	se.fd = err_rd;
	out_rd = err_rd = -1;
	so.cap = se.cap = spec->limits.output_bytes ? spec->limits.output_bytes : UINT64_MAX;
	so.pass_fd = spec->capture_output ? -1 : 1;
	se.pass_fd = spec->capture_output ? -1 : 2;
	st_buf_init(&so.buf, spec->capture_output
	                         ? (size_t)(so.cap < (1u << 30) ? so.cap : (1u << 30)) + 1
	                         : 0);
	st_buf_init(&se.buf, spec->capture_output
	                         ? (size_t)(se.cap < (1u << 30) ? se.cap : (1u << 30)) + 1
	                         : 0);

	bool init_done = false, got_exit = false, timed_out = false, cpu_out = false,
	     output_hit = false, violation = false, killed = false;
	int payload_status = 0;
	int violation_nr = -1;
	int64_t deadline = spec->limits.wall_ms ? t_start + (int64_t)spec->limits.wall_ms : -1;
	int64_t drain_until = -1;
	for (;;) {
		struct pollfd pf[6];
		int np = 0;
		int i_pid = -1, i_out = -1, i_err = -1, i_ctl = -1, i_sock = -1, i_notify = -1;
		if (!init_done)
			pf[i_pid = np++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
		if (so.fd >= 0)
			pf[i_out = np++] = (struct pollfd){.fd = so.fd, .events = POLLIN};
		if (se.fd >= 0)
			pf[i_err = np++] = (struct pollfd){.fd = se.fd, .events = POLLIN};
		if (ctl_rd >= 0)
			pf[i_ctl = np++] = (struct pollfd){.fd = ctl_rd, .events = POLLIN};
		if (sock_rd >= 0)
			pf[i_sock = np++] = (struct pollfd){.fd = sock_rd, .events = POLLIN};
		if (notify_fd >= 0)
			pf[i_notify = np++] = (struct pollfd){.fd = notify_fd, .events = POLLIN};
		if (init_done && so.fd < 0 && se.fd < 0 && ctl_rd < 0)
			break;
		int64_t now = st_now_ms();
		int timeout = -1;
		if (deadline >= 0 && !killed)
			timeout = deadline > now ? (int)(deadline - now) : 0;
		if (spec->limits.cpu_ms && cg && !killed && (timeout < 0 || timeout > 50))
			timeout = 50;
		if (init_done) {
			if (drain_until < 0)
				drain_until = now + 2000;
			int left = drain_until > now ? (int)(drain_until - now) : 0;
			if (timeout < 0 || timeout > left)
				timeout = left;
		}
		int n = poll(pf, (nfds_t)np, timeout);
		if (n < 0 && errno != EINTR)
			goto sys_fail;
		now = st_now_ms();
		if (n > 0) {
			if (i_out >= 0 && (pf[i_out].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    stream_read(&so))
				output_hit = true;
			if (i_err >= 0 && (pf[i_err].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    stream_read(&se))
				output_hit = true;
			if (i_ctl >= 0 && (pf[i_ctl].revents & (POLLIN | POLLHUP | POLLERR))) {
				struct jail__msg m;
				ssize_t r = st_read_all(ctl_rd, &m, sizeof(m));
				if (r == (ssize_t)sizeof(m)) {
					m.step[sizeof(m.step) - 1] = '\0';
					m.detail[sizeof(m.detail) - 1] = '\0';
					if (m.kind == JAIL__MSG_SETUP_ERROR &&
					    !report->setup_step) {
						setup_error(report, m.step, "%s%s%s", m.detail,
						            m.detail[0] ? ": " : "",
						            strerror(m.err));
					} else if (m.kind == JAIL__MSG_EXIT) {
						got_exit = true;
						payload_status = m.status;
					}
				} else {
					close(ctl_rd);
					ctl_rd = -1;
				}
			}
			if (i_sock >= 0 && (pf[i_sock].revents & (POLLIN | POLLHUP | POLLERR))) {
				int fd = recv_fd(sock_rd);
				if (fd >= 0 && notify_fd < 0)
					notify_fd = fd;
				else if (fd >= 0)
					close(fd);
				close(sock_rd);
				sock_rd = -1;
			}
			if (i_notify >= 0 && (pf[i_notify].revents & POLLIN)) {
				int nr;
				if (jail_seccomp_notify_handle(notify_fd, &nr, NULL) == 0) {
					violation = true;
					violation_nr = nr;
				}
				kill_jail(pidfd, cg);
				killed = true;
				close(notify_fd);
				notify_fd = -1;
			} else if (i_notify >= 0 && (pf[i_notify].revents & (POLLHUP | POLLERR))) {
				close(notify_fd);
				notify_fd = -1;
			}
			if (i_pid >= 0 && (pf[i_pid].revents & POLLIN))
				init_done = true;
		}
		if (output_hit && !killed) {
			kill_jail(pidfd, cg);
			killed = true;
		}
		if (!killed && deadline >= 0 && now >= deadline) {
			timed_out = true;
			kill_jail(pidfd, cg);
			killed = true;
		}
		if (!killed && spec->limits.cpu_ms && cg) {
			struct jail_cgroup_stats st;
			jail_cgroup_read_stats(cg, &st);
			if (st.cpu_ms >= 0 && (uint64_t)st.cpu_ms >= spec->limits.cpu_ms) {
				cpu_out = true;
				kill_jail(pidfd, cg);
				killed = true;
			}
		}
		if (init_done && now >= drain_until && drain_until >= 0) {
			/* Output pipes still open after the jail is gone: a process we cannot see
			   holds them. Kill the cgroup and stop reading. */
			kill_jail(pidfd, cg);
			break;
		}
	}

	/* REAP */
	siginfo_t si;
	struct rusage ru;
	memset(&si, 0, sizeof(si));
	memset(&ru, 0, sizeof(ru));
	if (syscall(SYS_waitid, P_PIDFD, pidfd, &si, WEXITED | __WALL, &ru) == 0)
		pid = -1;
	report->wall_ms = st_now_ms() - t_start;
	if (cg)
		(void)jail_cgroup_kill(cg, NULL);
	struct jail_cgroup_stats st;
	jail_cgroup_read_stats(cg, &st);
	int64_t ru_cpu = (int64_t)ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
	                 (int64_t)ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
	report->cpu_ms = st.cpu_ms >= 0 ? st.cpu_ms : ru_cpu;
	report->max_rss_kb = st.max_rss_kb >= 0 ? st.max_rss_kb : ru.ru_maxrss;
	if (st.pids_limit_hit)
		report->limits_hit |= JAIL_HIT_PIDS;
	if (st.oom_killed)
		report->limits_hit |= JAIL_HIT_MEMORY;
	int sig = 0;
	if (got_exit && WIFSIGNALED(payload_status))
		sig = WTERMSIG(payload_status);
	if (sig == SIGXFSZ)
		report->limits_hit |= JAIL_HIT_FSIZE;
	bool rlimit_cpu =
	    sig == SIGXCPU ||
	    (sig == SIGKILL && spec->limits.cpu_ms &&
	     (uint64_t)report->cpu_ms + 1000 >= spec->limits.cpu_ms && !st.oom_killed);

	if (report->setup_step) {
		report->status = JAIL_SETUP_ERROR;
	} else if (violation) {
		report->status = JAIL_SANDBOX_VIOLATION;
		const char *name = jail_syscall_name(violation_nr);
		report->violation_syscall =
		    name ? st_xstrdup(name) : st_xasprintf("syscall %d", violation_nr);
	} else if (output_hit) {
		report->status = JAIL_OUTPUT_LIMIT;
		report->limits_hit |= JAIL_HIT_OUTPUT;
	} else if (timed_out) {
		report->status = JAIL_TIMEOUT;
		report->limits_hit |= JAIL_HIT_WALL;
	} else if (cpu_out || rlimit_cpu) {
		report->status = JAIL_TIMEOUT;
		report->limits_hit |= JAIL_HIT_CPU;
	} else if (st.oom_killed &&
	           (!got_exit || WIFSIGNALED(payload_status) || WEXITSTATUS(payload_status) != 0)) {
		report->status = JAIL_MEMORY_LIMIT;
	} else if (!got_exit) {
		report->status = JAIL_SIGNALED;
		report->signal =
		    si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED ? si.si_status : SIGKILL;
	} else if (WIFEXITED(payload_status)) {
		report->exit_code = WEXITSTATUS(payload_status);
		report->status = report->exit_code == 0 ? JAIL_OK : JAIL_ERROR;
	} else if (sig == SIGSYS) {
		/* Killed by the filter itself (bad architecture, or no listener). */
		report->status = JAIL_SANDBOX_VIOLATION;
		report->signal = sig;
	} else {
		report->status = JAIL_SIGNALED;
		report->signal = sig;
	}
	if (report->status == JAIL_TIMEOUT || report->status == JAIL_MEMORY_LIMIT ||
	    report->status == JAIL_OUTPUT_LIMIT || report->status == JAIL_SANDBOX_VIOLATION)
		report->signal = report->signal ? report->signal : (sig ? sig : SIGKILL);
	report->out_truncated = so.truncated;
	report->err_truncated = se.truncated;
	if (spec->capture_output) {
		report->out_len = so.buf.len;
		report->out = so.buf.data ? st_buf_steal(&so.buf) : st_xstrdup("");
		report->err_len = se.buf.len;
		report->err = se.buf.data ? st_buf_steal(&se.buf) : st_xstrdup("");
	}
	goto out;

sys_fail:
	ret = st_error_make(err, errno, "jail supervisor");
out:
	if (pid > 0 && pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		siginfo_t si2;
		syscall(SYS_waitid, P_PIDFD, pidfd, &si2, WEXITED | __WALL, NULL);
	}
	if (report->wall_ms == 0)
		report->wall_ms = st_now_ms() - t_start;
	jail_cgroup_destroy(cg);
	int close_fds[] = {sync_wr,    ctl_rd,    sock_rd,    out_rd,    err_rd,
	                   pidfd,      devnull,   notify_fd,  so.fd,     se.fd,
	                   c->sync_rd, c->ctl_wr, c->sock_wr, c->out_wr, c->err_wr};
	for (size_t i = 0; i < ST_ARRAY_SIZE(close_fds); i++)
		if (close_fds[i] >= 0)
			close(close_fds[i]);
	st_buf_release(&so.buf);
	st_buf_release(&se.buf);
	if (bpf_owned)
		jail__bpf_free(c->bpf);
	prep_release(p);
	free(p);
	return ret;
}
