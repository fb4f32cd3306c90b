/*
 * api-internal.h - shared by api-*.c: starting engine pools from config, running one
 * execution and answering with the SPEC §5 result shape, execution metrics.
 */
#ifndef STOCKADE_API_INTERNAL_H
#define STOCKADE_API_INTERNAL_H

#include "api/api.h"
#include "config/config.h"
#include "engine/engine.h"
#include "store/store.h"

/*
 * While the engine implementation is not in the tree yet, reference it weakly so the server
 * (ops, functions CRUD) still links; start_pool() then reports that the engine is missing.
 * Once src/engine/engine.c exists the references are ordinary strong ones.
 */
#if !__has_include("engine/engine.c")
#pragma weak engine_pool_options_init
#pragma weak engine_pool_new
#pragma weak engine_pool_shutdown
#pragma weak engine_request_init
#pragma weak engine_execute
#pragma weak engine_result_release
#pragma weak engine_result_to_json
#pragma weak engine_pool_stats
#pragma weak engine_pool_is_ready
#pragma weak engine_pool_warnings
#pragma weak engine_language_parse
#pragma weak engine_language_name
#pragma weak engine_status_name
#define API_ENGINE_WEAK 1
#endif

/* Start (once) the pool a component needs: app->pool_exec (code-executor) or app->pool_fn
 * (js-executor: JS only, always jailed). Registers the shutdown hook and health check. */
int api__pool_exec(struct app *app, struct st_error **err);
int api__pool_fn(struct app *app, struct st_error **err);

/* Run req on pool and reply: 200 with the result for every execution that ran; 400 / 413 /
 * 429 / 503 for the admission errors of engine_execute. */
int api__execute_reply(struct http_request *hreq, struct app *app, struct engine_pool *pool,
                       const struct engine_request *ereq);

/* Limits a request is checked against (from config, else engine defaults). */
struct api__limits {
	uint64_t max_timeout_ms;
	uint64_t max_memory_mb;
	uint64_t max_code_bytes;
};
void api__limits(struct app *app, bool functions, struct api__limits *out);

/* Parse the optional timeoutMs / memoryMb fields; replies 400 and returns false when bad. */
bool api__parse_limits(struct http_request *req, json_t *body, const struct api__limits *lim,
                       struct engine_request *ereq);

#endif
