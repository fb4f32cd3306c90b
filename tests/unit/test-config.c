/*
 * test-config.c - one test (at least) per configuration rule: layout, legacy keys, enabled
 * switches, blob storage, agent sandbox secrets, Postgres inheritance, environment overrides,
 * external secrets, dev secrets, redaction. Each test runs in its own process, so setenv is
 * private to it.
 */
#include <ctype.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "unit.h"

#define TOKEN "0123456789abcdef0123456789abcdef"
#define BASE "apiTokens: [\"" TOKEN "\"]\n"

static void clean_env(void)
{
	static const char *vars[] = {"ENCRYPTION_KEY",
	                             "JWT_SECRET",
	                             "STOCKADE_API_TOKEN",
	                             "STOCKADE_LISTEN",
	                             "STOCKADE_DATA_DIR",
	                             "STOCKADE_LOG_LEVEL",
	                             "STOCKADE_SECRETS_DIR",
	                             "POSTGRES_HOST",
	                             "POSTGRES_PORT",
	                             "POSTGRES_DB",
	                             "POSTGRES_USER",
	                             "POSTGRES_PASSWORD",
	                             "POSTGRES_SSL_ENABLED",
	                             "RR_DEFAULT_S3_BUCKET",
	                             "RR_DEFAULT_S3_REGION",
	                             "RR_DEFAULT_S3_ACCESS_KEY_ID",
	                             "RR_DEFAULT_S3_SECRET_ACCESS_KEY",
	                             "RR_DEFAULT_S3_ENDPOINT",
	                             "RR_GIT_S3_BUCKET",
	                             "RR_GIT_S3_ENDPOINT",
	                             "RR_SNAPSHOTS_S3_BUCKET"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(vars); i++)
		unsetenv(vars[i]);
}

static int load(const char *yaml, struct stockade_config *cfg, struct config_problems *pr)
{
	clean_env();
	config_problems_init(pr);
	return config_load_string(yaml, strlen(yaml), "test.yaml", cfg, pr, NULL);
}

/* load without clearing the environment (tests that set variables) */
static int load_env(const char *yaml, struct stockade_config *cfg, struct config_problems *pr)
{
	config_problems_init(pr);
	return config_load_string(yaml, strlen(yaml), "test.yaml", cfg, pr, NULL);
}

static bool has(const struct config_problems *pr, enum config_severity sev, const char *key,
                const char *needle)
{
	for (size_t i = 0; i < pr->n; i++)
		if (pr->items[i].severity == sev && strcmp(pr->items[i].key_path, key) == 0 &&
		    (needle == NULL || strstr(pr->items[i].message, needle)))
			return true;
	config_problems_print(pr, stderr);
	fprintf(stderr, "(looked for %s at '%s' containing '%s')\n",
	        sev == CONFIG_ERROR ? "error" : "warning", key, needle ? needle : "");
	return false;
}

static void dump_if_errors(const struct config_problems *pr)
{
	if (config_problems_count(pr, CONFIG_ERROR))
		config_problems_print(pr, stderr);
}

static char *tmpdir(void)
{
	char *d = st_xstrdup("/tmp/st-config-test-XXXXXX");
	CHECK(mkdtemp(d) != NULL);
	return d;
}

static void write_file(const char *dir, const char *name, const char *data)
{
	char *p = st_xasprintf("%s/%s", dir, name);
	CHECK(st_write_file_atomic(p, data, strlen(data), 0600, NULL) == 0);
	free(p);
}

/* Writes priv.pem, pub.pem, enc.txt into dir; returns the YAML lines for rr.agentSandbox. */
static char *agent_keys(const char *dir)
{
	char *priv = NULL, *pub = NULL;
	CHECK(crypto_es256_generate(&priv, &pub, NULL) == 0);
	write_file(dir, "priv.pem", priv);
	write_file(dir, "pub.pem", pub);
	char *hex = crypto_random_hex(32);
	write_file(dir, "enc.txt", hex);
	free(priv);
	free(pub);
	free(hex);
	return st_xasprintf("    jwtPrivateKeyFile: %s/priv.pem\n"
	                    "    jwtPublicKeyFile: %s/pub.pem\n"
	                    "    encryptionKeyFile: %s/enc.txt\n",
	                    dir, dir, dir);
}

/* A complete, valid production config with everything on. */
static char *full_config(const char *dir)
{
	char *keys = agent_keys(dir);
	char *y = st_xasprintf(BASE "jwtSecret: \"backend-jwt-secret-backend-jwt-secret\"\n"
	                            "encryptionKey: \"backend-encryption-key\"\n"
	                            "rr:\n  enabled: true\n  agentSandbox:\n%s"
	                            "  blobStorage:\n    filesystem: {path: %s/blobs}\n",
	                       keys, dir);
	free(keys);
	return y;
}

TEST(embedded_defaults)
{
	clean_env();
	struct stockade_config cfg;
	struct config_problems pr;
	config_problems_init(&pr);
	CHECK(config_load(NULL, &cfg, &pr, NULL) == 0);
	CHECK(cfg.dev_mode);
	CHECK_STREQ(cfg.listen, "127.0.0.1:8080");
	CHECK_STREQ(cfg.listen_host, "127.0.0.1");
	CHECK_EQ_INT(cfg.listen_port, 8080);
	CHECK_STREQ(cfg.data_dir, "./data");
	CHECK_STREQ(cfg.sqlite_path, "./data/stockade.db");
	CHECK(!cfg.postgresql.present);
	CHECK(cfg.code_executor.enabled);
	CHECK(cfg.rr.enabled && cfg.rr.js_executor.enabled && cfg.rr.agent_sandbox.enabled &&
	      cfg.rr.git_server.enabled);
	CHECK_EQ_INT(cfg.rr.git_blob.provider, CONFIG_BLOB_FILESYSTEM);
	CHECK_STREQ(cfg.rr.git_blob.filesystem.path, "./data/blobs");
	CHECK_STREQ(cfg.rr.git_blob.prefix, "git/");
	CHECK_STREQ(cfg.rr.snapshots_blob.prefix, "snapshots/");
	CHECK_EQ_INT(cfg.code_executor.python_modules.n, 7);
	CHECK_STREQ(cfg.code_executor.python_modules.v[5], "numpy");
	CHECK_EQ_INT(cfg.rr.agent_sandbox.sandbox.idle_timeout_ms, 600000);
	CHECK_EQ_INT(cfg.rr.agent_sandbox.sandbox.global_lifetime_ms, 9000000);
	CHECK_EQ_INT(cfg.rr.agent_sandbox.scaling.prewarm_pool_size, 5);
	CHECK_EQ_INT(cfg.rr.agent_sandbox.scaling.max_total_jobs, 50);
	CHECK_EQ_INT(cfg.rr.agent_sandbox.scaling.max_concurrent_creates, 3);
	CHECK_EQ_INT(cfg.rr.agent_sandbox.scaling.per_user_sandbox_limit, 5);
	CHECK(cfg.rr.agent_sandbox.proxy.blocked_cidrs.n >= 8);
	CHECK(cfg.code_executor.js_modules_dir != NULL);
	CHECK_EQ_INT(config_problems_count(&pr, CONFIG_ERROR), 0);
	config_release(&cfg);
	config_problems_release(&pr);
}

