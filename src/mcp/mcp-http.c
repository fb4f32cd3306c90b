/*
 * mcp-http.c - the streamable HTTP transport for MCP at /mcp, the RFC 9728 protected-resource
 * metadata, and /healthcheck (what the chart's MCP Deployment probes).
 *
 * Order of checks on every /mcp request, each answering on its own:
 *   1. Host / Origin (DNS rebinding)                      -> 403
 *   2. method: POST and DELETE; GET has no server stream   -> 405
 *   3. Content-Type application/json, Accept usable        -> 415 / 406
 *   4. MCP-Protocol-Version, when sent, one we speak       -> 400
 *   5. bearer token (mcp-auth.c)                           -> 401 + WWW-Authenticate
 *   6. the JSON-RPC message (mcp.c); for tools/call the tool's scope -> 403 insufficient_scope
 * A tools/call that carries a progress token and whose client accepts text/event-stream is
 * answered as an SSE stream: progress notifications, then the response. Everything else is
 * answered with one application/json body (or 202 for notifications).
 */
#include <ctype.h>
#include <strings.h>

#include "mcp/mcp-internal.h"

struct mcp_http {
	struct app *app;
	struct mcp_server *mcp;
	struct mcp__auth auth;
	bool loopback_listener;
	char *public_host; /* host of mcp.resource / http.publicUrl, lowercase, no port */
	char *resource; /* configured resource URL, or NULL (derived per request) */
};

static struct mcp_http *g_mcp; /* one per process, like the component it serves */

static const char *const instructions =
    "Stockade runs untrusted code in isolation. Use execute_code for a self-contained "
    "JavaScript or Python computation that returns a JSON value. Use the sandbox_* tools for "
    "longer work: sandbox_create gives a persistent Linux workspace where you can write files, "
    "run shell commands (sandbox_exec), start servers, and snapshot or restore the workspace. "
    "Destroy sandboxes you no longer need.";

/* ---- host checks ----------------------------------------------------------------------------- */

/* "Host: a.b:8080" / "[::1]:80" / origin "http://a.b:8080" -> "a.b" / "::1" (lowercase). */
static bool host_of(const char *s, bool is_origin, char *out, size_t size)
{
	if (!s)
		return false;
	if (is_origin) {
		const char *p = strstr(s, "://");
		if (!p)
			return false;
		s = p + 3;
	}
	size_t n = 0;
	if (*s == '[') {
		const char *e = strchr(s, ']');
		if (!e)
			return false;
		s++;
		n = (size_t)(e - s);
	} else {
		while (s[n] && s[n] != ':' && s[n] != '/')
			n++;
	}
	if (n == 0 || n >= size)
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[n] = '\0';
	return true;
}

static bool is_loopback_name(const char *h)
{
	return strcmp(h, "localhost") == 0 || strcmp(h, "127.0.0.1") == 0 || strcmp(h, "::1") == 0;
}

static bool host_allowed(struct mcp_http *m, const char *h)
{
	return is_loopback_name(h) || (m->public_host && strcmp(h, m->public_host) == 0);
}

/* DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host and Origin of
   evil.example; neither is ours, so the request is refused before anything runs. */
static bool check_host_origin(struct mcp_http *m, struct http_request *req)
{
	char h[256];
	const char *origin = http_header(req, "Origin");
	if (origin && strcmp(origin, "null") != 0) {
		if (!host_of(origin, true, h, sizeof(h)) || !host_allowed(m, h)) {
			http_reply_error(
			    req, 403, "forbidden_origin",
			    "Origin is not allowed for /mcp (DNS rebinding protection)", NULL);
			return false;
		}
	} else if (origin) {
		http_reply_error(req, 403, "forbidden_origin", "an opaque Origin is not allowed",
		                 NULL);
		return false;
	}
	const char *host = http_header(req, "Host");
	if (m->loopback_listener || m->public_host) {
		if (!host || !host_of(host, false, h, sizeof(h)) || !host_allowed(m, h)) {
			http_reply_error(
			    req, 403, "forbidden_host",
			    "Host is not allowed for /mcp (DNS rebinding protection): use "
			    "localhost, 127.0.0.1, [::1] or the configured public URL",
			    NULL);
			return false;
		}
	}
	return true;
}

/* ---- metadata ------------------------------------------------------------------------------ */

static char *request_origin(struct mcp_http *m, struct http_request *req)
{
	const char *pub = m->app->config ? m->app->config->http.public_url : NULL;
	if (pub && *pub) {
		size_t n = strlen(pub);
		while (n && pub[n - 1] == '/')
			n--;
		return st_xasprintf("%.*s", (int)n, pub);
	}
	const char *host = http_header(req, "Host");
	const char *proto = http_header(req, "X-Forwarded-Proto");
	return st_xasprintf("%s://%s", proto && strcmp(proto, "https") == 0 ? "https" : "http",
	                    host ? host : "localhost");
}

