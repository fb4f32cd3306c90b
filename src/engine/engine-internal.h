/*
 * engine-internal.h - what the engine's files share: the wire protocol between the pool
 * (supervisor), the zygotes and the execution children, the per-language hooks, and the
 * sandbox helpers (seccomp policy, cgroups).
 *
 * Processes and channels:
 *
 *   supervisor (engine.c, many threads)
 *     |  control socket (SOCK_SEQPACKET): EXEC + one fd per execution; READY/FAIL at start
 *   zygote (engine-zygote.c, one per language instance, single-threaded event loop)
 *     |  clone() per execution, the execution socket handed to the child as fd 3
 *   child (engine-zygote.c + engine-js.c / engine-py.c)
 *
 *   execution socket (SOCK_STREAM, frames of {u32 type, u32 len, payload}):
 *     child -> supervisor  HELLO (SCM_CREDENTIALS carry its pid, translated by the kernel)
 *     supervisor -> child  SETUP ("<tmp bytes> <cpu seconds> <touch>") after cgroup attach
 *     child -> supervisor  READY: sandbox applied (mounts, rlimits, privileges, seccomp)
 *     supervisor -> child  GO (the request JSON: code, params, limits), maybe much later:
 *                          a READY child is kept warm until a request takes it
 *     child -> supervisor  RESULT (the result JSON, with the child's cpuMs) then it exits
 *     zygote -> supervisor EXIT (the child's wait status), after it reaped the child
 */
#ifndef STOCKADE_ENGINE_INTERNAL_H
#define STOCKADE_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "common/common.h"
#include "engine/engine.h"

/* Environment variables that turn a re-executed binary into a zygote (see engine-zygote.c). */
#define ENGINE_ZYGOTE_ENV "STOCKADE_ENGINE_ZYGOTE"
#define ENGINE_PYMODULES_ENV "STOCKADE_ENGINE_PYMODULES"
#define ENGINE_JSDIR_ENV "STOCKADE_ENGINE_JSDIR"
/* "0": no prefaulting of the pages executions write (engine-zygote.c); for measurements. */
#define ENGINE_PREFAULT_ENV "STOCKADE_ENGINE_PREFAULT"
/* The service's log level (enum st_log_level as a digit), so that a zygote logs what the
   service would: set by engine.c on the zygote's exec only. */
#define ENGINE_LOG_LEVEL_ENV "STOCKADE_ENGINE_LOG_LEVEL"
/* "0": the zygote keeps its 4 KiB pages (engine-huge.c); for measurements. */
#define ENGINE_HUGEPAGES_ENV "STOCKADE_ENGINE_HUGEPAGES"

/* The service's own cgroup under its parent: this and its pid (engine.c); dead services'
   cgroups are found by it (engine-sandbox.c). */
#define ENGINE_CGROUP_DEFAULT_PREFIX "stockade-engine-"

/* Where the JS modules dir appears inside the jail. */
#define ENGINE_JAIL_JS_MODULES "/opt/stockade/node_modules"

/* The execution socket is always this fd in the child. */
#define ENGINE_CHILD_FD 3

enum engine_frame_type {
	ENGINE_FRAME_HELLO = 1,
	ENGINE_FRAME_GO = 2,
	ENGINE_FRAME_RESULT = 3,
	ENGINE_FRAME_EXIT = 4,
	ENGINE_FRAME_SETUP = 5,
	ENGINE_FRAME_READY = 6,
};

/* Control messages (SOCK_SEQPACKET, one per datagram). */
enum engine_ctl_type {
	ENGINE_CTL_READY = 1, /* zygote -> supervisor: initialised; payload: none */
	ENGINE_CTL_FAIL = 2, /* zygote -> supervisor: could not start; payload: message */
	ENGINE_CTL_EXEC = 3, /* supervisor -> zygote: fork a child; SCM_RIGHTS: the exec socket */
};

struct engine_ctl_msg {
	uint32_t type;
	uint32_t len; /* bytes of text following the header */
	char text[1024];
};

#define ENGINE_FRAME_MAX (64u << 20)

/* Put the zygote's code and heap on 2 MiB pages before it forks (engine-huge.c). what: the
   language, for the log line. Best effort. */
void engine__huge_pages(const char *what);

