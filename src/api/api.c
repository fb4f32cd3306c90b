/*
 * api.c - the application object: roles, component registration, health checks, shutdown
 * hooks, and the small request-validation helpers every component's handlers share.
 *
 * Hooks are kept in one list in registration order. Health checks run on every /healthz and
 * /readyz (they must be cheap and non-blocking). Shutdown hooks run once, newest first, from
 * app_shutdown; `stopping` is set before the first one runs so handlers can refuse new work.
 */
#include <ctype.h>
#include <stdatomic.h>
#include <strings.h>

#include "api/api-internal.h"

enum hook_kind { HOOK_HEALTH, HOOK_SHUTDOWN };

struct app_hook {
	enum hook_kind kind;
	char *name;
	enum app_health (*health)(void *ctx, char **detail);
	void (*shutdown)(void *ctx, int64_t deadline_ms);
	void *ctx;
	struct app_hook *next;
};

void app_init(struct app *app)
{
	memset(app, 0, sizeof(*app));
	pthread_mutex_init(&app->lock, NULL);
}

void app_release(struct app *app)
{
	struct app_hook *h = app->hooks;
	while (h) {
		struct app_hook *n = h->next;
		free(h->name);
		free(h);
		h = n;
	}
	app->hooks = NULL;
	free(app->data_dir);
	app->data_dir = NULL;
	pthread_mutex_destroy(&app->lock);
}

static int add_hook(struct app *app, struct app_hook *h)
{
	pthread_mutex_lock(&app->lock);
	struct app_hook **pp = &app->hooks;
	while (*pp)
		pp = &(*pp)->next;
	*pp = h;
	pthread_mutex_unlock(&app->lock);
	return 0;
}

int app_add_health_check(struct app *app, const char *name,
                         enum app_health (*fn)(void *ctx, char **detail), void *ctx)
{
	struct app_hook *h = st_xcalloc(1, sizeof(*h));
	h->kind = HOOK_HEALTH;
	h->name = st_xstrdup(name);
	h->health = fn;
	h->ctx = ctx;
	return add_hook(app, h);
}

int app_on_shutdown(struct app *app, const char *name, void (*fn)(void *ctx, int64_t deadline_ms),
                    void *ctx)
{
	struct app_hook *h = st_xcalloc(1, sizeof(*h));
	h->kind = HOOK_SHUTDOWN;
	h->name = st_xstrdup(name);
	h->shutdown = fn;
	h->ctx = ctx;
	return add_hook(app, h);
}

static const char *health_name(enum app_health h)
{
	switch (h) {
	case APP_HEALTH_OK: return "ok";
	case APP_HEALTH_DEGRADED: return "degraded";
	case APP_HEALTH_DOWN: return "down";
	default: return "unknown";
	}
}

json_t *app_health_json(struct app *app, enum app_health *overall)
{
	enum app_health worst = APP_HEALTH_OK;
	json_t *checks = json_object();
	pthread_mutex_lock(&app->lock);
	for (struct app_hook *h = app->hooks; h; h = h->next) {
		if (h->kind != HOOK_HEALTH)
			continue;
		char *detail = NULL;
		enum app_health r = h->health(h->ctx, &detail);
		if (r > worst)
			worst = r;
		json_object_set_new(
		    checks, h->name,
		    json_pack("{s:s,s:s?}", "status", health_name(r), "detail", detail));
		free(detail);
	}
	pthread_mutex_unlock(&app->lock);
	if (app->stopping)
		worst = APP_HEALTH_DOWN;
	json_t *components = json_array();
	for (unsigned bit = 1; bit <= APP_GIT_SERVER; bit <<= 1)
		if (app->components & bit)
			json_array_append_new(
			    components, json_string(app_component_name((enum app_component)bit)));
	if (overall)
		*overall = worst;
	return json_pack("{s:s,s:o,s:o,s:b,s:b,s:s}", "status", health_name(worst), "checks",
	                 checks, "components", components, "sandboxed", !app->unsandboxed,
	                 "stopping", app->stopping != 0, "version", ST_VERSION);
}

