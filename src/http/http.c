/*
 * http.c - the server: libmicrohttpd daemon, request lifecycle, replies.
 *
 * Why thread-per-connection: executor handlers block for the length of an execution (ms to
 * tens of seconds) and streamed replies block in their reader until data is written. With one
 * thread per connection neither stalls another client, keep-alive requests skip any hand-off
 * between threads (lowest latency), and MHD's upgrade support works unchanged. The cost, a
 * thread per open connection, is bounded by max_connections.
 *
 * Per-request state (struct http__conn) moves through:
 *   NEW (first callback: headers) -> ROUTED (route, auth checked; maybe an early 4xx queued)
 *   -> BODY (upload chunks into a capped buffer or a spool file) -> HANDLED (the handler ran
 *   and queued exactly one response) -> COMPLETED (MHD's completion callback: access log,
 *   metrics, free). A streamed or upgraded reply stays between HANDLED and COMPLETED while it
 *   runs. The request counts as in flight from NEW to COMPLETED.
 *
 * MHD is told not to unescape URLs: the router splits the raw path and decodes each segment,
 * so an encoded '/' inside a parameter cannot change which route matches; query arguments are
 * decoded here too.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "http/http-internal.h"

/* ---- helpers ------------------------------------------------------------------------------ */

const char *http_status_code_name(unsigned status)
{
	switch (status) {
	case 400: return "invalid_request";
	case 401: return "unauthorized";
	case 403: return "forbidden";
	case 404: return "not_found";
	case 405: return "method_not_allowed";
	case 408: return "request_timeout";
	case 409: return "conflict";
	case 413: return "body_too_large";
	case 415: return "unsupported_media_type";
	case 429: return "too_many_requests";
	case 500: return "internal";
	case 501: return "not_implemented";
	case 502: return "bad_gateway";
	case 503: return "unavailable";
	case 504: return "gateway_timeout";
	default: return status >= 500 ? "internal" : "error";
	}
}

int http_parse_listen(const char *listen, char *host, size_t host_size, uint16_t *port,
                      struct st_error **err)
{
	if (!listen || !*listen)
		return st_error_make(err, EINVAL, "empty listen address: expected HOST:PORT");
	const char *colon;
	const char *h = listen;
	size_t hlen;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (!close || close[1] != ':')
			return st_error_make(err, EINVAL,
			                     "listen address '%s': expected [IPV6]:PORT", listen);
		h = listen + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(listen, ':');
		if (!colon)
			return st_error_make(
			    err, EINVAL,
			    "listen address '%s': expected HOST:PORT, e.g. 127.0.0.1:8080", listen);
		hlen = (size_t)(colon - listen);
	}
	if (hlen == 0)
		h = "0.0.0.0", hlen = 7;
	if (hlen + 1 > host_size)
		return st_error_make(err, EINVAL, "listen address '%s': host too long", listen);
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	uint64_t p;
	if (st_parse_u64(colon + 1, &p) < 0 || p > 65535)
		return st_error_make(err, EINVAL, "listen address '%s': port must be 0..65535",
		                     listen);
	*port = (uint16_t)p;
	return 0;
}

void http_server_options_init(struct http_server_options *o)
{
	memset(o, 0, sizeof(*o));
	o->max_body_bytes = 1024 * 1024;
	o->max_upload_bytes = 1024ULL * 1024 * 1024;
	o->request_deadline_ms = 60000;
	o->idle_timeout_s = 120;
	o->max_connections = 512;
	o->access_log = true;
}

/* ---- server lifecycle ------------------------------------------------------------------- */

int http_server_new(const char *listen_addr, const struct http_server_options *opts,
                    struct http_server **out, struct st_error **err)
{
	struct http_server *srv = st_xcalloc(1, sizeof(*srv));
	if (opts)
		srv->opts = *opts;
	else
		http_server_options_init(&srv->opts);
	if (!srv->opts.max_body_bytes)
		srv->opts.max_body_bytes = 1024 * 1024;
	if (!srv->opts.max_upload_bytes)
		srv->opts.max_upload_bytes = 1024ULL * 1024 * 1024;
	if (!srv->opts.request_deadline_ms)
		srv->opts.request_deadline_ms = 60000;
	if (!srv->opts.idle_timeout_s)
		srv->opts.idle_timeout_s = 120;
	if (!srv->opts.max_connections)
		srv->opts.max_connections = 512;
	const char *spool = srv->opts.spool_dir ? srv->opts.spool_dir : getenv("TMPDIR");
	srv->spool_dir = st_xstrdup(spool && *spool ? spool : "/tmp");
	srv->opts.spool_dir = srv->spool_dir;
	srv->listen_fd = -1;
	pthread_mutex_init(&srv->auth_lock, NULL);
	pthread_mutex_init(&srv->metrics_lock, NULL);
	pthread_mutex_init(&srv->streams_lock, NULL);
	srv->unmatched.name = st_xstrdup("unmatched");

