/*
 * config-validate.c - derived values and the cross-field rules of the configuration.
 *
 * config__derive computes what follows from what was written (effective enabled switches,
 * Postgres inheritance for the agent sandbox, paths under dataDir); it never reports.
 * config__validate checks every rule and records *all* problems (never stops at the first),
 * each naming its key path and what to do. Errors stop the service; warnings are logged.
 */
#include "config/config-internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <sys/stat.h>

#include "crypto/crypto.h"

static bool resolve_tri(enum config_tristate t, bool master)
{
	return t == CONFIG_UNSET ? master : t == CONFIG_TRUE;
}

static void derive_agent_pg(struct stockade_config *cfg, struct config__pending *pd)
{
	struct config_postgres *out = &cfg->rr.agent_sandbox.postgres;
	const struct config_postgres *be = &cfg->postgresql;
	const struct config_postgres *ov = pd && pd->as_pg_given ? &pd->as_pg : NULL;
	config__pg_release(out);
	bool own = ov && (ov->host || ov->url);
	if (!own && !be->present)
		return; /* no Postgres anywhere: the agent sandbox uses the SQLite store */
	if (own) {
		config__pg_copy(out, ov);
		out->inherited = false;
		/* missing pieces of an override still come from the backend */
		if (!out->url && be->present && !be->url) {
			if (out->port == 0)
				out->port = be->port;
			if (!out->db)
				out->db = be->db ? st_xstrdup(be->db) : NULL;
			if (!out->user)
				out->user = be->user ? st_xstrdup(be->user) : NULL;
			if (!out->password && be->password)
				out->password = st_xstrdup(be->password);
		}
	} else {
		config__pg_copy(out, be);
		out->inherited = true;
		free(out->schema);
		out->schema = NULL;
		if (ov && ov->password) { /* only the password given (injected separately) */
			free(out->password);
			out->password = st_xstrdup(ov->password);
		}
		if (ov && ov->sslmode)
			out->sslmode = st_xstrdup(ov->sslmode);
		else if (be->ssl_enabled && be->sslmode == NULL) {
			/* the chart: an inherited SSL connection does not verify the certificate */
			free(out->sslmode);
			out->sslmode = st_xstrdup("no-verify");
		}
	}
	out->present = true;
	if (!out->schema)
		out->schema = st_xstrdup(ov && ov->schema ? ov->schema : "agent_executor");
	if (out->port == 0)
		out->port = 5432;
	if (!out->url) {
		if (!out->host)
			out->host = st_xstrdup("localhost");
		if (!out->db)
			out->db = st_xstrdup("stockade");
		if (!out->user)
			out->user = st_xstrdup("stockade");
	}
}

void config__derive(struct stockade_config *cfg, struct config__pending *pd)
{
	struct config_rr *rr = &cfg->rr;
	rr->js_executor.enabled = resolve_tri(rr->js_executor.enabled_setting, rr->enabled);
	rr->agent_sandbox.enabled = resolve_tri(rr->agent_sandbox.enabled_setting, rr->enabled);
	rr->git_server.enabled = resolve_tri(rr->git_server.enabled_setting, rr->enabled);
	rr->agent_sandbox.snapshots_enabled = rr->agent_sandbox.enabled;

	if (pd && !pd->js_modules_dir_explicit && cfg->code_executor.js_modules_dir)
		config__set_str(&rr->js_executor.js_modules_dir, cfg->code_executor.js_modules_dir);
	if (pd && !pd->js_mode_explicit)
		rr->js_executor.mode =
		    cfg->code_executor.mode == CONFIG_MODE_UNSANDBOXED
		        ? (geteuid() == 0 ? CONFIG_MODE_PRIVILEGED : CONFIG_MODE_SECCOMP)
		        : cfg->code_executor.mode;

	struct config_postgres *be = &cfg->postgresql;
	if (be->present && !be->url) {
		if (!be->host)
			be->host = st_xstrdup("localhost");
		if (be->port == 0)
			be->port = 5432;
		if (!be->db)
			be->db = st_xstrdup("stockade");
		if (!be->user)
			be->user = st_xstrdup("stockade");
	}
	free(cfg->sqlite_path);
	cfg->sqlite_path = be->present ? NULL : config_data_path(cfg, "stockade.db");
	if (!rr->agent_sandbox.sandbox.workspace_dir)
		rr->agent_sandbox.sandbox.workspace_dir = config__default_workspace_dir(cfg);
	derive_agent_pg(cfg, pd);

	if (cfg->mcp.resource == NULL && cfg->http.public_url) {
		const char *u = cfg->http.public_url;
		size_t l = strlen(u);
		cfg->mcp.resource =
		    st_xasprintf("%.*s/mcp", (int)(l && u[l - 1] == '/' ? l - 1 : l), u);
	}
	if (cfg->mcp.audience == NULL && cfg->mcp.resource)
		cfg->mcp.audience = st_xstrdup(cfg->mcp.resource);

	config__parse_listen(cfg, NULL);
}

