/*
 * engine.c - the engine pool: zygote processes per language, admission control, and the
 * supervisor side of one execution.
 *
 * Invariants:
 *   - engine_execute() is called from many threads; pool->lock guards the counters, the queue
 *     and the list of running executions; each zygote's control socket has its own send lock.
 *   - Every process we start is reaped by us: zygotes by the monitor thread (it polls their
 *     pidfds and replaces the dead), execution children by their zygote (which reports the
 *     wait status on the execution socket). A zygote is pid 1 of its pid namespace, so when it
 *     dies the kernel kills every execution it forked; those executions end as `internal`.
 *   - The supervisor never trusts the child: a child can only send frames on its own socket,
 *     and its host pid comes from the kernel (SCM_CREDENTIALS), never from the child's bytes.
 *
 * Zygote states (struct zygote): DOWN -> STARTING (spawned, waiting READY) -> UP -> DOWN (its
 * pidfd became readable; the monitor reaps it and respawns it with a back-off).
 *
 * Child states: PREPARING (EXEC sent, HELLO, cgroup attach, SETUP) -> WARM (READY: sandboxed,
 * waiting; kept in pool->warm by the warmer thread, or taken at once by an execution that found
 * none) -> RUNNING (GO sent; wall clock started) -> ANSWERED (RESULT read: the execution returns)
 * -> EXITING (pool->tails: the reaper thread waits for EXIT, kills after a grace period, removes
 * the cgroup). Without a RESULT (killed, timed out, died) the execution waits for EXIT itself.
 *
 * Execution states (engine_execute): QUEUED (waiting for a slot) -> takes a WARM child (or
 * prepares one) -> RUNNING -> ENDED -> slot released.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <seccomp.h>

#include "engine/engine-internal.h"
#include "jail/jail.h"

#define ZYGOTE_MAX 16
#define ZYGOTE_START_TIMEOUT_MS 120000
#define SETUP_TIMEOUT_MS 10000
/* How long an execution whose stream ended waits for its zygote to be reaped before it stops
   believing the zygote died (engine_execute). */
#define ZYGOTE_REAP_GRACE_MS 3000
#define KILL_GRACE_MS 5000
#define WARM_DEFAULT 2
#define WARM_MAX 8
#define TAILS_POLL_MAX 256

static const char *const default_py_modules[] = {"json",        "math",  "re",     "datetime",
                                                 "collections", "numpy", "pandas", NULL};

struct zygote {
	enum engine_language lang;
	pthread_mutex_t send_lock;
	pid_t pid; /* 0 when down */
	int pidfd;
	int ctl_fd;
	bool up;
	uint64_t gen; /* +1 at every start: a child records the generation that forked it */
	int64_t next_start_ms; /* back-off after a failed or crashed start */
	unsigned fast_failures;
};

struct running {
	struct running *next;
	int pidfd;
	bool killed_by_shutdown;
};

/* A child that is forked, in its cgroup and sandboxed (READY), waiting for GO. */
struct warm {
	struct warm *next;
	int sock;
	int pidfd;
	pid_t pid; /* host pid */
	struct engine_cgroup *cg; /* NULL without cgroups */
	uint64_t memory_mb; /* the cgroup's limit now */
	uint64_t cpu_s; /* the RLIMIT_CPU the child set */
	int64_t prep_cpu_ms; /* CPU time it spent getting ready (READY's payload) */
	enum engine_profile profile; /* what it was prepared for */
	struct zygote *z; /* the zygote that forked it, and that zygote's generation */
	uint64_t zgen;
};

/* A child that answered (RESULT) and is exiting: the reaper waits for its EXIT, then removes
   its cgroup. */
struct tail {
	struct tail *next;
	int sock;
	int pidfd;
	struct engine_cgroup *cg;
	int64_t deadline_ms;
	bool killed;
};

struct engine_pool {
	struct engine_pool_options o;
	char **py_modules; /* owned copy, NULL-terminated */
	char *js_modules_dir;
	char cg_prefix[128];
	bool cgroups;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned in_flight;
	unsigned queued;
	bool shutting_down;
	uint64_t executions_total;
	uint64_t zygote_restarts;
	uint64_t exec_seq;
	struct running *running;

	struct zygote zy[ENGINE_LANG__COUNT][ZYGOTE_MAX];
	unsigned nzy;
	unsigned rr[ENGINE_LANG__COUNT];

	pthread_t monitor;
	bool monitor_started;
	int wake_fd;

	char *warnings[8];
	size_t n_warnings;

	/* Warm children (warmer_main keeps warm_target[profile] per language) and exiting ones
	   (reaper_main); both lists are guarded by lock. */
	struct warm *warm[ENGINE_LANG__COUNT][ENGINE_PROFILE__COUNT];
	unsigned n_warm[ENGINE_LANG__COUNT][ENGINE_PROFILE__COUNT];
	unsigned warm_target[ENGINE_LANG__COUNT][ENGINE_PROFILE__COUNT];
	bool warm_stop;
	pthread_t warmer;
	bool warmer_started;
	int warm_fd;
	struct tail *tails;
	bool reap_stop;
	pthread_t reaper;
	bool reaper_started;
	int reap_fd;
};

static void *warmer_main(void *arg);
static void *reaper_main(void *arg);
static uint64_t running_memory_usage(struct engine_pool *pool);
static void warm_and_tails_stop(struct engine_pool *pool);

/* ---- names ---------------------------------------------------------------------------------- */

const char *engine_language_name(enum engine_language lang)
{
	switch (lang) {
	case ENGINE_LANG_JAVASCRIPT: return "javascript";
	case ENGINE_LANG_PYTHON: return "python";
	case ENGINE_LANG__COUNT:
	default: return "unknown";
	}
}

int engine_language_parse(const char *s, enum engine_language *out)
{
	if (s == NULL)
		return -EINVAL;
	if (strcmp(s, "javascript") == 0 || strcmp(s, "js") == 0) {
		*out = ENGINE_LANG_JAVASCRIPT;
		return 0;
	}
	if (strcmp(s, "python") == 0 || strcmp(s, "py") == 0) {
		*out = ENGINE_LANG_PYTHON;
		return 0;
	}
	return -EINVAL;
}

static const char *const status_names[] = {
    [ENGINE_OK] = "ok",
    [ENGINE_ERROR] = "error",
    [ENGINE_TIMEOUT] = "timeout",
    [ENGINE_MEMORY_LIMIT] = "memory_limit",
    [ENGINE_OUTPUT_LIMIT] = "output_limit",
    [ENGINE_KILLED] = "killed",
    [ENGINE_SANDBOX_VIOLATION] = "sandbox_violation",
    [ENGINE_INTERNAL] = "internal",
};

const char *engine_status_name(enum engine_status s)
{
	if ((unsigned)s < ST_ARRAY_SIZE(status_names))
		return status_names[s];
	return "internal";
}

static enum engine_status status_parse(const char *s)
{
	for (size_t i = 0; s && i < ST_ARRAY_SIZE(status_names); i++)
		if (strcmp(status_names[i], s) == 0)
			return (enum engine_status)i;
	return ENGINE_INTERNAL;
}

/* ---- options -------------------------------------------------------------------------------- */

void engine_pool_options_init(struct engine_pool_options *o)
{
	memset(o, 0, sizeof(*o));
	o->languages[ENGINE_LANG_JAVASCRIPT] = true;
	o->languages[ENGINE_LANG_PYTHON] = true;
	o->zygotes_per_language = 1;
	o->mode = ENGINE_MODE_JAILED;
	o->default_timeout_ms = 10000;
	o->max_timeout_ms = 60000;
	o->default_memory_mb = 256;
	o->max_memory_mb = 1024;
	o->max_code_bytes = 1u << 20;
	o->max_params_bytes = 8u << 20;
	o->max_output_bytes = 1u << 20;
	o->max_result_bytes = 8u << 20;
	o->pids_max = 64;
	o->tmp_bytes = 64u << 20;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	o->max_concurrency = (unsigned)(cpus > 0 ? cpus * 2 : 4);
	o->queue_size = 64;
}

void engine_request_init(struct engine_request *req)
{
	memset(req, 0, sizeof(*req));
}

/* ---- zygotes -------------------------------------------------------------------------------- */

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_kill(int pidfd)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
}

static char *js_modules_default(void)
{
	const char *env = getenv("STOCKADE_JS_MODULES");
	if (env && *env)
		return st_xstrdup(env);
	/* <repo>/build/stockade -> <repo>/lib/js/node_modules; also try the cwd. */
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		for (int up = 0; up < 3; up++) {
			char *slash = strrchr(exe, '/');
			if (slash == NULL)
				break;
			*slash = '\0';
			char *cand = st_xasprintf("%s/lib/js/node_modules", exe);
			struct stat st;
			if (stat(cand, &st) == 0 && S_ISDIR(st.st_mode))
				return cand;
			free(cand);
		}
	}
	struct stat st;
	if (stat("lib/js/node_modules", &st) == 0 && S_ISDIR(st.st_mode)) {
		char *cwd = getcwd(NULL, 0);
		if (cwd) {
			char *r = st_xasprintf("%s/lib/js/node_modules", cwd);
			free(cwd);
			return r;
		}
	}
	return NULL;
}

/*
 * Start one zygote: a raw clone into fresh namespaces (jailed) whose child only waits for its
 * uid/gid maps and re-executes this binary as a zygote. Only async-signal-safe calls happen
 * between the clone and the exec, because the supervisor may have many threads.
 */