static char *resource_url(struct mcp_http *m, struct http_request *req)
{
	if (m->resource)
		return st_xstrdup(m->resource);
	cleanup_free char *o = request_origin(m, req);
	return st_xasprintf("%s/mcp", o);
}

static char *metadata_url(struct mcp_http *m, struct http_request *req)
{
	cleanup_free char *o = request_origin(m, req);
	return st_xasprintf("%s/.well-known/oauth-protected-resource/mcp", o);
}

static int h_metadata(struct http_request *req, void *ctx)
{
	struct mcp_http *m = ctx;
	cleanup_free char *res = resource_url(m, req);
	json_t *servers = json_array();
	const struct config_mcp *c = m->app->config ? &m->app->config->mcp : NULL;
	for (size_t i = 0; c && i < c->authorization_servers.n; i++)
		json_array_append_new(servers, json_string(c->authorization_servers.v[i]));
	if (c && json_array_size(servers) == 0 && c->issuer)
		json_array_append_new(servers, json_string(c->issuer));
	json_t *scopes = json_array();
	static const char *const defaults[] = {"execute", "sandbox:read", "sandbox:write"};
	if (c && c->scopes_supported.n)
		for (size_t i = 0; i < c->scopes_supported.n; i++)
			json_array_append_new(scopes, json_string(c->scopes_supported.v[i]));
	else
		for (size_t i = 0; i < ST_ARRAY_SIZE(defaults); i++)
			json_array_append_new(scopes, json_string(defaults[i]));
	json_t *doc = json_pack("{s:s, s:o, s:o, s:[s], s:s}", "resource", res,
	                        "authorization_servers", servers, "scopes_supported", scopes,
	                        "bearer_methods_supported", "header", "resource_name", "Stockade");
	http_reply_header(req, "Cache-Control", "max-age=300");
	return http_reply_json(req, 200, doc);
}

static int h_healthcheck(struct http_request *req, void *ctx)
{
	struct mcp_http *m = ctx;
	return http_reply_json(req, 200,
	                       json_pack("{s:s, s:I}", "status", "ok", "sessions",
	                                 (json_int_t)mcp_session_count(m->mcp)));
}

/* ---- auth replies ---------------------------------------------------------------------------- */

static char *quote_header_value(const char *s)
{
	struct st_buf b;
	st_buf_init(&b, 1024);
	for (; *s && b.len < 900; s++)
		if (*s != '"' && *s != '\\' && (unsigned char)*s >= 0x20)
			st_buf_append(&b, s, 1);
	return st_buf_steal(&b);
}

static int reply_unauthorized(struct mcp_http *m, struct http_request *req, const char *why,
                              bool token_given)
{
	cleanup_free char *meta = metadata_url(m, req);
	cleanup_free char *desc = quote_header_value(why);
	cleanup_free char *hdr =
	    token_given ? st_xasprintf("Bearer resource_metadata=\"%s\", error=\"invalid_token\", "
	                               "error_description=\"%s\"",
	                               meta, desc)
	                : st_xasprintf("Bearer resource_metadata=\"%s\"", meta);
	http_reply_header(req, "WWW-Authenticate", hdr);
	return http_reply_error(req, 401, "unauthorized", why, NULL);
}

static int reply_insufficient_scope(struct mcp_http *m, struct http_request *req, const char *scope)
{
	cleanup_free char *meta = metadata_url(m, req);
	cleanup_free char *hdr = st_xasprintf(
	    "Bearer error=\"insufficient_scope\", scope=\"%s\", resource_metadata=\"%s\", "
	    "error_description=\"this tool needs the '%s' scope\"",
	    scope, meta, scope);
	http_reply_header(req, "WWW-Authenticate", hdr);
	char msg[200];
	snprintf(msg, sizeof(msg), "insufficient_scope: this tool needs the '%s' scope", scope);
	return http_reply_error(req, 403, "insufficient_scope", msg,
	                        json_pack("{s:s}", "requiredScope", scope));
}

/* ---- streaming tool calls --------------------------------------------------------------------- */

struct stream_call {
	struct mcp_http *m;
	json_t *request;
	char *principal;
	struct http_stream *stream;
};

static int sse_send(struct http_stream *s, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (!text)
		return -ENOMEM;
	int r = http_stream_sse(s, "message", NULL, text);
	free(text);
	return r;
}

static int notify_sse(void *ctx, json_t *n)
{
	struct stream_call *sc = ctx;
	return sse_send(sc->stream, n);
}

