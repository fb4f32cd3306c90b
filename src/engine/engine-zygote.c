/*
 * engine-zygote.c - the zygote process and the execution child it forks.
 *
 * A zygote is this very binary re-executed by the pool (engine.c) with ENGINE_ZYGOTE_ENV set;
 * a constructor notices the variable and never returns to main(). That keeps the zygote free
 * of the supervisor's heap (API tokens, keys) and threads: it is a fresh image.
 *
 * Lifecycle of a zygote:
 *   STARTING  jailed mode: it is pid 1 of fresh user/pid/mount/net/ipc/uts namespaces; it builds
 *             a read-only root (tmpfs with read-only binds of /usr and a few /etc files, /dev
 *             nodes, a fresh /proc, the JS modules dir) and pivots into it
 *             (before that it loads the language runtimes' shared object, engine-lang.c)
 *   INIT      initialises the language runtime and imports the configured modules
 *   READY     sends READY on the control socket, then loops: EXEC -> clone a child
 *   EXIT      on control-socket EOF (the supervisor went away or shut us down): kills its
 *             children and exits; as pid 1 of its namespace the kernel kills whatever is left
 *
 * An execution child (clone of the zygote, one per execution):
 *   1. takes its own pid, mount and ipc namespaces (jailed mode), so it cannot see or signal
 *      another execution, and is pid 1 there (its forks die with it)
 *   2. sends HELLO on the execution socket; the supervisor learns its host pid from the kernel
 *      (SCM_CREDENTIALS), creates and attaches its cgroup, then sends SETUP
 *   3. mounts a fresh tmpfs on /tmp and a fresh /proc, setsid, rlimits, drops every privilege,
 *      loads the seccomp policy, sends READY
 *   4. waits for GO with the request (a warm child waits here until a request comes: see
 *      engine.c), parses it under the seccomp policy, runs the code, sends RESULT (with its
 *      own CPU time) and leaves with _exit (no atexit handlers, no LSan scan)
 * The zygote reaps it and sends EXIT with the wait status, CPU time and peak RSS.
 */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <linux/securebits.h>

#include "engine/engine-internal.h"

/* ---- frames -------------------------------------------------------------------------------- */

/* All of buf to the socket fd; a peer that is gone is -EPIPE, never SIGPIPE (the library runs
   inside processes that do not ignore it: `stockade run`, tests). */
static int send_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int engine__frame_write(int fd, uint32_t type, const void *data, size_t len)
{
	if (len > ENGINE_FRAME_MAX)
		return -E2BIG;
	uint32_t hdr[2] = {type, (uint32_t)len};
	int r = send_all(fd, hdr, sizeof(hdr));
	if (r == 0 && len > 0)
		r = send_all(fd, data, len);
	return r;
}

static int read_full_deadline(int fd, void *buf, size_t n, int64_t deadline_ms)
{
	size_t got = 0;
	while (got < n) {
		if (deadline_ms > 0) {
			int64_t left = deadline_ms - st_now_ms();
			if (left <= 0)
				return -ETIMEDOUT;
			struct pollfd p = {.fd = fd, .events = POLLIN};
			int r = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return -errno;
			if (r == 0)
				return -ETIMEDOUT;
		}
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EPIPE;
		got += (size_t)r;
	}
	return 0;
}

int engine__frame_read(int fd, int64_t deadline_ms, uint32_t *type, char **data, size_t *len)
{
	uint32_t hdr[2];
	int r = read_full_deadline(fd, hdr, sizeof(hdr), deadline_ms);
	if (r < 0)
		return r;
	if (hdr[1] > ENGINE_FRAME_MAX)
		return -EPROTO;
	char *buf = malloc((size_t)hdr[1] + 1);
	if (buf == NULL)
		return -ENOMEM;
	r = read_full_deadline(fd, buf, hdr[1], deadline_ms);
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[hdr[1]] = '\0';
	*type = hdr[0];
	*data = buf;
	*len = hdr[1];
	return 0;
}

/* ---- the child: capture and finish ---------------------------------------------------------- */

struct engine_capture engine__capture;

/* The RESULT payload (malloc'd), or NULL. Takes the reference to result. */
static char *result_text(enum engine_status status, json_t *result, const char *ename,
                         const char *emsg, const char *estack, int eline)
{
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string(engine_status_name(status)));
	json_object_set_new(o, "result", result ? result : json_null());
	json_object_set_new(o, "stdout",
	                    json_stringn(engine__capture.out.data ? engine__capture.out.data : "",
	                                 engine__capture.out.len));
	json_object_set_new(o, "stderr",
	                    json_stringn(engine__capture.err.data ? engine__capture.err.data : "",
	                                 engine__capture.err.len));
	/* The child's own CPU time: the supervisor answers before the zygote has reaped us. */
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		json_object_set_new(o, "cpuMs",
		                    json_integer((json_int_t)ru.ru_utime.tv_sec * 1000 +
		                                 ru.ru_utime.tv_usec / 1000 +
		                                 (json_int_t)ru.ru_stime.tv_sec * 1000 +
		                                 ru.ru_stime.tv_usec / 1000));
	if (ename != NULL || emsg != NULL) {
		json_t *e = json_object();
		json_object_set_new(e, "name", json_string(ename ? ename : "Error"));
		json_object_set_new(e, "message", json_string(emsg ? emsg : ""));
		json_object_set_new(e, "stack", json_string(estack ? estack : ""));
		json_object_set_new(e, "line", json_integer(eline));
		json_object_set_new(o, "error", e);
	}
	char *text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (text == NULL) {
		/* Invalid UTF-8 in the output: report it rather than losing the whole result. */
		json_object_set_new(o, "stdout", json_string("[output was not valid UTF-8]"));
		json_object_set_new(o, "stderr", json_string(""));
		text = json_dumps(o, JSON_COMPACT);
	}
	json_decref(o);
	return text;
}