static int zygote_start(struct engine_pool *pool, struct zygote *z, struct st_error **err)
{
	bool jailed = pool->o.mode == ENGINE_MODE_JAILED;
	int ctl[2] = {-1, -1};
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0)
		return st_error_make(err, errno, "cannot create the zygote control socket");
	int sync[2] = {-1, -1};
	if (pipe2(sync, O_CLOEXEC) < 0) {
		close(ctl[0]);
		close(ctl[1]);
		return st_error_make(err, errno, "cannot create a pipe");
	}
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

	/* Everything the child needs is prepared before the clone. */
	char zenv[64], *pyenv = NULL;
	snprintf(zenv, sizeof(zenv), "%s=%d:%d:%d", ENGINE_ZYGOTE_ENV, (int)z->lang, ctl[1],
	         jailed ? 1 : 0);
	char *jsenv = st_xasprintf(
	    "%s=%s", ENGINE_JSDIR_ENV,
	    z->lang == ENGINE_LANG_JAVASCRIPT && pool->js_modules_dir ? pool->js_modules_dir : "");
	struct st_buf mods;
	st_buf_init(&mods, 1 << 16);
	st_buf_appendf(&mods, "%s=", ENGINE_PYMODULES_ENV);
	for (char **m = pool->py_modules; m && *m; m++)
		st_buf_appendf(&mods, "%s%s", m == pool->py_modules ? "" : ",", *m);
	pyenv = st_buf_steal(&mods);
	static const char *const fixed_env[] = {
	    "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8", "TMPDIR=/tmp",
	    /* No BLAS/OpenMP threads: the zygote must be single-threaded when it forks. */
	    "OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1",
	    "NUMEXPR_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1", "PYTHONNOUSERSITE=1"};
	/* Three always, five optional below, the log level, the terminating NULL. */
	char *envp[ST_ARRAY_SIZE(fixed_env) + 10];
	size_t ne = 0;
	envp[ne++] = zenv;
	envp[ne++] = jsenv;
	envp[ne++] = pyenv;
	char log_env[64];
	snprintf(log_env, sizeof(log_env), "%s=%d", ENGINE_LOG_LEVEL_ENV, (int)st_log_get_level());
	envp[ne++] = log_env;
	for (size_t i = 0; i < ST_ARRAY_SIZE(fixed_env); i++)
		envp[ne++] = (char *)(uintptr_t)fixed_env[i];
	/* Sanitizer builds: keep the sanitizer's options. */
	char *asan_env = NULL, *ubsan_env = NULL;
	const char *a = getenv("ASAN_OPTIONS");
	if (a)
		envp[ne++] = asan_env = st_xasprintf("ASAN_OPTIONS=%s", a);
	const char *u = getenv("UBSAN_OPTIONS");
	if (u)
		envp[ne++] = ubsan_env = st_xasprintf("UBSAN_OPTIONS=%s", u);
	char *pf_env = NULL;
	const char *pf = getenv(ENGINE_PREFAULT_ENV);
	if (pf && *pf)
		envp[ne++] = pf_env = st_xasprintf("%s=%s", ENGINE_PREFAULT_ENV, pf);
	char *hp_env = NULL;
	const char *hp = getenv(ENGINE_HUGEPAGES_ENV);
	if (hp && *hp)
		envp[ne++] = hp_env = st_xasprintf("%s=%s", ENGINE_HUGEPAGES_ENV, hp);
	/* Where the runtimes' shared object is, when the operator (or a test) says. */
	char *lang_env = NULL;
	const char *ll = getenv(ENGINE_LANG_LIB_ENV);
	if (ll && *ll)
		envp[ne++] = lang_env = st_xasprintf("%s=%s", ENGINE_LANG_LIB_ENV, ll);
	envp[ne] = NULL;
	char arg0[32];
	snprintf(arg0, sizeof(arg0), "stockade-zygote-%s", engine_language_name(z->lang));
	char *argv[] = {arg0, NULL};

	unsigned long flags = SIGCHLD;
	if (jailed)
		flags |= CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
		         CLONE_NEWUTS;
	pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
	if (pid == 0) {
		char b;
		close(sync[1]);
		if (read(sync[0], &b, 1) != 1)
			_exit(127);
		if (jailed) {
			/* Become root of the new user namespace (host nobody when we are root): raw
			   syscalls, glibc's set*id would try to signal threads this copy lacks. */
			if (geteuid() == 0)
				(void)syscall(SYS_setgroups, 0, NULL);
			if (syscall(SYS_setresgid, 0, 0, 0) < 0 ||
			    syscall(SYS_setresuid, 0, 0, 0) < 0)
				_exit(126);
		}
		if (fcntl(ctl[1], F_SETFD, 0) < 0)
			_exit(127);
		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 1);
		}
		execve("/proc/self/exe", argv, envp);
		_exit(127);
	}
	int saved = errno;
	close(ctl[1]);
	close(sync[0]);
	if (devnull >= 0)
		close(devnull);
	free(pyenv);
	free(jsenv);
	free(asan_env);
	free(ubsan_env);
	free(lang_env);
	free(pf_env);
	free(hp_env);
	if (pid < 0) {
		close(ctl[0]);
		close(sync[1]);
		if (jailed && (saved == EPERM || saved == EINVAL || saved == ENOSPC))
			return st_error_make(
			    err, saved,
			    "cannot create the zygote's namespaces (user, mount, pid, "
			    "net, ipc, uts): user namespaces are unavailable or "
			    "forbidden here; allow unshare/clone with namespace flags "
			    "in the container's seccomp profile (deploy/seccomp/"
			    "stockade-executor.json) or run privileged");
		return st_error_make(err, saved, "cannot start the %s zygote",
		                     engine_language_name(z->lang));
	}
	if (jailed) {
		char map[64];
		uid_t uid = geteuid();
		gid_t gid = getegid();
		int r;
		if (uid == 0) {
			/* Root in the jail is nobody on the host. */
			r = jail_write_proc(pid, "uid_map", "0 65534 1");
			if (r == 0)
				r = jail_write_proc(pid, "gid_map", "0 65534 1");
		} else {
			(void)jail_write_proc(pid, "setgroups", "deny");
			snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
			r = jail_write_proc(pid, "uid_map", map);
			if (r == 0) {
				snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
				r = jail_write_proc(pid, "gid_map", map);
			}
		}
		if (r < 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			close(ctl[0]);
			close(sync[1]);
			return st_error_make(err, -r, "cannot write the zygote's uid/gid map");
		}
	}
	if (write(sync[1], "g", 1) != 1) {
		saved = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(ctl[0]);
		close(sync[1]);
		return st_error_make(err, saved, "cannot release the zygote");
	}
	close(sync[1]);

	/* Wait for READY or FAIL. */
	struct engine_ctl_msg m;
	memset(&m, 0, sizeof(m));
	struct pollfd p = {.fd = ctl[0], .events = POLLIN};
	int pr;
	do {
		pr = poll(&p, 1, ZYGOTE_START_TIMEOUT_MS);
	} while (pr < 0 && errno == EINTR);
	ssize_t n = pr > 0 ? recv(ctl[0], &m, sizeof(m) - 1, 0) : -1;
	if (n <= 0 || m.type != ENGINE_CTL_READY) {
		kill(pid, SIGKILL);
		int status = 0;
		waitpid(pid, &status, 0);
		close(ctl[0]);
		if (n > 0 && m.type == ENGINE_CTL_FAIL) {
			m.text[sizeof(m.text) - 1] = '\0';
			return st_error_make(err, 0, "the %s zygote could not start: %s",
			                     engine_language_name(z->lang), m.text);
		}
		if (pr == 0)
			return st_error_make(err, ETIMEDOUT, "the %s zygote did not become ready",
			                     engine_language_name(z->lang));
		return st_error_make(err, 0, "the %s zygote exited during start-up (status %d)",
		                     engine_language_name(z->lang), status);
	}
	int pidfd = pidfd_open_(pid);
	if (pidfd < 0) {
		saved = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(ctl[0]);
		return st_error_make(err, saved, "pidfd_open");
	}
	pthread_mutex_lock(&z->send_lock);
	z->pid = pid;
	z->pidfd = pidfd;
	z->ctl_fd = ctl[0];
	z->gen++;
	z->up = true;
	pthread_mutex_unlock(&z->send_lock);
	return 0;
}

/* Called by the monitor when z's pidfd is readable. */
static void zygote_reap(struct zygote *z)
{
	pthread_mutex_lock(&z->send_lock);
	pid_t pid = z->pid;
	z->up = false;
	if (z->ctl_fd >= 0)
		close(z->ctl_fd);
	z->ctl_fd = -1;
	if (z->pidfd >= 0)
		close(z->pidfd);
	z->pidfd = -1;
	z->pid = 0;
	pthread_mutex_unlock(&z->send_lock);
	if (pid > 0) {
		int status = 0;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
		}
		st_log(ST_LOG_WARN, "the %s zygote (pid %d) died (status 0x%x); restarting it",
		       engine_language_name(z->lang), (int)pid, status);
	}
}

/* Has engine_pool_shutdown begun? */
static bool pool_stopping(struct engine_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	bool stop = pool->shutting_down;
	pthread_mutex_unlock(&pool->lock);
	return stop;
}

static void *monitor_main(void *arg)
{
	struct engine_pool *pool = arg;
	for (;;) {
		struct pollfd p[1 + ENGINE_LANG__COUNT * ZYGOTE_MAX];
		struct zygote *who[1 + ENGINE_LANG__COUNT * ZYGOTE_MAX];
		size_t n = 0;
		p[n].fd = pool->wake_fd;
		p[n].events = POLLIN;
		who[n++] = NULL;
		int64_t now = st_now_ms();
		int timeout = -1;
		for (int l = 0; l < ENGINE_LANG__COUNT; l++) {
			if (!pool->o.languages[l])
				continue;
			for (unsigned i = 0; i < pool->nzy; i++) {
				struct zygote *z = &pool->zy[l][i];
				if (z->pidfd >= 0) {
					p[n].fd = z->pidfd;
					p[n].events = POLLIN;
					who[n++] = z;
				} else {
					int wait = (int)(z->next_start_ms - now);
					if (wait < 0)
						wait = 0;
					if (timeout < 0 || wait < timeout)
						timeout = wait;
				}
			}
		}
		int r = poll(p, n, timeout);
		if (r < 0 && errno != EINTR)
			break;
		if (pool_stopping(pool))
			break;
		for (size_t i = 1; r > 0 && i < n; i++)
			if (p[i].revents)
				zygote_reap(who[i]);
		now = st_now_ms();
		for (int l = 0; l < ENGINE_LANG__COUNT; l++) {
			if (!pool->o.languages[l])
				continue;
			for (unsigned i = 0; i < pool->nzy; i++) {
				struct zygote *z = &pool->zy[l][i];
				if (z->pid != 0 || z->next_start_ms > now)
					continue;
				struct st_error *err = NULL;
				int64_t t0 = st_now_ms();
				if (zygote_start(pool, z, &err) < 0) {
					st_log(ST_LOG_ERROR, "cannot restart the %s zygote: %s",
					       engine_language_name((enum engine_language)l),
					       st_error_msg(err));
					st_error_free(err);
					z->fast_failures++;
				} else if (st_now_ms() - t0 < 1000 && z->fast_failures > 0) {
					z->fast_failures = 0;
				}
				unsigned shift = z->fast_failures > 6 ? 6 : z->fast_failures;
				z->next_start_ms =
				    st_now_ms() + (z->fast_failures ? (250 << shift) : 0);
				pthread_mutex_lock(&pool->lock);
				pool->zygote_restarts++;
				pthread_cond_broadcast(&pool->cond);
				pthread_mutex_unlock(&pool->lock);
			}
		}
	}
	return NULL;
}

