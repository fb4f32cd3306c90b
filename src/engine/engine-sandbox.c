/*
 * engine-sandbox.c - the execution seccomp policy and the per-execution cgroups.
 *
 * Seccomp: a deny-by-default allowlist shaped for what JavaScriptCore (JIT: PROT_EXEC
 * mappings, helper threads, membarrier, thread signals for GC) and CPython need, and nothing
 * that reaches outside the execution: no new namespaces, mounts, ptrace, keyrings, bpf,
 * perf, execve, module loading, process creation other than threads. Syscalls outside the list
 * trap: the SIGSYS handler reports the syscall number on the execution socket and the child
 * dies (status sandbox_violation). A few calls answer an errno instead so that ordinary code
 * gets an exception rather than a dead process: socket() (EACCES), fork-style clone (EPERM),
 * clone3 (ENOSYS, so libc falls back to clone, whose flags we can inspect), terminal ioctls
 * (ENOTTY).
 * socketpair(AF_UNIX) is allowed: an unnamed pair reaches nobody else.
 * rt_sigaction on SIGSYS is refused so user code cannot hide a violation.
 *
 * Cgroups: Stockade's engine parent cgroup "<prefix>" is created once under the cgroup the
 * service runs in (v1 memory + pids hierarchies, or the v2 unified tree); each execution gets
 * "<prefix>/x<N>" with memory (swap off) and pids limits, removed after it ends. When the host
 * offers no writable cgroup, engine__cgroup_available() is false and the pool records a
 * warning: executions then have no memory limit beyond the zygote's.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/filter.h>
#include <linux/seccomp.h>

#include <linux/sched.h>

#include "engine/engine-internal.h"

/* ---- seccomp -------------------------------------------------------------------------------- */

static const char *const allowed_syscalls[] = {
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "close",
    "close_range",
    "fstat",
    "stat",
    "lstat",
    "newfstatat",
    "statx",
    "lseek",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "brk",
    "msync",
    "mincore",
    "mlock",
    "munlock",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "rt_sigtimedwait",
    "rt_sigsuspend",
    "rt_sigpending",
    "futex",
    "futex_waitv",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "membarrier",
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getgroups",
    "getresuid",
    "getresgid",
    "getpgrp",
    "getpgid",
    "getsid",
    "exit",
    "exit_group",
    "open",
    "openat",
    "getdents64",
    "getdents",
    "readlink",
    "readlinkat",
    "access",
    "faccessat",
    "faccessat2",
    "getcwd",
    "chdir",
    "fchdir",
    "fcntl",
    "dup",
    "dup2",
    "dup3",
    "pipe",
    "pipe2",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "time",
    "getrandom",
    "sched_yield",
    "sched_getaffinity",
    "sched_getparam",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "getrlimit",
    "uname",
    "sysinfo",
    "getrusage",
    "times",
    "getcpu",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    "mkdir",
    "mkdirat",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "ftruncate",
    "truncate",
    "fsync",
    "fdatasync",
    "fchmod",
    "fchmodat",
    "chmod",
    "utimensat",
    "symlink",
    "symlinkat",
    "link",
    "linkat",
    "statfs",
    "fstatfs",
    "fadvise64",
    "sendfile",
    "copy_file_range",
    "splice",
    "tee",
    "tgkill",
    "tkill",
    "kill",
    "sendmsg",
    "sendto",
    "recvmsg",
    "recvfrom",
    "shutdown",
    "getsockopt",
    "setsockopt",
    "getsockname",
    "getpeername",
    "arch_prctl",
    "set_tid_address",
    "memfd_create",
    "wait4",
    "waitid",
    "setitimer",
    "getitimer",
    "alarm",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "umask",
    "flock",
    "fallocate",
    "sync_file_range",
    "getpriority",
    "capget",
    "restart_syscall",
    "sched_setaffinity",
    "name_to_handle_at",
};

static atomic_int sigsys_once;

static void put_u(char *buf, size_t *pos, unsigned long v)
{
	char tmp[24];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0 && n < sizeof(tmp));
	while (n > 0)
		buf[(*pos)++] = tmp[--n];
}

