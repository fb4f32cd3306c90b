/*
 * api-exec.c - the code-executor API (POST /api/v1/execute), the engine pools behind both
 * executors, and execution metrics.
 *
 * Pools: the code-executor pool runs JavaScript and Python in the mode the config says
 * (jailed by default, or the explicit unsandboxed mode). The js-executor pool runs JavaScript
 * and is always jailed; when the code-executor pool is jailed too, both components share it
 * (one set of zygotes). A pool is started when its first component registers and shut down by
 * app_shutdown (in-flight executions finish or are killed at the deadline).
 *
 * Validation happens here, before the engine sees the request, so every 400 names its field:
 * language, code, params, timeoutMs, memoryMb. Oversized code is 413 naming "code".
 */
#include "api/api-internal.h"

#include <stdatomic.h>

/* ---- metrics ----------------------------------------------------------------------------- */

#define EXEC_STATUSES 8
static const double exec_buckets_s[] = {0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
                                        0.1,   0.25,  0.5,   1,    5,     30};
#define EXEC_BUCKETS (sizeof(exec_buckets_s) / sizeof(exec_buckets_s[0]))

static struct {
	pthread_mutex_t lock;
	uint64_t by_status[ENGINE_LANG__COUNT][EXEC_STATUSES];
	uint64_t hist[ENGINE_LANG__COUNT][EXEC_BUCKETS + 1];
	double sum_s[ENGINE_LANG__COUNT];
	uint64_t rejected_queue, rejected_memory;
} exec_metrics = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void record_execution(enum engine_language lang, enum engine_status st, int64_t wall_ms)
{
	if ((unsigned)lang >= ENGINE_LANG__COUNT || (unsigned)st >= EXEC_STATUSES)
		return;
	double s = (double)wall_ms / 1000.0;
	size_t b;
	for (b = 0; b < EXEC_BUCKETS; b++)
		if (s <= exec_buckets_s[b])
			break;
	pthread_mutex_lock(&exec_metrics.lock);
	exec_metrics.by_status[lang][st]++;
	exec_metrics.hist[lang][b]++;
	exec_metrics.sum_s[lang] += s;
	pthread_mutex_unlock(&exec_metrics.lock);
}

static void pool_metrics(struct st_buf *out, struct engine_pool *pool, const char *name)
{
	struct engine_pool_stats st;
	memset(&st, 0, sizeof(st));
	engine_pool_stats(pool, &st);
	st_buf_appendf(out, "stockade_engine_in_flight{pool=\"%s\"} %u\n", name, st.in_flight);
	st_buf_appendf(out, "stockade_engine_queue_depth{pool=\"%s\"} %u\n", name, st.queued);
	st_buf_appendf(out, "stockade_engine_queue_size{pool=\"%s\"} %u\n", name, st.queue_size);
	st_buf_appendf(out, "stockade_engine_max_concurrency{pool=\"%s\"} %u\n", name,
	               st.max_concurrency);
	st_buf_appendf(out, "stockade_engine_memory_used_bytes{pool=\"%s\"} %llu\n", name,
	               (unsigned long long)st.memory_used_bytes);
	st_buf_appendf(out, "stockade_engine_memory_budget_bytes{pool=\"%s\"} %llu\n", name,
	               (unsigned long long)st.memory_budget_bytes);
	st_buf_appendf(out, "stockade_engine_zygote_restarts_total{pool=\"%s\"} %llu\n", name,
	               (unsigned long long)st.zygote_restarts);
	for (int l = 0; l < ENGINE_LANG__COUNT; l++) {
		if (!st.zygotes_wanted[l])
			continue;
		const char *ln = engine_language_name((enum engine_language)l);
		st_buf_appendf(out,
		               "stockade_engine_zygotes_alive{pool=\"%s\",language=\"%s\"} %u\n",
		               name, ln, st.zygotes_alive[l]);
		st_buf_appendf(
		    out, "stockade_engine_zygote_rss_bytes{pool=\"%s\",language=\"%s\"} %lld\n",
		    name, ln, (long long)st.zygote_rss_kb[l] * 1024);
		unsigned pandas = l == ENGINE_LANG_PYTHON ? st.warm_pandas : 0;
		st_buf_appendf(out,
		               "stockade_engine_warm_children{pool=\"%s\",language=\"%s\","
		               "prepared_for=\"any\"} %u\n",
		               name, ln, st.warm[l] - pandas);
		if (l == ENGINE_LANG_PYTHON)
			st_buf_appendf(out,
			               "stockade_engine_warm_children{pool=\"%s\",language=\"%s\","
			               "prepared_for=\"pandas\"} %u\n",
			               name, ln, pandas);
	}
}

