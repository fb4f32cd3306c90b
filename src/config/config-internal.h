/*
 * config-internal.h - what the config files share: the load pipeline stages and the record of
 * where each secret came from (for messages that name the key path or the variable to fix).
 *
 * Pipeline (config_load):
 *   defaults -> YAML (config-yaml.c: types, legacy keys, unknown keys)
 *            -> environment (config-env.c) -> secrets resolution (config-env.c)
 *            -> derived values: enabled switches, Postgres inheritance, blob per subsystem
 *            -> validation (config-validate.c)
 */
#ifndef STOCKADE_CONFIG_INTERNAL_H
#define STOCKADE_CONFIG_INTERNAL_H

#include "config/config.h"

/* Where a secret value came from, for messages. */
struct config__secret_src {
	char
	    *origin; /* "inline", "file '/x'", "environment ENCRYPTION_KEY", "externalSecret ..." */
};

/* Values read from YAML that are resolved after the environment is applied. */
struct config__pending {
	/* *File keys */
	char *encryption_key_file;
	char *jwt_secret_file;
	char *as_jwt_public_key_file;
	char *as_jwt_private_key_file;
	char *as_encryption_key_file;
	char *as_api_secret_file;
	/* origins of the resolved secrets (NULL = unset) */
	char *encryption_key_origin;
	char *jwt_secret_origin;
	char *as_jwt_public_key_origin;
	char *as_jwt_private_key_origin;
	char *as_encryption_key_origin;
	char *as_api_secret_origin;
	/* plaintext tokens before hashing (wiped after) */
	struct config_strv api_tokens;
	/* rr.agentSandbox.postgres as written (present=false when absent) */
	struct config_postgres as_pg;
	bool as_pg_given;
	/* codeExecutor.mode / rr.jsExecutor.mode written explicitly */
	bool js_mode_explicit;
	bool js_modules_dir_explicit;
};

void config__pending_release(struct config__pending *p);

/* config-yaml.c: parse text into cfg; problems collected; returns -EINVAL on a YAML syntax error
 * (recorded as a problem). */
int config__parse_yaml(const char *yaml, size_t len, const char *name, struct stockade_config *cfg,
                       struct config__pending *pend, struct config_problems *pr);

/* config-env.c */
void config__apply_env(struct stockade_config *cfg, struct config__pending *pend,
                       struct config_problems *pr);
void config__resolve_secrets(struct stockade_config *cfg, struct config__pending *pend,
                             struct config_problems *pr);
void config__resolve_blobs(struct stockade_config *cfg, struct config_problems *pr);

/* config-validate.c */
/* listen -> listen_host/listen_port; records a problem at "listen" when invalid */
void config__parse_listen(struct stockade_config *cfg, struct config_problems *pr);
void config__derive(struct stockade_config *cfg, struct config__pending *pend);
void config__validate(struct stockade_config *cfg, struct config__pending *pend,
                      struct config_problems *pr);
/* The agent sandbox encryption key rule on its own (also used by keys/serve). */
int config__check_agent_encryption_key(const char *value, const char *key_path, const char *origin,
                                       struct config_problems *pr);

/* config.c helpers */
void config__strv_push(struct config_strv *s, const char *v);
void config__strv_release(struct config_strv *s);
void config__strv_copy(struct config_strv *dst, const struct config_strv *src);
void config__set_str(char **dst, const char *v);
char *config__default_workspace_dir(const struct stockade_config *cfg);
void config__blob_release(struct config_blob *b);
void config__blob_copy(struct config_blob *dst, const struct config_blob *src);
void config__pg_release(struct config_postgres *pg);
void config__pg_copy(struct config_postgres *dst, const struct config_postgres *src);
void config__exec_limits_defaults(struct config_exec_limits *l);
/* A path from the config file: relative paths are relative to the file's directory. */
char *config__path_near(const struct stockade_config *cfg, const char *path);

#endif