/* ---- pool ----------------------------------------------------------------------------------- */

static void add_warning(struct engine_pool *pool, const char *msg)
{
	if (pool->n_warnings + 1 < ST_ARRAY_SIZE(pool->warnings))
		pool->warnings[pool->n_warnings++] = st_xstrdup(msg);
	pool->warnings[pool->n_warnings] = NULL;
	st_log(ST_LOG_WARN, "%s", msg);
}

/* Wait on pool->cond, pool->lock held, for at most 20 ms. For callers that also wait for a
   deadline, which nothing signals: they re-check their condition and the clock after every
   wake-up or timeout. */
static void pool_wait_20ms(struct engine_pool *pool)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 20 * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&pool->cond, &pool->lock, &ts);
}

static uint64_t default_memory_budget(void)
{
	uint64_t total = 0;
	char *data = NULL;
	size_t len = 0;
	if (st_read_file("/proc/meminfo", 1 << 16, &data, &len, NULL) == 0) {
		unsigned long long kb = 0;
		if (sscanf(data, "MemTotal: %llu kB", &kb) == 1)
			total = (uint64_t)kb * 1024;
		free(data);
	}
	return total ? total : (uint64_t)4 << 30;
}

static void pool_free(struct engine_pool *pool)
{
	for (char **m = pool->py_modules; m && *m; m++)
		free(*m);
	free(pool->py_modules);
	free(pool->js_modules_dir);
	for (size_t i = 0; i < pool->n_warnings; i++)
		free(pool->warnings[i]);
	if (pool->wake_fd >= 0)
		close(pool->wake_fd);
	if (pool->warm_fd >= 0)
		close(pool->warm_fd);
	if (pool->reap_fd >= 0)
		close(pool->reap_fd);
	for (int l = 0; l < ENGINE_LANG__COUNT; l++)
		for (unsigned i = 0; i < ZYGOTE_MAX; i++)
			pthread_mutex_destroy(&pool->zy[l][i].send_lock);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->cond);
	free(pool);
}

static void zygotes_stop(struct engine_pool *pool)
{
	for (int l = 0; l < ENGINE_LANG__COUNT; l++) {
		for (unsigned i = 0; i < pool->nzy; i++) {
			struct zygote *z = &pool->zy[l][i];
			pthread_mutex_lock(&z->send_lock);
			if (z->ctl_fd >= 0)
				close(z->ctl_fd); /* EOF: the zygote kills its children and exits */
			z->ctl_fd = -1;
			pid_t pid = z->pid;
			int pidfd = z->pidfd;
			z->up = false;
			z->pid = 0;
			z->pidfd = -1;
			pthread_mutex_unlock(&z->send_lock);
			if (pid <= 0)
				continue;
			struct pollfd p = {.fd = pidfd, .events = POLLIN};
			if (poll(&p, 1, 2000) <= 0)
				pidfd_kill(pidfd);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
			}
			close(pidfd);
		}
	}
}

int engine_pool_new(const struct engine_pool_options *opts, struct engine_pool **out,
                    struct st_error **err)
{
	struct engine_pool *pool = st_xcalloc(1, sizeof(*pool));
	pool->o = *opts;
	pool->wake_fd = pool->warm_fd = pool->reap_fd = -1;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	for (int l = 0; l < ENGINE_LANG__COUNT; l++)
		for (unsigned i = 0; i < ZYGOTE_MAX; i++) {
			pthread_mutex_init(&pool->zy[l][i].send_lock, NULL);
			pool->zy[l][i].lang = (enum engine_language)l;
			pool->zy[l][i].ctl_fd = -1;
			pool->zy[l][i].pidfd = -1;
		}
	struct engine_pool_options *o = &pool->o;
	struct engine_pool_options d;
	engine_pool_options_init(&d);
#define DEF(f)                      \
	do {                        \
		if (o->f == 0)      \
			o->f = d.f; \
	} while (0)
	DEF(zygotes_per_language);
	DEF(default_timeout_ms);
	DEF(max_timeout_ms);
	DEF(default_memory_mb);
	DEF(max_memory_mb);
	DEF(max_code_bytes);
	DEF(max_params_bytes);
	DEF(max_output_bytes);
	DEF(max_result_bytes);
	DEF(pids_max);
	DEF(tmp_bytes);
	DEF(max_concurrency);
	DEF(queue_size);
#undef DEF
	if (o->zygotes_per_language > ZYGOTE_MAX)
		o->zygotes_per_language = ZYGOTE_MAX;
	if (o->warm_per_language == 0) {
		const char *we = getenv("STOCKADE_ENGINE_WARM");
		uint64_t v = 0;
		if (we && *we && st_parse_u64(we, &v) == 0)
			o->warm_per_language = v == 0 ? -1 : (int)(v > WARM_MAX ? WARM_MAX : v);
		else
			o->warm_per_language = WARM_DEFAULT;
	}
	unsigned warm_target = o->warm_per_language > 0 ? (unsigned)o->warm_per_language : 0;
	if (warm_target > WARM_MAX)
		warm_target = WARM_MAX;
	for (int l = 0; l < ENGINE_LANG__COUNT; l++)
		pool->warm_target[l][ENGINE_PROFILE_PLAIN] = warm_target;
	pool->nzy = o->zygotes_per_language;
	if (o->memory_budget_bytes == 0)
		o->memory_budget_bytes = default_memory_budget();
	if (o->default_timeout_ms > o->max_timeout_ms)
		o->default_timeout_ms = o->max_timeout_ms;
	if (o->default_memory_mb > o->max_memory_mb)
		o->default_memory_mb = o->max_memory_mb;

