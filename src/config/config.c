/*
 * config.c - the configuration object: defaults, the load pipeline, problems, JSON view,
 * Postgres conninfo strings and API token checks.
 *
 * Ownership: every string in struct stockade_config is heap-owned by it and freed by
 * config_release; secrets are wiped before they are freed. After config_load returns the
 * struct is read-only (config_ensure_dev_secrets is the one later writer, called once at start
 * before any thread reads it).
 */
#include "config/config-internal.h"

#include <limits.h>
#include <sys/stat.h>

#include "crypto/crypto.h"

/* ---- small helpers ------------------------------------------------------------------------ */

void config__set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = v ? st_xstrdup(v) : NULL;
}

void config__strv_push(struct config_strv *s, const char *v)
{
	char **nv = realloc(s->v, (s->n + 1) * sizeof(*nv));
	if (nv == NULL)
		abort();
	s->v = nv;
	s->v[s->n++] = st_xstrdup(v);
}

void config__strv_release(struct config_strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

void config__strv_copy(struct config_strv *dst, const struct config_strv *src)
{
	config__strv_release(dst);
	for (size_t i = 0; i < src->n; i++)
		config__strv_push(dst, src->v[i]);
}

static void free_secret(char **s)
{
	crypto_free_secret(*s);
	*s = NULL;
}

void config__blob_release(struct config_blob *b)
{
	free(b->source);
	free(b->prefix);
	free(b->filesystem.path);
	free(b->s3.bucket);
	free(b->s3.region);
	free(b->s3.access_key_id);
	free_secret(&b->s3.secret_access_key);
	free_secret(&b->s3.session_token);
	free(b->s3.endpoint);
	free(b->gcs.bucket);
	free(b->gcs.hmac_access_key);
	free_secret(&b->gcs.hmac_secret);
	free(b->gcs.endpoint);
	free_secret(&b->azure.connection_string);
	free(b->azure.account_name);
	free_secret(&b->azure.account_key);
	free(b->azure.container);
	free(b->azure.endpoint);
	memset(b, 0, sizeof(*b));
}

static char *dup_or_null(const char *s)
{
	return s ? st_xstrdup(s) : NULL;
}

void config__blob_copy(struct config_blob *dst, const struct config_blob *src)
{
	config__blob_release(dst);
	dst->provider = src->provider;
	dst->source = dup_or_null(src->source);
	dst->prefix = dup_or_null(src->prefix);
	dst->filesystem.path = dup_or_null(src->filesystem.path);
	dst->s3.bucket = dup_or_null(src->s3.bucket);
	dst->s3.region = dup_or_null(src->s3.region);
	dst->s3.access_key_id = dup_or_null(src->s3.access_key_id);
	dst->s3.secret_access_key = dup_or_null(src->s3.secret_access_key);
	dst->s3.session_token = dup_or_null(src->s3.session_token);
	dst->s3.endpoint = dup_or_null(src->s3.endpoint);
	dst->s3.force_path_style = src->s3.force_path_style;
	dst->gcs.bucket = dup_or_null(src->gcs.bucket);
	dst->gcs.hmac_access_key = dup_or_null(src->gcs.hmac_access_key);
	dst->gcs.hmac_secret = dup_or_null(src->gcs.hmac_secret);
	dst->gcs.endpoint = dup_or_null(src->gcs.endpoint);
	dst->azure.connection_string = dup_or_null(src->azure.connection_string);
	dst->azure.account_name = dup_or_null(src->azure.account_name);
	dst->azure.account_key = dup_or_null(src->azure.account_key);
	dst->azure.container = dup_or_null(src->azure.container);
	dst->azure.endpoint = dup_or_null(src->azure.endpoint);
}

void config__pg_release(struct config_postgres *pg)
{
	free(pg->host);
	free(pg->db);
	free(pg->user);
	free_secret(&pg->password);
	free(pg->sslmode);
	free_secret(&pg->url);
	free(pg->schema);
	memset(pg, 0, sizeof(*pg));
}

void config__pg_copy(struct config_postgres *dst, const struct config_postgres *src)
{
	config__pg_release(dst);
	dst->present = src->present;
	dst->host = dup_or_null(src->host);
	dst->port = src->port;
	dst->db = dup_or_null(src->db);
	dst->user = dup_or_null(src->user);
	dst->password = dup_or_null(src->password);
	dst->ssl_enabled = src->ssl_enabled;
	dst->sslmode = dup_or_null(src->sslmode);
	dst->url = dup_or_null(src->url);
	dst->schema = dup_or_null(src->schema);
	dst->inherited = src->inherited;
}

void config__pending_release(struct config__pending *p)
{
	free(p->encryption_key_file);
	free(p->jwt_secret_file);
	free(p->as_jwt_public_key_file);
	free(p->as_jwt_private_key_file);
	free(p->as_encryption_key_file);
	free(p->as_api_secret_file);
	free(p->encryption_key_origin);
	free(p->jwt_secret_origin);
	free(p->as_jwt_public_key_origin);
	free(p->as_jwt_private_key_origin);
	free(p->as_encryption_key_origin);
	free(p->as_api_secret_origin);
	for (size_t i = 0; i < p->api_tokens.n; i++)
		crypto_wipe(p->api_tokens.v[i], strlen(p->api_tokens.v[i]));
	config__strv_release(&p->api_tokens);
	config__pg_release(&p->as_pg);
	memset(p, 0, sizeof(*p));
}

const char *config_exec_mode_name(enum config_exec_mode m)
{
	switch (m) {
	case CONFIG_MODE_PRIVILEGED: return "privileged";
	case CONFIG_MODE_SECCOMP: return "seccomp";
	case CONFIG_MODE_UNSANDBOXED: return "unsandboxed";
	default: return "?";
	}
}

const char *config_blob_provider_name(enum config_blob_provider p)
{
	switch (p) {
	case CONFIG_BLOB_NONE: return "none";
	case CONFIG_BLOB_FILESYSTEM: return "filesystem";
	case CONFIG_BLOB_S3: return "s3";
	case CONFIG_BLOB_GCS: return "gcs";
	case CONFIG_BLOB_AZURE: return "azure";
	default: return "?";
	}
}

/* ---- problems ----------------------------------------------------------------------------- */

void config_problems_init(struct config_problems *p)
{
	memset(p, 0, sizeof(*p));
}

void config_problems_release(struct config_problems *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->items[i].key_path);
		free(p->items[i].message);
	}
	free(p->items);
	memset(p, 0, sizeof(*p));
}