/* Async-signal-safe: no allocation (the trap may have hit inside malloc). */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (atomic_exchange(&sigsys_once, 1) == 0) {
		char buf[128];
		size_t pos = 0;
		static const char head[] = "{\"status\":\"sandbox_violation\",\"syscallNr\":";
		memcpy(buf, head, sizeof(head) - 1);
		pos = sizeof(head) - 1;
		put_u(buf, &pos, (unsigned long)si->si_syscall);
		buf[pos++] = '}';
		uint32_t hdr[2] = {ENGINE_FRAME_RESULT, (uint32_t)pos};
		(void)!write(ENGINE_CHILD_FD, hdr, sizeof(hdr));
		(void)!write(ENGINE_CHILD_FD, buf, pos);
	}
	_exit(159);
}

/* The compiled filter: built once in the zygote (libseccomp takes milliseconds to compile
   it), installed in each child with one seccomp(2) call. */
static struct sock_filter *bpf_prog;
static size_t bpf_len;

int engine__seccomp_prepare(enum engine_language lang, struct st_error **err)
{
	(void)lang;
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	if (ctx == NULL)
		return st_error_make(err, ENOMEM, "cannot create the seccomp filter");
	int r = 0;
	for (size_t i = 0; i < ST_ARRAY_SIZE(allowed_syscalls); i++) {
		int nr = seccomp_syscall_resolve_name(allowed_syscalls[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (r < 0 && r != -EEXIST)
			goto fail;
	}
	/* Signal handlers: anything but SIGSYS. */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(rt_sigaction), 1,
	                     SCMP_A0(SCMP_CMP_NE, SIGSYS));
	if (r < 0)
		goto fail;
	r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(rt_sigaction), 1,
	                     SCMP_A0(SCMP_CMP_EQ, SIGSYS));
	if (r < 0)
		goto fail;
	/* Threads yes (JavaScriptCore's JIT and GC helpers, Python threads); new processes and
	   namespaces no: a clone without CLONE_THREAD answers EPERM, like a pids limit would. */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
	                     SCMP_A0(SCMP_CMP_MASKED_EQ,
	                             CLONE_THREAD | CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID |
	                                 CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
	                                 CLONE_NEWCGROUP,
	                             CLONE_THREAD));
	if (r < 0)
		goto fail;
	r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
	                     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
	if (r < 0)
		goto fail;
	static const struct {
		const char *name;
		int errnum;
	} soft[] = {
	    {"clone3", ENOSYS},
	    {"fork", EPERM},
	    {"vfork", EPERM},
	    {"socket", EACCES},
	    {"pkey_alloc", ENOSYS},
	    {"getxattr", ENOTSUP},
	    {"lgetxattr", ENOTSUP},
	    {"fgetxattr", ENOTSUP},
	    {"listxattr", ENOTSUP},
	    {"flistxattr", ENOTSUP},
	    {"sched_setscheduler", EPERM},
	    {"setpriority", EPERM},
	};
	for (size_t i = 0; i < ST_ARRAY_SIZE(soft); i++) {
		int nr = seccomp_syscall_resolve_name(soft[i].name);
		if (nr == __NR_SCMP_ERROR)
			continue;
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((uint32_t)soft[i].errnum), nr, 0);
		if (r < 0 && r != -EEXIST)
			goto fail;
	}
	/* Anonymous unix socket pairs (asyncio's self-pipe) are private to the execution: they
	   have no name, so they are no channel to anyone else. */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1,
	                     SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
	if (r < 0)
		goto fail;
	r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socketpair), 1,
	                     SCMP_A0(SCMP_CMP_NE, AF_UNIX));
	if (r < 0)
		goto fail;
	/* ioctl: non-blocking mode and byte counts on the execution's own fds; "not a tty" for
	   the terminal queries that isatty() and terminal-size lookups make; nothing else. */
	static const unsigned long ioctl_ok[] = {FIONBIO, FIONREAD, FIOCLEX, FIONCLEX};
	for (size_t i = 0; i < ST_ARRAY_SIZE(ioctl_ok); i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
		                     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, ioctl_ok[i]));
		if (r < 0)
			goto fail;
	}
	static const unsigned long ioctl_notty[] = {TCGETS, TIOCGWINSZ, TIOCGPGRP};
	for (size_t i = 0; i < ST_ARRAY_SIZE(ioctl_notty); i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOTTY), SCMP_SYS(ioctl), 1,
		                     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, ioctl_notty[i]));
		if (r < 0)
			goto fail;
	}
	/* prlimit64 only to read limits (new_limit NULL), prctl only for harmless options. */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1, SCMP_A2(SCMP_CMP_EQ, 0));
	if (r < 0)
		goto fail;
	r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prlimit64), 1,
	                     SCMP_A2(SCMP_CMP_NE, 0));
	if (r < 0)
		goto fail;
	static const int prctl_ok[] = {PR_SET_NAME,      PR_GET_NAME,     PR_GET_DUMPABLE,
	                               PR_SET_VMA,       PR_CAPBSET_READ, PR_GET_NO_NEW_PRIVS,
	                               PR_GET_SECUREBITS};
	for (size_t i = 0; i < ST_ARRAY_SIZE(prctl_ok); i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
		                     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)prctl_ok[i]));
		if (r < 0)
			goto fail;
	}
	int mfd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
	if (mfd < 0) {
		r = -errno;
		goto fail;
	}
	r = seccomp_export_bpf(ctx, mfd);
	if (r < 0) {
		close(mfd);
		goto fail;
	}
	off_t size = lseek(mfd, 0, SEEK_END);
	if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 || size > (1 << 20)) {
		close(mfd);
		r = -EPROTO;
		goto fail;
	}
	bpf_prog = st_xmalloc((size_t)size);
	if (pread(mfd, bpf_prog, (size_t)size, 0) != size) {
		close(mfd);
		r = -EIO;
		goto fail;
	}
	close(mfd);
	bpf_len = (size_t)size / sizeof(struct sock_filter);
	seccomp_release(ctx);
	return 0;