static void child_send_result(enum engine_status status, json_t *result, const char *ename,
                              const char *emsg, const char *estack, int eline)
{
	char *text = result_text(status, result, ename, emsg, estack, eline);
	if (text != NULL)
		(void)engine__frame_write(ENGINE_CHILD_FD, ENGINE_FRAME_RESULT, text, strlen(text));
	free(text);
}

/* The JSON half of the request path (GO parsed, RESULT encoded) on a sample, nothing sent:
   part of a warm child's touch (see child_main). */
static void child_touch_json(void)
{
	static const char go[] = "{\"code\":\"return 1+1\",\"params\":{\"a\":[1,\"x\"]},"
	                         "\"paramsName\":\"params\",\"timeoutMs\":1000,"
	                         "\"maxOutputBytes\":1024,\"maxResultBytes\":1024}";
	json_error_t jerr;
	json_t *req = json_loadb(go, sizeof(go) - 1, 0, &jerr);
	if (req != NULL) {
		free(json_dumps(json_object_get(req, "params"), JSON_COMPACT | JSON_ENCODE_ANY));
		json_decref(req);
	}
	json_t *v = json_loads("{\"r\":2}", JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	free(result_text(ENGINE_OK, v, NULL, NULL, NULL, 0));
}

struct zygote_state {
	enum engine_language lang;
	bool jailed;
	int ctl_fd;
	int sig_fd;
	const char *js_modules;
	const struct engine_lang_ops *ops; /* the runtimes (libstockade-lang.so) */
	struct {
		pid_t pid;
		int fd;
	} kids[256];
	size_t n_kids;
};

static struct zygote_state Z;

/* In a calibration child (see zygote_calibrate): where it reports the pages it wrote. */
static int probe_fd = -1;
static void probe_report(void);

void engine__child_finish(enum engine_status status, json_t *result, const char *ename,
                          const char *emsg, const char *estack, int eline)
{
	if (probe_fd >= 0) {
		probe_report();
		_exit(0);
	}
	child_send_result(status, result, ename, emsg, estack, eline);
	_exit(0);
}

/* ---- the pages an execution writes (prefaulting) ------------------------------------------ */

/*
 * Every page a child writes is a copy-on-write fault, and on a paravirtualised host a fault
 * is expensive (measured: ~20 us each, against ~5 us per page for MADV_POPULATE_WRITE, which
 * breaks copy-on-write for a whole range in one call). A trivial JavaScript execution writes
 * ~700 of the zygote's pages. So the zygote learns once, at start, which of its pages a typical
 * execution writes ("calibration": it forks probe children that run representative code and
 * report the pages that became their own), and every child copies those pages with
 * MADV_POPULATE_WRITE while it waits for its request (a warm child, engine.c), before its
 * code runs. The content is the zygote's, unchanged: only the copy is made ahead of time.
 *
 * A probe finds its own pages with PAGEMAP_SCAN (present anonymous pages; Linux >= 6.7) and
 * /proc/self/pagemap's "exclusively mapped" bit: after the fork a page the child did not write
 * is still shared with the zygote. Without PAGEMAP_SCAN there is no calibration and children
 * fault as before.
 */
#define PAGEMAP_SCAN_ _IOWR('f', 16, struct pm_scan_arg_)
#define PAGE_IS_FILE_ (1u << 2)
#define PAGE_IS_PRESENT_ (1u << 3)
#define PM_EXCLUSIVE_BIT 56
#define PROBE_MAX_PAGES 16384u /* 64 MiB: more is not a "typical execution" */

struct pm_page_region_ {
	uint64_t start, end, categories;
};
struct pm_scan_arg_ {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted,
	    category_mask, category_anyof_mask, return_mask;
};

struct hot_range {
	uintptr_t start;
	size_t len;
	int kind; /* 0: copy (MADV_POPULATE_WRITE), 1: map (MADV_POPULATE_READ) */
};
struct zmap {
	uintptr_t start, end;
	int kind; /* 0: private writable, 1: file-backed readable */
};
static void *st_xrealloc_(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (q == NULL)
		abort();
	return q;
}

/* What a child of each profile copies (a PANDAS child copies both sets). */
struct hot_set {
	struct hot_range *r;
	size_t n, pages;
};
static struct hot_set hot_sets[ENGINE_PROFILE__COUNT];

/* Report runs of pages: kind 0, anonymous pages that became the probe's own (it wrote
   them); kind 1, file pages it mapped (code and data it read: a fork copies no page-table
   entries of file mappings, so each first touch is a fault too). */
static size_t probe_scan(int pm, int kind, size_t reported)
{
	static struct pm_page_region_ vec[1024];
	static uint64_t ent[4096];
	uint64_t start = 0, end = 0x7ffffffff000ull;
	while (start < end && reported < PROBE_MAX_PAGES) {
		struct pm_scan_arg_ a = {.size = sizeof(a),
		                         .start = start,
		                         .end = end,
		                         .vec = (uint64_t)(uintptr_t)vec,
		                         .vec_len = ST_ARRAY_SIZE(vec),
		                         .category_inverted = kind == 0 ? PAGE_IS_FILE_ : 0,
		                         .category_mask = PAGE_IS_PRESENT_ | PAGE_IS_FILE_,
		                         .return_mask = PAGE_IS_PRESENT_};
		long n = ioctl(pm, PAGEMAP_SCAN_, &a);
		if (n < 0)
			break;
		for (long i = 0; i < n && reported < PROBE_MAX_PAGES; i++) {
			if (kind == 1) {
				uint64_t r[3] = {vec[i].start, vec[i].end - vec[i].start, 1};
				if (st_write_all(probe_fd, r, sizeof(r)) < 0)
					return PROBE_MAX_PAGES;
				reported += (size_t)(r[1] / 4096);
				continue;
			}
			for (uint64_t at = vec[i].start; at < vec[i].end;) {
				size_t pages = (size_t)((vec[i].end - at) / 4096);
				if (pages > ST_ARRAY_SIZE(ent))
					pages = ST_ARRAY_SIZE(ent);
				ssize_t got = pread(pm, ent, pages * 8, (off_t)(at / 4096 * 8));
				if (got <= 0)
					break;
				pages = (size_t)got / 8;
				/* Coalesce runs of exclusive pages into ranges. */
				for (size_t k = 0; k < pages; k++) {
					if (!((ent[k] >> PM_EXCLUSIVE_BIT) & 1))
						continue;
					size_t e = k;
					while (e + 1 < pages &&
					       ((ent[e + 1] >> PM_EXCLUSIVE_BIT) & 1))
						e++;
					uint64_t r[3] = {at + k * 4096, (e - k + 1) * 4096, 0};
					if (st_write_all(probe_fd, r, sizeof(r)) < 0)
						return PROBE_MAX_PAGES;
					reported += e - k + 1;
					k = e;
				}
				at += pages * 4096;
			}
		}
		if (a.walk_end <= start || (size_t)n < ST_ARRAY_SIZE(vec))
			break;
		start = a.walk_end;
	}
	return reported;
}

static void probe_report(void)
{
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0)
		return;
	(void)probe_scan(pm, 0, 0);
	(void)probe_scan(pm, 1, 0);
	close(pm);
}