	const char *const *mods = o->python_modules ? o->python_modules : default_py_modules;
	size_t nm = 0;
	while (mods[nm])
		nm++;
	pool->py_modules = st_xcalloc(nm + 1, sizeof(char *));
	for (size_t i = 0; i < nm; i++) {
		for (const char *c = mods[i]; *c; c++)
			if (!(*c == '_' || *c == '.' || (*c >= '0' && *c <= '9') ||
			      (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z'))) {
				int r = st_error_make(err, EINVAL,
				                      "invalid python module name '%s'", mods[i]);
				pool_free(pool);
				return r;
			}
		pool->py_modules[i] = st_xstrdup(mods[i]);
		/* Python children kept ready for code that uses pandas (enum engine_profile): two
		   (at most warm_target), so that one is ready while the next is prepared. */
		if (strcmp(mods[i], "pandas") == 0)
			pool->warm_target[ENGINE_LANG_PYTHON][ENGINE_PROFILE_PANDAS] =
			    warm_target < 2 ? warm_target : 2;
	}
	pool->js_modules_dir =
	    o->js_modules_dir ? st_xstrdup(o->js_modules_dir) : js_modules_default();
	if (pool->js_modules_dir != NULL) {
		char *real = realpath(pool->js_modules_dir, NULL);
		if (real == NULL) {
			int r = st_error_make(err, errno, "JavaScript modules dir '%s'",
			                      pool->js_modules_dir);
			pool_free(pool);
			return r;
		}
		free(pool->js_modules_dir);
		pool->js_modules_dir = real;
	}
	o->python_modules = NULL;
	o->js_modules_dir = NULL;
	if (o->languages[ENGINE_LANG_JAVASCRIPT] && pool->js_modules_dir == NULL)
		add_warning(pool,
		            "no JavaScript modules dir found (lib/js/node_modules); require() "
		            "will only find nothing");

	snprintf(pool->cg_prefix, sizeof(pool->cg_prefix), "%s",
	         opts->cgroup_prefix ? opts->cgroup_prefix : "");
	if (pool->cg_prefix[0] == '\0')
		snprintf(pool->cg_prefix, sizeof(pool->cg_prefix),
		         ENGINE_CGROUP_DEFAULT_PREFIX "%d", (int)getpid());
	struct st_error *cgerr = NULL;
	if (engine__cgroup_setup(pool->cg_prefix, &cgerr) == 0) {
		pool->cgroups = true;
	} else {
		char msg[600];
		snprintf(msg, sizeof(msg),
		         "executions have no memory or pids limit: %s (delegate a cgroup to the "
		         "service)",
		         st_error_msg(cgerr));
		st_error_free(cgerr);
		add_warning(pool, msg);
	}
	if (pool->cgroups && opts->memory_budget_bytes == 0) {
		uint64_t lim = engine__cgroup_parent_limit();
		if (lim > 0 && lim < o->memory_budget_bytes)
			o->memory_budget_bytes = lim;
	}
	if (o->mode == ENGINE_MODE_UNSANDBOXED)
		add_warning(pool,
		            "code executor runs UNSANDBOXED: no namespaces (seccomp, rlimits "
		            "and no_new_privs still apply); every result says sandboxed:false");

	pool->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (pool->wake_fd < 0) {
		int r = st_error_make(err, errno, "eventfd");
		engine__cgroup_teardown();
		pool_free(pool);
		return r;
	}
	for (int l = 0; l < ENGINE_LANG__COUNT; l++) {
		if (!o->languages[l])
			continue;
		for (unsigned i = 0; i < pool->nzy; i++) {
			int r = zygote_start(pool, &pool->zy[l][i], err);
			if (r < 0) {
				zygotes_stop(pool);
				engine__cgroup_teardown();
				pool_free(pool);
				return r;
			}
		}
	}
	if (pthread_create(&pool->monitor, NULL, monitor_main, pool) != 0) {
		zygotes_stop(pool);
		engine__cgroup_teardown();
		pool_free(pool);
		return st_error_make(err, EAGAIN, "cannot start the engine monitor thread");
	}
	pool->monitor_started = true;
	/* Warm children: forked, in their cgroups and sandboxed before a request exists, so
	   that an execution pays only for running its code; and a reaper, so that it does not
	   pay for the child's exit either. */
	pool->warm_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pool->reap_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (pool->warm_fd < 0 || pool->reap_fd < 0 ||
	    pthread_create(&pool->reaper, NULL, reaper_main, pool) != 0) {
		engine_pool_shutdown(pool, 0);
		return st_error_make(err, EAGAIN, "cannot start the engine reaper thread");
	}
	pool->reaper_started = true;
	if (warm_target > 0 && pthread_create(&pool->warmer, NULL, warmer_main, pool) == 0)
		pool->warmer_started = true;
	*out = pool;
	return 0;
}

void engine_pool_shutdown(struct engine_pool *pool, uint64_t deadline_ms)
{
	if (pool == NULL)
		return;
	int64_t deadline = st_now_ms() + (int64_t)deadline_ms;
	pthread_mutex_lock(&pool->lock);
	pool->shutting_down = true;
	pthread_cond_broadcast(&pool->cond);
	while (pool->in_flight > 0) {
		int64_t left = deadline - st_now_ms();
		if (left <= 0) {
			for (struct running *r = pool->running; r; r = r->next) {
				r->killed_by_shutdown = true;
				if (r->pidfd >= 0)
					pidfd_kill(r->pidfd);
			}
			/* Killed executions end within moments; wait for their threads. */
			deadline = st_now_ms() + 3600 * 1000;
		}
		pool_wait_20ms(pool);
	}
	pthread_mutex_unlock(&pool->lock);
	warm_and_tails_stop(pool);
	if (pool->monitor_started) {
		uint64_t one = 1;
		(void)!write(pool->wake_fd, &one, sizeof(one));
		pthread_join(pool->monitor, NULL);
	}
	zygotes_stop(pool);
	if (pool->cgroups)
		engine__cgroup_teardown();
	pool_free(pool);
}

/* ---- one execution -------------------------------------------------------------------------- */

void engine_result_release(struct engine_result *r)
{
	if (r == NULL)
		return;
	json_decref(r->result);
	free(r->stdout_text);
	free(r->stderr_text);
	free(r->error.name);
	free(r->error.message);
	free(r->error.stack);
	free(r->violation_syscall);
	memset(r, 0, sizeof(*r));
}

static void result_set_error(struct engine_result *res, enum engine_status status, const char *name,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void result_set_error(struct engine_result *res, enum engine_status status, const char *name,
                             const char *fmt, ...)
{
	res->status = status;
	free(res->error.name);
	free(res->error.message);
	free(res->error.stack);
	res->error.name = st_xstrdup(name);
	va_list ap;
	va_start(ap, fmt);
	char *m = NULL;
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	res->error.message = m ? m : st_xstrdup(name);
	res->error.stack = st_xstrdup("");
	res->error.line = 0;
	res->has_error = true;
}

/* What running executions use now: their cgroups' charged memory (the seed's js-executor
   refuses work past 80% of its limit the same way). */
static uint64_t engine_memory_usage(struct engine_pool *pool)
{
	return pool->cgroups ? engine__cgroup_usage() : 0;
}

/* Reads one frame whose header arrives with SCM_CREDENTIALS. */
static int read_hello(int fd, int64_t deadline, pid_t *pid, uint32_t *type, char **data)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	for (;;) {
		int64_t left = deadline - st_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		break;
	}
	uint32_t hdr[2];
	char cbuf[CMSG_SPACE(sizeof(struct ucred))];
	struct iovec iov = {.iov_base = hdr, .iov_len = sizeof(hdr)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t n;
	do {
		n = recvmsg(fd, &mh, MSG_WAITALL | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -EPIPE;
	if ((size_t)n != sizeof(hdr) || hdr[1] > 4096)
		return -EPROTO;
	*pid = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred uc;
			memcpy(&uc, CMSG_DATA(c), sizeof(uc));
			*pid = uc.pid;
		}
	char *buf = st_xmalloc((size_t)hdr[1] + 1);
	ssize_t got = hdr[1] ? st_read_all(fd, buf, hdr[1]) : 0;
	if (got != (ssize_t)hdr[1]) {
		free(buf);
		return -EPIPE;
	}
	buf[hdr[1]] = '\0';
	*type = hdr[0];
	*data = buf;
	return 0;
}

static struct zygote *pick_zygote(struct engine_pool *pool, enum engine_language lang)
{
	for (int wait = 0; wait < 100; wait++) {
		pthread_mutex_lock(&pool->lock);
		unsigned start = pool->rr[lang]++;
		bool stop = pool->shutting_down;
		pthread_mutex_unlock(&pool->lock);
		if (stop)
			return NULL;
		for (unsigned k = 0; k < pool->nzy; k++) {
			struct zygote *z = &pool->zy[lang][(start + k) % pool->nzy];
			if (__atomic_load_n(&z->up, __ATOMIC_ACQUIRE))
				return z;
		}
		/* Every zygote of this language is restarting: wait a little for one. */
		poll(NULL, 0, 50);
	}
	return NULL;
}

/* Hand `fd` to zygote z for a new child; *gen is the zygote's generation that took it. */
static int send_exec(struct zygote *z, int fd, uint64_t *gen)
{
	struct engine_ctl_msg m = {.type = ENGINE_CTL_EXEC, .len = 0};
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof(cbuf));
	struct iovec iov = {.iov_base = &m, .iov_len = offsetof(struct engine_ctl_msg, text)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	pthread_mutex_lock(&z->send_lock);
	int r = -EPIPE;
	if (z->up && z->ctl_fd >= 0) {
		ssize_t n;
		do {
			n = sendmsg(z->ctl_fd, &mh, MSG_NOSIGNAL);
		} while (n < 0 && errno == EINTR);
		r = n < 0 ? -errno : 0;
		*gen = z->gen;
		/* A dead zygote: stop choosing it; the monitor reaps and replaces it. */
		if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN)
			z->up = false;
	}
	pthread_mutex_unlock(&z->send_lock);
	return r;
}

/* ---- preparing a child, warm children, exiting children ------------------------------------ */

/* Is generation `gen` of zygote z still the one running (not known to be dead)? */
static bool zygote_current(struct zygote *z, uint64_t gen)
{
	pthread_mutex_lock(&z->send_lock);
	bool current = z->up && z->gen == gen;
	pthread_mutex_unlock(&z->send_lock);
	return current;
}

/*
 * Wait until generation `gen` of zygote z has been reaped (its pidfd was readable: every
 * process in its pid namespace, its children included, is gone): true then; false at
 * `deadline` or when the pool shuts down. A dying zygote closes its sockets before the
 * kernel kills its children, so until then a child of it can still look alive.
 */
static bool zygote_wait_reaped(struct engine_pool *pool, struct zygote *z, uint64_t gen,
                               int64_t deadline)
{
	for (;;) {
		pthread_mutex_lock(&z->send_lock);
		bool gone = z->gen != gen || z->pid == 0;
		pthread_mutex_unlock(&z->send_lock);
		if (gone)
			return true;
		if (st_now_ms() >= deadline || pool_stopping(pool))
			return false;
		poll(NULL, 0, 10);
	}
}

/* Wait until a zygote of `lang` is up (a restart can take longer than pick_zygote waits), or
   `deadline`. */
static void zygote_wait_up(struct engine_pool *pool, enum engine_language lang, int64_t deadline)
{
	while (st_now_ms() < deadline) {
		for (unsigned k = 0; k < pool->nzy; k++)
			if (__atomic_load_n(&pool->zy[lang][k].up, __ATOMIC_ACQUIRE))
				return;
		if (pool_stopping(pool))
			return;
		poll(NULL, 0, 20);
	}
}

/* RLIMIT_CPU seconds for a wall-clock timeout: a backstop only (threads can burn more CPU than
   wall time, so the supervisor's timer stays the real limit). */
static uint64_t cpu_backstop_s(uint64_t timeout_ms)
{
	return timeout_ms / 1000 * 2 + 2;
}

static void wake(int fd)
{
	uint64_t one = 1;
	(void)!write(fd, &one, sizeof(one));
}

static void tail_add(struct engine_pool *pool, int sock, int pidfd, struct engine_cgroup *cg)
{
	struct tail *t = st_xcalloc(1, sizeof(*t));
	t->sock = sock;
	t->pidfd = pidfd;
	t->cg = cg;
	t->deadline_ms = st_now_ms() + KILL_GRACE_MS;
	pthread_mutex_lock(&pool->lock);
	t->next = pool->tails;
	pool->tails = t;
	pthread_mutex_unlock(&pool->lock);
	wake(pool->reap_fd);
}

/* Kill a child that will not be used and let the reaper collect it. */
static void warm_discard(struct engine_pool *pool, struct warm *w)
{
	pidfd_kill(w->pidfd);
	tail_add(pool, w->sock, w->pidfd, w->cg);
}

/*
 * Fork a child from a zygote of `lang` and bring it to READY: EXEC to the zygote, HELLO with
 * the child's pid from the kernel, its cgroup created and attached, SETUP, READY (the child
 * has applied its sandbox). On failure *msg says why (for an `internal` result).
 */
static int child_prepare(struct engine_pool *pool, enum engine_language lang, uint64_t memory_mb,
                         bool warm, enum engine_profile profile, struct warm *w, char **msg)
{
	memset(w, 0, sizeof(*w));
	w->profile = profile;
	w->sock = w->pidfd = -1;
	*msg = NULL;
	int sv[2] = {-1, -1};
	int r = 0;
	pid_t host_pid = 0;
	for (int attempts = 0;; attempts++) {
		struct zygote *z = pick_zygote(pool, lang);
		if (z == NULL) {
			*msg = st_xasprintf("no %s engine is running (it is restarting); retry",
			                    engine_language_name(lang));
			return -EAGAIN;
		}
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			*msg = st_xasprintf("socketpair: %s", strerror(errno));
			return -EIO;
		}
		int one = 1;
		(void)setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
		uint64_t zgen = 0;
		r = send_exec(z, sv[1], &zgen);
		/* The zygote died since we chose it: choose again (pick_zygote waits for a
		   replacement). */
		for (int retry = 0; r < 0 && retry < 3; retry++) {
			z = pick_zygote(pool, lang);
			if (z == NULL)
				break;
			r = send_exec(z, sv[1], &zgen);
		}
		w->z = z;
		w->zgen = zgen;
		close(sv[1]);
		sv[1] = -1;
		if (r < 0) {
			close(sv[0]);
			*msg = st_xasprintf("the %s engine is not available (%s); retry",
			                    engine_language_name(lang), strerror(-r));
			return -EIO;
		}
		uint32_t type = 0;
		char *data = NULL;
		r = read_hello(sv[0], st_now_ms() + SETUP_TIMEOUT_MS, &host_pid, &type, &data);
		if (r == -EPIPE && attempts < 2) {
			/* The zygote died between our choice and its fork (nothing ran yet): give
			   its replacement the work. */
			close(sv[0]);
			poll(NULL, 0, 100);
			continue;
		}
		if (r < 0 || type != ENGINE_FRAME_HELLO || host_pid <= 0) {
			if (r == 0 && type == ENGINE_FRAME_EXIT)
				*msg = st_xasprintf("the engine could not start the execution: %s",
				                    data);
			else
				*msg =
				    st_xasprintf("the %s engine died before the execution started",
				                 engine_language_name(lang));
			free(data);
			close(sv[0]);
			return -EIO;
		}
		free(data);
		break;
	}
	w->sock = sv[0];
	w->pid = host_pid;
	w->pidfd = pidfd_open_(host_pid);
	if (w->pidfd < 0) {
		*msg = st_xasprintf("pidfd_open: %s", strerror(errno));
		close(w->sock);
		return -EIO;
	}
	if (pool->cgroups) {
		pthread_mutex_lock(&pool->lock);
		uint64_t seq = ++pool->exec_seq;
		pthread_mutex_unlock(&pool->lock);
		char name[64];
		snprintf(name, sizeof(name), "x%llu", (unsigned long long)seq);
		struct st_error *cgerr = NULL;
		if (engine__cgroup_create(name, memory_mb << 20, pool->o.pids_max, &w->cg, &cgerr) <
		        0 ||
		    engine__cgroup_attach(w->cg, host_pid, &cgerr) < 0) {
			*msg = st_xstrdup(st_error_msg(cgerr));
			st_error_free(cgerr);
			warm_discard(pool, w);
			return -EIO;
		}
	}
	w->memory_mb = memory_mb;
	w->cpu_s = cpu_backstop_s(pool->o.max_timeout_ms);
	char setup[64];
	/* The third field asks a child kept warm to run its trivial execution first (the child's
	   "touch"); one prepared for a waiting request goes straight to it. The fourth is what
	   it prepares for (the pages it copies, and the touch). */
	snprintf(setup, sizeof(setup), "%llu %llu %d %d", (unsigned long long)pool->o.tmp_bytes,
	         (unsigned long long)w->cpu_s, warm ? 1 : 0, (int)profile);
	r = engine__frame_write(w->sock, ENGINE_FRAME_SETUP, setup, strlen(setup));
	uint32_t type = 0;
	char *data = NULL;
	size_t len = 0;
	if (r == 0)
		r = engine__frame_read(w->sock, st_now_ms() + SETUP_TIMEOUT_MS, &type, &data, &len);
	if (r == 0 && type == ENGINE_FRAME_READY) {
		unsigned long long prep_us = 0;
		if (data != NULL && sscanf(data, "ready %llu", &prep_us) == 1)
			w->prep_cpu_ms = (int64_t)(prep_us / 1000);
		free(data);
		return 0;
	}
	if (r == 0 && type == ENGINE_FRAME_RESULT) {
		/* The child could not apply its sandbox and says why. */
		json_error_t jerr;
		json_t *o = json_loadb(data, len, 0, &jerr);
		const char *m =
		    json_string_value(json_object_get(json_object_get(o, "error"), "message"));
		*msg = st_xstrdup(m ? m : "the execution sandbox could not be set up");
		json_decref(o);
	} else {
		*msg = st_xasprintf("the %s engine died before the execution started",
		                    engine_language_name(lang));
	}
	free(data);
	warm_discard(pool, w);
	return -EIO;
}

/* Take a warm child of `lang` prepared for `profile` if one is ready and alive; for a
   PANDAS execution a PLAIN child is the next best (it still skips the preparation). */
static bool warm_take(struct engine_pool *pool, enum engine_language lang,
                      enum engine_profile profile, struct warm *out)
{
	for (;;) {
		pthread_mutex_lock(&pool->lock);
		int pr = (int)profile;
		while (pr > 0 && pool->warm[lang][pr] == NULL)
			pr--;
		struct warm *w = pool->warm[lang][pr];
		if (w != NULL) {
			pool->warm[lang][pr] = w->next;
			pool->n_warm[lang][pr]--;
		}
		pthread_mutex_unlock(&pool->lock);
		if (w == NULL)
			return false;
		wake(pool->warm_fd);
		/* A READY child sends nothing until GO: anything readable means it (or its
		   zygote) died while it waited. A zygote known to be dead takes its children
		   with it, readable yet or not. */
		struct pollfd p = {.fd = w->sock, .events = POLLIN};
		if (poll(&p, 1, 0) != 0 || !zygote_current(w->z, w->zgen)) {
			warm_discard(pool, w);
			free(w);
			continue;
		}
		*out = *w;
		free(w);
		return true;
	}
}

/* Keeps warm_target[lang][profile] children READY, refilling after each claim. */
static void *warmer_main(void *arg)
{
	struct engine_pool *pool = arg;
	for (;;) {
		int want = -1, want_profile = 0;
		pthread_mutex_lock(&pool->lock);
		bool stop = pool->warm_stop || pool->shutting_down;
		for (int p = 0; p < ENGINE_PROFILE__COUNT && want < 0; p++)
			for (int l = 0; l < ENGINE_LANG__COUNT && want < 0; l++)
				if (pool->o.languages[l] &&
				    pool->n_warm[l][p] < pool->warm_target[l][p]) {
					want = l;
					want_profile = p;
				}
		pthread_mutex_unlock(&pool->lock);
		if (stop)
			break;
		if (want < 0) {
			struct pollfd p = {.fd = pool->warm_fd, .events = POLLIN};
			if (poll(&p, 1, -1) > 0) {
				uint64_t v;
				(void)!read(pool->warm_fd, &v, sizeof(v));
			}
			continue;
		}
		struct warm w;
		char *msg = NULL;
		if (child_prepare(pool, (enum engine_language)want, pool->o.default_memory_mb, true,
		                  (enum engine_profile)want_profile, &w, &msg) < 0) {
			/* A restarting zygote or a failing sandbox: executions report it; retry
			   later rather than spin. */
			free(msg);
			struct pollfd p = {.fd = pool->warm_fd, .events = POLLIN};
			(void)poll(&p, 1, 250);
			continue;
		}
		struct warm *h = st_xmalloc(sizeof(*h));
		*h = w;
		pthread_mutex_lock(&pool->lock);
		if (pool->warm_stop || pool->shutting_down) {
			pthread_mutex_unlock(&pool->lock);
			warm_discard(pool, h);
			free(h);
			break;
		}
		h->next = pool->warm[want][want_profile];
		pool->warm[want][want_profile] = h;
		pool->n_warm[want][want_profile]++;
		pthread_mutex_unlock(&pool->lock);
	}
	return NULL;
}

/*
 * The 80% rule is about running executions: the engine cgroup also holds the warm children
 * (not running anything) and children that answered and are still tearing down (gone within
 * moments). Called with pool->lock held, only when the cheap total is over the line: it
 * subtracts the warm children and waits up to 2 s for the exiting ones.
 */
static uint64_t running_memory_usage(struct engine_pool *pool)
{
	int64_t deadline = st_now_ms() + 2000;
	for (;;) {
		uint64_t used = engine_memory_usage(pool);
		uint64_t warm = 0;
		for (int l = 0; l < ENGINE_LANG__COUNT; l++)
			for (int p = 0; p < ENGINE_PROFILE__COUNT; p++)
				for (struct warm *w = pool->warm[l][p]; w; w = w->next)
					warm += w->cg ? engine__cgroup_memory(w->cg) : 0;
		used = used > warm ? used - warm : 0;
		if (used * 10 <= pool->o.memory_budget_bytes * 8 || pool->tails == NULL ||
		    st_now_ms() >= deadline)
			return used;
		pool_wait_20ms(pool);
	}
}

static void tail_finish(struct tail *t)
{
	engine__cgroup_destroy(t->cg);
	close(t->sock);
	close(t->pidfd);
	free(t);
}

/* Waits for the EXIT of children that already answered, kills those that do not leave, and
   removes their cgroups; off the latency path of every execution. */
static void *reaper_main(void *arg)
{
	struct engine_pool *pool = arg;
	for (;;) {
		struct pollfd p[1 + TAILS_POLL_MAX];
		struct tail *who[1 + TAILS_POLL_MAX];
		size_t n = 0;
		p[n].fd = pool->reap_fd;
		p[n].events = POLLIN;
		who[n++] = NULL;
		int64_t now = st_now_ms();
		int timeout = -1;
		pthread_mutex_lock(&pool->lock);
		bool stop = pool->reap_stop && pool->tails == NULL;
		for (struct tail *t = pool->tails; t && n < ST_ARRAY_SIZE(p); t = t->next) {
			p[n].fd = t->sock;
			p[n].events = POLLIN;
			who[n++] = t;
			int left = (int)(t->deadline_ms - now);
			if (left < 0)
				left = 0;
			if (timeout < 0 || left < timeout)
				timeout = left;
		}
		pthread_mutex_unlock(&pool->lock);
		if (stop)
			break;
		int r = poll(p, n, timeout);
		if (r < 0 && errno != EINTR)
			poll(NULL, 0, 10);
		if (p[0].revents) {
			uint64_t v;
			(void)!read(pool->reap_fd, &v, sizeof(v));
		}
		now = st_now_ms();
		for (size_t i = 1; i < n; i++) {
			struct tail *t = who[i];
			bool done = false;
			if (p[i].revents) {
				/* Frames left after RESULT: only the zygote's EXIT, or EOF. */
				uint32_t type = 0;
				char *data = NULL;
				size_t len = 0;
				int fr = engine__frame_read(t->sock, now + 100, &type, &data, &len);
				free(data);
				done = fr < 0 || type == ENGINE_FRAME_EXIT;
			} else if (now >= t->deadline_ms) {
				if (!t->killed) {
					/* It answered but does not leave. */
					pidfd_kill(t->pidfd);
					t->killed = true;
					t->deadline_ms = now + KILL_GRACE_MS;
				} else {
					done = true; /* destroying the cgroup kills what is left */
				}
			}
			if (!done)
				continue;
			pthread_mutex_lock(&pool->lock);
			for (struct tail **pp = &pool->tails; *pp; pp = &(*pp)->next)
				if (*pp == t) {
					*pp = t->next;
					break;
				}
			pthread_mutex_unlock(&pool->lock);
			tail_finish(t);
			/* Its memory is uncharged now: admission may be waiting for that. */
			pthread_mutex_lock(&pool->lock);
			pthread_cond_broadcast(&pool->cond);
			pthread_mutex_unlock(&pool->lock);
		}
	}
	return NULL;
}

/* Stop refilling, discard the warm children, wait until every exiting child is collected. */
static void warm_and_tails_stop(struct engine_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->warm_stop = true;
	pthread_mutex_unlock(&pool->lock);
	if (pool->warmer_started) {
		wake(pool->warm_fd);
		pthread_join(pool->warmer, NULL);
		pool->warmer_started = false;
	}
	for (int i = 0; i < ENGINE_LANG__COUNT * ENGINE_PROFILE__COUNT; i++) {
		int l = i / ENGINE_PROFILE__COUNT, p = i % ENGINE_PROFILE__COUNT;
		pthread_mutex_lock(&pool->lock);
		struct warm *w = pool->warm[l][p];
		pool->warm[l][p] = NULL;
		pool->n_warm[l][p] = 0;
		pthread_mutex_unlock(&pool->lock);
		while (w != NULL) {
			struct warm *next = w->next;
			warm_discard(pool, w);
			free(w);
			w = next;
		}
	}
	pthread_mutex_lock(&pool->lock);
	pool->reap_stop = true;
	pthread_mutex_unlock(&pool->lock);
	if (pool->reaper_started) {
		wake(pool->reap_fd);
		pthread_join(pool->reaper, NULL);
		pool->reaper_started = false;
	}
	/* Without a reaper (start-up failure) collect them here. */
	pthread_mutex_lock(&pool->lock);
	struct tail *t = pool->tails;
	pool->tails = NULL;
	pthread_mutex_unlock(&pool->lock);
	while (t != NULL) {
		struct tail *next = t->next;
		tail_finish(t);
		t = next;
	}
}

static void take_child_result(struct engine_result *res, const char *text, size_t len, bool *have,
                              int64_t *cpu_ms)
{
	json_error_t jerr;
	json_t *o = json_loadb(text, len, 0, &jerr);
	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		return;
	}
	*have = true;
	json_t *cm = json_object_get(o, "cpuMs");
	if (json_is_integer(cm))
		*cpu_ms = (int64_t)json_integer_value(cm);
	res->status = status_parse(json_string_value(json_object_get(o, "status")));
	json_t *r = json_object_get(o, "result");
	json_decref(res->result);
	res->result = json_incref(r ? r : json_null());
	const char *so = json_string_value(json_object_get(o, "stdout"));
	const char *se = json_string_value(json_object_get(o, "stderr"));
	if (so) {
		free(res->stdout_text);
		res->stdout_len = json_string_length(json_object_get(o, "stdout"));
		res->stdout_text = st_xmalloc(res->stdout_len + 1);
		memcpy(res->stdout_text, so, res->stdout_len + 1);
	}
	if (se) {
		free(res->stderr_text);
		res->stderr_len = json_string_length(json_object_get(o, "stderr"));
		res->stderr_text = st_xmalloc(res->stderr_len + 1);
		memcpy(res->stderr_text, se, res->stderr_len + 1);
	}
	json_t *e = json_object_get(o, "error");
	if (json_is_object(e)) {
		res->has_error = true;
		const char *nm = json_string_value(json_object_get(e, "name"));
		const char *msg = json_string_value(json_object_get(e, "message"));
		const char *stk = json_string_value(json_object_get(e, "stack"));
		res->error.name = st_xstrdup(nm ? nm : "Error");
		res->error.message = st_xstrdup(msg ? msg : "");
		res->error.stack = st_xstrdup(stk ? stk : "");
		res->error.line = (int)json_integer_value(json_object_get(e, "line"));
	}
	json_t *nr = json_object_get(o, "syscallNr");
	if (json_is_integer(nr)) {
		char *name =
		    seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, (int)json_integer_value(nr));
		res->violation_syscall =
		    name ? st_xstrdup(name)
		         : st_xasprintf("%lld", (long long)json_integer_value(nr));
		free(name);
		res->status = ENGINE_SANDBOX_VIOLATION;
		result_set_error(res, ENGINE_SANDBOX_VIOLATION, "SandboxViolation",
		                 "the sandbox refused the system call '%s'",
		                 res->violation_syscall);
	}
	json_decref(o);
}