TEST(file_mode_starts_with_everything_under_rr_off)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE, &cfg, &pr) == 0);
	CHECK(!cfg.dev_mode);
	CHECK(!cfg.rr.enabled);
	CHECK(!cfg.rr.js_executor.enabled && !cfg.rr.agent_sandbox.enabled &&
	      !cfg.rr.git_server.enabled);
	CHECK(!cfg.mcp.enabled);
	CHECK(cfg.code_executor.enabled);
	config_release(&cfg);
	config_problems_release(&pr);
}

TEST(production_needs_api_credentials)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load("listen: 127.0.0.1:9000\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "apiTokens", "no API credentials"));
	config_problems_release(&pr);
}

TEST(master_switch_and_overrides)
{
	char *d = tmpdir();
	char *full = full_config(d);
	char *y = st_xasprintf(
	    "%s  jsExecutor:\n    enabled: false\n  gitServer:\n    enabled: null\n", full);
	struct stockade_config cfg;
	struct config_problems pr;
	int rc = load(y, &cfg, &pr);
	dump_if_errors(&pr);
	CHECK(rc == 0);
	CHECK(cfg.rr.enabled);
	CHECK(!cfg.rr.js_executor.enabled);
	CHECK_EQ_INT(cfg.rr.js_executor.enabled_setting, CONFIG_FALSE);
	CHECK(cfg.rr.agent_sandbox.enabled);
	CHECK(cfg.rr.git_server.enabled);
	CHECK_EQ_INT(cfg.rr.git_server.enabled_setting, CONFIG_UNSET);
	CHECK(!cfg.mcp.enabled); /* mcp is not under rr.enabled */
	config_release(&cfg);
	config_problems_release(&pr);
	/* true overrides a false master switch */
	CHECK(load(BASE "rr:\n  enabled: false\n  jsExecutor: {enabled: true}\n", &cfg, &pr) == 0);
	CHECK(cfg.rr.js_executor.enabled);
	CHECK(!cfg.rr.git_server.enabled);
	config_release(&cfg);
	config_problems_release(&pr);
	CHECK(load(BASE "rr:\n  jsExecutor: {enabled: maybe}\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.jsExecutor.enabled", "true, false or null"));
	config_problems_release(&pr);
	CHECK(unit_rm_rf(d) == 0);
	free(d);
	free(full);
	free(y);
}

TEST(legacy_keys_fail_listing_old_to_new)
{
	static const struct {
		const char *yaml, *key, *mapping;
	} cases[] = {
	    {"r2: {}\n", "r2", "r2 -> rr"},
	    {"jsExecutor: {enabled: true}\n", "jsExecutor", "jsExecutor -> rr.jsExecutor"},
	    {"r2Agent: {}\n", "r2Agent", "r2Agent -> (removed)"},
	    {"agentSandbox: {}\n", "agentSandbox", "agentSandbox -> rr.agentSandbox"},
	    {"rrGitServer: {}\n", "rrGitServer", "rrGitServer -> rr.gitServer"},
	    {"blobStorage: {s3: {bucket: b}}\n", "blobStorage", "blobStorage -> rr.blobStorage"},
	    {"rr: {r2Agent: {}}\n", "rr.r2Agent", "rr.r2Agent -> (removed)"},
	    {"rr: {rrAgent: {}}\n", "rr.rrAgent", "rr.rrAgent -> (removed)"},
	    {"rr: {rrGitServer: {}}\n", "rr.rrGitServer", "rr.rrGitServer -> rr.gitServer"},
	    {"rr: {rrBlobStorage: {}}\n", "rr.rrBlobStorage", "rr.rrBlobStorage -> rr.blobStorage"},
	    {"rr: {mcp: {enabled: true}}\n", "rr.mcp", "rr.mcp -> mcp"},
	};
	for (size_t i = 0; i < ST_ARRAY_SIZE(cases); i++) {
		char *y = st_xasprintf(BASE "%s", cases[i].yaml);
		struct stockade_config cfg;
		struct config_problems pr;
		CHECK(load(y, &cfg, &pr) == -EINVAL);
		CHECK(has(&pr, CONFIG_ERROR, cases[i].key, cases[i].mapping));
		CHECK(has(&pr, CONFIG_ERROR, cases[i].key, "nothing starts"));
		config_problems_release(&pr);
		free(y);
	}
	/* several at once: each is listed */
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE "jsExecutor: {}\nblobStorage: {}\nrr: {rrGitServer: {}}\n", &cfg, &pr) ==
	      -EINVAL);
	CHECK_EQ_INT(config_problems_count(&pr, CONFIG_ERROR), 3);
	config_problems_release(&pr);
}

TEST(rr_component_must_be_a_mapping)
{
	static const char *cases[][2] = {
	    {"rr:\n  jsExecutor: true\n", "rr.jsExecutor"},
	    {"rr:\n  agentSandbox: enabled\n", "rr.agentSandbox"},
	    {"rr:\n  gitServer: [1, 2]\n", "rr.gitServer"},
	    {"rr:\n  blobStorage: s3\n", "rr.blobStorage"},
	    {"rr:\n  jsExecutor:\n", "rr.jsExecutor"},
	    {"rr: true\n", "rr"},
	};
	for (size_t i = 0; i < ST_ARRAY_SIZE(cases); i++) {
		char *y = st_xasprintf(BASE "%s", cases[i][0]);
		struct stockade_config cfg;
		struct config_problems pr;
		CHECK(load(y, &cfg, &pr) == -EINVAL);
		CHECK(has(&pr, CONFIG_ERROR, cases[i][1], "must be a mapping"));
		config_problems_release(&pr);
		free(y);
	}
}

TEST(unknown_keys_warn_with_suggestion)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE "listn: 1.2.3.4:5\nrr:\n  enabeld: true\n  agentSandbox:\n    scaling: "
	                "{prewarmPoolsize: 2}\nimage: {tag: x}\n",
	           &cfg, &pr) == 0);
	CHECK(has(&pr, CONFIG_WARNING, "listn", "did you mean 'listen'"));
	CHECK(has(&pr, CONFIG_WARNING, "rr.enabeld", "did you mean 'enabled'"));
	CHECK(has(&pr, CONFIG_WARNING, "rr.agentSandbox.scaling.prewarmPoolsize",
	          "did you mean 'prewarmPoolSize'"));
	CHECK(has(&pr, CONFIG_WARNING, "image", "unknown key"));
	config_release(&cfg);
	config_problems_release(&pr);
}