void config_problems_add(struct config_problems *p, enum config_severity sev, const char *key_path,
                         const char *fmt, ...)
{
	if (p == NULL)
		return;
	if (p->n == p->cap) {
		size_t nc = p->cap ? p->cap * 2 : 8;
		struct config_problem *ni = realloc(p->items, nc * sizeof(*ni));
		if (ni == NULL)
			abort();
		p->items = ni;
		p->cap = nc;
	}
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		abort();
	va_end(ap);
	p->items[p->n].severity = sev;
	p->items[p->n].key_path = st_xstrdup(key_path ? key_path : "");
	p->items[p->n].message = msg;
	p->n++;
}

size_t config_problems_count(const struct config_problems *p, enum config_severity sev)
{
	size_t c = 0;
	for (size_t i = 0; p && i < p->n; i++)
		if (p->items[i].severity == sev)
			c++;
	return c;
}

void config_problems_print(const struct config_problems *p, FILE *f)
{
	for (int pass = 0; pass < 2; pass++) {
		enum config_severity want = pass == 0 ? CONFIG_ERROR : CONFIG_WARNING;
		for (size_t i = 0; i < p->n; i++) {
			const struct config_problem *it = &p->items[i];
			if (it->severity != want)
				continue;
			fprintf(f, "%s: %s%s%s\n", want == CONFIG_ERROR ? "error" : "warning",
			        it->key_path, *it->key_path ? ": " : "", it->message);
		}
	}
}

json_t *config_problems_to_json(const struct config_problems *p)
{
	json_t *a = json_array();
	for (size_t i = 0; i < p->n; i++)
		json_array_append_new(
		    a, json_pack("{s:s, s:s, s:s}", "severity",
		                 p->items[i].severity == CONFIG_ERROR ? "error" : "warning", "key",
		                 p->items[i].key_path, "message", p->items[i].message));
	return a;
}

const struct config_problem *config_problems_find(const struct config_problems *p,
                                                  const char *key_path)
{
	for (size_t i = 0; p && i < p->n; i++)
		if (strcmp(p->items[i].key_path, key_path) == 0)
			return &p->items[i];
	return NULL;
}

/* ---- defaults ----------------------------------------------------------------------------- */

void config__exec_limits_defaults(struct config_exec_limits *l)
{
	l->default_timeout_ms = 10000;
	l->max_timeout_ms = 120000;
	l->default_memory_mb = 256;
	l->max_memory_mb = 1024;
	l->max_pids = 64;
	l->max_code_bytes = 1u << 20;
	l->max_params_bytes = 8u << 20;
	l->max_result_bytes = 8u << 20;
	l->max_output_bytes = 1u << 20;
	l->tmpfs_mb = 64;
	l->queue_size = 64;
	l->concurrency = 0;
}

/* lib/js/node_modules of the source tree the binary was built in, else the packaged path. */
static char *default_js_modules_dir(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			char *cand = st_xasprintf("%s/../lib/js/node_modules", exe);
			char real[PATH_MAX];
			struct stat st;
			if (realpath(cand, real) && stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
				free(cand);
				return st_xstrdup(real);
			}
			free(cand);
		}
	}
	return st_xstrdup("/usr/share/stockade/js/node_modules");
}

