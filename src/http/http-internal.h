/*
 * http-internal.h - what the http-*.c files share: the server, route table, per-request
 * connection state, auth table, metrics and stream internals. Nothing here is public.
 */
#ifndef STOCKADE_HTTP_INTERNAL_H
#define STOCKADE_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "http/http.h"

#define HTTP__MAX_PARAMS 8
#define HTTP__MAX_SEGMENTS 32
#define HTTP__STATUS_SLOTS 24
#define HTTP__HIST_BUCKETS 14
#define HTTP__STREAM_QUEUE_MAX (1024 * 1024)

struct http__route {
	char *method;
	char *pattern;
	char *name;
	char *scope;
	http_handler_fn handler;
	void *ctx;
	unsigned flags;
	size_t max_body_bytes;
	/* parsed pattern */
	char *segs[HTTP__MAX_SEGMENTS];
	size_t nsegs;
	bool prefix; /* last pattern segment was "*" (not stored in segs) */
	unsigned literals;
	/* metrics (guarded by the server's metrics lock) */
	struct {
		unsigned status;
		uint64_t count;
	} status_counts[HTTP__STATUS_SLOTS];
	uint64_t hist[HTTP__HIST_BUCKETS + 1];
	double sum_s;
	uint64_t count;
};

struct http__token {
	char *name;
	unsigned char hash[32];
	char *scopes;
};

struct http__metrics_hook {
	void (*fn)(void *ctx, struct st_buf *out);
	void *ctx;
};

struct http_server {
	struct http_server_options opts;
	char *spool_dir;
	char address[128];
	char host[96];
	uint16_t port;
	int listen_fd;
	struct MHD_Daemon *mhd;

	struct http__route *routes;
	size_t nroutes, routes_cap;

	pthread_mutex_t auth_lock;
	struct http__token *tokens;
	size_t ntokens;
	unsigned char *jwt_secret;
	size_t jwt_secret_len;

	pthread_mutex_t metrics_lock;
	struct http__route unmatched; /* metrics for 404/early errors */
	struct http__metrics_hook hooks[16];
	size_t nhooks;

	pthread_mutex_t streams_lock;
	struct http_stream *streams; /* live streams, for shutdown */

	atomic_uint inflight;
	atomic_int stopping;
	bool started, stopped;
};

struct http__hdr {
	char *name;
	char *value;
};

struct http__conn {
	struct http_server *srv;
	struct MHD_Connection *mhd;
	struct http_request req;
	struct http__route *route;
	char *param_names[HTTP__MAX_PARAMS];
	char *param_values[HTTP__MAX_PARAMS];
	size_t nparams;
	char *scopes; /* of the authenticated principal */
	char *principal;
	char *path;
	char *raw_path;
	char request_id[72];
	char client[80];
	struct st_buf body;
	size_t body_cap;
	int body_fd;
	uint64_t body_written;
	bool too_large;
	uint64_t drain_limit;
	bool early_reply; /* a reply was queued before the body was read */
	bool replied;
	bool handled;
	bool upgraded;
	unsigned status;
	uint64_t bytes;
	int64_t t0_us;
	struct http__hdr *hdrs;
	size_t nhdrs;
	struct http_stream *stream;
	bool count_inflight;
};

/* http-router.c */
int http__route_parse(struct http__route *r, struct st_error **err);
/* Find the route for method+path. On success returns the route and fills params. When the
 * path exists for other methods, returns NULL and writes the Allow list into allow. */
struct http__route *http__route_match(struct http_server *srv, struct http__conn *c,
                                      const char *method, const char *path, char *allow,
                                      size_t allow_size);
void http__route_free(struct http__route *r);
int http__percent_decode(const char *in, size_t len, char **out);
int http__percent_decode_ex(const char *in, size_t len, bool plus_space, char **out);

/* http-auth.c */
enum http__auth_result { HTTP__AUTH_OK, HTTP__AUTH_MISSING, HTTP__AUTH_INVALID };
enum http__auth_result http__authenticate(struct http_server *srv, const char *token,
                                          char **principal, char **scopes);
bool http__scopes_have(const char *scopes, const char *scope);
void http__auth_release(struct http_server *srv);

/* http-log.c */
void http__access_log(struct http__conn *c, int64_t dur_us);
void http__metrics_record(struct http_server *srv, struct http__route *r, unsigned status,
                          int64_t dur_us);

/* http-stream.c */
struct http_stream *http__stream_new(struct http__conn *c);
ssize_t http__stream_reader(void *cls, uint64_t pos, char *buf, size_t max);
void http__stream_response_free(void *cls);
void http__streams_shutdown(struct http_server *srv);
uint64_t http__stream_bytes(struct http_stream *s);
void http__stream_unref(struct http_stream *s);
void http__upgrade_handler(void *cls, struct MHD_Connection *connection, void *req_cls,
                           const char *extra_in, size_t extra_in_size, MHD_socket sock,
                           struct MHD_UpgradeResponseHandle *urh);

/* http.c */
void http__add_headers(struct http__conn *c, struct MHD_Response *resp, const char *content_type);
void http__conn_mark_replied(struct http__conn *c, unsigned status, uint64_t bytes);

#endif