void config__parse_listen(struct stockade_config *cfg, struct config_problems *pr)
{
	free(cfg->listen_host);
	cfg->listen_host = NULL;
	cfg->listen_port = 0;
	const char *l = cfg->listen ? cfg->listen : "";
	const char *colon = strrchr(l, ':');
	uint64_t port = 0;
	bool port_ok = false;
	if (colon) {
		const char *h = l;
		size_t hl = (size_t)(colon - l);
		if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
			h++;
			hl -= 2;
		}
		cfg->listen_host = st_xasprintf("%.*s", (int)hl, h);
		/* port 0 asks the kernel for a free port (tests) */
		port_ok = st_parse_u64(colon + 1, &port) == 0 && port <= 65535;
		if (port_ok)
			cfg->listen_port = (uint16_t)port;
	}
	if (!colon || !cfg->listen_host || !*cfg->listen_host || !port_ok)
		config_problems_add(
		    pr, CONFIG_ERROR, "listen",
		    "'%s' must be host:port (e.g. 127.0.0.1:8080 or [::1]:8080) with "
		    "a port from 0 (any free port) to 65535",
		    l);
}

/* ---- rules -------------------------------------------------------------------------------- */

static bool all_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

static bool looks_base64(const char *s, size_t n)
{
	if (n < 16)
		return false;
	uint8_t *out = NULL;
	size_t ol = 0;
	int rc = crypto_base64_decode(s, n, &out, &ol);
	if (rc < 0) {
		/* base64url is base64 too, for the purpose of the message */
		rc = crypto_base64url_decode(s, n, &out, &ol);
	}
	free(out);
	/* any alphanumeric string of the right length decodes: call it base64 only when it
	 * decodes to a 32-byte key or uses base64's own characters */
	return rc == 0 && (ol == 32 || strpbrk(s, "+/=") != NULL);
}

int config__check_agent_encryption_key(const char *v, const char *key_path, const char *origin,
                                       struct config_problems *pr)
{
	size_t n = strlen(v);
	const char *from = origin ? origin : "the configuration";
	if (n == 64 && all_hex(v, 64))
		return 0;
	if (n > 64 && all_hex(v, 64) && strspn(v + 64, "\r\n \t") == n - 64) {
		bool nl = strchr(v + 64, '\n') != NULL;
		config_problems_add(
		    pr, CONFIG_ERROR, key_path,
		    "is %zu bytes: 64 hex characters followed by %s (from %s); the key must be "
		    "exactly 64 bytes. Write it without the newline: openssl rand -hex 32 | tr -d "
		    "'\\n' > encryption_key.txt (or use 'stockade keys generate'), then recreate "
		    "the "
		    "secret from that file",
		    n, nl ? "a trailing newline" : "trailing whitespace", from);
		return -EINVAL;
	}
	if (!all_hex(v, n) && looks_base64(v, n)) {
		config_problems_add(
		    pr, CONFIG_ERROR, key_path,
		    "looks like base64 (%zu characters, from %s); base64 is rejected: "
		    "the key must be exactly 64 hex characters (32 bytes). Generate "
		    "one with: openssl rand -hex 32 | tr -d '\\n'",
		    n, from);
		return -EINVAL;
	}
	config_problems_add(pr, CONFIG_ERROR, key_path,
	                    "must be exactly 64 hex characters (0-9, a-f), got %zu characters%s "
	                    "(from %s); generate one with: openssl rand -hex 32 | tr -d '\\n'",
	                    n, all_hex(v, n) ? "" : " including non-hex ones", from);
	return -EINVAL;
}

