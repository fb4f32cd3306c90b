/*
 * http.h - the HTTP layer every Stockade component serves through (executors, agent sandbox and
 * its preview proxy, MCP, git smart-HTTP, ops endpoints).
 *
 * Model: one libmicrohttpd daemon in thread-per-connection mode. A handler runs on its
 * connection's own thread, so it may block (run an execution, proxy a request) without stalling
 * other clients; keep-alive connections keep their thread, which gives the lowest latency for
 * the request/response pattern the executors see. The number of connections (and so threads)
 * is capped by `max_connections`.
 *
 * Lifecycle of a request:
 *   headers arrive -> route lookup (404 / 405 as JSON) -> auth (401 / 403 as JSON) ->
 *   body read into a capped buffer (413 beyond max_body_bytes), or spooled to an unlinked temp
 *   file for HTTP_ROUTE_BODY_FILE routes -> handler -> exactly one reply -> access log line.
 * Every reply carries X-Request-Id (the client's, when it sent a sane one, else generated).
 *
 * Handler contract: call exactly one http_reply_* (or http_reply_stream / http_reply_upgrade)
 * and return 0. Returning a negative value without replying makes the server answer 500
 * `internal`. Strings in `struct http_request` live until the request completes.
 *
 * Threads: every function here may be called from the handler's thread. http_stream_* may be
 * called from any thread. http_route may only be called before http_server_start.
 */
#ifndef STOCKADE_HTTP_H
#define STOCKADE_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct http_server; /* opaque */
struct http_request;
struct http_stream; /* a streaming response body (chunked / SSE / NDJSON) */
struct http_upgrade; /* a connection taken over after 101 Switching Protocols */

/* ---- server ------------------------------------------------------------------------------ */

struct http_server_options {
	size_t max_body_bytes; /* buffered bodies; 0 -> 1 MiB. Beyond it: 413 `body_too_large` */
	uint64_t max_upload_bytes; /* HTTP_ROUTE_BODY_FILE bodies; 0 -> 1 GiB */
	const char *spool_dir; /* where upload temp files go; NULL -> $TMPDIR or /tmp */
	unsigned request_deadline_ms; /* default handler deadline (req->deadline_ms); 0 -> 60000 */
	unsigned idle_timeout_s; /* keep-alive / slow-client timeout; 0 -> 120 */
	unsigned threads; /* hint only: thread-per-connection ignores it (kept for config compat) */
	unsigned max_connections; /* 0 -> 512 */
	bool
	    access_log; /* one JSON line per request on stderr (default on: set by _options_init) */
	bool cors; /* off by default; when on, allow any origin without credentials */
};

void http_server_options_init(struct http_server_options *o);

/*
 * listen is "HOST:PORT" ("127.0.0.1:8080", "[::1]:0", "0.0.0.0:8080"). Port 0 picks a free
 * port: read it back with http_server_port(). The socket is bound here (so errors such as
 * "address in use" surface now); serving starts with http_server_start().
 */
int http_server_new(const char *listen, const struct http_server_options *opts,
                    struct http_server **out, struct st_error **err);
int http_server_start(struct http_server *srv, struct st_error **err);
uint16_t http_server_port(const struct http_server *srv);
/* "127.0.0.1:8080" - the address actually bound (port resolved). */
const char *http_server_address(const struct http_server *srv);
/*
 * Graceful stop: stop accepting new connections at once, let in-flight requests finish for up
 * to grace_ms, close open streams (writers see -EPIPE), then stop the daemon. Idempotent.
 */
void http_server_stop(struct http_server *srv, unsigned grace_ms);
/* First step of a stop: close the listening socket; requests arriving on open keep-alive
 * connections get 503 `shutting_down` with Connection: close. Idempotent. */
void http_server_quiesce(struct http_server *srv);
void http_server_free(struct http_server *srv);
/* Requests currently being handled (streams and upgrades included). */
unsigned http_server_inflight(struct http_server *srv);

/* ---- routes ------------------------------------------------------------------------------- */

enum http_route_flags {
	HTTP_AUTH_NONE = 0, /* public (health checks, OAuth metadata) */
	HTTP_AUTH_API_TOKEN = 1, /* bearer API token or HS256 JWT (see http_auth_*) */
	HTTP_AUTH_CUSTOM = 2, /* the handler authenticates (sandbox ES256 JWTs, MCP OAuth) */
	HTTP_AUTH_MASK = 3,
	HTTP_ROUTE_BODY_FILE = 1 << 4, /* spool the body to a temp file: req->body_fd */
	HTTP_ROUTE_NO_LOG = 1 << 5, /* no access-log line (e.g. /metrics scraped every second) */
	/* HTTP_AUTH_API_TOKEN routes that git and other Basic-auth clients call: the token may
	   also come as the password of "Authorization: Basic" (any user name), and a 401 asks
	   for Basic credentials. */
	HTTP_AUTH_BASIC_OK = 1 << 6,
};