/* Keep the parts of a reported range that lie in the zygote's own mappings of that kind (a
   probe's new mappings do not exist in the next child). */
static void hot_add_clipped(struct hot_set *hs, uintptr_t start, size_t len, int kind,
                            const struct zmap *maps, size_t nmaps)
{
	uintptr_t end = start + len;
	for (size_t i = 0; i < nmaps && hs->pages < 2 * PROBE_MAX_PAGES; i++) {
		if (maps[i].kind != kind)
			continue;
		uintptr_t s = start > maps[i].start ? start : maps[i].start;
		uintptr_t e = end < maps[i].end ? end : maps[i].end;
		if (s >= e)
			continue;
		hs->r = st_xrealloc_(hs->r, (hs->n + 1) * sizeof(*hs->r));
		hs->r[hs->n].start = s;
		hs->r[hs->n].len = e - s;
		hs->r[hs->n].kind = kind;
		hs->n++;
		hs->pages += (e - s) / 4096;
	}
}

static int cmp_hot(const void *a, const void *b)
{
	const struct hot_range *x = a, *y = b;
	if (x->kind != y->kind)
		return x->kind - y->kind;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Run `code` in a probe child and add the pages it wrote to hot set hs. */
static void probe_one(struct hot_set *hs, const char *code, const struct zmap *maps, size_t nmaps)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return;
	pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
	if (pid == 0) {
		close(p[0]);
		probe_fd = p[1];
		int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (devnull >= 0)
			dup2(devnull, ENGINE_CHILD_FD);
		struct engine_child_request cr = {.code = code,
		                                  .params_json = "{\"k\": [1, 2]}",
		                                  .params_name = "params",
		                                  .max_output_bytes = 1u << 20,
		                                  .max_result_bytes = 1u << 20,
		                                  .timeout_ms = 10000};
		engine__capture.max = cr.max_output_bytes;
		st_buf_init(&engine__capture.out, cr.max_output_bytes);
		st_buf_init(&engine__capture.err, cr.max_output_bytes);
		alarm(10);
		if (Z.lang == ENGINE_LANG_PYTHON) {
			Z.ops->py_after_fork();
			Z.ops->py_run(&cr);
		}
		Z.ops->js_after_fork();
		Z.ops->js_run(&cr);
	}
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return;
	}
	for (;;) {
		uint64_t r[3];
		ssize_t n = st_read_all(p[0], r, sizeof(r));
		if (n != (ssize_t)sizeof(r))
			break;
		hot_add_clipped(hs, (uintptr_t)r[0], (size_t)r[1], (int)r[2], maps, nmaps);
	}
	close(p[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
	}
}

/* Sort and merge what the probes found. */
static void hot_merge(struct hot_set *hs)
{
	if (hs->n == 0)
		return;
	qsort(hs->r, hs->n, sizeof(*hs->r), cmp_hot);
	size_t out = 0;
	for (size_t i = 0; i < hs->n; i++) {
		struct hot_range *prev = out > 0 ? &hs->r[out - 1] : NULL;
		if (prev != NULL && prev->kind == hs->r[i].kind &&
		    prev->start + prev->len >= hs->r[i].start) {
			uintptr_t e = hs->r[i].start + hs->r[i].len;
			if (e > prev->start + prev->len)
				prev->len = e - prev->start;
		} else {
			hs->r[out++] = hs->r[i];
		}
	}
	hs->n = out;
	hs->pages = 0;
	for (size_t i = 0; i < hs->n; i++)
		hs->pages += hs->r[i].len / 4096;
}