/* The backend encryption key: ASCII only, no control characters. */
static void check_backend_encryption_key(const char *v, const char *origin,
                                         struct config_problems *pr)
{
	const char *from = origin ? origin : "the configuration";
	/* messages give positions, never the key's bytes */
	for (size_t i = 0; v[i]; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch >= 0x80) {
			config_problems_add(
			    pr, CONFIG_ERROR, "encryptionKey",
			    "contains non-ASCII characters (first at byte %zu, from %s); "
			    "a non-ASCII key would make data encrypted with it "
			    "undecryptable (ERR_OSSL_BAD_DECRYPT): rotate it to an ASCII "
			    "key (e.g. openssl rand -hex 32) and re-encrypt stored data "
			    "before using this version",
			    i, from);
			return;
		}
		if (ch < 0x20 || ch == 0x7f) {
			config_problems_add(
			    pr, CONFIG_ERROR, "encryptionKey",
			    "contains %s at byte %zu (from %s); remove it (a key file "
			    "written with echo or openssl ends in a newline: use tr -d "
			    "'\\n')",
			    ch == '\n' ? "a newline" : "a control character", i, from);
			return;
		}
	}
}

static void check_jwt_secret(const char *v, const char *origin, struct config_problems *pr)
{
	size_t n = strlen(v);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20) {
			config_problems_add(
			    pr, CONFIG_ERROR, "jwtSecret",
			    "contains a control character (%s at position %zu, from "
			    "%s); remove it (tr -d '\\n')",
			    v[i] == '\n' ? "a newline" : "non-printable", i,
			    origin ? origin : "the configuration");
			return;
		}
	if (n < 32)
		config_problems_add(pr, CONFIG_WARNING, "jwtSecret",
		                    "is only %zu characters; use at least 32 random characters "
		                    "(openssl rand -hex 32)",
		                    n);
}

static void check_limits(const struct config_exec_limits *l, const char *path,
                         struct config_problems *pr)
{
	char *kp = st_xasprintf("%s.limits.defaultTimeoutMs", path);
	if (l->default_timeout_ms > l->max_timeout_ms)
		config_problems_add(pr, CONFIG_ERROR, kp,
		                    "%u is above maxTimeoutMs (%u); lower it or raise maxTimeoutMs",
		                    l->default_timeout_ms, l->max_timeout_ms);
	free(kp);
	kp = st_xasprintf("%s.limits.defaultMemoryMb", path);
	if (l->default_memory_mb > l->max_memory_mb)
		config_problems_add(pr, CONFIG_ERROR, kp,
		                    "%u is above maxMemoryMb (%u); lower it or raise maxMemoryMb",
		                    l->default_memory_mb, l->max_memory_mb);
	free(kp);
}

static bool valid_cidr(const char *s)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	if (slash == NULL || (size_t)(slash - s) >= sizeof(buf))
		return false;
	memcpy(buf, s, (size_t)(slash - s));
	buf[slash - s] = '\0';
	uint8_t addr[16];
	uint64_t bits;
	int maxbits;
	if (inet_pton(AF_INET, buf, addr) == 1)
		maxbits = 32;
	else if (inet_pton(AF_INET6, buf, addr) == 1)
		maxbits = 128;
	else
		return false;
	return st_parse_u64(slash + 1, &bits) == 0 && bits <= (uint64_t)maxbits;
}

static void required_secret(struct stockade_config *cfg, const char *key, const char *file,
                            struct config_problems *pr, const char *what)
{
	const struct config_agent_sandbox *as = &cfg->rr.agent_sandbox;
	char *kp = st_xasprintf("rr.agentSandbox.%s", key);
	if (as->external_secret_name)
		config_problems_add(
		    pr, CONFIG_ERROR, kp,
		    "required when the agent sandbox is enabled, and the external "
		    "secret '%s' has no '%s' file in '%s'; add it to the Secret (see "
		    "'stockade keys generate --k8s-secret')",
		    as->external_secret_name, file,
		    as->external_secret_mount_path ? as->external_secret_mount_path : "?");
	else
		config_problems_add(
		    pr, CONFIG_ERROR, kp,
		    "required when the agent sandbox is enabled: %s; set it inline, "
		    "as rr.agentSandbox.%sFile: <path>, or through "
		    "rr.agentSandbox.externalSecret.name (file '%s'); 'stockade keys "
		    "generate' writes one",
		    what, key, file);
	free(kp);
}

