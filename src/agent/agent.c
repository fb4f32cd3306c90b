/*
 * agent.c - stockade-agent, the init process of an agent sandbox and the service's only way in.
 *
 * Owns: the listening unix socket (AGENT_CHAN_DIR/agent.sock, reachable from the host through a
 * bind-mounted directory), the in-sandbox egress listener (127.0.0.1:AGENT_EGRESS_PORT, spliced
 * to the host's egress proxy socket), and reaping every orphan as pid 1.
 *
 * Process model: init accepts and forks one handler per connection, so a slow file transfer or
 * a long command never blocks another request, and a crash in a handler never takes init down.
 * A handler runs one request (see agent-proto.h) and exits. Commands run as AGENT_USER_UID in
 * their own session and process group; the agent stays root so they cannot signal it, and file
 * operations also drop to AGENT_USER_UID so ownership inside the workspace is uniform.
 *
 * Invariants: every path a client names is resolved beneath the workspace directory fd, one
 * component at a time with O_NOFOLLOW, refusing "..", absolute paths and symlinks anywhere in
 * the path. Nothing re-walks a string after a check, so a concurrent rename or symlink swap by
 * a command cannot redirect an operation outside the workspace.
 *
 * Deliberately self-contained (libc and pthread only): it runs inside the sandbox.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent-proto.h"

static int g_root_fd = -1; /* the workspace; every client path resolves beneath it */
static const char *g_egress_sock = AGENT_CHAN_DIR "/" AGENT_EGRESS_SOCK_NAME;
static bool g_drop_user = true;
static long g_max_procs; /* RLIMIT_NPROC for commands; 0: inherited */
static bool g_compat; /* preload AGENT_COMPAT_PATH into commands (see statx_probe) */

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("stockade-agent: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- frames ----------------------------------------------------------------------------- */

static int read_full(int fd, void *buf, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = read(fd, (char *)buf + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return off == 0 ? 0 : -EPIPE;
		off += (size_t)r;
	}
	return 1;
}

static int write_full(int fd, const void *buf, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = write(fd, (const char *)buf + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		off += (size_t)r;
	}
	return 0;
}

/* Returns 1 with a frame, 0 on clean EOF, negative errno on error or oversize. */
static int frame_read(int fd, char *type, char *buf, uint32_t *len)
{
	unsigned char h[AGENT_HDR_LEN];
	int r = read_full(fd, h, sizeof(h));
	if (r <= 0)
		return r;
	uint32_t n = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
	if (n > AGENT_FRAME_MAX)
		return -EMSGSIZE;
	if (n > 0) {
		r = read_full(fd, buf, n);
		if (r <= 0)
			return r == 0 ? -EPIPE : r;
	}
	buf[n] = '\0';
	*type = (char)h[0];
	*len = n;
	return 1;
}

static int frame_write(int fd, char type, const void *data, size_t n)
{
	unsigned char h[AGENT_HDR_LEN] = {(unsigned char)type, (unsigned char)(n >> 24),
	                                  (unsigned char)(n >> 16), (unsigned char)(n >> 8),
	                                  (unsigned char)n};
	/* Small frames (output chunks, the exit record) go out in one write: every syscall is a
	 * trap into the sentry under gVisor, and the reader wakes once instead of twice. */
	if (n <= 4096) {
		unsigned char one[AGENT_HDR_LEN + 4096];
		memcpy(one, h, sizeof(h));
		if (n)
			memcpy(one + AGENT_HDR_LEN, data, n);
		return write_full(fd, one, AGENT_HDR_LEN + n);
	}
	int r = write_full(fd, h, sizeof(h));
	if (r == 0)
		r = write_full(fd, data, n);
	return r;
}

/* A reply made of "key=value\0" pairs, built into a small fixed buffer. */
struct kvout {
	char buf[8192];
	size_t len;
};

static void kv_add(struct kvout *o, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void kv_add(struct kvout *o, const char *key, const char *fmt, ...)
{
	size_t room = sizeof(o->buf) - o->len;
	int n = snprintf(o->buf + o->len, room, "%s=", key);
	if (n < 0 || (size_t)n >= room)
		return;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(o->buf + o->len + n, room - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)(n + m) >= room)
		return;
	o->len += (size_t)(n + m) + 1; /* keep the NUL */
}

static int reply_err(int fd, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reply_err(int fd, int errnum, const char *fmt, ...)
{
	struct kvout o = {.len = 0};
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kv_add(&o, "errno", "%d", errnum);
	if (errnum)
		kv_add(&o, "msg", "%s: %s", msg, strerror(errnum));
	else
		kv_add(&o, "msg", "%s", msg);
	frame_write(fd, AGENT_F_ERR, o.buf, o.len);
	return -1;
}

/* Request fields: a view over the NUL-separated payload. */
struct req {
	char *data;
	uint32_t len;
};

static const char *req_get(const struct req *q, const char *key)
{
	size_t kl = strlen(key);
	for (uint32_t off = 0; off < q->len;) {
		const char *s = q->data + off;
		size_t sl = strnlen(s, q->len - off);
		if (sl > kl && strncmp(s, key, kl) == 0 && s[kl] == '=')
			return s + kl + 1;
		off += (uint32_t)sl + 1;
	}
	return NULL;
}

static long req_num(const struct req *q, const char *key, long dflt)
{
	const char *v = req_get(q, key);
	if (!v || !*v)
		return dflt;
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || *end)
		return dflt;
	return n;
}

/* ---- confined path resolution -------------------------------------------------------------- */

/*
 * Open a directory by name beneath parent without ever following a symlink. gVisor (at least
 * release 20221219) follows a final symlink for O_DIRECTORY|O_NOFOLLOW, so the check is done
 * by hand: take an O_PATH handle on the name itself, verify it is a directory, then reopen
 * that very inode through it - no second lookup by name, so no window for a swap.
 */
static int open_dir_nofollow(int parent, const char *name)
{
	int pfd = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0)
		return -1;
	struct stat st;
	if (fstat(pfd, &st) < 0) {
		int e = errno;
		close(pfd);
		errno = e;
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		close(pfd);
		errno = S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
		return -1;
	}
	int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int e = errno;
	close(pfd);
	errno = e;
	return fd;
}