static void exec_metrics_render(void *ctx, struct st_buf *out)
{
	struct app *app = ctx;
	pthread_mutex_lock(&exec_metrics.lock);
	st_buf_appendf(out, "# HELP stockade_executions_total Executions that ran, by language "
	                    "and status.\n# TYPE stockade_executions_total counter\n");
	for (int l = 0; l < ENGINE_LANG__COUNT; l++)
		for (int s = 0; s < EXEC_STATUSES; s++)
			if (exec_metrics.by_status[l][s])
				st_buf_appendf(
				    out,
				    "stockade_executions_total{language=\"%s\",status=\"%s\"} "
				    "%llu\n",
				    engine_language_name((enum engine_language)l),
				    engine_status_name((enum engine_status)s),
				    (unsigned long long)exec_metrics.by_status[l][s]);
	st_buf_appendf(out, "# HELP stockade_execution_duration_seconds Wall time of executions."
	                    "\n# TYPE stockade_execution_duration_seconds histogram\n");
	for (int l = 0; l < ENGINE_LANG__COUNT; l++) {
		const char *ln = engine_language_name((enum engine_language)l);
		uint64_t cum = 0;
		for (size_t b = 0; b <= EXEC_BUCKETS; b++) {
			cum += exec_metrics.hist[l][b];
			if (b < EXEC_BUCKETS)
				st_buf_appendf(
				    out,
				    "stockade_execution_duration_seconds_bucket{language=\"%s\","
				    "le=\"%g\"} %llu\n",
				    ln, exec_buckets_s[b], (unsigned long long)cum);
			else
				st_buf_appendf(
				    out,
				    "stockade_execution_duration_seconds_bucket{language=\"%s\","
				    "le=\"+Inf\"} %llu\n",
				    ln, (unsigned long long)cum);
		}
		st_buf_appendf(out,
		               "stockade_execution_duration_seconds_sum{language=\"%s\"} %.6f\n",
		               ln, exec_metrics.sum_s[l]);
		st_buf_appendf(out,
		               "stockade_execution_duration_seconds_count{language=\"%s\"} %llu\n",
		               ln, (unsigned long long)cum);
	}
	st_buf_appendf(out,
	               "# TYPE stockade_executions_rejected_total counter\n"
	               "stockade_executions_rejected_total{reason=\"queue_full\"} %llu\n"
	               "stockade_executions_rejected_total{reason=\"memory_pressure\"} %llu\n",
	               (unsigned long long)exec_metrics.rejected_queue,
	               (unsigned long long)exec_metrics.rejected_memory);
	pthread_mutex_unlock(&exec_metrics.lock);
	st_buf_appendf(out, "# TYPE stockade_engine_in_flight gauge\n");
	if (app->pool_exec)
		pool_metrics(out, app->pool_exec, "code-executor");
	if (app->pool_fn && app->pool_fn != app->pool_exec)
		pool_metrics(out, app->pool_fn, "js-executor");
}

/* ---- pools ------------------------------------------------------------------------------- */

static void pool_options_from(const struct config_exec_limits *lim, struct engine_pool_options *o)
{
	if (!lim)
		return;
	if (lim->default_timeout_ms)
		o->default_timeout_ms = lim->default_timeout_ms;
	if (lim->max_timeout_ms)
		o->max_timeout_ms = lim->max_timeout_ms;
	if (lim->default_memory_mb)
		o->default_memory_mb = lim->default_memory_mb;
	if (lim->max_memory_mb)
		o->max_memory_mb = lim->max_memory_mb;
	if (lim->max_code_bytes)
		o->max_code_bytes = lim->max_code_bytes;
	if (lim->max_params_bytes)
		o->max_params_bytes = lim->max_params_bytes;
	if (lim->max_output_bytes)
		o->max_output_bytes = lim->max_output_bytes;
	if (lim->max_result_bytes)
		o->max_result_bytes = lim->max_result_bytes;
	if (lim->queue_size)
		o->queue_size = lim->queue_size;
	if (lim->max_pids)
		o->pids_max = lim->max_pids;
	if (lim->tmpfs_mb)
		o->tmp_bytes = lim->tmpfs_mb << 20;
	if (lim->concurrency)
		o->max_concurrency = lim->concurrency;
}