	int r = http_parse_listen(listen_addr, srv->host, sizeof(srv->host), &srv->port, err);
	if (r < 0)
		goto fail;

	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", srv->port);
	struct addrinfo *ai = NULL;
	int gai = getaddrinfo(srv->host, portstr, &hints, &ai);
	if (gai != 0) {
		r = st_error_make(err, EINVAL, "cannot resolve listen host '%s': %s", srv->host,
		                  gai_strerror(gai));
		goto fail;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = st_error_make(err, errno, "cannot create listening socket");
		freeaddrinfo(ai);
		goto fail;
	}
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		int e = errno;
		freeaddrinfo(ai);
		close(fd);
		r = st_error_make(err, e, "cannot listen on '%s'", listen_addr);
		goto fail;
	}
	freeaddrinfo(ai);
	if (listen(fd, 256) < 0) {
		int e = errno;
		close(fd);
		r = st_error_make(err, e, "cannot listen on '%s'", listen_addr);
		goto fail;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		char hbuf[64];
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			srv->port = ntohs(s6->sin6_port);
			inet_ntop(AF_INET6, &s6->sin6_addr, hbuf, sizeof(hbuf));
			snprintf(srv->address, sizeof(srv->address), "[%s]:%u", hbuf, srv->port);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			srv->port = ntohs(s4->sin_port);
			inet_ntop(AF_INET, &s4->sin_addr, hbuf, sizeof(hbuf));
			snprintf(srv->address, sizeof(srv->address), "%s:%u", hbuf, srv->port);
		}
	}
	srv->listen_fd = fd;
	*out = srv;
	return 0;
fail:
	http_server_free(srv);
	return r;
}

uint16_t http_server_port(const struct http_server *srv)
{
	return srv->port;
}

const char *http_server_address(const struct http_server *srv)
{
	return srv->address;
}

unsigned http_server_inflight(struct http_server *srv)
{
	return atomic_load(&srv->inflight);
}

int http_route_ex(struct http_server *srv, const struct http_route_spec *spec)
{
	if (srv->started || !spec->method || !spec->pattern || !spec->handler)
		return -EINVAL;
	if (srv->nroutes == srv->routes_cap) {
		size_t ncap = srv->routes_cap ? srv->routes_cap * 2 : 32;
		struct http__route *n = realloc(srv->routes, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		srv->routes = n;
		srv->routes_cap = ncap;
	}
	struct http__route *r = &srv->routes[srv->nroutes];
	memset(r, 0, sizeof(*r));
	r->method = st_xstrdup(spec->method);
	r->pattern = st_xstrdup(spec->pattern);
	r->name = st_xstrdup(spec->name ? spec->name : spec->pattern);
	r->scope = spec->scope ? st_xstrdup(spec->scope) : NULL;
	r->handler = spec->handler;
	r->ctx = spec->ctx;
	r->flags = spec->flags;
	r->max_body_bytes = spec->max_body_bytes;
	struct st_error *e = NULL;
	if (http__route_parse(r, &e) < 0) {
		st_log(ST_LOG_ERROR, "%s", st_error_msg(e));
		st_error_free(e);
		http__route_free(r);
		return -EINVAL;
	}
	srv->nroutes++;
	return 0;
}

int http_route(struct http_server *srv, const char *method, const char *pattern,
               http_handler_fn handler, void *ctx, unsigned flags)
{
	struct http_route_spec s = {
	    .method = method, .pattern = pattern, .handler = handler, .ctx = ctx, .flags = flags};
	return http_route_ex(srv, &s);
}

/* ---- request state ---------------------------------------------------------------------- */

static void conn_free(struct http__conn *c)
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
	free(c->scopes);
	free(c->principal);
	free(c->path);
	free(c->raw_path);
	st_buf_release(&c->body);
	if (c->body_fd >= 0)
		close(c->body_fd);
	free(c);
}

static bool request_id_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.'))
			return false;
	return true;
}

