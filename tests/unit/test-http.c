/*
 * test-http.c - the HTTP layer over real sockets: a server on a free loopback port, libcurl as
 * the client. Routing, params, 404/405, auth (tokens, JWT, scopes), body caps, spooled
 * uploads, streaming, request ids, metrics, graceful stop.
 */
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>

#include "http/http.h"
#include "unit.h"

#define TOKEN "test-token-0123456789abcdef"

struct resp {
	long status;
	struct st_buf body;
	struct st_buf headers;
};

static size_t write_cb(char *p, size_t sz, size_t n, void *ud)
{
	struct st_buf *b = ud;
	st_buf_append(b, p, sz * n);
	return sz * n;
}

static void do_req(struct http_server *srv, const char *method, const char *path, const char *auth,
                   const char *body, size_t body_len, struct resp *r)
{
	CURL *c = curl_easy_init();
	char url[512];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", http_server_port(srv), path);
	st_buf_init(&r->body, 64 * 1024 * 1024);
	st_buf_init(&r->headers, 1024 * 1024);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
	struct curl_slist *h = NULL;
	char ah[600];
	if (auth) {
		if (strncmp(auth, "Basic ", 6) == 0)
			snprintf(ah, sizeof(ah), "Authorization: %s", auth);
		else
			snprintf(ah, sizeof(ah), "Authorization: Bearer %s", auth);
		h = curl_slist_append(h, ah);
	}
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	CURLcode rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	/* an early 413 may close the connection while the client is still sending */
	if (rc == CURLE_SEND_ERROR && r->status == 413)
		rc = CURLE_OK;
	if (rc != CURLE_OK)
		fprintf(stderr, "curl: %s\n", curl_easy_strerror(rc));
	CHECK(rc == CURLE_OK);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (!r->body.data)
		st_buf_append(&r->body, "", 0);
	if (!r->headers.data)
		st_buf_append(&r->headers, "", 0);
}

static void resp_release(struct resp *r)
{
	st_buf_release(&r->body);
	st_buf_release(&r->headers);
}

static int h_hello(struct http_request *req, void *ctx)
{
	(void)ctx;
	return http_reply_json(req, 200,
	                       json_pack("{s:s,s:s?,s:s?}", "hello", "world", "principal",
	                                 req->principal, "q", http_query(req, "q")));
}

static int h_params(struct http_request *req, void *ctx)
{
	(void)ctx;
	return http_reply_json(req, 200,
	                       json_pack("{s:s?,s:s?,s:s?}", "name", http_param(req, "name"),
	                                 "port", http_param(req, "port"), "rest",
	                                 http_param(req, "*")));
}

static int h_echo(struct http_request *req, void *ctx)
{
	(void)ctx;
	json_t *j = http_body_json(req);
	if (!j)
		return 0;
	return http_reply_json(req, 200, j);
}

