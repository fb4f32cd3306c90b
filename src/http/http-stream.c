/*
 * http-stream.c - streamed response bodies (chunked, SSE, NDJSON) and connection take-over.
 *
 * A stream is shared by three owners: the writer (whoever got it from http_reply_stream, on any
 * thread), MHD's response (its reader callback runs on the connection thread) and the request
 * record (which reads the byte count for the access log when the request completes). It is
 * freed when all have let go: the writer by http_stream_close, MHD by the response free
 * callback, the request by http__stream_unref.
 *
 * States: OPEN (writer appends to a bounded queue, the reader drains it) -> CLOSED (writer
 * done; the reader drains the rest, then ends the chunked body) or GONE (client disconnected,
 * the response was torn down, or the server is stopping; writes fail with -EPIPE, the reader
 * ends with an error so MHD drops the connection).
 *
 * The reader waits on a condition variable with a short timeout and polls the socket for a
 * hang-up meanwhile, so a client that goes away from an idle SSE stream is noticed.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>

#include "http/http-internal.h"

struct http_stream {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *buf;
	size_t len; /* bytes queued */
	size_t off; /* bytes already handed to MHD */
	size_t cap;
	bool closed; /* writer is done */
	bool gone;
	int refs;
	int sockfd;
	uint64_t bytes;
	struct http_server *srv;
	struct http_stream *next; /* in srv->streams */
};

static void stream_unref_locked(struct http_stream *s, bool *free_it)
{
	*free_it = --s->refs == 0;
}

static void stream_destroy(struct http_stream *s)
{
	struct http_server *srv = s->srv;
	pthread_mutex_lock(&srv->streams_lock);
	for (struct http_stream **pp = &srv->streams; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	pthread_mutex_unlock(&srv->streams_lock);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s->buf);
	free(s);
}

struct http_stream *http__stream_new(struct http__conn *c)
{
	struct http_stream *s = st_xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->refs = 3; /* writer, MHD's response, the request record (for its byte count) */
	s->srv = c->srv;
	s->sockfd = -1;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
		s->sockfd = ci->connect_fd;
	pthread_mutex_lock(&c->srv->streams_lock);
	s->next = c->srv->streams;
	c->srv->streams = s;
	pthread_mutex_unlock(&c->srv->streams_lock);
	return s;
}

void http__stream_unref(struct http_stream *s)
{
	bool free_it;
	pthread_mutex_lock(&s->mu);
	stream_unref_locked(s, &free_it);
	pthread_mutex_unlock(&s->mu);
	if (free_it)
		stream_destroy(s);
}

uint64_t http__stream_bytes(struct http_stream *s)
{
	pthread_mutex_lock(&s->mu);
	uint64_t b = s->bytes;
	pthread_mutex_unlock(&s->mu);
	return b;
}

