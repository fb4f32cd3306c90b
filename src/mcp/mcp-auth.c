/*
 * mcp-auth.c - the MCP server as an OAuth 2.1 resource server: bearer JWTs verified against
 * the authorization server's JWKS (a file, or a URL fetched and cached), audience, issuer and
 * expiry checked; scopes read from `scope` (space-separated) or `scp` (array).
 *
 * Tokens come only from the Authorization header and are never passed on to anything else.
 * A JWKS URL is re-fetched when its cache expires and, at most once every 10 s, when a token
 * names a key id the cached set does not have (key rotation).
 */
#include <curl/curl.h>

#include "mcp/mcp-internal.h"

#define JWKS_MAX_BYTES (1 << 20)
#define JWKS_REFETCH_MIN_MS 10000

void mcp__identity_release(struct mcp__identity *id)
{
	free(id->principal);
	free(id->scopes);
	id->principal = id->scopes = NULL;
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
	struct st_buf *b = ctx;
	return st_buf_append(b, data, size * n) == 0 ? size * n : 0;
}

static int fetch_url(const char *url, char **out, size_t *len, struct st_error **err)
{
	CURL *c = curl_easy_init();
	if (!c)
		return st_error_make(err, ENOMEM, "cannot start an HTTP client");
	struct st_buf b;
	st_buf_init(&b, JWKS_MAX_BYTES);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	if (rc != CURLE_OK) {
		st_buf_release(&b);
		return st_error_make(err, EIO, "cannot fetch JWKS '%s': %s", url,
		                     curl_easy_strerror(rc));
	}
	if (status != 200) {
		st_buf_release(&b);
		return st_error_make(err, EIO, "cannot fetch JWKS '%s': HTTP %ld", url, status);
	}
	*len = b.len;
	*out = st_buf_steal(&b);
	return 0;
}

/* Load (or reload) the key set. Called with a->lock held. */
static int jwks_load_locked(struct mcp__auth *a, struct st_error **err)
{
	cleanup_free char *text = NULL;
	size_t len = 0;
	int r;
	a->jwks_tried_ms = st_now_ms();
	if (a->jwks_file)
		r = st_read_file(a->jwks_file, JWKS_MAX_BYTES, &text, &len, err);
	else
		r = fetch_url(a->jwks_url, &text, &len, err);
	if (r < 0)
		return r;
	struct crypto_jwks *j = NULL;
	r = crypto_jwks_parse(text, len, &j, err);
	if (r < 0)
		return st_error_wrap(err, "JWKS from '%s'",
		                     a->jwks_file ? a->jwks_file : a->jwks_url);
	if (crypto_jwks_count(j) == 0) {
		crypto_jwks_free(j);
		return st_error_make(err, EINVAL,
		                     "JWKS from '%s' has no usable RS256 or ES256 signing key",
		                     a->jwks_file ? a->jwks_file : a->jwks_url);
	}
	crypto_jwks_free(a->jwks);
	a->jwks = j;
	a->jwks_loaded_ms = st_now_ms();
	return 0;
}

static void strv_copy(struct config_strv *dst, const struct config_strv *src)
{
	dst->n = src->n;
	dst->v = src->n ? st_xcalloc(src->n, sizeof(char *)) : NULL;
	for (size_t i = 0; i < src->n; i++)
		dst->v[i] = st_xstrdup(src->v[i]);
}

int mcp__auth_init(struct mcp__auth *a, const struct config_mcp *cfg, const char *audience,
                   bool allow_unauthenticated, struct st_error **err)
{
	memset(a, 0, sizeof(*a));
	int r = pthread_mutex_init(&a->lock, NULL);
	if (r != 0)
		return st_error_make(err, r, "cannot create the mcp auth lock");
	if (cfg->jwks_file || cfg->jwks_url) {
		a->mode = MCP_AUTH_OAUTH;
		a->jwks_file = cfg->jwks_file ? st_xstrdup(cfg->jwks_file) : NULL;
		a->jwks_url = a->jwks_file ? NULL : st_xstrdup(cfg->jwks_url);
		a->jwks_cache_s = cfg->jwks_cache_s ? cfg->jwks_cache_s : 300;
		a->issuer = cfg->issuer ? st_xstrdup(cfg->issuer) : NULL;
		strv_copy(&a->issuers, &cfg->authorization_servers);
		a->audience = st_xstrdup(cfg->audience ? cfg->audience : audience);
		pthread_mutex_lock(&a->lock);
		r = jwks_load_locked(a, err);
		pthread_mutex_unlock(&a->lock);
		/* A JWKS URL that is down at start is retried per request; a bad file is fatal. */
		if (r < 0 && a->jwks_file)
			return st_error_wrap(err, "mcp.oauth.jwksFile");
		if (r < 0) {
			st_log(ST_LOG_WARN, "mcp: %s; will retry when a token arrives",
			       st_error_msg(*err));
			st_error_release(err);
		}
		return 0;
	}
	if (cfg->static_token) {
		a->mode = MCP_AUTH_STATIC;
		a->static_token = st_xstrdup(cfg->static_token);
		st_log(ST_LOG_WARN, "mcp: static bearer token mode (development only): configure "
		                    "mcp.oauth for production");
		return 0;
	}
	if (allow_unauthenticated) {
		a->mode = MCP_AUTH_NONE;
		st_log(ST_LOG_WARN,
		       "mcp: serving WITHOUT authentication (mcp.allowUnauthenticated on "
		       "a loopback listener): anyone on this host can run code");
		return 0;
	}
	return st_error_make(err, EINVAL,
	                     "mcp is enabled without authentication: configure mcp.oauth "
	                     "(jwksUrl or jwksFile, and authorizationServers) or, for development, "
	                     "mcp.staticToken");
}

