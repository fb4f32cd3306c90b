/*
 * jail-cgroup.c - per-jail cgroups: host detection, creation under Stockade's parent cgroup,
 * attach, stats, kill and removal. The limit files themselves are written by the backends
 * (jail-cgroup-v2.c, jail-cgroup-v1.c).
 *
 * Layout: <hierarchy mount>/<our own cgroup>/<parent>/<jail name>, where <parent> is
 * "stockade" or $STOCKADE_CGROUP_PARENT (tests use a unique one and remove it). Nesting under
 * our own cgroup keeps any limits our container already has, and is what a delegated subtree
 * looks like when running rootless.
 *
 * Choice of hierarchy, per resource (memory, pids, cpu, cpuacct): the v2 cgroup when its
 * controller is available there, else the v1 hierarchy of that controller; neither: a warning.
 * $STOCKADE_CGROUP_VERSION=1 or 2 restricts the choice (tests exercise each backend alone).
 * The v2 cgroup is created whenever a writable v2 hierarchy exists, even without controllers:
 * it gives membership tracking and cgroup.kill.
 *
 * Lifecycle: create (directories made, limits written) -> attach (pids moved in) -> kill
 * (every process SIGKILLed, cgroup empty) -> destroy (directories removed, handle freed).
 * Host detection is done once per process and is immutable afterwards.
 */
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "jail/jail-internal.h"

static const char *const v1_name[JAIL__CG_NRES] = {"memory", "pids", "cpu", "cpuacct"};
static const char *const v2_ctrl_name[JAIL__CG_NRES] = {"memory", "pids", "cpu", "cpu"};

struct host_cg {
	char v2_mount[64]; /* "" when no cgroup2 hierarchy */
	char v2_own[512]; /* our cgroup path in it ("/" at the root) */
	char v1_mount[JAIL__CG_NRES][64]; /* "" when that v1 controller is not mounted */
	char v1_own[JAIL__CG_NRES][512];
};

static struct host_cg host;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static bool is_fs(const char *path, long magic)
{
	struct statfs s;
	return statfs(path, &s) == 0 && (long)s.f_type == magic;
}

static bool list_has(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; p && *p;) {
		const char *end = p + strcspn(p, ", \n");
		if ((size_t)(end - p) == n && strncmp(p, word, n) == 0)
			return true;
		p = *end ? end + 1 : end;
	}
	return false;
}

static void detect_host(void)
{
	if (is_fs("/sys/fs/cgroup", CGROUP2_SUPER_MAGIC))
		st_strlcpy(host.v2_mount, "/sys/fs/cgroup", sizeof(host.v2_mount));
	else if (is_fs("/sys/fs/cgroup/unified", CGROUP2_SUPER_MAGIC))
		st_strlcpy(host.v2_mount, "/sys/fs/cgroup/unified", sizeof(host.v2_mount));
	if (!host.v2_mount[0]) {
		for (int i = 0; i < JAIL__CG_NRES; i++) {
			char p[64];
			snprintf(p, sizeof(p), "/sys/fs/cgroup/%s", v1_name[i]);
			if (is_fs(p, CGROUP_SUPER_MAGIC))
				st_strlcpy(host.v1_mount[i], p, sizeof(host.v1_mount[i]));
		}
	} else if (strcmp(host.v2_mount, "/sys/fs/cgroup") != 0) {
		for (int i = 0; i < JAIL__CG_NRES; i++) {
			char p[64];
			snprintf(p, sizeof(p), "/sys/fs/cgroup/%s", v1_name[i]);
			if (is_fs(p, CGROUP_SUPER_MAGIC))
				st_strlcpy(host.v1_mount[i], p, sizeof(host.v1_mount[i]));
		}
	}
	char *text = NULL;
	size_t len;
	if (st_read_file("/proc/self/cgroup", 65536, &text, &len, NULL) < 0)
		return;
	for (char *line = text; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (c1 && c2) {
			*c2 = '\0';
			const char *ctrls = c1 + 1, *path = c2 + 1;
			if (*ctrls == '\0')
				st_strlcpy(host.v2_own, path, sizeof(host.v2_own));
			for (int i = 0; i < JAIL__CG_NRES; i++)
				if (list_has(ctrls, v1_name[i]))
					st_strlcpy(host.v1_own[i], path, sizeof(host.v1_own[i]));
		}
		line = nl ? nl + 1 : NULL;
	}
	free(text);
}

