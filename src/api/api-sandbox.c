/*
 * api-sandbox.c - HTTP routes of the agent sandbox (docs/agent-sandbox.md has the reference):
 *
 *   POST   /api/v1/sandboxes                      create (fromSnapshot, env, network, timeouts)
 *   GET    /api/v1/sandboxes                      the caller's sandboxes
 *   GET    /api/v1/sandboxes/{id}                 one
 *   DELETE /api/v1/sandboxes/{id}
 *   POST   /api/v1/sandboxes/{id}/exec            run; ?stream=ndjson|sse streams the output
 *   GET    /api/v1/sandboxes/{id}/files?path=     download a file, or list a directory
 *   PUT    /api/v1/sandboxes/{id}/files?path=     upload (body streamed to a spool file)
 *   DELETE /api/v1/sandboxes/{id}/files?path=[&recursive=true]
 *   POST   /api/v1/sandboxes/{id}/files/mkdir?path=
 *   GET    /api/v1/sandboxes/{id}/files/list?path=
 *   POST   /api/v1/sandboxes/{id}/pause | /resume | /snapshots
 *   GET    /api/v1/sandboxes/{id}/snapshots       that sandbox's snapshots (the caller's)
 *   GET    /api/v1/snapshots                      the caller's snapshots (?sandboxId= narrows)
 *   GET    /api/v1/snapshots/{id}
 *   DELETE /api/v1/snapshots/{id}                 record and object
 *   POST   /sandboxes/{id}/exec                   direct exec with that sandbox's token
 *   *      /sandboxes/{id}/ports/{port}/...       preview proxy (sandbox token, not API token)
 *
 * The API principal (token name / JWT sub) owns the sandboxes and snapshots it creates; another
 * principal gets 404 for them. Direct exec accepts only `Authorization: Bearer <sandbox token>`
 * (never the query parameter or the cookie, so a page served by the preview cannot run
 * commands through a browser's cookie). The preview proxy authenticates with the sandbox's ES256 token from
 * `Authorization: Bearer`, the `stockade_token` query parameter (which also sets a cookie
 * scoped to that sandbox's path and is stripped before forwarding), or that cookie.
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include "api/api.h"
#include "blob/blob.h"
#include "config/config.h"
#include "sandbox/sandbox.h"
#include "store/store.h"

#define OUTPUT_CAP (1024 * 1024)
#define TOKEN_COOKIE "stockade_sandbox_token"

static struct sandbox_mgr *g_mgr;
static struct blob_store *g_blob_owned;
static struct store *g_store; /* namespace agent_executor */

/* ---- error mapping ----------------------------------------------------------------------- */

static int reply_err(struct http_request *req, int r, struct st_error *err)
{
	const char *msg = st_error_msg(err);
	switch (-r) {
	case EAGAIN: return api_reply_busy(req, 429, 1, "sandbox_limit", msg);
	case ENOENT: return http_reply_error(req, 404, "not_found", msg, NULL);
	case EINVAL:
	case ENAMETOOLONG:
	case E2BIG: return http_reply_error(req, 400, "invalid_request", msg, NULL);
	case EPERM: return http_reply_error(req, 403, "path_outside_workspace", msg, NULL);
	case EACCES:
		if (strstr(msg, "snapshot"))
			return http_reply_error(req, 422, "snapshot_invalid", msg, NULL);
		return http_reply_error(req, 503, "sandbox_unavailable", msg, NULL);
	case EBUSY: return http_reply_error(req, 409, "sandbox_paused", msg, NULL);
	case ESRCH: return http_reply_error(req, 410, "sandbox_lost", msg, NULL);
	case EISDIR:
	case ENOTDIR:
	case EEXIST:
	case ENOTEMPTY:
	case ELOOP: return http_reply_error(req, 409, "conflict", msg, NULL);
	case EFBIG:
	case ENOSPC: return http_reply_error(req, 413, "too_large", msg, NULL);
	default: return http_reply_error(req, 500, "internal", msg, NULL);
	}
}

static const char *owner_of(struct http_request *req)
{
	return req->principal ? req->principal : "anonymous";
}

/* ---- create / list / get / delete --------------------------------------------------------------- */