typedef int (*http_handler_fn)(struct http_request *req, void *ctx);

/*
 * method: "GET", "POST", ... or "*" for any (the handler dispatches; a HEAD request also
 * matches GET routes). pattern: literal segments and {name} segments
 * ("/api/v1/functions/{name}/invoke"); a final "*" segment matches the rest of the path,
 * including nothing (e.g. "/sandboxes/{id}/ports/{port}/" + "*"): read it as
 * http_param(req, "*") (no leading slash). Literal routes win over {param} routes, which win
 * over prefix routes. A path that matches a pattern for another method gets 405 with Allow.
 */
int http_route(struct http_server *srv, const char *method, const char *pattern,
               http_handler_fn handler, void *ctx, unsigned flags);

struct http_route_spec {
	const char *method;
	const char *pattern;
	http_handler_fn handler;
	void *ctx;
	unsigned flags;
	const char *scope; /* required permission for HTTP_AUTH_API_TOKEN routes; NULL: any token */
	size_t max_body_bytes; /* per-route cap override (0: the server's) */
	const char *name; /* label in metrics and logs; NULL: the pattern */
};
int http_route_ex(struct http_server *srv, const struct http_route_spec *spec);

/* ---- auth (http-auth.c) ------------------------------------------------------------------- */

/*
 * API tokens are kept only as SHA-256 hashes and compared in constant time. A token is
 * "plain" (hashed here) or already "sha256:<64 hex>" (as stored in config). scopes is a
 * space-separated list ("execute functions admin") or "*" for everything; a valid token that
 * lacks a route's scope gets 403 `forbidden`.
 */
int http_auth_add_token(struct http_server *srv, const char *name, const char *token,
                        const char *scopes, struct st_error **err);
/* Accept HS256 JWTs signed with secret (claims: sub -> principal, exp required, scope). */
int http_auth_set_jwt_secret(struct http_server *srv, const void *secret, size_t len);
/* True when no token and no JWT secret is configured: API routes then answer 401 to all. */
bool http_auth_is_empty(const struct http_server *srv);

/* ---- request accessors -------------------------------------------------------------------- */

struct http_request {
	const char *method; /* "GET", ... (HEAD is reported as HEAD) */
	const char *path; /* percent-decoded path, without the query string */
	const char *raw_path; /* the URL as received (path and query, not decoded) */
	const char *route; /* the matched pattern or route name */
	const char *client_addr; /* "127.0.0.1:51234" */
	const char *request_id;
	const char *principal; /* token name / JWT sub; NULL on HTTP_AUTH_NONE / CUSTOM routes */
	const char *body; /* NUL-terminated (extra byte not counted); "" when empty */
	size_t body_len;
	int body_fd; /* HTTP_ROUTE_BODY_FILE: the spooled body, at offset 0; else -1 */
	uint64_t body_file_len;
	int64_t deadline_ms; /* st_now_ms() clock: when the handler should give up */
	struct http__conn *priv; /* the server's; do not touch */
};

/* Path parameter by name ({id}, or "*" for the rest); NULL when absent. Percent-decoded. */
const char *http_param(const struct http_request *req, const char *name);
/* Query parameter (first occurrence, decoded); NULL when absent. */
const char *http_query(const struct http_request *req, const char *name);
/* Request header, case-insensitive; NULL when absent. */
const char *http_header(const struct http_request *req, const char *name);
/* The bearer token of an Authorization header, or NULL. */
const char *http_bearer_token(const struct http_request *req);
/* The password of an "Authorization: Basic" header (decoded, heap; the user name is
   ignored), or NULL when there is none or it is malformed. */
char *http_basic_password(const struct http_request *req);
/* The same from an Authorization header's value ("Basic dXNlcjpwdw=="): NULL unless it is
   Basic, valid base64 of at most 8 KiB, holds a ':' and no NUL byte. */
char *http_basic_decode(const char *authorization);
/* Does the authenticated principal have this scope? (always true for "*" tokens) */
bool http_request_has_scope(const struct http_request *req, const char *scope);
/* Parse the body as a JSON object. On failure replies 400 `invalid_json` itself and returns
 * NULL (so a handler writes `if (!(j = http_body_json(req))) return 0;`). */