static const struct host_cg *get_host(void)
{
	pthread_once(&host_once, detect_host);
	return &host;
}

void jail__cg_warn(struct jail_cgroup *cg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (msg == NULL)
		return;
	char **w = realloc(cg->warnings, (cg->n_warnings + 1) * sizeof(*w));
	if (w == NULL) {
		free(msg);
		return;
	}
	cg->warnings = w;
	cg->warnings[cg->n_warnings++] = msg;
}

const char *const *jail_cgroup_warnings(const struct jail_cgroup *cg, size_t *n)
{
	*n = cg ? cg->n_warnings : 0;
	return cg ? (const char *const *)cg->warnings : NULL;
}

/* ---- small file helpers ------------------------------------------------------------------ */

int jail__cg_write(int dirfd, const char *file, const char *value)
{
	int fd = openat(dirfd, file, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	size_t n = strlen(value);
	ssize_t w;
	do
		w = write(fd, value, n);
	while (w < 0 && errno == EINTR);
	int e = w < 0 ? errno : 0;
	close(fd);
	return w < 0 ? -e : 0;
}

static int read_small(int dirfd, const char *file, char *buf, size_t size)
{
	int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	ssize_t r = st_read_all(fd, buf, size - 1);
	close(fd);
	if (r < 0)
		return (int)r;
	buf[r] = '\0';
	return (int)r;
}

int jail__cg_read_u64(int dirfd, const char *file, uint64_t *out)
{
	char buf[64];
	int r = read_small(dirfd, file, buf, sizeof(buf));
	if (r < 0)
		return r;
	buf[strcspn(buf, "\n ")] = '\0';
	return st_parse_u64(buf, out);
}

int jail__cg_read_key(int dirfd, const char *file, const char *key, uint64_t *out)
{
	char buf[4096];
	int r = read_small(dirfd, file, buf, sizeof(buf));
	if (r < 0)
		return r;
	size_t kl = strlen(key);
	for (char *line = buf; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (strncmp(line, key, kl) == 0 && line[kl] == ' ')
			return st_parse_u64(line + kl + 1, out);
		line = nl ? nl + 1 : NULL;
	}
	return -ENOENT;
}

/*
 * Each pid is signalled through a pidfd. Tolerated race: a listed process that exits, is
 * reaped and has its pid reused between the read of the list and pidfd_open would have the
 * pid's new holder signalled (membership is not re-checked after pidfd_open); pids are
 * allocated cyclically, so that needs a wrap of the whole pid space within that window.
 *
 * The list is read into a fixed buffer (no allocation, many rounds): when it does not fit,
 * the cut-off last line is dropped rather than parsed as a shorter, unrelated pid, and the
 * rest is killed in the next rounds, once the first ones are gone from the list.
 */
int jail_cgroup_kill_procs(int dirfd, unsigned timeout_ms)
{
	for (unsigned round = 0; round < timeout_ms; round++) {
		char buf[8192];
		int r = read_small(dirfd, "cgroup.procs", buf, sizeof(buf));
		if (r < 0)
			return r;
		if (r == 0)
			return 0;
		if ((size_t)r == sizeof(buf) - 1 && buf[r - 1] != '\n') {
			char *last_nl = strrchr(buf, '\n');
			*(last_nl ? last_nl + 1 : buf) = '\0';
		}
		for (char *p = buf; *p;) {
			char *nl = strchr(p, '\n');
			if (nl)
				*nl = '\0';
			int64_t pid;
			if (st_parse_i64(p, &pid) == 0 && pid > 0) {
				int pfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
				if (pfd >= 0) {
					syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
					close(pfd);
				}
			}
			if (!nl)
				break;
			p = nl + 1;
		}
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	return -EBUSY;
}

/* ---- create / attach / stats / kill / destroy --------------------------------------------- */

static bool parent_name_ok(const char *p)
{
	if (p[0] == '\0' || p[0] == '/' || strlen(p) > 200)
		return false;
	for (const char *s = p; *s;) {
		size_t n = strcspn(s, "/");
		if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return false;
		s += n;
		if (*s == '/')
			s++;
	}
	return true;
}

/* mkdir -p base (the shared parent; other jails may race us: EEXIST is fine), then mkdir
   base/name (must be new) and open it. */
static int make_cgroup(const char *base, const char *name, char **path_out, int *fd_out)
{
	/* The parent usually exists already: one mkdir, and the walk only when it is missing. */
	int r = 0;
	if (mkdir(base, 0755) < 0 && errno != EEXIST) {
		struct st_error *e = NULL;
		r = st_mkdir_p(base, 0755, &e);
		st_error_free(e);
		if (r < 0)
			return r;
	}
	char *path = st_xasprintf("%s/%s", base, name);
	if (mkdir(path, 0755) < 0) {
		r = -errno;
		free(path);
		return r;
	}
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		r = -errno;
		rmdir(path);
		free(path);
		return r;
	}
	*path_out = path;
	*fd_out = fd;
	return 0;
}

/*
 * A supervisor that was SIGKILLed cannot remove its jails' cgroups (its jails die with it:
 * their init has PR_SET_PDEATHSIG). Now and then (the first create of a process, then every
 * 64th) remove empty "jail-<pid>-<n>" siblings whose supervisor pid is gone. rmdir refuses
 * non-empty cgroups, so a live jail whose pid number was merely reused is never touched.
 */
static atomic_uint sweep_count;

static void sweep_stale(const char *base)
{
	DIR *d = opendir(base);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int pid;
		unsigned n;
		char tail;
		if (e->d_type != DT_DIR ||
		    sscanf(e->d_name, "jail-%d-%u%c", &pid, &n, &tail) != 2 || pid <= 0 ||
		    pid == getpid())
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char *path = st_xasprintf("%s/%s", base, e->d_name);
		(void)rmdir(path);
		free(path);
	}
	closedir(d);
}