static int h_create(struct http_request *req, void *ctx)
{
	(void)ctx;
	json_t *body = req->body_len ? http_body_json(req) : json_object();
	if (!body)
		return 0;
	struct sandbox_create_opts o = {.owner = owner_of(req)};
	const char *snap = NULL;
	static const char *const fields[] = {"fromSnapshot", "env", "network", "timeouts", NULL};
	if (!api_known_fields(req, body, NULL, fields) ||
	    !api_get_string(req, body, "fromSnapshot", false, 64, &snap))
		goto done;
	o.from_snapshot = snap;
	json_t *env = json_object_get(body, "env");
	if (env && !json_is_object(env)) {
		http_reply_bad_field(req, "env", "'env' must be an object of strings");
		goto done;
	}
	o.env = env;
	json_t *net = json_object_get(body, "network");
	const char **domains = NULL;
	if (net) {
		if (!json_is_object(net)) {
			http_reply_bad_field(req, "network", "'network' must be an object");
			goto done;
		}
		static const char *const net_fields[] = {"allowEgress", "allowedDomains", NULL};
		if (!api_known_fields(req, net, "network", net_fields))
			goto done;
		json_t *ae = json_object_get(net, "allowEgress");
		if (ae && !json_is_boolean(ae)) {
			http_reply_bad_field(req, "network.allowEgress",
			                     "'network.allowEgress' must be true or false");
			goto done;
		}
		o.allow_egress = json_is_true(ae);
		json_t *ad = json_object_get(net, "allowedDomains");
		if (ad) {
			if (!json_is_array(ad) || json_array_size(ad) > 64) {
				http_reply_bad_field(
				    req, "network.allowedDomains",
				    "'network.allowedDomains' must be a list of domain suffixes");
				goto done;
			}
			domains = st_xcalloc(json_array_size(ad) + 1, sizeof(char *));
			for (size_t i = 0; i < json_array_size(ad); i++) {
				const char *d = json_string_value(json_array_get(ad, i));
				if (!d || !*d || strlen(d) > 253) {
					free(domains);
					http_reply_bad_field(req, "network.allowedDomains",
					                     "'network.allowedDomains' entries "
					                     "must be domain names");
					goto done;
				}
				domains[i] = d;
			}
			o.allowed_domains = domains;
		}
	}
	json_t *t = json_object_get(body, "timeouts");
	if (t && !json_is_object(t)) {
		http_reply_bad_field(req, "timeouts",
		                     "'timeouts' must be an object: {idleTimeoutMs, lifetimeMs}");
		goto done_d;
	}
	static const char *const t_fields[] = {"idleTimeoutMs", "lifetimeMs", NULL};
	if (t && !api_known_fields(req, t, "timeouts", t_fields))
		goto done_d;
	if (t) {
		uint64_t v;
		if (!api_get_uint(req, t, "idleTimeoutMs", false, 1, UINT32_MAX, &v))
			goto done_d;
		if (json_object_get(t, "idleTimeoutMs"))
			o.idle_timeout_ms = v;
		if (!api_get_uint(req, t, "lifetimeMs", false, 1, UINT64_MAX >> 1, &v))
			goto done_d;
		if (json_object_get(t, "lifetimeMs"))
			o.lifetime_ms = v;
	}
	{
		json_t *out = NULL;
		struct st_error *err = NULL;
		int r = sandbox_create(g_mgr, &o, &out, &err);
		if (r < 0)
			reply_err(req, r, err);
		else
			http_reply_json(req, 201, out);
		st_error_free(err);
	}
done_d:
	free(domains);
done:
	json_decref(body);
	return 0;
}

static int h_list(struct http_request *req, void *ctx)
{
	(void)ctx;
	return http_reply_json(req, 200,
	                       json_pack("{s:o}", "sandboxes", sandbox_list(g_mgr, owner_of(req))));
}

/* Answer a call that returned r: its JSON out with status on success (out may be built from
   results that are only valid then: it is dropped on failure), the error otherwise. Frees
   err. */
static void reply_result(struct http_request *req, int r, struct st_error *err, int status,
                         json_t *out)
{
	if (r < 0) {
		json_decref(out);
		reply_err(req, r, err);
	} else {
		http_reply_json(req, status, out);
	}
	st_error_free(err);
}

static int h_get(struct http_request *req, void *ctx)
{
	(void)ctx;
	json_t *out = NULL;
	struct st_error *err = NULL;
	int r = sandbox_get(g_mgr, owner_of(req), http_param(req, "id"), &out, &err);
	reply_result(req, r, err, 200, out);
	return 0;
}

static int h_delete(struct http_request *req, void *ctx)
{
	(void)ctx;
	struct st_error *err = NULL;
	int r = sandbox_destroy(g_mgr, owner_of(req), http_param(req, "id"), &err);
	if (r < 0)
		reply_err(req, r, err);
	else
		http_reply_json(req, 200,
		                json_pack("{s:s,s:b}", "id", http_param(req, "id"), "deleted", 1));
	st_error_free(err);
	return 0;
}

static int h_state(struct http_request *req, void *ctx)
{
	bool pause = ctx != NULL;
	struct st_error *err = NULL;
	const char *id = http_param(req, "id");
	int r = pause ? sandbox_pause(g_mgr, owner_of(req), id, &err)
	              : sandbox_resume(g_mgr, owner_of(req), id, &err);
	if (r < 0) {
		reply_err(req, r, err);
	} else {
		json_t *out = NULL;
		if (sandbox_get(g_mgr, owner_of(req), id, &out, NULL) < 0)
			out = json_pack("{s:s}", "id", id);
		http_reply_json(req, 200, out);
	}
	st_error_free(err);
	return 0;
}

static int h_snapshot(struct http_request *req, void *ctx)
{
	(void)ctx;
	json_t *out = NULL;
	struct st_error *err = NULL;
	int r = sandbox_snapshot(g_mgr, owner_of(req), http_param(req, "id"), &out, &err);
	reply_result(req, r, err, 201, out);
	return 0;
}

static int h_snapshot_list(struct http_request *req, void *ctx)
{
	/* ctx set: /sandboxes/{id}/snapshots; else /snapshots with an optional ?sandboxId= */
	const char *sid = ctx ? http_param(req, "id") : http_query(req, "sandboxId");
	json_t *list = NULL;
	struct st_error *err = NULL;
	int r = sandbox_snapshot_list(g_mgr, owner_of(req), sid, &list, &err);
	reply_result(req, r, err, 200, json_pack("{s:o}", "snapshots", list));
	return 0;
}