json_t *http_body_json(struct http_request *req);
/* Has the client gone away? (for long handlers and streams) */
bool http_request_client_gone(const struct http_request *req);

/* ---- replies ------------------------------------------------------------------------------ */

/* Add a response header to the reply that follows (any number; copied). */
void http_reply_header(struct http_request *req, const char *name, const char *value);
/* Steals the reference to body. */
int http_reply_json(struct http_request *req, unsigned status, json_t *body);
/*
 * Error reply, one shape everywhere:
 *   {"error": {"code": "invalid_request", "message": "...", "field": "timeoutMs", ...details},
 *    "requestId": "..."}
 * details (stolen, may be NULL) is merged into the error object. 401 adds WWW-Authenticate,
 * 405 adds Allow, 429/503 add Retry-After when retry_after_s was set with http_reply_header.
 */
int http_reply_error(struct http_request *req, unsigned status, const char *code,
                     const char *message, json_t *details);
/* Shorthand for a 400 naming the offending field. */
int http_reply_bad_field(struct http_request *req, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Copies data. */
int http_reply_bytes(struct http_request *req, unsigned status, const char *content_type,
                     const void *data, size_t len);
int http_reply_text(struct http_request *req, unsigned status, const char *content_type,
                    const char *text);
/* Sends size bytes of fd from offset 0 (sendfile where possible); takes ownership of fd. */
int http_reply_fd(struct http_request *req, unsigned status, const char *content_type, int fd,
                  uint64_t size);

/*
 * Streaming reply: headers go out with status now; the body is chunked. The returned stream is
 * written from any thread (the handler may hand it to a worker and return 0) and must be closed
 * exactly once with http_stream_close. Writes block while the client is slow (bounded queue of
 * 1 MiB) and return -EPIPE once the client has gone or the server is stopping.
 * content_type: "text/event-stream" (SSE: also sets Cache-Control: no-cache),
 * "application/x-ndjson", ...
 */
struct http_stream *http_reply_stream(struct http_request *req, unsigned status,
                                      const char *content_type);
int http_stream_write(struct http_stream *s, const void *data, size_t len);
int http_stream_printf(struct http_stream *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One SSE event: "event: <event>\n" (when event) "id: <id>\n" (when id) "data: <line>\n"... "\n" */
int http_stream_sse(struct http_stream *s, const char *event, const char *id, const char *data);
/* One NDJSON line (steals json). */
int http_stream_ndjson(struct http_stream *s, json_t *json);
bool http_stream_client_gone(struct http_stream *s);
/* Ends the body (last chunk) and releases the stream. */
void http_stream_close(struct http_stream *s);
/*
 * Convenience: reply with a stream and run fn(stream, ctx) on a new thread; the stream is
 * closed when fn returns. The handler returns 0 right after.
 */
int http_reply_stream_thread(struct http_request *req, unsigned status, const char *content_type,
                             void (*fn)(struct http_stream *s, void *ctx), void *ctx);

/*
 * Connection take-over (WebSocket proxying, git/other upgrades): replies 101 with
 * "Upgrade: <protocol>" plus any http_reply_header()s (e.g. Sec-WebSocket-Accept), then calls
 * fn on a thread of its own with the raw socket. fn owns the connection until it calls
 * http_upgrade_close(u). Bytes the client sent after the request head are in extra/extra_len
 * and must be handled before reading from fd.
 */
struct http_upgrade {
	int fd; /* the client socket, in blocking mode; do not close it: http_upgrade_close */
	const char *extra;
	size_t extra_len;
	void *ctx;
	void *priv;
};
int http_reply_upgrade(struct http_request *req, const char *protocol,
                       void (*fn)(struct http_upgrade *u), void *ctx);
void http_upgrade_close(struct http_upgrade *u);

/* ---- metrics (http-metrics in http.c) ----------------------------------------------------- */

/* Append the server's own metrics (requests by route/status, in-flight, durations). */
void http_server_metrics(struct http_server *srv, struct st_buf *out);
/* Components add their own Prometheus text to /metrics through this hook. */
int http_server_add_metrics(struct http_server *srv, void (*fn)(void *ctx, struct st_buf *out),
                            void *ctx);
/* Render everything (server + hooks) in Prometheus text exposition format. */
void http_server_metrics_render(struct http_server *srv, struct st_buf *out);

/* ---- helpers ----------------------------------------------------------------------------- */

/* "HOST:PORT" -> host (no brackets) and port. */
int http_parse_listen(const char *listen, char *host, size_t host_size, uint16_t *port,
                      struct st_error **err);
/* Reason phrase / a stable lowercase code for a status ("not_found"). */
const char *http_status_code_name(unsigned status);

#endif