static void gen_request_id(char *out, size_t size)
{
	unsigned char rnd[12];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		uint64_t t = (uint64_t)st_now_us();
		memcpy(rnd, &t, 8);
		memset(rnd + 8, 0, 4);
	}
	static const char hex[] = "0123456789abcdef";
	size_t j = 0;
	for (size_t i = 0; i < sizeof(rnd) && j + 2 < size; i++) {
		out[j++] = hex[rnd[i] >> 4];
		out[j++] = hex[rnd[i] & 15];
	}
	out[j] = '\0';
}

static void client_string(struct MHD_Connection *conn, char *out, size_t size)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	snprintf(out, size, "unknown");
	if (!ci || !ci->client_addr)
		return;
	char h[64];
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, h, sizeof(h));
		snprintf(out, size, "%s:%u", h, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, h, sizeof(h));
		snprintf(out, size, "[%s]:%u", h, ntohs(s6->sin6_port));
	}
}

struct query_acc {
	struct st_buf *b;
};

static enum MHD_Result query_collect(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
	struct st_buf *b = cls;
	(void)kind;
	(void)st_buf_appendf(b, "%s%s%s%s", b->len ? "&" : "", key, value ? "=" : "",
	                     value ? value : "");
	return MHD_YES;
}

void http__add_headers(struct http__conn *c, struct MHD_Response *resp, const char *content_type)
{
	if (content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(resp, "X-Request-Id", c->request_id);
	for (size_t i = 0; i < c->nhdrs; i++)
		if (c->hdrs[i].name)
			MHD_add_response_header(resp, c->hdrs[i].name, c->hdrs[i].value);
	if (c->srv->opts.cors) {
		MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
		MHD_add_response_header(resp, "Access-Control-Expose-Headers",
		                        "X-Request-Id, Retry-After");
	}
	if (atomic_load(&c->srv->stopping))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}

void http__conn_mark_replied(struct http__conn *c, unsigned status, uint64_t bytes)
{
	c->replied = true;
	c->status = status;
	c->bytes = bytes;
}

static int queue(struct http__conn *c, unsigned status, struct MHD_Response *resp,
                 const char *content_type, uint64_t bytes)
{
	if (!resp)
		return -ENOMEM;
	if (c->replied) {
		MHD_destroy_response(resp);
		st_log(ST_LOG_ERROR, "handler for '%s' replied twice", c->req.route);
		return -EALREADY;
	}
	http__add_headers(c, resp, content_type);
	enum MHD_Result ok = MHD_queue_response(c->mhd, status, resp);
	MHD_destroy_response(resp);
	if (ok != MHD_YES)
		return -EIO;
	http__conn_mark_replied(c, status, bytes);
	return 0;
}

/* ---- request accessors ------------------------------------------------------------------ */

const char *http_param(const struct http_request *req, const char *name)
{
	const struct http__conn *c = req->priv;
	for (size_t i = 0; i < c->nparams; i++)
		if (strcmp(c->param_names[i], name) == 0)
			return c->param_values[i];
	return NULL;
}

struct query_find {
	const char *name;
	const char *raw;
	bool found;
};

static enum MHD_Result query_find_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
	struct query_find *q = cls;
	(void)kind;
	char *k = NULL;
	if (http__percent_decode_ex(key, strlen(key), true, &k) < 0)
		return MHD_YES;
	bool eq = strcmp(k, q->name) == 0;
	free(k);
	if (eq) {
		q->raw = value ? value : "";
		q->found = true;
		return MHD_NO;
	}
	return MHD_YES;
}

const char *http_query(const struct http_request *req, const char *name)
{
	struct http__conn *c = req->priv;
	struct query_find q = {.name = name};
	MHD_get_connection_values(c->mhd, MHD_GET_ARGUMENT_KIND, query_find_cb, &q);
	if (!q.found)
		return NULL;
	char *v = NULL;
	if (http__percent_decode_ex(q.raw, strlen(q.raw), true, &v) < 0)
		return NULL;
	/* keep the decoded copy alive until the request ends (a header list doubles as arena) */
	c->hdrs = realloc(c->hdrs, (c->nhdrs + 1) * sizeof(*c->hdrs));
	if (!c->hdrs)
		abort();
	/* stored with a NULL name: skipped when adding response headers */
	c->hdrs[c->nhdrs].name = NULL;
	c->hdrs[c->nhdrs].value = v;
	c->nhdrs++;
	return v;
}