static int h_snapshot_get(struct http_request *req, void *ctx)
{
	(void)ctx;
	json_t *out = NULL;
	struct st_error *err = NULL;
	int r = sandbox_snapshot_get(g_mgr, owner_of(req), http_param(req, "id"), &out, &err);
	reply_result(req, r, err, 200, out);
	return 0;
}

static int h_snapshot_delete(struct http_request *req, void *ctx)
{
	(void)ctx;
	struct st_error *err = NULL;
	const char *id = http_param(req, "id");
	int r = sandbox_snapshot_delete(g_mgr, owner_of(req), id, &err);
	if (r == -EBUSY) {
		http_reply_header(req, "Retry-After", "5");
		http_reply_error(req, 409, "snapshot_busy", st_error_msg(err), NULL);
	} else if (r < 0) {
		reply_err(req, r, err);
	} else {
		http_reply_json(req, 200, json_pack("{s:s,s:b}", "id", id, "deleted", 1));
	}
	st_error_free(err);
	return 0;
}

/* ---- exec ---------------------------------------------------------------------------------- */

struct exec_job {
	struct sandbox_exec_req rq;
	json_t *body;
	const char **args;
	char *owner, *id;
	bool sse;
	/* sync collection */
	struct st_buf out, errb;
	bool out_trunc, err_trunc;
	struct http_stream *stream;
};

static int collect_out(void *ctx, int stream, const void *data, size_t n)
{
	struct exec_job *j = ctx;
	if (stream == 1) {
		if (!st_buf_append_trunc(&j->out, data, n))
			j->out_trunc = true;
	} else if (!st_buf_append_trunc(&j->errb, data, n)) {
		j->err_trunc = true;
	}
	return 0;
}

static int stream_out(void *ctx, int stream, const void *data, size_t n)
{
	struct exec_job *j = ctx;
	json_t *ev =
	    json_pack("{s:s,s:s%}", "type", stream == 1 ? "stdout" : "stderr", "data", data, n);
	if (!ev) /* not valid UTF-8: send it base64-free but lossy-safe as an escaped string */
		ev = json_pack("{s:s,s:s}", "type", stream == 1 ? "stdout" : "stderr", "dataError",
		               "output chunk is not valid UTF-8");
	if (j->sse) {
		cleanup_free char *s = json_dumps(ev, JSON_COMPACT);
		json_decref(ev);
		return http_stream_sse(j->stream, stream == 1 ? "stdout" : "stderr", NULL, s);
	}
	return http_stream_ndjson(j->stream, ev);
}

static json_t *result_json(const struct sandbox_exec_result *res)
{
	return json_pack("{s:i,s:i,s:b,s:I,s:i}", "exitCode", res->exit_code, "signal", res->signal,
	                 "timedOut", res->timed_out, "wallMs", (json_int_t)res->wall_ms, "pid",
	                 res->pid);
}

static void job_free(struct exec_job *j)
{
	json_decref(j->body);
	free(j->args);
	free(j->owner);
	free(j->id);
	st_buf_release(&j->out);
	st_buf_release(&j->errb);
	free(j);
}

static void exec_stream_thread(struct http_stream *s, void *ctx)
{
	struct exec_job *j = ctx;
	j->stream = s;
	struct sandbox_exec_result res;
	struct st_error *err = NULL;
	int r = sandbox_exec(g_mgr, j->owner, j->id, &j->rq, stream_out, j, &res, &err);
	json_t *ev;
	if (r < 0)
		ev = json_pack("{s:s,s:s}", "type", "error", "message", st_error_msg(err));
	else {
		ev = result_json(&res);
		json_object_set_new(ev, "type", json_string("exit"));
	}
	if (j->sse) {
		cleanup_free char *txt = json_dumps(ev, JSON_COMPACT);
		json_decref(ev);
		http_stream_sse(s, r < 0 ? "error" : "exit", NULL, txt);
	} else {
		http_stream_ndjson(s, ev);
	}
	st_error_free(err);
	job_free(j);
}