static void run_stream_call(struct http_stream *s, void *ctx)
{
	struct stream_call *sc = ctx;
	sc->stream = s;
	struct mcp_call call = {.principal = sc->principal, .notify = notify_sse, .notify_ctx = sc};
	json_t *resp = mcp_run_call(sc->m->mcp, sc->request, &call);
	sse_send(s, resp);
	json_decref(sc->request);
	free(sc->principal);
	free(sc);
}

/* ---- /mcp --------------------------------------------------------------------------------- */

static bool header_has(const char *h, const char *token)
{
	return h && strcasestr(h, token) != NULL;
}

static int h_mcp(struct http_request *req, void *ctx)
{
	struct mcp_http *m = ctx;
	if (!check_host_origin(m, req))
		return 0;
	bool is_post = strcmp(req->method, "POST") == 0;
	bool is_delete = strcmp(req->method, "DELETE") == 0;
	if (!is_post && !is_delete) {
		http_reply_header(req, "Allow", "POST, DELETE");
		return http_reply_error(
		    req, 405, "method_not_allowed",
		    "this server offers no server-initiated stream: POST JSON-RPC "
		    "messages to /mcp (DELETE ends a session)",
		    NULL);
	}
	const char *pv = http_header(req, "MCP-Protocol-Version");
	if (pv && !mcp_protocol_supported(pv)) {
		char msg[200];
		snprintf(msg, sizeof(msg),
		         "unsupported MCP-Protocol-Version '%.40s': this server speaks 2025-11-25, "
		         "2025-06-18 and 2025-03-26",
		         pv);
		return http_reply_error(req, 400, "unsupported_protocol_version", msg, NULL);
	}
	struct mcp__identity id = {0};
	cleanup_error struct st_error *err = NULL;
	const char *bearer = http_bearer_token(req);
	if (mcp__auth_check(&m->auth, bearer, &id, &err) < 0)
		return reply_unauthorized(m, req, st_error_msg(err), bearer != NULL);

	if (is_delete) {
		int r = mcp_end_session(m->mcp, http_header(req, "Mcp-Session-Id"), id.principal);
		mcp__identity_release(&id);
		if (r < 0)
			return http_reply_error(req, 404, "session_not_found",
			                        "no such session (it may have expired)", NULL);
		return http_reply_bytes(req, 204, NULL, "", 0);
	}

	const char *ct = http_header(req, "Content-Type");
	if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
		mcp__identity_release(&id);
		return http_reply_error(req, 415, "unsupported_media_type",
		                        "POST /mcp needs Content-Type: application/json", NULL);
	}
	const char *accept = http_header(req, "Accept");
	bool sse = header_has(accept, "text/event-stream");
	if (accept && !sse && !header_has(accept, "application/json") &&
	    !header_has(accept, "*/*")) {
		mcp__identity_release(&id);
		return http_reply_error(
		    req, 406, "not_acceptable",
		    "Accept must include application/json and text/event-stream", NULL);
	}

	struct mcp_post in = {.session_id = http_header(req, "Mcp-Session-Id"),
	                      .protocol_version = pv,
	                      .principal = id.principal,
	                      .body = req->body,
	                      .body_len = req->body_len,
	                      .accepts_sse = sse};
	struct mcp_post_result out;
	mcp_handle_post(m->mcp, &in, &out);
	if (out.new_session_id)
		http_reply_header(req, "Mcp-Session-Id", out.new_session_id);
	int ret;
	if (out.kind == MCP_POST_REPLY) {
		if (out.body) {
			ret = http_reply_json(req, out.status, out.body);
			out.body = NULL;
		} else {
			ret = http_reply_bytes(req, out.status, NULL, "", 0);
		}
	} else if (out.needed_scope && !mcp__has_scope(id.scopes, out.needed_scope)) {
		ret = reply_insufficient_scope(m, req, out.needed_scope);
	} else {
		json_t *meta = json_object_get(json_object_get(out.request, "params"), "_meta");
		bool wants_progress = json_object_get(meta, "progressToken") != NULL;
		if (sse && wants_progress) {
			struct stream_call *sc = st_xcalloc(1, sizeof(*sc));
			sc->m = m;
			sc->request = out.request;
			out.request = NULL;
			sc->principal = st_xstrdup(id.principal);
			ret = http_reply_stream_thread(req, 200, "text/event-stream",
			                               run_stream_call, sc);
			if (ret < 0) {
				json_decref(sc->request);
				free(sc->principal);
				free(sc);
			}
		} else {
			struct mcp_call call = {.principal = id.principal};
			json_t *resp = mcp_run_call(m->mcp, out.request, &call);
			ret = http_reply_json(req, 200, resp);
		}
	}
	mcp_post_result_release(&out);
	mcp__identity_release(&id);
	return ret;
}

