/*
 * http-auth.c - API authentication: bearer tokens and HS256 JWTs (SPEC §8).
 *
 * Tokens are held only as SHA-256 digests. A presented token is hashed and compared against
 * every stored digest with CRYPTO_memcmp, without stopping at the first match, so the time
 * taken does not depend on which (or whether a) token matched.
 *
 * JWTs (three base64url parts) are accepted when a secret is set: the header must say exactly
 * {"alg":"HS256"} (no "none", no other algorithm), the HMAC-SHA256 signature must match in
 * constant time, "exp" must be present and in the future, "nbf" (if present) in the past.
 * "sub" becomes the principal ("jwt" when absent); "scope" (space-separated) the permissions,
 * "*" when absent: a token signed with the backend's own secret speaks for the backend.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "http/http-internal.h"

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int http_auth_add_token(struct http_server *srv, const char *name, const char *token,
                        const char *scopes, struct st_error **err)
{
	if (!token || !*token)
		return st_error_make(err, EINVAL, "API token '%s' is empty", name ? name : "");
	unsigned char hash[32];
	if (st_str_has_prefix(token, "sha256:")) {
		const char *h = token + 7;
		if (strlen(h) != 64)
			return st_error_make(err, EINVAL,
			                     "API token '%s': 'sha256:' must be followed by 64 hex "
			                     "characters",
			                     name ? name : "");
		for (int i = 0; i < 32; i++) {
			int a = hexval((unsigned char)h[2 * i]),
			    b = hexval((unsigned char)h[2 * i + 1]);
			if (a < 0 || b < 0)
				return st_error_make(err, EINVAL,
				                     "API token '%s': 'sha256:' digest is not hex",
				                     name ? name : "");
			hash[i] = (unsigned char)(a * 16 + b);
		}
	} else {
		if (strlen(token) < 16)
			return st_error_make(
			    err, EINVAL,
			    "API token '%s' is too short: use at least 16 characters "
			    "(e.g. openssl rand -hex 32)",
			    name ? name : "");
		SHA256((const unsigned char *)token, strlen(token), hash);
	}
	pthread_mutex_lock(&srv->auth_lock);
	struct http__token *n = realloc(srv->tokens, (srv->ntokens + 1) * sizeof(*n));
	if (!n) {
		pthread_mutex_unlock(&srv->auth_lock);
		return st_error_make(err, ENOMEM, "out of memory");
	}
	srv->tokens = n;
	n[srv->ntokens].name = st_xstrdup(name && *name ? name : "api");
	memcpy(n[srv->ntokens].hash, hash, 32);
	n[srv->ntokens].scopes = st_xstrdup(scopes && *scopes ? scopes : "*");
	srv->ntokens++;
	pthread_mutex_unlock(&srv->auth_lock);
	OPENSSL_cleanse(hash, sizeof(hash));
	return 0;
}

int http_auth_set_jwt_secret(struct http_server *srv, const void *secret, size_t len)
{
	if (!secret || len == 0)
		return -EINVAL;
	pthread_mutex_lock(&srv->auth_lock);
	if (srv->jwt_secret) {
		OPENSSL_cleanse(srv->jwt_secret, srv->jwt_secret_len);
		free(srv->jwt_secret);
	}
	srv->jwt_secret = st_xmalloc(len);
	memcpy(srv->jwt_secret, secret, len);
	srv->jwt_secret_len = len;
	pthread_mutex_unlock(&srv->auth_lock);
	return 0;
}

bool http_auth_is_empty(const struct http_server *srv)
{
	return srv->ntokens == 0 && srv->jwt_secret == NULL;
}

void http__auth_release(struct http_server *srv)
{
	for (size_t i = 0; i < srv->ntokens; i++) {
		free(srv->tokens[i].name);
		free(srv->tokens[i].scopes);
	}
	free(srv->tokens);
	srv->tokens = NULL;
	srv->ntokens = 0;
	if (srv->jwt_secret) {
		OPENSSL_cleanse(srv->jwt_secret, srv->jwt_secret_len);
		free(srv->jwt_secret);
		srv->jwt_secret = NULL;
	}
}

bool http__scopes_have(const char *scopes, const char *scope)
{
	if (!scopes)
		return false;
	size_t sl = strlen(scope);
	const char *p = scopes;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		size_t n = (size_t)(e - p);
		if ((n == 1 && *p == '*') || (n == sl && memcmp(p, scope, n) == 0))
			return true;
		p = e;
	}
	return false;
}

/* base64url without padding -> bytes; returns length or -1 */
static ssize_t b64url_decode(const char *in, size_t len, unsigned char *out, size_t out_size)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		int ch = (unsigned char)in[i], v;
		if (ch >= 'A' && ch <= 'Z')
			v = ch - 'A';
		else if (ch >= 'a' && ch <= 'z')
			v = ch - 'a' + 26;
		else if (ch >= '0' && ch <= '9')
			v = ch - '0' + 52;
		else if (ch == '-')
			v = 62;
		else if (ch == '_')
			v = 63;
		else if (ch == '=' && i >= len - 2)
			break;
		else
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= out_size)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return (ssize_t)o;
}

