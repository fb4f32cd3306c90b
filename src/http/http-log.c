/*
 * http-log.c - structured access log (one JSON line per request) and request metrics.
 *
 * Access log line: {"ts","level":"info","msg":"request","method","path","route","status",
 * "bytes","ms","requestId","principal","client"}. Written with one write(2) so lines from
 * concurrent connections never interleave; not written when logLevel is warn or error.
 *
 * Metrics are kept per route (route name = its pattern unless named), so label cardinality is
 * bounded by the route table, never by client-chosen paths: stockade_http_requests_total
 * {route,status}, stockade_http_request_duration_seconds histogram {route},
 * stockade_http_requests_in_flight.
 */
#include <time.h>

#include "http/http-internal.h"

static const double bucket_s[HTTP__HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                    0.25,  0.5,    1,     2.5,  5,     10,   30};

void http__access_log(struct http__conn *c, int64_t dur_us)
{
	if (st_log_get_level() > ST_LOG_INFO)
		return; /* logLevel warn or error: the access log is an info line */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char tbuf[96];
	snprintf(tbuf, sizeof(tbuf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	json_t *j = json_object();
	json_object_set_new(j, "ts", json_string(tbuf));
	json_object_set_new(j, "level", json_string("info"));
	json_object_set_new(j, "msg", json_string("request"));
	json_object_set_new(j, "method", json_string(c->req.method ? c->req.method : "?"));
	/* the path as sent, bounded: logs must not become a client-controlled firehose */
	char path[512];
	st_strlcpy(path, c->raw_path ? c->raw_path : "?", sizeof(path));
	/* the raw request target may hold any byte: keep printable ASCII so the line stays
	 * valid JSON (percent-encoded forms are already ASCII) */
	for (char *p = path; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	json_object_set_new(j, "path", json_string(path));
	json_object_set_new(j, "route", json_string(c->route ? c->route->name : "unmatched"));
	json_object_set_new(j, "status", json_integer(c->status));
	json_object_set_new(j, "bytes", json_integer((json_int_t)c->bytes));
	json_object_set_new(j, "ms", json_real((double)dur_us / 1000.0));
	json_object_set_new(j, "requestId", json_string(c->request_id));
	json_object_set_new(j, "principal", c->principal ? json_string(c->principal) : json_null());
	json_object_set_new(j, "client", json_string(c->client));
	char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
	json_decref(j);
	if (!s)
		return;
	size_t n = strlen(s);
	char *line = realloc(s, n + 2);
	if (!line) {
		free(s);
		return;
	}
	line[n] = '\n';
	(void)st_write_all(STDERR_FILENO, line, n + 1);
	free(line);
}

void http__metrics_record(struct http_server *srv, struct http__route *r, unsigned status,
                          int64_t dur_us)
{
	double s = (double)dur_us / 1e6;
	pthread_mutex_lock(&srv->metrics_lock);
	size_t i;
	for (i = 0; i < HTTP__STATUS_SLOTS; i++) {
		if (r->status_counts[i].status == status || r->status_counts[i].status == 0) {
			r->status_counts[i].status = status;
			r->status_counts[i].count++;
			break;
		}
	}
	size_t b;
	for (b = 0; b < HTTP__HIST_BUCKETS; b++)
		if (s <= bucket_s[b])
			break;
	r->hist[b]++;
	r->sum_s += s;
	r->count++;
	pthread_mutex_unlock(&srv->metrics_lock);
}

static void label_escape(struct st_buf *out, const char *v)
{
	for (; *v; v++) {
		if (*v == '"' || *v == '\\')
			st_buf_append(out, "\\", 1);
		if (*v == '\n') {
			st_buf_append(out, "\\n", 2);
			continue;
		}
		st_buf_append(out, v, 1);
	}
}

static void render_route(struct st_buf *out, const struct http__route *r, bool counts)
{
	if (r->count == 0)
		return;
	if (counts) {
		for (size_t i = 0; i < HTTP__STATUS_SLOTS && r->status_counts[i].status; i++) {
			st_buf_appendf(out, "stockade_http_requests_total{route=\"");
			label_escape(out, r->name);
			st_buf_appendf(out, "\",method=\"%s\",status=\"%u\"} %llu\n",
			               r->method ? r->method : "*", r->status_counts[i].status,
			               (unsigned long long)r->status_counts[i].count);
		}
		return;
	}
	uint64_t cum = 0;
	for (size_t b = 0; b <= HTTP__HIST_BUCKETS; b++) {
		cum += r->hist[b];
		st_buf_appendf(out, "stockade_http_request_duration_seconds_bucket{route=\"");
		label_escape(out, r->name);
		if (b < HTTP__HIST_BUCKETS)
			st_buf_appendf(out, "\",le=\"%g\"} %llu\n", bucket_s[b],
			               (unsigned long long)cum);
		else
			st_buf_appendf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
	}
	st_buf_appendf(out, "stockade_http_request_duration_seconds_sum{route=\"");
	label_escape(out, r->name);
	st_buf_appendf(out, "\"} %.6f\n", r->sum_s);
	st_buf_appendf(out, "stockade_http_request_duration_seconds_count{route=\"");
	label_escape(out, r->name);
	st_buf_appendf(out, "\"} %llu\n", (unsigned long long)r->count);
}

void http_server_metrics(struct http_server *srv, struct st_buf *out)
{
	pthread_mutex_lock(&srv->metrics_lock);
	st_buf_appendf(out, "# HELP stockade_http_requests_total HTTP requests by route and "
	                    "status.\n# TYPE stockade_http_requests_total counter\n");
	for (size_t i = 0; i < srv->nroutes; i++)
		render_route(out, &srv->routes[i], true);
	render_route(out, &srv->unmatched, true);
	st_buf_appendf(out, "# HELP stockade_http_request_duration_seconds Time from request "
	                    "head to reply completion.\n# TYPE "
	                    "stockade_http_request_duration_seconds histogram\n");
	for (size_t i = 0; i < srv->nroutes; i++)
		render_route(out, &srv->routes[i], false);
	render_route(out, &srv->unmatched, false);
	pthread_mutex_unlock(&srv->metrics_lock);
	st_buf_appendf(out,
	               "# HELP stockade_http_requests_in_flight Requests being handled now.\n"
	               "# TYPE stockade_http_requests_in_flight gauge\n"
	               "stockade_http_requests_in_flight %u\n",
	               http_server_inflight(srv));
}

int http_server_add_metrics(struct http_server *srv, void (*fn)(void *ctx, struct st_buf *out),
                            void *ctx)
{
	pthread_mutex_lock(&srv->metrics_lock);
	if (srv->nhooks >= ST_ARRAY_SIZE(srv->hooks)) {
		pthread_mutex_unlock(&srv->metrics_lock);
		return -ENOSPC;
	}
	srv->hooks[srv->nhooks].fn = fn;
	srv->hooks[srv->nhooks].ctx = ctx;
	srv->nhooks++;
	pthread_mutex_unlock(&srv->metrics_lock);
	return 0;
}

void http_server_metrics_render(struct http_server *srv, struct st_buf *out)
{
	http_server_metrics(srv, out);
	pthread_mutex_lock(&srv->metrics_lock);
	size_t n = srv->nhooks;
	struct http__metrics_hook hooks[ST_ARRAY_SIZE(srv->hooks)];
	memcpy(hooks, srv->hooks, n * sizeof(hooks[0]));
	pthread_mutex_unlock(&srv->metrics_lock);
	for (size_t i = 0; i < n; i++)
		hooks[i].fn(hooks[i].ctx, out);
}
