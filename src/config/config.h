/*
 * config.h - the effective Stockade configuration: `stockade.yaml` (the layout of the chart's
 * values.yaml, see docs/configuration.md), environment overrides, secrets resolved from inline
 * values, files or a mounted Kubernetes Secret, and every validation rule of the spec.
 *
 * Lifecycle:
 *   struct stockade_config cfg;
 *   struct config_problems probs;
 *   config_problems_init(&probs);
 *   rc = config_load(path_or_NULL, &cfg, &probs, &err);
 *       path NULL  -> embedded defaults (dev mode), environment still applies
 *       rc == 0    -> usable (probs may hold warnings: log them)
 *       rc == -EINVAL -> probs holds at least one error (print them all), cfg is released
 *       other < 0  -> I/O error in err (file unreadable), cfg is released
 *   if (cfg.dev_mode) config_ensure_dev_secrets(&cfg, &err);   // serve does this
 *   ... read fields directly; they are owned by cfg and stay valid until config_release ...
 *   config_release(&cfg); config_problems_release(&probs);
 *
 * Everything here is plain data after load: thread-safe to read, never mutated by the library
 * after config_load/config_ensure_dev_secrets return.
 *
 * Effective booleans: every component has a resolved `enabled` (bool) computed at load.
 * A component under `rr` whose `enabled` is null follows rr.enabled; true/false overrides it.
 * `mcp.enabled` and `codeExecutor.enabled` are not under the rr switch.
 *
 * Sizes are bytes, durations milliseconds, memory in MiB (as the YAML keys say).
 */
#ifndef STOCKADE_CONFIG_H
#define STOCKADE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/common.h"

/* ---- problems (validation results) ------------------------------------------------------- */

enum config_severity { CONFIG_ERROR, CONFIG_WARNING };

struct config_problem {
	enum config_severity severity;
	char *key_path; /* "rr.agentSandbox.encryptionKey", "" for the whole file */
	char *message; /* what is wrong and what to do; lowercase, no final full stop */
};

struct config_problems {
	struct config_problem *items;
	size_t n;
	size_t cap;
};

void config_problems_init(struct config_problems *p);
void config_problems_release(struct config_problems *p);
void config_problems_add(struct config_problems *p, enum config_severity sev, const char *key_path,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));
size_t config_problems_count(const struct config_problems *p, enum config_severity sev);
/* "error: rr.agentSandbox.encryptionKey: ..." one line each, errors first, to f. */
void config_problems_print(const struct config_problems *p, FILE *f);
/* [{"severity":"error","key":"...","message":"..."}] */
json_t *config_problems_to_json(const struct config_problems *p);
/* The first problem with this key path (tests and callers that want one), or NULL. */
const struct config_problem *config_problems_find(const struct config_problems *p,
                                                  const char *key_path);

/* ---- value types -------------------------------------------------------------------------- */

/* A YAML boolean that may also be null/absent (`enabled: null` follows rr.enabled). */
enum config_tristate { CONFIG_UNSET = -1, CONFIG_FALSE = 0, CONFIG_TRUE = 1 };

struct config_strv {
	char **v; /* n entries, each heap-owned; v may be NULL when n == 0 */
	size_t n;
};

enum config_exec_mode {
	CONFIG_MODE_PRIVILEGED, /* the service is root in its container, builds jails as root */
	CONFIG_MODE_SECCOMP, /* non-root under the published seccomp profile, user namespaces */
	CONFIG_MODE_UNSANDBOXED, /* code-executor only: no namespaces; seccomp+rlimits still on */
};
const char *config_exec_mode_name(enum config_exec_mode m);

enum config_log_level { CONFIG_LOG_DEBUG, CONFIG_LOG_INFO, CONFIG_LOG_WARN, CONFIG_LOG_ERROR };

/* Execution limits (codeExecutor.limits, rr.jsExecutor.limits). */
struct config_exec_limits {
	uint32_t default_timeout_ms; /* default 10000 */
	uint32_t max_timeout_ms; /* default 120000; a request above it gets 400 */
	uint32_t default_memory_mb; /* default 256 */
	uint32_t max_memory_mb; /* default 1024 */
	uint32_t max_pids; /* default 64: pids.max of one execution */
	uint64_t max_code_bytes; /* default 1 MiB */
	uint64_t max_params_bytes; /* default 8 MiB: the JSON params of one request */
	uint64_t max_result_bytes; /* default 8 MiB */
	uint64_t max_output_bytes; /* default 1 MiB: stdout+stderr of one execution */
	uint64_t tmpfs_mb; /* default 64: /tmp and the working dir of one execution */
	uint32_t queue_size; /* default 64: waiting requests beyond concurrency; then 429/503 */
	uint32_t concurrency; /* default 0 = number of CPUs */
};