void config_init_defaults(struct stockade_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->dev_mode = true;
	cfg->listen = st_xstrdup("127.0.0.1:8080");
	cfg->listen_host = st_xstrdup("127.0.0.1");
	cfg->listen_port = 8080;
	cfg->data_dir = st_xstrdup("./data");
	cfg->log_level = CONFIG_LOG_INFO;

	cfg->http.max_body_bytes = 16u << 20;
	cfg->http.threads = 0;
	cfg->http.connection_limit = 256;
	cfg->http.request_timeout_ms = 30000;

	struct config_code_executor *ce = &cfg->code_executor;
	ce->enabled = true;
	ce->mode = geteuid() == 0 ? CONFIG_MODE_PRIVILEGED : CONFIG_MODE_SECCOMP;
	config__exec_limits_defaults(&ce->limits);
	static const char *mods[] = {"json",        "math",  "re",    "datetime",
	                             "collections", "numpy", "pandas"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(mods); i++)
		config__strv_push(&ce->python_modules, mods[i]);
	ce->js_modules_dir = default_js_modules_dir();

	struct config_rr *rr = &cfg->rr;
	/* The embedded default runs every component (SPEC §2: nothing else to start); a config
	 * file starts from rr.enabled: false as the chart does (config__parse_yaml). */
	rr->enabled = true;
	rr->js_executor.enabled_setting = CONFIG_UNSET;
	rr->js_executor.mode = ce->mode == CONFIG_MODE_UNSANDBOXED ? CONFIG_MODE_SECCOMP : ce->mode;
	config__exec_limits_defaults(&rr->js_executor.limits);
	rr->js_executor.js_modules_dir = st_xstrdup(ce->js_modules_dir);
	rr->js_executor.max_function_versions = 20;

	struct config_agent_sandbox *as = &rr->agent_sandbox;
	as->enabled_setting = CONFIG_UNSET;
	as->runtime = CONFIG_RUNTIME_GVISOR;
	as->platform = CONFIG_PLATFORM_SYSTRAP;
	as->runsc_path = st_xstrdup("runsc");
	as->proxy.egress_enabled = true;
	static const char *cidrs[] = {
	    "0.0.0.0/8",     "10.0.0.0/8",     "100.64.0.0/10", "127.0.0.0/8",  "169.254.0.0/16",
	    "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4",   "240.0.0.0/4",  "::1/128",
	    "fc00::/7",      "fe80::/10",      "ff00::/8",      "::ffff:0:0/96"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(cidrs); i++)
		config__strv_push(&as->proxy.blocked_cidrs, cidrs[i]);
	as->sandbox.idle_timeout_ms = 600000;
	as->sandbox.global_lifetime_ms = 9000000;
	as->sandbox.ready_timeout_ms = 30000;
	as->sandbox.exec_timeout_ms = 300000;
	as->sandbox.workspace_size_mb = 1024;
	as->sandbox.memory_mb = 1024;
	as->sandbox.cpus = 1.0;
	as->sandbox.pids = 512;
	as->sandbox.max_file_bytes = 100u << 20;
	as->scaling.prewarm_pool_size = 5;
	as->scaling.max_total_jobs = 50;
	as->scaling.max_concurrent_creates = 3;
	as->scaling.per_user_sandbox_limit = 5;
	as->tokens.token_ttl_s = 900;
	as->tokens.issuer = st_xstrdup("stockade-agent-sandbox");

	rr->git_server.enabled_setting = CONFIG_UNSET;
	rr->git_server.max_push_bytes = 512u << 20;

	cfg->mcp.enabled = true; /* embedded mode: dev static token (config_ensure_dev_secrets) */
	cfg->mcp.jwks_cache_s = 300;
	config__strv_push(&cfg->mcp.scopes_supported, "execute");
	config__strv_push(&cfg->mcp.scopes_supported, "sandbox:read");
	config__strv_push(&cfg->mcp.scopes_supported, "sandbox:write");

	config__derive(cfg, NULL);
}