static void zygote_calibrate(void)
{
	const char *env = getenv(ENGINE_PREFAULT_ENV);
	if (env != NULL && strcmp(env, "0") == 0)
		return;
	/* The zygote's private writable mappings. */
	FILE *f = fopen("/proc/self/maps", "re");
	if (f == NULL)
		return;
	struct zmap *maps = NULL;
	size_t nmaps = 0;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a = 0, b = 0, off = 0, inode = 0;
		char perms[8] = "", dev[16] = "";
		if (sscanf(line, "%llx-%llx %7s %llx %15s %llu", &a, &b, perms, &off, dev,
		           &inode) != 6)
			continue;
		int kind;
		if (strcmp(perms, "rw-p") == 0)
			kind = 0;
		else if (perms[0] == 'r' && perms[1] != 'w' && inode != 0)
			kind = 1;
		else
			continue;
		maps = st_xrealloc_(maps, (nmaps + 1) * sizeof(*maps));
		maps[nmaps].start = (uintptr_t)a;
		maps[nmaps].end = (uintptr_t)b;
		maps[nmaps].kind = kind;
		nmaps++;
	}
	fclose(f);
	static const char *const js_probes[] = {
	    "return 1+1",
	    "const a = [1, 2, 3].map(x => x * 2); await new Promise(r => setTimeout(r, 0));\n"
	    "console.log('x'); return {a, s: JSON.stringify(params)}",
	    NULL};
	static const char *const py_probes[] = {
	    "return 1+1", "x = [i * 2 for i in range(3)]\nprint('x')\nreturn {'a': x, 'p': params}",
	    NULL};
	const char *const *probes = Z.lang == ENGINE_LANG_PYTHON ? py_probes : js_probes;
	for (size_t i = 0; probes[i] != NULL; i++)
		probe_one(&hot_sets[ENGINE_PROFILE_PLAIN], probes[i], maps, nmaps);
	if (Z.lang == ENGINE_LANG_PYTHON)
		probe_one(&hot_sets[ENGINE_PROFILE_PANDAS], ENGINE_PY_PANDAS_TOUCH, maps, nmaps);
	free(maps);
	for (int p = 0; p < ENGINE_PROFILE__COUNT; p++)
		hot_merge(&hot_sets[p]);
}

/* In a child before its request: copy the pages executions of its profile write (see
   above). */
static void child_prefault(enum engine_profile profile)
{
	for (int p = 0; p <= (int)profile && p < ENGINE_PROFILE__COUNT; p++) {
		const struct hot_set *hs = &hot_sets[p];
		for (size_t i = 0; i < hs->n; i++)
			(void)madvise((void *)hs->r[i].start, hs->r[i].len,
			              hs->r[i].kind == 0 ? MADV_POPULATE_WRITE
			                                 : MADV_POPULATE_READ);
	}
}

void engine__capture_write(bool to_err, const char *s, size_t n)
{
	struct st_buf *b = to_err ? &engine__capture.err : &engine__capture.out;
	if (!st_buf_append_trunc(b, s, n)) {
		char msg[128];
		snprintf(msg, sizeof(msg), "%s passed its limit of %zu bytes",
		         to_err ? "stderr" : "stdout", engine__capture.max);
		engine__child_finish(ENGINE_OUTPUT_LIMIT, NULL, "OutputLimit", msg, NULL, 0);
	}
}

/* ---- the child: becoming a sandbox --------------------------------------------------------- */

static __attribute__((noreturn)) void child_die(const char *what, int errnum)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "cannot set up the execution sandbox: %s: %s", what,
	         errnum ? strerror(errnum) : "failed");
	child_send_result(ENGINE_INTERNAL, NULL, "InternalError", msg, NULL, 0);
	_exit(70);
}

/*
 * Every capability goes: the bounding set (so nothing can be regained by exec), the ambient
 * set, then the permitted/effective/inheritable sets; securebits are locked so that uid 0 (root
 * inside the user namespace) does not mean capabilities after an exec. no_new_privs makes the
 * seccomp filter loadable without CAP_SYS_ADMIN and stops setuid binaries.
 */
static int child_drop_privileges(bool jailed)
{
	if (!jailed && geteuid() == 0) {
		/* Unsandboxed as host root: become nobody, root-owned files must stay closed. */
		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0)
			return -errno;
	}
	if (prctl(PR_SET_SECUREBITS,
	          SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED |
	              SECBIT_NOROOT | SECBIT_NOROOT_LOCKED,
	          0, 0, 0) < 0 &&
	    jailed)
		return -errno;
	for (int c = 0; c <= CAP_LAST_CAP; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL && jailed)
			return -errno;
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	cap_t caps = cap_init();
	if (caps == NULL)
		return -ENOMEM;
	int r = cap_set_proc(caps);
	int saved = errno;
	cap_free(caps);
	if (r < 0)
		return -saved;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return -errno;
	return 0;
}

static void child_rlimits(uint64_t cpu_s)
{
	struct rlimit core = {0, 0};
	(void)setrlimit(RLIMIT_CORE, &core);
	struct rlimit fsize = {64u << 20, 64u << 20};
	(void)setrlimit(RLIMIT_FSIZE, &fsize);
	struct rlimit nofile = {256, 256};
	(void)setrlimit(RLIMIT_NOFILE, &nofile);
	/* CPU seconds as a backstop for the wall-clock kill (threads can burn more CPU than
	   wall time, so the supervisor's timer stays the real limit). */
	rlim_t cpu = cpu_s > 0 ? (rlim_t)cpu_s : 2;
	struct rlimit rcpu = {cpu, cpu + 1};
	(void)setrlimit(RLIMIT_CPU, &rcpu);
	/* No RLIMIT_AS: JavaScriptCore reserves huge virtual ranges (Gigacage); memory is
	   bounded by the execution's cgroup. */
}

