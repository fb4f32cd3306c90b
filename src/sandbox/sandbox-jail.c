/*
 * sandbox-jail.c - the `runtime: jail` backend: each sandbox is a long-lived Stockade jail
 * whose process 1 is stockade-agent, for hosts where gVisor cannot run.
 *
 * jail_run() does not fit a sandbox: it waits for its program, ties the jail's life to the
 * calling thread (PR_SET_PDEATHSIG) and drops every capability of the program, while a sandbox
 * outlives requests and even the service (restart re-adopts it) and its agent must stay root
 * inside to run commands as the sandbox user. So this file composes the long-lived variant
 * from jail.h's building blocks: jail_cgroup_create/attach for the cpu, memory and pids limits
 * (cgroup v1 or v2, as the jail does) and jail_seccomp_load_ex for the syscall policy.
 *
 * Start-up, three processes in a row (all of them end up as the same pid 1):
 *   1. the service (multi-threaded): creates the cgroup, then clone3 with new user, pid,
 *      mount, net, ipc and uts namespaces (exit_signal 0: no SIGCHLD; a pidfd), attaches the
 *      child to the cgroup (and to a v1 freezer cgroup when there is no v2 one), writes the
 *      record (below), the uid/gid maps (0 -> 65534 and 1000 -> 1000 outside) and releases
 *      it; the child exits by itself if the service dies before that;
 *   2. the cloned child, still with the service's memory (so: syscalls only, no allocation):
 *      clones every bind source with open_tree(OPEN_TREE_CLONE) while its filesystem uid is
 *      still the host's root (the state directory is 0700; the sandbox's own root could not
 *      walk it), becomes root of the user namespace and execs `stockade sandbox-init` with the
 *      mount trees as numbered fds;
 *   3. `stockade sandbox-init` (sandbox_jail_init_main, an ordinary single-threaded process):
 *      hostname, loopback, its own cgroup namespace, the root filesystem (the shared read-only
 *      rootfs of sandbox-runsc.c with the host's /usr etc. bound read-only, the workspace
 *      read-write, /tmp and /dev/shm tmpfs, a minimal /dev, a fresh /proc), pivot_root,
 *      RLIMIT_NOFILE, a capability bounding set of what the agent needs, the jail's `egress`
 *      seccomp policy, and execs the agent.
 *
 * The seccomp policy is the jail's "egress" allowlist: what shells, compilers, python3 and node
 * need, AF_UNIX and AF_INET/AF_INET6 sockets (the sandbox's network namespace only has `lo`,
 * and the agent's in-sandbox proxy listens there), clone without namespace flags, and none of
 * the escape tools or kernel attack surface (ptrace, process_vm_*, bpf, perf_event_open,
 * io_uring, userfaultfd, keyctl, mount and the new mount API, unshare/setns, kexec, modules,
 * ...). It is loaded with a user-notify listener that is closed at once, so those calls fail
 * with ENOSYS instead of killing the caller: a long-lived sandbox runs tools (libuv, strace,
 * browsers' sandboxes) that probe for them and carry on without.
 *
 * Record: <state>/jail/<id>.json holds the init's pid and start time and the sandbox's cgroup
 * directories; with it a restarted service can tell whether a sandbox still runs, freeze it,
 * and kill and remove everything. The jail's cgroup handle of a sandbox this process started is
 * kept in memory (the jail API only frees it by killing), and used to destroy it.
 *
 * States as the manager sees them: running (init alive, not frozen) <-> paused (cgroup frozen)
 * -> stopped (init gone) or unknown (no record). Destroy: thaw, kill the whole cgroup, reap,
 * remove the cgroup directories and the record. Every mount lives in the sandbox's own mount
 * namespace and goes with its last process; the only host mount is the workspace tmpfs, which
 * the manager owns.
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "jail/jail.h"
#include "sandbox/sandbox-internal.h"

/* Root inside a jail-runtime sandbox is this id outside (nobody): it owns nothing on the host.
 * The sandbox user keeps its id, so the workspace looks the same as with gVisor. */
#define ROOT_OUTSIDE 65534
#define MAX_SRC 48
#define CGROUP_NAME_PREFIX "sbx-"

/* ---- records --------------------------------------------------------------------------- */

struct live {
	char id[SANDBOX_ID_LEN];
	struct jail_cgroup *cg;
	int pidfd;
	struct live *next;
};

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct live *live_list;

static char *record_path(struct sandbox_mgr *m, const char *id)
{
	return st_xasprintf("%s/jail/%s.json", m->state_dir, id);
}

static struct live *live_take(const char *id)
{
	pthread_mutex_lock(&live_lock);
	struct live *l = NULL;
	for (struct live **p = &live_list; *p; p = &(*p)->next)
		if (!strcmp((*p)->id, id)) {
			l = *p;
			*p = l->next;
			break;
		}
	pthread_mutex_unlock(&live_lock);
	return l;
}

static int live_pidfd_exited(const char *id)
{
	int r = -1; /* not ours */
	pthread_mutex_lock(&live_lock);
	for (struct live *l = live_list; l; l = l->next)
		if (!strcmp(l->id, id)) {
			struct pollfd pf = {.fd = l->pidfd, .events = POLLIN};
			r = poll(&pf, 1, 0) > 0 ? 1 : 0;
			break;
		}
	pthread_mutex_unlock(&live_lock);
	return r;
}

/* Field 22 of /proc/<pid>/stat: tells a pid from a reused one. -1 when gone or a zombie. */
static int64_t proc_start_time(pid_t pid)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	cleanup_free char *text = NULL;
	size_t len;
	if (st_read_file(p, 4096, &text, &len, NULL) < 0)
		return -1;
	char *s = strrchr(text, ')');
	if (!s || s[1] != ' ')
		return -1;
	s += 2;
	if (*s == 'Z' || *s == 'X')
		return -1;
	/* s is field 3; skip to field 22. */
	for (int f = 3; f < 22 && s; f++) {
		s = strchr(s, ' ');
		if (s)
			s++;
	}
	if (!s)
		return -1;
	char *end = strchr(s, ' ');
	if (end)
		*end = '\0';
	int64_t v;
	return st_parse_i64(s, &v) == 0 ? v : -1;
}

