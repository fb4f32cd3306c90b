/*
 * api.h - the application object every component shares, and how components put their routes
 * on the one HTTP server.
 *
 * `stockade serve` builds one `struct app` (config, state store, blob store, engines, the HTTP
 * server), then calls the register function of every component its --role enables. A
 * component that is not part of the build is skipped: the functions below are declared weak,
 * so a binary without, say, the sandbox still links and `--role agent-sandbox` explains that
 * the component is missing.
 *
 * Roles (SPEC §1): code-executor, js-executor, agent-sandbox, mcp, git-server, or all (each
 * component the configuration enables). Ops routes (/healthz, /readyz, /metrics, the
 * chart-compatible health checks, /api/v1/admin/migrations) are served by every role.
 *
 * Lifecycle: app_init -> register components -> http_server_start -> ... SIGTERM ->
 * app_shutdown (stop accepting, run component shutdown hooks in reverse order so in-flight
 * executions finish or are killed at the deadline, stop the server) -> app_release.
 */
#ifndef STOCKADE_API_H
#define STOCKADE_API_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>

#include "common/common.h"
#include "http/http.h"

/* Owned by their subsystems; the app only holds pointers (NULL when not configured/built). */
struct stockade_config;
struct store;
struct blob_store;
struct engine_pool;

enum app_component {
	APP_CODE_EXECUTOR = 1 << 0,
	APP_JS_EXECUTOR = 1 << 1,
	APP_AGENT_SANDBOX = 1 << 2,
	APP_MCP = 1 << 3,
	APP_GIT_SERVER = 1 << 4,
};

enum app_health {
	APP_HEALTH_OK = 0,
	APP_HEALTH_DEGRADED = 1, /* serving, with a warning (unsandboxed mode, failed migration) */
	APP_HEALTH_DOWN = 2, /* not ready: /readyz answers 503 */
};

struct app_hook; /* private list entries */

struct app {
	char *data_dir;
	unsigned components; /* enum app_component bits this process serves */
	bool unsandboxed; /* code-executor mode: results say sandboxed:false */

	struct stockade_config *config; /* parsed stockade.yaml or the embedded default */
	struct store *store; /* state store, namespace "stockade" (SQLite / Postgres) */
	struct blob_store *blob; /* blob store (fs / S3 / Azure / GCS); NULL until a component
	                            that needs one opens it */
	/* Engine pools (engine/engine.h). pool_exec serves code-executor (JS + Python, jailed or
	 * unsandboxed per config); pool_fn serves js-executor (JS, always jailed) and is the same
	 * pool as pool_exec when that one is jailed. Owned by the component that started them. */
	struct engine_pool *pool_exec;
	struct engine_pool *pool_fn;
	struct http_server *http;

	pthread_mutex_t lock;
	struct app_hook *hooks; /* shutdown + health hooks */
	volatile int stopping;
};

void app_init(struct app *app);
void app_release(struct app *app);

/*
 * Health: each component adds a check; /healthz and /readyz aggregate them. fn fills *detail
 * (a short message, may stay NULL; heap, the caller frees) and returns an enum app_health.
 */
int app_add_health_check(struct app *app, const char *name,
                         enum app_health (*fn)(void *ctx, char **detail), void *ctx);
/* Run by app_shutdown, last registered first. deadline_ms is on the st_now_ms() clock. */
int app_on_shutdown(struct app *app, const char *name, void (*fn)(void *ctx, int64_t deadline_ms),
                    void *ctx);
/* Stop accepting requests, run shutdown hooks, stop the server within grace_ms. Idempotent. */
void app_shutdown(struct app *app, unsigned grace_ms);
/* Aggregate health as JSON: {"status":"ok|degraded|down","checks":{name:{status,detail}}}. */
json_t *app_health_json(struct app *app, enum app_health *overall);

/* ---- component registration --------------------------------------------------------------- */

typedef int (*api_register_fn)(struct http_server *srv, struct app *app, struct st_error **err);

/* Always built (this directory). */
int api_register_ops(struct http_server *srv, struct app *app, struct st_error **err);
int api_register_exec(struct http_server *srv, struct app *app, struct st_error **err);
int api_register_functions(struct http_server *srv, struct app *app, struct st_error **err);
/*
 * Built by their components. While a component's public header is absent from the tree the
 * symbol is declared weak, so the binary links without it; once the header exists the
 * reference is strong, so the linker pulls the component's object out of libstockade.a (a weak
 * reference alone would not) and a missing definition is a link error, not a silent gap.
 * Each component defines its function in its own directory (e.g. src/sandbox/sandbox-api.c).
 */
#if __has_include("sandbox/sandbox.h")
#define API_HAVE_SANDBOX 1
int api_register_sandbox(struct http_server *srv, struct app *app, struct st_error **err);
#else
int api_register_sandbox(struct http_server *srv, struct app *app, struct st_error **err)
    __attribute__((weak));
#endif
#if __has_include("mcp/mcp.h")
#define API_HAVE_MCP 1
int api_register_mcp(struct http_server *srv, struct app *app, struct st_error **err);
#else
int api_register_mcp(struct http_server *srv, struct app *app, struct st_error **err)
    __attribute__((weak));
#endif
#if __has_include("git/git.h")
#define API_HAVE_GIT 1
int api_register_git(struct http_server *srv, struct app *app, struct st_error **err);
#else
int api_register_git(struct http_server *srv, struct app *app, struct st_error **err)
    __attribute__((weak));
#endif

/* "code-executor" -> APP_CODE_EXECUTOR, "all" -> every bit; 0 for an unknown name. */
unsigned app_role_parse(const char *role);
const char *app_component_name(enum app_component c);
/* Register ops plus every component in app->components; fails naming a component that is not
 * part of this build. */
int api_register_all(struct http_server *srv, struct app *app, struct st_error **err);
/* Is the component's register function part of this binary? */
bool api_component_built(enum app_component c);

/* ---- components reaching each other (MCP drives the engines and the sandboxes) ------------- */

/* The code-executor engine pool, started on first use (configured limits and mode). */
int api_engine_pool(struct app *app, struct engine_pool **out, struct st_error **err);
/* The agent sandbox manager of this process, or NULL when the component does not run here. */
struct sandbox_mgr;
struct sandbox_mgr *api_sandbox_mgr(void)
#if !defined(API_HAVE_SANDBOX)
    __attribute__((weak))
#endif
    ;

/* ---- shared helpers for component handlers ----------------------------------------------- */

/* Validation helpers: on a bad field they reply 400 naming it and return false. */
bool api_get_string(struct http_request *req, json_t *obj, const char *field, bool required,
                    size_t max_len, const char **out);
bool api_get_uint(struct http_request *req, json_t *obj, const char *field, bool required,
                  uint64_t min, uint64_t max, uint64_t *out);
/* Refuse a member of JSON object `obj` that is not in `known` (NULL-terminated): replies 400
   naming it (as "where.name" for a nested object), the accepted names and the likeliest one
   meant, and returns false. A misspelt optional field would otherwise be silently ignored. */
bool api_known_fields(struct http_request *req, json_t *obj, const char *where,
                      const char *const *known);
/* Reply 429 / 503 with Retry-After. */
int api_reply_busy(struct http_request *req, unsigned status, unsigned retry_after_s,
                   const char *code, const char *message);

#endif