/* Test and operator knobs that the config file does not carry (yet): environment. */
static void pool_options_env(struct engine_pool_options *o)
{
	uint64_t v;
	const char *s = getenv("STOCKADE_ENGINE_QUEUE_SIZE");
	if (s && st_parse_u64(s, &v) == 0)
		o->queue_size = (unsigned)v;
	s = getenv("STOCKADE_ENGINE_CONCURRENCY");
	if (s && st_parse_u64(s, &v) == 0 && v > 0)
		o->max_concurrency = (unsigned)v;
	s = getenv("STOCKADE_ENGINE_MEMORY_BUDGET_MB");
	if (s && st_parse_u64(s, &v) == 0 && v > 0)
		o->memory_budget_bytes = v << 20;
	s = getenv("STOCKADE_ENGINE_ZYGOTES");
	if (s && st_parse_u64(s, &v) == 0 && v > 0)
		o->zygotes_per_language = (unsigned)v;
}

struct pool_hook {
	struct app *app;
	struct engine_pool **slot;
	struct engine_pool **alias;
	const char *name;
};

static void pool_shutdown_hook(void *ctx, int64_t deadline_ms)
{
	struct pool_hook *h = ctx;
	struct engine_pool *p = *h->slot;
	if (!p)
		return;
	int64_t left = deadline_ms - st_now_ms();
	engine_pool_shutdown(p, left > 0 ? (uint64_t)left : 0);
	*h->slot = NULL;
	if (h->alias && *h->alias == p)
		*h->alias = NULL;
	free(h);
}

static enum app_health pool_health(void *ctx, char **detail)
{
	struct pool_hook *h = ctx;
	struct engine_pool *p = *h->slot;
	if (!p) {
		*detail = st_xstrdup("engine pool stopped");
		return APP_HEALTH_DOWN;
	}
	size_t nw = 0;
	const char *const *w = engine_pool_warnings(p, &nw);
	struct engine_pool_stats st;
	memset(&st, 0, sizeof(st));
	engine_pool_stats(p, &st);
	if (!engine_pool_is_ready(p)) {
		*detail = st_xstrdup("no live zygote for an enabled language (restarting)");
		return APP_HEALTH_DOWN;
	}
	if (!st.sandboxed) {
		*detail = st_xstrdup("UNSANDBOXED mode: code runs without namespaces; every "
		                     "result says sandboxed:false. Trust all code or switch "
		                     "codeExecutor.mode to privileged or seccomp");
		return APP_HEALTH_DEGRADED;
	}
	if (nw > 0) {
		*detail = st_xstrdup(w[0]);
		return APP_HEALTH_DEGRADED;
	}
	*detail =
	    st_xasprintf("in flight %u, queued %u of %u", st.in_flight, st.queued, st.queue_size);
	return APP_HEALTH_OK;
}

static bool metrics_added;

static int start_pool(struct app *app, bool functions, struct engine_pool **out,
                      struct st_error **err)
{
#ifdef API_ENGINE_WEAK
	if (!engine_pool_new) {
		st_error_make(err, 0, "the execution engine is not part of this build");
		return -ENOSYS;
	}
#endif
	struct engine_pool_options o;
	engine_pool_options_init(&o);
	const struct stockade_config *cfg = app->config;
	const char **mods = NULL;
	if (cfg) {
		if (functions) {
			pool_options_from(&cfg->rr.js_executor.limits, &o);
			if (cfg->rr.js_executor.js_modules_dir)
				o.js_modules_dir = cfg->rr.js_executor.js_modules_dir;
		} else {
			pool_options_from(&cfg->code_executor.limits, &o);
			if (cfg->code_executor.js_modules_dir)
				o.js_modules_dir = cfg->code_executor.js_modules_dir;
			if (cfg->code_executor.python_modules.n) {
				size_t n = cfg->code_executor.python_modules.n;
				mods = st_xcalloc(n + 1, sizeof(*mods));
				for (size_t i = 0; i < n; i++)
					mods[i] = cfg->code_executor.python_modules.v[i];
				o.python_modules = mods;
			}
		}
	}
	pool_options_env(&o);
	if (functions) {
		o.languages[ENGINE_LANG_PYTHON] = false;
		o.mode = ENGINE_MODE_JAILED;
	} else {
		o.mode = app->unsandboxed ? ENGINE_MODE_UNSANDBOXED : ENGINE_MODE_JAILED;
	}
	int r = engine_pool_new(&o, out, err);
	free(mods);
	if (r < 0)
		return r;
	size_t nw = 0;
	const char *const *w = engine_pool_warnings(*out, &nw);
	for (size_t i = 0; i < nw; i++)
		st_log(ST_LOG_WARN, "%s engine: %s", functions ? "js-executor" : "code-executor",
		       w[i]);
	if (!metrics_added && app->http) {
		http_server_add_metrics(app->http, exec_metrics_render, app);
		metrics_added = true;
	}
	return 0;
}