static json_t *record_load(struct sandbox_mgr *m, const char *id)
{
	cleanup_free char *p = record_path(m, id);
	return json_load_file(p, 0, NULL);
}

/* ---- cgroups by path (what survives a restart) -------------------------------------------- */

static int write_str(const char *dir, const char *file, const char *v)
{
	cleanup_free char *p = st_xasprintf("%s/%s", dir, file);
	int fd = open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, v, strlen(v));
	int e = errno;
	close(fd);
	return w < 0 ? -e : 0;
}

static bool read_has(const char *dir, const char *file, const char *needle)
{
	cleanup_free char *p = st_xasprintf("%s/%s", dir, file);
	cleanup_free char *text = NULL;
	size_t len;
	if (st_read_file(p, 65536, &text, &len, NULL) < 0)
		return false;
	return strstr(text, needle) != NULL;
}

static const char *rec_str(json_t *rec, const char *key)
{
	return json_string_value(json_object_get(rec, key));
}

static bool rec_frozen(json_t *rec)
{
	const char *v2 = rec_str(rec, "v2");
	if (v2)
		return read_has(v2, "cgroup.freeze", "1");
	const char *fz = rec_str(rec, "freezer");
	return fz && !read_has(fz, "freezer.state", "THAWED");
}

static int rec_freeze(json_t *rec, bool freeze, struct st_error **err)
{
	const char *v2 = rec_str(rec, "v2");
	const char *fz = rec_str(rec, "freezer");
	const char *dir = v2 ? v2 : fz;
	if (!dir)
		return st_error_make(err, ENOTSUP,
		                     "no cgroup freezer for this sandbox (neither cgroup v2 nor "
		                     "the v1 freezer controller is available)");
	int r = v2 ? write_str(v2, "cgroup.freeze", freeze ? "1" : "0")
	           : write_str(fz, "freezer.state", freeze ? "FROZEN" : "THAWED");
	if (r < 0)
		return st_error_make(err, -r, "cannot %s the cgroup '%s'",
		                     freeze ? "freeze" : "thaw", dir);
	/* Wait until the kernel says it is done: a snapshot must not start while a process
	 * of the sandbox still writes. */
	for (int i = 0; i < 5000; i++) {
		bool done = v2 ? read_has(v2, "cgroup.events", freeze ? "frozen 1" : "frozen 0")
		               : read_has(fz, "freezer.state", freeze ? "FROZEN" : "THAWED");
		if (done)
			return 0;
		struct timespec ts = {0, 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return st_error_make(err, ETIMEDOUT, "the cgroup '%s' did not %s within 5 s", dir,
	                     freeze ? "freeze" : "thaw");
}

/* Kill everything in one cgroup directory and remove it. */
static void cgroup_dir_kill_remove(const char *dir)
{
	(void)write_str(dir, "cgroup.kill", "1"); /* v2 only; v1 falls through to the loop */
	int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd >= 0) {
		(void)jail_cgroup_kill_procs(dirfd, 3000);
		close(dirfd);
	}
	/* EBUSY for a while after the last process went (zombies not reaped yet by whoever is
	 * their parent now): up to 3 s. */
	for (int i = 0; i < 3000; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return;
		if (errno != EBUSY)
			break;
		struct timespec ts = {0, 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	st_log(ST_LOG_WARN, "cannot remove cgroup '%s': %s", dir, strerror(errno));
}

static const char *v2_mount(void)
{
	struct statfs s;
	if (statfs("/sys/fs/cgroup", &s) == 0 && (long)s.f_type == CGROUP2_SUPER_MAGIC)
		return "/sys/fs/cgroup";
	if (statfs("/sys/fs/cgroup/unified", &s) == 0 && (long)s.f_type == CGROUP2_SUPER_MAGIC)
		return "/sys/fs/cgroup/unified";
	return NULL;
}

/*
 * Calls fn for each line "<id>:<controllers>:<path>" of a /proc/<pid>/cgroup file, with the
 * controllers ("" on the v2 line) and the path. The strings are only valid during the call.
 */
static void each_cgroup_line(const char *file, void (*fn)(char *ctrls, const char *path, void *ud),
                             void *ud)
{
	cleanup_free char *text = NULL;
	size_t len;
	if (st_read_file(file, 65536, &text, &len, NULL) < 0)
		return;
	for (char *line = text; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (c2) {
			*c2 = '\0';
			fn(c1 + 1, c2 + 1, ud);
		}
		line = nl ? nl + 1 : NULL;
	}
}

struct dirs_of {
	const char *name, *v2m;
	json_t *a;
	char **v2_out;
};

static void dirs_of_line(char *ctrls, const char *path, void *ud)
{
	struct dirs_of *d = ud;
	const char *base = strrchr(path, '/');
	if (!base || strcmp(base + 1, d->name) != 0)
		return;
	char *dir = NULL;
	if (!*ctrls && d->v2m)
		dir = st_xasprintf("%s%s", d->v2m, path);
	else if (*ctrls && !st_str_has_prefix(ctrls, "name="))
		dir = st_xasprintf("/sys/fs/cgroup/%s%s", ctrls, path);
	struct stat st;
	if (dir && stat(dir, &st) == 0) {
		json_array_append_new(d->a, json_string(dir));
		if (!*ctrls && !*d->v2_out)
			*d->v2_out = st_xstrdup(dir);
	}
	free(dir);
}

/* The cgroup directories pid is in whose last component is name: the ones the jail made. */
static json_t *cgroup_dirs_of(pid_t pid, const char *name, char **v2_out)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/cgroup", (int)pid);
	*v2_out = NULL;
	struct dirs_of d = {.name = name, .v2m = v2_mount(), .a = json_array(), .v2_out = v2_out};
	each_cgroup_line(p, dirs_of_line, &d);
	return d.a;
}

struct paths_named {
	const char *name, *ctrl, *parent, *v2m;
	json_t *a;
};

static void paths_named_line(char *ctrls, const char *path, void *ud)
{
	struct paths_named *d = ud;
	const char *own = strcmp(path, "/") ? path : "";
	bool v2_line = !*ctrls;
	char *save = NULL;
	for (char *c = strtok_r(ctrls, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
		if (st_str_has_prefix(c, "name=") || (d->ctrl && strcmp(c, d->ctrl)))
			continue;
		char *p = st_xasprintf("/sys/fs/cgroup/%s%s/%s/%s", c, own, d->parent, d->name);
		json_array_append_new(d->a, json_string(p));
		free(p);
	}
	if (v2_line && !d->ctrl && d->v2m) {
		char *p = st_xasprintf("%s%s/%s/%s", d->v2m, own, d->parent, d->name);
		json_array_append_new(d->a, json_string(p));
		free(p);
	}
}

/*
 * Where a cgroup called name lives in each hierarchy this process is in: <mount><own
 * path>/<parent>/<name>, the layout jail_cgroup_create uses (parent: "stockade" or
 * $STOCKADE_CGROUP_PARENT). ctrl: only the v1 hierarchy of that controller; NULL: all of them,
 * v2 included. The paths may not exist.
 */
static json_t *cgroup_paths_named(const char *name, const char *ctrl)
{
	const char *parent = getenv("STOCKADE_CGROUP_PARENT");
	if (!parent || !*parent || strstr(parent, ".."))
		parent = "stockade";
	struct paths_named d = {
	    .name = name, .ctrl = ctrl, .parent = parent, .v2m = v2_mount(), .a = json_array()};
	each_cgroup_line("/proc/self/cgroup", paths_named_line, &d);
	return d.a;
}

/* A v1 freezer cgroup beside the jail's own (the jail does not use the freezer), for hosts
 * without a v2 cgroup of the sandbox. */
static char *freezer_v1_create(const char *name)
{
	struct statfs s;
	if (statfs("/sys/fs/cgroup/freezer", &s) < 0 || (long)s.f_type != CGROUP_SUPER_MAGIC)
		return NULL;
	json_t *paths = cgroup_paths_named(name, "freezer");
	const char *p = json_string_value(json_array_get(paths, 0));
	char *dir = p ? st_xstrdup(p) : NULL;
	json_decref(paths);
	if (!dir)
		return NULL;
	struct st_error *e = NULL;
	if (st_mkdir_p(dir, 0755, &e) < 0) {
		st_log(ST_LOG_WARN, "cannot create the freezer cgroup '%s': %s", dir,
		       st_error_msg(e));
		st_error_free(e);
		free(dir);
		return NULL;
	}
	return dir;
}

/* ---- the cloned child (step 2: syscalls only) ------------------------------------------- */

struct child {
	int sync_rd, sync_wr, log_fd, null_fd, exe_fd;
	size_t n;
	const char *src[MAX_SRC];
	bool recursive[MAX_SRC];
	char *const *argv;
	char *const *envp;
};

static void child_say(int fd, const char *what, int e)
{
	char num[16];
	size_t n = 0;
	char tmp[16];
	unsigned v = (unsigned)(e < 0 ? -e : e);
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < sizeof(tmp));
	for (size_t i = 0; i < n; i++)
		num[i] = tmp[n - 1 - i];
	static const char pre[] = "stockade: jail runtime: ";
	ssize_t w = write(fd, pre, sizeof(pre) - 1);
	w = write(fd, what, strlen(what));
	w = write(fd, " (errno ", 8);
	w = write(fd, num, n);
	w = write(fd, ")\n", 2);
	(void)w;
}

__attribute__((noreturn)) static void child_main(struct child *c)
{
	char b;
	ssize_t r;
	/* Our copy of the write end would keep the read below from seeing the service die. */
	close(c->sync_wr);
	do
		r = read(c->sync_rd, &b, 1);
	while (r < 0 && errno == EINTR);
	if (r != 1)
		_exit(125); /* the service gave up on us */
	/* Clone the sources now: our filesystem uid is still the host's root, which owns the
	 * state directory; after setresuid below we are an unprivileged id outside. */
	int hi = (int)(3 + c->n + 1);
	int fds[MAX_SRC];
	for (size_t i = 0; i < c->n; i++) {
		int t = (int)syscall(SYS_open_tree, AT_FDCWD, c->src[i],
		                     OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
		                         (c->recursive[i] ? AT_RECURSIVE : 0));
		if (t < 0) {
			child_say(c->log_fd, "cannot clone a mount source", errno);
			child_say(c->log_fd, c->src[i], 0);
			_exit(125);
		}
		fds[i] = fcntl(t, F_DUPFD_CLOEXEC, hi);
		close(t);
	}
	int logf = fcntl(c->log_fd, F_DUPFD_CLOEXEC, hi);
	int nullf = fcntl(c->null_fd, F_DUPFD_CLOEXEC, hi);
	int exef = fcntl(c->exe_fd, F_DUPFD_CLOEXEC, hi);
	if (logf < 0 || nullf < 0 || exef < 0)
		_exit(125);
	for (size_t i = 0; i < c->n; i++)
		if (fds[i] < 0 || dup2(fds[i], (int)(3 + i)) < 0) {
			child_say(logf, "cannot place a mount fd", errno);
			_exit(125);
		}
	if (dup2(nullf, 0) < 0 || dup2(logf, 1) < 0 || dup2(logf, 2) < 0 ||
	    dup3(exef, (int)(3 + c->n), O_CLOEXEC) < 0)
		_exit(125);
	syscall(SYS_close_range, 3 + c->n + 1, ~0u, 0);
	/* Raw syscalls: glibc's wrappers would try to reach threads of the service that do not
	   exist in this process. */
	if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setgroups, 0, NULL) < 0 ||
	    syscall(SYS_setresuid, 0, 0, 0) < 0) {
		child_say(2, "cannot become root of the sandbox's user namespace", errno);
		_exit(125);
	}
	syscall(SYS_execveat, (int)(3 + c->n), "", c->argv, c->envp, AT_EMPTY_PATH);
	child_say(2, "cannot run 'stockade sandbox-init'", errno);
	_exit(125);
}