const char *http_header(const struct http_request *req, const char *name)
{
	const struct http__conn *c = req->priv;
	return MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, name);
}

const char *http_bearer_token(const struct http_request *req)
{
	const char *a = http_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!a || strncasecmp(a, "Bearer ", 7) != 0)
		return NULL;
	a += 7;
	while (*a == ' ')
		a++;
	return *a ? a : NULL;
}

char *http_basic_password(const struct http_request *req)
{
	return http_basic_decode(http_header(req, MHD_HTTP_HEADER_AUTHORIZATION));
}

char *http_basic_decode(const char *a)
{
	if (!a || strncasecmp(a, "Basic ", 6) != 0)
		return NULL;
	a += 6;
	while (*a == ' ')
		a++;
	size_t n = strlen(a);
	while (n > 0 && a[n - 1] == ' ')
		n--;
	if (n == 0 || n > 8192 || n % 4 != 0)
		return NULL;
	unsigned char *out = st_xmalloc(n / 4 * 3 + 1);
	int len = EVP_DecodeBlock(out, (const unsigned char *)a, (int)n);
	if (len < 0) {
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock counts the padding's zero bytes: drop them. */
	if (a[n - 1] == '=')
		len--;
	if (a[n - 2] == '=')
		len--;
	out[len] = '\0';
	char *colon = memchr(out, ':', (size_t)len);
	if (!colon || memchr(out, '\0', (size_t)len) != NULL) {
		free(out);
		return NULL;
	}
	char *pw = st_xstrdup(colon + 1);
	OPENSSL_cleanse(out, (size_t)len);
	free(out);
	return pw;
}

bool http_request_has_scope(const struct http_request *req, const char *scope)
{
	const struct http__conn *c = req->priv;
	return c->scopes && http__scopes_have(c->scopes, scope);
}

bool http_request_client_gone(const struct http_request *req)
{
	const struct http__conn *c = req->priv;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci)
		return true;
	struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
	if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
		return true;
	return false;
}

json_t *http_body_json(struct http_request *req)
{
	if (req->body_len == 0) {
		http_reply_error(req, 400, "invalid_json",
		                 "request body is empty: send a JSON object", NULL);
		return NULL;
	}
	json_error_t je;
	json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		char msg[300];
		snprintf(msg, sizeof(msg),
		         "request body is not valid JSON: %s (line %d, column %d)", je.text,
		         je.line, je.column);
		http_reply_error(req, 400, "invalid_json", msg, NULL);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		http_reply_error(req, 400, "invalid_json", "request body must be a JSON object",
		                 NULL);
		return NULL;
	}
	return j;
}

/* ---- replies ---------------------------------------------------------------------------- */

void http_reply_header(struct http_request *req, const char *name, const char *value)
{
	struct http__conn *c = req->priv;
	struct http__hdr *n = realloc(c->hdrs, (c->nhdrs + 1) * sizeof(*n));
	if (!n)
		abort();
	c->hdrs = n;
	c->hdrs[c->nhdrs].name = st_xstrdup(name);
	c->hdrs[c->nhdrs].value = st_xstrdup(value);
	c->nhdrs++;
}

int http_reply_bytes(struct http_request *req, unsigned status, const char *content_type,
                     const void *data, size_t len)
{
	struct http__conn *c = req->priv;
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(len, (void *)(uintptr_t)data, MHD_RESPMEM_MUST_COPY);
	return queue(c, status, resp, content_type, len);
}

int http_reply_text(struct http_request *req, unsigned status, const char *content_type,
                    const char *text)
{
	return http_reply_bytes(req, status, content_type ? content_type : "text/plain", text,
	                        strlen(text));
}

int http_reply_json(struct http_request *req, unsigned status, json_t *body)
{
	char *s = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!s)
		return -ENOMEM;
	size_t n = strlen(s);
	/* trailing newline: friendlier for curl users, harmless for parsers */
	char *s2 = realloc(s, n + 2);
	if (!s2) {
		free(s);
		return -ENOMEM;
	}
	s2[n] = '\n';
	s2[n + 1] = '\0';
	struct http__conn *c = req->priv;
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(n + 1, s2, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(s2);
		return -ENOMEM;
	}
	return queue(c, status, resp, "application/json", n + 1);
}