static void register_pool_hooks(struct app *app, struct engine_pool **slot,
                                struct engine_pool **alias, const char *name)
{
	struct pool_hook *h = st_xcalloc(1, sizeof(*h));
	h->app = app;
	h->slot = slot;
	h->alias = alias;
	h->name = name;
	app_add_health_check(app, name, pool_health, h);
	app_on_shutdown(app, name, pool_shutdown_hook, h);
}

int api__pool_exec(struct app *app, struct st_error **err)
{
	if (app->pool_exec)
		return 0;
	int r = start_pool(app, false, &app->pool_exec, err);
	if (r < 0)
		return st_error_wrap(err, "cannot start the code-executor engines");
	if (app->unsandboxed)
		st_log(ST_LOG_WARN,
		       "code-executor runs UNSANDBOXED (codeExecutor.mode: unsandboxed): no "
		       "namespaces, only seccomp, rlimits and no_new_privs; every result says "
		       "sandboxed:false; run only code you fully trust");
	register_pool_hooks(app, &app->pool_exec, &app->pool_fn, "engine:code-executor");
	return 0;
}

int api__pool_fn(struct app *app, struct st_error **err)
{
	if (app->pool_fn)
		return 0;
	if (app->pool_exec && !app->unsandboxed) {
		app->pool_fn = app->pool_exec; /* share the jailed zygotes */
		return 0;
	}
	int r = start_pool(app, true, &app->pool_fn, err);
	if (r < 0)
		return st_error_wrap(
		    err, "js-executor refuses to start: it always runs functions in a "
		         "jail and the jail cannot be set up here; run the service with "
		         "the seccomp profile deploy/seccomp/stockade-executor.json (or "
		         "privileged), see 'stockade doctor'");
	register_pool_hooks(app, &app->pool_fn, NULL, "engine:js-executor");
	return 0;
}

void api__limits(struct app *app, bool functions, struct api__limits *out)
{
	out->max_timeout_ms = 60000;
	out->max_memory_mb = 1024;
	out->max_code_bytes = 1024 * 1024;
	const struct stockade_config *cfg = app->config;
	if (!cfg)
		return;
	const struct config_exec_limits *l =
	    functions ? &cfg->rr.js_executor.limits : &cfg->code_executor.limits;
	if (l->max_timeout_ms)
		out->max_timeout_ms = l->max_timeout_ms;
	if (l->max_memory_mb)
		out->max_memory_mb = l->max_memory_mb;
	if (l->max_code_bytes)
		out->max_code_bytes = l->max_code_bytes;
}

bool api__parse_limits(struct http_request *req, json_t *body, const struct api__limits *lim,
                       struct engine_request *ereq)
{
	uint64_t v;
	if (!api_get_uint(req, body, "timeoutMs", false, 1, lim->max_timeout_ms, &v))
		return false;
	ereq->timeout_ms = v;
	if (!api_get_uint(req, body, "memoryMb", false, 16, lim->max_memory_mb, &v))
		return false;
	ereq->memory_mb = v;
	return true;
}

/* ---- executing ---------------------------------------------------------------------------- */

static const char *field_from_message(const char *msg)
{
	static const char *const fields[] = {"timeoutMs", "memoryMb", "params",
	                                     "args",      "language", "code"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(fields); i++)
		if (msg && strstr(msg, fields[i]))
			return fields[i];
	return NULL;
}