/*
 * Resolve `path` (relative to the workspace) to an open directory fd for its parent and the
 * final component's name. Every intermediate component is opened with O_NOFOLLOW|O_DIRECTORY
 * from the previous fd, so symlinks, "..", and swaps racing with us are all refused rather than
 * followed. An empty path (or ".") names the workspace itself: *name is set to "".
 * With `create_dirs`, missing intermediate directories are created (mode 0755).
 */
static int resolve(const char *path, bool create_dirs, int *parent_fd, char *name, size_t name_size,
                   const char **why)
{
	*why = NULL;
	if (!path) {
		*why = "missing path";
		return -EINVAL;
	}
	if (path[0] == '/') {
		*why = "absolute paths are not allowed; paths are relative to the workspace";
		return -EINVAL;
	}
	if (strlen(path) >= PATH_MAX) {
		*why = "path too long";
		return -ENAMETOOLONG;
	}
	char copy[PATH_MAX];
	snprintf(copy, sizeof(copy), "%s", path);
	/* Collect components, refusing ".." outright (never resolved, even if it stays inside). */
	char *comps[PATH_MAX / 2];
	size_t ncomp = 0;
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0) {
			*why = "'..' is not allowed in paths";
			return -EINVAL;
		}
		if (strlen(c) > NAME_MAX) {
			*why = "path component too long";
			return -ENAMETOOLONG;
		}
		comps[ncomp++] = c;
	}
	int cur = dup(g_root_fd);
	if (cur < 0)
		return -errno;
	if (ncomp == 0) {
		*parent_fd = cur;
		name[0] = '\0';
		return 0;
	}
	for (size_t i = 0; i + 1 < ncomp; i++) {
		int next = open_dir_nofollow(cur, comps[i]);
		if (next < 0 && errno == ENOENT && create_dirs) {
			if (mkdirat(cur, comps[i], 0755) < 0 && errno != EEXIST) {
				int e = errno;
				close(cur);
				*why = "cannot create directory";
				return -e;
			}
			next = open_dir_nofollow(cur, comps[i]);
		}
		if (next < 0) {
			int e = errno;
			close(cur);
			if (e == ELOOP || e == ENOTDIR) {
				*why = "a path component is a symlink or not a directory";
				return -EXDEV;
			}
			*why = "cannot open a path component";
			return -e;
		}
		close(cur);
		cur = next;
	}
	snprintf(name, name_size, "%s", comps[ncomp - 1]);
	*parent_fd = cur;
	return 0;
}

/* Open the final component (no symlink follow) of a resolved path. */
static int open_final(int parent, const char *name, int flags)
{
	if (!name[0])
		return dup(parent);
	if (flags & O_DIRECTORY)
		return open_dir_nofollow(parent, name);
	return openat(parent, name, flags | O_NOFOLLOW | O_CLOEXEC);
}

static int resolve_or_reply(int cfd, const char *path, bool create_dirs, int *parent, char *name,
                            size_t name_size)
{
	const char *why;
	int r = resolve(path, create_dirs, parent, name, name_size, &why);
	if (r < 0) {
		if (r == -EXDEV)
			reply_err(cfd, 0, "path '%s' escapes the workspace: %s", path ? path : "",
			          why);
		else
			reply_err(cfd, -r, "invalid path '%s': %s", path ? path : "",
			          why ? why : "error");
	}
	return r;
}

static const char *type_name(mode_t m)
{
	if (S_ISREG(m))
		return "file";
	if (S_ISDIR(m))
		return "dir";
	if (S_ISLNK(m))
		return "symlink";
	return "other";
}

static void drop_to_user(void)
{
	if (!g_drop_user)
		return;
	gid_t g = AGENT_USER_GID;
	/* Best effort: under a runtime that maps only root (a user-namespace jail) these fail with
	 * EINVAL and the handler stays the sandbox's only user, which is equally confined. */
	if (setgroups(1, &g) == 0 && setresgid(g, g, g) == 0 &&
	    setresuid(AGENT_USER_UID, AGENT_USER_UID, AGENT_USER_UID) < 0)
		_exit(126); /* half-dropped: never continue with a mixed identity */
}

/* ---- exec -------------------------------------------------------------------------------- */

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/*
 * Build the command's environment: defaults, then the request's env=K=V entries override.
 * UTF-8 comes from LC_CTYPE=C.UTF-8 rather than LANG=C.UTF-8: every other category of
 * C.UTF-8 is plain C anyway, but LANG would make each program's setlocale() open a dozen
 * locale files (twice as many lookups, since the C.UTF-8 spelling misses first), most of the
 * syscalls of a small command and each one a trap into gVisor's sentry. A request that sets
 * LANG or LC_ALL itself gets no default LC_CTYPE, which would otherwise take precedence.
 */