/* Postgres connection settings. `present` is false when the block is absent. */
struct config_postgres {
	bool present;
	char *host; /* default "localhost" */
	uint16_t port; /* default 5432 */
	char *db; /* default "stockade" */
	char *user; /* default "stockade" */
	char *password; /* may be NULL (peer/trust auth or PGPASSWORD) */
	bool ssl_enabled; /* true -> sslmode=require (backend) / no-verify (inherited, agent) */
	char *sslmode; /* explicit override, NULL when not given */
	char *url; /* a full postgres:// URL instead of the fields above, or NULL */
	char *schema; /* backend: "public"; agent sandbox: "agent_executor" */
	bool inherited; /* agent sandbox only: copied from the backend `postgresql` block */
};

/* One blob storage destination (rr.blobStorage, or a per-subsystem resolution of it). */
enum config_blob_provider {
	CONFIG_BLOB_NONE,
	CONFIG_BLOB_FILESYSTEM,
	CONFIG_BLOB_S3,
	CONFIG_BLOB_GCS,
	CONFIG_BLOB_AZURE,
};
const char *config_blob_provider_name(enum config_blob_provider p);

struct config_blob {
	enum config_blob_provider provider;
	/* where this came from, for messages: "rr.blobStorage", "RR_GIT_S3_*", "default" */
	char *source;
	char *prefix; /* key prefix inside the bucket/container/dir, "" or e.g. "git/" */
	struct {
		char *path; /* directory; default <dataDir>/blobs */
	} filesystem;
	struct {
		char *bucket;
		char *region; /* default "us-east-1" */
		char *
		    access_key_id; /* NULL -> anonymous / instance role is not supported: required */
		char *secret_access_key;
		char *session_token; /* optional (AWS_SESSION_TOKEN style temporary credentials) */
		char *endpoint; /* "" / NULL -> https://s3.<region>.amazonaws.com */
		bool force_path_style; /* default false (true when an endpoint is set) */
	} s3;
	struct {
		char *bucket;
		char *hmac_access_key; /* GCS interoperability HMAC key */
		char *hmac_secret;
		char *endpoint; /* default https://storage.googleapis.com */
	} gcs;
	struct {
		char *connection_string; /* either this, or account_name + account_key */
		char *account_name;
		char *account_key; /* base64 */
		char *container;
		char *endpoint; /* e.g. http://127.0.0.1:10000/devstoreaccount1 (Azurite) */
	} azure;
};

/* ---- the configuration -------------------------------------------------------------------- */

struct config_code_executor {
	bool enabled; /* default true */
	enum config_exec_mode mode; /* default privileged when root, else seccomp */
	bool mode_explicit; /* mode was set in the file or env, not guessed */
	struct config_exec_limits limits;
	struct config_strv
	    python_modules; /* default json math re datetime collections numpy pandas */
	char *js_modules_dir; /* default lib/js/node_modules beside the binary, or
	                         /usr/share/stockade/js/node_modules */
};

struct config_js_executor {
	enum config_tristate enabled_setting; /* as written: null follows rr.enabled */
	bool enabled; /* effective */
	enum config_exec_mode mode; /* privileged|seccomp only (never unsandboxed) */
	struct config_exec_limits limits;
	char *js_modules_dir; /* default: codeExecutor.jsModulesDir */
	uint32_t max_function_versions; /* default 20: kept versions per stored function */
};

enum config_sandbox_runtime { CONFIG_RUNTIME_GVISOR, CONFIG_RUNTIME_JAIL };
enum config_gvisor_platform {
	CONFIG_PLATFORM_SYSTRAP,
	CONFIG_PLATFORM_PTRACE,
	CONFIG_PLATFORM_KVM,
};

struct config_agent_sandbox {
	enum config_tristate enabled_setting;
	bool enabled; /* effective */
	enum config_sandbox_runtime runtime; /* default gvisor */
	enum config_gvisor_platform platform; /* default systrap */
	char *runsc_path; /* default "runsc" from PATH */
	char *rootfs; /* sandbox root filesystem image dir; NULL -> the host's read-only root */