void mcp__auth_release(struct mcp__auth *a)
{
	crypto_free_secret(a->static_token);
	free(a->jwks_file);
	free(a->jwks_url);
	free(a->issuer);
	for (size_t i = 0; i < a->issuers.n; i++)
		free(a->issuers.v[i]);
	free(a->issuers.v);
	free(a->audience);
	crypto_jwks_free(a->jwks);
	pthread_mutex_destroy(&a->lock);
}

bool mcp__has_scope(const char *scopes, const char *scope)
{
	if (!scope || !*scope)
		return true;
	if (!scopes)
		return false;
	if (strcmp(scopes, "*") == 0)
		return true;
	size_t n = strlen(scope);
	for (const char *p = scopes; *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == n && strncmp(p, scope, n) == 0)
			return true;
		p = e;
	}
	return false;
}

static char *scopes_of(json_t *claims)
{
	json_t *s = json_object_get(claims, "scope");
	if (json_is_string(s))
		return st_xstrdup(json_string_value(s));
	json_t *scp = json_object_get(claims, "scp");
	if (json_is_array(scp)) {
		struct st_buf b;
		st_buf_init(&b, 64 << 10);
		size_t i;
		json_t *v;
		json_array_foreach(scp, i, v)
		{
			if (json_is_string(v))
				st_buf_appendf(&b, "%s%s", b.len ? " " : "", json_string_value(v));
		}
		return st_buf_steal(&b);
	}
	return st_xstrdup("");
}

static int verify_jwt(struct mcp__auth *a, const char *token, json_t **claims,
                      struct st_error **err)
{
	struct crypto_jwt_verify_opts o = {
	    .audience = a->audience, .issuer = a->issuer, .leeway_s = 60, .require_exp = true};
	pthread_mutex_lock(&a->lock);
	int64_t now = st_now_ms();
	if (a->jwks_url &&
	    (!a->jwks || now - a->jwks_loaded_ms > (int64_t)a->jwks_cache_s * 1000) &&
	    now - a->jwks_tried_ms > 1000) {
		cleanup_error struct st_error *e2 = NULL;
		if (jwks_load_locked(a, &e2) < 0)
			st_log(ST_LOG_WARN, "mcp: %s", st_error_msg(e2));
	}
	int r = a->jwks ? crypto_jwt_verify_jwks(token, a->jwks, &o, claims, err)
	                : st_error_make(err, EAGAIN,
	                                "the authorization server's keys are not "
	                                "available yet");
	/* Unknown key id: the issuer may have rotated its keys. */
	if (r < 0 && a->jwks_url && now - a->jwks_tried_ms > JWKS_REFETCH_MIN_MS) {
		cleanup_error struct st_error *e2 = NULL;
		if (jwks_load_locked(a, &e2) == 0) {
			st_error_release(err);
			r = crypto_jwt_verify_jwks(token, a->jwks, &o, claims, err);
		}
	}
	pthread_mutex_unlock(&a->lock);
	return r;
}

int mcp__auth_check(struct mcp__auth *a, const char *bearer, struct mcp__identity *id,
                    struct st_error **err)
{
	memset(id, 0, sizeof(*id));
	if (a->mode == MCP_AUTH_NONE) {
		id->principal = st_xstrdup("anonymous");
		id->scopes = st_xstrdup("*");
		return 0;
	}
	if (!bearer || !*bearer) {
		st_error_make(err, 0, "a bearer token is required");
		return -EACCES;
	}
	if (a->mode == MCP_AUTH_STATIC) {
		if (!crypto_str_equal(bearer, a->static_token)) {
			st_error_make(err, 0, "the bearer token is not valid");
			return -EACCES;
		}
		id->principal = st_xstrdup("mcp-static");
		id->scopes = st_xstrdup("*");
		return 0;
	}
	json_t *claims = NULL;
	cleanup_error struct st_error *verr = NULL;
	if (verify_jwt(a, bearer, &claims, &verr) < 0) {
		st_error_make(err, 0, "the access token is not valid: %s", st_error_msg(verr));
		return -EACCES;
	}
	const char *iss = json_string_value(json_object_get(claims, "iss"));
	if (!a->issuer && a->issuers.n) {
		bool ok = false;
		for (size_t i = 0; iss && i < a->issuers.n; i++)
			if (strcmp(iss, a->issuers.v[i]) == 0)
				ok = true;
		if (!ok) {
			st_error_make(
			    err, 0,
			    "the access token was issued by '%s', which is not one of this "
			    "server's authorization servers",
			    iss ? iss : "(none)");
			json_decref(claims);
			return -EACCES;
		}
	}
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	if (!sub || !*sub) {
		json_decref(claims);
		st_error_make(err, 0, "the access token has no subject (sub)");
		return -EACCES;
	}
	id->principal = st_xasprintf("oauth:%s", sub);
	id->scopes = scopes_of(claims);
	json_decref(claims);
	return 0;
}