static char **build_env(const struct req *q)
{
	static const char *defaults[] = {
	    "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
	    "HOME=" AGENT_WORKSPACE,
	    "LC_CTYPE=C.UTF-8",
	    "USER=user",
	    "TERM=dumb",
	    "HTTP_PROXY=http://127.0.0.1:3128",
	    "HTTPS_PROXY=http://127.0.0.1:3128",
	    "http_proxy=http://127.0.0.1:3128",
	    "https_proxy=http://127.0.0.1:3128",
	    "NO_PROXY=localhost,127.0.0.1",
	    "no_proxy=localhost,127.0.0.1",
	};
	size_t n = sizeof(defaults) / sizeof(defaults[0]);
	size_t cap = n + 2; /* the terminating NULL and a spare for LD_PRELOAD */
	for (uint32_t off = 0; off < q->len;) {
		const char *s = q->data + off;
		if (strncmp(s, "env=", 4) == 0)
			cap++;
		off += (uint32_t)strnlen(s, q->len - off) + 1;
	}
	char **env = calloc(cap, sizeof(char *));
	if (!env)
		return NULL;
	size_t k = 0;
	char *dflt_ctype = NULL;
	for (size_t i = 0; i < n; i++) {
		env[k++] = strdup(defaults[i]);
		if (!strncmp(defaults[i], "LC_CTYPE=", 9))
			dflt_ctype = env[k - 1];
	}
	for (uint32_t off = 0; off < q->len;) {
		char *s = q->data + off;
		off += (uint32_t)strnlen(s, q->len - off) + 1;
		if (strncmp(s, "env=", 4) != 0)
			continue;
		char *kv = s + 4;
		char *eq = strchr(kv, '=');
		if (!eq || eq == kv)
			continue;
		size_t kl = (size_t)(eq - kv) + 1;
		size_t j;
		for (j = 0; j < k; j++)
			if (strncmp(env[j], kv, kl) == 0)
				break;
		env[j] = kv;
		if (j == k)
			k++;
	}
	env[k] = NULL;
	/* stockade-compat.so goes first in LD_PRELOAD, before whatever the request preloads (the
	 * spare slot allocated above is for a new entry). */
	if (g_compat) {
		size_t j = 0;
		while (j < k && strncmp(env[j], "LD_PRELOAD=", 11) != 0)
			j++;
		char *pre = NULL;
		if (j == k || env[j][11] == '\0')
			pre = strdup("LD_PRELOAD=" AGENT_COMPAT_PATH);
		else if (asprintf(&pre, "LD_PRELOAD=%s:%s", AGENT_COMPAT_PATH, env[j] + 11) < 0)
			pre = NULL;
		if (!pre) {
			free(env);
			return NULL;
		}
		env[j] = pre;
		if (j == k)
			env[++k] = NULL;
	}
	/* The request named a locale of its own: drop the default LC_CTYPE unless the request set
	 * LC_CTYPE too (then the entry no longer points at the default's copy). */
	bool own_locale = false;
	for (size_t j = 0; j < k; j++)
		if (!strncmp(env[j], "LANG=", 5) || !strncmp(env[j], "LC_ALL=", 7))
			own_locale = true;
	for (size_t j = 0; own_locale && dflt_ctype && j < k; j++)
		if (env[j] == dflt_ctype) {
			memmove(&env[j], &env[j + 1], (k - j) * sizeof(char *));
			break;
		}
	return env;
}

/*
 * Starting a command. Not fork: under gVisor on the ptrace platform a fork copies the handler's
 * address space, page by page as it is touched, into a new stub process. Not posix_spawn
 * either: glibc's child resets all 64 signal dispositions one syscall each, and every syscall
 * traps into the sentry. A CLONE_VM|CLONE_VFORK child shares the handler's memory and runs
 * on its own small stack until it execs, doing only what the command needs: a new session,
 * its three fds, its cwd, SIGPIPE back to default (the agent ignores it and an ignored
 * disposition survives exec; the handler installs no signal handler), an empty signal mask.
 */
struct spawn_args {
	int fds[3]; /* become the command's stdin, stdout and stderr */
	int cwdfd;
	const char *cmd;
	char **argv, **envp;
	int err; /* set by the child when it fails before or at exec */
};

static char g_spawn_stack[64 * 1024] __attribute__((aligned(64)));
static int g_devnull = -1;

/* The command's PATH (the request may set it), else the default of build_env(). */
static const char *spawn_path(char **envp)
{
	for (char **e = envp; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			return *e + 5;
	return "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
}

static int spawn_child(void *p)
{
	struct spawn_args *a = p;
	if (setsid() < 0)
		goto fail;
	for (int i = 0; i < 3; i++) {
		/* dup2 onto itself would leave O_CLOEXEC set: clear it instead. */
		if (a->fds[i] == i ? fcntl(i, F_SETFD, 0) < 0 : dup2(a->fds[i], i) < 0)
			goto fail;
	}
	if (fchdir(a->cwdfd) < 0)
		goto fail;
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGPIPE, &dfl, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (strchr(a->cmd, '/')) {
		execve(a->cmd, a->argv, a->envp);
		goto fail;
	}
	/* PATH search as execvp does it: skip what is missing, remember a permission error,
	 * stop at any other error. No shell fallback for ENOEXEC (posix_spawnp has none). */
	int e = ENOENT;
	size_t cl = strlen(a->cmd);
	for (const char *d = spawn_path(a->envp);;) {
		const char *end = strchrnul(d, ':');
		size_t dl = (size_t)(end - d);
		char full[PATH_MAX];
		if (dl + cl + 2 <= sizeof(full)) {
			if (dl)
				memcpy(full, d, dl);
			else
				full[dl++] = '.';
			full[dl] = '/';
			memcpy(full + dl + 1, a->cmd, cl + 1);
			execve(full, a->argv, a->envp);
			if (errno == EACCES)
				e = EACCES;
			else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE &&
			         errno != ENODEV && errno != ETIMEDOUT) {
				e = errno;
				break;
			}
		}
		if (!*end)
			break;
		d = end + 1;
	}
	errno = e;
fail:
	a->err = errno ? errno : EINVAL;
	_exit(127);
}