void app_shutdown(struct app *app, unsigned grace_ms)
{
	pthread_mutex_lock(&app->lock);
	if (app->stopping) {
		pthread_mutex_unlock(&app->lock);
		return;
	}
	app->stopping = 1;
	pthread_mutex_unlock(&app->lock);
	int64_t deadline = st_now_ms() + grace_ms;
	/* 1. no new connections; new requests on open ones get 503 */
	if (app->http)
		http_server_quiesce(app->http);
	/* 2. components stop their work: executions finish or are killed at the deadline */
	struct app_hook *list[64];
	size_t n = 0;
	pthread_mutex_lock(&app->lock);
	for (struct app_hook *h = app->hooks; h && n < ST_ARRAY_SIZE(list); h = h->next)
		if (h->kind == HOOK_SHUTDOWN)
			list[n++] = h;
	pthread_mutex_unlock(&app->lock);
	while (n-- > 0) {
		st_log(ST_LOG_INFO, "shutting down '%s'", list[n]->name);
		list[n]->shutdown(list[n]->ctx, deadline);
	}
	/* 3. replies still being written get a short moment, then the server stops */
	if (app->http) {
		int64_t left = deadline - st_now_ms();
		http_server_stop(app->http, left > 1000 ? (unsigned)left : 1000);
	}
}

/* ---- roles ------------------------------------------------------------------------------- */

static const struct {
	const char *name;
	enum app_component bit;
} component_names[] = {
    {"code-executor", APP_CODE_EXECUTOR}, {"js-executor", APP_JS_EXECUTOR},
    {"agent-sandbox", APP_AGENT_SANDBOX}, {"mcp", APP_MCP},
    {"git-server", APP_GIT_SERVER},
};

unsigned app_role_parse(const char *role)
{
	if (!role)
		return 0;
	if (strcmp(role, "all") == 0)
		return APP_CODE_EXECUTOR | APP_JS_EXECUTOR | APP_AGENT_SANDBOX | APP_MCP |
		       APP_GIT_SERVER;
	for (size_t i = 0; i < ST_ARRAY_SIZE(component_names); i++)
		if (strcmp(role, component_names[i].name) == 0)
			return component_names[i].bit;
	return 0;
}

const char *app_component_name(enum app_component c)
{
	for (size_t i = 0; i < ST_ARRAY_SIZE(component_names); i++)
		if (component_names[i].bit == c)
			return component_names[i].name;
	return "unknown";
}

static api_register_fn component_register_fn(enum app_component c)
{
	switch (c) {
	case APP_CODE_EXECUTOR:
	case APP_JS_EXECUTOR:
#ifdef API_ENGINE_WEAK
		if (!engine_pool_new)
			return NULL;
#endif
		return c == APP_CODE_EXECUTOR ? api_register_exec : api_register_functions;
	case APP_AGENT_SANDBOX: return api_register_sandbox;
	case APP_MCP: return api_register_mcp;
	case APP_GIT_SERVER: return api_register_git;
	default: return NULL;
	}
}

int api_register_all(struct http_server *srv, struct app *app, struct st_error **err)
{
	int r = api_register_ops(srv, app, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ST_ARRAY_SIZE(component_names); i++) {
		enum app_component c = component_names[i].bit;
		if (!(app->components & c))
			continue;
		api_register_fn fn = component_register_fn(c);
		if (!fn) {
			st_error_make(err, 0,
			              "component '%s' is not part of this build of stockade",
			              component_names[i].name);
			return -ENOSYS;
		}
		r = fn(srv, app, err);
		if (r < 0)
			return st_error_wrap(err, "cannot start '%s'", component_names[i].name);
		st_log(ST_LOG_INFO, "component '%s' ready", component_names[i].name);
	}
	return 0;
}

bool api_component_built(enum app_component c)
{
	return component_register_fn(c) != NULL;
}

/* ---- validation helpers ------------------------------------------------------------------ */

/* Edit distance of two short names, case-insensitive, capped at 3 (enough to say "did you
   mean"). */
static unsigned name_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 63 || lb > 63)
		return 3;
	unsigned row[64];
	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned diag = row[0];
		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			unsigned up = row[j];
			unsigned cost =
			    tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1])
			        ? 0
			        : 1;
			unsigned best = diag + cost;
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb] < 3 ? row[lb] : 3;
}

/* The accepted name a misspelt one most likely meant: close in spelling, or the same start
   ("timeout" for "timeoutMs"), or NULL. */