/* ---- start --------------------------------------------------------------------------------- */

struct start_plan {
	struct child c;
	char *owned[MAX_SRC * 3 + 16];
	size_t n_owned;
	char *argv[MAX_SRC * 2 + 16];
	size_t argc;
	char *envp[8];
};

static char *plan_keep(struct start_plan *p, char *s)
{
	if (p->n_owned < ST_ARRAY_SIZE(p->owned))
		p->owned[p->n_owned++] = s;
	return s;
}

static void plan_release(struct start_plan *p)
{
	for (size_t i = 0; i < p->n_owned; i++)
		free(p->owned[i]);
}

static void plan_arg(struct start_plan *p, const char *s)
{
	if (p->argc + 1 < ST_ARRAY_SIZE(p->argv))
		p->argv[p->argc++] = plan_keep(p, st_xstrdup(s));
	p->argv[p->argc] = NULL;
}

/* A bind source at fd 3+i in stage 3, mounted at dst with mode (see sandbox_jail_init_main). */
static void plan_mount(struct start_plan *p, const char *src, const char *dst, const char *mode,
                       bool recursive)
{
	if (p->c.n >= MAX_SRC)
		return;
	size_t i = p->c.n++;
	p->c.src[i] = plan_keep(p, st_xstrdup(src));
	p->c.recursive[i] = recursive;
	char spec[600];
	snprintf(spec, sizeof(spec), "%zu:%s:%s", 3 + i, mode, dst);
	plan_arg(p, "--mount");
	plan_arg(p, spec);
}