/* 0 with *pid set once the command runs (has exec'd), else the errno why it could not. */
static int spawn_command(struct spawn_args *a, pid_t *pid)
{
	/* Signals stay blocked while the child runs on our memory; it unblocks after exec. */
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	a->err = 0;
	pid_t p = clone(spawn_child, g_spawn_stack + sizeof(g_spawn_stack),
	                CLONE_VM | CLONE_VFORK | SIGCHLD, a);
	int e = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (p < 0)
		return e;
	/* CLONE_VFORK: we resume only once the child has exec'd or exited, so a->err is final. */
	if (a->err) {
		while (waitpid(p, NULL, 0) < 0 && errno == EINTR)
			;
		return a->err;
	}
	*pid = p;
	return 0;
}

static int op_exec(int cfd, struct req *q, char *buf)
{
	const char *cmd = req_get(q, "cmd");
	if (!cmd || !*cmd)
		return reply_err(cfd, EINVAL, "missing 'cmd'");
	long timeout_ms = req_num(q, "timeout_ms", 0);
	bool want_stdin = req_num(q, "stdin", 0) != 0;
	bool background = req_num(q, "background", 0) != 0;

	int parent;
	char name[NAME_MAX + 1];
	const char *cwd = req_get(q, "cwd");
	if (resolve_or_reply(cfd, cwd ? cwd : "", false, &parent, name, sizeof(name)) < 0)
		return -1;
	int cwdfd = open_final(parent, name, O_RDONLY | O_DIRECTORY);
	int cwd_errno = errno;
	close(parent);
	if (cwdfd < 0)
		return reply_err(cfd, cwd_errno, "cannot use cwd '%s'", cwd ? cwd : "");

	/* argv: cmd then each arg= in order. */
	size_t argc = 1;
	for (uint32_t off = 0; off < q->len;) {
		if (strncmp(q->data + off, "arg=", 4) == 0)
			argc++;
		off += (uint32_t)strnlen(q->data + off, q->len - off) + 1;
	}
	char **argv = calloc(argc + 1, sizeof(char *));
	char **envp = build_env(q);
	if (!argv || !envp)
		return reply_err(cfd, ENOMEM, "cannot allocate");
	size_t ai = 0;
	argv[ai++] = strdup(cmd);
	for (uint32_t off = 0; off < q->len;) {
		char *s = q->data + off;
		off += (uint32_t)strnlen(s, q->len - off) + 1;
		if (strncmp(s, "arg=", 4) == 0)
			argv[ai++] = s + 4;
	}

	int out[2] = {-1, -1}, err[2] = {-1, -1}, in[2] = {-1, -1};
	if (!background && (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0))
		return reply_err(cfd, errno, "pipe");
	if (want_stdin && !background && pipe2(in, O_CLOEXEC) < 0)
		return reply_err(cfd, errno, "pipe");

	/* The handler - a throwaway process of its own - switches to the sandbox user itself, so
	 * the command inherits that identity and the handler can still signal it. */
	if (g_max_procs > 0) {
		struct rlimit rl = {(rlim_t)g_max_procs, (rlim_t)g_max_procs};
		setrlimit(RLIMIT_NPROC, &rl);
	}
	drop_to_user();
	int devnull = g_devnull >= 0 ? g_devnull : open("/dev/null", O_RDWR | O_CLOEXEC);
	struct spawn_args sa = {
	    .fds = {in[0] >= 0 ? in[0] : devnull, out[1] >= 0 ? out[1] : devnull,
	            err[1] >= 0 ? err[1] : devnull},
	    .cwdfd = cwdfd,
	    .cmd = cmd,
	    .argv = argv,
	    .envp = envp,
	};
	int64_t start = now_ms();
	pid_t pid = -1;
	int sr = spawn_command(&sa, &pid);
	if (devnull >= 0 && devnull != g_devnull)
		close(devnull);
	close(cwdfd);
	if (out[1] >= 0)
		close(out[1]);
	if (err[1] >= 0)
		close(err[1]);
	if (in[0] >= 0)
		close(in[0]);
	if (sr != 0)
		return reply_err(cfd, sr, "cannot run '%s'", cmd);
	struct kvout o = {.len = 0};
	kv_add(&o, "pid", "%d", (int)pid);
	if (frame_write(cfd, AGENT_F_OK, o.buf, o.len) < 0)
		return 0;
	if (background) {
		/* Without a timeout the command is reparented to init when this handler exits; with
		 * one, the handler stays as its parent and kills its process group at the deadline. */
		if (timeout_ms <= 0)
			return 0;
		close(cfd);
		int64_t deadline = start + timeout_ms;
		for (;;) {
			if (waitpid(pid, NULL, WNOHANG) == pid)
				break;
			if (now_ms() >= deadline) {
				kill(-pid, SIGKILL);
				waitpid(pid, NULL, 0);
				break;
			}
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		return 0;
	}

	set_nonblock(out[0]);
	set_nonblock(err[0]);
	bool conn_open = true, timed_out = false, exited = false;
	int status = 0;
	int64_t deadline = timeout_ms > 0 ? start + timeout_ms : 0;
	while (out[0] >= 0 || err[0] >= 0) {
		struct pollfd p[3] = {{.fd = out[0], .events = POLLIN},
		                      {.fd = err[0], .events = POLLIN},
		                      {.fd = conn_open ? cfd : -1, .events = POLLIN}};
		int wait = 250;
		if (deadline) {
			int64_t left = deadline - now_ms();
			if (left <= 0) {
				kill(-pid, SIGKILL);
				timed_out = true;
				deadline = 0;
				left = 0;
			}
			if (left < wait)
				wait = (int)left;
		}
		int pr = poll(p, 3, wait);
		if (pr < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t r = read(p[i].fd, buf, 65536);
			if (r > 0) {
				if (frame_write(cfd, i == 0 ? AGENT_F_OUT : AGENT_F_ERRDATA, buf,
				                (size_t)r) < 0)
					conn_open = false;
			} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(p[i].fd);
				if (i == 0)
					out[0] = -1;
				else
					err[0] = -1;
			}
		}
		if (conn_open && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
			char t;
			uint32_t n;
			int r = frame_read(cfd, &t, buf, &n);
			if (r <= 0) {
				/* The client went away: nobody will read the result, stop the command. */
				conn_open = false;
				kill(-pid, SIGKILL);
			} else if (t == AGENT_F_STDIN && in[1] >= 0) {
				if (n == 0 || write_full(in[1], buf, n) < 0) {
					close(in[1]);
					in[1] = -1;
				}
			} else if (t == AGENT_F_SIGNAL) {
				struct req sq = {.data = buf, .len = n};
				long sig = req_num(&sq, "sig", 0);
				if (sig > 0 && sig < 65)
					kill(-pid, (int)sig);
			}
		}
		/* A background grandchild may keep the pipes open after the command itself exits:
		 * finish when the command is gone and nothing more is immediately readable. */
		if (!exited && pr == 0) {
			pid_t w = waitpid(pid, &status, WNOHANG);
			if (w == pid) {
				exited = true;
				for (int i = 0; i < 2; i++) {
					int fd = i == 0 ? out[0] : err[0];
					if (fd < 0)
						continue;
					ssize_t r;
					while ((r = read(fd, buf, 65536)) > 0)
						frame_write(cfd,
						            i == 0 ? AGENT_F_OUT : AGENT_F_ERRDATA,
						            buf, (size_t)r);
					close(fd);
				}
				out[0] = err[0] = -1;
			}
		}
	}
	if (in[1] >= 0)
		close(in[1]);
	if (!exited)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	o.len = 0;
	kv_add(&o, "exit", "%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	kv_add(&o, "signal", "%d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	kv_add(&o, "timedout", "%d", timed_out ? 1 : 0);
	kv_add(&o, "wall_ms", "%lld", (long long)(now_ms() - start));
	if (conn_open)
		frame_write(cfd, AGENT_F_EXIT, o.buf, o.len);
	return 0;
}

/* ---- files ------------------------------------------------------------------------------- */

static int op_read(int cfd, struct req *q, char *buf)
{
	int parent;
	char name[NAME_MAX + 1];
	const char *path = req_get(q, "path");
	if (resolve_or_reply(cfd, path, false, &parent, name, sizeof(name)) < 0)
		return -1;
	int fd = open_final(parent, name, O_RDONLY | O_NONBLOCK);
	int e = errno;
	close(parent);
	if (fd < 0)
		return reply_err(cfd, e, e == ELOOP ? "'%s' is a symlink" : "cannot open '%s'",
		                 path);
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return reply_err(cfd, S_ISDIR(st.st_mode) ? EISDIR : EINVAL,
		                 "'%s' is not a regular file", path);
	}
	struct kvout o = {.len = 0};
	kv_add(&o, "size", "%lld", (long long)st.st_size);
	if (frame_write(cfd, AGENT_F_OK, o.buf, o.len) < 0)
		return -1;
	for (;;) {
		ssize_t r = read(fd, buf, 256 * 1024);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (frame_write(cfd, AGENT_F_DATA, buf, (size_t)r) < 0)
			return -1;
	}
	close(fd);
	return frame_write(cfd, AGENT_F_DATA, "", 0);
}