void config_release(struct stockade_config *cfg)
{
	free(cfg->source_path);
	free(cfg->listen);
	free(cfg->listen_host);
	free(cfg->data_dir);
	free_secret(&cfg->encryption_key);
	free_secret(&cfg->jwt_secret);
	if (cfg->api_token_hashes)
		crypto_wipe(cfg->api_token_hashes, cfg->n_api_tokens * 32);
	free(cfg->api_token_hashes);
	config__pg_release(&cfg->postgresql);
	free(cfg->sqlite_path);
	free(cfg->http.public_url);

	config__strv_release(&cfg->code_executor.python_modules);
	free(cfg->code_executor.js_modules_dir);

	struct config_rr *rr = &cfg->rr;
	free(rr->js_executor.js_modules_dir);
	struct config_agent_sandbox *as = &rr->agent_sandbox;
	free(as->runsc_path);
	free(as->rootfs);
	free(as->external_secret_name);
	free(as->external_secret_mount_path);
	free_secret(&as->jwt_public_key_pem);
	free_secret(&as->jwt_private_key_pem);
	free_secret(&as->encryption_key_hex);
	crypto_wipe(as->encryption_key, sizeof(as->encryption_key));
	free_secret(&as->api_secret);
	config__pg_release(&as->postgres);
	config__strv_release(&as->proxy.backend_domain_suffixes);
	config__strv_release(&as->proxy.allowed_domains);
	config__strv_release(&as->proxy.blocked_cidrs);
	free(as->sandbox.workspace_dir);
	free(as->tokens.issuer);
	config__blob_release(&rr->blob_storage);
	config__blob_release(&rr->git_blob);
	config__blob_release(&rr->snapshots_blob);

	struct config_mcp *m = &cfg->mcp;
	free(m->resource);
	config__strv_release(&m->authorization_servers);
	free(m->issuer);
	free(m->audience);
	free(m->jwks_file);
	free(m->jwks_url);
	config__strv_release(&m->scopes_supported);
	config__strv_release(&m->required_scopes);
	free_secret(&m->static_token);
	memset(cfg, 0, sizeof(*cfg));
}

/* ---- load --------------------------------------------------------------------------------- */

static int load_common(const char *yaml, size_t len, const char *name, const char *path,
                       struct stockade_config *cfg, struct config_problems *problems)
{
	struct config_problems local;
	struct config__pending pend;
	memset(&pend, 0, sizeof(pend));
	if (problems == NULL) {
		config_problems_init(&local);
		problems = &local;
	}
	size_t errors_before = config_problems_count(problems, CONFIG_ERROR);
	config_init_defaults(cfg);
	if (yaml) {
		cfg->dev_mode = false;
		cfg->rr.enabled = false;
		cfg->mcp.enabled = false;
		cfg->source_path = path ? st_xstrdup(path) : NULL;
		/* Paths derived from the default dataDir are derived again from the file's. */
		config__set_str(&cfg->rr.agent_sandbox.sandbox.workspace_dir, NULL);
		if (config__parse_yaml(yaml, len, name, cfg, &pend, problems) < 0)
			goto out; /* syntax error: nothing else is meaningful */
	}
	config__apply_env(cfg, &pend, problems);
	config__resolve_secrets(cfg, &pend, problems);
	config__derive(cfg, &pend);
	config__resolve_blobs(cfg, problems);
	config__validate(cfg, &pend, problems);
out:
	config__pending_release(&pend);
	size_t errors = config_problems_count(problems, CONFIG_ERROR) - errors_before;
	if (problems == &local)
		config_problems_release(&local);
	if (errors) {
		config_release(cfg);
		return -EINVAL;
	}
	return 0;
}

int config_load(const char *path, struct stockade_config *cfg, struct config_problems *problems,
                struct st_error **err)
{
	if (path == NULL)
		return load_common(NULL, 0, NULL, NULL, cfg, problems);
	char *text = NULL;
	size_t len = 0;
	int rc = st_read_file(path, 4u << 20, &text, &len, err);
	if (rc < 0) {
		memset(cfg, 0, sizeof(*cfg));
		return st_error_wrap(err, "cannot read config file '%s'", path);
	}
	rc = load_common(text, len, path, path, cfg, problems);
	free(text);
	return rc;
}

int config_load_string(const char *yaml, size_t len, const char *name, struct stockade_config *cfg,
                       struct config_problems *problems, struct st_error **err)
{
	(void)err;
	return load_common(yaml ? yaml : "", yaml ? len : 0, name ? name : "<string>", NULL, cfg,
	                   problems);
}

int config_apply_overrides(struct stockade_config *cfg, const char *listen, const char *data_dir,
                           struct st_error **err)
{
	if (data_dir && *data_dir == '\0')
		return st_error_make(err, EINVAL, "--data-dir must not be empty");
	if (data_dir) {
		char *old_ws = config__default_workspace_dir(cfg);
		char *old_blobs = config_data_path(cfg, "blobs");
		config__set_str(&cfg->data_dir, data_dir);
		char *ws = cfg->rr.agent_sandbox.sandbox.workspace_dir;
		if (ws && strcmp(ws, old_ws) == 0)
			config__set_str(&cfg->rr.agent_sandbox.sandbox.workspace_dir, NULL);
		struct config_blob *bl[] = {&cfg->rr.git_blob, &cfg->rr.snapshots_blob};
		for (size_t i = 0; i < ST_ARRAY_SIZE(bl); i++)
			if (bl[i]->provider == CONFIG_BLOB_FILESYSTEM && bl[i]->filesystem.path &&
			    strcmp(bl[i]->filesystem.path, old_blobs) == 0) {
				free(bl[i]->filesystem.path);
				bl[i]->filesystem.path = config_data_path(cfg, "blobs");
			}
		free(old_ws);
		free(old_blobs);
	}
	if (listen)
		config__set_str(&cfg->listen, listen);
	/* re-derive without touching Postgres inheritance (pending data is gone) */
	free(cfg->sqlite_path);
	cfg->sqlite_path = cfg->postgresql.present ? NULL : config_data_path(cfg, "stockade.db");
	if (!cfg->rr.agent_sandbox.sandbox.workspace_dir)
		cfg->rr.agent_sandbox.sandbox.workspace_dir = config__default_workspace_dir(cfg);
	if (listen) {
		struct config_problems pr;
		config_problems_init(&pr);
		config__parse_listen(cfg, &pr);
		int rc = 0;
		if (pr.n)
			rc = st_error_make(err, EINVAL, "--listen %s", pr.items[0].message);
		config_problems_release(&pr);
		return rc;
	}
	return 0;
}