	/* externalSecret: files jwt-public-key, jwt-private-key, encryption-key, api-secret in
	 * mount_path (default /etc/stockade/secrets/<name>). */
	char *external_secret_name;
	char *external_secret_mount_path;

	/* Resolved secrets (inline, *File, or externalSecret). NULL when not configured. */
	char *jwt_public_key_pem;
	char *jwt_private_key_pem;
	char *encryption_key_hex; /* exactly 64 hex characters */
	uint8_t encryption_key[32]; /* decoded; valid when has_encryption_key */
	bool has_encryption_key;
	char *api_secret; /* optional: a bearer credential for the sandbox API (cmd-serve.c) */

	struct config_postgres postgres; /* inherited from `postgresql` unless overridden */

	struct {
		struct config_strv backend_domain_suffixes; /* may reach the backend via these */
		struct config_strv allowed_domains; /* egress allowlist; empty = all public hosts */
		struct config_strv blocked_cidrs; /* default link-local, RFC1918, CGNAT, loopback,
		                                     IPv6 ULA/link-local/loopback, metadata */
		bool egress_enabled; /* default true */
	} proxy;

	struct {
		uint64_t idle_timeout_ms; /* sandboxIdleTimeoutMs, default 600000 */
		uint64_t global_lifetime_ms; /* sandboxGlobalLifetimeMs, default 9000000 */
		uint64_t ready_timeout_ms; /* sandboxReadyTimeoutMs, default 30000 */
		uint64_t exec_timeout_ms; /* default per-exec timeout, default 300000 */
		uint32_t workspace_size_mb; /* default 1024 */
		uint32_t memory_mb; /* default 1024 */
		double cpus; /* default 1.0 */
		uint32_t pids; /* default 512 */
		uint64_t max_file_bytes; /* files API upload/download cap, default 100 MiB */
		char *workspace_dir; /* host dir holding sandbox workspaces; default
		                        <dataDir>/sandboxes */
	} sandbox;

	struct {
		uint32_t prewarm_pool_size; /* default 5 */
		uint32_t max_total_jobs; /* default 50 */
		uint32_t max_concurrent_creates; /* default 3 */
		uint32_t per_user_sandbox_limit; /* default 5 */
	} scaling;

	struct {
		uint32_t token_ttl_s; /* lifetime of sandbox-scoped ES256 tokens, default 900 */
		char *issuer; /* default "stockade-agent-sandbox" */
	} tokens;

	/* snapshots are on whenever the agent sandbox is on; they need blob storage */
	bool snapshots_enabled;
};

struct config_git_server {
	enum config_tristate enabled_setting;
	bool enabled; /* effective */
	bool skip_blob_storage_validation; /* default false */
	uint64_t max_push_bytes; /* default 512 MiB */
};

struct config_rr {
	bool enabled; /* master switch, default false */
	struct config_js_executor js_executor;
	struct config_agent_sandbox agent_sandbox;
	struct config_git_server git_server;
	/* rr.blobStorage as written (provider NONE when absent or empty) */
	struct config_blob blob_storage;
	int blob_storage_provider_count; /* how many providers the block named (0, 1, 2+) */
	/* Effective per-subsystem destinations: RR_GIT_S3_* / RR_SNAPSHOTS_S3_* env, falling back
	 * to RR_DEFAULT_S3_*, falling back to rr.blobStorage, falling back to the filesystem under
	 * <dataDir>/blobs (embedded mode). Prefixes default to "git/" and "snapshots/". */
	struct config_blob git_blob;
	struct config_blob snapshots_blob;
};

struct config_mcp {
	bool enabled; /* default false; not under rr.enabled */
	char *resource; /* canonical resource URL of this server, e.g. https://host/mcp */
	struct config_strv authorization_servers; /* issuers, for RFC 9728 metadata */
	char *issuer; /* expected `iss` of access tokens; NULL -> any of authorizationServers */
	char *audience; /* expected `aud`; default: resource */
	char *jwks_file; /* local JWKS JSON document */
	char *jwks_url; /* fetched and cached; http(s) */
	uint32_t jwks_cache_s; /* default 300 */
	struct config_strv
	    scopes_supported; /* default ["execute","sandbox:read","sandbox:write"] */
	struct config_strv required_scopes; /* every tool call needs these; default none */
	char *static_token; /* dev only: a bearer token accepted without OAuth (warned about) */
	bool allow_unauthenticated; /* dev only, loopback listeners only: no auth at all */
};

