/*
 * sandbox-proxy.c - sandbox-scoped tokens and the egress proxy.
 *
 * Tokens: ES256 JWTs signed with the agent sandbox private key: {iss, aud:"stockade-sandbox",
 * sub:<sandbox id>, iat, exp}. Verification (crypto_jwt_verify) pins the algorithm to the key's
 * (so "none" and HS256-with-the-public-key are refused), requires exp, checks aud and iss, and
 * then that sub names exactly the sandbox being accessed. Without the keypair no token is made
 * or accepted, so no sandbox is served.
 *
 * Egress: a sandbox has no network interface but loopback. Its agent listens on
 * 127.0.0.1:3128 inside and splices each connection to sb/<id>/chan/egress.sock, which exists
 * only when the sandbox was created with allowEgress. This file serves that socket: an HTTP
 * proxy (CONNECT host:port for HTTPS, absolute-form GET/POST... for plain HTTP). Each request's
 * host must match the allowlist (domain suffixes); it is then resolved HERE and every resolved
 * address is checked against the blocked ranges; the connection goes to the address that was
 * checked (never re-resolved), so DNS rebinding cannot slip a blocked address in between.
 * Every decision is logged.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "crypto/crypto.h"
#include "sandbox/sandbox-internal.h"

#define TOKEN_AUDIENCE "stockade-sandbox"

/* ---- tokens ------------------------------------------------------------------------------ */

int sandbox__keys_load(struct sandbox_mgr *m, struct st_error **err)
{
	if (!m->priv_pem || !m->pub_pem)
		return st_error_make(
		    err, ENOKEY,
		    "no JWT keypair (rr.agentSandbox.jwtPrivateKey / jwtPublicKey): "
		    "sandboxes will not be served until it is configured");
	int r = crypto_es256_check_pair(m->priv_pem, m->pub_pem, err);
	if (r < 0)
		return r;
	struct crypto_key *s = NULL, *v = NULL;
	if ((r = crypto_key_from_pem(m->priv_pem, strlen(m->priv_pem), &s, err)) < 0)
		return r;
	if ((r = crypto_key_from_pem(m->pub_pem, strlen(m->pub_pem), &v, err)) < 0) {
		crypto_key_free(s);
		return r;
	}
	m->sign_key = s;
	m->verify_key = v;
	return 0;
}

void sandbox__keys_release(struct sandbox_mgr *m)
{
	crypto_key_free(m->sign_key);
	crypto_key_free(m->verify_key);
	m->sign_key = m->verify_key = NULL;
}

int sandbox__token_make(struct sandbox_mgr *m, const char *id, char **token, int64_t *exp,
                        struct st_error **err)
{
	if (!m->sign_key)
		return st_error_make(err, EACCES,
		                     "no JWT keypair configured for the agent sandbox");
	int64_t now = st_wall_s();
	*exp = now + m->o.token_ttl_s;
	json_t *claims = json_pack("{s:s,s:s,s:s,s:I,s:I}", "iss", m->issuer, "aud", TOKEN_AUDIENCE,
	                           "sub", id, "iat", (json_int_t)now, "exp", (json_int_t)*exp);
	int r = crypto_jwt_sign(m->sign_key, NULL, claims, token, err);
	json_decref(claims);
	return r;
}

int sandbox__token_verify(struct sandbox_mgr *m, const char *id, const char *token,
                          struct st_error **err)
{
	if (!m->verify_key)
		return st_error_make(
		    err, EACCES, "the agent sandbox has no JWT keypair: sandboxes are not served");
	if (!token || !*token)
		return st_error_make(err, EACCES, "a sandbox token is required");
	struct crypto_jwt_verify_opts o = {
	    .audience = TOKEN_AUDIENCE, .issuer = m->issuer, .require_exp = true, .leeway_s = 5};
	json_t *claims = NULL;
	int r = crypto_jwt_verify(token, m->verify_key, &o, &claims, err);
	if (r < 0)
		return -EACCES;
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	if (!sub || !id || strcmp(sub, id) != 0)
		r = st_error_make(err, EACCES, "the token is for another sandbox");
	json_decref(claims);
	return r;
}