static __attribute__((noreturn)) void child_main(int exec_fd)
{
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (exec_fd != ENGINE_CHILD_FD) {
		if (dup2(exec_fd, ENGINE_CHILD_FD) < 0)
			_exit(71);
	}
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0) {
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(devnull, 2);
	}
	if (syscall(SYS_close_range, ENGINE_CHILD_FD + 1, ~0U, 0) < 0) {
		for (int fd = ENGINE_CHILD_FD + 1; fd < 1024; fd++)
			close(fd);
	}
	/* fd 3 must survive nothing but it must not leak into anything the code execs. */
	(void)fcntl(ENGINE_CHILD_FD, F_SETFD, FD_CLOEXEC);

	if (engine__frame_write(ENGINE_CHILD_FD, ENGINE_FRAME_HELLO, "hello", 5) < 0)
		_exit(72);

	/*
	 * SETUP arrives once the supervisor has moved us into our cgroup: everything that does
	 * not depend on the request happens now, so that a child kept warm (engine.c) has done
	 * it before a request exists. Payload: "<tmp bytes> <cpu seconds> <touch: 0|1> <profile>"
	 * (enum engine_profile).
	 */
	uint32_t type = 0;
	char *msg = NULL;
	size_t msg_len = 0;
	if (engine__frame_read(ENGINE_CHILD_FD, 0, &type, &msg, &msg_len) < 0 ||
	    type != ENGINE_FRAME_SETUP)
		_exit(73);
	unsigned long long tmp_bytes = 0, cpu_s = 0;
	int touch = 0, profile = 0;
	if (sscanf(msg, "%llu %llu %d %d", &tmp_bytes, &cpu_s, &touch, &profile) != 4 ||
	    profile < 0 || profile >= ENGINE_PROFILE__COUNT)
		child_die("setup", EPROTO);
	free(msg);
	if (tmp_bytes == 0)
		tmp_bytes = 64u << 20;
	if (Z.jailed) {
		char opts[64];
		snprintf(opts, sizeof(opts), "size=%llu,mode=1777", tmp_bytes);
		if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
			child_die("mount tmpfs on '/tmp'", errno);
		if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
			child_die("mount '/proc'", errno);
	}
	if (chdir("/tmp") < 0)
		child_die("chdir '/tmp'", errno);
	(void)setsid();

	child_prefault((enum engine_profile)profile);
	if (Z.lang == ENGINE_LANG_PYTHON)
		Z.ops->py_after_fork();
	else
		Z.ops->js_after_fork();
	/* RLIMIT_CPU is set for the pool's longest timeout; the supervisor lowers it with
	   prlimit() for a shorter one when it hands over the request (setrlimit is refused
	   once the policy is loaded). */
	child_rlimits(cpu_s);
	int r = child_drop_privileges(Z.jailed);
	if (r < 0)
		child_die("drop privileges", -r);
	struct st_error *err = NULL;
	r = engine__seccomp_load(Z.lang, &err);
	if (r < 0)
		child_die(st_error_msg(err), 0);
	/* The first time a fresh address space touches a page costs far more than later
	   touches on a host whose page tables the hypervisor shadows (measured: the first
	   JavaScript evaluation in a child 2-10 ms, the second 0.2 ms). A child kept warm runs
	   a trivial execution of our own, under the policy, to pay that before its request
	   exists; a child made for a waiting request would only add the time. */
	if (touch && Z.lang == ENGINE_LANG_JAVASCRIPT)
		Z.ops->js_touch();
	else if (touch)
		Z.ops->py_touch(profile == ENGINE_PROFILE_PANDAS ? ENGINE_PY_PANDAS_TOUCH : NULL);
	if (touch)
		child_touch_json();
	/* READY carries the CPU time spent so far (preparing, not executing) in microseconds:
	   the supervisor reports the execution's CPU time without it. */
	char ready[64];
	struct rusage ru;
	unsigned long long prep_us = 0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		prep_us = (unsigned long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
		          (unsigned long long)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	int ready_len = snprintf(ready, sizeof(ready), "ready %llu", prep_us);
	if (engine__frame_write(ENGINE_CHILD_FD, ENGINE_FRAME_READY, ready, (size_t)ready_len) < 0)
		_exit(74);

	/* From here on the seccomp policy is in force: the request is parsed under it. */
	char *go = NULL;
	size_t go_len = 0;
	if (engine__frame_read(ENGINE_CHILD_FD, 0, &type, &go, &go_len) < 0 ||
	    type != ENGINE_FRAME_GO)
		_exit(75);
	json_error_t jerr;
	json_t *req = json_loadb(go, go_len, 0, &jerr);
	free(go);
	if (req == NULL)
		child_die("request", EPROTO);

	struct engine_child_request cr = {0};
	cr.code = json_string_value(json_object_get(req, "code"));
	cr.params_name = json_string_value(json_object_get(req, "paramsName"));
	json_t *params = json_object_get(req, "params");
	char *params_text =
	    json_dumps(params ? params : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
	cr.params_json = params_text ? params_text : "null";
	cr.max_output_bytes = (size_t)json_integer_value(json_object_get(req, "maxOutputBytes"));
	cr.max_result_bytes = (size_t)json_integer_value(json_object_get(req, "maxResultBytes"));
	cr.timeout_ms = (uint64_t)json_integer_value(json_object_get(req, "timeoutMs"));
	if (cr.code == NULL || cr.params_name == NULL)
		child_die("request", EPROTO);

	engine__capture.max = cr.max_output_bytes;
	st_buf_init(&engine__capture.out, cr.max_output_bytes);
	st_buf_init(&engine__capture.err, cr.max_output_bytes);

	if (Z.lang == ENGINE_LANG_JAVASCRIPT)
		Z.ops->js_run(&cr);
	Z.ops->py_run(&cr);
}

/* ---- the zygote ----------------------------------------------------------------------------- */

/* Is setgroups(2) denied in this user namespace (/proc/self/setgroups says "deny")? */
static bool setgroups_denied(void)
{
	char buf[16] = "";
	int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = st_read_all(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 && strncmp(buf, "deny", 4) == 0;
}

static __attribute__((noreturn)) void zygote_fail(const char *fmt, ...)
{
	struct engine_ctl_msg m = {.type = ENGINE_CTL_FAIL};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m.text, sizeof(m.text), fmt, ap);
	va_end(ap);
	m.len = (uint32_t)strlen(m.text);
	(void)send(Z.ctl_fd, &m, offsetof(struct engine_ctl_msg, text) + m.len, MSG_NOSIGNAL);
	_exit(1);
}

static int bind_ro(const char *src, const char *dst, bool is_dir)
{
	struct stat st;
	if (stat(src, &st) < 0)
		return -errno;
	if (is_dir) {
		struct st_error *e = NULL;
		if (st_mkdir_p(dst, 0755, &e) < 0) {
			st_error_free(e);
			return -EIO;
		}
	} else {
		int fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0)
			return -errno;
		close(fd);
	}
	if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
		return -errno;
	/* A remount inside a user namespace must keep the flags the kernel locked on the
	   source mount (nodev, nosuid, noexec...): read them and add ours. */
	struct statvfs sv;
	if (statvfs(dst, &sv) < 0)
		return -errno;
	unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV;
	if (sv.f_flag & ST_NOEXEC)
		flags |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME)
		flags |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME)
		flags |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME)
		flags |= MS_RELATIME;
	if (mount(NULL, dst, NULL, flags, NULL) < 0)
		return -errno;
	return 0;
}