/* `stockade` beside the agent (the unit tests' own binary is not it). */
static char *stage2_binary(const char *agent_path)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		const char *b = strrchr(self, '/');
		if (b && !strcmp(b + 1, "stockade"))
			return st_xstrdup(self);
	}
	char *dir = st_xstrdup(agent_path);
	char *slash = strrchr(dir, '/');
	char *r =
	    slash ? (*slash = '\0', st_xasprintf("%s/stockade", dir)) : st_xstrdup("stockade");
	free(dir);
	return r;
}

static int jail_start(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err)
{
	int64_t t0 = st_now_ms();
	char cgname[64];
	snprintf(cgname, sizeof(cgname), CGROUP_NAME_PREFIX "%s", sb->id);
	cleanup_free char *chan = st_xasprintf("%s/chan", sb->dir);
	cleanup_free char *ws = sandbox__workspace_path(sb);
	cleanup_free char *logp = st_xasprintf("%s/agent.log", sb->dir);
	cleanup_free char *exe = stage2_binary(m->agent_path);
	/* The agent (root inside, nobody outside) creates its socket here. */
	if (chown(chan, ROOT_OUTSIDE, ROOT_OUTSIDE) < 0)
		return st_error_make(err, errno, "cannot chown '%s'", chan);

	struct start_plan *p = st_xcalloc(1, sizeof(*p));
	int ret = 0;
	struct jail_cgroup *cg = NULL;
	char *freezer = NULL;
	int sync[2] = {-1, -1}, pidfd = -1;
	pid_t pid = -1;
	char *v2 = NULL, *text = NULL, *recp = record_path(m, sb->id);
	cleanup_close int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	cleanup_close int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	cleanup_close int exefd = open(exe, O_PATH | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0) {
		ret = st_error_make(err, errno, "cannot open '%s'", logp);
		goto out;
	}
	if (exefd < 0) {
		ret = st_error_make(err, errno,
		                    "cannot find '%s' (the jail runtime starts each sandbox "
		                    "through `stockade sandbox-init`; it must sit beside "
		                    "stockade-agent)",
		                    exe);
		goto out;
	}

	plan_arg(p, "stockade");
	plan_arg(p, "sandbox-init");
	char num[32];
	snprintf(num, sizeof(num), "%u", m->o.pids);
	plan_arg(p, "--max-procs");
	plan_arg(p, num);
	const char *rootfs = m->o.rootfs ? m->o.rootfs : m->rootfs;
	plan_mount(p, rootfs, "/", "root", false);
	if (!m->o.rootfs) {
		for (size_t i = 0; i < sandbox__n_base_dirs; i++) {
			cleanup_free char *host = st_xasprintf("/%s", sandbox__base_dirs[i]);
			struct stat st;
			if (lstat(host, &st) == 0 && S_ISDIR(st.st_mode))
				plan_mount(p, host, host, "ro", true);
		}
		for (size_t i = 0; i < sandbox__n_etc_binds; i++) {
			cleanup_free char *host = st_xasprintf("/etc/%s", sandbox__etc_binds[i]);
			struct stat st;
			if (lstat(host, &st) == 0 && (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)))
				plan_mount(p, host, host, "ro", S_ISDIR(st.st_mode));
		}
	}
	plan_mount(p, ws, AGENT_WORKSPACE, "rw", false);
	plan_mount(p, chan, AGENT_CHAN_DIR, "chan", false);
	plan_mount(p, m->agent_path, "/opt/stockade/agent", "ro", false);
	static const char *const devs[] = {"null", "zero", "full", "random", "urandom"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(devs); i++) {
		cleanup_free char *d = st_xasprintf("/dev/%s", devs[i]);
		plan_mount(p, d, d, "dev", false);
	}
	size_t ne = 0;
	p->envp[ne++] = plan_keep(p, st_xstrdup("PATH=/usr/local/bin:/usr/bin:/bin"));
	/* A sanitizer build keeps its options (tests); nothing else of our environment goes in. */
	static const char *const pass[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(pass); i++) {
		const char *v = getenv(pass[i]);
		if (v)
			p->envp[ne++] = plan_keep(p, st_xasprintf("%s=%s", pass[i], v));
	}
	p->envp[ne] = NULL;
	p->c.argv = p->argv;
	p->c.envp = p->envp;
	p->c.log_fd = logfd;
	p->c.null_fd = nullfd;
	p->c.exe_fd = exefd;

	/* The host keeps room for the agent and its request handlers above the sandbox user's
	 * own process limit (RLIMIT_NPROC, applied by the agent to every command). */
	/* A first record before anything exists on the host: a service killed from here on
	 * leaves the cgroup's name to clean up by (pid 0: nothing runs yet). */
	json_t *pending =
	    json_pack("{s:i,s:i,s:[],s:s}", "pid", 0, "start", -1, "cgroups", "name", cgname);
	text = json_dumps(pending, JSON_COMPACT);
	json_decref(pending);
	if ((ret = st_write_file_atomic(recp, text, strlen(text), 0600, err)) < 0)
		goto out;
	free(text);
	text = NULL;
	struct jail_limits lim;
	memset(&lim, 0, sizeof(lim));
	lim.memory_bytes = m->o.memory_bytes;
	lim.pids = m->o.pids ? (uint64_t)m->o.pids + 64 : 0;
	lim.cpus = m->o.cpus;
	if ((ret = jail_cgroup_create(cgname, &lim, &cg, err)) < 0)
		goto out;
	size_t nw;
	const char *const *w = jail_cgroup_warnings(cg, &nw);
	for (size_t i = 0; i < nw; i++)
		st_log(ST_LOG_WARN, "sandbox '%s': %s", sb->id, w[i]);

	if (pipe2(sync, O_CLOEXEC) < 0) {
		ret = st_error_make(err, errno, "pipe");
		goto out;
	}
	p->c.sync_rd = sync[0];
	p->c.sync_wr = sync[1];
	struct clone_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
	           CLONE_NEWUTS | CLONE_PIDFD;
	ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
	ca.exit_signal = 0; /* no SIGCHLD: the service's handlers are not ours; reaped by pidfd */
	pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0) {
		ret = st_error_make(err, errno, "cannot create the sandbox's namespaces");
		pid = -1;
		goto out;
	}
	if (pid == 0)
		child_main(&p->c); /* never returns */
	close(sync[0]);
	sync[0] = -1;

	if ((ret = jail_cgroup_attach(cg, pid, err)) < 0)
		goto out;
	json_t *dirs = cgroup_dirs_of(pid, cgname, &v2);
	if (!v2) {
		freezer = freezer_v1_create(cgname);
		if (freezer) {
			char s[32];
			snprintf(s, sizeof(s), "%d", (int)pid);
			int r = write_str(freezer, "cgroup.procs", s);
			if (r < 0)
				st_log(ST_LOG_WARN, "sandbox '%s': cannot join the freezer: %s",
				       sb->id, strerror(-r));
			json_array_append_new(dirs, json_string(freezer));
		} else {
			st_log(ST_LOG_WARN,
			       "sandbox '%s': no cgroup freezer: pause and snapshots will fail",
			       sb->id);
		}
	}
	/* Recorded before the init runs: a service killed from here on leaves a record that
	 * names everything to clean. */
	json_t *rec = json_pack("{s:I,s:I,s:o,s:s?,s:s?,s:s}", "pid", (json_int_t)pid, "start",
	                        (json_int_t)proc_start_time(pid), "cgroups", dirs, "v2", v2,
	                        "freezer", freezer, "name", cgname);
	text = json_dumps(rec, JSON_COMPACT);
	json_decref(rec);
	if ((ret = st_write_file_atomic(recp, text, strlen(text), 0600, err)) < 0)
		goto out;
	char map[64];
	snprintf(map, sizeof(map), "0 %d 1\n%d %d 1\n", ROOT_OUTSIDE, AGENT_USER_UID,
	         AGENT_USER_UID);
	int r = jail_write_proc(pid, "uid_map", map);
	if (r == 0) {
		snprintf(map, sizeof(map), "0 %d 1\n%d %d 1\n", ROOT_OUTSIDE, AGENT_USER_GID,
		         AGENT_USER_GID);
		r = jail_write_proc(pid, "gid_map", map);
	}
	if (r < 0) {
		ret = st_error_make(err, -r, "cannot write the sandbox's uid/gid map");
		goto out;
	}
	if (write(sync[1], "g", 1) != 1) {
		ret = st_error_make(err, errno, "cannot release the sandbox's init");
		goto out;
	}
	close(sync[1]);
	sync[1] = -1;

	/* Ready when the agent answers; a setup failure ends the init early (see agent.log). */
	int64_t deadline = t0 + (int64_t)m->o.ready_timeout_ms;
	for (;;) {
		struct pollfd pf = {.fd = pidfd, .events = POLLIN};
		if (poll(&pf, 1, 0) > 0) {
			ret =
			    st_error_make(err, ECHILD, "the sandbox's init exited during start-up");
			sandbox__error_wrap_log_tail(err, logp, NULL);
			goto out;
		}
		if (sandbox__agent_wait_ready(sb->sock, 0, NULL) == 0)
			break;
		if (st_now_ms() > deadline) {
			ret = st_error_make(
			    err, ETIMEDOUT,
			    "the sandbox agent did not answer within sandboxReadyTimeoutMs");
			sandbox__error_wrap_log_tail(err, logp, NULL);
			goto out;
		}
		(void)poll(&pf, 1, 2);
	}
	struct live *l = st_xcalloc(1, sizeof(*l));
	st_strlcpy(l->id, sb->id, sizeof(l->id));
	l->cg = cg;
	l->pidfd = pidfd;
	cg = NULL;
	pidfd = -1;
	pthread_mutex_lock(&live_lock);
	l->next = live_list;
	live_list = l;
	pthread_mutex_unlock(&live_lock);