static int op_write(int cfd, struct req *q, char *buf)
{
	int parent;
	char name[NAME_MAX + 1];
	const char *path = req_get(q, "path");
	if (resolve_or_reply(cfd, path, req_num(q, "mkdirs", 1) != 0, &parent, name, sizeof(name)) <
	    0)
		return -1;
	if (!name[0]) {
		close(parent);
		return reply_err(cfd, EISDIR, "cannot write the workspace root");
	}
	long mode = req_num(q, "mode", 0644) & 07777;
	char tmp[64];
	snprintf(tmp, sizeof(tmp), ".stockade-upload-%d", (int)getpid());
	/* Write beside the target and rename over it: readers never see half a file, and the rename
	 * replaces a symlink at the target name instead of following it. */
	int fd =
	    openat(parent, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
	if (fd < 0) {
		int e = errno;
		close(parent);
		return reply_err(cfd, e, "cannot create '%s'", path);
	}
	long long total = 0;
	int rc = 0;
	for (;;) {
		char t;
		uint32_t n;
		int r = frame_read(cfd, &t, buf, &n);
		if (r <= 0 || t != AGENT_F_DATA) {
			rc = -1;
			break;
		}
		if (n == 0)
			break;
		if (write_full(fd, buf, n) < 0) {
			int e = errno;
			close(fd);
			unlinkat(parent, tmp, 0);
			close(parent);
			return reply_err(cfd, e, "cannot write '%s'", path);
		}
		total += n;
	}
	close(fd);
	if (rc < 0) {
		unlinkat(parent, tmp, 0);
		close(parent);
		return -1;
	}
	struct stat st;
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
		unlinkat(parent, tmp, 0);
		close(parent);
		return reply_err(cfd, EISDIR, "'%s' is a directory", path);
	}
	if (renameat(parent, tmp, parent, name) < 0) {
		int e = errno;
		unlinkat(parent, tmp, 0);
		close(parent);
		return reply_err(cfd, e, "cannot rename into '%s'", path);
	}
	close(parent);
	struct kvout o = {.len = 0};
	kv_add(&o, "size", "%lld", total);
	return frame_write(cfd, AGENT_F_OK, o.buf, o.len);
}

