/*
 * fuzz-api.c - libFuzzer target: any bytes as the JSON body of POST /api/v1/execute,
 * PUT /api/v1/functions/{name}, POST /api/v1/functions/run and
 * POST /api/v1/functions/{name}/invoke, through the real handlers (src/api) and the real
 * request accessors and replies (src/http), without a network: the routes are registered on an
 * HTTP server that is never started, and each input is handed to the matched handler on a
 * connection record built here (its MHD connection is NULL, so the reply is built in full and
 * then dropped by libmicrohttpd).
 *
 * No code runs: the engine pools are stand-ins that are never dereferenced, because the app is
 * marked stopping after registration, so a request that passes validation is answered 503
 * right where it would be executed. Function definitions are stored in a temp SQLite store.
 * First byte: which route; the rest: the body.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "http/http-internal.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct http_server *g_srv;
static struct app g_app;
static char g_dir[64];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	remove(p);
	return 0;
}

static void cleanup(void)
{
	if (g_dir[0])
		nftw(g_dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(g_dir, sizeof(g_dir), "%s/fuzz-api-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(g_dir))
		abort();
	atexit(cleanup);
	st_log_set_level(ST_LOG_ERROR);
	app_init(&g_app);
	char db[128];
	snprintf(db, sizeof(db), "%s/stockade.db", g_dir);
	struct st_error *err = NULL;
	if (store_open_sqlite(db, "stockade", &g_app.store, &err) < 0) {
		fprintf(stderr, "fuzz-api: %s\n", st_error_msg(err));
		abort();
	}
	if (http_server_new("127.0.0.1:0", NULL, &g_srv, &err) < 0) {
		fprintf(stderr, "fuzz-api: %s\n", st_error_msg(err));
		abort();
	}
	/* Stand-ins: registration sees pools already started and does not start engines. */
	static char fake_pool;
	g_app.pool_exec = (struct engine_pool *)(void *)&fake_pool;
	g_app.pool_fn = g_app.pool_exec;
	if (api_register_exec(g_srv, &g_app, &err) < 0 ||
	    api_register_functions(g_srv, &g_app, &err) < 0) {
		fprintf(stderr, "fuzz-api: %s\n", st_error_msg(err));
		abort();
	}
	g_app.stopping = 1; /* validated requests get 503 instead of reaching the stand-ins */
}

static void conn_release(struct http__conn *c)
{
	for (size_t i = 0; i < c->nparams; i++) {
		free(c->param_names[i]);
		free(c->param_values[i]);
	}
	for (size_t i = 0; i < c->nhdrs; i++) {
		free(c->hdrs[i].name);
		free(c->hdrs[i].value);
	}
	free(c->hdrs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!g_srv)
		setup();
	if (size < 1)
		return 0;
	static const char *const routes[][2] = {
	    {"POST", "/api/v1/execute"},
	    {"PUT", "/api/v1/functions/fuzz-fn"},
	    {"POST", "/api/v1/functions/run"},
	    {"POST", "/api/v1/functions/fuzz-fn/invoke"},
	};
	const char *method = routes[data[0] % 4][0], *path = routes[data[0] % 4][1];
	/* the server keeps bodies NUL-terminated (extra byte not counted) */
	size_t n = size - 1;
	char *body = malloc(n + 1);
	if (!body)
		abort();
	memcpy(body, data + 1, n);
	body[n] = '\0';

	struct http__conn c;
	memset(&c, 0, sizeof(c));
	c.srv = g_srv;
	c.body_fd = -1;
	snprintf(c.request_id, sizeof(c.request_id), "fuzz");
	char allow[128];
	struct http__route *r = http__route_match(g_srv, &c, method, path, allow, sizeof(allow));
	if (!r)
		abort();
	c.route = r;
	c.req = (struct http_request){.method = method,
	                              .path = path,
	                              .raw_path = path,
	                              .route = r->pattern,
	                              .client_addr = "127.0.0.1:1",
	                              .request_id = c.request_id,
	                              .principal = "fuzz",
	                              .body = body,
	                              .body_len = n,
	                              .body_fd = -1,
	                              .deadline_ms = st_now_ms() + 10000,
	                              .priv = &c};
	r->handler(&c.req, r->ctx);
	conn_release(&c);
	free(body);
	return 0;
}
