/*
 * config-env.c - the environment's say over the file, where secrets come from, and the
 * effective blob destination of each subsystem.
 *
 * Precedence (highest first), documented in docs/configuration.md:
 *   secrets:  inline value or <key>File in the YAML  >  environment (ENCRYPTION_KEY, JWT_SECRET)
 *             for the backend keys the environment wins, as in the chart (env overrides the file)
 *             agent sandbox: inline / <key>File  >  externalSecret files
 *   blobs:    RR_GIT_S3_<F> / RR_SNAPSHOTS_S3_<F>  >  RR_DEFAULT_S3_<F>  >  rr.blobStorage
 *             >  <dataDir>/blobs (filesystem) - per field <F>.
 * Secret files are read verbatim (no trimming): a stray newline is reported by validation,
 * because silently trimming one place and not another is how keys end up differing.
 */
#include "config/config-internal.h"

#include <sys/stat.h>

#include "crypto/crypto.h"

#define SECRET_MAX (64 * 1024)

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static void set_origin(char **origin, const char *fmt, const char *arg)
{
	free(*origin);
	*origin = st_xasprintf(fmt, arg);
}

void config__apply_env(struct stockade_config *cfg, struct config__pending *pend,
                       struct config_problems *pr)
{
	const char *v;
	if ((v = env("STOCKADE_LISTEN")))
		config__set_str(&cfg->listen, v);
	if ((v = env("STOCKADE_DATA_DIR")))
		config__set_str(&cfg->data_dir, v);
	if ((v = env("STOCKADE_LOG_LEVEL"))) {
		static const char *const levels[] = {"debug", "info", "warn", "error"};
		bool ok = false;
		for (size_t i = 0; i < ST_ARRAY_SIZE(levels); i++)
			if (strcmp(v, levels[i]) == 0) {
				cfg->log_level = (enum config_log_level)i;
				ok = true;
			}
		if (!ok)
			config_problems_add(
			    pr, CONFIG_ERROR, "logLevel",
			    "STOCKADE_LOG_LEVEL must be debug, info, warn or error, got "
			    "'%s'",
			    v);
	}
	if ((v = env("ENCRYPTION_KEY")) != NULL) {
		config__set_str(&cfg->encryption_key, v);
		set_origin(&pend->encryption_key_origin, "environment variable %s",
		           "ENCRYPTION_KEY");
		free(pend->encryption_key_file);
		pend->encryption_key_file = NULL;
	}
	if ((v = env("JWT_SECRET")) != NULL) {
		config__set_str(&cfg->jwt_secret, v);
		set_origin(&pend->jwt_secret_origin, "environment variable %s", "JWT_SECRET");
		free(pend->jwt_secret_file);
		pend->jwt_secret_file = NULL;
	}
	if ((v = env("STOCKADE_API_TOKEN")))
		config__strv_push(&pend->api_tokens, v);

	struct config_postgres *pg = &cfg->postgresql;
	if ((v = env("POSTGRES_HOST"))) {
		pg->present = true;
		config__set_str(&pg->host, v);
	}
	if ((v = env("POSTGRES_PORT"))) {
		uint64_t port;
		if (st_parse_u64(v, &port) < 0 || port == 0 || port > 65535)
			config_problems_add(
			    pr, CONFIG_ERROR, "postgresql.port",
			    "POSTGRES_PORT must be a port number (1-65535), got '%s'", v);
		else
			pg->port = (uint16_t)port;
	}
	if ((v = env("POSTGRES_DB")))
		config__set_str(&pg->db, v);
	if ((v = env("POSTGRES_USER")))
		config__set_str(&pg->user, v);
	if ((v = env("POSTGRES_PASSWORD")))
		config__set_str(&pg->password, v);
	if ((v = env("POSTGRES_SSL_ENABLED")))
		pg->ssl_enabled = strcmp(v, "true") == 0 || strcmp(v, "1") == 0;
}

/* Read a secret file verbatim. */
static int read_secret(const char *path, char **out, struct st_error **err)
{
	size_t len = 0;
	char *text = NULL;
	int rc = st_read_file(path, SECRET_MAX, &text, &len, err);
	if (rc < 0)
		return rc;
	if (strlen(text) != len) {
		crypto_free_secret(text);
		return st_error_make(err, EINVAL, "'%s' contains a NUL byte", path);
	}
	*out = text;
	return 0;
}

static void resolve_file(const struct stockade_config *cfg, const char *key_path, char **file,
                         char **value, char **origin, struct config_problems *pr)
{
	if (*file == NULL)
		return;
	char *near = config__path_near(cfg, *file);
	free(*file);
	*file = near;
	struct st_error *e = NULL;
	char *text = NULL;
	if (read_secret(*file, &text, &e) < 0) {
		config_problems_add(pr, CONFIG_ERROR, key_path, "%s", st_error_msg(e));
		st_error_free(e);
		return;
	}
	crypto_free_secret(*value);
	*value = text;
	free(*origin);
	*origin = st_xasprintf("file '%s'", *file);
}