/* ---- egress policy ---------------------------------------------------------------------------- */

struct cidr {
	int family;
	uint8_t addr[16];
	int bits;
};

static const char *const default_blocked[] = {"0.0.0.0/8",      "10.0.0.0/8",     "100.64.0.0/10",
                                              "127.0.0.0/8",    "169.254.0.0/16", "172.16.0.0/12",
                                              "192.168.0.0/16", "192.0.0.0/24",   "198.18.0.0/15",
                                              "224.0.0.0/4",    "240.0.0.0/4",    "::/128",
                                              "::1/128",        "fc00::/7",       "fe80::/10",
                                              "::ffff:0:0/96",  "ff00::/8",       NULL};

static bool cidr_parse(const char *s, struct cidr *c)
{
	char buf[64];
	if (!st_strlcpy(buf, s, sizeof(buf)))
		return false;
	char *slash = strchr(buf, '/');
	int bits = -1;
	if (slash) {
		*slash = '\0';
		int64_t b;
		if (st_parse_i64(slash + 1, &b) < 0 || b < 0 || b > 128)
			return false;
		bits = (int)b;
	}
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		c->bits = bits < 0 ? 32 : bits;
		return c->bits <= 32;
	}
	if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		c->bits = bits < 0 ? 128 : bits;
		return true;
	}
	return false;
}

static bool cidr_match(const struct cidr *c, int family, const uint8_t *addr)
{
	if (c->family != family)
		return false;
	int full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(c->addr, addr, (size_t)full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));
		if ((c->addr[full] & mask) != (addr[full] & mask))
			return false;
	}
	return true;
}