out:
	if (sync[0] >= 0)
		close(sync[0]);
	if (sync[1] >= 0)
		close(sync[1]);
	if (ret < 0) {
		if (pidfd >= 0) {
			syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
			siginfo_t si;
			syscall(SYS_waitid, P_PIDFD, pidfd, &si, WEXITED | __WALL, NULL);
		}
		jail_cgroup_destroy(cg);
		if (freezer)
			cgroup_dir_kill_remove(freezer);
		unlink(recp);
	}
	if (pidfd >= 0)
		close(pidfd);
	free(freezer);
	free(v2);
	free(text);
	free(recp);
	plan_release(p);
	free(p);
	return ret;
}

/* ---- destroy / pause / state / list ------------------------------------------------------ */

static int jail_destroy(struct sandbox_mgr *m, const char *id, struct st_error **err)
{
	json_t *rec = record_load(m, id);
	struct live *l = live_take(id);
	if (rec)
		(void)rec_freeze(rec, false, NULL); /* frozen v1 tasks cannot die */
	if (l) {
		/* pid 1 going takes the whole pid namespace with it; the cgroup kill catches
		 * anything that escaped it (nothing can: clone with CLONE_NEWPID is refused). */
		syscall(SYS_pidfd_send_signal, l->pidfd, SIGKILL, NULL, 0);
		/* Reaped first: a v1 cgroup stays busy (rmdir EBUSY) until its last zombie is. */
		siginfo_t si;
		syscall(SYS_waitid, P_PIDFD, l->pidfd, &si, WEXITED | __WALL, NULL);
		jail_cgroup_destroy(l->cg);
		close(l->pidfd);
		free(l);
	}
	if (rec) {
		/* The recorded directories, and by name whatever a start cut short left. */
		const char *name = rec_str(rec, "name");
		json_t *byname = name ? cgroup_paths_named(name, NULL) : json_array();
		json_array_extend(byname, json_object_get(rec, "cgroups"));
		size_t i;
		json_t *d;
		json_array_foreach(byname, i, d)
		{
			const char *dir = json_string_value(d);
			struct stat st;
			if (dir && stat(dir, &st) == 0)
				cgroup_dir_kill_remove(dir);
		}
		json_decref(byname);
		json_decref(rec);
	}
	cleanup_free char *p = record_path(m, id);
	if (unlink(p) < 0 && errno != ENOENT)
		return st_error_make(err, errno, "cannot remove '%s'", p);
	return 0;
}