/* owner NULL: direct exec, already authorised by the sandbox's own token. */
static int exec_as(struct http_request *req, const char *owner)
{
	json_t *body = http_body_json(req);
	if (!body)
		return 0;
	struct exec_job *j = st_xcalloc(1, sizeof(*j));
	j->body = body;
	st_buf_init(&j->out, OUTPUT_CAP);
	st_buf_init(&j->errb, OUTPUT_CAP);
	j->owner = owner ? st_xstrdup(owner) : NULL;
	j->id = st_xstrdup(http_param(req, "id"));
	const char *cmd = NULL, *cwd = NULL, *in = NULL;
	uint64_t timeout = 0;
	static const char *const fields[] = {"cmd",       "args",       "cwd",    "env", "stdin",
	                                     "timeoutMs", "background", "stream", NULL};
	if (!api_known_fields(req, body, NULL, fields) ||
	    !api_get_string(req, body, "cmd", true, 4096, &cmd) ||
	    !api_get_string(req, body, "cwd", false, 4096, &cwd) ||
	    !api_get_string(req, body, "stdin", false, 64 << 20, &in) ||
	    !api_get_uint(req, body, "timeoutMs", false, 1, 24ull * 3600 * 1000, &timeout))
		goto fail;
	json_t *args = json_object_get(body, "args");
	if (args && (!json_is_array(args) || json_array_size(args) > 4096)) {
		http_reply_bad_field(req, "args", "'args' must be a list of strings");
		goto fail;
	}
	j->args = st_xcalloc(json_array_size(args) + 1, sizeof(char *));
	for (size_t i = 0; args && i < json_array_size(args); i++) {
		const char *a = json_string_value(json_array_get(args, i));
		if (!a) {
			http_reply_bad_field(req, "args", "'args' must be a list of strings");
			goto fail;
		}
		j->args[i] = a;
	}
	json_t *env = json_object_get(body, "env");
	if (env && !json_is_object(env)) {
		http_reply_bad_field(req, "env", "'env' must be an object of strings");
		goto fail;
	}
	j->rq.cmd = cmd;
	j->rq.args = j->args;
	j->rq.cwd = cwd;
	j->rq.env = env;
	if (in) {
		j->rq.stdin_data = in;
		j->rq.stdin_len = strlen(in);
	}
	j->rq.timeout_ms = timeout;
	json_t *bg = json_object_get(body, "background");
	if (bg && !json_is_boolean(bg)) {
		http_reply_bad_field(req, "background", "'background' must be true or false");
		goto fail;
	}
	j->rq.background = json_is_true(bg);

	/* Streaming: ?stream=ndjson|sse, or "stream" in the body: true (NDJSON), false, or the
	   format's name. */
	const char *stream = http_query(req, "stream");
	json_t *bs = json_object_get(body, "stream");
	if (bs && !json_is_boolean(bs) && !json_is_string(bs)) {
		http_reply_bad_field(req, "stream", "'stream' must be true, false, ndjson or sse");
		goto fail;
	}
	if (!stream && json_is_true(bs))
		stream = "ndjson";
	else if (!stream && json_is_string(bs))
		stream = json_string_value(bs);
	if (stream && !j->rq.background) {
		if (strcmp(stream, "ndjson") && strcmp(stream, "sse") && strcmp(stream, "true") &&
		    strcmp(stream, "1")) {
			http_reply_bad_field(req, "stream", "'stream' must be ndjson or sse");
			goto fail;
		}
		j->sse = !strcmp(stream, "sse");
		return http_reply_stream_thread(
		    req, 200, j->sse ? "text/event-stream" : "application/x-ndjson",
		    exec_stream_thread, j);
	}
	struct sandbox_exec_result res;
	struct st_error *err = NULL;
	int r = sandbox_exec(g_mgr, j->owner, j->id, &j->rq, collect_out, j, &res, &err);
	if (r == -EAGAIN && st_str_has_prefix(st_error_msg(err), "cannot run")) {
		/* The sandbox's own process limit is full (e.g. a fork bomb inside): not the
		   request's fault, and it may pass once those processes are gone. */
		api_reply_busy(req, 503, 2, "sandbox_process_limit", st_error_msg(err));
	} else if (r < 0 && r != -ENOENT && st_str_has_prefix(st_error_msg(err), "cannot run")) {
		http_reply_error(req, 400, "command_not_runnable", st_error_msg(err), NULL);
	} else if (r < 0 && st_str_has_prefix(st_error_msg(err), "cannot run")) {
		http_reply_error(req, 400, "command_not_found", st_error_msg(err), NULL);
	} else if (r < 0) {
		reply_err(req, r, err);
	} else {
		json_t *out = result_json(&res);
		json_object_set_new(out, "stdout",
		                    json_stringn(j->out.data ? j->out.data : "", j->out.len));
		json_object_set_new(out, "stderr",
		                    json_stringn(j->errb.data ? j->errb.data : "", j->errb.len));
		if (j->out_trunc || j->err_trunc)
			json_object_set_new(out, "outputTruncated", json_true());
		http_reply_json(req, 200, out);
	}
	st_error_free(err);
fail:
	job_free(j);
	return 0;
}

static int h_exec(struct http_request *req, void *ctx)
{
	(void)ctx;
	return exec_as(req, owner_of(req));
}

/* POST /sandboxes/{id}/exec: the same request and reply as the API route, authenticated by that
 * sandbox's ES256 token (SPEC: sandbox access, direct exec) instead of an API token. */
static int h_exec_direct(struct http_request *req, void *ctx)
{
	(void)ctx;
	const char *tok = http_bearer_token(req);
	struct st_error *err = NULL;
	if (!tok || sandbox_token_check(g_mgr, http_param(req, "id"), tok, &err) < 0) {
		int r = http_reply_error(req, 401, "invalid_sandbox_token",
		                         tok ? st_error_msg(err)
		                             : "missing sandbox token: send 'Authorization: Bearer "
		                               "<the token create returned>'",
		                         NULL);
		st_error_free(err);
		return r;
	}
	return exec_as(req, NULL);
}

/* ---- files --------------------------------------------------------------------------------- */

static int to_fd(void *ctx, const void *data, size_t n)
{
	int fd = *(int *)ctx;
	return st_write_all(fd, data, n) < 0 ? -EIO : 0;
}

static int reply_listing(struct http_request *req, const char *path)
{
	json_t *list = NULL;
	struct st_error *err = NULL;
	int r = sandbox_file_list(g_mgr, owner_of(req), http_param(req, "id"), path, &list, &err);
	reply_result(req, r, err, 200, json_pack("{s:s,s:o}", "path", path, "entries", list));
	return 0;
}