int engine__frame_write(int fd, uint32_t type, const void *data, size_t len);
/* Read one frame; *data is malloc'd and NUL-terminated. deadline_ms: absolute st_now_ms()
   time, 0 for none. Returns 0, -ETIMEDOUT, -EPIPE on EOF, or -errno. */
int engine__frame_read(int fd, int64_t deadline_ms, uint32_t *type, char **data, size_t *len);

/* ---- what the child runs (engine-zygote.c calls these) ----------------------------------- */

/*
 * What a child is prepared for before its request exists. PLAIN: the runtime's own paths (a
 * trivial execution). PANDAS (Python, when the zygote imported pandas): those plus the pages a
 * typical DataFrame execution writes, copied and touched while the child waits, so that code
 * using pandas does not pay for them (engine.c sends Python code that mentions pandas to such
 * a child).
 */
enum engine_profile { ENGINE_PROFILE_PLAIN, ENGINE_PROFILE_PANDAS, ENGINE_PROFILE__COUNT };
/* The execution a PANDAS child runs before READY, and the zygote's probe for it (a body of
   user code: `return` allowed; it does nothing when pandas was not imported). */
#define ENGINE_PY_PANDAS_TOUCH                                        \
	"import sys\n"                                                \
	"if 'pandas' not in sys.modules: return None\n"               \
	"import pandas as pd\n"                                       \
	"df = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'x']})\n" \
	"s = int(df['a'].sum()) + float(df['a'].mean())\n"            \
	"g = df[df['a'] > 1].groupby('b')['a'].sum().to_dict()\n"     \
	"return {'s': s, 'g': g, 'rows': df}\n"

/* The request as the child sees it (parsed from GO). */
struct engine_child_request {
	const char *code;
	const char *params_json;
	const char *params_name;
	size_t max_output_bytes;
	size_t max_result_bytes;
	uint64_t timeout_ms;
};

/*
 * Output capture shared by both languages: two capped buffers. When one overflows,
 * engine__child_output_limit() sends the RESULT with status output_limit and exits.
 */
struct engine_capture {
	struct st_buf out;
	struct st_buf err;
	size_t max;
};
extern struct engine_capture engine__capture;
void engine__capture_write(bool to_err, const char *s, size_t n);

/*
 * Send the final RESULT frame and _exit. status: engine_status; result may be NULL;
 * error fields may be NULL.
 */
void engine__child_finish(enum engine_status status, json_t *result, const char *ename,
                          const char *emsg, const char *estack, int eline)
    __attribute__((noreturn));

/*
 * The language runtimes (engine-js*.c, engine-py.c) live in a shared object next to the
 * executable, built by the Makefile and linked against JavaScriptCore and libpython; only a
 * zygote loads it (engine-lang.c), so every other stockade process starts without mapping
 * either runtime. The object calls back into the executable (engine__capture_write,
 * engine__child_finish, st_*...), which exports exactly those symbols. Its entry points are
 * reached through one table, exported under ENGINE_LANG_OPS_SYMBOL and checked by abi.
 */
#define ENGINE_LANG_LIB_ENV "STOCKADE_LANG_LIB"
#define ENGINE_LANG_LIB_NAME "libstockade-lang.so"
#define ENGINE_LANG_OPS_SYMBOL "engine_lang_ops"
#define ENGINE_LANG_ABI 4

struct engine_child_request;
struct engine_lang_ops {
	uint32_t abi; /* ENGINE_LANG_ABI of the object */
	int (*js_zygote_init)(const char *modules_dir, struct st_error **err);
	int (*py_zygote_init)(const char *const *modules, struct st_error **err);
	void (*py_after_fork)(void);
	void (*js_after_fork)(void);
	void (*js_run)(const struct engine_child_request *req) __attribute__((noreturn));
	void (*py_run)(const struct engine_child_request *req) __attribute__((noreturn));
	/* Child-side, before READY: run a trivial execution of our own (see child_main); Python
	   also runs `extra` (user code, e.g. ENGINE_PY_PANDAS_TOUCH) when it is not NULL. */
	void (*js_touch)(void);
	void (*py_touch)(const char *extra);
};
/* Load the object once (dlopen RTLD_GLOBAL: CPython extension modules resolve libpython's
   symbols globally); NULL with an error naming the path it tried. */
