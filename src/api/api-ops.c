/*
 * api-ops.c - operations endpoints served by every role.
 *
 *   GET /healthz, /readyz           aggregate of the components' health checks (JSON)
 *   GET /api/checkHealth            code-executor chart probe
 *   GET /api/health, /api/readiness js-executor chart probes
 *   GET /metrics                    Prometheus text: HTTP, executions, engines, hooks
 *   GET /api/v1/admin/migrations    schema and data migration status (admin)
 *   POST /api/v1/admin/migrations   {name}: re-trigger a failed data migration (admin);
 *                                   409 while it runs or when it is already done
 *
 * Liveness (/healthz, checkHealth, /api/health) answers 200 while the process serves, with
 * "degraded" and the reason when something needs the operator (unsandboxed mode, a failed data
 * migration), and 503 once shutdown began. Readiness (/readyz, /api/readiness) answers 503
 * when any check is down (e.g. no live zygote) or while stopping.
 */
#include "api/api-internal.h"

static int h_healthz(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	enum app_health h;
	json_t *j = app_health_json(app, &h);
	return http_reply_json(req, app->stopping ? 503 : 200, j);
}

static int h_readyz(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	enum app_health h;
	json_t *j = app_health_json(app, &h);
	return http_reply_json(req, h == APP_HEALTH_DOWN ? 503 : 200, j);
}

static int h_metrics(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	struct st_buf b;
	st_buf_init(&b, 16 * 1024 * 1024);
	http_server_metrics_render(app->http, &b);
	enum app_health h;
	json_t *j = app_health_json(app, &h);
	json_decref(j);
	st_buf_appendf(&b,
	               "# HELP stockade_up Whether the service is healthy (1), degraded (0.5) or "
	               "down (0).\n# TYPE stockade_up gauge\nstockade_up %s\n",
	               h == APP_HEALTH_OK         ? "1"
	               : h == APP_HEALTH_DEGRADED ? "0.5"
	                                          : "0");
	int r = http_reply_bytes(req, 200, "text/plain; version=0.0.4; charset=utf-8",
	                         b.data ? b.data : "", b.len);
	st_buf_release(&b);
	return r;
}

static int h_migrations_get(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	if (!app->store)
		return http_reply_error(req, 404, "not_found", "this process has no state store",
		                        NULL);
	json_t *st = NULL;
	struct st_error *err = NULL;
	if (store_migration_status(app->store, &st, &err) < 0) {
		int r = http_reply_error(req, 500, "internal", st_error_msg(err), NULL);
		st_error_free(err);
		return r;
	}
	return http_reply_json(req, 200, st);
}

static int h_migrations_post(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	if (!app->store)
		return http_reply_error(req, 404, "not_found", "this process has no state store",
		                        NULL);
	json_t *body = http_body_json(req);
	if (!body)
		return 0;
	const char *name = NULL;
	int ret = 0;
	static const char *const fields[] = {"name", NULL};
	if (!api_known_fields(req, body, NULL, fields) ||
	    !api_get_string(req, body, "name", true, 200, &name))
		goto out;
	struct st_error *err = NULL;
	int r = store_data_migration_retry(app->store, name, &err);
	if (r == 0) {
		json_t *st = NULL;
		struct st_error *e2 = NULL;
		(void)store_data_migrations_start(app->store, &e2);
		st_error_free(e2);
		if (store_migration_status(app->store, &st, &e2) < 0) {
			st_error_free(e2);
			st = json_null();
		}
		ret = http_reply_json(
		    req, 202,
		    json_pack("{s:s,s:s,s:o}", "name", name, "state", "pending", "status", st));
	} else if (r == -EBUSY) {
		ret = http_reply_error(req, 409, "migration_running",
		                       "the migration is running: a retry is refused until it ends",
		                       json_pack("{s:s}", "name", name));
	} else if (r == -EALREADY) {
		ret = http_reply_error(req, 409, "migration_done",
		                       "the migration already completed: nothing to retry",
		                       json_pack("{s:s}", "name", name));
	} else if (r == -ENOENT) {
		ret = http_reply_error(req, 404, "not_found", st_error_msg(err),
		                       json_pack("{s:s}", "field", "name"));
	} else {
		ret = http_reply_error(req, 500, "internal", st_error_msg(err), NULL);
	}
	st_error_free(err);
out:
	json_decref(body);
	return ret;
}

static enum app_health migrations_health(void *ctx, char **detail)
{
	struct app *app = ctx;
	json_t *st = NULL;
	struct st_error *err = NULL;
	if (store_migration_status(app->store, &st, &err) < 0) {
		*detail = st_xasprintf("cannot read migration status: %s", st_error_msg(err));
		st_error_free(err);
		return APP_HEALTH_DEGRADED;
	}
	json_t *failed = json_object_get(st, "failed");
	enum app_health h = APP_HEALTH_OK;
	if (json_array_size(failed) > 0) {
		char *names = json_dumps(failed, JSON_COMPACT);
		*detail = st_xasprintf("data migration failed: %s; the service keeps working; "
		                       "retry with POST /api/v1/admin/migrations {\"name\": ...}",
		                       names ? names : "?");
		free(names);
		h = APP_HEALTH_DEGRADED;
	} else if (json_array_size(json_object_get(st, "running")) > 0) {
		*detail = st_xstrdup("data migration running");
	}
	json_decref(st);
	return h;
}

int api_register_ops(struct http_server *srv, struct app *app, struct st_error **err)
{
	const struct http_route_spec routes[] = {
	    {"GET", "/healthz", h_healthz, app, HTTP_AUTH_NONE | HTTP_ROUTE_NO_LOG, NULL, 0, NULL},
	    {"GET", "/readyz", h_readyz, app, HTTP_AUTH_NONE | HTTP_ROUTE_NO_LOG, NULL, 0, NULL},
	    {"GET", "/metrics", h_metrics, app, HTTP_AUTH_NONE | HTTP_ROUTE_NO_LOG, NULL, 0, NULL},
	    {"GET", "/api/checkHealth", h_healthz, app, HTTP_AUTH_NONE | HTTP_ROUTE_NO_LOG, NULL, 0,
	     NULL},
	    {"GET", "/api/health", h_healthz, app, HTTP_AUTH_NONE | HTTP_ROUTE_NO_LOG, NULL, 0,
	     NULL},
	    {"GET", "/api/readiness", h_readyz, app, HTTP_AUTH_NONE | HTTP_ROUTE_NO_LOG, NULL, 0,
	     NULL},
	    {"GET", "/api/v1/admin/migrations", h_migrations_get, app, HTTP_AUTH_API_TOKEN, "admin",
	     0, NULL},
	    {"POST", "/api/v1/admin/migrations", h_migrations_post, app, HTTP_AUTH_API_TOKEN,
	     "admin", 0, NULL},
	};
	for (size_t i = 0; i < ST_ARRAY_SIZE(routes); i++)
		if (http_route_ex(srv, &routes[i]) < 0)
			return st_error_make(err, EINVAL, "cannot register '%s'",
			                     routes[i].pattern);
	if (app->store)
		app_add_health_check(app, "migrations", migrations_health, app);
	return 0;
}