static int validate(struct engine_pool *pool, const struct engine_request *req, json_t **params,
                    struct st_error **err)
{
	struct engine_pool_options *o = &pool->o;
	if ((unsigned)req->language >= ENGINE_LANG__COUNT)
		return st_error_make(err, EINVAL,
		                     "'language' must be \"javascript\" or \"python\"");
	if (!o->languages[req->language])
		return st_error_make(err, ENOTSUP, "'language': %s is not enabled on this server",
		                     engine_language_name(req->language)) == -ENOTSUP
		           ? -ENOTSUP
		           : -ENOTSUP;
	if (req->code == NULL)
		return st_error_make(err, EINVAL, "'code' is required");
	size_t len = req->code_len ? req->code_len : strlen(req->code);
	if (len > o->max_code_bytes)
		return st_error_make(err, E2BIG, "'code' is %zu bytes, over the limit of %zu", len,
		                     o->max_code_bytes);
	if (memchr(req->code, '\0', len) != NULL)
		return st_error_make(err, EINVAL, "'code' contains a NUL byte");
	if (req->timeout_ms > o->max_timeout_ms)
		return st_error_make(err, EINVAL, "'timeoutMs' %llu is over the maximum of %llu",
		                     (unsigned long long)req->timeout_ms,
		                     (unsigned long long)o->max_timeout_ms);
	if (req->memory_mb > o->max_memory_mb)
		return st_error_make(err, EINVAL, "'memoryMb' %llu is over the maximum of %llu",
		                     (unsigned long long)req->memory_mb,
		                     (unsigned long long)o->max_memory_mb);
	if (req->memory_mb != 0 && req->memory_mb < 16)
		return st_error_make(err, EINVAL, "'memoryMb' must be at least 16");
	if (req->params_name != NULL) {
		const char *c = req->params_name;
		if (!*c || (*c >= '0' && *c <= '9'))
			return st_error_make(err, EINVAL, "invalid parameter name '%s'",
			                     req->params_name);
		for (; *c; c++)
			if (!(*c == '_' || (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
			      (*c >= 'A' && *c <= 'Z')))
				return st_error_make(err, EINVAL, "invalid parameter name '%s'",
				                     req->params_name);
	}
	if (req->params != NULL) {
		*params = json_deep_copy(req->params);
	} else if (req->params_json != NULL) {
		size_t pl = strlen(req->params_json);
		if (pl > o->max_params_bytes)
			return st_error_make(err, E2BIG,
			                     "'params' is %zu bytes, over the limit of %zu", pl,
			                     o->max_params_bytes);
		json_error_t jerr;
		*params = json_loads(req->params_json, JSON_DECODE_ANY, &jerr);
		if (*params == NULL)
			return st_error_make(err, EINVAL,
			                     "'params' is not valid JSON: %s (line %d)", jerr.text,
			                     jerr.line);
	} else {
		*params = json_null();
	}
	return 0;
}

/* Does the request's code contain `word`? */
static bool code_mentions(const struct engine_request *req, const char *word)
{
	size_t len = req->code_len ? req->code_len : strlen(req->code);
	return memmem(req->code, len, word, strlen(word)) != NULL;
}

int engine_execute(struct engine_pool *pool, const struct engine_request *req,
                   struct engine_result *res, struct st_error **err)
{
	memset(res, 0, sizeof(*res));
	json_t *params = NULL;
	int r = validate(pool, req, &params, err);
	if (r < 0)
		return r;
	struct engine_pool_options *o = &pool->o;
	uint64_t timeout_ms = req->timeout_ms ? req->timeout_ms : o->default_timeout_ms;
	uint64_t memory_mb = req->memory_mb ? req->memory_mb : o->default_memory_mb;
	size_t max_out = req->max_output_bytes ? req->max_output_bytes : o->max_output_bytes;
	size_t max_res = req->max_result_bytes ? req->max_result_bytes : o->max_result_bytes;

