/*
 * engine.h - Stockade's code engines: JavaScript (JavaScriptCore) and Python (embedded CPython)
 * running user code in jailed, pre-initialised zygotes, one fresh fork per execution.
 *
 * A `struct engine_pool` owns, per enabled language, a few zygote processes (each inside its own
 * user/mount/pid/net/ipc/uts namespaces with a read-only root) and the admission control in
 * front of them. engine_execute() is blocking and thread-safe: HTTP worker threads call it
 * directly. Every execution runs in a child forked from a zygote that takes its own pid/mount/ipc
 * namespaces, a fresh /tmp, its own cgroup, rlimits, no privileges and a seccomp policy; nothing
 * of one execution is visible to the next.
 *
 * Return convention (common.h): 0 or a negative errno-style code with *err filled.
 *   engine_execute() returns 0 whenever the code was admitted, whatever happened to it (the
 *   outcome is result->status; an execution whose zygote died under it is run once more on a
 *   new child within its deadline, and is ENGINE_INTERNAL only when that one dies too), and:
 *     -EINVAL    the request is malformed (err names the field: "code", "language", "timeoutMs",
 *                "memoryMb", "params"); HTTP 400
 *     -E2BIG     code or params over their size caps; HTTP 413
 *     -ENOTSUP   the language is not enabled in this pool; HTTP 400
 *     -EAGAIN    the queue is full; HTTP 429 with Retry-After
 *     -EBUSY     executions use more than 80% of the memory budget; HTTP 503 with Retry-After
 *     -ESHUTDOWN the pool is shutting down; HTTP 503
 */
#ifndef STOCKADE_ENGINE_H
#define STOCKADE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../common/common.h"

enum engine_language { ENGINE_LANG_JAVASCRIPT = 0, ENGINE_LANG_PYTHON = 1, ENGINE_LANG__COUNT };

/* "javascript" (also accepted on parse: "js") and "python" (also "py"). */
const char *engine_language_name(enum engine_language lang);
int engine_language_parse(const char *s, enum engine_language *out);

enum engine_mode {
	ENGINE_MODE_JAILED = 0, /* zygotes in namespaces + per-execution namespaces (the default) */
	ENGINE_MODE_UNSANDBOXED, /* code-executor only, explicit: no namespaces, but seccomp,
	                            rlimits and no_new_privs still applied; sandboxed:false */
};

struct engine_pool_options {
	bool languages[ENGINE_LANG__COUNT]; /* which engines to start (default: both) */
	unsigned zygotes_per_language; /* default 1 */
	/* Children kept forked, in their cgroups and sandboxed, waiting for a request (refilled
	   after each claim); 0: the default, 2 (or $STOCKADE_ENGINE_WARM, 0 there: none);
	   negative: none, every execution forks on demand. At most 8. */
	int warm_per_language;
	enum engine_mode mode; /* default ENGINE_MODE_JAILED */
	/* Python modules imported once in the zygote; NULL: json, math, re, datetime,
	   collections, numpy, pandas (a module that fails to import is a startup error). */
	const char *const *python_modules;
	/* CommonJS packages for require(); NULL: lib/js/node_modules next to the binary's repo
	   (or $STOCKADE_JS_MODULES). Bound read-only into the jail at /opt/stockade/node_modules. */
	const char *js_modules_dir;

	uint64_t default_timeout_ms; /* default 10000 */
	uint64_t max_timeout_ms; /* default 60000; requests above: -EINVAL naming "timeoutMs" */
	uint64_t default_memory_mb; /* default 256 */
	uint64_t max_memory_mb; /* default 1024; requests above: -EINVAL naming "memoryMb" */
	size_t max_code_bytes; /* default 1 MiB (-E2BIG) */
	size_t max_params_bytes; /* default 8 MiB of JSON (-E2BIG) */
	size_t max_output_bytes; /* default 1 MiB, cap on stdout and on stderr each */
	size_t max_result_bytes; /* default 8 MiB of result JSON */
	unsigned pids_max; /* pids.max of an execution's cgroup (its threads); default 64 */
	uint64_t tmp_bytes; /* size of an execution's /tmp (tmpfs, charged to it); default 64 MiB */

	unsigned max_concurrency; /* executions running at once; default 2 x CPUs */
	unsigned queue_size; /* executions waiting for a slot; beyond: -EAGAIN; default 64 */
	/* Memory budget of all running executions for the 80% rule (-EBUSY); 0: the sum of
	   max_concurrency x default_memory_mb. */
	uint64_t memory_budget_bytes;
	/* Name prefix of the per-execution cgroups (under the jail's cgroup parent);
	   default "stockade-engine-<pid>". */
	const char *cgroup_prefix;
};

/* Fill with the defaults above. */
void engine_pool_options_init(struct engine_pool_options *opts);

struct engine_pool;

/*
 * Start the zygotes of every enabled language and wait until each is initialised (modules
 * imported). In ENGINE_MODE_JAILED it fails with a clear error naming the missing piece (user
 * namespaces, cgroup delegation, seccomp) when the jail cannot be set up; it never silently
 * falls back to unsandboxed.
 */
int engine_pool_new(const struct engine_pool_options *opts, struct engine_pool **out,
                    struct st_error **err);