/*
 * Build the zygote's root: a tmpfs holding read-only binds of what the runtimes need and
 * nothing else (no /home, /root, /var, no data dir, no /etc/shadow), then pivot into it.
 * The executions see this root plus their own /tmp and /proc.
 */
static void zygote_build_root(void)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		zygote_fail("cannot make the mounts private: %s", strerror(errno));
	const char *root = "/tmp";
	/* The new root is built on a tmpfs over /tmp, which hides the host's /tmp: a modules dir
	   that lives there (a checkout under /tmp) is opened first and bound through its fd. */
	int jsfd = -1;
	char jsfd_path[64] = "";
	if (Z.js_modules != NULL) {
		jsfd = open(Z.js_modules, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (jsfd < 0)
			zygote_fail("cannot open the JavaScript modules dir '%s': %s", Z.js_modules,
			            strerror(errno));
		snprintf(jsfd_path, sizeof(jsfd_path), "/proc/self/fd/%d", jsfd);
	}
	if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755") < 0)
		zygote_fail("cannot mount the root tmpfs: %s", strerror(errno));
	static const char *const dirs[] = {"/tmp/usr", "/tmp/etc", "/tmp/dev",    "/tmp/proc",
	                                   "/tmp/tmp", "/tmp/opt", "/tmp/oldroot"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(dirs); i++)
		if (mkdir(dirs[i], 0755) < 0)
			zygote_fail("cannot create '%s': %s", dirs[i], strerror(errno));
	if (chmod("/tmp/tmp", 01777) < 0)
		zygote_fail("cannot chmod '/tmp/tmp': %s", strerror(errno));
	int r = bind_ro("/usr", "/tmp/usr", true);
	if (r < 0)
		zygote_fail("cannot bind '/usr' read-only: %s", strerror(-r));
	/* Debian has merged /usr: the top-level dirs are symlinks into it. */
	static const char *const links[][2] = {{"usr/bin", "/tmp/bin"},
	                                       {"usr/lib", "/tmp/lib"},
	                                       {"usr/lib64", "/tmp/lib64"},
	                                       {"usr/sbin", "/tmp/sbin"},
	                                       {"usr/lib32", "/tmp/lib32"}};
	for (size_t i = 0; i < ST_ARRAY_SIZE(links); i++) {
		struct stat st;
		const char *host = links[i][1] + 4; /* "/bin" ... */
		if (lstat(host, &st) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			if (symlink(links[i][0], links[i][1]) < 0)
				zygote_fail("cannot create '%s': %s", links[i][1], strerror(errno));
		} else if (S_ISDIR(st.st_mode)) {
			r = bind_ro(host, links[i][1], true);
			if (r < 0)
				zygote_fail("cannot bind '%s': %s", host, strerror(-r));
		}
	}
	/* The few /etc files a runtime reads; absent ones are skipped. */
	static const char *const etc_files[] = {"/etc/ld.so.cache",   "/etc/localtime",
	                                        "/etc/nsswitch.conf", "/etc/passwd",
	                                        "/etc/group",         "/etc/mime.types"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(etc_files); i++) {
		char dst[256];
		snprintf(dst, sizeof(dst), "/tmp%s", etc_files[i]);
		(void)bind_ro(etc_files[i], dst, false);
	}
	static const char *const etc_dirs[] = {"/etc/python3.11", "/etc/python3", "/etc/ssl",
	                                       "/etc/alternatives"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(etc_dirs); i++) {
		char dst[256];
		snprintf(dst, sizeof(dst), "/tmp%s", etc_dirs[i]);
		(void)bind_ro(etc_dirs[i], dst, true);
	}
	static const char *const devs[] = {"null", "zero", "full", "random", "urandom"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(devs); i++) {
		char src[64], dst[64];
		snprintf(src, sizeof(src), "/dev/%s", devs[i]);
		snprintf(dst, sizeof(dst), "/tmp/dev/%s", devs[i]);
		int fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
		if (fd < 0)
			zygote_fail("cannot create '%s': %s", dst, strerror(errno));
		close(fd);
		if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
			zygote_fail("cannot bind '%s': %s", src, strerror(errno));
	}
	if (Z.js_modules != NULL) {
		if (st_mkdir_p("/tmp" ENGINE_JAIL_JS_MODULES, 0755, NULL) < 0)
			zygote_fail("cannot create the modules mount point");
		r = bind_ro(jsfd_path, "/tmp" ENGINE_JAIL_JS_MODULES, true);
		if (r < 0)
			zygote_fail("cannot bind the JavaScript modules dir '%s': %s", Z.js_modules,
			            strerror(-r));
		close(jsfd);
		Z.js_modules = ENGINE_JAIL_JS_MODULES;
	}
	if (mount("proc", "/tmp/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		zygote_fail("cannot mount '/proc': %s", strerror(errno));
	if (syscall(SYS_pivot_root, "/tmp", "/tmp/oldroot") < 0)
		zygote_fail("cannot pivot_root: %s", strerror(errno));
	if (chdir("/") < 0)
		zygote_fail("cannot chdir '/': %s", strerror(errno));
	if (umount2("/oldroot", MNT_DETACH) < 0)
		zygote_fail("cannot detach the old root: %s", strerror(errno));
	(void)rmdir("/oldroot");
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) <
	    0)
		zygote_fail("cannot make the root read-only: %s", strerror(errno));
	if (sethostname("stockade", 8) < 0)
		zygote_fail("cannot set the hostname: %s", strerror(errno));
}