TEST(yaml_syntax_duplicates_anchors_merge)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE "rr: {enabled: true\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "", "not valid YAML"));
	config_problems_release(&pr);
	CHECK(load(BASE "rr:\n  enabled: true\n  enabled: false\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.enabled", "duplicate key"));
	config_problems_release(&pr);
	CHECK(load(BASE "---\nlisten: a:1\n---\nlisten: b:2\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "", "more than one YAML document"));
	config_problems_release(&pr);
	CHECK(load("- a\n- b\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "", "must be a mapping"));
	config_problems_release(&pr);
	/* anchors and merge keys */
	CHECK(load(BASE
	           "codeExecutor:\n  limits: &lim\n    maxTimeoutMs: 5000\n    "
	           "defaultTimeoutMs: 1000\nrr:\n  jsExecutor:\n    limits:\n      <<: *lim\n  "
	           "    defaultTimeoutMs: 2000\n",
	           &cfg, &pr) == 0);
	CHECK_EQ_INT(cfg.code_executor.limits.max_timeout_ms, 5000);
	CHECK_EQ_INT(cfg.rr.js_executor.limits.max_timeout_ms, 5000);
	CHECK_EQ_INT(cfg.rr.js_executor.limits.default_timeout_ms, 2000);
	config_release(&cfg);
	config_problems_release(&pr);
	/* absurd nesting is refused, not recursed into */
	struct st_buf deep;
	st_buf_init(&deep, 1 << 20);
	st_buf_appendf(&deep, BASE "x: ");
	for (int i = 0; i < 5000; i++)
		st_buf_append(&deep, "[", 1);
	for (int i = 0; i < 5000; i++)
		st_buf_append(&deep, "]", 1);
	st_buf_append(&deep, "\n", 1);
	CHECK(load(deep.data, &cfg, &pr) == -EINVAL);
	CHECK_CONTAINS(pr.items[0].message, "levels deep");
	config_problems_release(&pr);
	st_buf_release(&deep);
	/* an alias bomb is cheap: aliases are shared nodes */
	CHECK(load(BASE "x: &a [1,1,1,1,1,1,1,1,1]\ny: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
	                "z: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nw: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
	                "v: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
	           &cfg, &pr) == 0);
	config_release(&cfg);
	config_problems_release(&pr);
	/* a merge key that names the mapping holding it: refused with the line, not recursed
	   into (found by fuzz-config: the lookup recursed until the stack overflowed) */
	CHECK(load("&x\n<<: *x\nlisten: 0\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "", "refer back to the mapping"));
	CHECK(has(&pr, CONFIG_ERROR, "", "line 1"));
	config_problems_release(&pr);
	CHECK(load(BASE "rr: &x {<<: {<<: *x}}\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "", "merge keys"));
	config_problems_release(&pr);
	/* merges fanning out through lists of aliases (10^5 paths) are refused too */
	CHECK(load(BASE "a: &a {k: 1}\nb: &b {<<: [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]}\n"
	                "c: &c {<<: [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]}\n"
	                "d: &d {<<: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]}\n"
	                "e: &e {<<: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]}\n"
	                "rr: {<<: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]}\n",
	           &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "", "reach more than"));
	config_problems_release(&pr);
}

TEST(blob_storage_exactly_one_when_git_or_snapshots)
{
	struct stockade_config cfg;
	struct config_problems pr;
	/* git server on, nothing configured */
	CHECK(load(BASE "rr:\n  gitServer: {enabled: true}\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.blobStorage", "exactly one"));
	config_problems_release(&pr);
	/* skipBlobStorageValidation downgrades to a warning */
	CHECK(load(BASE "rr:\n  gitServer: {enabled: true, skipBlobStorageValidation: true}\n",
	           &cfg, &pr) == 0);
	CHECK(has(&pr, CONFIG_WARNING, "rr.blobStorage", "exactly one"));
	CHECK_EQ_INT(cfg.rr.git_blob.provider, CONFIG_BLOB_FILESYSTEM);
	config_release(&cfg);
	config_problems_release(&pr);
	/* two providers */
	const char *two =
	    BASE "rr:\n  gitServer: {enabled: true}\n  blobStorage:\n    s3: {bucket: "
	         "a, accessKeyId: k, secretAccessKey: s}\n    gcs: {bucket: b}\n";
	CHECK(load(two, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.blobStorage", "2 providers (s3, gcs)"));
	config_problems_release(&pr);
	char *two_skip = st_xasprintf("%s  gitServer: {enabled: true, skipBlobStorageValidation: "
	                              "true}\n",
	                              BASE "rr:\n  blobStorage:\n    s3: {bucket: a, accessKeyId: "
	                                   "k, secretAccessKey: s}\n    gcs: {bucket: b}\n");
	CHECK(load(two_skip, &cfg, &pr) == 0);
	CHECK(has(&pr, CONFIG_WARNING, "rr.blobStorage", "2 providers"));
	config_release(&cfg);
	config_problems_release(&pr);
	free(two_skip);
	/* exactly one, fields checked */
	CHECK(load(BASE "rr:\n  gitServer: {enabled: true}\n  blobStorage:\n    s3: {region: x}\n",
	           &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.blobStorage.s3.bucket", "required"));
	config_problems_release(&pr);
	CHECK(load(BASE "rr:\n  gitServer: {enabled: true}\n  blobStorage:\n    azure: {container: "
	                "c, accountName: a}\n",
	           &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.blobStorage.azure.accountKey", "required"));
	config_problems_release(&pr);
	CHECK(load(BASE "rr:\n  gitServer: {enabled: true}\n  blobStorage:\n    gcs: {bucket: g, "
	                "hmacAccessKey: GOOG1, hmacSecret: s}\n",
	           &cfg, &pr) == 0);
	CHECK_EQ_INT(cfg.rr.git_blob.provider, CONFIG_BLOB_GCS);
	CHECK_STREQ(cfg.rr.git_blob.gcs.endpoint, "https://storage.googleapis.com");
	config_release(&cfg);
	config_problems_release(&pr);
	/* git server off and no snapshots: no requirement */
	CHECK(load(BASE "rr:\n  enabled: false\n", &cfg, &pr) == 0);
	config_release(&cfg);
	config_problems_release(&pr);
}

TEST(agent_sandbox_secrets_required_when_enabled)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE "rr:\n  agentSandbox: {enabled: true}\n  blobStorage: {filesystem: {path: "
	                "/tmp/x}}\n",
	           &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.jwtPrivateKey", "required"));
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.jwtPublicKey", "required"));
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.encryptionKey", "required"));
	CHECK(config_problems_find(&pr, "rr.agentSandbox.apiSecret") == NULL); /* optional */
	config_problems_release(&pr);
	char *d = tmpdir();
	char *y = full_config(d);
	int rc = load(y, &cfg, &pr);
	dump_if_errors(&pr);
	CHECK(rc == 0);
	CHECK(cfg.rr.agent_sandbox.has_encryption_key);
	CHECK(cfg.rr.agent_sandbox.jwt_private_key_pem != NULL);
	CHECK(cfg.rr.agent_sandbox.snapshots_enabled);
	config_release(&cfg);
	config_problems_release(&pr);
	CHECK(unit_rm_rf(d) == 0);
	free(d);
	free(y);
}

static void check_enc_key(const char *value, const char *needle)
{
	char *d = tmpdir();
	char *y = full_config(d);
	write_file(d, "enc.txt", value);
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(y, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.encryptionKey", needle));
	config_problems_release(&pr);
	CHECK(unit_rm_rf(d) == 0);
	free(d);
	free(y);
}

TEST(agent_encryption_key_rules)
{
	char *hex = crypto_random_hex(32);
	char *nl = st_xasprintf("%s\n", hex);
	CHECK_EQ_INT(strlen(nl), 65);
	check_enc_key(nl, "65 bytes");
	check_enc_key(nl, "trailing newline");
	check_enc_key(nl, "tr -d");
	char *crlf = st_xasprintf("%s\r\n", hex);
	check_enc_key(crlf, "newline");
	uint8_t raw[32] = {1, 2, 3};
	char *b64 = crypto_base64_encode(raw, 32);
	check_enc_key(b64, "base64 is rejected");
	check_enc_key("abcd", "exactly 64 hex characters");
	char *zz = st_xasprintf("%.62szz", hex);
	check_enc_key(zz, "non-hex");
	free(zz);
	free(b64);
	free(crlf);
	free(nl);
	free(hex);
}

static char *pem_of(EVP_PKEY *pk, bool priv)
{
	BIO *b = BIO_new(BIO_s_mem());
	if (priv)
		PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
	else
		PEM_write_bio_PUBKEY(b, pk);
	char *data = NULL;
	long n = BIO_get_mem_data(b, &data);
	char *s = strndup(data, (size_t)n);
	BIO_free(b);
	return s;
}

TEST(agent_jwt_keypair_rules)
{
	char *d = tmpdir();
	char *y = full_config(d);
	struct stockade_config cfg;
	struct config_problems pr;
	/* halves of two different keypairs */
	char *priv = NULL, *pub = NULL;
	CHECK(crypto_es256_generate(&priv, &pub, NULL) == 0);
	write_file(d, "pub.pem", pub);
	CHECK(load(y, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.jwtPublicKey", "not the half"));
	config_problems_release(&pr);
	/* P-384 pair */
	EVP_PKEY *k384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	char *p1 = pem_of(k384, true), *p2 = pem_of(k384, false);
	write_file(d, "priv.pem", p1);
	write_file(d, "pub.pem", p2);
	CHECK(load(y, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.jwtPublicKey", "P-256"));
	config_problems_release(&pr);
	/* RSA pair */
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	char *r1 = pem_of(rsa, true), *r2 = pem_of(rsa, false);
	write_file(d, "priv.pem", r1);
	write_file(d, "pub.pem", r2);
	CHECK(load(y, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.jwtPublicKey", "RSA"));
	config_problems_release(&pr);
	/* not PEM at all */
	write_file(d, "priv.pem", "hello");
	CHECK(load(y, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.jwtPublicKey", "not PEM"));
	config_problems_release(&pr);
	EVP_PKEY_free(k384);
	EVP_PKEY_free(rsa);
	free(p1);
	free(p2);
	free(r1);
	free(r2);
	free(priv);
	free(pub);
	CHECK(unit_rm_rf(d) == 0);
	free(d);
	free(y);
}

TEST(agent_secrets_must_not_reuse_backend_secrets)
{
	char *d = tmpdir();
	char *keys = agent_keys(d);
	char *priv = NULL;
	size_t len = 0;
	char *pp = st_xasprintf("%s/priv.pem", d);
	CHECK(st_read_file(pp, 65536, &priv, &len, NULL) == 0);
	char *hex = crypto_random_hex(32);
	write_file(d, "enc.txt", hex);
	write_file(d, "jwt.txt", priv);
	char *y = st_xasprintf(BASE "jwtSecretFile: %s/jwt.txt\nencryptionKey: \"%s\"\nrr:\n  "
	                            "enabled: true\n  agentSandbox:\n%s  blobStorage: {filesystem: "
	                            "{path: %s}}\n",
	                       d, hex, keys, d);
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(y, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.encryptionKey",
	          "equals the backend encryptionKey"));
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.jwtPrivateKey",
	          "equals the backend jwtSecret"));
	config_problems_release(&pr);
	/* case differences do not hide reuse */
	for (char *p = hex; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	free(y);
	y = st_xasprintf(BASE "jwtSecret: js-js-js-js-js-js-js-js-js-js-js-js\nencryptionKey: "
	                      "\"%s\"\nrr:\n  enabled: true\n  agentSandbox:\n%s  blobStorage: "
	                      "{filesystem: {path: %s}}\n",
	                 hex, keys, d);
	CHECK(load(y, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.encryptionKey", "equals the backend"));
	config_problems_release(&pr);
	CHECK(unit_rm_rf(d) == 0);
	free(d);
	free(y);
	free(keys);
	free(priv);
	free(pp);
	free(hex);
}

TEST(backend_encryption_key_ascii_only)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE "encryptionKey: \"cl\xc3\xa9-secr\xc3\xa8te\"\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "encryptionKey", "non-ASCII"));
	CHECK(has(&pr, CONFIG_ERROR, "encryptionKey", "ERR_OSSL_BAD_DECRYPT"));
	CHECK(has(&pr, CONFIG_ERROR, "encryptionKey", "undecryptable"));
	config_problems_release(&pr);
	CHECK(load(BASE "encryptionKey: \"ascii-key\\n\"\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "encryptionKey", "a newline at byte 9"));
	config_problems_release(&pr);
	/* the environment variable is checked too, and named */
	clean_env();
	setenv("ENCRYPTION_KEY", "\xe2\x82\xac-euro-key", 1);
	CHECK(load_env(BASE, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "encryptionKey", "ENCRYPTION_KEY"));
	config_problems_release(&pr);
	setenv("ENCRYPTION_KEY", "plain-ascii-key", 1);
	CHECK(load_env(BASE "encryptionKey: from-file\n", &cfg, &pr) == 0);
	CHECK_STREQ(cfg.encryption_key, "plain-ascii-key"); /* env overrides the file */
	config_release(&cfg);
	config_problems_release(&pr);
}

TEST(postgres_inheritance_for_agent_sandbox)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE "postgresql: {host: db.internal, port: 5433, db: retool, user: retool, "
	                "password: \"p'w\", ssl_enabled: true}\n",
	           &cfg, &pr) == 0);
	CHECK(cfg.postgresql.present);
	CHECK(cfg.sqlite_path == NULL);
	const struct config_postgres *as = &cfg.rr.agent_sandbox.postgres;
	CHECK(as->present && as->inherited);
	CHECK_STREQ(as->host, "db.internal");
	CHECK_EQ_INT(as->port, 5433);
	CHECK_STREQ(as->schema, "agent_executor");
	CHECK_STREQ(as->sslmode, "no-verify");
	char *ci = config_agent_sandbox_pg_conninfo(&cfg);
	CHECK_CONTAINS(ci, "host='db.internal'");
	CHECK_CONTAINS(ci, "sslmode='require'");
	CHECK_CONTAINS(ci, "search_path=agent_executor");
	CHECK_CONTAINS(ci, "password='p\\'w'");
	char *be = config_backend_pg_conninfo(&cfg);
	CHECK_CONTAINS(be, "sslmode='require'");
	CHECK(strstr(be, "agent_executor") == NULL);
	char *url = config_pg_display_url(as);
	CHECK_CONTAINS(url, "sslmode=no-verify");
	CHECK_CONTAINS(url, "<redacted>");
	CHECK(strstr(url, "p'w") == NULL);
	free(ci);
	free(be);
	free(url);
	config_release(&cfg);
	config_problems_release(&pr);

	/* an explicit override is not inherited; its schema applies */
	CHECK(load(BASE "postgresql: {host: db, ssl_enabled: true}\nrr:\n  agentSandbox:\n    "
	                "postgres: {host: other, schema: sandboxes}\n",
	           &cfg, &pr) == 0);
	CHECK(!cfg.rr.agent_sandbox.postgres.inherited);
	CHECK_STREQ(cfg.rr.agent_sandbox.postgres.host, "other");
	CHECK_STREQ(cfg.rr.agent_sandbox.postgres.schema, "sandboxes");
	config_release(&cfg);
	config_problems_release(&pr);

	/* no postgres anywhere: SQLite, nothing inherited */
	CHECK(load(BASE, &cfg, &pr) == 0);
	CHECK(!cfg.rr.agent_sandbox.postgres.present);
	CHECK(config_agent_sandbox_pg_conninfo(&cfg) == NULL);
	config_release(&cfg);
	config_problems_release(&pr);

	/* POSTGRES_* environment */
	clean_env();
	setenv("POSTGRES_HOST", "envdb", 1);
	setenv("POSTGRES_PASSWORD", "envpw", 1);
	CHECK(load_env(BASE, &cfg, &pr) == 0);
	CHECK(cfg.postgresql.present);
	CHECK_STREQ(cfg.rr.agent_sandbox.postgres.host, "envdb");
	CHECK(cfg.rr.agent_sandbox.postgres.sslmode == NULL);
	config_release(&cfg);
	config_problems_release(&pr);
}

TEST(env_blob_overrides_per_subsystem)
{
	clean_env();
	setenv("RR_DEFAULT_S3_BUCKET", "shared", 1);
	setenv("RR_DEFAULT_S3_REGION", "eu-west-1", 1);
	setenv("RR_GIT_S3_BUCKET", "git-bucket", 1);
	setenv("RR_GIT_S3_ENDPOINT", "http://127.0.0.1:9000", 1);
	struct stockade_config cfg;
	struct config_problems pr;
	int rc =
	    load_env(BASE "rr:\n  gitServer: {enabled: true}\n  blobStorage:\n    s3: "
	                  "{bucket: file-bucket, accessKeyId: AKID, secretAccessKey: SECRET}\n",
	             &cfg, &pr);
	dump_if_errors(&pr);
	CHECK(rc == 0);
	const struct config_blob *g = &cfg.rr.git_blob, *s = &cfg.rr.snapshots_blob;
	CHECK_EQ_INT(g->provider, CONFIG_BLOB_S3);
	CHECK_STREQ(g->s3.bucket, "git-bucket");
	CHECK_STREQ(g->s3.region, "eu-west-1");
	CHECK_STREQ(g->s3.endpoint, "http://127.0.0.1:9000");
	CHECK(g->s3.force_path_style);
	CHECK_STREQ(g->s3.access_key_id, "AKID"); /* falls back to rr.blobStorage */
	CHECK_STREQ(g->prefix, "git/");
	CHECK_CONTAINS(g->source, "RR_GIT_S3_BUCKET");
	CHECK_STREQ(s->s3.bucket, "shared");
	CHECK_STREQ(s->prefix, "snapshots/");
	CHECK_STREQ(cfg.rr.blob_storage.s3.bucket, "file-bucket"); /* as written */
	config_release(&cfg);
	config_problems_release(&pr);
	/* environment only, with skipBlobStorageValidation (the seed's envFrom case) */
	clean_env();
	setenv("RR_DEFAULT_S3_BUCKET", "only-env", 1);
	setenv("RR_DEFAULT_S3_ACCESS_KEY_ID", "A", 1);
	setenv("RR_DEFAULT_S3_SECRET_ACCESS_KEY", "S", 1);
	CHECK(load_env(BASE "rr:\n  gitServer: {enabled: true, skipBlobStorageValidation: true}\n",
	               &cfg, &pr) == 0);
	CHECK_EQ_INT(cfg.rr.git_blob.provider, CONFIG_BLOB_S3);
	CHECK_STREQ(cfg.rr.git_blob.s3.bucket, "only-env");
	CHECK_STREQ(cfg.rr.git_blob.s3.region, "us-east-1");
	config_release(&cfg);
	config_problems_release(&pr);
	/* a per-subsystem variable without a bucket anywhere */
	clean_env();
	setenv("RR_GIT_S3_ENDPOINT", "http://x", 1);
	CHECK(load_env(BASE "rr:\n  gitServer: {enabled: true, skipBlobStorageValidation: true}\n",
	               &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "RR_GIT_S3_BUCKET", "no bucket"));
	config_problems_release(&pr);
}

TEST(api_tokens_hashed_env_and_sha256_entries)
{
	clean_env();
	setenv("STOCKADE_API_TOKEN", "env-token-env-token-env-token", 1);
	uint8_t h[32];
	crypto_sha256("prehashed-token-value", 21, h);
	char *hex = crypto_hex_encode(h, 32);
	char *y = st_xasprintf(BASE "apiTokens: [\"" TOKEN "\", \"sha256:%s\"]\n", hex);
	struct stockade_config cfg;
	struct config_problems pr;
	/* BASE's apiTokens plus this line would be a duplicate key: use the list alone */
	free(y);
	y = st_xasprintf("apiTokens: [\"" TOKEN "\", \"sha256:%s\"]\n", hex);
	CHECK(load_env(y, &cfg, &pr) == 0);
	CHECK_EQ_INT(cfg.n_api_tokens, 3);
	CHECK(config_api_token_valid(&cfg, TOKEN));
	CHECK(config_api_token_valid(&cfg, "prehashed-token-value"));
	CHECK(config_api_token_valid(&cfg, "env-token-env-token-env-token"));
	CHECK(!config_api_token_valid(&cfg, "wrong"));
	CHECK(!config_api_token_valid(&cfg, ""));
	CHECK(!config_api_token_valid(&cfg, NULL));
	/* the plaintext is not kept anywhere in the JSON view */
	json_t *j = config_to_json(&cfg, true);
	char *s = json_dumps(j, 0);
	CHECK(strstr(s, TOKEN) == NULL);
	free(s);
	json_decref(j);
	config_release(&cfg);
	config_problems_release(&pr);
	CHECK(load("apiTokens: [\"sha256:abc\"]\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "apiTokens[0]", "64 hex"));
	config_problems_release(&pr);
	free(y);
	free(hex);
}

TEST(modes_and_ranges)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE "codeExecutor: {mode: unsandboxed}\n", &cfg, &pr) == 0);
	CHECK_EQ_INT(cfg.code_executor.mode, CONFIG_MODE_UNSANDBOXED);
	CHECK(has(&pr, CONFIG_WARNING, "codeExecutor.mode", "unsandboxed"));
	CHECK(cfg.rr.js_executor.mode != CONFIG_MODE_UNSANDBOXED);
	config_release(&cfg);
	config_problems_release(&pr);
	CHECK(load(BASE "rr:\n  jsExecutor: {mode: unsandboxed}\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.jsExecutor.mode", "always runs"));
	config_problems_release(&pr);
	CHECK(load(BASE "codeExecutor: {mode: yolo}\nrr:\n  agentSandbox: {runtime: docker, "
	                "platform: xen, privileged: true}\nlogLevel: loud\n",
	           &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "codeExecutor.mode", "privileged, seccomp, unsandboxed"));
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.runtime", "gvisor, jail"));
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.platform", "systrap, ptrace, kvm"));
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.privileged", "no privileged mode"));
	CHECK(has(&pr, CONFIG_ERROR, "logLevel", "debug, info, warn, error"));
	config_problems_release(&pr);
	CHECK(load(BASE "codeExecutor:\n  limits: {defaultTimeoutMs: 9000, maxTimeoutMs: 1000, "
	                "maxOutputBytes: 2M, maxMemoryMb: 8, queueSize: lots}\nrr:\n  "
	                "agentSandbox:\n    scaling: {maxTotalJobs: 0, prewarmPoolSize: 3}\n    "
	                "sandbox: {cpus: 0}\n    proxy: {blockedCidrs: [10.0.0.0/8, "
	                "nonsense]}\nlisten: nohost\n",
	           &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "codeExecutor.limits.defaultTimeoutMs", "above maxTimeoutMs"));
	CHECK(has(&pr, CONFIG_ERROR, "codeExecutor.limits.maxMemoryMb", "between 16 and"));
	CHECK(has(&pr, CONFIG_ERROR, "codeExecutor.limits.queueSize", "whole number"));
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.scaling.maxTotalJobs", "between 1 and"));
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.sandbox.cpus", "between"));
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.proxy.blockedCidrs[1]", "not a CIDR"));
	CHECK(has(&pr, CONFIG_ERROR, "listen", "host:port"));
	CHECK(config_problems_find(&pr, "codeExecutor.limits.maxOutputBytes") == NULL);
	config_problems_release(&pr);
	CHECK(load(BASE
	           "rr:\n  agentSandbox:\n    scaling: {maxTotalJobs: 2, prewarmPoolSize: 3}\n",
	           &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.scaling.prewarmPoolSize", "never fill"));
	config_problems_release(&pr);
	CHECK(load(BASE "codeExecutor:\n  limits: {maxOutputBytes: 2M}\n  pythonModules: json, "
	                "math\nrr:\n  agentSandbox:\n    proxy: {backendDomainSuffixes: "
	                "\"example.com, example.org\"}\n",
	           &cfg, &pr) == 0);
	CHECK_EQ_INT(cfg.code_executor.limits.max_output_bytes, 2 << 20);
	CHECK_EQ_INT(cfg.code_executor.python_modules.n, 2);
	CHECK_EQ_INT(cfg.rr.agent_sandbox.proxy.backend_domain_suffixes.n, 2);
	CHECK_STREQ(cfg.rr.agent_sandbox.proxy.backend_domain_suffixes.v[1], "example.org");
	config_release(&cfg);
	config_problems_release(&pr);
}

TEST(external_secret_mount)
{
	char *d = tmpdir();
	char *mount = st_xasprintf("%s/agent-sandbox-env", d);
	CHECK(mkdir(mount, 0700) == 0);
	char *priv = NULL, *pub = NULL;
	CHECK(crypto_es256_generate(&priv, &pub, NULL) == 0);
	write_file(mount, "jwt-private-key", priv);
	write_file(mount, "jwt-public-key", pub);
	char *hex = crypto_random_hex(32);
	write_file(mount, "encryption-key", hex);
	write_file(mount, "api-secret", "api-secret-value");
	write_file(mount, "postgres-url", "postgres://u:pw@pg:5432/db\n");
	clean_env();
	setenv("STOCKADE_SECRETS_DIR", d, 1);
	char *y = st_xasprintf(BASE "rr:\n  enabled: true\n  agentSandbox:\n    externalSecret: "
	                            "{name: agent-sandbox-env}\n  blobStorage: {filesystem: {path: "
	                            "%s}}\n",
	                       d);
	struct stockade_config cfg;
	struct config_problems pr;
	int rc = load_env(y, &cfg, &pr);
	dump_if_errors(&pr);
	CHECK(rc == 0);
	CHECK_STREQ(cfg.rr.agent_sandbox.external_secret_mount_path, mount);
	CHECK_STREQ(cfg.rr.agent_sandbox.encryption_key_hex, hex);
	CHECK_STREQ(cfg.rr.agent_sandbox.api_secret, "api-secret-value");
	CHECK_STREQ(cfg.rr.agent_sandbox.postgres.url, "postgres://u:pw@pg:5432/db");
	CHECK(!cfg.rr.agent_sandbox.postgres.inherited);
	config_release(&cfg);
	config_problems_release(&pr);
	/* a 65-byte key in the Secret is named with its file */
	char *nl = st_xasprintf("%s\n", hex);
	write_file(mount, "encryption-key", nl);
	CHECK(load_env(y, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.encryptionKey", "encryption-key"));
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.encryptionKey", "65 bytes"));
	config_problems_release(&pr);
	/* a missing key file is named */
	char *p = st_xasprintf("%s/jwt-public-key", mount);
	unlink(p);
	CHECK(load_env(y, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.jwtPublicKey", "'jwt-public-key'"));
	config_problems_release(&pr);
	/* not mounted */
	setenv("STOCKADE_SECRETS_DIR", "/nonexistent-stockade", 1);
	CHECK(load_env(y, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.externalSecret", "not mounted"));
	config_problems_release(&pr);
	/* ...which does not matter while the agent sandbox is off (rr.enabled off, no switch of
	   its own: the chart's default values) or switched off itself */
	{
		static const char *const off[] = {
		    BASE "rr:\n  agentSandbox:\n    externalSecret: {name: agent-sandbox-env}\n",
		    BASE "rr:\n  enabled: true\n  gitServer: {enabled: false}\n  agentSandbox:\n"
		         "    enabled: false\n    externalSecret: {name: agent-sandbox-env}\n"};
		for (size_t i = 0; i < ST_ARRAY_SIZE(off); i++) {
			CHECK_EQ_INT(load_env(off[i], &cfg, &pr), 0);
			CHECK(!has(&pr, CONFIG_ERROR, "rr.agentSandbox.externalSecret",
			           "not mounted"));
			config_release(&cfg);
			config_problems_release(&pr);
		}
	}
	CHECK(unit_rm_rf(d) == 0);
	free(p);
	free(nl);
	free(d);
	free(mount);
	free(priv);
	free(pub);
	free(hex);
	free(y);
}

TEST(secret_inline_and_file_conflict_and_missing_file)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE "jwtSecret: abc\njwtSecretFile: /x\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "jwtSecret", "both inline and as 'jwtSecretFile'"));
	config_problems_release(&pr);
	CHECK(load(BASE "rr:\n  agentSandbox: {encryptionKeyFile: /nonexistent/enc}\n", &cfg,
	           &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "rr.agentSandbox.encryptionKeyFile", "/nonexistent/enc"));
	config_problems_release(&pr);
	CHECK(load(BASE "jwtSecret: \"line\\n\"\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "jwtSecret", "newline"));
	config_problems_release(&pr);
}

TEST(show_redacts_every_secret)
{
	char *d = tmpdir();
	char *full = full_config(d);
	char *y = st_xasprintf("%spostgresql: {host: h, password: pg-password-value}\nmcp: "
	                       "{enabled: true, staticToken: static-token-value-123}\n",
	                       full);
	struct stockade_config cfg;
	struct config_problems pr;
	int rc = load(y, &cfg, &pr);
	dump_if_errors(&pr);
	CHECK(rc == 0);
	json_t *j = config_to_json(&cfg, true);
	char *s = json_dumps(j, 0);
	CHECK(strstr(s, "backend-jwt-secret") == NULL);
	CHECK(strstr(s, "backend-encryption-key") == NULL);
	CHECK(strstr(s, "PRIVATE KEY") == NULL);
	CHECK(strstr(s, cfg.rr.agent_sandbox.encryption_key_hex) == NULL);
	CHECK(strstr(s, "pg-password-value") == NULL);
	CHECK(strstr(s, "static-token-value") == NULL);
	CHECK_CONTAINS(s, "<redacted>");
	CHECK_CONTAINS(s, "\"effectiveEnabled\": true");
	json_t *unred = config_to_json(&cfg, false);
	char *u = json_dumps(unred, 0);
	CHECK_CONTAINS(u, "backend-jwt-secret");
	free(u);
	json_decref(unred);
	free(s);
	json_decref(j);
	config_release(&cfg);
	config_problems_release(&pr);
	CHECK(unit_rm_rf(d) == 0);
	free(d);
	free(full);
	free(y);
}

TEST(mcp_is_top_level_and_needs_oauth)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE "mcp: {enabled: true}\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "mcp.oauth", "no OAuth"));
	config_problems_release(&pr);
	char *d = tmpdir();
	write_file(d, "jwks.json",
	           "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k\",\"x\":"
	           "\"CbBFkRE6qxpRh-GYE-K_drvxbVuUNkmy6tmI_quwuH4\",\"y\":"
	           "\"lpvzexXq7pjvgd4DrM4qwBmGOmPqOhQLSq0eMsjzTks\"}]}");
	char *y = st_xasprintf(BASE "http: {publicUrl: \"https://stockade.example/\"}\nmcp:\n  "
	                            "enabled: true\n  oauth:\n    authorizationServers: "
	                            "[\"https://issuer.example\"]\n    jwksFile: %s/jwks.json\n",
	                       d);
	int rc = load(y, &cfg, &pr);
	dump_if_errors(&pr);
	CHECK(rc == 0);
	CHECK(cfg.mcp.enabled);
	CHECK(!cfg.rr.enabled);
	CHECK_STREQ(cfg.mcp.resource, "https://stockade.example/mcp");
	CHECK_STREQ(cfg.mcp.audience, "https://stockade.example/mcp");
	config_release(&cfg);
	config_problems_release(&pr);
	write_file(d, "jwks.json", "{\"keys\":[]}");
	CHECK(load(y, &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "mcp.oauth.jwksFile", "no usable"));
	config_problems_release(&pr);
	CHECK(load(BASE "mcp: {enabled: true, staticToken: dev-token-dev-token}\n", &cfg, &pr) ==
	      0);
	CHECK(has(&pr, CONFIG_WARNING, "mcp.staticToken", "development"));
	config_release(&cfg);
	config_problems_release(&pr);
	CHECK(unit_rm_rf(d) == 0);
	free(d);
	free(y);
}

TEST(chart_config_block_layout)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE "config:\n  jwtSecret: chart-layout-secret-chart-layout-secret\n  "
	                "postgresql: {host: chartdb, ssl_enabled: true}\n",
	           &cfg, &pr) == 0);
	CHECK_STREQ(cfg.jwt_secret, "chart-layout-secret-chart-layout-secret");
	CHECK_STREQ(cfg.postgresql.host, "chartdb");
	CHECK_STREQ(cfg.rr.agent_sandbox.postgres.sslmode, "no-verify");
	config_release(&cfg);
	config_problems_release(&pr);
	CHECK(load(BASE "jwtSecret: a-a-a-a-a-a-a-a-a-a-a-a-a-a-a-a-a\nconfig: {jwtSecret: b}\n",
	           &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "config.jwtSecret", "keep one"));
	config_problems_release(&pr);
}

TEST(all_problems_reported_at_once)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load("jsExecutor: {}\nrr:\n  gitServer: true\n  agentSandbox: {enabled: true, "
	           "encryptionKey: abc}\nencryptionKey: \"\xc3\xa9\"\ncodeExecutor: {mode: x}\n",
	           &cfg, &pr) == -EINVAL);
	CHECK(config_problems_count(&pr, CONFIG_ERROR) >= 7);
	CHECK(config_problems_find(&pr, "jsExecutor") != NULL);
	CHECK(config_problems_find(&pr, "rr.gitServer") != NULL);
	CHECK(config_problems_find(&pr, "rr.agentSandbox.encryptionKey") != NULL);
	CHECK(config_problems_find(&pr, "encryptionKey") != NULL);
	CHECK(config_problems_find(&pr, "codeExecutor.mode") != NULL);
	CHECK(config_problems_find(&pr, "apiTokens") != NULL);
	json_t *j = config_problems_to_json(&pr);
	CHECK_EQ_INT(json_array_size(j), pr.n);
	json_decref(j);
	config_problems_release(&pr);
}

TEST(dev_secrets_generated_once_0600)
{
	char *d = tmpdir();
	clean_env();
	setenv("STOCKADE_DATA_DIR", d, 1);
	struct stockade_config cfg;
	struct config_problems pr;
	config_problems_init(&pr);
	CHECK(config_load(NULL, &cfg, &pr, NULL) == 0);
	struct st_error *err = NULL;
	CHECK(config_ensure_dev_secrets(&cfg, &err) == 0);
	CHECK(cfg.rr.agent_sandbox.has_encryption_key);
	CHECK_EQ_INT(strlen(cfg.rr.agent_sandbox.encryption_key_hex), 64);
	CHECK(crypto_es256_check_pair(cfg.rr.agent_sandbox.jwt_private_key_pem,
	                              cfg.rr.agent_sandbox.jwt_public_key_pem, NULL) == 0);
	CHECK_EQ_INT(cfg.n_api_tokens, 1);
	CHECK(cfg.mcp.static_token != NULL);
	CHECK(config_api_token_valid(&cfg, cfg.mcp.static_token));
	char *sec = st_xasprintf("%s/secrets", d);
	struct stat st;
	CHECK(stat(sec, &st) == 0);
	CHECK_EQ_INT(st.st_mode & 0777, 0700);
	static const char *files[] = {"api-token",
	                              "jwt-secret",
	                              "encryption-key",
	                              "agent-encryption-key",
	                              "agent-jwt-private-key.pem",
	                              "agent-jwt-public-key.pem"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(files); i++) {
		char *p = st_xasprintf("%s/%s", sec, files[i]);
		CHECK(stat(p, &st) == 0);
		CHECK_EQ_INT(st.st_mode & 0777, 0600);
		free(p);
	}
	char *p = st_xasprintf("%s/agent-encryption-key", sec);
	CHECK(stat(p, &st) == 0);
	CHECK_EQ_INT(st.st_size, 64); /* no newline */
	free(p);
	char *first = st_xstrdup(cfg.rr.agent_sandbox.encryption_key_hex);
	config_release(&cfg);
	/* a second start reuses them */
	CHECK(config_load(NULL, &cfg, &pr, NULL) == 0);
	CHECK(config_ensure_dev_secrets(&cfg, NULL) == 0);
	CHECK_STREQ(cfg.rr.agent_sandbox.encryption_key_hex, first);
	config_release(&cfg);
	/* production configs never get generated secrets */
	CHECK(load(BASE, &cfg, &pr) == 0);
	CHECK(config_ensure_dev_secrets(&cfg, &err) == -EPERM);
	st_error_free(err);
	config_release(&cfg);
	config_problems_release(&pr);
	CHECK(unit_rm_rf(d) == 0);
	free(first);
	free(sec);
	free(d);
}

TEST(fixture_files_check)
{
	const char *root = getenv("STOCKADE_ROOT");
	char *p = st_xasprintf("%s/tests/data/config/legacy.yaml", root ? root : ".");
	if (access(p, R_OK) != 0) {
		free(p);
		UNIT_SKIP("fixtures not found (set STOCKADE_ROOT)");
	}
	clean_env();
	struct stockade_config cfg;
	struct config_problems pr;
	config_problems_init(&pr);
	CHECK(config_load(p, &cfg, &pr, NULL) == -EINVAL);
	CHECK(config_problems_count(&pr, CONFIG_ERROR) >= 6);
	config_problems_release(&pr);
	struct st_error *err = NULL;
	CHECK(config_load("/nonexistent/stockade.yaml", &cfg, &pr, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "/nonexistent/stockade.yaml");
	st_error_free(err);
	free(p);
}

TEST(command_line_overrides)
{
	clean_env();
	struct stockade_config cfg;
	struct config_problems pr;
	config_problems_init(&pr);
	CHECK(config_load(NULL, &cfg, &pr, NULL) == 0);
	struct st_error *err = NULL;
	CHECK(config_apply_overrides(&cfg, "[::1]:9123", "/srv/st", &err) == 0);
	CHECK_STREQ(cfg.listen_host, "::1");
	CHECK_EQ_INT(cfg.listen_port, 9123);
	CHECK_STREQ(cfg.data_dir, "/srv/st");
	CHECK_STREQ(cfg.sqlite_path, "/srv/st/stockade.db");
	CHECK_STREQ(cfg.rr.git_blob.filesystem.path, "/srv/st/blobs");
	CHECK_STREQ(cfg.rr.agent_sandbox.sandbox.workspace_dir, "/srv/st/sandboxes");
	CHECK(config_apply_overrides(&cfg, "nonsense", NULL, &err) == -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "host:port");
	st_error_free(err);
	config_release(&cfg);
	config_problems_release(&pr);
}

TEST(postgres_url_forms)
{
	struct stockade_config cfg;
	struct config_problems pr;
	CHECK(load(BASE
	           "postgresql: {url: \"postgres://app:s3cret@db:5432/app?sslmode=require\"}\n",
	           &cfg, &pr) == 0);
	char *ci = config_backend_pg_conninfo(&cfg);
	CHECK_CONTAINS(ci, "dbname='postgres://app:s3cret@db:5432/app?sslmode=require'");
	char *u = config_pg_display_url(&cfg.postgresql);
	CHECK_STREQ(u, "postgres://app:<redacted>@db:5432/app?sslmode=require");
	/* the agent sandbox inherits the URL with its own schema */
	char *ai = config_agent_sandbox_pg_conninfo(&cfg);
	CHECK_CONTAINS(ai, "search_path=agent_executor");
	free(ci);
	free(u);
	free(ai);
	config_release(&cfg);
	config_problems_release(&pr);
	CHECK(load(BASE "postgresql: {url: \"mysql://x\"}\n", &cfg, &pr) == -EINVAL);
	CHECK(has(&pr, CONFIG_ERROR, "postgresql.url", "postgres://"));
	config_problems_release(&pr);
	/* an empty ENCRYPTION_KEY is unset, not an empty key */
	clean_env();
	setenv("ENCRYPTION_KEY", "", 1);
	CHECK(load_env(BASE, &cfg, &pr) == 0);
	CHECK(cfg.encryption_key == NULL);
	config_release(&cfg);
	config_problems_release(&pr);
}