static int remove_tree(int dir, const char *name)
{
	int fd = open_dir_nofollow(dir, name);
	if (fd < 0)
		return unlinkat(dir, name, 0) < 0 ? -errno : 0;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (de->d_type == DT_DIR)
			remove_tree(dirfd(d), de->d_name);
		else
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
	return unlinkat(dir, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

static int op_delete(int cfd, struct req *q)
{
	int parent;
	char name[NAME_MAX + 1];
	const char *path = req_get(q, "path");
	if (resolve_or_reply(cfd, path, false, &parent, name, sizeof(name)) < 0)
		return -1;
	if (!name[0]) {
		close(parent);
		return reply_err(cfd, EINVAL, "cannot delete the workspace root");
	}
	struct stat st;
	int r = 0;
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	else if (S_ISDIR(st.st_mode)) {
		if (req_num(q, "recursive", 0))
			r = remove_tree(parent, name);
		else if (unlinkat(parent, name, AT_REMOVEDIR) < 0)
			r = -errno;
	} else if (unlinkat(parent, name, 0) < 0)
		r = -errno;
	close(parent);
	if (r < 0)
		return reply_err(cfd, -r, "cannot delete '%s'", path);
	return frame_write(cfd, AGENT_F_OK, "", 0);
}

static int op_mkdir(int cfd, struct req *q)
{
	int parent;
	char name[NAME_MAX + 1];
	const char *path = req_get(q, "path");
	if (resolve_or_reply(cfd, path, req_num(q, "parents", 1) != 0, &parent, name,
	                     sizeof(name)) < 0)
		return -1;
	int r = 0;
	if (name[0] && mkdirat(parent, name, 0755) < 0 && errno != EEXIST)
		r = -errno;
	struct stat st;
	if (!r && name[0] &&
	    (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)))
		r = -EEXIST;
	close(parent);
	if (r < 0)
		return reply_err(cfd, -r, "cannot create directory '%s'", path);
	return frame_write(cfd, AGENT_F_OK, "", 0);
}

static int op_stat(int cfd, struct req *q)
{
	int parent;
	char name[NAME_MAX + 1];
	const char *path = req_get(q, "path");
	if (resolve_or_reply(cfd, path, false, &parent, name, sizeof(name)) < 0)
		return -1;
	struct stat st;
	int r = name[0] ? fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) : fstat(parent, &st);
	int e = errno;
	close(parent);
	if (r < 0)
		return reply_err(cfd, e, "cannot stat '%s'", path);
	struct kvout o = {.len = 0};
	kv_add(&o, "type", "%s", type_name(st.st_mode));
	kv_add(&o, "size", "%lld", (long long)st.st_size);
	kv_add(&o, "mode", "%o", (unsigned)(st.st_mode & 07777));
	kv_add(&o, "mtime", "%lld", (long long)st.st_mtime);
	return frame_write(cfd, AGENT_F_OK, o.buf, o.len);
}

static int op_list(int cfd, struct req *q)
{
	int parent;
	char name[NAME_MAX + 1];
	const char *path = req_get(q, "path");
	if (resolve_or_reply(cfd, path ? path : "", false, &parent, name, sizeof(name)) < 0)
		return -1;
	int fd = open_final(parent, name, O_RDONLY | O_DIRECTORY);
	int e = errno;
	close(parent);
	if (fd < 0)
		return reply_err(cfd, e,
		                 e == ELOOP ? "'%s' is a symlink" : "cannot open directory '%s'",
		                 path ? path : "");
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return reply_err(cfd, errno, "cannot list '%s'", path ? path : "");
	}
	if (frame_write(cfd, AGENT_F_OK, "", 0) < 0) {
		closedir(d);
		return -1;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		char ent[NAME_MAX + 128];
		int n = snprintf(ent, sizeof(ent), "%s%c%s%c%lld%c%o%c%lld", de->d_name, 0,
		                 type_name(st.st_mode), 0, (long long)st.st_size, 0,
		                 (unsigned)(st.st_mode & 07777), 0, (long long)st.st_mtime);
		if (n > 0 && (size_t)n < sizeof(ent))
			frame_write(cfd, AGENT_F_ENT, ent, (size_t)n + 1);
	}
	closedir(d);
	return frame_write(cfd, AGENT_F_DATA, "", 0);
}

/* ---- byte splicing (preview ports and egress) ------------------------------------------------ */

static void splice_loop(int a, int b, char *buf)
{
	bool a_open = true, b_open = true;
	while (a_open || b_open) {
		struct pollfd p[2] = {{.fd = a_open ? a : -1, .events = POLLIN},
		                      {.fd = b_open ? b : -1, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int from = i == 0 ? a : b, to = i == 0 ? b : a;
			ssize_t r = read(from, buf, 65536);
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0) {
				/* Half-close: pass the EOF on and keep the other direction flowing. */
				shutdown(to, SHUT_WR);
				if (i == 0)
					a_open = false;
				else
					b_open = false;
			} else if (r < 0 || write_full(to, buf, (size_t)r) < 0) {
				return;
			}
		}
	}
}