static int h_upload(struct http_request *req, void *ctx)
{
	(void)ctx;
	CHECK(req->body_fd >= 0);
	char buf[65536];
	uint64_t total = 0, sum = 0;
	ssize_t n;
	while ((n = read(req->body_fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			sum += (unsigned char)buf[i];
		total += (uint64_t)n;
	}
	return http_reply_json(req, 200,
	                       json_pack("{s:I,s:I,s:I}", "len", (json_int_t)total, "declared",
	                                 (json_int_t)req->body_file_len, "sum", (json_int_t)sum));
}

static void stream_fn(struct http_stream *s, void *ctx)
{
	(void)ctx;
	for (int i = 0; i < 5; i++) {
		char d[32];
		snprintf(d, sizeof(d), "{\"n\":%d}", i);
		http_stream_sse(s, "tick", NULL, d);
		usleep(2000);
	}
}

static int h_stream(struct http_request *req, void *ctx)
{
	return http_reply_stream_thread(req, 200, "text/event-stream", stream_fn, ctx);
}

static int h_noreply(struct http_request *req, void *ctx)
{
	(void)req;
	(void)ctx;
	return 0;
}

static int h_slow(struct http_request *req, void *ctx)
{
	(void)ctx;
	usleep(300 * 1000);
	return http_reply_json(req, 200, json_pack("{s:b}", "slow", 1));
}

static struct http_server *start(void)
{
	struct http_server_options o;
	http_server_options_init(&o);
	o.max_body_bytes = 1024;
	o.max_upload_bytes = 4 * 1024 * 1024;
	o.access_log = false;
	struct http_server *srv = NULL;
	struct st_error *err = NULL;
	int r = http_server_new("127.0.0.1:0", &o, &srv, &err);
	if (r < 0)
		fprintf(stderr, "%s\n", st_error_msg(err));
	CHECK(r == 0);
	CHECK(http_server_port(srv) != 0);
	CHECK(http_route(srv, "GET", "/hello", h_hello, NULL, HTTP_AUTH_NONE) == 0);
	CHECK(http_route(srv, "GET", "/secure", h_hello, NULL, HTTP_AUTH_API_TOKEN) == 0);
	struct http_route_spec spec = {.method = "GET",
	                               .pattern = "/admin",
	                               .handler = h_hello,
	                               .flags = HTTP_AUTH_API_TOKEN,
	                               .scope = "admin"};
	CHECK(http_route_ex(srv, &spec) == 0);
	CHECK(http_route(srv, "GET", "/fn/{name}", h_params, NULL, 0) == 0);
	CHECK(http_route(srv, "GET", "/fn/list", h_hello, NULL, 0) == 0);
	CHECK(http_route(srv, "POST", "/fn/{name}/invoke", h_params, NULL, 0) == 0);
	CHECK(http_route(srv, "*", "/sb/{name}/ports/{port}/*", h_params, NULL, 0) == 0);
	CHECK(http_route(srv, "POST", "/echo", h_echo, NULL, 0) == 0);
	CHECK(http_route(srv, "PUT", "/upload", h_upload, NULL, HTTP_ROUTE_BODY_FILE) == 0);
	CHECK(http_route(srv, "GET", "/stream", h_stream, NULL, 0) == 0);
	CHECK(http_route(srv, "GET", "/noreply", h_noreply, NULL, 0) == 0);
	CHECK(http_route(srv, "GET", "/slow", h_slow, NULL, 0) == 0);
	struct http_route_spec basic = {.method = "GET",
	                                .pattern = "/basic",
	                                .handler = h_hello,
	                                .flags = HTTP_AUTH_API_TOKEN | HTTP_AUTH_BASIC_OK};
	CHECK(http_route_ex(srv, &basic) == 0);
	struct http_route_spec capped = {.method = "PUT",
	                                 .pattern = "/upload-capped",
	                                 .handler = h_upload,
	                                 .flags = HTTP_ROUTE_BODY_FILE,
	                                 .max_body_bytes = 1000};
	CHECK(http_route_ex(srv, &capped) == 0);
	CHECK(http_auth_add_token(srv, "ci", TOKEN, "execute", &err) == 0);
	CHECK(http_auth_set_jwt_secret(srv, "jwt-secret", 10) == 0);
	CHECK(http_server_start(srv, &err) == 0);
	return srv;
}

static void stop(struct http_server *srv)
{
	http_server_stop(srv, 1000);
	http_server_free(srv);
}

TEST(http_hello_and_request_id)
{
	struct http_server *srv = start();
	struct resp r;
	do_req(srv, "GET", "/hello?q=a%20b+c", NULL, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_CONTAINS(r.body.data, "\"hello\":\"world\"");
	CHECK_CONTAINS(r.body.data, "\"q\":\"a b c\"");
	CHECK_CONTAINS(r.headers.data, "X-Request-Id: ");
	CHECK_CONTAINS(r.headers.data, "application/json");
	resp_release(&r);
	stop(srv);
}

TEST(http_404_405_json)
{
	struct http_server *srv = start();
	struct resp r;
	do_req(srv, "GET", "/nope", NULL, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 404);
	CHECK_CONTAINS(r.body.data, "\"code\":\"not_found\"");
	resp_release(&r);
	do_req(srv, "DELETE", "/hello", NULL, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 405);
	CHECK_CONTAINS(r.body.data, "method_not_allowed");
	CHECK_CONTAINS(r.headers.data, "Allow: GET");
	resp_release(&r);
	stop(srv);
}

TEST(http_params_and_precedence)
{
	struct http_server *srv = start();
	struct resp r;
	do_req(srv, "GET", "/fn/my%20fn", NULL, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_CONTAINS(r.body.data, "\"name\":\"my fn\"");
	resp_release(&r);
	do_req(srv, "GET", "/fn/list", NULL, NULL, 0, &r);
	CHECK_CONTAINS(r.body.data, "\"hello\"");
	resp_release(&r);
	do_req(srv, "POST", "/fn/x/invoke", NULL, "{}", 2, &r);
	CHECK_CONTAINS(r.body.data, "\"name\":\"x\"");
	resp_release(&r);
	do_req(srv, "PATCH", "/sb/abc/ports/8080/a/b%2Fc?x=1", NULL, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_CONTAINS(r.body.data, "\"port\":\"8080\"");
	CHECK_CONTAINS(r.body.data, "\"rest\":\"a/b%2Fc\"");
	resp_release(&r);
	do_req(srv, "GET", "/sb/abc/ports/8080", NULL, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_CONTAINS(r.body.data, "\"rest\":\"\"");
	resp_release(&r);
	stop(srv);
}

static char *b64url(const unsigned char *d, size_t n)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *o = st_xmalloc(n * 2 + 4);
	size_t j = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)d[i + 1] << 8;
		if (i + 2 < n)
			v |= d[i + 2];
		o[j++] = t[(v >> 18) & 63];
		o[j++] = t[(v >> 12) & 63];
		if (i + 1 < n)
			o[j++] = t[(v >> 6) & 63];
		if (i + 2 < n)
			o[j++] = t[v & 63];
	}
	o[j] = '\0';
	return o;
}

static char *make_jwt(const char *alg, const char *secret, const char *claims)
{
	char hdr[64];
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
	char *h = b64url((const unsigned char *)hdr, strlen(hdr));
	char *c = b64url((const unsigned char *)claims, strlen(claims));
	char *si = st_xasprintf("%s.%s", h, c);
	unsigned char mac[32];
	unsigned ml = 0;
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)si, strlen(si), mac,
	     &ml);
	char *s = b64url(mac, 32);
	char *tok = st_xasprintf("%s.%s", si, s);
	free(h);
	free(c);
	free(si);
	free(s);
	return tok;
}

TEST(http_auth_tokens_and_jwt)
{
	struct http_server *srv = start();
	struct resp r;
	do_req(srv, "GET", "/secure", NULL, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 401);
	CHECK_CONTAINS(r.headers.data, "WWW-Authenticate: Bearer");
	CHECK_CONTAINS(r.body.data, "unauthorized");
	resp_release(&r);
	do_req(srv, "GET", "/secure", "wrong-token-wrong-token", NULL, 0, &r);
	CHECK_EQ_INT(r.status, 401);
	CHECK_CONTAINS(r.headers.data, "invalid_token");
	resp_release(&r);
	do_req(srv, "GET", "/secure", TOKEN, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_CONTAINS(r.body.data, "\"principal\":\"ci\"");
	resp_release(&r);
	do_req(srv, "GET", "/admin", TOKEN, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 403);
	CHECK_CONTAINS(r.body.data, "admin");
	resp_release(&r);

	char claims[200];
	snprintf(claims, sizeof(claims), "{\"sub\":\"backend\",\"exp\":%lld}",
	         (long long)st_wall_s() + 300);
	char *good = make_jwt("HS256", "jwt-secret", claims);
	do_req(srv, "GET", "/admin", good, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_CONTAINS(r.body.data, "jwt:backend");
	resp_release(&r);
	char *badsig = make_jwt("HS256", "other-secret", claims);
	do_req(srv, "GET", "/secure", badsig, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 401);
	resp_release(&r);
	char *none = make_jwt("none", "jwt-secret", claims);
	do_req(srv, "GET", "/secure", none, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 401);
	resp_release(&r);
	snprintf(claims, sizeof(claims), "{\"sub\":\"backend\",\"exp\":%lld}",
	         (long long)st_wall_s() - 10);
	char *expired = make_jwt("HS256", "jwt-secret", claims);
	do_req(srv, "GET", "/secure", expired, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 401);
	resp_release(&r);
	snprintf(claims, sizeof(claims), "{\"sub\":\"x\",\"exp\":%lld,\"scope\":\"execute\"}",
	         (long long)st_wall_s() + 300);
	char *scoped = make_jwt("HS256", "jwt-secret", claims);
	do_req(srv, "GET", "/admin", scoped, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 403);
	resp_release(&r);
	free(good);
	free(badsig);
	free(none);
	free(expired);
	free(scoped);
	stop(srv);
}

/* "Basic " + base64(user ":" password) */
static char *basic(const char *userpass)
{
	static char out[512];
	memcpy(out, "Basic ", 6);
	EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)userpass,
	                (int)strlen(userpass));
	return out;
}

TEST(http_basic_auth_where_routes_take_it)
{
	struct http_server *srv = start();
	struct resp r;
	do_req(srv, "GET", "/basic", NULL, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 401);
	CHECK_CONTAINS(r.headers.data, "WWW-Authenticate: Basic realm=\"stockade\"");
	CHECK_CONTAINS(r.body.data, "password of Basic auth");
	resp_release(&r);
	do_req(srv, "GET", "/basic", basic("git:" TOKEN), NULL, 0, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_CONTAINS(r.body.data, "\"principal\":\"ci\"");
	resp_release(&r);
	do_req(srv, "GET", "/basic", basic(":" TOKEN), NULL, 0, &r);
	CHECK_EQ_INT(r.status, 200);
	resp_release(&r);
	do_req(srv, "GET", "/basic", TOKEN, NULL, 0, &r); /* bearer still works */
	CHECK_EQ_INT(r.status, 200);
	resp_release(&r);
	static const char *const bad[] = {"x:wrong-token", "no-colon-" TOKEN, "x:" TOKEN "x"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(bad); i++) {
		do_req(srv, "GET", "/basic", basic(bad[i]), NULL, 0, &r);
		CHECK_EQ_INT(r.status, 401);
		CHECK_CONTAINS(r.headers.data, "WWW-Authenticate: Basic");
		resp_release(&r);
	}
	static const char *const malformed[] = {"Basic !!!!", "Basic ", "Basic YQ",
	                                        "Basic ====", "Basic AAAAAAAA"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(malformed); i++) {
		do_req(srv, "GET", "/basic", malformed[i], NULL, 0, &r);
		CHECK_EQ_INT(r.status, 401);
		resp_release(&r);
	}
	/* a route that does not take Basic refuses it */
	do_req(srv, "GET", "/secure", basic("x:" TOKEN), NULL, 0, &r);
	CHECK_EQ_INT(r.status, 401);
	CHECK_CONTAINS(r.headers.data, "WWW-Authenticate: Bearer");
	resp_release(&r);
	/* a spooled body honours its route's own cap */
	char body[2000];
	memset(body, 'a', sizeof(body));
	do_req(srv, "PUT", "/upload-capped", NULL, body, sizeof(body), &r);
	CHECK_EQ_INT(r.status, 413);
	resp_release(&r);
	do_req(srv, "PUT", "/upload-capped", NULL, body, 900, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_CONTAINS(r.body.data, "\"len\":900");
	resp_release(&r);
	stop(srv);
}

TEST(http_auth_token_rules)
{
	struct http_server *srv = NULL;
	struct st_error *err = NULL;
	CHECK(http_server_new("127.0.0.1:0", NULL, &srv, &err) == 0);
	CHECK(http_auth_is_empty(srv));
	CHECK(http_auth_add_token(srv, "short", "abc", "*", &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "too short");
	st_error_release(&err);
	CHECK(http_auth_add_token(srv, "h", "sha256:zz", "*", &err) < 0);
	st_error_release(&err);
	CHECK(http_auth_add_token(
	          srv, "h",
	          "sha256:0000000000000000000000000000000000000000000000000000000000000000", "*",
	          &err) == 0);
	CHECK(!http_auth_is_empty(srv));
	http_server_free(srv);
}

TEST(http_body_caps_and_json)
{
	struct http_server *srv = start();
	struct resp r;
	do_req(srv, "POST", "/echo", NULL, "{\"a\":1}", 7, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_CONTAINS(r.body.data, "\"a\":1");
	resp_release(&r);
	do_req(srv, "POST", "/echo", NULL, "{\"a\":", 5, &r);
	CHECK_EQ_INT(r.status, 400);
	CHECK_CONTAINS(r.body.data, "invalid_json");
	resp_release(&r);
	do_req(srv, "POST", "/echo", NULL, "[1]", 3, &r);
	CHECK_EQ_INT(r.status, 400);
	resp_release(&r);
	char *big = st_xmalloc(5000);
	memset(big, 'x', 5000);
	do_req(srv, "POST", "/echo", NULL, big, 5000, &r);
	CHECK_EQ_INT(r.status, 413);
	CHECK_CONTAINS(r.body.data, "body_too_large");
	resp_release(&r);
	free(big);
	/* the server still answers afterwards */
	do_req(srv, "GET", "/hello", NULL, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 200);
	resp_release(&r);
	stop(srv);
}

TEST(http_upload_spooled)
{
	struct http_server *srv = start();
	size_t n = 3 * 1024 * 1024;
	unsigned char *data = st_xmalloc(n);
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		data[i] = (unsigned char)(i * 7);
		sum += data[i];
	}
	struct resp r;
	do_req(srv, "PUT", "/upload", NULL, (const char *)data, n, &r);
	CHECK_EQ_INT(r.status, 200);
	char want[128];
	snprintf(want, sizeof(want), "\"len\":%zu", n);
	CHECK_CONTAINS(r.body.data, want);
	snprintf(want, sizeof(want), "\"sum\":%llu", (unsigned long long)sum);
	CHECK_CONTAINS(r.body.data, want);
	resp_release(&r);
	free(data);
	n = 5 * 1024 * 1024;
	data = st_xcalloc(1, n);
	do_req(srv, "PUT", "/upload", NULL, (const char *)data, n, &r);
	CHECK_EQ_INT(r.status, 413);
	resp_release(&r);
	free(data);
	stop(srv);
}

TEST(http_stream_sse)
{
	struct http_server *srv = start();
	struct resp r;
	do_req(srv, "GET", "/stream", NULL, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_CONTAINS(r.headers.data, "text/event-stream");
	CHECK_CONTAINS(r.body.data, "event: tick\ndata: {\"n\":0}\n\n");
	CHECK_CONTAINS(r.body.data, "data: {\"n\":4}\n\n");
	resp_release(&r);
	stop(srv);
}

TEST(http_handler_without_reply_is_500)
{
	struct http_server *srv = start();
	struct resp r;
	do_req(srv, "GET", "/noreply", NULL, NULL, 0, &r);
	CHECK_EQ_INT(r.status, 500);
	CHECK_CONTAINS(r.body.data, "\"code\":\"internal\"");
	resp_release(&r);
	stop(srv);
}

TEST(http_metrics_render)
{
	struct http_server *srv = start();
	struct resp r;
	do_req(srv, "GET", "/hello", NULL, NULL, 0, &r);
	resp_release(&r);
	do_req(srv, "GET", "/nope", NULL, NULL, 0, &r);
	resp_release(&r);
	usleep(50 * 1000);
	struct st_buf b;
	st_buf_init(&b, 1 << 20);
	http_server_metrics_render(srv, &b);
	CHECK_CONTAINS(
	    b.data,
	    "stockade_http_requests_total{route=\"/hello\",method=\"GET\",status=\"200\"} 1");
	CHECK_CONTAINS(b.data, "route=\"unmatched\"");
	CHECK_CONTAINS(b.data, "stockade_http_request_duration_seconds_bucket");
	st_buf_release(&b);
	stop(srv);
}

struct slow_arg {
	struct http_server *srv;
	long status;
};

static void *slow_client(void *arg)
{
	struct slow_arg *a = arg;
	struct resp r;
	do_req(a->srv, "GET", "/slow", NULL, NULL, 0, &r);
	a->status = r.status;
	resp_release(&r);
	return NULL;
}

TEST(http_graceful_stop_finishes_inflight)
{
	struct http_server *srv = start();
	struct slow_arg a = {.srv = srv};
	pthread_t th;
	pthread_create(&th, NULL, slow_client, &a);
	while (http_server_inflight(srv) == 0)
		usleep(1000);
	http_server_stop(srv, 5000);
	pthread_join(th, NULL);
	CHECK_EQ_INT(a.status, 200);
	http_server_free(srv);
}

TEST(http_parse_listen)
{
	char h[64];
	uint16_t p;
	CHECK(http_parse_listen("127.0.0.1:8080", h, sizeof(h), &p, NULL) == 0);
	CHECK_STREQ(h, "127.0.0.1");
	CHECK_EQ_INT(p, 8080);
	CHECK(http_parse_listen("[::1]:0", h, sizeof(h), &p, NULL) == 0);
	CHECK_STREQ(h, "::1");
	struct st_error *err = NULL;
	CHECK(http_parse_listen("localhost", h, sizeof(h), &p, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "HOST:PORT");
	st_error_release(&err);
	CHECK(http_parse_listen("a:99999", h, sizeof(h), &p, NULL) < 0);
}

/* ---- connection take-over ------------------------------------------------------------------ */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static void echo_upgraded(struct http_upgrade *u)
{
	/* echo what the client sends, upper-cased, until it closes */
	if (u->extra_len)
		st_write_all(u->fd, u->extra, u->extra_len);
	char buf[256];
	for (;;) {
		ssize_t n = read(u->fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] >= 'a' && buf[i] <= 'z')
				buf[i] = (char)(buf[i] - 32);
		if (st_write_all(u->fd, buf, (size_t)n) < 0)
			break;
	}
	http_upgrade_close(u);
}

static int h_upgrade(struct http_request *req, void *ctx)
{
	(void)ctx;
	const char *up = http_header(req, "Upgrade");
	if (!up || strcmp(up, "echo") != 0)
		return http_reply_error(req, 400, "invalid_request", "expected Upgrade: echo",
		                        NULL);
	http_reply_header(req, "X-Echo", "1");
	return http_reply_upgrade(req, "echo", echo_upgraded, NULL);
}

TEST(http_upgrade_takes_over_the_connection)
{
	struct http_server_options o;
	http_server_options_init(&o);
	o.access_log = false;
	struct http_server *srv = NULL;
	struct st_error *err = NULL;
	CHECK(http_server_new("127.0.0.1:0", &o, &srv, &err) == 0);
	CHECK(http_route(srv, "GET", "/ws", h_upgrade, NULL, 0) == 0);
	CHECK(http_server_start(srv, &err) == 0);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(http_server_port(srv))};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	const char *rq =
	    "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n";
	CHECK(st_write_all(fd, rq, strlen(rq)) == (ssize_t)strlen(rq));
	char buf[2048];
	size_t got = 0;
	while (got < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			fprintf(stderr, "read %zd after '%.*s'\n", n, (int)got, buf);
		CHECK(n > 0);
		got += (size_t)n;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	CHECK_CONTAINS(buf, "101");
	CHECK_CONTAINS(buf, "X-Echo: 1");
	CHECK(st_write_all(fd, "hello", 5) == 5);
	char echo[6] = {0};
	size_t e = 0;
	while (e < 5) {
		ssize_t n = read(fd, echo + e, 5 - e);
		CHECK(n > 0);
		e += (size_t)n;
	}
	CHECK_STREQ(echo, "HELLO");
	close(fd);
	/* the upgraded connection ends; the server stops cleanly */
	for (int i = 0; i < 200 && http_server_inflight(srv) > 0; i++)
		usleep(10 * 1000);
	CHECK_EQ_INT(http_server_inflight(srv), 0);
	http_server_stop(srv, 1000);
	http_server_free(srv);
}

TEST(http_deeply_nested_json_is_refused_cleanly)
{
	struct http_server *srv = NULL;
	struct st_error *err = NULL;
	struct http_server_options o;
	http_server_options_init(&o);
	o.access_log = false;
	CHECK(http_server_new("127.0.0.1:0", &o, &srv, &err) == 0);
	CHECK(http_route(srv, "POST", "/echo", h_echo, NULL, 0) == 0);
	CHECK(http_server_start(srv, &err) == 0);
	size_t depth = 100000;
	char *body = st_xmalloc(depth * 2 + 1);
	memset(body, '[', depth);
	memset(body + depth, ']', depth);
	body[2 * depth] = '\0';
	struct resp r;
	do_req(srv, "POST", "/echo", NULL, body, 2 * depth, &r);
	CHECK_EQ_INT(r.status, 400);
	CHECK_CONTAINS(r.body.data, "invalid_json");
	resp_release(&r);
	free(body);
	http_server_stop(srv, 1000);
	http_server_free(srv);
}

/* ---- a client that leaves a stream ------------------------------------------------------------ */

static volatile int writer_result = 1;

static void endless_fn(struct http_stream *s, void *ctx)
{
	(void)ctx;
	for (int i = 0; i < 2000; i++) {
		int r = http_stream_printf(s, "{\"n\":%d}\n", i);
		if (r < 0) {
			writer_result = r;
			return;
		}
		usleep(5000);
	}
	writer_result = 0;
}

static int h_endless(struct http_request *req, void *ctx)
{
	return http_reply_stream_thread(req, 200, "application/x-ndjson", endless_fn, ctx);
}

static size_t abort_after_first(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	int *seen = ud;
	*seen += (int)(sz * n);
	return *seen > 20 ? 0 : sz * n; /* returning short aborts the transfer */
}

TEST(http_stream_writer_sees_client_leave)
{
	struct http_server *srv = NULL;
	struct st_error *err = NULL;
	struct http_server_options o;
	http_server_options_init(&o);
	o.access_log = false;
	CHECK(http_server_new("127.0.0.1:0", &o, &srv, &err) == 0);
	CHECK(http_route(srv, "GET", "/endless", h_endless, NULL, 0) == 0);
	CHECK(http_server_start(srv, &err) == 0);
	CURL *c = curl_easy_init();
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/endless", http_server_port(srv));
	int seen = 0;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, abort_after_first);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &seen);
	CURLcode rc = curl_easy_perform(c);
	CHECK(rc == CURLE_WRITE_ERROR);
	curl_easy_cleanup(c); /* closes the connection */
	for (int i = 0; i < 500 && writer_result == 1; i++)
		usleep(10 * 1000);
	CHECK_EQ_INT(writer_result, -EPIPE);
	for (int i = 0; i < 200 && http_server_inflight(srv) > 0; i++)
		usleep(10 * 1000);
	CHECK_EQ_INT(http_server_inflight(srv), 0);
	http_server_stop(srv, 1000);
	http_server_free(srv);
}