static const char *closest_name(const char *name, const char *const *known)
{
	const char *best = NULL;
	unsigned best_d = 3;
	size_t ln = strlen(name);
	for (size_t i = 0; known[i] != NULL; i++) {
		size_t lk = strlen(known[i]);
		size_t m = ln < lk ? ln : lk;
		if (m >= 4 && strncasecmp(name, known[i], m) == 0)
			return known[i];
		unsigned d = name_distance(name, known[i]);
		if (d < best_d) {
			best_d = d;
			best = known[i];
		}
	}
	return best_d <= 2 ? best : NULL;
}

bool api_known_fields(struct http_request *req, json_t *obj, const char *where,
                      const char *const *known)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		bool ok = false;
		for (size_t i = 0; known[i] != NULL && !ok; i++)
			ok = strcmp(key, known[i]) == 0;
		if (ok)
			continue;
		char list[512] = "";
		size_t at = 0;
		for (size_t i = 0; known[i] != NULL && at < sizeof(list); i++)
			at += (size_t)snprintf(list + at, sizeof(list) - at, "%s%s", i ? ", " : "",
			                       known[i]);
		const char *near = closest_name(key, known);
		char field[160];
		snprintf(field, sizeof(field), "%s%s%.100s", where ? where : "", where ? "." : "",
		         key);
		http_reply_bad_field(req, field, "unknown field '%s'%s%s%s: %s accepts %s", field,
		                     near ? " (did you mean '" : "", near ? near : "",
		                     near ? "'?)" : "", where ? where : "the request body", list);
		return false;
	}
	return true;
}

bool api_get_string(struct http_request *req, json_t *obj, const char *field, bool required,
                    size_t max_len, const char **out)
{
	json_t *v = json_object_get(obj, field);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required) {
			http_reply_bad_field(req, field, "field '%s' is required (a string)",
			                     field);
			return false;
		}
		return true;
	}
	if (!json_is_string(v)) {
		http_reply_bad_field(req, field, "field '%s' must be a string", field);
		return false;
	}
	if (max_len && json_string_length(v) > max_len) {
		char msg[200];
		snprintf(msg, sizeof(msg), "field '%s' is %zu bytes, over the limit of %zu bytes",
		         field, json_string_length(v), max_len);
		http_reply_error(
		    req, 413, "body_too_large", msg,
		    json_pack("{s:s,s:I}", "field", field, "limitBytes", (json_int_t)max_len));
		return false;
	}
	*out = json_string_value(v);
	return true;
}

bool api_get_uint(struct http_request *req, json_t *obj, const char *field, bool required,
                  uint64_t min, uint64_t max, uint64_t *out)
{
	json_t *v = json_object_get(obj, field);
	if (!v || json_is_null(v)) {
		if (required) {
			http_reply_bad_field(req, field, "field '%s' is required (an integer)",
			                     field);
			return false;
		}
		*out = 0;
		return true;
	}
	json_int_t i;
	if (json_is_integer(v)) {
		i = json_integer_value(v);
	} else if (json_is_real(v) &&
	           !(json_real_value(v) > -9.2e18 && json_real_value(v) < 9.2e18)) {
		/* out of json_int_t range: converting it would be undefined behaviour */
		http_reply_bad_field(
		    req, field, "field '%s' is %g: it must be between %llu and %llu", field,
		    json_real_value(v), (unsigned long long)min, (unsigned long long)max);
		return false;
	} else if (json_is_real(v) &&
	           json_real_value(v) == (double)(json_int_t)json_real_value(v)) {
		i = (json_int_t)json_real_value(v);
	} else {
		http_reply_bad_field(req, field, "field '%s' must be an integer", field);
		return false;
	}
	if (i < 0 || (uint64_t)i < min || (uint64_t)i > max) {
		http_reply_bad_field(
		    req, field, "field '%s' is %lld: it must be between %llu and %llu", field,
		    (long long)i, (unsigned long long)min, (unsigned long long)max);
		return false;
	}
	*out = (uint64_t)i;
	return true;
}

int api_reply_busy(struct http_request *req, unsigned status, unsigned retry_after_s,
                   const char *code, const char *message)
{
	char ra[16];
	snprintf(ra, sizeof(ra), "%u", retry_after_s ? retry_after_s : 1);
	http_reply_header(req, "Retry-After", ra);
	return http_reply_error(req, status, code, message,
	                        json_pack("{s:i}", "retryAfterSeconds", retry_after_s));
}