static char *join_base(const char *mount, const char *own, const char *parent)
{
	if (strcmp(own, "/") == 0 || own[0] == '\0')
		return st_xasprintf("%s/%s", mount, parent);
	return st_xasprintf("%s%s/%s", mount, own, parent);
}

static bool wanted(enum jail__cg_res res, const struct jail_limits *l)
{
	switch (res) {
	case JAIL__CG_MEMORY: return true; /* peak and OOM detection even without a limit */
	case JAIL__CG_PIDS: return true; /* pids.events */
	case JAIL__CG_CPU: return l->cpus > 0;
	case JAIL__CG_CPUACCT: return true;
	default: return false;
	}
}

static bool limit_set(enum jail__cg_res res, const struct jail_limits *l)
{
	switch (res) {
	case JAIL__CG_MEMORY: return l->memory_bytes > 0;
	case JAIL__CG_PIDS: return l->pids > 0;
	case JAIL__CG_CPU: return l->cpus > 0;
	case JAIL__CG_CPUACCT: return l->cpu_ms > 0;
	default: return false;
	}
}

static const char *res_limit_name(enum jail__cg_res res)
{
	switch (res) {
	case JAIL__CG_MEMORY: return "memory limit";
	case JAIL__CG_PIDS: return "pids limit";
	case JAIL__CG_CPU: return "cpu quota";
	case JAIL__CG_CPUACCT: return "cgroup cpu-time accounting (RLIMIT_CPU still applies)";
	default: return "limit";
	}
}

int jail_cgroup_create(const char *name, const struct jail_limits *limits, struct jail_cgroup **out,
                       struct st_error **err)
{
	const struct host_cg *h = get_host();
	const char *parent = getenv("STOCKADE_CGROUP_PARENT");
	if (parent == NULL || parent[0] == '\0')
		parent = "stockade";
	if (!parent_name_ok(parent))
		return st_error_make(
		    err, EINVAL,
		    "bad STOCKADE_CGROUP_PARENT '%s': use a relative path without '..'", parent);
	if (strchr(name, '/') || name[0] == '.' || name[0] == '\0')
		return st_error_make(err, EINVAL, "bad cgroup name '%s'", name);
	const char *ver = getenv("STOCKADE_CGROUP_VERSION");
	bool use_v1 = ver == NULL || strcmp(ver, "2") != 0;
	bool use_v2 = ver == NULL || strcmp(ver, "1") != 0;

	bool sweep = atomic_fetch_add(&sweep_count, 1) % 64 == 0;
	struct jail_cgroup *cg = st_xcalloc(1, sizeof(*cg));
	cg->v2_fd = -1;
	for (int i = 0; i < JAIL__CG_NRES; i++)
		cg->v1_fd[i] = -1;