static int h_files_get(struct http_request *req, void *ctx)
{
	(void)ctx;
	const char *path = http_query(req, "path");
	if (!path)
		path = "";
	if (!*path || st_str_has_suffix(path, "/"))
		return reply_listing(req, path);
	/* Spool to an unlinked temp file so the reply carries a Content-Length and a failure
	 * half-way becomes a clean error instead of a truncated 200. */
	int fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return http_reply_error(req, 500, "internal", "cannot create a spool file", NULL);
	uint64_t size = 0;
	struct st_error *err = NULL;
	int r = sandbox_file_read(g_mgr, owner_of(req), http_param(req, "id"), path, to_fd, &fd,
	                          &size, &err);
	if (r == -EISDIR) {
		close(fd);
		st_error_free(err);
		return reply_listing(req, path);
	}
	if (r < 0) {
		close(fd);
		reply_err(req, r, err);
		st_error_free(err);
		return 0;
	}
	off_t end = lseek(fd, 0, SEEK_END);
	lseek(fd, 0, SEEK_SET);
	return http_reply_fd(req, 200, "application/octet-stream", fd, (uint64_t)end);
}

static int h_files_list(struct http_request *req, void *ctx)
{
	(void)ctx;
	const char *path = http_query(req, "path");
	return reply_listing(req, path ? path : "");
}

static int h_files_put(struct http_request *req, void *ctx)
{
	(void)ctx;
	const char *path = http_query(req, "path");
	if (!path || !*path)
		return http_reply_bad_field(req, "path", "the 'path' query parameter is required");
	struct st_error *err = NULL;
	uint64_t written = 0;
	int r;
	if (req->body_fd >= 0)
		r = sandbox_file_write_fd(g_mgr, owner_of(req), http_param(req, "id"), path,
		                          req->body_fd, &written, &err);
	else {
		r = sandbox_file_write(g_mgr, owner_of(req), http_param(req, "id"), path, req->body,
		                       req->body_len, &err);
		written = req->body_len;
	}
	if (r < 0)
		reply_err(req, r, err);
	else
		http_reply_json(req, 201,
		                json_pack("{s:s,s:I}", "path", path, "size", (json_int_t)written));
	st_error_free(err);
	return 0;
}

static int h_files_delete(struct http_request *req, void *ctx)
{
	(void)ctx;
	const char *path = http_query(req, "path");
	if (!path || !*path)
		return http_reply_bad_field(req, "path", "the 'path' query parameter is required");
	const char *rec = http_query(req, "recursive");
	bool recursive = rec && (!strcmp(rec, "true") || !strcmp(rec, "1"));
	struct st_error *err = NULL;
	int r =
	    sandbox_file_delete(g_mgr, owner_of(req), http_param(req, "id"), path, recursive, &err);
	reply_result(req, r, err, 200, json_pack("{s:s,s:b}", "path", path, "deleted", 1));
	return 0;
}

static int h_files_mkdir(struct http_request *req, void *ctx)
{
	(void)ctx;
	const char *path = http_query(req, "path");
	if (!path || !*path)
		return http_reply_bad_field(req, "path", "the 'path' query parameter is required");
	struct st_error *err = NULL;
	int r = sandbox_file_mkdir(g_mgr, owner_of(req), http_param(req, "id"), path, &err);
	reply_result(req, r, err, 201, json_pack("{s:s,s:s}", "path", path, "type", "dir"));
	return 0;
}

/* ---- preview proxy ------------------------------------------------------------------------- */

/* The token from Authorization, the query, or our cookie (in that order). Heap. */
static char *preview_token(struct http_request *req, bool *from_query)
{
	*from_query = false;
	const char *b = http_bearer_token(req);
	if (b)
		return st_xstrdup(b);
	const char *q = http_query(req, "stockade_token");
	if (q) {
		*from_query = true;
		return st_xstrdup(q);
	}
	const char *c = http_header(req, "Cookie");
	if (!c)
		return NULL;
	const char *p = strstr(c, TOKEN_COOKIE "=");
	if (!p)
		return NULL;
	p += strlen(TOKEN_COOKIE "=");
	size_t n = strcspn(p, "; ");
	char *t = st_xmalloc(n + 1);
	memcpy(t, p, n);
	t[n] = '\0';
	return t;
}