int http_reply_error(struct http_request *req, unsigned status, const char *code,
                     const char *message, json_t *details)
{
	json_t *e = json_object();
	json_object_set_new(e, "code", json_string(code ? code : http_status_code_name(status)));
	json_object_set_new(e, "message", json_string(message ? message : ""));
	if (details && json_is_object(details))
		json_object_update(e, details);
	json_decref(details);
	json_t *root = json_object();
	json_object_set_new(root, "error", e);
	json_object_set_new(root, "requestId", json_string(req->request_id));
	if (status == 401) {
		struct http__conn *c = req->priv;
		bool have = false;
		for (size_t i = 0; i < c->nhdrs; i++)
			if (c->hdrs[i].name && strcasecmp(c->hdrs[i].name, "WWW-Authenticate") == 0)
				have = true;
		if (!have)
			http_reply_header(req, "WWW-Authenticate",
			                  http_bearer_token(req)
			                      ? "Bearer realm=\"stockade\", error=\"invalid_token\""
			                      : "Bearer realm=\"stockade\"");
	}
	return http_reply_json(req, status, root);
}

int http_reply_bad_field(struct http_request *req, const char *field, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return http_reply_error(req, 400, "invalid_request", msg,
	                        json_pack("{s:s}", "field", field));
}

int http_reply_fd(struct http_request *req, unsigned status, const char *content_type, int fd,
                  uint64_t size)
{
	struct http__conn *c = req->priv;
	struct MHD_Response *resp = MHD_create_response_from_fd64(size, fd);
	if (!resp) {
		close(fd);
		return -ENOMEM;
	}
	return queue(c, status, resp, content_type, size);
}

struct http_stream *http_reply_stream(struct http_request *req, unsigned status,
                                      const char *content_type)
{
	struct http__conn *c = req->priv;
	if (c->replied)
		return NULL;
	struct http_stream *s = http__stream_new(c);
	struct MHD_Response *resp = MHD_create_response_from_callback(
	    MHD_SIZE_UNKNOWN, 64 * 1024, http__stream_reader, s, http__stream_response_free);
	if (!resp) {
		http__stream_response_free(s);
		http__stream_unref(s);
		http_stream_close(s);
		return NULL;
	}
	if (content_type && strncmp(content_type, "text/event-stream", 17) == 0) {
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
		MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	}
	c->stream = s;
	if (queue(c, status, resp, content_type, 0) < 0) {
		/* queue() destroyed the response (MHD's reference is gone) */
		c->stream = NULL;
		http__stream_unref(s);
		http_stream_close(s);
		return NULL;
	}
	return s;
}

struct stream_thread {
	struct http_stream *s;
	void (*fn)(struct http_stream *s, void *ctx);
	void *ctx;
};

static void *stream_thread_main(void *arg)
{
	struct stream_thread *t = arg;
	t->fn(t->s, t->ctx);
	http_stream_close(t->s);
	free(t);
	return NULL;
}

int http_reply_stream_thread(struct http_request *req, unsigned status, const char *content_type,
                             void (*fn)(struct http_stream *s, void *ctx), void *ctx)
{
	struct http_stream *s = http_reply_stream(req, status, content_type);
	if (!s)
		return -EIO;
	struct stream_thread *t = st_xcalloc(1, sizeof(*t));
	t->s = s;
	t->fn = fn;
	t->ctx = ctx;
	pthread_t th;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int r = pthread_create(&th, &attr, stream_thread_main, t);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		free(t);
		http_stream_close(s);
		return -r;
	}
	return 0;
}

int http_reply_upgrade(struct http_request *req, const char *protocol,
                       void (*fn)(struct http_upgrade *u), void *ctx)
{
	struct http__conn *c = req->priv;
	struct http_upgrade *u = st_xcalloc(1, sizeof(*u));
	u->fd = -1;
	u->ctx = ctx;
	u->priv = (void *)fn;
	struct MHD_Response *resp = MHD_create_response_for_upgrade(http__upgrade_handler, u);
	if (!resp) {
		free(u);
		return -ENOMEM;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, protocol);
	c->upgraded = true;
	int r = queue(c, MHD_HTTP_SWITCHING_PROTOCOLS, resp, NULL, 0);
	if (r < 0) {
		c->upgraded = false;
		free(u);
	}
	return r;
}

/* ---- the MHD callbacks ------------------------------------------------------------------ */

static enum MHD_Result queue_early_error(struct http__conn *c, unsigned status, const char *code,
                                         const char *msg, json_t *details)
{
	http_reply_error(&c->req, status, code, msg, details);
	c->early_reply = true;
	return MHD_YES;
}