static void deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static bool socket_hung_up(int fd)
{
	if (fd < 0)
		return false;
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

ssize_t http__stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct http_stream *s = cls;
	(void)pos;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (s->gone) {
			pthread_mutex_unlock(&s->mu);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (s->len > s->off) {
			size_t n = s->len - s->off;
			if (n > max)
				n = max;
			memcpy(buf, s->buf + s->off, n);
			s->off += n;
			if (s->off == s->len)
				s->off = s->len = 0;
			s->bytes += n;
			pthread_cond_broadcast(&s->cv);
			pthread_mutex_unlock(&s->mu);
			return (ssize_t)n;
		}
		if (s->closed) {
			pthread_mutex_unlock(&s->mu);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		struct timespec ts;
		deadline_in(&ts, 250);
		int r = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
		if (r == ETIMEDOUT && socket_hung_up(s->sockfd)) {
			s->gone = true;
			pthread_cond_broadcast(&s->cv);
		}
	}
}

void http__stream_response_free(void *cls)
{
	struct http_stream *s = cls;
	bool free_it;
	pthread_mutex_lock(&s->mu);
	s->gone = s->gone || !s->closed || s->len > s->off;
	s->sockfd = -1;
	pthread_cond_broadcast(&s->cv);
	stream_unref_locked(s, &free_it);
	pthread_mutex_unlock(&s->mu);
	if (free_it)
		stream_destroy(s);
}

void http__streams_shutdown(struct http_server *srv)
{
	pthread_mutex_lock(&srv->streams_lock);
	for (struct http_stream *s = srv->streams; s; s = s->next) {
		pthread_mutex_lock(&s->mu);
		s->gone = true;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
	}
	pthread_mutex_unlock(&srv->streams_lock);
}

int http_stream_write(struct http_stream *s, const void *data, size_t len)
{
	if (!s)
		return -EINVAL;
	const char *p = data;
	pthread_mutex_lock(&s->mu);
	while (len > 0) {
		if (s->gone || s->closed) {
			pthread_mutex_unlock(&s->mu);
			return -EPIPE;
		}
		size_t queued = s->len - s->off;
		if (queued >= HTTP__STREAM_QUEUE_MAX) {
			struct timespec ts;
			deadline_in(&ts, 250);
			pthread_cond_timedwait(&s->cv, &s->mu, &ts);
			continue;
		}
		size_t n = len;
		if (n > HTTP__STREAM_QUEUE_MAX - queued)
			n = HTTP__STREAM_QUEUE_MAX - queued;
		/* compact, then grow */
		if (s->off > 0) {
			memmove(s->buf, s->buf + s->off, queued);
			s->len = queued;
			s->off = 0;
		}
		if (s->len + n > s->cap) {
			size_t ncap = s->cap ? s->cap : 4096;
			while (ncap < s->len + n)
				ncap *= 2;
			char *nb = realloc(s->buf, ncap);
			if (!nb) {
				pthread_mutex_unlock(&s->mu);
				return -ENOMEM;
			}
			s->buf = nb;
			s->cap = ncap;
		}
		memcpy(s->buf + s->len, p, n);
		s->len += n;
		p += n;
		len -= n;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return 0;
}

int http_stream_printf(struct http_stream *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *str = NULL;
	int n = vasprintf(&str, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	int r = http_stream_write(s, str, (size_t)n);
	free(str);
	return r;
}

int http_stream_sse(struct http_stream *s, const char *event, const char *id, const char *data)
{
	struct st_buf b;
	st_buf_init(&b, SIZE_MAX / 2);
	if (event)
		st_buf_appendf(&b, "event: %s\n", event);
	if (id)
		st_buf_appendf(&b, "id: %s\n", id);
	const char *p = data ? data : "";
	/* each line of data gets its own "data:" field; a trailing newline would be lost anyway */
	for (;;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (n && p[n - 1] == '\r')
			n--;
		st_buf_append(&b, "data: ", 6);
		st_buf_append(&b, p, n);
		st_buf_append(&b, "\n", 1);
		if (!nl)
			break;
		p = nl + 1;
	}
	st_buf_append(&b, "\n", 1);
	int r = http_stream_write(s, b.data, b.len);
	st_buf_release(&b);
	return r;
}

int http_stream_ndjson(struct http_stream *s, json_t *json)
{
	char *str = json_dumps(json, JSON_COMPACT);
	json_decref(json);
	if (!str)
		return -ENOMEM;
	size_t n = strlen(str);
	char *line = realloc(str, n + 2);
	if (!line) {
		free(str);
		return -ENOMEM;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	int r = http_stream_write(s, line, n + 1);
	free(line);
	return r;
}

bool http_stream_client_gone(struct http_stream *s)
{
	struct http_stream *m = s;
	pthread_mutex_lock(&m->mu);
	bool g = m->gone;
	if (!g && socket_hung_up(m->sockfd)) {
		m->gone = g = true;
		pthread_cond_broadcast(&m->cv);
	}
	pthread_mutex_unlock(&m->mu);
	return g;
}

void http_stream_close(struct http_stream *s)
{
	if (!s)
		return;
	bool free_it;
	pthread_mutex_lock(&s->mu);
	s->closed = true;
	pthread_cond_broadcast(&s->cv);
	stream_unref_locked(s, &free_it);
	pthread_mutex_unlock(&s->mu);
	if (free_it)
		stream_destroy(s);
}

/* ---- upgrades ---------------------------------------------------------------------------- */

struct upgrade_priv {
	struct MHD_UpgradeResponseHandle *urh;
	void (*fn)(struct http_upgrade *u);
	char *extra;
	struct http_server *srv;
};

static void *upgrade_thread(void *arg)
{
	struct http_upgrade *u = arg;
	struct upgrade_priv *p = u->priv;
	p->fn(u);
	return NULL;
}

void http__upgrade_handler(void *cls, struct MHD_Connection *connection, void *req_cls,
                           const char *extra_in, size_t extra_in_size, MHD_socket sock,
                           struct MHD_UpgradeResponseHandle *urh)
{
	struct http_upgrade *u = cls;
	(void)connection;
	struct http__conn *c = req_cls;
	struct upgrade_priv *p = st_xcalloc(1, sizeof(*p));
	p->urh = urh;
	p->fn = (void (*)(struct http_upgrade *))u->priv;
	p->srv = c ? c->srv : NULL;
	if (extra_in_size) {
		p->extra = st_xmalloc(extra_in_size);
		memcpy(p->extra, extra_in, extra_in_size);
	}
	/* MHD hands the socket over non-blocking; fn gets a plain blocking socket (it may set
	 * O_NONBLOCK again for its own event loop) */
	int fl = fcntl(sock, F_GETFL);
	if (fl >= 0 && (fl & O_NONBLOCK))
		(void)fcntl(sock, F_SETFL, fl & ~O_NONBLOCK);
	u->fd = sock;
	u->extra = p->extra;
	u->extra_len = extra_in_size;
	u->priv = p;
	if (p->srv)
		atomic_fetch_add(&p->srv->inflight, 1);
	pthread_t th;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, upgrade_thread, u) != 0) {
		st_log(ST_LOG_ERROR, "cannot start upgrade thread");
		http_upgrade_close(u);
	}
	pthread_attr_destroy(&attr);
}

void http_upgrade_close(struct http_upgrade *u)
{
	if (!u)
		return;
	struct upgrade_priv *p = u->priv;
	MHD_upgrade_action(p->urh, MHD_UPGRADE_ACTION_CLOSE);
	if (p->srv)
		atomic_fetch_sub(&p->srv->inflight, 1);
	free(p->extra);
	free(p);
	free(u);
}
