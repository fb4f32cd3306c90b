/*
 * config-dev.c - development secrets for the embedded default (`stockade serve` without
 * --config): generated once into <dataDir>/secrets (directory 0700, files 0600) and reused on
 * every later start, so tokens and encrypted snapshots survive restarts. Production (a config
 * file) never reaches this code: it must name its secrets explicitly.
 *
 * Files: api-token, jwt-secret, encryption-key (backend), agent-jwt-private-key.pem,
 * agent-jwt-public-key.pem, agent-encryption-key (64 hex, no newline).
 */
#include "config/config-internal.h"

#include <sys/stat.h>

#include "crypto/crypto.h"

/* Load <dir>/<name>, or create it with `gen` (heap string). Returns the content. */
static int load_or_create(const char *dir, const char *name, char *(*gen)(void), char **out,
                          bool *created, struct st_error **err)
{
	char *path = st_xasprintf("%s/%s", dir, name);
	struct stat st;
	int rc = 0;
	if (stat(path, &st) == 0) {
		size_t len = 0;
		rc = st_read_file(path, 65536, out, &len, err);
		if (rc == 0 && (st.st_mode & 077) && chmod(path, 0600) != 0)
			rc = st_error_make(err, errno, "cannot chmod '%s' to 0600", path);
	} else {
		char *v = gen();
		rc = st_write_file_atomic(path, v, strlen(v), 0600, err);
		if (rc == 0) {
			*out = v;
			*created = true;
		} else {
			crypto_free_secret(v);
		}
	}
	free(path);
	return rc;
}

static char *gen_hex32(void)
{
	return crypto_random_hex(32);
}

static char *pending_public_pem;

static char *gen_private_pem(void)
{
	char *priv = NULL, *pub = NULL;
	struct st_error *e = NULL;
	if (crypto_es256_generate(&priv, &pub, &e) < 0)
		abort(); /* OpenSSL cannot make a P-256 key: nothing sensible to continue with */
	free(pending_public_pem);
	pending_public_pem = pub;
	return priv;
}

int config_ensure_dev_secrets(struct stockade_config *cfg, struct st_error **err)
{
	if (!cfg->dev_mode)
		return st_error_make(err, EPERM,
		                     "development secrets are only generated without --config; "
		                     "production configs must name their secrets");
	char *dir = config_data_path(cfg, "secrets");
	int rc = st_mkdir_p(cfg->data_dir, 0755, err);
	if (rc == 0)
		rc = st_mkdir_p(dir, 0700, err);
	if (rc == 0 && chmod(dir, 0700) != 0)
		rc = st_error_make(err, errno, "cannot chmod '%s' to 0700", dir);
	if (rc < 0) {
		free(dir);
		return rc;
	}
	bool created = false;
	char *v = NULL;
	struct config_agent_sandbox *as = &cfg->rr.agent_sandbox;

	if (rc == 0 && cfg->n_api_tokens == 0 &&
	    (rc = load_or_create(dir, "api-token", gen_hex32, &v, &created, err)) == 0) {
		cfg->api_token_hashes = st_xcalloc(1, 32);
		crypto_sha256(v, strlen(v), cfg->api_token_hashes[0]);
		cfg->n_api_tokens = 1;
		if (cfg->mcp.enabled && !cfg->mcp.static_token && !cfg->mcp.jwks_file &&
		    !cfg->mcp.jwks_url)
			cfg->mcp.static_token = st_xstrdup(v);
		crypto_free_secret(v);
		v = NULL;
	}
	if (rc == 0 && !cfg->jwt_secret)
		rc = load_or_create(dir, "jwt-secret", gen_hex32, &cfg->jwt_secret, &created, err);
	if (rc == 0 && !cfg->encryption_key)
		rc = load_or_create(dir, "encryption-key", gen_hex32, &cfg->encryption_key,
		                    &created, err);
	if (rc == 0 && !as->encryption_key_hex)
		rc = load_or_create(dir, "agent-encryption-key", gen_hex32, &as->encryption_key_hex,
		                    &created, err);
	if (rc == 0 && !as->jwt_private_key_pem && !as->jwt_public_key_pem) {
		bool made = false;
		rc = load_or_create(dir, "agent-jwt-private-key.pem", gen_private_pem,
		                    &as->jwt_private_key_pem, &made, err);
		if (rc == 0 && made) {
			char *pub = steal_pointer(&pending_public_pem);
			char *path = st_xasprintf("%s/agent-jwt-public-key.pem", dir);
			rc = st_write_file_atomic(path, pub, strlen(pub), 0600, err);
			free(path);
			as->jwt_public_key_pem = pub;
			created = true;
		} else if (rc == 0) {
			char *t = NULL;
			bool dummy = false;
			rc = load_or_create(dir, "agent-jwt-public-key.pem", gen_hex32, &t, &dummy,
			                    err);
			as->jwt_public_key_pem = t;
		}
	}
	if (rc == 0) {
		/* the loaded files must satisfy the same rules as a production config */
		struct config_problems pr;
		config_problems_init(&pr);
		if (config__check_agent_encryption_key(as->encryption_key_hex,
		                                       "rr.agentSandbox.encryptionKey",
		                                       "the development secrets", &pr) < 0) {
			rc = st_error_make(err, EINVAL,
			                   "'%s/agent-encryption-key' %s (delete it to "
			                   "regenerate)",
			                   dir, pr.items[0].message);
		} else {
			uint8_t *k = NULL;
			size_t kl = 0;
			if (crypto_hex_decode(as->encryption_key_hex, 64, &k, &kl) == 0) {
				memcpy(as->encryption_key, k, 32);
				as->has_encryption_key = true;
			}
			crypto_wipe(k, kl);
			free(k);
		}
		config_problems_release(&pr);
		struct st_error *e = NULL;
		if (rc == 0 && crypto_es256_check_pair(as->jwt_private_key_pem,
		                                       as->jwt_public_key_pem, &e) < 0) {
			rc = st_error_make(
			    err, EINVAL,
			    "development keypair in '%s' is unusable: %s (delete both "
			    "agent-jwt-*.pem files to regenerate)",
			    dir, st_error_msg(e));
		}
		st_error_free(e);
	}
	if (rc == 0)
		st_log(ST_LOG_WARN,
		       "using development secrets %s '%s' (files 0600): they are for development "
		       "only; production needs --config with explicit secrets ('stockade keys "
		       "generate'). The API token is in '%s/api-token'",
		       created ? "generated into" : "from", dir, dir);
	free(pending_public_pem);
	pending_public_pem = NULL;
	free(dir);
	return rc;
}