static int spool_open(struct http_server *srv, struct st_error **err)
{
	int fd = open(srv->spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	/* O_TMPFILE unsupported on this filesystem: fall back to create-and-unlink */
	char *tmpl = st_xasprintf("%s/stockade-upload-XXXXXX", srv->spool_dir);
	fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		free(tmpl);
		return st_error_make(err, e, "cannot create upload spool file in '%s'",
		                     srv->spool_dir);
	}
	unlink(tmpl);
	free(tmpl);
	return fd;
}

static enum MHD_Result begin_request(struct http_server *srv, struct MHD_Connection *conn,
                                     const char *url, const char *method, void **con_cls)
{
	struct http__conn *c = st_xcalloc(1, sizeof(*c));
	*con_cls = c;
	c->srv = srv;
	c->mhd = conn;
	c->body_fd = -1;
	c->t0_us = st_now_us();
	/* decide about shutdown before counting the request: once counted as in flight, a
	 * request is served (http_server_stop waits for it) */
	bool stopping = atomic_load(&srv->stopping);
	atomic_fetch_add(&srv->inflight, 1);
	c->count_inflight = true;
	c->req.priv = c;
	c->req.body_fd = -1;
	c->req.method = method;
	const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
	if (rid && request_id_ok(rid))
		st_strlcpy(c->request_id, rid, sizeof(c->request_id));
	else
		gen_request_id(c->request_id, sizeof(c->request_id));
	c->req.request_id = c->request_id;
	client_string(conn, c->client, sizeof(c->client));
	c->req.client_addr = c->client;
	c->req.deadline_ms = st_now_ms() + srv->opts.request_deadline_ms;

	struct st_buf q;
	st_buf_init(&q, 64 * 1024);
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_collect, &q);
	c->raw_path = q.len ? st_xasprintf("%s?%s", url, q.data) : st_xstrdup(url);
	st_buf_release(&q);
	c->req.raw_path = c->raw_path;
	c->req.route = "unmatched";

	if (http__percent_decode(url, strlen(url), &c->path) < 0) {
		c->path = st_xstrdup(url);
		c->req.path = c->path;
		return queue_early_error(c, 400, "invalid_request",
		                         "the URL path contains an encoded NUL byte", NULL);
	}
	c->req.path = c->path;

	if (stopping) {
		http_reply_header(&c->req, "Retry-After", "1");
		return queue_early_error(c, 503, "shutting_down",
		                         "the server is shutting down: retry on another replica",
		                         NULL);
	}

	char allow[128];
	struct http__route *r = http__route_match(srv, c, method, url, allow, sizeof(allow));
	if (!r) {
		if (allow[0]) {
			http_reply_header(&c->req, "Allow", allow);
			char msg[256];
			snprintf(msg, sizeof(msg), "method %s is not allowed on '%s' (allowed: %s)",
			         method, c->path, allow);
			return queue_early_error(c, 405, "method_not_allowed", msg, NULL);
		}
		char msg[300];
		snprintf(msg, sizeof(msg), "no route for %s '%.200s'", method, c->path);
		return queue_early_error(c, 404, "not_found", msg, NULL);
	}
	c->route = r;
	c->req.route = r->name;

	if ((r->flags & HTTP_AUTH_MASK) == HTTP_AUTH_API_TOKEN) {
		const char *tok = http_bearer_token(&c->req);
		cleanup_free char *basic = NULL;
		bool basic_ok = (r->flags & HTTP_AUTH_BASIC_OK) != 0;
		if (!tok && basic_ok)
			tok = basic = http_basic_password(&c->req);
		enum http__auth_result ar = HTTP__AUTH_MISSING;
		if (tok)
			ar = http__authenticate(srv, tok, &c->principal, &c->scopes);
		if (ar != HTTP__AUTH_OK && basic_ok)
			http_reply_header(&c->req, "WWW-Authenticate",
			                  "Basic realm=\"stockade\", charset=\"UTF-8\"");
		if (ar == HTTP__AUTH_MISSING)
			return queue_early_error(
			    c, 401, "unauthorized",
			    basic_ok
			        ? "missing credentials: send the API token as 'Authorization: "
			          "Bearer <api token>' or as the password of Basic auth (git: "
			          "http://x:<api token>@host/..., or a credential helper)"
			        : "missing bearer token: send 'Authorization: Bearer <api token>'",
			    NULL);
		if (ar != HTTP__AUTH_OK)
			return queue_early_error(c, 401, "unauthorized",
			                         basic_ok ? "invalid or expired API token"
			                                  : "invalid or expired bearer token",
			                         NULL);
		c->req.principal = c->principal;
		if (r->scope && !http__scopes_have(c->scopes, r->scope)) {
			char hdr[160];
			snprintf(
			    hdr, sizeof(hdr),
			    "Bearer realm=\"stockade\", error=\"insufficient_scope\", scope=\"%s\"",
			    r->scope);
			http_reply_header(&c->req, "WWW-Authenticate", hdr);
			char msg[200];
			snprintf(msg, sizeof(msg), "token '%s' lacks the '%s' permission",
			         c->principal ? c->principal : "?", r->scope);
			return queue_early_error(c, 403, "forbidden", msg,
			                         json_pack("{s:s}", "requiredScope", r->scope));
		}
	}

	/* size caps, checked against Content-Length before reading anything */
	uint64_t cap = r->max_body_bytes                   ? r->max_body_bytes
	               : (r->flags & HTTP_ROUTE_BODY_FILE) ? srv->opts.max_upload_bytes
	                                                   : srv->opts.max_body_bytes;
	c->body_cap = (size_t)cap;
	const char *cl =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	uint64_t clen = 0;
	const char *expect =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
	bool have_clen = cl && st_parse_u64(cl, &clen) == 0;
	c->drain_limit = (uint64_t)cap * 4 + 65536;
	if (have_clen && clen > cap && !expect && clen <= cap + 16 * 1024 * 1024) {
		/* A client that did not ask for 100-continue is already sending: read and drop a
		 * modest excess so it reliably sees the 413 instead of a reset connection. */
		c->too_large = true;
		c->drain_limit = clen;
	} else if (have_clen && clen > cap) {
		char msg[200];
		snprintf(msg, sizeof(msg),
		         "request body of %llu bytes exceeds the limit of %llu bytes",
		         (unsigned long long)clen, (unsigned long long)cap);
		return queue_early_error(c, 413, "body_too_large", msg,
		                         json_pack("{s:I}", "limitBytes", (json_int_t)cap));
	}
	if (r->flags & HTTP_ROUTE_BODY_FILE) {
		struct st_error *e = NULL;
		c->body_fd = spool_open(srv, &e);
		if (c->body_fd < 0) {
			queue_early_error(c, 500, "internal", st_error_msg(e), NULL);
			st_error_free(e);
			return MHD_YES;
		}
	} else {
		/* +1 so a body exactly at the cap fits with its NUL */
		st_buf_init(&c->body, cap + 1);
	}
	return MHD_YES;
}