int api__execute_reply(struct http_request *hreq, struct app *app, struct engine_pool *pool,
                       const struct engine_request *ereq)
{
	if (!pool || app->stopping)
		return api_reply_busy(hreq, 503, 2, "shutting_down",
		                      "the executor is shutting down: retry on another replica");
	struct engine_result res;
	memset(&res, 0, sizeof(res));
	struct st_error *err = NULL;
	int r = engine_execute(pool, ereq, &res, &err);
	if (r == 0) {
		record_execution(ereq->language, res.status, res.stats.wall_ms);
		json_t *j = engine_result_to_json(&res);
		engine_result_release(&res);
		return http_reply_json(hreq, 200, j);
	}
	const char *msg = st_error_msg(err);
	int ret;
	switch (r) {
	case -EINVAL: {
		const char *field = field_from_message(msg);
		ret = http_reply_error(hreq, 400, "invalid_request", msg,
		                       field ? json_pack("{s:s}", "field", field) : NULL);
		break;
	}
	case -E2BIG: {
		const char *field = field_from_message(msg);
		ret = http_reply_error(hreq, 413, "body_too_large", msg,
		                       field ? json_pack("{s:s}", "field", field) : NULL);
		break;
	}
	case -ENOTSUP:
		ret = http_reply_error(hreq, 400, "invalid_request", msg,
		                       json_pack("{s:s}", "field", "language"));
		break;
	case -EAGAIN:
		pthread_mutex_lock(&exec_metrics.lock);
		exec_metrics.rejected_queue++;
		pthread_mutex_unlock(&exec_metrics.lock);
		ret = api_reply_busy(hreq, 429, 1, "queue_full",
		                     "the execution queue is full: retry after a moment");
		break;
	case -EBUSY:
		pthread_mutex_lock(&exec_metrics.lock);
		exec_metrics.rejected_memory++;
		pthread_mutex_unlock(&exec_metrics.lock);
		ret = api_reply_busy(hreq, 503, 2, "memory_pressure",
		                     "executions use more than 80% of the memory budget: retry "
		                     "after a moment");
		break;
	case -ESHUTDOWN:
		ret = api_reply_busy(hreq, 503, 2, "shutting_down",
		                     "the executor is shutting down: retry on another replica");
		break;
	default:
		st_log(ST_LOG_ERROR, "execution failed: %s", msg);
		ret = http_reply_error(hreq, 500, "internal", msg, NULL);
		break;
	}
	st_error_free(err);
	return ret;
}

static int h_execute(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	json_t *body = http_body_json(req);
	if (!body)
		return 0;
	struct api__limits lim;
	api__limits(app, false, &lim);
	struct engine_request ereq;
	engine_request_init(&ereq);
	const char *lang = NULL, *code = NULL;
	int ret = 0;
	static const char *const fields[] = {"language",  "code",     "params",
	                                     "timeoutMs", "memoryMb", NULL};
	if (!api_known_fields(req, body, NULL, fields))
		goto out;
	if (!api_get_string(req, body, "language", true, 64, &lang))
		goto out;
	if (engine_language_parse(lang, &ereq.language) < 0) {
		ret = http_reply_bad_field(req, "language",
		                           "field 'language' is '%.40s': use \"javascript\" or "
		                           "\"python\"",
		                           lang);
		goto out;
	}
	if (!api_get_string(req, body, "code", true, lim.max_code_bytes, &code))
		goto out;
	ereq.code = code;
	ereq.code_len = json_string_length(json_object_get(body, "code"));
	ereq.params = json_object_get(body, "params");
	if (!api__parse_limits(req, body, &lim, &ereq))
		goto out;
	ret = api__execute_reply(req, app, app->pool_exec, &ereq);
out:
	json_decref(body);
	return ret;
}

int api_register_exec(struct http_server *srv, struct app *app, struct st_error **err)
{
	int r = api__pool_exec(app, err);
	if (r < 0)
		return r;
	struct http_route_spec s = {.method = "POST",
	                            .pattern = "/api/v1/execute",
	                            .handler = h_execute,
	                            .ctx = app,
	                            .flags = HTTP_AUTH_API_TOKEN,
	                            .scope = "execute"};
	/* code (1 MiB) plus params (8 MiB) plus JSON framing */
	const struct stockade_config *cfg = app->config;
	size_t cap = 10 * 1024 * 1024;
	if (cfg && cfg->code_executor.limits.max_code_bytes)
		cap = cfg->code_executor.limits.max_code_bytes +
		      cfg->code_executor.limits.max_params_bytes + 64 * 1024;
	s.max_body_bytes = cap;
	if (http_route_ex(srv, &s) < 0)
		return st_error_make(err, EINVAL, "cannot register /api/v1/execute");
	return 0;
}

int api_engine_pool(struct app *app, struct engine_pool **out, struct st_error **err)
{
	int r = api__pool_exec(app, err);
	if (r < 0)
		return r;
	*out = app->pool_exec;
	return 0;
}