/*
 * Stop accepting work, let in-flight executions finish until deadline_ms (relative,
 * milliseconds), kill what is left, stop the zygotes, reap every process and free the pool.
 * Nothing is orphaned. NULL is fine.
 */
void engine_pool_shutdown(struct engine_pool *pool, uint64_t deadline_ms);

struct engine_request {
	enum engine_language language;
	const char *code; /* the function body (UTF-8) */
	size_t code_len; /* 0: strlen(code) */
	/* The value bound to params_name: either params (borrowed) or params_json (a JSON text);
	   both NULL: null. */
	const json_t *params;
	const char *params_json;
	const char *params_name; /* NULL: "params" (js-executor functions use "args") */
	uint64_t timeout_ms; /* 0: the pool default */
	uint64_t memory_mb; /* 0: the pool default */
	size_t max_output_bytes; /* 0: the pool default */
	size_t max_result_bytes; /* 0: the pool default */
};

void engine_request_init(struct engine_request *req);

enum engine_status {
	ENGINE_OK = 0, /* returned (result may be null) */
	ENGINE_ERROR, /* an exception escaped, a syntax error, or a result that is not JSON
	                 ("ResultError") or too large ("ResultTooLarge") */
	ENGINE_TIMEOUT, /* wall-clock timeout_ms passed (infinite loop, pending timers...) */
	ENGINE_MEMORY_LIMIT, /* the execution's cgroup went out of memory */
	ENGINE_OUTPUT_LIMIT, /* stdout or stderr passed max_output_bytes */
	ENGINE_KILLED, /* killed by a signal we did not send (or shut down) */
	ENGINE_SANDBOX_VIOLATION, /* the seccomp policy refused a syscall with a kill */
	ENGINE_INTERNAL, /* the engine failed (zygote died, setup failed); not the code's fault */
};

const char *engine_status_name(enum engine_status s);

struct engine_error_info {
	char *name; /* "TypeError", "ZeroDivisionError", "ResultError", "SyntaxError", ... */
	char *message;
	char *stack; /* JS stack / Python traceback, lines refer to the user's code */
	int line; /* 1-based line in the user's code; 0 when unknown */
};

struct engine_stats {
	int64_t wall_ms;
	int64_t cpu_ms;
	int64_t max_rss_kb;
};

struct engine_result {
	enum engine_status status;
	json_t *result; /* owned; JSON null when there is none */
	char *stdout_text; /* captured console.log / print, NUL-terminated, never NULL */
	size_t stdout_len;
	char *stderr_text; /* console.error / console.warn / sys.stderr */
	size_t stderr_len;
	bool stdout_truncated;
	bool stderr_truncated;
	bool has_error; /* error is filled (status error, and a reason for the others) */
	struct engine_error_info error;
	struct engine_stats stats;
	bool sandboxed; /* false only in ENGINE_MODE_UNSANDBOXED */
	char *violation_syscall; /* sandbox_violation: the refused syscall's name when known */
};

/*
 * Run one execution and wait for it. Blocking, thread-safe. Returns 0 with *result filled
 * (release it with engine_result_release) or a negative code as described at the top.
 */
int engine_execute(struct engine_pool *pool, const struct engine_request *req,
                   struct engine_result *result, struct st_error **err);

void engine_result_release(struct engine_result *r);

/* The SPEC §5 reply: {status, result, stdout, stderr, error:{name,message,stack,line}|null,
   stats:{wallMs,cpuMs,maxRssKb}, sandboxed} (plus "violation":{"syscall"} when known). */
json_t *engine_result_to_json(const struct engine_result *r);

struct engine_pool_stats {
	unsigned in_flight; /* executions running */
	unsigned queued; /* executions waiting for a slot */
	unsigned max_concurrency;
	unsigned queue_size;
	unsigned zygotes_alive[ENGINE_LANG__COUNT];
	unsigned zygotes_wanted[ENGINE_LANG__COUNT];
	int64_t zygote_rss_kb[ENGINE_LANG__COUNT]; /* sum over the language's zygotes */
	unsigned warm[ENGINE_LANG__COUNT]; /* children READY for a request */
	unsigned warm_pandas; /* of warm[python], those prepared for code that uses pandas */
	uint64_t memory_used_bytes; /* reserved by running executions (their memory limits) */
	uint64_t memory_budget_bytes; /* -EBUSY above 80% of it */
	uint64_t executions_total;
	uint64_t zygote_restarts;
	bool sandboxed;
	bool shutting_down;
};

void engine_pool_stats(struct engine_pool *pool, struct engine_pool_stats *st);
/* {"inFlight","queued","maxConcurrency","queueSize","memoryUsedBytes","memoryBudgetBytes",
    "executionsTotal","zygoteRestarts","sandboxed","engines":{"javascript":{"alive","wanted",
    "rssKb","warm"},"python":{...,"warmPandas"}}} - for /healthz, /metrics. */
json_t *engine_pool_stats_to_json(struct engine_pool *pool);

/* True when every enabled language has at least one live zygote (readiness). */
bool engine_pool_is_ready(struct engine_pool *pool);

/* Warnings the operator must see (unsandboxed mode, limits the host cannot enforce).
   Valid until engine_pool_shutdown. */
const char *const *engine_pool_warnings(struct engine_pool *pool, size_t *n);

#endif