static void run_handler(struct http__conn *c)
{
	c->handled = true;
	if (c->body_fd >= 0) {
		if (lseek(c->body_fd, 0, SEEK_SET) < 0) {
			http_reply_error(&c->req, 500, "internal", "cannot rewind upload spool",
			                 NULL);
			return;
		}
		c->req.body_fd = c->body_fd;
		c->req.body_file_len = c->body_written;
		c->req.body = "";
	} else {
		c->req.body = c->body.data ? c->body.data : "";
		c->req.body_len = c->body.len;
	}
	int r = c->route->handler(&c->req, c->route->ctx);
	if (!c->replied) {
		if (r < 0)
			st_log(ST_LOG_ERROR, "handler '%s' failed: %s", c->route->name,
			       strerror(-r));
		else
			st_log(ST_LOG_ERROR, "handler '%s' returned without a reply",
			       c->route->name);
		http_reply_error(&c->req, 500, "internal",
		                 "the server failed to handle this request", NULL);
	}
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
	struct http_server *srv = cls;
	(void)version;
	struct http__conn *c = *con_cls;
	if (!c)
		return begin_request(srv, conn, url, method, con_cls);
	if (c->early_reply) {
		/* body of a request already answered (4xx): drop it */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (c->too_large) {
			/* keep draining up to 4x the cap so the client sees the 413, then give up */
			c->body_written += n;
			if (c->body_written > c->drain_limit)
				return MHD_NO;
			return MHD_YES;
		}
		if (c->body_fd >= 0) {
			if (c->body_written + n > c->body_cap) {
				c->too_large = true;
				c->body_written += n;
				return MHD_YES;
			}
			ssize_t w = st_write_all(c->body_fd, upload_data, n);
			if (w < 0) {
				st_log(ST_LOG_ERROR, "upload spool write failed: %s",
				       strerror((int)-w));
				return MHD_NO;
			}
			c->body_written += n;
			return MHD_YES;
		}
		if (c->body.len + n + 1 > c->body.max) {
			c->too_large = true;
			c->body_written = c->body.len + n;
			st_buf_release(&c->body);
			st_buf_init(&c->body, 1);
		} else if (st_buf_append(&c->body, upload_data, n) < 0) {
			return MHD_NO;
		}
		return MHD_YES;
	}
	/* final call: the whole body is in */
	if (c->replied)
		return MHD_YES;
	if (c->too_large) {
		char msg[200];
		snprintf(msg, sizeof(msg), "request body exceeds the limit of %zu bytes",
		         c->body_cap);
		http_reply_error(&c->req, 413, "body_too_large", msg,
		                 json_pack("{s:I}", "limitBytes", (json_int_t)c->body_cap));
		return MHD_YES;
	}
	run_handler(c);
	return MHD_YES;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct http_server *srv = cls;
	(void)conn;
	struct http__conn *c = *con_cls;
	if (!c)
		return;
	*con_cls = NULL;
	int64_t dur = st_now_us() - c->t0_us;
	if (c->stream) {
		c->bytes = http__stream_bytes(c->stream);
		http__stream_unref(c->stream);
		c->stream = NULL;
	}
	if (!c->replied)
		c->status = toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? 408 : 499;
	http__metrics_record(srv, c->route ? c->route : &srv->unmatched, c->status, dur);
	if (srv->opts.access_log && !(c->route && (c->route->flags & HTTP_ROUTE_NO_LOG)))
		http__access_log(c, dur);
	if (c->count_inflight)
		atomic_fetch_sub(&srv->inflight, 1);
	conn_free(c);
}