static int jail_pause(struct sandbox_mgr *m, const char *id, bool pause, struct st_error **err)
{
	json_t *rec = record_load(m, id);
	if (!rec)
		return st_error_make(err, ENOENT, "no jail record for sandbox '%s'", id);
	int r = rec_freeze(rec, pause, err);
	json_decref(rec);
	return r;
}

static char *jail_state(struct sandbox_mgr *m, const char *id)
{
	json_t *rec = record_load(m, id);
	if (!rec)
		return NULL;
	int exited = live_pidfd_exited(id);
	bool alive;
	if (exited >= 0) {
		alive = exited == 0;
	} else {
		/* Started by an earlier process: same pid and the same start time. */
		pid_t pid = (pid_t)json_integer_value(json_object_get(rec, "pid"));
		int64_t start = json_integer_value(json_object_get(rec, "start"));
		alive = pid > 0 && start >= 0 && proc_start_time(pid) == start;
	}
	char *s = st_xstrdup(!alive ? "stopped" : rec_frozen(rec) ? "paused" : "running");
	json_decref(rec);
	return s;
}

static char **jail_list(struct sandbox_mgr *m)
{
	char **ids = st_xcalloc(1, sizeof(char *));
	cleanup_free char *dir = st_xasprintf("%s/jail", m->state_dir);
	DIR *d = opendir(dir);
	if (!d)
		return ids;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l != SANDBOX_ID_LEN - 1 + 5 || !st_str_has_suffix(de->d_name, ".json") ||
		    !st_str_has_prefix(de->d_name, "sb-"))
			continue;
		char **nids = realloc(ids, (n + 2) * sizeof(char *));
		if (!nids)
			abort();
		ids = nids;
		ids[n++] = st_xasprintf("%.*s", (int)(l - 5), de->d_name);
		ids[n] = NULL;
	}
	closedir(d);
	return ids;
}

/* ---- probe / prepare ------------------------------------------------------------------------ */

static int jail_probe(const struct sandbox_options *o, struct st_error **err)
{
	if (geteuid() != 0)
		return st_error_make(err, EPERM,
		                     "runtime 'jail' needs the service to run as root (it maps the "
		                     "sandbox user into each sandbox, mounts its workspace and "
		                     "creates its cgroups); run as root or use runtime: gvisor");
	/* A real jail, the same namespaces and mounts the sandboxes get. */
	struct jail_spec spec;
	jail_spec_init(&spec);
	char prog[] = "true";
	char *const argv[] = {prog, NULL};
	spec.argv = argv;
	spec.capture_output = true;
	spec.seccomp_policy = "egress";
	spec.limits.wall_ms = 20000;
	struct jail_report rep;
	int r = jail_run(&spec, &rep, err);
	if (r < 0)
		return st_error_wrap(err, "runtime 'jail' is not usable");
	if (rep.status != JAIL_OK) {
		r = st_error_make(
		    err, EPERM,
		    "runtime 'jail' is not usable: a test jail ended with '%s'%s%s%s%s; "
		    "see `stockade doctor` for the fix, or use runtime: gvisor",
		    jail_status_name(rep.status), rep.setup_step ? " at '" : "",
		    rep.setup_step ? rep.setup_step : "", rep.setup_step ? "': " : "",
		    rep.setup_error ? rep.setup_error : "");
	}
	jail_report_release(&rep);
	(void)o;
	return r;
}