	if (use_v2 && h->v2_mount[0]) {
		char *base = join_base(h->v2_mount, h->v2_own, parent);
		/* Enable what we want in the parent's subtree (and in our own cgroup, which must
		   delegate to the parent). Failures only mean fewer controllers: checked below. */
		char *own = join_base(h->v2_mount, h->v2_own, "");
		int ofd = open(own, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (mkdir(base, 0755) < 0 && errno != EEXIST) {
			struct st_error *e = NULL;
			(void)st_mkdir_p(base, 0755, &e);
			st_error_free(e);
		}
		int bfd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC);
		char avail[512] = "", own_avail[512] = "", enabled[512] = "";
		if (bfd >= 0 && read_small(bfd, "cgroup.controllers", avail, sizeof(avail)) < 0)
			avail[0] = '\0';
		if (bfd >= 0 &&
		    read_small(bfd, "cgroup.subtree_control", enabled, sizeof(enabled)) < 0)
			enabled[0] = '\0';
		if (ofd >= 0 &&
		    read_small(ofd, "cgroup.controllers", own_avail, sizeof(own_avail)) < 0)
			own_avail[0] = '\0';
		/* Only what exists and is not enabled yet: no writes on the common path. */
		for (int i = 0; i < JAIL__CG_NRES; i++) {
			const char *cn = v2_ctrl_name[i];
			if (!wanted(i, limits) || i == JAIL__CG_CPUACCT || list_has(enabled, cn) ||
			    !list_has(own_avail, cn))
				continue;
			char cmd[32];
			snprintf(cmd, sizeof(cmd), "+%s", cn);
			if (!list_has(avail, cn) && ofd >= 0)
				(void)jail__cg_write(ofd, "cgroup.subtree_control", cmd);
			if (bfd >= 0)
				(void)jail__cg_write(bfd, "cgroup.subtree_control", cmd);
		}
		if (ofd >= 0)
			close(ofd);
		if (bfd >= 0)
			close(bfd);
		free(own);
		if (sweep)
			sweep_stale(base);
		int r = make_cgroup(base, name, &cg->v2_path, &cg->v2_fd);
		if (r < 0)
			jail__cg_warn(cg, "cgroup v2: cannot create a cgroup under '%s': %s", base,
			              strerror(-r));
		free(base);
		if (cg->v2_fd >= 0) {
			char ctrls[512] = "";
			if (read_small(cg->v2_fd, "cgroup.controllers", ctrls, sizeof(ctrls)) < 0)
				ctrls[0] = '\0';
			for (int i = 0; i < JAIL__CG_NRES; i++)
				if (list_has(ctrls, v2_ctrl_name[i]))
					cg->v2_ctrl |= 1u << i;
		}
	}
	if (use_v1) {
		for (int i = 0; i < JAIL__CG_NRES; i++) {
			if ((cg->v2_ctrl & (1u << i)) || !wanted(i, limits) || !h->v1_mount[i][0])
				continue;
			char *base = join_base(h->v1_mount[i], h->v1_own[i], parent);
			if (sweep)
				sweep_stale(base);
			int r = make_cgroup(base, name, &cg->v1_path[i], &cg->v1_fd[i]);
			if (r < 0 && limit_set(i, limits))
				jail__cg_warn(cg,
				              "cgroup v1 %s: cannot create a cgroup under '%s': %s",
				              v1_name[i], base, strerror(-r));
			free(base);
		}
	}
	for (int i = 0; i < JAIL__CG_NRES; i++) {
		if (limit_set(i, limits) && !(cg->v2_ctrl & (1u << i)) && cg->v1_fd[i] < 0)
			jail__cg_warn(cg,
			              "%s not enforced: no usable '%s' controller (cgroup v2: %s; "
			              "cgroup v1: %s); run as root or delegate a cgroup subtree",
			              res_limit_name(i), v2_ctrl_name[i],
			              h->v2_mount[0] && use_v2 ? "not available or not writable"
			                                       : "not used",
			              h->v1_mount[i][0] && use_v1 ? "not writable" : "not used");
	}
	int r = jail__cg_v2_apply(cg, limits, err);
	if (r == 0)
		r = jail__cg_v1_apply(cg, limits, err);
	if (r < 0) {
		jail_cgroup_destroy(cg);
		return r;
	}
	*out = cg;
	return 0;
}