	/* Admission. */
	pthread_mutex_lock(&pool->lock);
	if (pool->shutting_down) {
		pthread_mutex_unlock(&pool->lock);
		json_decref(params);
		return st_error_make(err, ESHUTDOWN, "the engine pool is shutting down");
	}
	uint64_t used = engine_memory_usage(pool);
	if (used * 10 > o->memory_budget_bytes * 8)
		used = running_memory_usage(pool);
	if (used * 10 > o->memory_budget_bytes * 8) {
		pthread_mutex_unlock(&pool->lock);
		json_decref(params);
		return st_error_make(err, EBUSY,
		                     "executions use more than 80%% of their memory budget");
	}
	if (pool->in_flight >= o->max_concurrency) {
		if (pool->queued >= o->queue_size) {
			pthread_mutex_unlock(&pool->lock);
			json_decref(params);
			return st_error_make(
			    err, EAGAIN, "the execution queue is full (%u waiting)", pool->queued);
		}
		pool->queued++;
		while (pool->in_flight >= o->max_concurrency && !pool->shutting_down)
			pthread_cond_wait(&pool->cond, &pool->lock);
		pool->queued--;
		if (pool->shutting_down) {
			pthread_cond_broadcast(&pool->cond);
			pthread_mutex_unlock(&pool->lock);
			json_decref(params);
			return st_error_make(err, ESHUTDOWN, "the engine pool is shutting down");
		}
	}
	pool->in_flight++;
	pool->executions_total++;
	struct running run = {.pidfd = -1};
	run.next = pool->running;
	pool->running = &run;
	pthread_mutex_unlock(&pool->lock);