static void validate_agent_sandbox(struct stockade_config *cfg, struct config__pending *pd,
                                   struct config_problems *pr)
{
	struct config_agent_sandbox *as = &cfg->rr.agent_sandbox;
	bool need = as->enabled && !cfg->dev_mode;
	if (need && !as->jwt_private_key_pem)
		required_secret(cfg, "jwtPrivateKey", "jwt-private-key", pr,
		                "the ES256 (P-256) private key in PEM");
	if (need && !as->jwt_public_key_pem)
		required_secret(cfg, "jwtPublicKey", "jwt-public-key", pr,
		                "the ES256 (P-256) public key in PEM");
	if (need && !as->encryption_key_hex)
		required_secret(cfg, "encryptionKey", "encryption-key", pr,
		                "64 hex characters (openssl rand -hex 32 | tr -d '\\n')");

	if (as->encryption_key_hex) {
		const char *origin = pd ? pd->as_encryption_key_origin : NULL;
		if (config__check_agent_encryption_key(
		        as->encryption_key_hex, "rr.agentSandbox.encryptionKey", origin, pr) == 0) {
			uint8_t *k = NULL;
			size_t kl = 0;
			if (crypto_hex_decode(as->encryption_key_hex, 64, &k, &kl) == 0 &&
			    kl == 32) {
				memcpy(as->encryption_key, k, 32);
				as->has_encryption_key = true;
			}
			crypto_wipe(k, kl);
			free(k);
		}
		if (cfg->encryption_key &&
		    strcasecmp(cfg->encryption_key, as->encryption_key_hex) == 0)
			config_problems_add(
			    pr, CONFIG_ERROR, "rr.agentSandbox.encryptionKey",
			    "equals the backend encryptionKey; the agent sandbox needs "
			    "its own key: generate a new one (openssl rand -hex 32 | tr "
			    "-d '\\n')");
	}
	if (as->jwt_private_key_pem && as->jwt_public_key_pem) {
		struct st_error *e = NULL;
		if (crypto_es256_check_pair(as->jwt_private_key_pem, as->jwt_public_key_pem, &e) <
		    0) {
			config_problems_add(
			    pr, CONFIG_ERROR, "rr.agentSandbox.jwtPublicKey",
			    "the JWT keypair is not a matching ES256 (P-256) pair: %s",
			    st_error_msg(e));
			st_error_free(e);
		}
	} else if (as->jwt_private_key_pem || as->jwt_public_key_pem) {
		const char *missing = as->jwt_private_key_pem ? "jwtPublicKey" : "jwtPrivateKey";
		char *kp = st_xasprintf("rr.agentSandbox.%s", missing);
		if (!need) /* when needed, the required message above already says it */
			config_problems_add(pr, CONFIG_ERROR, kp,
			                    "only one half of the JWT keypair is set; give both "
			                    "jwtPublicKey and jwtPrivateKey");
		free(kp);
	}
	if (cfg->jwt_secret) {
		if (as->jwt_private_key_pem &&
		    crypto_str_equal(cfg->jwt_secret, as->jwt_private_key_pem))
			config_problems_add(
			    pr, CONFIG_ERROR, "rr.agentSandbox.jwtPrivateKey",
			    "equals the backend jwtSecret; the agent sandbox needs a new, "
			    "unique keypair ('stockade keys generate')");
		if (as->jwt_public_key_pem &&
		    crypto_str_equal(cfg->jwt_secret, as->jwt_public_key_pem))
			config_problems_add(
			    pr, CONFIG_ERROR, "rr.agentSandbox.jwtPublicKey",
			    "equals the backend jwtSecret; the agent sandbox needs a new, "
			    "unique keypair ('stockade keys generate')");
		if (as->api_secret && crypto_str_equal(cfg->jwt_secret, as->api_secret))
			config_problems_add(
			    pr, CONFIG_ERROR, "rr.agentSandbox.apiSecret",
			    "equals the backend jwtSecret; use a separate random value");
	}
	if (cfg->encryption_key && as->jwt_private_key_pem &&
	    crypto_str_equal(cfg->encryption_key, as->jwt_private_key_pem))
		config_problems_add(pr, CONFIG_ERROR, "rr.agentSandbox.jwtPrivateKey",
		                    "equals the backend encryptionKey; generate a new keypair");