const struct engine_lang_ops *engine__lang_load(struct st_error **err);

/* Zygote-time initialisation (runtime loaded, modules imported); 0 or an error message. */
int engine__js_zygote_init(const char *modules_dir, struct st_error **err);
int engine__py_zygote_init(const char *const *modules, struct st_error **err);
/* Child-side: after fork, before the sandbox is applied and before any code runs: reinitialise
   what must not be shared between executions (random number generators' state). */
void engine__py_after_fork(void);
void engine__js_after_fork(void);
/* Run the request and finish (never returns). */
void engine__js_run(const struct engine_child_request *req) __attribute__((noreturn));
void engine__py_run(const struct engine_child_request *req) __attribute__((noreturn));

/* JS host API (engine-js-host.c): install console, timers, TextEncoder... into a context. */
#include <JavaScriptCore/JavaScript.h>
#include <sys/random.h>
void engine__js_host_install(JSGlobalContextRef ctx, const char *modules_dir);
/* Seed Math.random's generator (the host's own: engine-js-host.c) from getrandom. */
void engine__js_host_reseed(void);

/* n bytes from getrandom (short reads and EINTR retried): 0 or -errno. */
static inline int engine__random_bytes(void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom((unsigned char *)buf + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		got += (size_t)r;
	}
	return 0;
}
/* JSValueRef is a pointer to const, JSObjectRef is not: the C API expects callers to cast
   once they checked JSValueIsObject. */
static inline JSObjectRef engine__js_obj(JSValueRef v)
{
	return (JSObjectRef)(uintptr_t)v;
}
/* The prelude's driver object: start(fn, paramsText), step(), pendingTimers(), state(),
   finish(maxResultBytes). */
JSObjectRef engine__js_driver(void);
void engine__js_warm_up(void);
/* A warm child, before its request: the driver path once more, with nothing kept (no
   output, no result, the driver reset). Touching the runtime's pages now is what makes the
   request's own first touch cheap (engine-zygote.c, "Warm children"). */
void engine__js_touch(void);
void engine__py_touch(const char *extra);

/* ---- sandbox helpers (engine-sandbox.c) ----------------------------------------------------- */

/* The execution seccomp policy: deny-by-default allowlist for JSC and CPython. Prepared
   (compiled to BPF) in the zygote, loaded in each child. */
int engine__seccomp_prepare(enum engine_language lang, struct st_error **err);
int engine__seccomp_load(enum engine_language lang, struct st_error **err);

/* A per-execution cgroup (memory + pids), v1 or v2, whatever the host offers. */
struct engine_cgroup;
int engine__cgroup_setup(const char *prefix, struct st_error **err);
void engine__cgroup_teardown(void);
bool engine__cgroup_available(void);
/* Bytes charged to all running executions (the engine cgroup), 0 without cgroups. */
uint64_t engine__cgroup_usage(void);
/* The memory limit of the service's own cgroup, 0 when unlimited or unknown. */
uint64_t engine__cgroup_parent_limit(void);
int engine__cgroup_create(const char *name, uint64_t memory_bytes, uint64_t pids,
                          struct engine_cgroup **out, struct st_error **err);
int engine__cgroup_attach(struct engine_cgroup *cg, pid_t pid, struct st_error **err);
/* Change the memory limit of a cgroup made by engine__cgroup_create (a warm child's, when the
   request asks for another limit than the default it was made with). */
int engine__cgroup_set_memory(struct engine_cgroup *cg, uint64_t memory_bytes,
                              struct st_error **err);
struct engine_cgroup_stats {
	int64_t max_rss_kb;
	int64_t cpu_ms;
	bool oom; /* the kernel killed a process for memory */
	bool hit_limit; /* an allocation failed at the limit (the runtime may have coped) */
};
void engine__cgroup_stats(struct engine_cgroup *cg, struct engine_cgroup_stats *st);
/* Bytes charged to one cgroup now. */
uint64_t engine__cgroup_memory(struct engine_cgroup *cg);
/* Kill everything left in it, remove it, free the handle. NULL is fine. */
void engine__cgroup_destroy(struct engine_cgroup *cg);

#endif