static void zygote_reap(void)
{
	for (;;) {
		int status = 0;
		struct rusage ru;
		memset(&ru, 0, sizeof(ru));
		pid_t pid = wait4(-1, &status, WNOHANG, &ru);
		if (pid <= 0)
			return;
		for (size_t i = 0; i < Z.n_kids; i++) {
			if (Z.kids[i].pid != pid)
				continue;
			int64_t cpu_ms =
			    (int64_t)ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
			    (int64_t)ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
			char msg[128];
			int n = snprintf(msg, sizeof(msg), "%d %lld %ld", status, (long long)cpu_ms,
			                 ru.ru_maxrss);
			(void)engine__frame_write(Z.kids[i].fd, ENGINE_FRAME_EXIT, msg, (size_t)n);
			close(Z.kids[i].fd);
			Z.kids[i] = Z.kids[--Z.n_kids];
			break;
		}
	}
}

static void zygote_spawn(int exec_fd)
{
	if (Z.n_kids >= ST_ARRAY_SIZE(Z.kids)) {
		close(exec_fd);
		return;
	}
	/*
	 * A raw clone, not fork(): glibc's fork() cannot take namespace flags. The zygote is
	 * single-threaded apart from JavaScriptCore's idle helper, so no lock can be held across
	 * it; the child only runs our code until it execs nothing and exits with _exit.
	 */
	unsigned long flags = SIGCHLD;
	if (Z.jailed)
		flags |= CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC;
	pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
	if (pid < 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "-1 0 0 clone: %s", strerror(errno));
		(void)engine__frame_write(exec_fd, ENGINE_FRAME_EXIT, msg, strlen(msg));
		close(exec_fd);
		return;
	}
	if (pid == 0) {
		close(Z.ctl_fd);
		close(Z.sig_fd);
		child_main(exec_fd);
	}
	Z.kids[Z.n_kids].pid = pid;
	Z.kids[Z.n_kids].fd = exec_fd;
	Z.n_kids++;
}