	res->sandboxed = o->mode == ENGINE_MODE_JAILED;
	res->result = json_null();
	int64_t t_start = st_now_ms();
	int sv[2] = {-1, -1};
	struct engine_cgroup *cg = NULL;
	bool have_result = false, have_exit = false, timed_out = false;
	int wstatus = 0;
	int64_t cpu_ms = 0, rss_kb = 0, t_go = 0, t_first_go = 0, t_end = 0;
	char *go_text = NULL;
	bool rerun = false; /* the first child's zygote died under it: this is the second run */
	int drain_end = 0; /* why reading the child stopped: -EPIPE for end of stream */

	/* Python code that mentions pandas goes to a child prepared for it (a hint only: any
	   child runs any code), unless it asks for less memory than warm children have: such a
	   child starts with several MiB of its limit used (6.9 against 2.7 MiB measured). */
	enum engine_profile profile = ENGINE_PROFILE_PLAIN;
	if (req->language == ENGINE_LANG_PYTHON &&
	    pool->warm_target[ENGINE_LANG_PYTHON][ENGINE_PROFILE_PANDAS] > 0 &&
	    memory_mb >= o->default_memory_mb && code_mentions(req, "pandas"))
		profile = ENGINE_PROFILE_PANDAS;

	struct warm w;
again:
	if (!warm_take(pool, req->language, profile, &w)) {
		char *msg = NULL;
		if (child_prepare(pool, req->language, memory_mb, false, profile, &w, &msg) < 0) {
			result_set_error(res, ENGINE_INTERNAL, "InternalError", "%s", msg);
			free(msg);
			goto done;
		}
	}
	sv[0] = w.sock;
	cg = w.cg;
	pthread_mutex_lock(&pool->lock);
	run.pidfd = w.pidfd;
	/* Shutdown's kill pass may have run while no child was recorded (a second run). */
	bool killed_already = run.killed_by_shutdown;
	pthread_mutex_unlock(&pool->lock);
	if (killed_already)
		pidfd_kill(w.pidfd);
	if (cg != NULL && w.memory_mb != memory_mb) {
		struct st_error *cgerr = NULL;
		if (engine__cgroup_set_memory(cg, memory_mb << 20, &cgerr) < 0) {
			result_set_error(res, ENGINE_INTERNAL, "InternalError", "%s",
			                 st_error_msg(cgerr));
			st_error_free(cgerr);
			pidfd_kill(run.pidfd);
			goto drain;
		}
	}
	{
		/* The child set RLIMIT_CPU for the pool's longest timeout; lower it for this one
		   (a backstop only: the wall-clock deadline below is the limit). */
		uint64_t cpu_s = cpu_backstop_s(timeout_ms);
		if (cpu_s < w.cpu_s) {
			struct rlimit rl = {(rlim_t)cpu_s, (rlim_t)cpu_s + 1};
			(void)prlimit(w.pid, RLIMIT_CPU, &rl, NULL);
		}
	}

	{
		json_t *g = json_object();
		json_object_set_new(g, "code",
		                    req->code_len ? json_stringn(req->code, req->code_len)
		                                  : json_string(req->code));
		if (json_object_get(g, "code") == NULL) {
			json_decref(g);
			pidfd_kill(run.pidfd);
			result_set_error(res, ENGINE_ERROR, "SyntaxError",
			                 "the code is not valid UTF-8");
			goto drain;
		}
		json_object_set(g, "params", params);
		json_object_set_new(g, "paramsName",
		                    json_string(req->params_name ? req->params_name : "params"));
		json_object_set_new(g, "timeoutMs", json_integer((json_int_t)timeout_ms));
		json_object_set_new(g, "maxOutputBytes", json_integer((json_int_t)max_out));
		json_object_set_new(g, "maxResultBytes", json_integer((json_int_t)max_res));
		go_text = json_dumps(g, JSON_COMPACT);
		json_decref(g);
	}
	t_go = st_now_ms();
	if (t_first_go == 0)
		t_first_go = t_go;
	if (go_text == NULL ||
	    engine__frame_write(sv[0], ENGINE_FRAME_GO, go_text, strlen(go_text)) < 0) {
		pidfd_kill(run.pidfd);
		if (go_text == NULL)
			result_set_error(res, ENGINE_INTERNAL, "InternalError",
			                 "cannot encode the request");
		goto drain;
	}

drain:
	/* Read RESULT (any time) and EXIT (after the child is reaped) until EOF or deadline. The
	   answer does not wait for the child's exit after its RESULT: tearing down its copy of
	   the zygote's address space is the reaper's business (reaper_main). */
	drain_end = 0;
	{
		int64_t deadline = (t_first_go ? t_first_go : st_now_ms()) + (int64_t)timeout_ms;
		for (;;) {
			char *fdata = NULL;
			size_t flen = 0;
			uint32_t ftype = 0;
			int fr = engine__frame_read(sv[0], deadline, &ftype, &fdata, &flen);
			if (fr == -ETIMEDOUT && !timed_out && !have_result) {
				timed_out = true;
				t_end = st_now_ms();
				pidfd_kill(run.pidfd);
				deadline = st_now_ms() + KILL_GRACE_MS;
				continue;
			}
			if (fr == -ETIMEDOUT && have_result && !timed_out) {
				/* Result in, exit not yet: the child hangs after finishing. */
				timed_out = true;
				pidfd_kill(run.pidfd);
				deadline = st_now_ms() + KILL_GRACE_MS;
				continue;
			}
			if (fr < 0) {
				drain_end = fr;
				break;
			}
			if (ftype == ENGINE_FRAME_RESULT && !have_result) {
				t_end = st_now_ms();
				take_child_result(res, fdata, flen, &have_result, &cpu_ms);
			} else if (ftype == ENGINE_FRAME_EXIT) {
				long long c = 0;
				long rs = 0;
				if (sscanf(fdata, "%d %lld %ld", &wstatus, &c, &rs) >= 1)
					have_exit = true;
				cpu_ms = c;
				rss_kb = rs;
			}
			free(fdata);
			if (have_exit || have_result)
				break;
		}
	}
	if (t_end == 0)
		t_end = st_now_ms();