static int jail_prepare(struct sandbox_mgr *m, struct st_error **err)
{
	int r = sandbox__prepare_rootfs(m, err);
	if (r < 0)
		return r;
	cleanup_free char *rec = st_xasprintf("%s/jail", m->state_dir);
	if ((r = st_mkdir_p(rec, 0700, err)) < 0)
		return r;
	/* Mount points the jail needs in the shared root and runsc does not: the agent binary
	 * is bound onto a file. */
	const char *root = m->o.rootfs ? m->o.rootfs : m->rootfs;
	cleanup_free char *opt = st_xasprintf("%s/opt/stockade", root);
	cleanup_free char *agent = st_xasprintf("%s/agent", opt);
	cleanup_free char *dev = st_xasprintf("%s/dev", root);
	if ((r = st_mkdir_p(opt, 0755, err)) < 0 || (r = st_mkdir_p(dev, 0755, err)) < 0)
		return r;
	int fd = open(agent, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0755);
	if (fd < 0)
		return st_error_make(err, errno, "cannot create '%s'", agent);
	close(fd);
	cleanup_free char *exe = stage2_binary(m->agent_path);
	if (access(exe, X_OK) < 0)
		return st_error_make(
		    err, errno,
		    "'%s' is missing: the jail runtime starts each sandbox through "
		    "`stockade sandbox-init` beside stockade-agent",
		    exe);
	return 0;
}

void sandbox__jail_chan_grant(struct sandbox_mgr *m, const char *path)
{
	if (m->o.runtime != SANDBOX_RUNTIME_JAIL)
		return;
	if (chown(path, ROOT_OUTSIDE, ROOT_OUTSIDE) < 0)
		st_log(ST_LOG_WARN, "cannot chown '%s': %s", path, strerror(errno));
}

const struct sandbox_runtime_ops sandbox__runtime_jail = {
    .name = "jail",
    .probe = jail_probe,
    .prepare = jail_prepare,
    .start = jail_start,
    .destroy = jail_destroy,
    .pause = jail_pause,
    .state = jail_state,
    .list = jail_list,
};

const struct sandbox_runtime_ops *sandbox__runtime_of(enum sandbox_runtime rt)
{
	return rt == SANDBOX_RUNTIME_JAIL ? &sandbox__runtime_jail : &sandbox__runtime_runsc;
}

/* ---- stage 3: `stockade sandbox-init`, inside the namespaces -------------------------------- */

static int init_fail(const char *step, const char *what, int e)
{
	fprintf(stderr, "stockade sandbox-init: %s%s%s: %s\n", step, what ? " " : "",
	        what ? what : "", strerror(e));
	return 1;
}

static int set_attr(const char *path, uint64_t set, bool recursive)
{
	struct mount_attr a = {.attr_set = set};
	if (syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &a,
	            sizeof(a)) < 0)
		return -errno;
	return 0;
}