/* The query string minus stockade_token, with its leading '?' (or ""). Heap. */
static char *forward_query(const char *raw_path)
{
	const char *q = strchr(raw_path, '?');
	if (!q)
		return st_xstrdup("");
	struct st_buf b;
	st_buf_init(&b, 65536);
	char *copy = st_xstrdup(q + 1);
	char *save = NULL;
	for (char *kv = strtok_r(copy, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
		if (st_str_has_prefix(kv, "stockade_token=") || !strcmp(kv, "stockade_token"))
			continue;
		st_buf_appendf(&b, "%c%s", b.len ? '&' : '?', kv);
	}
	free(copy);
	char *r = b.data ? st_buf_steal(&b) : st_xstrdup("");
	st_buf_release(&b);
	return r;
}

static const char *const fwd_headers[] = {"Accept",
                                          "Accept-Language",
                                          "Content-Type",
                                          "User-Agent",
                                          "Origin",
                                          "Referer",
                                          "Sec-WebSocket-Key",
                                          "Sec-WebSocket-Version",
                                          "Sec-WebSocket-Protocol",
                                          "Sec-WebSocket-Extensions",
                                          "Cache-Control",
                                          "If-None-Match",
                                          "If-Modified-Since",
                                          "X-Requested-With"};

struct ws_ctx {
	struct sandbox_mgr *m;
	char id[32];
	int up;
	char *pending; /* bytes of the upstream that followed its 101 head */
	size_t pending_len;
};

static void splice_fds(int a, int b)
{
	char buf[65536];
	bool ao = true, bo = true;
	while (ao && bo) {
		struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
		if (poll(p, 2, 600000) <= 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		for (int i = 0; i < 2; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int from = i ? b : a, to = i ? a : b;
			ssize_t k = read(from, buf, sizeof(buf));
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0 || st_write_all(to, buf, (size_t)k) < 0) {
				if (i)
					bo = false;
				else
					ao = false;
				break;
			}
		}
	}
}

static void ws_run(struct http_upgrade *u)
{
	struct ws_ctx *w = u->ctx;
	if (u->extra_len)
		(void)st_write_all(w->up, u->extra, u->extra_len);
	if (w->pending_len)
		(void)st_write_all(u->fd, w->pending, w->pending_len);
	int fl = fcntl(u->fd, F_GETFL);
	if (fl >= 0)
		fcntl(u->fd, F_SETFL, fl & ~O_NONBLOCK);
	splice_fds(u->fd, w->up);
	sandbox_port_close(w->m, w->id, w->up);
	free(w->pending);
	free(w);
	http_upgrade_close(u);
}

static int h_preview(struct http_request *req, void *ctx)
{
	(void)ctx;
	const char *id = http_param(req, "id");
	const char *port_s = http_param(req, "port");
	bool from_query = false;
	cleanup_free char *token = preview_token(req, &from_query);
	struct st_error *err = NULL;
	if (sandbox_token_check(g_mgr, id, token, &err) < 0) {
		int r =
		    http_reply_error(req, 401, "invalid_sandbox_token", st_error_msg(err), NULL);
		st_error_free(err);
		return r;
	}
	uint64_t port = 0;
	if (!port_s || st_parse_u64(port_s, &port) < 0 || port == 0 || port > 65535)
		return http_reply_bad_field(req, "port", "port must be 1-65535");
	int up = -1;
	int r = sandbox_port_open(g_mgr, id, (unsigned)port, &up, &err);
	if (r < 0) {
		if (r == -ECONNREFUSED)
			r = http_reply_error(req, 502, "port_closed", st_error_msg(err), NULL);
		else
			r = reply_err(req, r, err);
		st_error_free(err);
		return r;
	}
	const char *rest = http_param(req, "*");
	cleanup_free char *query = forward_query(req->raw_path);
	const char *upgrade = http_header(req, "Upgrade");
	bool ws = upgrade && !strcasecmp(upgrade, "websocket");
	struct st_buf h;
	st_buf_init(&h, 256 * 1024);
	/* HTTP/1.0 upstream: the response is delimited by close, never chunked. WebSocket needs
	 * HTTP/1.1 for the upgrade. */
	st_buf_appendf(&h, "%s /%s%s HTTP/1.%d\r\nHost: 127.0.0.1:%u\r\n", req->method,
	               rest ? rest : "", query, ws ? 1 : 0, (unsigned)port);
	for (size_t i = 0; i < ST_ARRAY_SIZE(fwd_headers); i++) {
		const char *v = http_header(req, fwd_headers[i]);
		if (v && !strpbrk(v, "\r\n"))
			st_buf_appendf(&h, "%s: %s\r\n", fwd_headers[i], v);
	}
	if (ws)
		st_buf_appendf(&h, "Upgrade: websocket\r\nConnection: Upgrade\r\n");
	else
		st_buf_appendf(&h, "Connection: close\r\nContent-Length: %zu\r\n", req->body_len);
	st_buf_appendf(&h, "X-Forwarded-Prefix: /sandboxes/%s/ports/%u\r\n\r\n", id,
	               (unsigned)port);
	if (!h.data || st_write_all(up, h.data, h.len) < 0 ||
	    (req->body_len && st_write_all(up, req->body, req->body_len) < 0)) {
		st_buf_release(&h);
		sandbox_port_close(g_mgr, id, up);
		return http_reply_error(req, 502, "upstream_error",
		                        "cannot send to the preview port", NULL);
	}
	st_buf_release(&h);

	/* Read the upstream response head. */
	char head[32768];
	size_t len = 0;
	char *end = NULL;
	while (len < sizeof(head) - 1) {
		ssize_t k = read(up, head + len, sizeof(head) - 1 - len);
		if (k <= 0)
			break;
		len += (size_t)k;
		head[len] = '\0';
		if ((end = strstr(head, "\r\n\r\n")))
			break;
	}
	unsigned status = 0;
	if (!end || sscanf(head, "HTTP/%*d.%*d %u", &status) != 1 || status < 100 || status > 599) {
		sandbox_port_close(g_mgr, id, up);
		return http_reply_error(req, 502, "upstream_error",
		                        "the server in the sandbox sent no valid HTTP response",
		                        NULL);
	}
	char ctype[256] = "application/octet-stream";
	for (char *line = strstr(head, "\r\n") + 2; line < end;) {
		char *nl = strstr(line, "\r\n");
		*nl = '\0';
		char *colon = strchr(line, ':');
		if (colon) {
			*colon = '\0';
			char *v = colon + 1;
			while (*v == ' ')
				v++;
			if (!strcasecmp(line, "Content-Type"))
				st_strlcpy(ctype, v, sizeof(ctype));
			else if (strcasecmp(line, "Content-Length") &&
			         strcasecmp(line, "Connection") &&
			         strcasecmp(line, "Transfer-Encoding") &&
			         strcasecmp(line, "Upgrade") && strcasecmp(line, "Keep-Alive") &&
			         strcasecmp(line, "Server") && strcasecmp(line, "Date"))
				http_reply_header(req, line, v);
		}
		line = nl + 2;
	}
	if (from_query) {
		char cookie[2048];
		snprintf(cookie, sizeof(cookie),
		         "%s=%s; Path=/sandboxes/%s/; HttpOnly; SameSite=Lax", TOKEN_COOKIE, token,
		         id);
		http_reply_header(req, "Set-Cookie", cookie);
	}
	size_t body_have = len - (size_t)(end + 4 - head);
	if (ws) {
		if (status != 101) {
			sandbox_port_close(g_mgr, id, up);
			return http_reply_error(
			    req, 502, "upstream_error",
			    "the server in the sandbox refused the WebSocket upgrade", NULL);
		}
		struct ws_ctx *w = st_xcalloc(1, sizeof(*w));
		w->m = g_mgr;
		st_strlcpy(w->id, id, sizeof(w->id));
		w->up = up;
		if (body_have) {
			w->pending = st_xmalloc(body_have);
			memcpy(w->pending, end + 4, body_have);
			w->pending_len = body_have;
		}
		return http_reply_upgrade(req, "websocket", ws_run, w);
	}
	struct http_stream *s = http_reply_stream(req, status, ctype);
	if (!s) {
		sandbox_port_close(g_mgr, id, up);
		return 0;
	}
	if (body_have)
		http_stream_write(s, end + 4, body_have);
	char buf[65536];
	for (;;) {
		ssize_t k = read(up, buf, sizeof(buf));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0 || http_stream_write(s, buf, (size_t)k) < 0)
			break;
	}
	http_stream_close(s);
	sandbox_port_close(g_mgr, id, up);
	return 0;
}

