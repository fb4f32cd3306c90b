/*
 * sandbox-agentproto.c - the service's side of the agent protocol (agent/agent-proto.h):
 * framing, request building, and the readiness wait. Stateless; every request opens its own
 * connection to the agent's socket, so nothing here is shared between threads.
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "sandbox/sandbox-internal.h"

int sandbox__agent_connect(const char *sock, int *fd, struct st_error **err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(sock) >= sizeof(sa.sun_path))
		return st_error_make(err, ENAMETOOLONG, "agent socket path '%s' is too long", sock);
	st_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return st_error_make(err, errno, "socket");
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(s);
		return st_error_make(err, e, "cannot reach the sandbox agent");
	}
	*fd = s;
	return 0;
}

int sandbox__frame_write(int fd, char type, const void *data, size_t n)
{
	if (n > AGENT_FRAME_MAX)
		return -EMSGSIZE;
	unsigned char h[AGENT_HDR_LEN] = {(unsigned char)type, (unsigned char)(n >> 24),
	                                  (unsigned char)(n >> 16), (unsigned char)(n >> 8),
	                                  (unsigned char)n};
	/* One write for small frames keeps latency down (no Nagle on unix sockets, but fewer
	 * syscalls through the gVisor gofer). */
	if (n <= 4096) {
		unsigned char one[AGENT_HDR_LEN + 4096];
		memcpy(one, h, sizeof(h));
		if (n)
			memcpy(one + AGENT_HDR_LEN, data, n);
		ssize_t r = st_write_all(fd, one, AGENT_HDR_LEN + n);
		return r < 0 ? (int)r : 0;
	}
	ssize_t r = st_write_all(fd, h, sizeof(h));
	if (r >= 0)
		r = st_write_all(fd, data, n);
	return r < 0 ? (int)r : 0;
}

int sandbox__frame_read(int fd, char *type, char *buf, uint32_t *len)
{
	unsigned char h[AGENT_HDR_LEN];
	ssize_t r = st_read_all(fd, h, sizeof(h));
	if (r < 0)
		return (int)r;
	if (r == 0)
		return 0;
	if (r != (ssize_t)sizeof(h))
		return -EPIPE;
	uint32_t n = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
	if (n > AGENT_FRAME_MAX)
		return -EMSGSIZE;
	if (n) {
		r = st_read_all(fd, buf, n);
		if (r < 0)
			return (int)r;
		if ((uint32_t)r != n)
			return -EPIPE;
	}
	buf[n] = '\0';
	*type = (char)h[0];
	*len = n;
	return 1;
}

void sandbox__kv_add(struct st_buf *b, const char *key, const char *value)
{
	st_buf_appendf(b, "%s=%s", key, value);
	st_buf_append(b, "", 1); /* the separator NUL */
}

const char *sandbox__kv_get(const char *data, uint32_t len, const char *key)
{
	size_t kl = strlen(key);
	for (uint32_t off = 0; off < len;) {
		const char *s = data + off;
		size_t sl = strnlen(s, len - off);
		if (sl > kl && strncmp(s, key, kl) == 0 && s[kl] == '=')
			return s + kl + 1;
		off += (uint32_t)sl + 1;
	}
	return NULL;
}

int sandbox__agent_call(int fd, const struct st_buf *req, char *buf, uint32_t *len,
                        struct st_error **err)
{
	int r = sandbox__frame_write(fd, AGENT_F_REQ, req->data, req->len);
	if (r < 0)
		return st_error_make(err, -r, "cannot send to the sandbox agent");
	return sandbox__agent_reply(fd, buf, len, "the sandbox agent refused the request", err);
}

int sandbox__agent_reply(int fd, char *buf, uint32_t *len, const char *refused,
                         struct st_error **err)
{
	char t;
	int r = sandbox__frame_read(fd, &t, buf, len);
	if (r <= 0)
		return st_error_make(err, r < 0 ? -r : EPIPE,
		                     "the sandbox agent closed the connection");
	if (t == AGENT_F_OK)
		return 0;
	if (t != AGENT_F_ERR)
		return st_error_make(err, EPROTO, "unexpected reply from the sandbox agent");
	const char *e = sandbox__kv_get(buf, *len, "errno");
	const char *msg = sandbox__kv_get(buf, *len, "msg");
	int64_t code = 0;
	if (e)
		st_parse_i64(e, &code);
	/* errno 0 from the agent means a policy refusal (a path escaping the workspace). The
	 * sandbox controls these bytes: a value no errno can have (it would truncate in the int
	 * cast, even to a positive "success" return) is a protocol error. */
	if (code < 0 || code > 4095)
		code = EPROTO;
	int rc = code > 0 ? -(int)code : -EPERM;
	st_error_make(err, 0, "%s", msg ? msg : refused);
	if (err && *err)
		(*err)->code = code > 0 ? (int)code : EPERM;
	return rc;
}

int sandbox__agent_wait_ready(const char *sock, int64_t deadline_ms, struct st_error **err)
{
	for (;;) {
		int fd = -1;
		struct st_error *e = NULL;
		if (sandbox__agent_connect(sock, &fd, &e) == 0) {
			struct st_buf q;
			st_buf_init(&q, 256);
			sandbox__kv_add(&q, "op", "ping");
			int r = sandbox__frame_write(fd, AGENT_F_REQ, q.data, q.len);
			char t = 0;
			if (r == 0) {
				unsigned char h[AGENT_HDR_LEN];
				ssize_t rr = st_read_all(fd, h, sizeof(h));
				if (rr == (ssize_t)sizeof(h) && h[0] == AGENT_F_OK)
					t = AGENT_F_OK;
			}
			st_buf_release(&q);
			close(fd);
			if (t == AGENT_F_OK) {
				st_error_free(e);
				return 0;
			}
		}
		st_error_free(e);
		if (st_now_ms() >= deadline_ms)
			return st_error_make(
			    err, ETIMEDOUT,
			    "the sandbox agent did not answer within sandboxReadyTimeoutMs");
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}