fail:
	seccomp_release(ctx);
	return st_error_make(err, -r, "cannot build the execution seccomp policy");
}

int engine__seccomp_load(enum engine_language lang, struct st_error **err)
{
	(void)lang;
	if (bpf_prog == NULL)
		return st_error_make(err, EINVAL, "the seccomp policy was not prepared");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return st_error_make(err, errno, "cannot install the SIGSYS handler");
	struct sock_fprog prog = {.len = (unsigned short)bpf_len, .filter = bpf_prog};
	/* TSYNC: JavaScriptCore may have started helper threads already. */
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
		return st_error_make(err, errno, "cannot load the execution seccomp policy");
	return 0;
}

/* ---- cgroups -------------------------------------------------------------------------------- */

static struct {
	bool ready;
	bool v2;
	char mem_base[1100]; /* v1: .../memory/<ours>/<prefix>; v2: .../<ours>/<prefix> */
	char pids_base[1100]; /* v1 only */
} CG;

struct engine_cgroup {
	char mem[1200];
	char pids[1200]; /* empty on v2 */
};

static bool find_self_cgroup(const char *controller, char *out, size_t n)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (f == NULL)
		return false;
	char line[1024];
	bool found = false;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		char *a = strchr(line, ':');
		if (a == NULL)
			continue;
		char *b = strchr(a + 1, ':');
		if (b == NULL)
			continue;
		*b = '\0';
		const char *ctrls = a + 1;
		bool match = false;
		if (controller == NULL) {
			match = *ctrls == '\0';
		} else {
			char tmp[256];
			st_strlcpy(tmp, ctrls, sizeof(tmp));
			char *save = NULL;
			for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
				if (strcmp(t, controller) == 0)
					match = true;
		}
		if (match) {
			st_strlcpy(out, b + 1, n);
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

static int write_file(const char *dir, const char *file, const char *value)
{
	char path[1300];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, value, strlen(value));
	int saved = errno;
	close(fd);
	return n < 0 ? -saved : 0;
}

