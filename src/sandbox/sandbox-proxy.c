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

/* host[:port] or [v6][:port] from a[0..n) into r; the port is required when def is NULL. */
static bool split_authority(const char *a, size_t n, const char *def, struct sandbox_egress_req *r,
                            const char **msg)
{
	const char *end = a + n, *hs = a, *he = end, *ps = NULL;
	if (memchr(a, '@', n) != NULL) {
		*msg = "bad host: credentials in the URL are not passed on (no credentials)";
		return false;
	}
	if (n > 0 && a[0] == '[') {
		const char *close = memchr(a, ']', n);
		if (close == NULL) {
			*msg = "an IPv6 address needs its closing ']'";
			return false;
		}
		hs = a + 1;
		he = close;
		if (close + 1 < end) {
			if (close[1] != ':') {
				*msg = "bad host: only ':port' may follow ']'";
				return false;
			}
			ps = close + 2;
		}
	} else {
		const char *colon = memrchr(a, ':', n);
		if (colon != NULL) {
			he = colon;
			ps = colon + 1;
		}
		if (memchr(hs, ':', (size_t)(he - hs)) != NULL) {
			*msg = "an IPv6 address must be in brackets: [address]:port";
			return false;
		}
	}
	size_t hl = (size_t)(he - hs);
	if (hl == 0 || hl >= sizeof(r->host)) {
		*msg = "bad host: empty or longer than 255 bytes";
		return false;
	}
	for (size_t i = 0; i < hl; i++)
		if ((unsigned char)hs[i] <= ' ' || (unsigned char)hs[i] >= 0x7f || hs[i] == '/' ||
		    hs[i] == '\\') {
			*msg = "bad host: names are letters, digits, '-' and '.'";
			return false;
		}
	memcpy(r->host, hs, hl);
	r->host[hl] = '\0';
	if (ps == NULL) {
		if (def == NULL) {
			*msg = "CONNECT needs host:port";
			return false;
		}
		st_strlcpy(r->port, def, sizeof(r->port));
		return true;
	}
	size_t pl = (size_t)(end - ps);
	unsigned v = 0;
	for (size_t i = 0; i < pl && v <= 65535; i++) {
		if (ps[i] < '0' || ps[i] > '9') {
			v = 0;
			break;
		}
		v = v * 10 + (unsigned)(ps[i] - '0');
	}
	if (pl == 0 || pl > 5 || v == 0 || v > 65535) {
		*msg = "bad port: a number from 1 to 65535";
		return false;
	}
	snprintf(r->port, sizeof(r->port), "%u", v);
	return true;
}

int sandbox__egress_parse(const char *head, size_t len, struct sandbox_egress_req *r,
                          const char **msg)
{
	memset(r, 0, sizeof(*r));
	const char *blank = memmem(head, len, "\r\n\r\n", 4);
	if (blank == NULL)
		return -EAGAIN;
	r->head_len = (size_t)(blank + 4 - head);
	const char *le = memmem(head, len, "\r\n", 2); /* not NULL: the blank line is one */
	size_t ll = (size_t)(le - head);
	r->line_len = ll;
	*msg = "malformed proxy request: want 'METHOD target HTTP/1.1'";
	/* METHOD SP target [SP HTTP/x.y] */
	const char *sp1 = memchr(head, ' ', ll);
	if (sp1 == NULL || sp1 == head || (size_t)(sp1 - head) >= sizeof(r->method))
		return -EINVAL;
	for (const char *c = head; c < sp1; c++)
		if (*c < 'A' || *c > 'Z')
			return -EINVAL;
	memcpy(r->method, head, (size_t)(sp1 - head));
	const char *t = sp1 + 1;
	const char *sp2 = memchr(t, ' ', (size_t)(le - t));
	const char *t_end = sp2 ? sp2 : le;
	size_t tl = (size_t)(t_end - t);
	if (tl == 0 || tl >= sizeof(r->path))
		return -EINVAL;
	if (sp2 != NULL) {
		size_t vl = (size_t)(le - sp2 - 1);
		if (vl < 6 || vl > 15 || memcmp(sp2 + 1, "HTTP/", 5) != 0)
			return -EINVAL;
	}
	for (const char *c = t; c < t_end; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c == 0x7f)
			return -EINVAL;
	r->connect = strcmp(r->method, "CONNECT") == 0;
	if (r->connect) {
		if (!split_authority(t, tl, NULL, r, msg))
			return -EINVAL;
		st_strlcpy(r->path, "/", sizeof(r->path));
		return 0;
	}
	if (tl < 7 || strncasecmp(t, "http://", 7) != 0) {
		*msg = "plain HTTP requests must use an absolute http:// URL (HTTPS goes through "
		       "CONNECT)";
		return -EINVAL;
	}
	const char *a = t + 7;
	size_t al = 0;
	while (a + al < t_end && a[al] != '/' && a[al] != '?' && a[al] != '#')
		al++;
	if (!split_authority(a, al, "80", r, msg))
		return -EINVAL;
	const char *p = a + al;
	size_t pl = (size_t)(t_end - p);
	/* origin form: "/" when the URL has no path, "/" before a bare query */
	snprintf(r->path, sizeof(r->path), "%s%.*s", pl == 0 || *p != '/' ? "/" : "", (int)pl, p);
	return 0;
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
	struct sandbox_egress_req rq;
	const char *msg = "malformed proxy request";
	int pr = -EAGAIN;
	while (pr == -EAGAIN && len < sizeof(head) - 1) {
		ssize_t k = read(fd, head + len, sizeof(head) - 1 - len);
		if (k <= 0)
			break;
		len += (size_t)k;
		head[len] = '\0';
		pr = sandbox__egress_parse(head, len, &rq, &msg);
	}
	if (pr < 0) {
		reply_status(fd, 400,
		             pr == -EAGAIN ? "incomplete or oversized proxy request head" : msg);
		goto out;
	}
	char why[256] = "";
	int up = egress_connect(m, sb, rq.host, rq.port, why, sizeof(why));
	st_log(up >= 0 ? ST_LOG_INFO : ST_LOG_WARN, "egress %s: sandbox '%s' %s %s:%s%s%s",
	       up >= 0 ? "allowed" : "denied", sb->id, rq.method, rq.host, rq.port,
	       up >= 0 ? "" : ": ", up >= 0 ? "" : why);
	if (up < 0) {
		char deny[1024];
		snprintf(deny, sizeof(deny), "egress to %s denied: %s", rq.host, why);
		reply_status(fd, 403, deny);
		goto out;
	}
	if (rq.connect) {
		static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
		(void)st_write_all(fd, ok, sizeof(ok) - 1);
		if (len > rq.head_len)
			(void)st_write_all(up, head + rq.head_len, len - rq.head_len);
	} else {
		/* The request line in origin form, then the client's headers and whatever body
		   followed them. */
		const char *sp2 =
		    memchr(head + strlen(rq.method) + 1, ' ', rq.line_len - strlen(rq.method) - 1);
		char first[2400];
		int n = snprintf(first, sizeof(first), "%s %s%.*s", rq.method, rq.path,
		                 sp2 ? (int)(head + rq.line_len - sp2) : 0, sp2 ? sp2 : "");
		if (n > 0 && (size_t)n < sizeof(first))
			(void)st_write_all(up, first, (size_t)n);
		(void)st_write_all(up, head + rq.line_len, len - rq.line_len);
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