static size_t unescape_noop(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	st_log(ST_LOG_DEBUG, "microhttpd: %s", buf);
}

int http_server_start(struct http_server *srv, struct st_error **err)
{
	if (srv->started)
		return st_error_make(err, EALREADY, "server already started");
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
	                 MHD_USE_ITC | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
	srv->mhd = MHD_start_daemon(
	    flags, 0, NULL, NULL, access_cb, srv, MHD_OPTION_LISTEN_SOCKET, srv->listen_fd,
	    MHD_OPTION_NOTIFY_COMPLETED, completed_cb, srv, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned int)srv->opts.idle_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned int)srv->opts.max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)(64 * 1024), MHD_OPTION_UNESCAPE_CALLBACK, unescape_noop, NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_THREAD_STACK_SIZE,
	    (size_t)(2 * 1024 * 1024), MHD_OPTION_END);
	if (!srv->mhd)
		return st_error_make(err, errno ? errno : EIO, "cannot start HTTP daemon on '%s'",
		                     srv->address);
	srv->started = true;
	return 0;
}

void http_server_quiesce(struct http_server *srv)
{
	if (atomic_exchange(&srv->stopping, 1))
		return;
	if (srv->mhd) {
		MHD_socket fd = MHD_quiesce_daemon(srv->mhd);
		if (fd != MHD_INVALID_SOCKET)
			close(fd);
		srv->listen_fd = -1;
	}
}

void http_server_stop(struct http_server *srv, unsigned grace_ms)
{
	if (srv->stopped)
		return;
	http_server_quiesce(srv);
	int64_t until = st_now_ms() + grace_ms;
	while (atomic_load(&srv->inflight) > 0 && st_now_ms() < until) {
		/* streams with nothing left to say end now; others get until the deadline */
		usleep(10 * 1000);
	}
	http__streams_shutdown(srv);
	if (srv->mhd) {
		MHD_stop_daemon(srv->mhd);
		srv->mhd = NULL;
	}
	srv->stopped = true;
}

void http_server_free(struct http_server *srv)
{
	if (!srv)
		return;
	if (srv->mhd)
		http_server_stop(srv, 0);
	if (srv->listen_fd >= 0)
		close(srv->listen_fd);
	for (size_t i = 0; i < srv->nroutes; i++)
		http__route_free(&srv->routes[i]);
	free(srv->routes);
	free(srv->unmatched.name);
	http__auth_release(srv);
	free(srv->spool_dir);
	pthread_mutex_destroy(&srv->auth_lock);
	pthread_mutex_destroy(&srv->metrics_lock);
	pthread_mutex_destroy(&srv->streams_lock);
	free(srv);
}
