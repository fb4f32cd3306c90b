/*
 * store-config.c - opening a component's store from the loaded stockade.yaml, so that
 * `stockade serve` and `stockade migrate --config` always agree on where the data lives:
 *   - `postgresql` configured -> Postgres (the agent sandbox namespace `agent_executor` uses its
 *     own, possibly inherited, connection); the schema is the configured one, except that the
 *     default `public` maps to the namespace's own schema so Stockade's tables never mix into a
 *     shared public schema;
 *   - otherwise SQLite at sqlite_path (<dataDir>/stockade.db).
 */
#include "config/config.h"
#include "store/store-internal.h"

static const char *schema_for(const char *configured)
{
	return configured && strcmp(configured, "public") != 0 ? configured : NULL;
}

int store_open_config(const struct stockade_config *cfg, const char *ns, struct store **out,
                      struct st_error **err)
{
	*out = NULL;
	bool agent = ns && strcmp(ns, "agent_executor") == 0;
	struct store_options o = {.ns = ns};
	cleanup_free char *conninfo =
	    agent ? config_agent_sandbox_pg_conninfo(cfg) : config_backend_pg_conninfo(cfg);
	cleanup_free char *path = NULL;
	if (conninfo) {
		o.backend = STORE_POSTGRES;
		o.pg_conninfo = conninfo;
		o.pg_schema = schema_for(agent ? cfg->rr.agent_sandbox.postgres.schema
		                               : cfg->postgresql.schema);
	} else {
		o.backend = STORE_SQLITE;
		path = cfg->sqlite_path ? st_xstrdup(cfg->sqlite_path)
		                        : config_data_path(cfg, "stockade.db");
		o.sqlite_path = path;
	}
	return store_open(&o, out, err);
}