/* ---- registration ---------------------------------------------------------------------------- */

static const char **strv_of(const struct config_strv *v)
{
	const char **r = st_xcalloc(v->n + 1, sizeof(char *));
	for (size_t i = 0; i < v->n; i++)
		r[i] = v->v[i];
	return r;
}

static void on_shutdown(void *ctx, int64_t deadline_ms)
{
	(void)ctx;
	(void)deadline_ms;
	sandbox_mgr_free(g_mgr);
	g_mgr = NULL;
	if (g_store)
		store_free(g_store);
	g_store = NULL;
	if (g_blob_owned)
		blob_close(g_blob_owned);
	g_blob_owned = NULL;
}

static enum app_health health(void *ctx, char **detail)
{
	(void)ctx;
	(void)detail;
	return g_mgr ? APP_HEALTH_OK : APP_HEALTH_DOWN;
}

static struct blob_store *open_snapshot_blob(const struct config_blob *cb)
{
	struct blob_store *b = NULL;
	struct st_error *err = NULL;
	if (blob_open_config(cb, &b, &err) < 0) {
		st_log(ST_LOG_WARN,
		       "agent sandbox: snapshot blob store: %s; using the workspace dir",
		       st_error_msg(err));
		b = NULL;
	}
	st_error_free(err);
	return b;
}