/* ---- tokens, paths, conninfo -------------------------------------------------------------- */

bool config_api_token_valid(const struct stockade_config *cfg, const char *token)
{
	if (token == NULL || *token == '\0')
		return false;
	uint8_t h[32];
	crypto_sha256(token, strlen(token), h);
	bool ok = false;
	/* check every entry so timing does not reveal which one matched */
	for (size_t i = 0; i < cfg->n_api_tokens; i++)
		ok |= crypto_equal(h, cfg->api_token_hashes[i], 32);
	return ok;
}

char *config__path_near(const struct stockade_config *cfg, const char *path)
{
	if (path[0] == '/' || cfg->source_path == NULL || strchr(cfg->source_path, '/') == NULL)
		return st_xstrdup(path);
	const char *slash = strrchr(cfg->source_path, '/');
	return st_xasprintf("%.*s/%s", (int)(slash - cfg->source_path), cfg->source_path, path);
}

char *config_data_path(const struct stockade_config *cfg, const char *name)
{
	return st_xasprintf("%s/%s", cfg->data_dir, name);
}

/*
 * Sandbox state holds the agents' unix sockets, whose paths must fit sun_path (108 bytes) with
 * room for the sandbox id and socket name. When <dataDir>/sandboxes is too long for that, the
 * default moves to a short directory named after the data dir (same data dir, same place).
 */
char *config__default_workspace_dir(const struct stockade_config *cfg)
{
	char *p = config_data_path(cfg, "sandboxes");
	if (strlen(p) <= 40)
		return p;
	uint8_t h[CRYPTO_SHA256_BYTES];
	crypto_sha256(p, strlen(p), h);
	free(p);
	const char *base = geteuid() == 0 ? "/run/stockade" : "/tmp/stockade";
	return st_xasprintf("%s/sbx-%02x%02x%02x%02x", base, h[0], h[1], h[2], h[3]);
}

/* libpq conninfo value quoting: single quotes, backslash-escaped ' and \. */
static void conn_kv(struct st_buf *b, const char *k, const char *v)
{
	if (v == NULL || *v == '\0')
		return;
	st_buf_appendf(b, "%s%s='", b->len ? " " : "", k);
	for (const char *p = v; *p; p++) {
		if (*p == '\'' || *p == '\\')
			st_buf_append(b, "\\", 1);
		st_buf_append(b, p, 1);
	}
	st_buf_append(b, "'", 1);
}

static char *pg_conninfo(const struct config_postgres *pg)
{
	if (!pg->present)
		return NULL;
	struct st_buf b;
	st_buf_init(&b, 1u << 16);
	if (pg->url) {
		/* libpq accepts a URL as dbname and merges the other keywords */
		conn_kv(&b, "dbname", pg->url);
	} else {
		char port[16];
		snprintf(port, sizeof(port), "%u", pg->port);
		conn_kv(&b, "host", pg->host);
		conn_kv(&b, "port", port);
		conn_kv(&b, "dbname", pg->db);
		conn_kv(&b, "user", pg->user);
		conn_kv(&b, "password", pg->password);
	}
	const char *sslmode = pg->sslmode;
	if (sslmode == NULL && pg->ssl_enabled)
		sslmode = "require"; /* encrypted; "no-verify" = require without verify-ca/full */
	if (sslmode && strcmp(sslmode, "no-verify") == 0)
		sslmode = "require";
	conn_kv(&b, "sslmode", sslmode);
	if (pg->schema) {
		char *opt = st_xasprintf("-csearch_path=%s", pg->schema);
		conn_kv(&b, "options", opt);
		free(opt);
	}
	conn_kv(&b, "application_name", "stockade");
	return st_buf_steal(&b);
}

char *config_backend_pg_conninfo(const struct stockade_config *cfg)
{
	return pg_conninfo(&cfg->postgresql);
}