static int64_t read_i64(const char *dir, const char *file)
{
	char path[1300];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	char *data = NULL;
	size_t len = 0;
	if (st_read_file(path, 4096, &data, &len, NULL) < 0)
		return -1;
	long long v = strtoll(data, NULL, 10);
	free(data);
	return v;
}

static int64_t read_keyed(const char *dir, const char *file, const char *key)
{
	char path[1300];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	char *data = NULL;
	size_t len = 0;
	if (st_read_file(path, 65536, &data, &len, NULL) < 0)
		return -1;
	int64_t v = -1;
	size_t kl = strlen(key);
	for (char *p = data; p && *p;) {
		if (strncmp(p, key, kl) == 0 && p[kl] == ' ') {
			v = strtoll(p + kl + 1, NULL, 10);
			break;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	free(data);
	return v;
}

/*
 * A service that was killed (kill -9, a crash) leaves its cgroups behind: its top cgroup
 * "stockade-engine-<pid>" and the executions' "x<N>" under it, empty once the kernel killed
 * the processes. The next service in the same parent removes those whose pid is gone. A
 * cgroup that still holds a process refuses rmdir and stays.
 */
static void sweep_dead_services(const char *parent)
{
	DIR *d = opendir(parent);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int pid;
		char tail;
		if (e->d_type != DT_DIR ||
		    sscanf(e->d_name, ENGINE_CGROUP_DEFAULT_PREFIX "%d%c", &pid, &tail) != 1 ||
		    pid <= 0 || pid == getpid())
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char *dir = st_xasprintf("%s/%s", parent, e->d_name);
		DIR *sub = opendir(dir);
		if (sub != NULL) {
			struct dirent *c;
			while ((c = readdir(sub)) != NULL) {
				if (c->d_type != DT_DIR || c->d_name[0] == '.')
					continue;
				char *cp = st_xasprintf("%s/%s", dir, c->d_name);
				(void)rmdir(cp);
				free(cp);
			}
			closedir(sub);
		}
		if (rmdir(dir) == 0)
			st_log(ST_LOG_INFO, "removed cgroup '%s' left by a service that is gone",
			       dir);
		free(dir);
	}
	closedir(d);
}

/* The directory part of path (a new string). */
static char *parent_of(const char *path)
{
	char *p = st_xstrdup(path);
	char *slash = strrchr(p, '/');
	if (slash != NULL && slash != p)
		*slash = '\0';
	return p;
}

static void sweep_parents(void)
{
	const char *bases[2] = {CG.mem_base, CG.pids_base};
	for (int i = 0; i < 2; i++) {
		if (bases[i][0] == '\0')
			continue;
		char *parent = parent_of(bases[i]);
		sweep_dead_services(parent);
		free(parent);
	}
}

int engine__cgroup_setup(const char *prefix, struct st_error **err)
{
	char rel[512];
	memset(&CG, 0, sizeof(CG));
	struct stat st;
	if (find_self_cgroup("memory", rel, sizeof(rel)) &&
	    stat("/sys/fs/cgroup/memory", &st) == 0) {
		snprintf(CG.mem_base, sizeof(CG.mem_base), "/sys/fs/cgroup/memory%s/%s",
		         strcmp(rel, "/") == 0 ? "" : rel, prefix);
		char prel[512] = "/";
		(void)find_self_cgroup("pids", prel, sizeof(prel));
		if (stat("/sys/fs/cgroup/pids", &st) == 0)
			snprintf(CG.pids_base, sizeof(CG.pids_base), "/sys/fs/cgroup/pids%s/%s",
			         strcmp(prel, "/") == 0 ? "" : prel, prefix);
		if (mkdir(CG.mem_base, 0755) < 0 && errno != EEXIST)
			return st_error_make(err, errno, "cannot create cgroup '%s'", CG.mem_base);
		if (CG.pids_base[0] && mkdir(CG.pids_base, 0755) < 0 && errno != EEXIST)
			CG.pids_base[0] = '\0';
		(void)write_file(CG.mem_base, "memory.use_hierarchy", "1");
		CG.ready = true;
		sweep_parents();
		return 0;
	}
	if (find_self_cgroup(NULL, rel, sizeof(rel)) &&
	    stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0) {
		CG.v2 = true;
		char parent[560];
		snprintf(parent, sizeof(parent), "/sys/fs/cgroup%s",
		         strcmp(rel, "/") == 0 ? "" : rel);
		snprintf(CG.mem_base, sizeof(CG.mem_base), "%s/%s", parent, prefix);
		if (mkdir(CG.mem_base, 0755) < 0 && errno != EEXIST)
			return st_error_make(err, errno, "cannot create cgroup '%s'", CG.mem_base);
		int r = write_file(CG.mem_base, "cgroup.subtree_control", "+memory +pids");
		if (r < 0) {
			rmdir(CG.mem_base);
			return st_error_make(
			    err, -r,
			    "cannot enable the memory and pids controllers in '%s' "
			    "(is the cgroup delegated?)",
			    CG.mem_base);
		}
		CG.ready = true;
		sweep_parents();
		return 0;
	}
	return st_error_make(err, ENOENT, "no memory cgroup controller is available");
}

bool engine__cgroup_available(void)
{
	return CG.ready;
}

uint64_t engine__cgroup_usage(void)
{
	if (!CG.ready)
		return 0;
	int64_t v = read_i64(CG.mem_base, CG.v2 ? "memory.current" : "memory.usage_in_bytes");
	return v > 0 ? (uint64_t)v : 0;
}

uint64_t engine__cgroup_parent_limit(void)
{
	if (!CG.ready)
		return 0;
	/* The limit of the cgroup the service runs in (the engine cgroup's parent). */
	char parent[1100];
	st_strlcpy(parent, CG.mem_base, sizeof(parent));
	char *slash = strrchr(parent, '/');
	if (slash == NULL)
		return 0;
	*slash = '\0';
	char *data = NULL;
	size_t len = 0;
	char path[1300];
	snprintf(path, sizeof(path), "%s/%s", parent,
	         CG.v2 ? "memory.max" : "memory.limit_in_bytes");
	if (st_read_file(path, 4096, &data, &len, NULL) < 0)
		return 0;
	uint64_t v = 0;
	if (strncmp(data, "max", 3) != 0)
		v = strtoull(data, NULL, 10);
	free(data);
	return v;
}

static void kill_and_rmdir(const char *dir)
{
	if (dir[0] == '\0')
		return;
	for (int tries = 0; tries < 200; tries++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return;
		if (errno != EBUSY)
			return;
		char path[1300];
		snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
		char *data = NULL;
		size_t len = 0;
		if (st_read_file(path, 1 << 20, &data, &len, NULL) == 0) {
			for (char *p = data; *p;) {
				long pid = strtol(p, &p, 10);
				if (pid > 0)
					kill((pid_t)pid, SIGKILL);
				while (*p == '\n')
					p++;
				if (pid <= 0 && *p)
					p++;
			}
			free(data);
		}
		poll(NULL, 0, tries < 10 ? 1 : 10);
	}
}

void engine__cgroup_teardown(void)
{
	if (!CG.ready)
		return;
	kill_and_rmdir(CG.mem_base);
	if (!CG.v2)
		kill_and_rmdir(CG.pids_base);
	CG.ready = false;
}

int engine__cgroup_create(const char *name, uint64_t memory_bytes, uint64_t pids,
                          struct engine_cgroup **out, struct st_error **err)
{
	if (!CG.ready)
		return st_error_make(err, ENOENT, "cgroups are not available");
	struct engine_cgroup *cg = st_xcalloc(1, sizeof(*cg));
	snprintf(cg->mem, sizeof(cg->mem), "%s/%s", CG.mem_base, name);
	if (mkdir(cg->mem, 0755) < 0) {
		int r = st_error_make(err, errno, "cannot create cgroup '%s'", cg->mem);
		free(cg);
		return r;
	}
	char v[32];
	snprintf(v, sizeof(v), "%llu", (unsigned long long)memory_bytes);
	char p[32];
	snprintf(p, sizeof(p), "%llu", (unsigned long long)pids);
	int r;
	if (CG.v2) {
		r = write_file(cg->mem, "memory.max", v);
		if (r == 0)
			(void)write_file(cg->mem, "memory.swap.max", "0");
		if (r == 0)
			r = write_file(cg->mem, "pids.max", p);
	} else {
		r = write_file(cg->mem, "memory.limit_in_bytes", v);
		if (r == 0)
			(void)write_file(cg->mem, "memory.memsw.limit_in_bytes", v);
		if (CG.pids_base[0]) {
			snprintf(cg->pids, sizeof(cg->pids), "%s/%s", CG.pids_base, name);
			if (mkdir(cg->pids, 0755) == 0)
				(void)write_file(cg->pids, "pids.max", p);
			else
				cg->pids[0] = '\0';
		}
	}
	if (r < 0) {
		engine__cgroup_destroy(cg);
		return st_error_make(err, -r, "cannot set the limits of cgroup '%s'", name);
	}
	*out = cg;
	return 0;
}

int engine__cgroup_set_memory(struct engine_cgroup *cg, uint64_t memory_bytes,
                              struct st_error **err)
{
	char v[32];
	snprintf(v, sizeof(v), "%llu", (unsigned long long)memory_bytes);
	int r;
	if (CG.v2) {
		r = write_file(cg->mem, "memory.max", v);
	} else {
		/* memsw may never be below the memory limit: raise it first, lower it last. */
		(void)write_file(cg->mem, "memory.memsw.limit_in_bytes", v);
		r = write_file(cg->mem, "memory.limit_in_bytes", v);
		if (r == 0)
			(void)write_file(cg->mem, "memory.memsw.limit_in_bytes", v);
	}
	if (r < 0)
		return st_error_make(err, -r, "cannot set the memory limit of cgroup '%s'",
		                     cg->mem);
	return 0;
}

int engine__cgroup_attach(struct engine_cgroup *cg, pid_t pid, struct st_error **err)
{
	char v[32];
	snprintf(v, sizeof(v), "%d", (int)pid);
	int r = write_file(cg->mem, "cgroup.procs", v);
	if (r < 0)
		return st_error_make(err, -r, "cannot move pid %d into cgroup '%s'", (int)pid,
		                     cg->mem);
	if (cg->pids[0])
		(void)write_file(cg->pids, "cgroup.procs", v);
	return 0;
}

void engine__cgroup_stats(struct engine_cgroup *cg, struct engine_cgroup_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (CG.v2) {
		int64_t peak = read_i64(cg->mem, "memory.peak");
		st->max_rss_kb = peak > 0 ? peak / 1024 : 0;
		st->oom = read_keyed(cg->mem, "memory.events", "oom_kill") > 0;
		st->hit_limit = read_keyed(cg->mem, "memory.events", "max") > 0;
		int64_t usec = read_keyed(cg->mem, "cpu.stat", "usage_usec");
		st->cpu_ms = usec > 0 ? usec / 1000 : 0;
	} else {
		int64_t peak = read_i64(cg->mem, "memory.max_usage_in_bytes");
		st->max_rss_kb = peak > 0 ? peak / 1024 : 0;
		int64_t ooms = read_keyed(cg->mem, "memory.oom_control", "oom_kill");
		st->hit_limit = read_i64(cg->mem, "memory.failcnt") > 0;
		st->oom = ooms > 0 || (ooms < 0 && st->hit_limit);
	}
}

uint64_t engine__cgroup_memory(struct engine_cgroup *cg)
{
	int64_t v = read_i64(cg->mem, CG.v2 ? "memory.current" : "memory.usage_in_bytes");
	return v > 0 ? (uint64_t)v : 0;
}

void engine__cgroup_destroy(struct engine_cgroup *cg)
{
	if (cg == NULL)
		return;
	kill_and_rmdir(cg->mem);
	kill_and_rmdir(cg->pids);
	free(cg);
}