	for (size_t i = 0; i < as->proxy.blocked_cidrs.n; i++)
		if (!valid_cidr(as->proxy.blocked_cidrs.v[i])) {
			char *kp = st_xasprintf("rr.agentSandbox.proxy.blockedCidrs[%zu]", i);
			config_problems_add(pr, CONFIG_ERROR, kp,
			                    "'%s' is not a CIDR (e.g. 10.0.0.0/8 or fc00::/7)",
			                    as->proxy.blocked_cidrs.v[i]);
			free(kp);
		}
	for (size_t i = 0; i < as->proxy.backend_domain_suffixes.n; i++)
		if (strstr(as->proxy.backend_domain_suffixes.v[i], "://") ||
		    strchr(as->proxy.backend_domain_suffixes.v[i], '/')) {
			char *kp =
			    st_xasprintf("rr.agentSandbox.proxy.backendDomainSuffixes[%zu]", i);
			config_problems_add(
			    pr, CONFIG_ERROR, kp,
			    "'%s' must be a domain name (e.g. example.com), not a URL",
			    as->proxy.backend_domain_suffixes.v[i]);
			free(kp);
		}

	if (as->scaling.prewarm_pool_size > as->scaling.max_total_jobs)
		config_problems_add(
		    pr, CONFIG_ERROR, "rr.agentSandbox.scaling.prewarmPoolSize",
		    "%u is above maxTotalJobs (%u): the pool could never fill; lower "
		    "it or raise maxTotalJobs",
		    as->scaling.prewarm_pool_size, as->scaling.max_total_jobs);
	if (as->scaling.per_user_sandbox_limit > as->scaling.max_total_jobs)
		config_problems_add(pr, CONFIG_WARNING,
		                    "rr.agentSandbox.scaling.perUserSandboxLimit",
		                    "%u is above maxTotalJobs (%u); one user could take every slot",
		                    as->scaling.per_user_sandbox_limit, as->scaling.max_total_jobs);
	if (as->sandbox.global_lifetime_ms < as->sandbox.idle_timeout_ms)
		config_problems_add(
		    pr, CONFIG_WARNING, "rr.agentSandbox.sandbox.sandboxGlobalLifetimeMs",
		    "is shorter than sandboxIdleTimeoutMs, so the idle timeout never "
		    "applies");
	if (as->enabled && as->runtime == CONFIG_RUNTIME_JAIL)
		config_problems_add(
		    pr, CONFIG_WARNING, "rr.agentSandbox.runtime",
		    "'jail' runs sandboxes in the namespace jail instead of gVisor: "
		    "weaker isolation for long-lived agent workloads; use 'gvisor' in "
		    "production");
}