char *config_agent_sandbox_pg_conninfo(const struct stockade_config *cfg)
{
	return pg_conninfo(&cfg->rr.agent_sandbox.postgres);
}

char *config_pg_display_url(const struct config_postgres *pg)
{
	if (!pg->present)
		return NULL;
	if (pg->url) {
		/* hide a password in postgres://user:pass@host */
		const char *at = strchr(pg->url, '@');
		const char *scheme = strstr(pg->url, "://");
		const char *colon = scheme ? strchr(scheme + 3, ':') : NULL;
		if (at && colon && colon < at)
			return st_xasprintf("%.*s:<redacted>%s", (int)(colon - pg->url), pg->url,
			                    at);
		return st_xstrdup(pg->url);
	}
	const char *mode = pg->sslmode       ? pg->sslmode
	                   : pg->ssl_enabled ? (pg->inherited ? "no-verify" : "require")
	                                     : "disable";
	return st_xasprintf("postgres://%s%s@%s:%u/%s?sslmode=%s&schema=%s",
	                    pg->user ? pg->user : "", pg->password ? ":<redacted>" : "",
	                    pg->host ? pg->host : "", pg->port, pg->db ? pg->db : "", mode,
	                    pg->schema ? pg->schema : "public");
}

/* ---- JSON view ---------------------------------------------------------------------------- */

static json_t *jstr(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *jsecret(const char *s, bool redact)
{
	if (s == NULL)
		return json_null();
	return json_string(redact ? "<redacted>" : s);
}

static json_t *jstrv(const struct config_strv *v)
{
	json_t *a = json_array();
	for (size_t i = 0; i < v->n; i++)
		json_array_append_new(a, json_string(v->v[i]));
	return a;
}

static json_t *jtri(enum config_tristate t)
{
	return t == CONFIG_UNSET ? json_null() : json_boolean(t == CONFIG_TRUE);
}

static json_t *limits_json(const struct config_exec_limits *l)
{
	return json_pack(
	    "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "defaultTimeoutMs",
	    (json_int_t)l->default_timeout_ms, "maxTimeoutMs", (json_int_t)l->max_timeout_ms,
	    "defaultMemoryMb", (json_int_t)l->default_memory_mb, "maxMemoryMb",
	    (json_int_t)l->max_memory_mb, "maxPids", (json_int_t)l->max_pids, "maxCodeBytes",
	    (json_int_t)l->max_code_bytes, "maxParamsBytes", (json_int_t)l->max_params_bytes,
	    "maxResultBytes", (json_int_t)l->max_result_bytes, "maxOutputBytes",
	    (json_int_t)l->max_output_bytes, "tmpfsMb", (json_int_t)l->tmpfs_mb, "queueSize",
	    (json_int_t)l->queue_size, "concurrency", (json_int_t)l->concurrency);
}

static json_t *pg_json(const struct config_postgres *pg, bool redact)
{
	if (!pg->present)
		return json_null();
	json_t *o = json_object();
	json_object_set_new(o, "host", jstr(pg->host));
	json_object_set_new(o, "port", json_integer(pg->port));
	json_object_set_new(o, "db", jstr(pg->db));
	json_object_set_new(o, "user", jstr(pg->user));
	json_object_set_new(o, "password", jsecret(pg->password, redact));
	json_object_set_new(o, "ssl_enabled", json_boolean(pg->ssl_enabled));
	json_object_set_new(o, "sslmode", jstr(pg->sslmode));
	json_object_set_new(o, "url", jsecret(pg->url, redact));
	json_object_set_new(o, "schema", jstr(pg->schema));
	json_object_set_new(o, "inherited", json_boolean(pg->inherited));
	char *u = config_pg_display_url(pg);
	json_object_set_new(o, "effectiveUrl", jstr(u));
	free(u);
	return o;
}

static json_t *blob_json(const struct config_blob *b, bool redact)
{
	json_t *o = json_object();
	json_object_set_new(o, "provider", json_string(config_blob_provider_name(b->provider)));
	json_object_set_new(o, "source", jstr(b->source));
	json_object_set_new(o, "prefix", jstr(b->prefix));
	switch (b->provider) {
	case CONFIG_BLOB_FILESYSTEM:
		json_object_set_new(o, "filesystem",
		                    json_pack("{s:o}", "path", jstr(b->filesystem.path)));
		break;
	case CONFIG_BLOB_S3:
		json_object_set_new(
		    o, "s3",
		    json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:b}", "bucket", jstr(b->s3.bucket),
		              "region", jstr(b->s3.region), "accessKeyId",
		              jstr(b->s3.access_key_id), "secretAccessKey",
		              jsecret(b->s3.secret_access_key, redact), "sessionToken",
		              jsecret(b->s3.session_token, redact), "endpoint",
		              jstr(b->s3.endpoint), "forcePathStyle", b->s3.force_path_style));
		break;
	case CONFIG_BLOB_GCS:
		json_object_set_new(o, "gcs",
		                    json_pack("{s:o, s:o, s:o, s:o}", "bucket", jstr(b->gcs.bucket),
		                              "hmacAccessKey", jstr(b->gcs.hmac_access_key),
		                              "hmacSecret", jsecret(b->gcs.hmac_secret, redact),
		                              "endpoint", jstr(b->gcs.endpoint)));
		break;
	case CONFIG_BLOB_AZURE:
		json_object_set_new(o, "azure",
		                    json_pack("{s:o, s:o, s:o, s:o, s:o}", "connectionString",
		                              jsecret(b->azure.connection_string, redact),
		                              "accountName", jstr(b->azure.account_name),
		                              "accountKey", jsecret(b->azure.account_key, redact),
		                              "container", jstr(b->azure.container), "endpoint",
		                              jstr(b->azure.endpoint)));
		break;
	case CONFIG_BLOB_NONE:
	default: break;
	}
	return o;
}