static int op_connect(int cfd, struct req *q, char *buf)
{
	long port = req_num(q, "port", 0);
	if (port <= 0 || port > 65535)
		return reply_err(cfd, EINVAL, "invalid port");
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return reply_err(cfd, errno, "socket");
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(s);
		return reply_err(cfd, e, "nothing is listening on port %ld in the sandbox", port);
	}
	if (frame_write(cfd, AGENT_F_OK, "", 0) < 0) {
		close(s);
		return -1;
	}
	splice_loop(cfd, s, buf);
	close(s);
	return 0;
}

static void egress_forward(int client, char *buf)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g_egress_sock);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		static const char deny[] = "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
		                           "Connection: close\r\nContent-Length: 40\r\n\r\n"
		                           "egress is disabled for this sandbox    \n";
		(void)write_full(client, deny, sizeof(deny) - 1);
		if (s >= 0)
			close(s);
		return;
	}
	splice_loop(client, s, buf);
	close(s);
}

/* ---- main -------------------------------------------------------------------------------- */

/* One request on cfd; buf holds AGENT_FRAME_MAX + 1 bytes. */
static void handle(int cfd, char *buf)
{
	char t;
	uint32_t n;
	if (frame_read(cfd, &t, buf, &n) <= 0 || t != AGENT_F_REQ)
		return;
	/* Keep the request; buf is reused for streaming. */
	char *copy = malloc(n + 1);
	if (!copy)
		return;
	memcpy(copy, buf, n + 1);
	struct req q = {.data = copy, .len = n};
	const char *op = req_get(&q, "op");
	if (!op)
		reply_err(cfd, EINVAL, "missing 'op'");
	else if (!strcmp(op, "ping"))
		frame_write(cfd, AGENT_F_OK, "", 0);
	else if (!strcmp(op, "exec"))
		op_exec(cfd, &q, buf);
	else {
		drop_to_user();
		if (!strcmp(op, "read"))
			op_read(cfd, &q, buf);
		else if (!strcmp(op, "write"))
			op_write(cfd, &q, buf);
		else if (!strcmp(op, "delete"))
			op_delete(cfd, &q);
		else if (!strcmp(op, "mkdir"))
			op_mkdir(cfd, &q);
		else if (!strcmp(op, "stat"))
			op_stat(cfd, &q);
		else if (!strcmp(op, "list"))
			op_list(cfd, &q);
		else if (!strcmp(op, "connect"))
			op_connect(cfd, &q, buf);
		else
			reply_err(cfd, EINVAL, "unknown op '%s'", op);
	}
	free(copy);
}

static void on_sigchld(int sig)
{
	(void)sig;
}

static int listen_unix(const char *path)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		close(s);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 128) < 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	return s;
}

static int listen_tcp_loopback(int port)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 64) < 0) {
		close(s);
		return -1;
	}
	return s;
}

/*
 * Pre-forked handlers. Forking the agent is the most expensive step of a request under
 * gVisor (a new address space, every touched page copied into a new stub process), so init
 * keeps AGENT_SPARES handlers forked ahead of time, each blocked in accept() on the agent
 * socket with its buffers ready. A spare that takes a connection writes its slot number to
 * init's notify pipe, handles that one connection and exits, as a per-connection fork did.
 * Init forks the slot's replacement once that handler has exited, or after
 * AGENT_REFORK_DELAY_MS if it runs longer (a streamed command, a preview connection): a fork
 * racing the request it was meant to speed up would take half its CPU (the sandbox usually
 * has one); a connection waiting with no idle spare re-forks at once. When init cannot fork
 * (process limits), connections wait in the listen backlog until a spare exists.
 */
#define AGENT_SPARES 2
#define AGENT_REFORK_DELAY_MS 100
static pid_t g_spares[AGENT_SPARES]; /* pid of the idle spare in each slot, 0 when empty */
/* The handler that took the slot's connection, until it exits, and since when. */
static pid_t g_busy[AGENT_SPARES];
static int64_t g_busy_since[AGENT_SPARES];

__attribute__((noreturn)) static void spare_main(int ls, int notify_fd, int slot)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGCHLD, &dfl, NULL);
	char *buf = malloc(AGENT_FRAME_MAX + 1);
	g_devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	/* Fault in the spawn stack's top now, off the request's path. */
	memset(g_spawn_stack + sizeof(g_spawn_stack) - 16384, 0, 16384);
	int c;
	do
		c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	while (c < 0 && (errno == EINTR || errno == ECONNABORTED));
	unsigned char b = (unsigned char)slot;
	(void)!write(notify_fd, &b, 1);
	close(notify_fd);
	close(ls);
	if (c < 0) {
		/* Not a transient error: do not let init re-fork in a tight loop. */
		logmsg("accept: %s", strerror(errno));
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
		_exit(1);
	}
	if (buf)
		handle(c, buf);
	close(c);
	_exit(0);
}

static void usage(void)
{
	fputs(
	    "usage: stockade-agent [--listen SOCKET] [--workspace DIR] [--egress-sock SOCKET]\n"
	    "                      [--egress-port N] [--no-user-switch]\n"
	    "The init process of a Stockade agent sandbox; the service talks to it over SOCKET.\n",
	    stderr);
}

/*
 * Does the kernel under us (gVisor's sentry) refuse statx(2) with AT_NO_AUTOMOUNT? Some gVisor
 * releases, Debian 12's runsc among them, answer EINVAL, and coreutils passes the flag on every
 * call: `ls -l`, `stat` and `cp -a` would fail on every file. Then, when the runtime mounted
 * stockade-compat.so (agent-compat.c), commands get it preloaded, which repeats such a call
 * without the flag. It costs each command the loading of one more small library, so only
 * where the probe says it is needed: never on a kernel that accepts the flag (the host's, with
 * `runtime: jail`, or a newer gVisor).
 */