	{
		struct engine_cgroup_stats cst = {0};
		if (cg != NULL)
			engine__cgroup_stats(cg, &cst);
		if (cst.max_rss_kb > 0)
			rss_kb = cst.max_rss_kb;
		res->stats.wall_ms = t_first_go ? t_end - t_first_go : t_end - t_start;
		/* The child's CPU time counts from its READY: what it spent getting ready (copying
		   pages, a warm child's own trivial execution) was not the execution's. */
		res->stats.cpu_ms = cpu_ms > w.prep_cpu_ms ? cpu_ms - w.prep_cpu_ms : 0;
		res->stats.max_rss_kb = rss_kb;

		bool shutdown_kill = __atomic_load_n(&run.killed_by_shutdown, __ATOMIC_ACQUIRE);
		/* The stream ended with neither a result nor the zygote's EXIT: the zygote died,
		   and the child with it (the zygote reports every child's end) — confirmed by the
		   zygote's reaping, not assumed. In a jail the code has no effect outside its own
		   process (no network, a private /tmp), so it is run once more on a new child
		   within the same deadline: the zygote may have died before the child even read
		   the request (a dying zygote closes its sockets before the kernel kills its
		   children, so a warm child of it can still look alive). Unsandboxed, the code
		   could have touched the host's /tmp: no second run. */
		bool stream_ended = drain_end == -EPIPE || drain_end == -ECONNRESET;
		bool zygote_died = stream_ended && !have_result && !have_exit && !timed_out &&
		                   !shutdown_kill && !cst.oom && !res->has_error;
		int64_t end_by = (t_first_go ? t_first_go : t_start) + (int64_t)timeout_ms;
		if (zygote_died && !rerun && o->mode == ENGINE_MODE_JAILED &&
		    !pool_stopping(pool)) {
			pidfd_kill(run.pidfd);
			int64_t grace = st_now_ms() + ZYGOTE_REAP_GRACE_MS;
			bool reaped =
			    zygote_wait_reaped(pool, w.z, w.zgen, grace < end_by ? grace : end_by);
			if (reaped)
				zygote_wait_up(pool, req->language, end_by);
			if (reaped && st_now_ms() < end_by && !pool_stopping(pool)) {
				st_log(ST_LOG_WARN,
				       "the %s engine process died under an execution; running it "
				       "again on a new one",
				       engine_language_name(req->language));
				pthread_mutex_lock(&pool->lock);
				int old_pidfd = run.pidfd;
				run.pidfd = -1;
				pthread_mutex_unlock(&pool->lock);
				if (old_pidfd >= 0)
					close(old_pidfd);
				engine__cgroup_destroy(cg);
				cg = NULL;
				close(sv[0]);
				sv[0] = -1;
				free(go_text);
				go_text = NULL;
				have_result = have_exit = timed_out = false;
				wstatus = 0;
				cpu_ms = rss_kb = t_end = 0;
				drain_end = 0;
				rerun = true;
				goto again;
			}
		}
		if (res->has_error && res->status == ENGINE_INTERNAL && !have_result) {
			/* already explained (setup failure) */
		} else if (have_result && res->status == ENGINE_ERROR && res->error.name &&
		           ((strcmp(res->error.name, "MemoryError") == 0 &&
		             (cst.oom || cst.hit_limit)) ||
		            (strcmp(res->error.name, "RangeError") == 0 && res->error.message &&
		             strcmp(res->error.message, "Out of memory") == 0))) {
			/* The runtime caught the failed allocation itself: CPython's MemoryError at
			   the cgroup's limit, or JavaScriptCore's "Out of memory" (its heap or its
			   reserved address space is exhausted, which is a memory limit too). */
			result_set_error(
			    res, ENGINE_MEMORY_LIMIT, "MemoryLimit",
			    "the execution used more than its memory limit of %llu MiB",
			    (unsigned long long)memory_mb);
		} else if (have_result && res->status == ENGINE_OK) {
			/* finished */
		} else if (have_result && res->status != ENGINE_ERROR) {
			/* the child's own verdict (output_limit, sandbox_violation...) */
		} else if (cst.oom) {
			result_set_error(
			    res, ENGINE_MEMORY_LIMIT, "MemoryLimit",
			    "the execution used more than its memory limit of %llu MiB",
			    (unsigned long long)memory_mb);
		} else if (have_result) {
			/* error status from the code */
		} else if (shutdown_kill) {
			result_set_error(
			    res, ENGINE_KILLED, "Killed",
			    "the execution was killed because the service is shutting down");
		} else if (timed_out) {
			result_set_error(res, ENGINE_TIMEOUT, "Timeout",
			                 "the execution did not finish within %llu ms%s",
			                 (unsigned long long)timeout_ms,
			                 rerun ? " (its engine process died under it and it was "
			                         "started again)"
			                       : "");
		} else if (have_exit && WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGSYS) {
			result_set_error(res, ENGINE_SANDBOX_VIOLATION, "SandboxViolation",
			                 "the sandbox refused a system call");
		} else if (have_exit && WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGXCPU) {
			result_set_error(res, ENGINE_TIMEOUT, "Timeout",
			                 "the execution used up its CPU time");
		} else if (have_exit && WIFSIGNALED(wstatus)) {
			result_set_error(res, ENGINE_KILLED, "Killed",
			                 "the execution was killed by signal %d (%s)",
			                 WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)));
		} else if (have_exit) {
			result_set_error(res, ENGINE_INTERNAL, "InternalError",
			                 "the execution ended without a result (exit status %d)",
			                 WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
		} else if (!stream_ended && drain_end < 0) {
			/* Not a death: the child's socket carried something that is not a frame
			   (code can write on its own end). It is stopped. */
			pidfd_kill(run.pidfd);
			result_set_error(
			    res, ENGINE_INTERNAL, "InternalError",
			    "the execution broke its channel to the service (%s); it was "
			    "stopped",
			    strerror(-drain_end));
		} else {
			result_set_error(res, ENGINE_INTERNAL, "InternalError",
			                 "the %s engine process died during the execution",
			                 engine_language_name(req->language));
		}
	}

done:
	if (res->stdout_text == NULL)
		res->stdout_text = st_xstrdup("");
	if (res->stderr_text == NULL)
		res->stderr_text = st_xstrdup("");
	if (res->status == ENGINE_OUTPUT_LIMIT) {
		res->stdout_truncated = res->stdout_len >= max_out;
		res->stderr_truncated = res->stderr_len >= max_out;
	}
	if (res->result == NULL)
		res->result = json_null();
	if (res->status != ENGINE_OK && res->status != ENGINE_ERROR && !json_is_null(res->result)) {
		json_decref(res->result);
		res->result = json_null();
	}
	free(go_text);
	json_decref(params);
	pthread_mutex_lock(&pool->lock);
	for (struct running **pp = &pool->running; *pp; pp = &(*pp)->next)
		if (*pp == &run) {
			*pp = run.next;
			break;
		}
	int pidfd = run.pidfd;
	run.pidfd = -1;
	pthread_mutex_unlock(&pool->lock);
	if (have_result && !have_exit && sv[0] >= 0 && pidfd >= 0) {
		/* Answered: the child has nothing left to do (a child exits right after its
		   RESULT), and code that wrote a RESULT of its own on its socket must not run on
		   after its answer, outside the concurrency limit: it is killed now. The reaper
		   waits for its EXIT and removes its cgroup. */
		pidfd_kill(pidfd);
		tail_add(pool, sv[0], pidfd, cg);
	} else {
		/* Gone already, or (no cgroup to kill it with) still there after a broken
		   channel or a forged EXIT. */
		if (pidfd >= 0)
			pidfd_kill(pidfd);
		engine__cgroup_destroy(cg);
		if (sv[0] >= 0)
			close(sv[0]);
		if (pidfd >= 0)
			close(pidfd);
	}
	pthread_mutex_lock(&pool->lock);
	pool->in_flight--;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

json_t *engine_result_to_json(const struct engine_result *r)
{
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string(engine_status_name(r->status)));
	json_object_set(o, "result", r->result ? r->result : json_null());
	json_object_set_new(
	    o, "stdout",
	    json_stringn(r->stdout_text ? r->stdout_text : "", r->stdout_text ? r->stdout_len : 0));
	json_object_set_new(
	    o, "stderr",
	    json_stringn(r->stderr_text ? r->stderr_text : "", r->stderr_text ? r->stderr_len : 0));
	if (r->has_error) {
		json_t *e = json_object();
		json_object_set_new(e, "name",
		                    json_string(r->error.name ? r->error.name : "Error"));
		json_object_set_new(e, "message",
		                    json_string(r->error.message ? r->error.message : ""));
		json_object_set_new(e, "stack", json_string(r->error.stack ? r->error.stack : ""));
		json_object_set_new(e, "line",
		                    r->error.line > 0 ? json_integer(r->error.line) : json_null());
		json_object_set_new(o, "error", e);
	} else {
		json_object_set_new(o, "error", json_null());
	}
	json_t *st = json_object();
	json_object_set_new(st, "wallMs", json_integer(r->stats.wall_ms));
	json_object_set_new(st, "cpuMs", json_integer(r->stats.cpu_ms));
	json_object_set_new(st, "maxRssKb", json_integer(r->stats.max_rss_kb));
	json_object_set_new(o, "stats", st);
	json_object_set_new(o, "sandboxed", json_boolean(r->sandboxed));
	if (r->stdout_truncated)
		json_object_set_new(o, "stdoutTruncated", json_true());
	if (r->stderr_truncated)
		json_object_set_new(o, "stderrTruncated", json_true());
	if (r->violation_syscall) {
		json_t *v = json_object();
		json_object_set_new(v, "syscall", json_string(r->violation_syscall));
		json_object_set_new(o, "violation", v);
	}
	return o;
}

/* ---- stats ---------------------------------------------------------------------------------- */

static int64_t pid_rss_kb(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	char *data = NULL;
	size_t len = 0;
	if (st_read_file(path, 1 << 16, &data, &len, NULL) < 0)
		return 0;
	int64_t kb = 0;
	char *p = strstr(data, "VmRSS:");
	if (p)
		kb = strtoll(p + 6, NULL, 10);
	free(data);
	return kb;
}

void engine_pool_stats(struct engine_pool *pool, struct engine_pool_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&pool->lock);
	st->in_flight = pool->in_flight;
	st->queued = pool->queued;
	st->max_concurrency = pool->o.max_concurrency;
	st->queue_size = pool->o.queue_size;
	st->executions_total = pool->executions_total;
	st->zygote_restarts = pool->zygote_restarts;
	st->shutting_down = pool->shutting_down;
	for (int l = 0; l < ENGINE_LANG__COUNT; l++)
		for (int p = 0; p < ENGINE_PROFILE__COUNT; p++)
			st->warm[l] += pool->n_warm[l][p];
	st->warm_pandas = pool->n_warm[ENGINE_LANG_PYTHON][ENGINE_PROFILE_PANDAS];
	pthread_mutex_unlock(&pool->lock);
	st->sandboxed = pool->o.mode == ENGINE_MODE_JAILED;
	st->memory_budget_bytes = pool->o.memory_budget_bytes;
	st->memory_used_bytes = engine_memory_usage(pool);
	for (int l = 0; l < ENGINE_LANG__COUNT; l++) {
		if (!pool->o.languages[l])
			continue;
		st->zygotes_wanted[l] = pool->nzy;
		for (unsigned i = 0; i < pool->nzy; i++) {
			struct zygote *z = &pool->zy[l][i];
			pthread_mutex_lock(&z->send_lock);
			if (z->up) {
				st->zygotes_alive[l]++;
				st->zygote_rss_kb[l] += pid_rss_kb(z->pid);
			}
			pthread_mutex_unlock(&z->send_lock);
		}
	}
}

json_t *engine_pool_stats_to_json(struct engine_pool *pool)
{
	struct engine_pool_stats st;
	engine_pool_stats(pool, &st);
	json_t *o = json_object();
	json_object_set_new(o, "inFlight", json_integer(st.in_flight));
	json_object_set_new(o, "queued", json_integer(st.queued));
	json_object_set_new(o, "maxConcurrency", json_integer(st.max_concurrency));
	json_object_set_new(o, "queueSize", json_integer(st.queue_size));
	json_object_set_new(o, "memoryUsedBytes", json_integer((json_int_t)st.memory_used_bytes));
	json_object_set_new(o, "memoryBudgetBytes",
	                    json_integer((json_int_t)st.memory_budget_bytes));
	json_object_set_new(o, "executionsTotal", json_integer((json_int_t)st.executions_total));
	json_object_set_new(o, "zygoteRestarts", json_integer((json_int_t)st.zygote_restarts));
	json_object_set_new(o, "sandboxed", json_boolean(st.sandboxed));
	json_t *e = json_object();
	for (int l = 0; l < ENGINE_LANG__COUNT; l++) {
		if (st.zygotes_wanted[l] == 0)
			continue;
		json_t *x = json_object();
		json_object_set_new(x, "alive", json_integer(st.zygotes_alive[l]));
		json_object_set_new(x, "wanted", json_integer(st.zygotes_wanted[l]));
		json_object_set_new(x, "rssKb", json_integer(st.zygote_rss_kb[l]));
		json_object_set_new(x, "warm", json_integer(st.warm[l]));
		if (l == ENGINE_LANG_PYTHON)
			json_object_set_new(x, "warmPandas", json_integer(st.warm_pandas));
		json_object_set_new(e, engine_language_name((enum engine_language)l), x);
	}
	json_object_set_new(o, "engines", e);
	return o;
}

bool engine_pool_is_ready(struct engine_pool *pool)
{
	struct engine_pool_stats st;
	engine_pool_stats(pool, &st);
	for (int l = 0; l < ENGINE_LANG__COUNT; l++)
		if (st.zygotes_wanted[l] > 0 && st.zygotes_alive[l] == 0)
			return false;
	return !st.shutting_down;
}

const char *const *engine_pool_warnings(struct engine_pool *pool, size_t *n)
{
	if (n)
		*n = pool->n_warnings;
	pool->warnings[pool->n_warnings] = NULL;
	return (const char *const *)pool->warnings;
}