static const char *log_level_name(enum config_log_level l)
{
	switch (l) {
	case CONFIG_LOG_DEBUG: return "debug";
	case CONFIG_LOG_INFO: return "info";
	case CONFIG_LOG_WARN: return "warn";
	case CONFIG_LOG_ERROR: return "error";
	default: return "info";
	}
}

json_t *config_to_json(const struct stockade_config *cfg, bool redact)
{
	json_t *o = json_object();
	json_object_set_new(o, "source", jstr(cfg->source_path));
	json_object_set_new(o, "devMode", json_boolean(cfg->dev_mode));
	json_object_set_new(o, "listen", jstr(cfg->listen));
	json_object_set_new(o, "dataDir", jstr(cfg->data_dir));
	json_object_set_new(o, "logLevel", json_string(log_level_name(cfg->log_level)));
	json_object_set_new(o, "encryptionKey", jsecret(cfg->encryption_key, redact));
	json_object_set_new(o, "jwtSecret", jsecret(cfg->jwt_secret, redact));
	json_object_set_new(o, "apiTokens",
	                    json_pack("{s:I, s:s}", "count", (json_int_t)cfg->n_api_tokens,
	                              "stored", "sha256 hashes only"));
	json_object_set_new(o, "postgresql", pg_json(&cfg->postgresql, redact));
	json_object_set_new(o, "sqlitePath", jstr(cfg->sqlite_path));
	json_object_set_new(o, "http",
	                    json_pack("{s:I, s:I, s:I, s:I, s:o}", "maxBodyBytes",
	                              (json_int_t)cfg->http.max_body_bytes, "threads",
	                              (json_int_t)cfg->http.threads, "connectionLimit",
	                              (json_int_t)cfg->http.connection_limit, "requestTimeoutMs",
	                              (json_int_t)cfg->http.request_timeout_ms, "publicUrl",
	                              jstr(cfg->http.public_url)));

	const struct config_code_executor *ce = &cfg->code_executor;
	json_object_set_new(o, "codeExecutor",
	                    json_pack("{s:b, s:s, s:o, s:o, s:o}", "enabled", ce->enabled, "mode",
	                              config_exec_mode_name(ce->mode), "limits",
	                              limits_json(&ce->limits), "pythonModules",
	                              jstrv(&ce->python_modules), "jsModulesDir",
	                              jstr(ce->js_modules_dir)));

	const struct config_rr *rr = &cfg->rr;
	json_t *r = json_object();
	json_object_set_new(r, "enabled", json_boolean(rr->enabled));
	const struct config_js_executor *js = &rr->js_executor;
	json_object_set_new(
	    r, "jsExecutor",
	    json_pack("{s:o, s:b, s:s, s:o, s:o, s:I}", "enabled", jtri(js->enabled_setting),
	              "effectiveEnabled", js->enabled, "mode", config_exec_mode_name(js->mode),
	              "limits", limits_json(&js->limits), "jsModulesDir", jstr(js->js_modules_dir),
	              "maxFunctionVersions", (json_int_t)js->max_function_versions));
	const struct config_agent_sandbox *as = &rr->agent_sandbox;
	static const char *platforms[] = {"systrap", "ptrace", "kvm"};
	json_t *a = json_object();
	json_object_set_new(a, "enabled", jtri(as->enabled_setting));
	json_object_set_new(a, "effectiveEnabled", json_boolean(as->enabled));
	json_object_set_new(a, "runtime",
	                    json_string(as->runtime == CONFIG_RUNTIME_GVISOR ? "gvisor" : "jail"));
	json_object_set_new(a, "platform", json_string(platforms[as->platform]));
	json_object_set_new(a, "runscPath", jstr(as->runsc_path));
	json_object_set_new(a, "rootfs", jstr(as->rootfs));
	json_object_set_new(a, "externalSecret",
	                    json_pack("{s:o, s:o}", "name", jstr(as->external_secret_name),
	                              "mountPath", jstr(as->external_secret_mount_path)));
	json_object_set_new(a, "jwtPublicKey", jstr(as->jwt_public_key_pem));
	json_object_set_new(a, "jwtPrivateKey", jsecret(as->jwt_private_key_pem, redact));
	json_object_set_new(a, "encryptionKey", jsecret(as->encryption_key_hex, redact));
	json_object_set_new(a, "apiSecret", jsecret(as->api_secret, redact));
	json_object_set_new(a, "postgres", pg_json(&as->postgres, redact));
	json_object_set_new(a, "proxy",
	                    json_pack("{s:o, s:o, s:o, s:b}", "backendDomainSuffixes",
	                              jstrv(&as->proxy.backend_domain_suffixes), "allowedDomains",
	                              jstrv(&as->proxy.allowed_domains), "blockedCidrs",
	                              jstrv(&as->proxy.blocked_cidrs), "egressEnabled",
	                              as->proxy.egress_enabled));
	json_object_set_new(
	    a, "sandbox",
	    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:o}", "sandboxIdleTimeoutMs",
	              (json_int_t)as->sandbox.idle_timeout_ms, "sandboxGlobalLifetimeMs",
	              (json_int_t)as->sandbox.global_lifetime_ms, "sandboxReadyTimeoutMs",
	              (json_int_t)as->sandbox.ready_timeout_ms, "execTimeoutMs",
	              (json_int_t)as->sandbox.exec_timeout_ms, "workspaceSizeMb",
	              (json_int_t)as->sandbox.workspace_size_mb, "memoryMb",
	              (json_int_t)as->sandbox.memory_mb, "cpus", as->sandbox.cpus, "pids",
	              (json_int_t)as->sandbox.pids, "maxFileBytes",
	              (json_int_t)as->sandbox.max_file_bytes, "workspaceDir",
	              jstr(as->sandbox.workspace_dir)));
	json_object_set_new(
	    a, "scaling",
	    json_pack("{s:I, s:I, s:I, s:I}", "prewarmPoolSize",
	              (json_int_t)as->scaling.prewarm_pool_size, "maxTotalJobs",
	              (json_int_t)as->scaling.max_total_jobs, "maxConcurrentCreates",
	              (json_int_t)as->scaling.max_concurrent_creates, "perUserSandboxLimit",
	              (json_int_t)as->scaling.per_user_sandbox_limit));
	json_object_set_new(a, "tokens",
	                    json_pack("{s:I, s:o}", "ttlSeconds",
	                              (json_int_t)as->tokens.token_ttl_s, "issuer",
	                              jstr(as->tokens.issuer)));
	json_object_set_new(a, "snapshotsEnabled", json_boolean(as->snapshots_enabled));
	json_object_set_new(r, "agentSandbox", a);
	json_object_set_new(r, "gitServer",
	                    json_pack("{s:o, s:b, s:b, s:I}", "enabled",
	                              jtri(rr->git_server.enabled_setting), "effectiveEnabled",
	                              rr->git_server.enabled, "skipBlobStorageValidation",
	                              rr->git_server.skip_blob_storage_validation, "maxPushBytes",
	                              (json_int_t)rr->git_server.max_push_bytes));
	json_object_set_new(r, "blobStorage", blob_json(&rr->blob_storage, redact));
	json_object_set_new(r, "effectiveBlobStorage",
	                    json_pack("{s:o, s:o}", "git", blob_json(&rr->git_blob, redact),
	                              "snapshots", blob_json(&rr->snapshots_blob, redact)));
	json_object_set_new(o, "rr", r);

	const struct config_mcp *m = &cfg->mcp;
	json_t *oauth = json_object();
	json_object_set_new(oauth, "authorizationServers", jstrv(&m->authorization_servers));
	json_object_set_new(oauth, "issuer", jstr(m->issuer));
	json_object_set_new(oauth, "audience", jstr(m->audience));
	json_object_set_new(oauth, "jwksFile", jstr(m->jwks_file));
	json_object_set_new(oauth, "jwksUrl", jstr(m->jwks_url));
	json_object_set_new(oauth, "jwksCacheSeconds", json_integer(m->jwks_cache_s));
	json_object_set_new(oauth, "scopesSupported", jstrv(&m->scopes_supported));
	json_object_set_new(oauth, "requiredScopes", jstrv(&m->required_scopes));
	json_object_set_new(o, "mcp",
	                    json_pack("{s:b, s:o, s:o, s:o, s:b}", "enabled", m->enabled,
	                              "resource", jstr(m->resource), "oauth", oauth, "staticToken",
	                              jsecret(m->static_token, redact), "allowUnauthenticated",
	                              m->allow_unauthenticated));
	return o;
}
