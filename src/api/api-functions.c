/*
 * api-functions.c - the js-executor API: stored, versioned JavaScript functions and ad-hoc runs.
 *
 *   PUT    /api/v1/functions/{name}          {code, description?} -> 201, a new version
 *   GET    /api/v1/functions                 list (latest version of each)
 *   GET    /api/v1/functions/{name}          latest, or ?version=N
 *   DELETE /api/v1/functions/{name}          every version
 *   POST   /api/v1/functions/{name}/invoke   {args, version?, timeoutMs?, memoryMb?}
 *   POST   /api/v1/functions/run             {code, args, timeoutMs?, memoryMb?}
 *
 * Storage: table {ns}functions in the state store (namespace "stockade", migration component
 * "functions"), one row per version. Versions of a name start at 1 and grow by one; a new
 * version is allocated inside a transaction (BEGIN IMMEDIATE on SQLite, a unique key on
 * (name, version) everywhere), so concurrent PUTs never share a number. Only the newest
 * rr.jsExecutor.maxFunctionVersions versions are kept. Deleting a function removes every
 * version; a later PUT starts again at 1.
 *
 * Functions always run jailed (api__pool_fn refuses to start otherwise); `args` is in scope.
 */
#include <ctype.h>

#include "api/api-internal.h"

static const struct store_migration function_migrations[] = {
    {.version = 1,
     .name = "create-functions",
     .sql = "CREATE TABLE IF NOT EXISTS {ns}functions ("
            " name TEXT NOT NULL,"
            " version BIGINT NOT NULL,"
            " code TEXT NOT NULL,"
            " description TEXT,"
            " created_at BIGINT NOT NULL,"
            " created_by TEXT,"
            " PRIMARY KEY (name, version))"},
};

#define NAME_MAX_LEN 128
#define DESCRIPTION_MAX 4096