static void resolve_external(const char *dir, const char *name, const char *key_path, char **value,
                             char **origin, struct config_problems *pr)
{
	char *path = st_xasprintf("%s/%s", dir, name);
	struct stat st;
	if (stat(path, &st) != 0) {
		free(path);
		return; /* a missing key is reported as "required" by validation when needed */
	}
	if (*value) {
		config_problems_add(
		    pr, CONFIG_WARNING, key_path,
		    "set in the config and in the external secret ('%s'); the config "
		    "value is used",
		    path);
		free(path);
		return;
	}
	struct st_error *e = NULL;
	char *text = NULL;
	if (read_secret(path, &text, &e) < 0) {
		config_problems_add(pr, CONFIG_ERROR, key_path, "%s", st_error_msg(e));
		st_error_free(e);
	} else {
		*value = text;
		free(*origin);
		*origin = st_xasprintf("external secret file '%s'", path);
	}
	free(path);
}

void config__resolve_secrets(struct stockade_config *cfg, struct config__pending *pd,
                             struct config_problems *pr)
{
	struct config_agent_sandbox *as = &cfg->rr.agent_sandbox;
	resolve_file(cfg, "encryptionKeyFile", &pd->encryption_key_file, &cfg->encryption_key,
	             &pd->encryption_key_origin, pr);
	resolve_file(cfg, "jwtSecretFile", &pd->jwt_secret_file, &cfg->jwt_secret,
	             &pd->jwt_secret_origin, pr);
	resolve_file(cfg, "rr.agentSandbox.jwtPublicKeyFile", &pd->as_jwt_public_key_file,
	             &as->jwt_public_key_pem, &pd->as_jwt_public_key_origin, pr);
	resolve_file(cfg, "rr.agentSandbox.jwtPrivateKeyFile", &pd->as_jwt_private_key_file,
	             &as->jwt_private_key_pem, &pd->as_jwt_private_key_origin, pr);
	resolve_file(cfg, "rr.agentSandbox.encryptionKeyFile", &pd->as_encryption_key_file,
	             &as->encryption_key_hex, &pd->as_encryption_key_origin, pr);
	resolve_file(cfg, "rr.agentSandbox.apiSecretFile", &pd->as_api_secret_file, &as->api_secret,
	             &pd->as_api_secret_origin, pr);

	/* The Secret is read for an agent sandbox that runs; a disabled one (rr.enabled off and no
	   switch of its own, as a chart's shared values may leave it) needs no mount. */
	bool as_on = as->enabled_setting == CONFIG_UNSET ? cfg->rr.enabled
	                                                 : as->enabled_setting == CONFIG_TRUE;
	if (as->external_secret_name && as_on) {
		if (as->external_secret_mount_path == NULL) {
			const char *base = env("STOCKADE_SECRETS_DIR");
			as->external_secret_mount_path =
			    st_xasprintf("%s/%s", base ? base : "/etc/stockade/secrets",
			                 as->external_secret_name);
		}
		const char *dir = as->external_secret_mount_path;
		struct stat st;
		if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
			config_problems_add(
			    pr, CONFIG_ERROR, "rr.agentSandbox.externalSecret",
			    "secret '%s' is not mounted at '%s': mount its keys (jwt-public-key, "
			    "jwt-private-key, encryption-key, api-secret) as files there, or set "
			    "rr.agentSandbox.externalSecret.mountPath (or STOCKADE_SECRETS_DIR) to "
			    "where they are",
			    as->external_secret_name, dir);
		} else {
			resolve_external(dir, "jwt-public-key", "rr.agentSandbox.jwtPublicKey",
			                 &as->jwt_public_key_pem, &pd->as_jwt_public_key_origin,
			                 pr);
			resolve_external(dir, "jwt-private-key", "rr.agentSandbox.jwtPrivateKey",
			                 &as->jwt_private_key_pem, &pd->as_jwt_private_key_origin,
			                 pr);
			resolve_external(dir, "encryption-key", "rr.agentSandbox.encryptionKey",
			                 &as->encryption_key_hex, &pd->as_encryption_key_origin,
			                 pr);
			resolve_external(dir, "api-secret", "rr.agentSandbox.apiSecret",
			                 &as->api_secret, &pd->as_api_secret_origin, pr);
			char *url = NULL, *origin = NULL;
			resolve_external(dir, "postgres-url", "rr.agentSandbox.postgres.url", &url,
			                 &origin, pr);
			if (url) {
				size_t l = strlen(url);
				while (l && (url[l - 1] == '\n' || url[l - 1] == '\r'))
					url[--l] = '\0';
				if (pd->as_pg.url == NULL) {
					pd->as_pg.url = url;
					pd->as_pg.present = true;
					pd->as_pg_given = true;
					url = NULL;
				}
			}
			crypto_free_secret(url);
			free(origin);
		}
	}

	/* API tokens: keep only SHA-256 hashes; "sha256:<hex>" entries are hashes already */
	free(cfg->api_token_hashes);
	cfg->api_token_hashes = NULL;
	cfg->n_api_tokens = 0;
	if (pd->api_tokens.n) {
		cfg->api_token_hashes = st_xcalloc(pd->api_tokens.n, 32);
		for (size_t i = 0; i < pd->api_tokens.n; i++) {
			const char *t = pd->api_tokens.v[i];
			char *kp = st_xasprintf("apiTokens[%zu]", i);
			if (st_str_has_prefix(t, "sha256:")) {
				uint8_t *h = NULL;
				size_t hl = 0;
				if (crypto_hex_decode(t + 7, strlen(t + 7), &h, &hl) < 0 ||
				    hl != 32) {
					config_problems_add(pr, CONFIG_ERROR, kp,
					                    "'sha256:' must be followed by 64 hex "
					                    "characters (sha256sum of the token)");
				} else {
					memcpy(cfg->api_token_hashes[cfg->n_api_tokens++], h, 32);
				}
				free(h);
			} else {
				if (strlen(t) < 16)
					config_problems_add(
					    pr, CONFIG_WARNING, kp,
					    "token is only %zu characters; use at least "
					    "32 random characters (openssl rand -hex 32)",
					    strlen(t));
				crypto_sha256(t, strlen(t),
				              cfg->api_token_hashes[cfg->n_api_tokens++]);
			}
			free(kp);
		}
	}
}