static json_t *b64url_json(const char *in, size_t len)
{
	if (len > 8192)
		return NULL;
	unsigned char buf[6200];
	ssize_t n = b64url_decode(in, len, buf, sizeof(buf));
	if (n <= 0)
		return NULL;
	return json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
}

static enum http__auth_result check_jwt(struct http_server *srv, const char *tok, char **principal,
                                        char **scopes)
{
	const char *d1 = strchr(tok, '.');
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	if (!d1 || !d2 || strchr(d2 + 1, '.'))
		return HTTP__AUTH_INVALID;
	json_t *hdr = b64url_json(tok, (size_t)(d1 - tok));
	const char *alg = hdr ? json_string_value(json_object_get(hdr, "alg")) : NULL;
	bool alg_ok = alg && strcmp(alg, "HS256") == 0;
	json_decref(hdr);
	if (!alg_ok)
		return HTTP__AUTH_INVALID;
	unsigned char sig[64];
	ssize_t siglen = b64url_decode(d2 + 1, strlen(d2 + 1), sig, sizeof(sig));
	if (siglen != 32)
		return HTTP__AUTH_INVALID;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	pthread_mutex_lock(&srv->auth_lock);
	bool have = srv->jwt_secret != NULL;
	if (have)
		HMAC(EVP_sha256(), srv->jwt_secret, (int)srv->jwt_secret_len,
		     (const unsigned char *)tok, (size_t)(d2 - tok), mac, &maclen);
	pthread_mutex_unlock(&srv->auth_lock);
	if (!have || maclen != 32 || CRYPTO_memcmp(mac, sig, 32) != 0)
		return HTTP__AUTH_INVALID;
	json_t *claims = b64url_json(d1 + 1, (size_t)(d2 - d1 - 1));
	if (!claims || !json_is_object(claims)) {
		json_decref(claims);
		return HTTP__AUTH_INVALID;
	}
	int64_t now = st_wall_s();
	json_t *exp = json_object_get(claims, "exp");
	json_t *nbf = json_object_get(claims, "nbf");
	if (!json_is_number(exp) || (int64_t)json_number_value(exp) <= now ||
	    (nbf && (!json_is_number(nbf) || (int64_t)json_number_value(nbf) > now + 60))) {
		json_decref(claims);
		return HTTP__AUTH_INVALID;
	}
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	const char *scope = json_string_value(json_object_get(claims, "scope"));
	*principal = st_xasprintf("jwt:%s", sub && *sub ? sub : "anonymous");
	*scopes = st_xstrdup(scope ? scope : "*");
	json_decref(claims);
	return HTTP__AUTH_OK;
}

enum http__auth_result http__authenticate(struct http_server *srv, const char *token,
                                          char **principal, char **scopes)
{
	if (!token || !*token)
		return HTTP__AUTH_MISSING;
	size_t tl = strlen(token);
	if (tl > 8192)
		return HTTP__AUTH_INVALID;
	unsigned char h[32];
	SHA256((const unsigned char *)token, tl, h);
	ssize_t found = -1;
	pthread_mutex_lock(&srv->auth_lock);
	for (size_t i = 0; i < srv->ntokens; i++) {
		/* no early exit: every digest is compared */
		bool eq = CRYPTO_memcmp(h, srv->tokens[i].hash, 32) == 0;
		if (eq && found < 0)
			found = (ssize_t)i;
	}
	if (found >= 0) {
		*principal = st_xstrdup(srv->tokens[found].name);
		*scopes = st_xstrdup(srv->tokens[found].scopes);
	}
	bool jwt = srv->jwt_secret != NULL;
	pthread_mutex_unlock(&srv->auth_lock);
	if (found >= 0)
		return HTTP__AUTH_OK;
	if (jwt && strchr(token, '.'))
		return check_jwt(srv, token, principal, scopes);
	return HTTP__AUTH_INVALID;
}