static bool name_ok(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > NAME_MAX_LEN || !isalnum((unsigned char)n[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(isalnum((unsigned char)n[i]) || n[i] == '_' || n[i] == '-' || n[i] == '.'))
			return false;
	return true;
}

static const char *get_name(struct http_request *req)
{
	const char *n = http_param(req, "name");
	if (!n || !name_ok(n)) {
		http_reply_bad_field(
		    req, "name",
		    "function name '%.140s' is invalid: use 1-128 letters, digits, "
		    "'_', '-' or '.', starting with a letter or digit",
		    n ? n : "");
		return NULL;
	}
	return n;
}

static int store_failure(struct http_request *req, struct st_error *err, const char *what)
{
	st_log(ST_LOG_ERROR, "%s: %s", what, st_error_msg(err));
	int r = http_reply_error(req, 500, "internal", what, NULL);
	st_error_free(err);
	return r;
}

static uint32_t max_versions(struct app *app)
{
	if (app->config && app->config->rr.js_executor.max_function_versions)
		return app->config->rr.js_executor.max_function_versions;
	return 20;
}

/* ---- PUT ---------------------------------------------------------------------------------- */

struct put_ctx {
	const char *name, *code, *description, *principal;
	int64_t now_ms;
	uint32_t keep;
	int64_t version;
};

static int put_tx(struct store *tx, void *ctx, struct st_error **err)
{
	struct put_ctx *p = ctx;
	struct store_value a[] = {store_text(p->name)};
	int64_t cur = 0;
	int r = store_query_int(
	    tx, "SELECT COALESCE(MAX(version), 0) FROM {ns}functions WHERE name = ?", a, 1, &cur,
	    err);
	if (r < 0)
		return r;
	p->version = cur + 1;
	struct store_value ins[] = {store_text(p->name),  store_int(p->version),
	                            store_text(p->code),  store_text(p->description),
	                            store_int(p->now_ms), store_text(p->principal)};
	r = store_exec(tx,
	               "INSERT INTO {ns}functions (name, version, code, description, created_at, "
	               "created_by) VALUES (?, ?, ?, ?, ?, ?)",
	               ins, ST_ARRAY_SIZE(ins), NULL, err);
	if (r < 0)
		return r;
	if (p->version > (int64_t)p->keep) {
		struct store_value del[] = {store_text(p->name), store_int(p->version - p->keep)};
		r = store_exec(tx, "DELETE FROM {ns}functions WHERE name = ? AND version <= ?", del,
		               2, NULL, err);
	}
	return r;
}

/* js-executor functions are JavaScript: a body may say so ("javascript" or "js"), nothing
   else. Replies 400 and returns false otherwise. */
static bool javascript_only(struct http_request *req, json_t *body)
{
	json_t *lang = json_object_get(body, "language");
	if (lang == NULL ||
	    (json_is_string(lang) && (strcmp(json_string_value(lang), "javascript") == 0 ||
	                              strcmp(json_string_value(lang), "js") == 0)))
		return true;
	http_reply_bad_field(req, "language",
	                     "js-executor runs JavaScript only: omit 'language' or use "
	                     "\"javascript\"");
	return false;
}

static int h_put(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	const char *name = get_name(req);
	if (!name)
		return 0;
	if (strcmp(name, "run") == 0)
		return http_reply_bad_field(req, "name",
		                            "function name 'run' is reserved (POST "
		                            "/api/v1/functions/run runs ad-hoc code)");
	json_t *body = http_body_json(req);
	if (!body)
		return 0;
	struct api__limits lim;
	api__limits(app, true, &lim);
	struct put_ctx p = {.name = name, .principal = req->principal, .keep = max_versions(app)};
	int ret = 0;
	static const char *const fields[] = {"code", "description", "language", NULL};
	if (!api_known_fields(req, body, NULL, fields) || !javascript_only(req, body) ||
	    !api_get_string(req, body, "code", true, lim.max_code_bytes, &p.code) ||
	    !api_get_string(req, body, "description", false, 0, &p.description))
		goto out;
	if (p.description && strlen(p.description) > DESCRIPTION_MAX) {
		ret = http_reply_bad_field(req, "description",
		                           "field 'description' is longer than %d bytes",
		                           DESCRIPTION_MAX);
		goto out;
	}
	p.now_ms = st_wall_s() * 1000;
	struct st_error *err = NULL;
	if (store_tx(app->store, put_tx, &p, &err) < 0) {
		ret = store_failure(req, err, "cannot store the function");
		goto out;
	}
	char loc[256];
	snprintf(loc, sizeof(loc), "/api/v1/functions/%s?version=%lld", name, (long long)p.version);
	http_reply_header(req, "Location", loc);
	ret = http_reply_json(req, 201,
	                      json_pack("{s:s,s:I,s:s?,s:I,s:s?}", "name", name, "version",
	                                (json_int_t)p.version, "description", p.description,
	                                "createdAt", (json_int_t)p.now_ms, "createdBy",
	                                req->principal));
out:
	json_decref(body);
	return ret;
}

/* ---- GET / DELETE --------------------------------------------------------------------------- */

/* Loads one version (0: latest) as {name, version, code, description, createdAt, createdBy}.
 * Returns -ENOENT when absent. */
static int load_function(struct app *app, const char *name, int64_t version, json_t **out,
                         struct st_error **err)
{
	json_t *row = NULL;
	int r;
	if (version > 0) {
		struct store_value a[] = {store_text(name), store_int(version)};
		r = store_query_one(
		    app->store,
		    "SELECT name, version, code, description, created_at, created_by "
		    "FROM {ns}functions WHERE name = ? AND version = ?",
		    a, 2, &row, err);
	} else {
		struct store_value a[] = {store_text(name)};
		r = store_query_one(
		    app->store,
		    "SELECT name, version, code, description, created_at, created_by "
		    "FROM {ns}functions WHERE name = ? ORDER BY version DESC LIMIT 1",
		    a, 1, &row, err);
	}
	if (r < 0)
		return r;
	json_t *o = json_pack(
	    "{s:O,s:O,s:O,s:O,s:O,s:O}", "name", json_object_get(row, "name"), "version",
	    json_object_get(row, "version"), "code", json_object_get(row, "code"), "description",
	    json_object_get(row, "description"), "createdAt", json_object_get(row, "created_at"),
	    "createdBy", json_object_get(row, "created_by"));
	json_decref(row);
	*out = o;
	return 0;
}

static bool parse_version(struct http_request *req, json_t *body, int64_t *version)
{
	*version = 0;
	if (body) {
		uint64_t v = 0;
		if (!api_get_uint(req, body, "version", false, 1, INT64_MAX, &v))
			return false;
		*version = (int64_t)v;
		return true;
	}
	const char *q = http_query(req, "version");
	if (!q)
		return true;
	if (strcmp(q, "latest") == 0)
		return true;
	if (st_parse_i64(q, version) < 0 || *version < 1) {
		http_reply_bad_field(req, "version",
		                     "query parameter 'version' is '%.40s': use a version number "
		                     "(1, 2, ...) or 'latest'",
		                     q);
		return false;
	}
	return true;
}

static int reply_not_found(struct http_request *req, const char *name, int64_t version)
{
	char msg[300];
	if (version > 0)
		snprintf(msg, sizeof(msg), "function '%s' has no version %lld", name,
		         (long long)version);
	else
		snprintf(msg, sizeof(msg), "function '%s' does not exist", name);
	return http_reply_error(req, 404, "not_found", msg, json_pack("{s:s}", "name", name));
}

static int h_get(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	const char *name = get_name(req);
	if (!name)
		return 0;
	int64_t version;
	if (!parse_version(req, NULL, &version))
		return 0;
	json_t *fn = NULL;
	struct st_error *err = NULL;
	int r = load_function(app, name, version, &fn, &err);
	if (r == -ENOENT) {
		st_error_free(err);
		return reply_not_found(req, name, version);
	}
	if (r < 0)
		return store_failure(req, err, "cannot read the function");
	json_t *versions = NULL;
	struct store_value a[] = {store_text(name)};
	if (store_query_json(app->store,
	                     "SELECT version FROM {ns}functions WHERE name = ? ORDER BY version", a,
	                     1, &versions, &err) < 0) {
		json_decref(fn);
		return store_failure(req, err, "cannot list the versions");
	}
	json_t *list = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(versions, i, v) json_array_append(list, json_object_get(v, "version"));
	json_decref(versions);
	json_object_set_new(fn, "versions", list);
	return http_reply_json(req, 200, fn);
}

static int h_list(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	json_t *rows = NULL;
	struct st_error *err = NULL;
	if (store_query_json(
	        app->store,
	        "SELECT f.name AS name, f.version AS latestVersion, f.description AS "
	        "description, f.created_at AS updatedAt, (SELECT COUNT(*) FROM "
	        "{ns}functions g WHERE g.name = f.name) AS versions FROM {ns}functions "
	        "f WHERE f.version = (SELECT MAX(version) FROM {ns}functions h WHERE "
	        "h.name = f.name) ORDER BY f.name",
	        NULL, 0, &rows, &err) < 0)
		return store_failure(req, err, "cannot list functions");
	return http_reply_json(req, 200, json_pack("{s:o}", "functions", rows));
}

static int h_delete(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	const char *name = get_name(req);
	if (!name)
		return 0;
	struct store_value a[] = {store_text(name)};
	int64_t changes = 0;
	struct st_error *err = NULL;
	if (store_exec(app->store, "DELETE FROM {ns}functions WHERE name = ?", a, 1, &changes,
	               &err) < 0)
		return store_failure(req, err, "cannot delete the function");
	if (changes == 0)
		return reply_not_found(req, name, 0);
	return http_reply_json(req, 200,
	                       json_pack("{s:s,s:b,s:I}", "name", name, "deleted", 1, "versions",
	                                 (json_int_t)changes));
}

/* ---- invoke / run --------------------------------------------------------------------------- */

static int h_invoke(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	const char *name = get_name(req);
	if (!name)
		return 0;
	json_t *body = NULL;
	if (req->body_len > 0) {
		body = http_body_json(req);
		if (!body)
			return 0;
	} else {
		body = json_object(); /* no body: args null, latest version */
	}
	int ret = 0;
	json_t *fn = NULL;
	int64_t version;
	struct api__limits lim;
	api__limits(app, true, &lim);
	struct engine_request ereq;
	engine_request_init(&ereq);
	static const char *const fields[] = {"args", "version", "timeoutMs", "memoryMb", NULL};
	if (!api_known_fields(req, body, NULL, fields) || !parse_version(req, body, &version) ||
	    !api__parse_limits(req, body, &lim, &ereq))
		goto out;
	struct st_error *err = NULL;
	int r = load_function(app, name, version, &fn, &err);
	if (r == -ENOENT) {
		st_error_free(err);
		ret = reply_not_found(req, name, version);
		goto out;
	}
	if (r < 0) {
		ret = store_failure(req, err, "cannot read the function");
		goto out;
	}
	ereq.language = ENGINE_LANG_JAVASCRIPT;
	ereq.code = json_string_value(json_object_get(fn, "code"));
	ereq.code_len = json_string_length(json_object_get(fn, "code"));
	ereq.params = json_object_get(body, "args");
	ereq.params_name = "args";
	ret = api__execute_reply(req, app, app->pool_fn, &ereq);
out:
	json_decref(fn);
	json_decref(body);
	return ret;
}

static int h_run(struct http_request *req, void *ctx)
{
	struct app *app = ctx;
	json_t *body = http_body_json(req);
	if (!body)
		return 0;
	struct api__limits lim;
	api__limits(app, true, &lim);
	struct engine_request ereq;
	engine_request_init(&ereq);
	const char *code = NULL;
	int ret = 0;
	static const char *const fields[] = {"code",      "args",     "language",
	                                     "timeoutMs", "memoryMb", NULL};
	if (!api_known_fields(req, body, NULL, fields) ||
	    !api_get_string(req, body, "code", true, lim.max_code_bytes, &code) ||
	    !api__parse_limits(req, body, &lim, &ereq) || !javascript_only(req, body))
		goto out;
	ereq.language = ENGINE_LANG_JAVASCRIPT;
	ereq.code = code;
	ereq.code_len = json_string_length(json_object_get(body, "code"));
	ereq.params = json_object_get(body, "args");
	ereq.params_name = "args";
	ret = api__execute_reply(req, app, app->pool_fn, &ereq);
out:
	json_decref(body);
	return ret;
}

int api_register_functions(struct http_server *srv, struct app *app, struct st_error **err)
{
	if (!app->store)
		return st_error_make(err, EINVAL, "js-executor needs the state store");
	int r = store_migrate(app->store, "functions", function_migrations,
	                      ST_ARRAY_SIZE(function_migrations), NULL, err);
	if (r < 0)
		return st_error_wrap(err, "cannot migrate the functions table");
	r = api__pool_fn(app, err);
	if (r < 0)
		return r;
	const struct stockade_config *cfg = app->config;
	size_t cap = 10 * 1024 * 1024;
	if (cfg && cfg->rr.js_executor.limits.max_code_bytes)
		cap = cfg->rr.js_executor.limits.max_code_bytes +
		      cfg->rr.js_executor.limits.max_params_bytes + 64 * 1024;
	const struct http_route_spec routes[] = {
	    {"GET", "/api/v1/functions", h_list, app, HTTP_AUTH_API_TOKEN, "functions", 0, NULL},
	    {"PUT", "/api/v1/functions/{name}", h_put, app, HTTP_AUTH_API_TOKEN, "functions", cap,
	     NULL},
	    {"GET", "/api/v1/functions/{name}", h_get, app, HTTP_AUTH_API_TOKEN, "functions", 0,
	     NULL},
	    {"DELETE", "/api/v1/functions/{name}", h_delete, app, HTTP_AUTH_API_TOKEN, "functions",
	     0, NULL},
	    {"POST", "/api/v1/functions/{name}/invoke", h_invoke, app, HTTP_AUTH_API_TOKEN,
	     "functions", cap, NULL},
	    {"POST", "/api/v1/functions/run", h_run, app, HTTP_AUTH_API_TOKEN, "functions", cap,
	     NULL},
	};
	for (size_t i = 0; i < ST_ARRAY_SIZE(routes); i++)
		if (http_route_ex(srv, &routes[i]) < 0)
			return st_error_make(err, EINVAL, "cannot register '%s'",
			                     routes[i].pattern);
	return 0;
}