struct config_http {
	uint64_t max_body_bytes; /* default 16 MiB; larger -> 413 */
	uint32_t threads; /* default 0 = 2 x CPUs */
	uint32_t connection_limit; /* default 256 */
	uint32_t request_timeout_ms; /* idle connection timeout, default 30000 */
	char *public_url; /* externally visible base URL (MCP metadata, preview links), or NULL */
};

struct stockade_config {
	char *source_path; /* the file loaded, NULL in embedded mode */
	bool dev_mode; /* no --config: embedded defaults, dev secrets allowed */

	char *listen; /* "host:port", default "127.0.0.1:8080" */
	char *listen_host; /* parsed from listen */
	uint16_t listen_port;
	char *data_dir; /* default "./data" */
	enum config_log_level log_level; /* default info */

	/* Backend secrets. */
	char *encryption_key; /* ASCII only; NULL when not configured */
	char *jwt_secret; /* HS256 secret for API JWTs; NULL when not configured */
	/* apiTokens: only SHA-256 hashes are kept (the plaintext is wiped after load). */
	uint8_t (*api_token_hashes)[32];
	size_t n_api_tokens;

	struct config_postgres postgresql; /* present=false -> SQLite under dataDir */
	char *sqlite_path; /* <dataDir>/stockade.db when postgresql is absent */

	struct config_http http;
	struct config_code_executor code_executor;
	struct config_rr rr;
	struct config_mcp mcp;
};

/* ---- API ---------------------------------------------------------------------------------- */

/* Fill cfg with the embedded defaults (dev mode, nothing from the environment). */
void config_init_defaults(struct stockade_config *cfg);
void config_release(struct stockade_config *cfg);

/*
 * Load and validate. path NULL: embedded defaults (dev mode). The environment is applied
 * (see docs/configuration.md). All problems go to `problems` (never only the first).
 * Returns 0 (possibly with warnings), -EINVAL when problems holds errors, another negative
 * errno with `err` set when the file cannot be read. On failure cfg is released (empty).
 */
int config_load(const char *path, struct stockade_config *cfg, struct config_problems *problems,
                struct st_error **err);
/* Same, from YAML text (tests; `name` is used in messages). */
int config_load_string(const char *yaml, size_t len, const char *name, struct stockade_config *cfg,
                       struct config_problems *problems, struct st_error **err);

/*
 * Dev mode only: create <dataDir>/secrets (0700) and, for every secret not configured, load it
 * from there or generate it (files 0600): backend jwt-secret and encryption-key, agent sandbox
 * jwt-private-key / jwt-public-key (ES256) and encryption-key, and an api-token (the plaintext
 * stays in the file; only its hash enters cfg). Logs a warning that these are development
 * secrets. Returns -EPERM when cfg is not in dev mode.
 */
int config_ensure_dev_secrets(struct stockade_config *cfg, struct st_error **err);

/*
 * Command-line overrides (`serve --listen ... --data-dir ...`), applied after config_load:
 * either may be NULL. Recomputes what derives from them (listen host/port, the SQLite path,
 * default blob and workspace directories). -EINVAL with err for a bad listen address.
 * Call before config_ensure_dev_secrets (which writes under dataDir).
 */
int config_apply_overrides(struct stockade_config *cfg, const char *listen, const char *data_dir,
                           struct st_error **err);

/* The effective configuration as JSON (the YAML key names); secrets become "<redacted>". */
json_t *config_to_json(const struct stockade_config *cfg, bool redact);

/* True when token hashes (SHA-256) to one of apiTokens (constant-time comparison). */
bool config_api_token_valid(const struct stockade_config *cfg, const char *token);

/*
 * libpq conninfo strings (heap, caller frees), or NULL when Postgres is not configured.
 * Backend: from `postgresql`; sslmode=require when ssl_enabled (or the explicit sslmode).
 * Agent sandbox: its own block, else inherited from `postgresql`; inherited SSL uses
 * sslmode=no-verify, which libpq spells sslmode=require (encrypt, do not verify the cert).
 * Both carry `options=-csearch_path=<schema>`.
 */
char *config_backend_pg_conninfo(const struct stockade_config *cfg);
char *config_agent_sandbox_pg_conninfo(const struct stockade_config *cfg);
/* The same as a postgres:// URL with the password redacted (for logs and `config show`). */
char *config_pg_display_url(const struct config_postgres *pg);

/* The data directory path joined with `name` ("<dataDir>/<name>"), heap-allocated. */
char *config_data_path(const struct stockade_config *cfg, const char *name);

#endif