int api_register_sandbox(struct http_server *srv, struct app *app, struct st_error **err)
{
	const struct config_agent_sandbox *c = app->config ? &app->config->rr.agent_sandbox : NULL;
	struct sandbox_options o;
	sandbox_options_init(&o);
	cleanup_free char *state = NULL;
	const char **allowed = NULL, **backend = NULL, **blocked = NULL;
	if (c) {
		o.runtime = c->runtime == CONFIG_RUNTIME_JAIL ? SANDBOX_RUNTIME_JAIL
		                                              : SANDBOX_RUNTIME_GVISOR;
		/* systrap is the newer default platform; runsc releases before 2023 only have
		 * ptrace and kvm, so systrap runs as ptrace there (the probe decides). */
		o.platform = c->platform == CONFIG_PLATFORM_KVM ? "kvm" : "ptrace";
		o.runsc_path = c->runsc_path;
		o.rootfs = c->rootfs;
		o.jwt_private_key_pem = c->jwt_private_key_pem;
		o.jwt_public_key_pem = c->jwt_public_key_pem;
		o.encryption_key = c->has_encryption_key ? c->encryption_key : NULL;
		o.token_issuer = c->tokens.issuer;
		o.token_ttl_s = c->tokens.token_ttl_s;
		o.idle_timeout_ms = c->sandbox.idle_timeout_ms;
		o.lifetime_ms = c->sandbox.global_lifetime_ms;
		o.ready_timeout_ms = c->sandbox.ready_timeout_ms;
		o.exec_timeout_ms = c->sandbox.exec_timeout_ms;
		o.workspace_bytes = (uint64_t)c->sandbox.workspace_size_mb << 20;
		o.memory_bytes = (uint64_t)c->sandbox.memory_mb << 20;
		o.cpus = c->sandbox.cpus;
		o.pids = c->sandbox.pids;
		o.max_file_bytes = c->sandbox.max_file_bytes;
		o.prewarm_pool_size = c->scaling.prewarm_pool_size;
		o.max_total_jobs = c->scaling.max_total_jobs;
		o.max_concurrent_creates = c->scaling.max_concurrent_creates;
		o.per_user_limit = c->scaling.per_user_sandbox_limit;
		allowed = strv_of(&c->proxy.allowed_domains);
		backend = strv_of(&c->proxy.backend_domain_suffixes);
		if (c->proxy.blocked_cidrs.n)
			blocked = strv_of(&c->proxy.blocked_cidrs);
		o.allowed_domains = allowed;
		o.backend_domain_suffixes = backend;
		o.blocked_cidrs = blocked;
		o.egress_disabled = !c->proxy.egress_enabled;
		if (c->sandbox.workspace_dir)
			state = st_xstrdup(c->sandbox.workspace_dir);
		if (app->config->rr.snapshots_blob.provider != CONFIG_BLOB_NONE)
			g_blob_owned = open_snapshot_blob(&app->config->rr.snapshots_blob);
	}
	if (!state)
		state = st_xasprintf("%s/sandboxes", app->data_dir ? app->data_dir : "./data");
	o.state_dir = state;
	o.blob = g_blob_owned;
	int r;
	/* Sandbox and snapshot records: the agent sandbox's own database (rr.agentSandbox.postgres,
	 * else inherited from postgresql on schema agent_executor, else the SQLite file). */
	if (app->config &&
	    (r = store_open_config(app->config, "agent_executor", &g_store, err)) < 0) {
		free(allowed);
		free(backend);
		free(blocked);
		return st_error_wrap(err, "agent sandbox: cannot open its state store");
	}
	o.store = g_store;
	r = sandbox_mgr_open(&o, &g_mgr, err);
	free(allowed);
	free(backend);
	free(blocked);
	if (r < 0) {
		if (g_store)
			store_free(g_store);
		g_store = NULL;
		return st_error_wrap(err, "agent sandbox");
	}

	static const struct {
		const char *method, *pattern;
		http_handler_fn fn;
		void *ctx;
		unsigned flags;
	} routes[] = {
	    {"POST", "/api/v1/sandboxes", h_create, NULL, HTTP_AUTH_API_TOKEN},
	    {"GET", "/api/v1/sandboxes", h_list, NULL, HTTP_AUTH_API_TOKEN},
	    {"GET", "/api/v1/sandboxes/{id}", h_get, NULL, HTTP_AUTH_API_TOKEN},
	    {"DELETE", "/api/v1/sandboxes/{id}", h_delete, NULL, HTTP_AUTH_API_TOKEN},
	    {"POST", "/api/v1/sandboxes/{id}/exec", h_exec, NULL, HTTP_AUTH_API_TOKEN},
	    {"GET", "/api/v1/sandboxes/{id}/files", h_files_get, NULL, HTTP_AUTH_API_TOKEN},
	    {"PUT", "/api/v1/sandboxes/{id}/files", h_files_put, NULL,
	     HTTP_AUTH_API_TOKEN | HTTP_ROUTE_BODY_FILE},
	    {"DELETE", "/api/v1/sandboxes/{id}/files", h_files_delete, NULL, HTTP_AUTH_API_TOKEN},
	    {"POST", "/api/v1/sandboxes/{id}/files/mkdir", h_files_mkdir, NULL,
	     HTTP_AUTH_API_TOKEN},
	    {"GET", "/api/v1/sandboxes/{id}/files/list", h_files_list, NULL, HTTP_AUTH_API_TOKEN},
	    {"POST", "/api/v1/sandboxes/{id}/pause", h_state, (void *)1, HTTP_AUTH_API_TOKEN},
	    {"POST", "/api/v1/sandboxes/{id}/resume", h_state, NULL, HTTP_AUTH_API_TOKEN},
	    {"POST", "/api/v1/sandboxes/{id}/snapshots", h_snapshot, NULL, HTTP_AUTH_API_TOKEN},
	    {"GET", "/api/v1/sandboxes/{id}/snapshots", h_snapshot_list, (void *)1,
	     HTTP_AUTH_API_TOKEN},
	    {"GET", "/api/v1/snapshots", h_snapshot_list, NULL, HTTP_AUTH_API_TOKEN},
	    {"GET", "/api/v1/snapshots/{id}", h_snapshot_get, NULL, HTTP_AUTH_API_TOKEN},
	    {"DELETE", "/api/v1/snapshots/{id}", h_snapshot_delete, NULL, HTTP_AUTH_API_TOKEN},
	    {"POST", "/sandboxes/{id}/exec", h_exec_direct, NULL, HTTP_AUTH_CUSTOM},
	    {"*", "/sandboxes/{id}/ports/{port}/*", h_preview, NULL, HTTP_AUTH_CUSTOM},
	};
	for (size_t i = 0; i < ST_ARRAY_SIZE(routes); i++)
		if ((r = http_route(srv, routes[i].method, routes[i].pattern, routes[i].fn,
		                    routes[i].ctx, routes[i].flags)) < 0)
			return st_error_make(err, -r, "cannot register '%s'", routes[i].pattern);
	app_add_health_check(app, "agent-sandbox", health, NULL);
	app_on_shutdown(app, "agent-sandbox", on_shutdown, NULL);
	return 0;
}

struct sandbox_mgr *api_sandbox_mgr(void)
{
	return g_mgr;
}