int jail_cgroup_attach(struct jail_cgroup *cg, pid_t pid, struct st_error **err)
{
	char s[32];
	snprintf(s, sizeof(s), "%d", (int)pid);
	if (cg->v2_fd >= 0) {
		int r = jail__cg_write(cg->v2_fd, "cgroup.procs", s);
		if (r < 0)
			return st_error_make(err, -r, "cannot attach %d to cgroup '%s'", (int)pid,
			                     cg->v2_path);
	}
	for (int i = 0; i < JAIL__CG_NRES; i++) {
		if (cg->v1_fd[i] < 0)
			continue;
		int r = jail__cg_write(cg->v1_fd[i], "cgroup.procs", s);
		if (r < 0)
			return st_error_make(err, -r, "cannot attach %d to cgroup '%s'", (int)pid,
			                     cg->v1_path[i]);
	}
	return 0;
}

int jail_cgroup_read_stats(struct jail_cgroup *cg, struct jail_cgroup_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->cpu_ms = -1;
	st->max_rss_kb = -1;
	if (cg == NULL)
		return 0;
	jail__cg_v2_stats(cg, st);
	jail__cg_v1_stats(cg, st);
	return 0;
}

int jail_cgroup_kill(struct jail_cgroup *cg, struct st_error **err)
{
	if (cg == NULL)
		return 0;
	int r = 0;
	if (cg->v2_fd >= 0)
		r = jail__cg_v2_kill(cg);
	int r1 = jail__cg_v1_kill(cg);
	if (r == 0)
		r = r1;
	cg->killed = true;
	if (r < 0)
		return st_error_make(err, -r, "cannot empty the jail's cgroup");
	return 0;
}

static void remove_dir(const char *path)
{
	/* rmdir can fail with EBUSY for a moment after the last task exits (it is still being
	   torn down): retry briefly. */
	for (int i = 0; i < 200; i++) {
		if (rmdir(path) == 0 || errno == ENOENT)
			return;
		if (errno != EBUSY)
			break;
		struct timespec ts = {0, 500000};
		nanosleep(&ts, NULL);
	}
	st_log(ST_LOG_WARN, "cannot remove cgroup '%s': %s", path, strerror(errno));
}

void jail_cgroup_destroy(struct jail_cgroup *cg)
{
	if (cg == NULL)
		return;
	if (!cg->killed)
		(void)jail_cgroup_kill(cg, NULL);
	if (cg->v2_fd >= 0) {
		close(cg->v2_fd);
		remove_dir(cg->v2_path);
	}
	free(cg->v2_path);
	for (int i = 0; i < JAIL__CG_NRES; i++) {
		if (cg->v1_fd[i] >= 0) {
			close(cg->v1_fd[i]);
			remove_dir(cg->v1_path[i]);
		}
		free(cg->v1_path[i]);
	}
	for (size_t i = 0; i < cg->n_warnings; i++)
		free(cg->warnings[i]);
	free(cg->warnings);
	free(cg);
}

void jail__cg_host_json(json_t *o)
{
	const struct host_cg *h = get_host();
	json_object_set_new(o, "v2Mount", h->v2_mount[0] ? json_string(h->v2_mount) : json_null());
	json_object_set_new(o, "v2Own", json_string(h->v2_own));
	json_t *v1 = json_object();
	for (int i = 0; i < JAIL__CG_NRES; i++)
		if (h->v1_mount[i][0])
			json_object_set_new(v1, v1_name[i], json_string(h->v1_mount[i]));
	json_object_set_new(o, "v1Mounts", v1);
}

int jail_cgroup_remove_parent(void)
{
	const struct host_cg *h = get_host();
	const char *parent = getenv("STOCKADE_CGROUP_PARENT");
	if (parent == NULL || parent[0] == '\0')
		parent = "stockade";
	if (!parent_name_ok(parent))
		return -EINVAL;
	int ret = 0;
	for (int i = -1; i < JAIL__CG_NRES; i++) {
		const char *mnt = i < 0 ? h->v2_mount : h->v1_mount[i];
		const char *own = i < 0 ? h->v2_own : h->v1_own[i];
		if (!mnt[0])
			continue;
		char *base = join_base(mnt, own, parent);
		if (rmdir(base) < 0 && errno != ENOENT && ret == 0)
			ret = -errno;
		free(base);
	}
	return ret;
}