static void validate_blob(const struct config_blob *b, const char *path, struct config_problems *pr)
{
	char *kp = NULL;
#define REQ(cond, key, msg)                                                   \
	do {                                                                  \
		if (!(cond)) {                                                \
			kp = st_xasprintf("%s.%s", path, key);                \
			config_problems_add(pr, CONFIG_ERROR, kp, "%s", msg); \
			free(kp);                                             \
		}                                                             \
	} while (0)
	switch (b->provider) {
	case CONFIG_BLOB_S3:
		REQ(b->s3.bucket, "s3.bucket", "required: the bucket name");
		if (!b->s3.access_key_id != !b->s3.secret_access_key)
			REQ(false, b->s3.access_key_id ? "s3.secretAccessKey" : "s3.accessKeyId",
			    "accessKeyId and secretAccessKey go together; set both");
		if (!b->s3.access_key_id && !b->s3.secret_access_key) {
			kp = st_xasprintf("%s.s3", path);
			config_problems_add(
			    pr, CONFIG_WARNING, kp,
			    "no credentials: requests are sent unsigned, which only a "
			    "public or test bucket accepts; set accessKeyId and "
			    "secretAccessKey (or RR_DEFAULT_S3_ACCESS_KEY_ID / "
			    "RR_DEFAULT_S3_SECRET_ACCESS_KEY)");
			free(kp);
		}
		if (b->s3.endpoint && !st_str_has_prefix(b->s3.endpoint, "http://") &&
		    !st_str_has_prefix(b->s3.endpoint, "https://"))
			REQ(false, "s3.endpoint", "must start with http:// or https://");
		break;
	case CONFIG_BLOB_GCS:
		REQ(b->gcs.bucket, "gcs.bucket", "required: the bucket name");
		REQ(b->gcs.hmac_access_key, "gcs.hmacAccessKey",
		    "required: an HMAC key of a service account (Cloud Storage > Settings > "
		    "Interoperability)");
		REQ(b->gcs.hmac_secret, "gcs.hmacSecret", "required: the secret of that HMAC key");
		break;
	case CONFIG_BLOB_AZURE:
		REQ(b->azure.container, "azure.container", "required: the container name");
		if (!b->azure.connection_string) {
			REQ(b->azure.account_name, "azure.accountName",
			    "required (or give azure.connectionString)");
			REQ(b->azure.account_key, "azure.accountKey",
			    "required (or give azure.connectionString)");
		}
		if (b->azure.account_key) {
			uint8_t *k = NULL;
			size_t kl = 0;
			bool ok = crypto_base64_decode(b->azure.account_key,
			                               strlen(b->azure.account_key), &k, &kl) == 0;
			free(k);
			REQ(ok, "azure.accountKey",
			    "must be the base64 account key from the portal");
		}
		break;
	case CONFIG_BLOB_FILESYSTEM:
		REQ(b->filesystem.path, "filesystem.path", "required: a directory for the objects");
		break;
	case CONFIG_BLOB_NONE:
	default: break;
	}
#undef REQ
}

static void validate_blobs(struct stockade_config *cfg, struct config_problems *pr)
{
	struct config_rr *rr = &cfg->rr;
	bool git = rr->git_server.enabled, snaps = rr->agent_sandbox.snapshots_enabled;
	if ((git || snaps) && !cfg->dev_mode && rr->blob_storage_provider_count != 1) {
		const char *who = git && snaps ? "the git server and agent sandbox snapshots"
		                  : git        ? "the git server"
		                               : "agent sandbox snapshots";
		bool skip = rr->git_server.skip_blob_storage_validation;
		if (rr->blob_storage_provider_count == 0)
			config_problems_add(
			    pr, skip ? CONFIG_WARNING : CONFIG_ERROR, "rr.blobStorage",
			    "%s need exactly one blob storage provider and none is configured; add "
			    "one "
			    "of rr.blobStorage.s3 / gcs / azure / filesystem%s",
			    who,
			    skip ? " (downgraded to a warning by "
			           "rr.gitServer.skipBlobStorageValidation: "
			           "storage must then come from RR_GIT_S3_* / RR_SNAPSHOTS_S3_* / "
			           "RR_DEFAULT_S3_*, else the filesystem under dataDir is used)"
			         : ", or, when storage comes from RR_*_S3_* environment variables, "
			           "set "
			           "rr.gitServer.skipBlobStorageValidation: true");
		else if (skip) /* more than one: the error from parsing becomes a warning */
			config_problems_add(pr, CONFIG_WARNING, "rr.blobStorage",
			                    "more than one provider; only the first is used "
			                    "(skipBlobStorageValidation is set)");
	}
	if (rr->blob_storage_provider_count == 1)
		validate_blob(&rr->blob_storage, "rr.blobStorage", pr);
	/* destinations that came from the environment */
	const struct config_blob *eff[] = {&rr->git_blob, &rr->snapshots_blob};
	const char *names[] = {"GIT", "SNAPSHOTS"};
	for (size_t i = 0; i < 2; i++) {
		const struct config_blob *b = eff[i];
		if (b->provider != CONFIG_BLOB_S3 || !b->source || !strstr(b->source, "RR_"))
			continue;
		if (!b->s3.bucket) {
			char *kp = st_xasprintf("RR_%s_S3_BUCKET", names[i]);
			config_problems_add(
			    pr, CONFIG_ERROR, kp,
			    "S3 settings come from the environment (%s) but no bucket: "
			    "set RR_%s_S3_BUCKET or RR_DEFAULT_S3_BUCKET",
			    b->source, names[i]);
			free(kp);
		}
	}
}