static void statx_probe(void)
{
#ifdef SYS_statx
	unsigned char buf[256]; /* struct statx, which older headers lack */
	if (syscall(SYS_statx, AT_FDCWD, "/", AT_NO_AUTOMOUNT, 0x7ffu, buf) == 0 ||
	    errno != EINVAL || syscall(SYS_statx, AT_FDCWD, "/", 0, 0x7ffu, buf) != 0)
		return; /* accepted, or refused for a reason the library would not fix */
	if (access(AGENT_COMPAT_PATH, R_OK) < 0) {
		logmsg("this kernel refuses statx with AT_NO_AUTOMOUNT and %s is missing: `ls -l` "
		       "and `stat` will fail in this sandbox",
		       AGENT_COMPAT_PATH);
		return;
	}
	g_compat = true;
#endif
}

int main(int argc, char **argv)
{
	const char *listen_path = AGENT_CHAN_DIR "/" AGENT_SOCK_NAME;
	const char *workspace = AGENT_WORKSPACE;
	int egress_port = AGENT_EGRESS_PORT;
	for (int i = 1; i < argc; i++) {
		bool has = i + 1 < argc;
		if (!strcmp(argv[i], "--listen") && has)
			listen_path = argv[++i];
		else if (!strcmp(argv[i], "--workspace") && has)
			workspace = argv[++i];
		else if (!strcmp(argv[i], "--egress-sock") && has)
			g_egress_sock = argv[++i];
		else if (!strcmp(argv[i], "--egress-port") && has)
			egress_port = (int)strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--max-procs") && has)
			g_max_procs = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--no-user-switch"))
			g_drop_user = false;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage();
			return 0;
		} else {
			usage();
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_sigchld};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL); /* no SA_RESTART: wakes poll so init reaps promptly */

	statx_probe();
	g_root_fd = open(workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g_root_fd < 0) {
		logmsg("cannot open workspace '%s': %s", workspace, strerror(errno));
		return 1;
	}
	int ls = listen_unix(listen_path);
	if (ls < 0) {
		logmsg("cannot listen on '%s': %s", listen_path, strerror(errno));
		return 1;
	}
	int es = egress_port > 0 ? listen_tcp_loopback(egress_port) : -1;
	if (egress_port > 0 && es < 0)
		logmsg("cannot listen on 127.0.0.1:%d (egress): %s", egress_port, strerror(errno));

	int notify[2];
	if (pipe2(notify, O_CLOEXEC | O_NONBLOCK) < 0) {
		logmsg("pipe: %s", strerror(errno));
		return 1;
	}
	bool backlog = false;
	for (;;) {
		int wait_ms = 1000;
		bool fork_failed = false;
		int64_t now = now_ms();
		for (int i = 0; i < AGENT_SPARES; i++) {
			if (g_spares[i] > 0)
				continue;
			if (g_busy[i] > 0 && !backlog &&
			    now - g_busy_since[i] < AGENT_REFORK_DELAY_MS) {
				int left = (int)(AGENT_REFORK_DELAY_MS - (now - g_busy_since[i]));
				if (left < wait_ms)
					wait_ms = left;
				continue;
			}
			pid_t pid = fork();
			if (pid == 0) {
				close(notify[0]);
				if (es >= 0)
					close(es);
				spare_main(ls, notify[1], i);
			}
			if (pid < 0) {
				wait_ms = 50; /* retry soon: requests wait in the backlog */
				fork_failed = true;
			} else {
				g_spares[i] = pid;
				g_busy[i] = 0;
			}
		}
		/* With no idle spare, a connection waiting in the backlog re-forks at once rather
		 * than after the delay (a burst of more concurrent requests than spares). Not
		 * after a failed fork: that retries on the timer, not in a tight loop. */
		bool watch_backlog = !fork_failed;
		for (int i = 0; i < AGENT_SPARES; i++)
			if (g_spares[i] > 0)
				watch_backlog = false;
		struct pollfd p[3] = {{.fd = notify[0], .events = POLLIN},
		                      {.fd = es, .events = POLLIN},
		                      {.fd = watch_backlog ? ls : -1, .events = POLLIN}};
		int pr = poll(p, 3, wait_ms);
		backlog = pr > 0 && (p[2].revents & POLLIN);
		/* A spare announces its connection before it can exit, so draining the pipe first
		 * means a reaped pid still in g_spares is one that died without a connection. */
		unsigned char slots[64];
		ssize_t k;
		while ((k = read(notify[0], slots, sizeof(slots))) > 0)
			for (ssize_t j = 0; j < k; j++) {
				int i = slots[j];
				if (i >= AGENT_SPARES || g_spares[i] <= 0)
					continue;
				g_busy[i] = g_spares[i];
				g_busy_since[i] = now_ms();
				g_spares[i] = 0;
			}
		pid_t dead;
		while ((dead = waitpid(-1, NULL, WNOHANG)) > 0)
			for (int i = 0; i < AGENT_SPARES; i++) {
				if (g_spares[i] == dead)
					g_spares[i] = 0;
				if (g_busy[i] == dead)
					g_busy[i] = 0; /* done: the slot is re-forked at once */
			}
		if (pr <= 0 || es < 0 || !(p[1].revents & POLLIN))
			continue;
		int c = accept4(es, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		pid_t pid = fork();
		if (pid == 0) {
			close(ls);
			close(es);
			close(notify[0]);
			close(notify[1]);
			struct sigaction dfl = {.sa_handler = SIG_DFL};
			sigemptyset(&dfl.sa_mask);
			sigaction(SIGCHLD, &dfl, NULL);
			char *buf = malloc(65536);
			if (buf)
				egress_forward(c, buf);
			free(buf);
			close(c);
			_exit(0);
		}
		close(c);
	}
}