static int attach_fd(int fd, const char *path)
{
	if (syscall(SYS_move_mount, fd, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return -errno;
	close(fd);
	return 0;
}

/* The capabilities the agent keeps (root inside the sandbox's user namespace): switching to
 * the sandbox user, managing its processes and files in the workspace. Commands lose them
 * when the agent switches to that user. */
static bool cap_kept(int c)
{
	return c == CAP_SETUID || c == CAP_SETGID || c == CAP_KILL || c == CAP_CHOWN ||
	       c == CAP_DAC_OVERRIDE || c == CAP_FOWNER || c == CAP_NET_BIND_SERVICE;
}

/*
 * Runs as pid 1 of the sandbox, root of its user namespace with every capability there, in a
 * private copy of the service's mount namespace, fds 3.. holding detached clones of the bind
 * sources (see child_main). Order matters: the mounts need CAP_SYS_ADMIN and the mount
 * syscalls, so the root is built first; the bounding set and the seccomp filter (which
 * refuses mount, pivot_root and unshare) come last, right before the agent.
 */
int sandbox_jail_init_main(int argc, char **argv)
{
	const char *max_procs = "0";
	struct {
		int fd;
		const char *mode, *dst;
	} mnts[MAX_SRC];
	size_t n = 0;
	for (int i = 1; i < argc; i++) {
		bool has = i + 1 < argc;
		if (!strcmp(argv[i], "--max-procs") && has) {
			max_procs = argv[++i];
		} else if (!strcmp(argv[i], "--mount") && has && n < MAX_SRC) {
			/* FD:MODE:DST */
			char *s = argv[++i];
			char *c1 = strchr(s, ':');
			char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
			int64_t fd;
			if (!c2)
				return init_fail("bad --mount", s, EINVAL);
			*c1 = *c2 = '\0';
			if (st_parse_i64(s, &fd) < 0 || fd < 3)
				return init_fail("bad --mount fd", s, EINVAL);
			mnts[n].fd = (int)fd;
			mnts[n].mode = c1 + 1;
			mnts[n].dst = c2 + 1;
			n++;
		} else {
			bool help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
			fprintf(
			    help ? stdout : stderr,
			    "usage: stockade sandbox-init [--max-procs N] --mount FD:MODE:DST...\n"
			    "Started by the service inside a new `runtime: jail` agent sandbox "
			    "(see docs/agent-sandbox.md); not for use by hand.\n");
			return help ? 0 : 2;
		}
	}
	if (getpid() != 1 || n == 0 || strcmp(mnts[0].mode, "root") != 0) {
		fprintf(stderr, "stockade sandbox-init: only the service runs this, as the init "
		                "of a new sandbox\n");
		return 2;
	}
	/* The service's signal mask and ignored signals came through clone and exec; the
	 * agent starts clean, as runsc's init would (an ignored SIGCHLD would change how its
	 * children are reaped). */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)signal(sig, SIG_DFL);
	int r;
	if (sethostname("sandbox", 7) < 0)
		return init_fail("sethostname", NULL, errno);
	if ((r = jail_loopback_up()) < 0)
		return init_fail("bring up lo", NULL, -r);
	/* After the service put us in our cgroup: that cgroup becomes our "/". */
	if (unshare(CLONE_NEWCGROUP) < 0)
		return init_fail("unshare cgroup namespace", NULL, errno);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return init_fail("make mounts private", NULL, errno);
	/* The shared root goes over /tmp of this private namespace, and we build inside it. */
	if ((r = attach_fd(mnts[0].fd, "/tmp")) < 0)
		return init_fail("attach the root", NULL, -r);
	if (chdir("/tmp") < 0)
		return init_fail("chdir to the new root", NULL, errno);
	if (mount("tmpfs", "./dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=256k") < 0)
		return init_fail("mount", "/dev", errno);
	static const char *const links[][2] = {{"/proc/self/fd", "./dev/fd"},
	                                       {"/proc/self/fd/0", "./dev/stdin"},
	                                       {"/proc/self/fd/1", "./dev/stdout"},
	                                       {"/proc/self/fd/2", "./dev/stderr"}};
	for (size_t i = 0; i < ST_ARRAY_SIZE(links); i++)
		if (symlink(links[i][0], links[i][1]) < 0)
			return init_fail("symlink", links[i][1], errno);
	if (mkdir("./dev/shm", 01777) < 0 || mkdir("./dev/pts", 0755) < 0)
		return init_fail("mkdir", "/dev/shm", errno);
	for (size_t i = 1; i < n; i++) {
		char target[600];
		snprintf(target, sizeof(target), ".%s", mnts[i].dst);
		const char *mode = mnts[i].mode;
		if (!strcmp(mode, "dev")) {
			int f = open(target, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
			if (f < 0)
				return init_fail("create", target + 1, errno);
			close(f);
		}
		if ((r = attach_fd(mnts[i].fd, target)) < 0)
			return init_fail("mount", target + 1, -r);
		uint64_t attrs = MOUNT_ATTR_NOSUID;
		if (!strcmp(mode, "ro"))
			attrs |= MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
		else if (!strcmp(mode, "rw"))
			attrs |= MOUNT_ATTR_NODEV;
		else if (!strcmp(mode, "chan"))
			attrs |= MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
		else if (!strcmp(mode, "dev"))
			attrs |= MOUNT_ATTR_NOEXEC;
		else
			return init_fail("unknown mount mode", mode, EINVAL);
		if ((r = set_attr(target, attrs, true)) < 0)
			return init_fail("set mount flags of", target + 1, -r);
	}
	if (mount("tmpfs", "./dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m") < 0)
		return init_fail("mount", "/dev/shm", errno);
	if ((r = set_attr("./dev", MOUNT_ATTR_RDONLY, false)) < 0)
		return init_fail("make /dev read-only", NULL, -r);
	if (mount("tmpfs", "./tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=256m") < 0)
		return init_fail("mount", "/tmp", errno);
	if (mount("proc", "./proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return init_fail("mount", "/proc", errno);
	if ((r = set_attr(".", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, false)) <
	    0)
		return init_fail("make the root read-only", NULL, -r);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return init_fail("pivot_root", NULL, errno);
	if (umount2(".", MNT_DETACH) < 0)
		return init_fail("detach the old root", NULL, errno);
	if (chdir("/") < 0)
		return init_fail("chdir /", NULL, errno);

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 4096)) {
		rl.rlim_cur = rl.rlim_max = 4096;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	struct rlimit nocore = {0, 0};
	(void)setrlimit(RLIMIT_CORE, &nocore);
	for (int c = 0; c <= 63; c++) {
		if (cap_kept(c))
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			return init_fail("drop capability from the bounding set", NULL, errno);
	}
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	syscall(SYS_close_range, 3, ~0u, 0);
	int nfd = -1;
	struct st_error *e = NULL;
	if (jail_seccomp_load_ex("egress", NULL, &nfd, &e) < 0) {
		fprintf(stderr, "stockade sandbox-init: %s\n", st_error_msg(e));
		st_error_free(e);
		return 1;
	}
	/* Nobody listens: the refused syscalls fail with ENOSYS (see the top of this file). */
	close(nfd);
	static const char *const args[] = {"/opt/stockade/agent",
	                                   "--listen",
	                                   AGENT_CHAN_DIR "/" AGENT_SOCK_NAME,
	                                   "--workspace",
	                                   AGENT_WORKSPACE,
	                                   "--egress-sock",
	                                   AGENT_CHAN_DIR "/" AGENT_EGRESS_SOCK_NAME,
	                                   "--max-procs"};
	char *agent_argv[ST_ARRAY_SIZE(args) + 2];
	for (size_t i = 0; i < ST_ARRAY_SIZE(args); i++)
		agent_argv[i] = st_xstrdup(args[i]);
	agent_argv[ST_ARRAY_SIZE(args)] = st_xstrdup(max_procs);
	agent_argv[ST_ARRAY_SIZE(args) + 1] = NULL;
	extern char **environ;
	execve(agent_argv[0], agent_argv, environ);
	return init_fail("execve", agent_argv[0], errno);
}