/* Downgrade "names N providers" to a warning when skipBlobStorageValidation is set. */
static void downgrade_multi_provider(struct stockade_config *cfg, struct config_problems *pr)
{
	if (!cfg->rr.git_server.skip_blob_storage_validation)
		return;
	for (size_t i = 0; i < pr->n; i++)
		if (strcmp(pr->items[i].key_path, "rr.blobStorage") == 0 &&
		    st_str_has_prefix(pr->items[i].message, "names "))
			pr->items[i].severity = CONFIG_WARNING;
}

static void validate_pg(const struct config_postgres *pg, const char *path,
                        struct config_problems *pr)
{
	if (!pg->present)
		return;
	if (pg->url && !st_str_has_prefix(pg->url, "postgres://") &&
	    !st_str_has_prefix(pg->url, "postgresql://")) {
		char *kp = st_xasprintf("%s.url", path);
		config_problems_add(pr, CONFIG_ERROR, kp,
		                    "must be a postgres:// or postgresql:// URL");
		free(kp);
	}
	if (pg->schema) {
		for (const char *p = pg->schema; *p; p++)
			if (!isalnum((unsigned char)*p) && *p != '_') {
				char *kp = st_xasprintf("%s.schema", path);
				config_problems_add(pr, CONFIG_ERROR, kp,
				                    "'%s' must be letters, digits and underscores",
				                    pg->schema);
				free(kp);
				break;
			}
	}
}

static void validate_mcp(struct stockade_config *cfg, struct config_problems *pr)
{
	struct config_mcp *m = &cfg->mcp;
	if (!m->enabled)
		return;
	if (m->static_token && !cfg->dev_mode)
		config_problems_add(pr, CONFIG_WARNING, "mcp.staticToken",
		                    "a static bearer token is for development; configure "
		                    "mcp.oauth for production");
	if (m->static_token && strlen(m->static_token) < 16)
		config_problems_add(pr, CONFIG_ERROR, "mcp.staticToken",
		                    "must be at least 16 characters (openssl rand -hex 32)");
	bool oauth = m->jwks_file || m->jwks_url || m->authorization_servers.n;
	if (m->allow_unauthenticated) {
		config_problems_add(pr, CONFIG_WARNING, "mcp.allowUnauthenticated",
		                    "MCP serves without any authentication (honoured only on a "
		                    "loopback listener): anyone on this host can run code");
		if (!oauth && !m->static_token)
			return;
	}
	if (!oauth && !m->static_token && !cfg->dev_mode) {
		config_problems_add(
		    pr, CONFIG_ERROR, "mcp.oauth",
		    "mcp.enabled is true but no OAuth is configured: set "
		    "mcp.oauth.authorizationServers, mcp.oauth.jwksUrl or "
		    "mcp.oauth.jwksFile, and mcp.resource (the public URL of /mcp)");
		return;
	}
	if (!oauth)
		return;
	if (!m->jwks_file && !m->jwks_url)
		config_problems_add(pr, CONFIG_ERROR, "mcp.oauth.jwksUrl",
		                    "required with OAuth: where the authorization server publishes "
		                    "its signing keys (or mcp.oauth.jwksFile for a local copy)");
	if (m->authorization_servers.n == 0 && !m->issuer)
		config_problems_add(
		    pr, CONFIG_ERROR, "mcp.oauth.authorizationServers",
		    "required with OAuth: the issuer URL(s) clients get tokens from "
		    "(published in /.well-known/oauth-protected-resource)");
	if (!m->resource)
		config_problems_add(pr, CONFIG_ERROR, "mcp.resource",
		                    "required with OAuth: the public URL of this server's /mcp "
		                    "endpoint, e.g. https://stockade.example.com/mcp (or set "
		                    "http.publicUrl)");
	if (m->jwks_url && !st_str_has_prefix(m->jwks_url, "https://") &&
	    !st_str_has_prefix(m->jwks_url, "http://"))
		config_problems_add(pr, CONFIG_ERROR, "mcp.oauth.jwksUrl",
		                    "must be an http:// or https:// URL");
	else if (m->jwks_url && st_str_has_prefix(m->jwks_url, "http://") &&
	         !strstr(m->jwks_url, "://127.0.0.1") && !strstr(m->jwks_url, "://localhost"))
		config_problems_add(pr, CONFIG_WARNING, "mcp.oauth.jwksUrl",
		                    "plain http for signing keys outside loopback can be tampered "
		                    "with; use https");
	if (m->jwks_file) {
		char *near = config__path_near(cfg, m->jwks_file);
		free(m->jwks_file);
		m->jwks_file = near;
		char *text = NULL;
		size_t len = 0;
		struct st_error *e = NULL;
		struct crypto_jwks *j = NULL;
		if (st_read_file(m->jwks_file, 1u << 20, &text, &len, &e) < 0 ||
		    crypto_jwks_parse(text, len, &j, &e) < 0)
			config_problems_add(pr, CONFIG_ERROR, "mcp.oauth.jwksFile", "%s",
			                    st_error_msg(e));
		else if (crypto_jwks_count(j) == 0)
			config_problems_add(pr, CONFIG_ERROR, "mcp.oauth.jwksFile",
			                    "'%s' holds no usable RS256 or ES256 signing key",
			                    m->jwks_file);
		crypto_jwks_free(j);
		st_error_free(e);
		free(text);
	}
}