static int zygote_recv_exec(void)
{
	struct engine_ctl_msg m;
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t n = recvmsg(Z.ctl_fd, &mh, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -errno;
	if (n == 0)
		return -EPIPE;
	int fd = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if (m.type == ENGINE_CTL_EXEC && fd >= 0)
		zygote_spawn(fd);
	else if (fd >= 0)
		close(fd);
	return 0;
}

static __attribute__((noreturn)) void zygote_main(const char *spec)
{
	/* spec: "<lang>:<ctl fd>:<jailed 0|1>" */
	int lang = 0, fd = -1, jailed = 0;
	if (sscanf(spec, "%d:%d:%d", &lang, &fd, &jailed) != 3 || lang < 0 ||
	    lang >= ENGINE_LANG__COUNT || fd < 0)
		_exit(2);
	Z.lang = (enum engine_language)lang;
	Z.ctl_fd = fd;
	Z.jailed = jailed != 0;
	unsetenv(ENGINE_ZYGOTE_ENV);
	/* SIGCHLD is blocked before any runtime thread exists so that every thread inherits the
	   mask and the signalfd sees every child exit. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	(void)prctl(PR_SET_NAME, lang == ENGINE_LANG_PYTHON ? "zygote-python" : "zygote-js", 0, 0,
	            0);
	/* Die with the supervisor: control EOF is the normal path, this is the backstop. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);

	static char jsdir[4096];
	const char *jd = getenv(ENGINE_JSDIR_ENV);
	if (jd != NULL && *jd) {
		st_strlcpy(jsdir, jd, sizeof(jsdir));
		Z.js_modules = jsdir;
	}
	unsetenv(ENGINE_JSDIR_ENV);
	/* The runtimes are loaded while the host's file system is still in view (the object sits
	   next to the binary, which the jailed root does not contain); their own later loads
	   (CPython modules, ICU data) come from /usr, which the root binds. */
	struct st_error *lerr = NULL;
	Z.ops = engine__lang_load(&lerr);
	unsetenv(ENGINE_LANG_LIB_ENV);
	if (Z.ops == NULL)
		zygote_fail("%s", st_error_msg(lerr));
	if (Z.jailed) {
		/* A user namespace made by a non-root service has setgroups denied (the kernel's
		   rule for unprivileged gid maps); its supplementary groups are then unmapped
		   (nogroup) inside and cannot grant anything, so that is not an error. */
		if (setgroups(0, NULL) < 0 && !(errno == EPERM && setgroups_denied()))
			zygote_fail("cannot clear supplementary groups: %s", strerror(errno));
		zygote_build_root();
	}
	if (chdir("/") < 0)
		zygote_fail("cannot chdir '/': %s", strerror(errno));

	struct st_error *err = NULL;
	int r = engine__seccomp_prepare(Z.lang, &err);
	if (r < 0)
		zygote_fail("%s", st_error_msg(err));
	if (Z.lang == ENGINE_LANG_JAVASCRIPT) {
		r = Z.ops->js_zygote_init(Z.js_modules, &err);
	} else {
		const char *mods = getenv(ENGINE_PYMODULES_ENV);
		char *copy = st_xstrdup(mods ? mods : "");
		const char *list[64];
		size_t n = 0;
		char *save = NULL;
		for (char *t = strtok_r(copy, ",", &save); t && n < 63;
		     t = strtok_r(NULL, ",", &save))
			list[n++] = t;
		list[n] = NULL;
		r = Z.ops->py_zygote_init(list, &err);
	}
	unsetenv(ENGINE_PYMODULES_ENV);
	if (r < 0)
		zygote_fail("%s", st_error_msg(err));

	/* jansson seeds its hash function on first use by reading /dev/urandom: once here, not
	   in every child while a request waits. */
	json_object_seed(0);
	engine__huge_pages(engine_language_name(Z.lang));
	unsetenv(ENGINE_HUGEPAGES_ENV);
	zygote_calibrate();
	unsetenv(ENGINE_PREFAULT_ENV);
	if (hot_sets[ENGINE_PROFILE_PLAIN].pages > 0)
		st_log(ST_LOG_DEBUG,
		       "the %s zygote prefaults %zu pages in %zu ranges per child (and %zu in %zu "
		       "ranges, partly the same, in one prepared for pandas)",
		       engine_language_name(Z.lang), hot_sets[ENGINE_PROFILE_PLAIN].pages,
		       hot_sets[ENGINE_PROFILE_PLAIN].n, hot_sets[ENGINE_PROFILE_PANDAS].pages,
		       hot_sets[ENGINE_PROFILE_PANDAS].n);

	Z.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (Z.sig_fd < 0)
		zygote_fail("signalfd: %s", strerror(errno));

	struct engine_ctl_msg ready = {.type = ENGINE_CTL_READY, .len = 0};
	if (send(Z.ctl_fd, &ready, offsetof(struct engine_ctl_msg, text), MSG_NOSIGNAL) < 0)
		_exit(1);

	for (;;) {
		struct pollfd p[2] = {{.fd = Z.ctl_fd, .events = POLLIN},
		                      {.fd = Z.sig_fd, .events = POLLIN}};
		/* The timeout is a backstop: reap even if a SIGCHLD went astray. */
		int n = poll(p, 2, Z.n_kids > 0 ? 200 : -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (n == 0)
			zygote_reap();
		if (p[1].revents) {
			struct signalfd_siginfo si;
			while (read(Z.sig_fd, &si, sizeof(si)) > 0) {
			}
			zygote_reap();
		}
		if (p[0].revents & POLLIN) {
			if (zygote_recv_exec() < 0)
				break;
		} else if (p[0].revents & (POLLHUP | POLLERR)) {
			break;
		}
	}
	for (size_t i = 0; i < Z.n_kids; i++)
		kill(Z.kids[i].pid, SIGKILL);
	while (Z.n_kids > 0) {
		int status;
		pid_t pid = waitpid(-1, &status, 0);
		if (pid < 0)
			break;
		for (size_t i = 0; i < Z.n_kids; i++)
			if (Z.kids[i].pid == pid) {
				close(Z.kids[i].fd);
				Z.kids[i] = Z.kids[--Z.n_kids];
				break;
			}
	}
	_exit(0);
}

/*
 * The re-executed binary becomes a zygote before main() runs: the variable is only set by
 * engine.c on the exec it performs, and is removed at once.
 */
__attribute__((constructor)) static void engine_zygote_entry(void)
{
	const char *spec = getenv(ENGINE_ZYGOTE_ENV);
	if (spec == NULL || *spec == '\0')
		return;
	const char *lv = getenv(ENGINE_LOG_LEVEL_ENV);
	if (lv != NULL && lv[0] >= '0' && lv[0] <= '0' + ST_LOG_ERROR && lv[1] == '\0')
		st_log_set_level((enum st_log_level)(lv[0] - '0'));
	unsetenv(ENGINE_LOG_LEVEL_ENV);
	zygote_main(spec);
}