/* ---- blobs -------------------------------------------------------------------------------- */

struct s3_field {
	const char *suffix;
	size_t off; /* offset of the char* in struct config_blob */
};

#define S3F(suffix, member)                                  \
	{                                                    \
		suffix, offsetof(struct config_blob, member) \
	}

static const struct s3_field s3_fields[] = {
    S3F("BUCKET", s3.bucket),
    S3F("REGION", s3.region),
    S3F("ACCESS_KEY_ID", s3.access_key_id),
    S3F("SECRET_ACCESS_KEY", s3.secret_access_key),
    S3F("SESSION_TOKEN", s3.session_token),
    S3F("ENDPOINT", s3.endpoint),
    S3F("PREFIX", prefix),
};

static void resolve_one(struct stockade_config *cfg, struct config_blob *out, const char *sub,
                        const char *default_prefix)
{
	const struct config_blob *base = &cfg->rr.blob_storage;
	config__blob_release(out);
	if (base->provider != CONFIG_BLOB_NONE) {
		config__blob_copy(out, base);
	} else {
		out->provider = CONFIG_BLOB_FILESYSTEM;
		out->source = st_xstrdup("default (filesystem under dataDir)");
		out->filesystem.path = st_xasprintf("%s/blobs", cfg->data_dir);
	}
	/* subsystem prefix inside the shared bucket */
	char *p = st_xasprintf("%s%s", out->prefix ? out->prefix : "", default_prefix);
	free(out->prefix);
	out->prefix = p;

	struct st_buf used;
	st_buf_init(&used, 1024);
	const char *vals[ST_ARRAY_SIZE(s3_fields)];
	bool any = false;
	for (size_t i = 0; i < ST_ARRAY_SIZE(s3_fields); i++) {
		char *n1 = st_xasprintf("RR_%s_S3_%s", sub, s3_fields[i].suffix);
		char *n2 = st_xasprintf("RR_DEFAULT_S3_%s", s3_fields[i].suffix);
		const char *v = env(n1);
		const char *name = n1;
		if (v == NULL) {
			v = env(n2);
			name = n2;
		}
		vals[i] = v;
		if (v) {
			any = true;
			st_buf_appendf(&used, "%s%s", used.len ? ", " : "", name);
		}
		free(n1);
		free(n2);
	}
	char *fps1 = st_xasprintf("RR_%s_S3_FORCE_PATH_STYLE", sub);
	const char *fps = env(fps1);
	if (fps == NULL)
		fps = env("RR_DEFAULT_S3_FORCE_PATH_STYLE");
	free(fps1);
	if (any) {
		if (out->provider != CONFIG_BLOB_S3) {
			/* the environment names an S3 destination: start from a clean one */
			config__blob_release(out);
			out->provider = CONFIG_BLOB_S3;
			out->prefix = st_xstrdup(default_prefix);
		}
		for (size_t i = 0; i < ST_ARRAY_SIZE(s3_fields); i++) {
			if (vals[i] == NULL)
				continue;
			char **field = (char **)((char *)out + s3_fields[i].off);
			config__set_str(field, vals[i]);
		}
		if (vals[5] && fps == NULL)
			out->s3.force_path_style = true;
		free(out->source);
		out->source = st_buf_steal(&used);
	}
	if (fps)
		out->s3.force_path_style = strcmp(fps, "true") == 0 || strcmp(fps, "1") == 0;
	st_buf_release(&used);
	if (out->provider == CONFIG_BLOB_S3 && out->s3.region == NULL)
		out->s3.region = st_xstrdup("us-east-1");
	if (out->provider == CONFIG_BLOB_GCS && out->gcs.endpoint == NULL)
		out->gcs.endpoint = st_xstrdup("https://storage.googleapis.com");
}

void config__resolve_blobs(struct stockade_config *cfg, struct config_problems *pr)
{
	(void)pr;
	resolve_one(cfg, &cfg->rr.git_blob, "GIT", "git/");
	resolve_one(cfg, &cfg->rr.snapshots_blob, "SNAPSHOTS", "snapshots/");
}