void config__validate(struct stockade_config *cfg, struct config__pending *pd,
                      struct config_problems *pr)
{
	config__parse_listen(cfg, pr);
	if (!cfg->data_dir || !*cfg->data_dir)
		config_problems_add(pr, CONFIG_ERROR, "dataDir", "must not be empty");

	if (cfg->encryption_key)
		check_backend_encryption_key(cfg->encryption_key,
		                             pd ? pd->encryption_key_origin : NULL, pr);
	else if (!cfg->dev_mode && (cfg->rr.js_executor.enabled || cfg->rr.agent_sandbox.enabled))
		config_problems_add(
		    pr, CONFIG_WARNING, "encryptionKey",
		    "not set: values the service stores encrypted (function secrets) "
		    "cannot be protected; set encryptionKey or ENCRYPTION_KEY");
	if (cfg->jwt_secret)
		check_jwt_secret(cfg->jwt_secret, pd ? pd->jwt_secret_origin : NULL, pr);
	if (!cfg->dev_mode && cfg->n_api_tokens == 0 && !cfg->jwt_secret)
		config_problems_add(pr, CONFIG_ERROR, "apiTokens",
		                    "no API credentials: set apiTokens (a list of bearer tokens), "
		                    "jwtSecret (HS256-signed API tokens) or STOCKADE_API_TOKEN; "
		                    "without one, nobody could call the API");

	if (cfg->code_executor.enabled && cfg->code_executor.mode == CONFIG_MODE_UNSANDBOXED)
		config_problems_add(
		    pr, CONFIG_WARNING, "codeExecutor.mode",
		    "unsandboxed: user code runs without namespaces (seccomp, rlimits "
		    "and no_new_privs still apply); only for code you fully trust");
	check_limits(&cfg->code_executor.limits, "codeExecutor", pr);
	if (cfg->rr.js_executor.mode == CONFIG_MODE_UNSANDBOXED)
		config_problems_add(
		    pr, CONFIG_ERROR, "rr.jsExecutor.mode",
		    "the js-executor always runs functions in a jail: use privileged "
		    "or seccomp");
	check_limits(&cfg->rr.js_executor.limits, "rr.jsExecutor", pr);

	validate_pg(&cfg->postgresql, "postgresql", pr);
	if (pd && pd->as_pg_given)
		validate_pg(&pd->as_pg, "rr.agentSandbox.postgres", pr);
	validate_agent_sandbox(cfg, pd, pr);
	downgrade_multi_provider(cfg, pr);
	validate_blobs(cfg, pr);
	validate_mcp(cfg, pr);
}