/* ---- registration ----------------------------------------------------------------------------- */

static bool listener_is_loopback(const struct stockade_config *c)
{
	const char *h = c ? c->listen_host : NULL;
	if (!h)
		return true;
	return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0;
}

int api_register_mcp(struct http_server *srv, struct app *app, struct st_error **err)
{
	if (g_mcp)
		return st_error_make(err, EEXIST, "the mcp component is already registered");
	struct mcp_http *m = st_xcalloc(1, sizeof(*m));
	m->app = app;
	const struct stockade_config *c = app->config;
	m->loopback_listener = listener_is_loopback(c);
	const char *pub = c && c->mcp.resource ? c->mcp.resource : (c ? c->http.public_url : NULL);
	char h[256];
	if (pub && host_of(pub, true, h, sizeof(h)))
		m->public_host = st_xstrdup(h);
	if (c && c->mcp.resource)
		m->resource = st_xstrdup(c->mcp.resource);

	/* Declared before the first goto: the error paths jump past this point, and the cleanup
	   must never see an uninitialised pointer. */
	cleanup_free char *aud = NULL;
	struct mcp_options o;
	mcp_options_init(&o);
	o.instructions = instructions;
	int r = mcp_server_new(&o, &m->mcp, err);
	if (r < 0)
		goto fail_new;
	struct config_mcp none = {0};
	bool allow_anon = c && c->mcp.allow_unauthenticated && m->loopback_listener;
	if (c && c->mcp.allow_unauthenticated && !m->loopback_listener) {
		r = st_error_make(
		    err, EINVAL,
		    "mcp.allowUnauthenticated is only honoured on a loopback listener "
		    "(listen is '%s'): configure mcp.oauth",
		    c->listen ? c->listen : "?");
		goto fail_auth;
	}
	aud = m->resource ? st_xstrdup(m->resource) : (pub ? st_xasprintf("%s/mcp", pub) : NULL);
	r = mcp__auth_init(&m->auth, c ? &c->mcp : &none, aud, allow_anon, err);
	if (r < 0)
		goto fail_auth;
	if (m->auth.mode == MCP_AUTH_OAUTH && !m->auth.audience) {
		r = st_error_make(
		    err, EINVAL,
		    "mcp.resource (or http.publicUrl, or mcp.oauth.audience) is needed "
		    "with OAuth: tokens are checked against this server's audience");
		goto fail_tools;
	}
	r = mcp__register_tools(m->mcp, app, err);
	if (r < 0)
		goto fail_tools;
	const char *ct = getenv("STOCKADE_MCP_CONFORMANCE_TOOLS");
	if (ct && strcmp(ct, "1") == 0 && (r = mcp__register_conformance_tools(m->mcp, err)) < 0)
		goto fail_tools;

	const struct http_route_spec routes[] = {
	    {.method = "*",
	     .pattern = "/mcp",
	     .handler = h_mcp,
	     .ctx = m,
	     .flags = HTTP_AUTH_CUSTOM,
	     .max_body_bytes = 4 << 20,
	     .name = "mcp"},
	    {.method = "GET",
	     .pattern = "/.well-known/oauth-protected-resource",
	     .handler = h_metadata,
	     .ctx = m,
	     .flags = HTTP_AUTH_NONE},
	    {.method = "GET",
	     .pattern = "/.well-known/oauth-protected-resource/mcp",
	     .handler = h_metadata,
	     .ctx = m,
	     .flags = HTTP_AUTH_NONE},
	    {.method = "GET",
	     .pattern = "/healthcheck",
	     .handler = h_healthcheck,
	     .ctx = m,
	     .flags = HTTP_AUTH_NONE | HTTP_ROUTE_NO_LOG},
	};
	for (size_t i = 0; i < ST_ARRAY_SIZE(routes); i++)
		if ((r = http_route_ex(srv, &routes[i])) < 0) {
			r = st_error_make(err, -r, "cannot add route '%s'", routes[i].pattern);
			goto fail_tools;
		}
	g_mcp = m;
	st_log(ST_LOG_INFO, "mcp: %zu tools at /mcp (auth: %s)", mcp_tool_count(m->mcp),
	       m->auth.mode == MCP_AUTH_OAUTH    ? "oauth"
	       : m->auth.mode == MCP_AUTH_STATIC ? "static token"
	                                         : "none");
	return 0;

fail_tools:
	mcp__auth_release(&m->auth);
fail_auth:
	mcp_server_free(m->mcp);
fail_new:
	free(m->public_host);
	free(m->resource);
	free(m);
	return r;
}