static bool addr_blocked(struct sandbox_mgr *m, const struct sockaddr *sa, char *why, size_t wl)
{
	const char *const *list =
	    m->blocked_cidrs ? (const char *const *)m->blocked_cidrs : default_blocked;
	int family = sa->sa_family;
	const uint8_t *a =
	    family == AF_INET
	        ? (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr
	        : (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	for (size_t i = 0; list[i]; i++) {
		struct cidr c;
		if (!cidr_parse(list[i], &c))
			continue;
		if (cidr_match(&c, family, a)) {
			snprintf(why, wl, "address in blocked range %s", list[i]);
			return true;
		}
	}
	return false;
}

static bool suffix_match(const char *host, const char *suffix)
{
	if (!suffix || !*suffix)
		return false;
	if (suffix[0] == '.')
		suffix++;
	size_t hl = strlen(host), sl = strlen(suffix);
	if (hl == sl)
		return strcasecmp(host, suffix) == 0;
	return hl > sl && host[hl - sl - 1] == '.' && strcasecmp(host + hl - sl, suffix) == 0;
}

static bool host_allowed(struct sandbox_mgr *m, struct sandbox *sb, const char *host)
{
	bool ok = false;
	for (size_t i = 0; m->allowed_domains && m->allowed_domains[i]; i++)
		if (suffix_match(host, m->allowed_domains[i]))
			ok = true;
	for (size_t i = 0; m->backend_suffixes && m->backend_suffixes[i]; i++)
		if (suffix_match(host, m->backend_suffixes[i]))
			ok = true;
	if (ok && sb->allowed_domains) {
		/* A sandbox may narrow the service list, never widen it. */
		bool narrowed = false;
		for (size_t i = 0; sb->allowed_domains[i]; i++)
			if (suffix_match(host, sb->allowed_domains[i]))
				narrowed = true;
		ok = narrowed;
	}
	return ok;
}

/* Resolve, check every address, connect to a checked one. */
static int egress_connect(struct sandbox_mgr *m, struct sandbox *sb, const char *host,
                          const char *port, char *why, size_t wl)
{
	if (!host_allowed(m, sb, host)) {
		snprintf(why, wl, "host not in the egress allowlist");
		return -1;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
	struct addrinfo *res = NULL;
	int g = getaddrinfo(host, port, &hints, &res);
	if (g != 0) {
		snprintf(why, wl, "cannot resolve: %s", gai_strerror(g));
		return -1;
	}
	/* All or nothing: a name that resolves to any blocked address is refused outright. */
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
		if (addr_blocked(m, ai->ai_addr, why, wl)) {
			freeaddrinfo(res);
			return -1;
		}
	int fd = -1;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			snprintf(why, wl, "connect: %s", strerror(errno));
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

static void splice2(int a, int b)
{
	char buf[65536];
	bool ao = true, bo = true;
	while (ao || bo) {
		struct pollfd p[2] = {{.fd = ao ? a : -1, .events = POLLIN},
		                      {.fd = bo ? b : -1, .events = POLLIN}};
		if (poll(p, 2, 300000) <= 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int from = i ? b : a, to = i ? a : b;
			ssize_t k = read(from, buf, sizeof(buf));
			if (k < 0 && errno == EINTR)
				continue;
			if (k == 0) {
				shutdown(to, SHUT_WR);
				if (i)
					bo = false;
				else
					ao = false;
			} else if (k < 0 || st_write_all(to, buf, (size_t)k) < 0) {
				return;
			}
		}
	}
}

struct egress_conn {
	struct sandbox_mgr *m;
	struct sandbox *sb;
	int fd;
};

static void reply_status(int fd, int code, const char *msg)
{
	char b[512];
	int n = snprintf(b, sizeof(b),
	                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nConnection: close\r\n"
	                 "Content-Length: %zu\r\n\r\n%s\n",
	                 code,
	                 code == 403   ? "Forbidden"
	                 : code == 400 ? "Bad Request"
	                               : "Bad Gateway",
	                 strlen(msg) + 1, msg);
	if (n > 0)
		(void)st_write_all(fd, b, (size_t)n);
}

static void *egress_conn_main(void *arg)
{
	struct egress_conn *c = arg;
	struct sandbox_mgr *m = c->m;
	struct sandbox *sb = c->sb;
	int fd = c->fd;
	free(c);
	/* Read the request head (capped). */
	char head[16384];
	size_t len = 0;
	char *end = NULL;
	while (len < sizeof(head) - 1) {
		ssize_t k = read(fd, head + len, sizeof(head) - 1 - len);
		if (k <= 0)
			break;
		len += (size_t)k;
		head[len] = '\0';
		if ((end = strstr(head, "\r\n\r\n")))
			break;
	}
	char method[16], target[2048], host[256], port[8];
	if (!end || sscanf(head, "%15s %2047s", method, target) != 2) {
		reply_status(fd, 400, "malformed proxy request");
		goto out;
	}
	bool connect_m = !strcmp(method, "CONNECT");
	const char *path = "/";
	if (connect_m) {
		char *colon = strrchr(target, ':');
		if (!colon || colon == target || (size_t)(colon - target) >= sizeof(host)) {
			reply_status(fd, 400, "CONNECT needs host:port");
			goto out;
		}
		memcpy(host, target, (size_t)(colon - target));
		host[colon - target] = '\0';
		st_strlcpy(port, colon + 1, sizeof(port));
	} else {
		if (strncmp(target, "http://", 7) != 0) {
			reply_status(fd, 400,
			             "plain HTTP requests must use an absolute http:// URL");
			goto out;
		}
		const char *h = target + 7;
		const char *slash = strchr(h, '/');
		size_t hl = slash ? (size_t)(slash - h) : strlen(h);
		if (hl == 0 || hl >= sizeof(host)) {
			reply_status(fd, 400, "bad host");
			goto out;
		}
		memcpy(host, h, hl);
		host[hl] = '\0';
		path = slash ? slash : "/";
		char *colon = strrchr(host, ':');
		if (colon && !strchr(host, ']')) {
			*colon = '\0';
			st_strlcpy(port, colon + 1, sizeof(port));
		} else {
			st_strlcpy(port, "80", sizeof(port));
		}
	}
	if (host[0] == '[') { /* [v6] literal */
		size_t hl = strlen(host);
		if (hl > 2 && host[hl - 1] == ']') {
			memmove(host, host + 1, hl - 2);
			host[hl - 2] = '\0';
		}
	}
	char why[256] = "";
	int up = egress_connect(m, sb, host, port, why, sizeof(why));
	st_log(up >= 0 ? ST_LOG_INFO : ST_LOG_WARN, "egress %s: sandbox '%s' %s %s:%s%s%s",
	       up >= 0 ? "allowed" : "denied", sb->id, method, host, port, up >= 0 ? "" : ": ",
	       up >= 0 ? "" : why);
	if (up < 0) {
		char msg[1024];
		snprintf(msg, sizeof(msg), "egress to %s denied: %s", host, why);
		reply_status(fd, 403, msg);
		goto out;
	}
	if (connect_m) {
		static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
		(void)st_write_all(fd, ok, sizeof(ok) - 1);
		size_t rest = len - (size_t)(end + 4 - head);
		if (rest)
			(void)st_write_all(up, end + 4, rest);
	} else {
		/* Origin-form request line, then the client's headers and whatever body followed. */
		const char *line_end = strstr(head, "\r\n");
		const char *proto = memrchr(head, ' ', (size_t)(line_end - head));
		char first[2400];
		int n = snprintf(first, sizeof(first), "%s %s%.*s", method, path,
		                 proto ? (int)(line_end - proto) : 0, proto ? proto : "");
		if (n > 0)
			(void)st_write_all(up, first, (size_t)n);
		(void)st_write_all(up, line_end, len - (size_t)(line_end - head));
	}
	splice2(fd, up);
	close(up);
out:
	close(fd);
	sandbox__sb_unref(m, sb);
	return NULL;
}

static void *egress_main(void *arg)
{
	struct sandbox *sb = arg;
	struct sandbox_mgr *m = (struct sandbox_mgr *)sb->egress_mgr;
	for (;;) {
		int c = accept4(sb->egress_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break; /* the listening socket was shut down */
		}
		struct egress_conn *ec = st_xcalloc(1, sizeof(*ec));
		ec->m = m;
		ec->sb = sb;
		ec->fd = c;
		sandbox__sb_ref(m, sb);
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &at, egress_conn_main, ec) != 0) {
			close(c);
			free(ec);
			sandbox__sb_unref(m, sb);
		}
		pthread_attr_destroy(&at);
	}
	return NULL;
}

int sandbox__egress_start(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err)
{
	if (sb->egress_running)
		return 0;
	cleanup_free char *path = st_xasprintf("%s/chan/%s", sb->dir, AGENT_EGRESS_SOCK_NAME);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (!st_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)))
		return st_error_make(err, ENAMETOOLONG, "egress socket path '%s' too long", path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return st_error_make(err, errno, "socket");
	unlink(path);
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 64) < 0) {
		int e = errno;
		close(s);
		return st_error_make(err, e, "cannot listen on '%s'", path);
	}
	sandbox__jail_chan_grant(m, path);
	sb->egress_fd = s;
	sb->egress_mgr = m;
	if (pthread_create(&sb->egress_thread, NULL, egress_main, sb) != 0) {
		close(s);
		sb->egress_fd = -1;
		return st_error_make(err, EAGAIN, "cannot start the egress proxy thread");
	}
	sb->egress_running = true;
	return 0;
}

void sandbox__egress_stop(struct sandbox *sb)
{
	if (!sb->egress_running)
		return;
	shutdown(sb->egress_fd, SHUT_RDWR);
	pthread_join(sb->egress_thread, NULL);
	close(sb->egress_fd);
	sb->egress_fd = -1;
	sb->egress_running = false;
}
