/*
 * store.h - the state store: one small SQL interface over two backends, SQLite (the default, a
 * file under dataDir, WAL mode) and Postgres (libpq), plus versioned schema migrations and
 * background data migrations.
 *
 * Namespaces. Every component owns a namespace (`stockade`, `agent_executor`, ...): a schema on
 * Postgres, a table-name prefix on SQLite. A `struct store` handle is bound to one namespace when
 * it is opened; a component opens its own handle. SQL refers to the component's tables through
 * the `{ns}` token, which expands to `<ns>_` on SQLite and to nothing on Postgres (every Postgres
 * connection of the handle runs with `search_path` set to the schema), so
 *     CREATE TABLE {ns}functions (...);  CREATE INDEX {ns}functions_by_name ON {ns}functions(name)
 * becomes `stockade_functions` / `stockade_functions_by_name` on SQLite and `functions` /
 * `functions_by_name` inside schema `stockade` on Postgres. Namespaces match [a-z][a-z0-9_]{0,39}.
 *
 * Portable dialect. Write SQL that both engines accept and use these tokens where they differ:
 *   {ns}     the namespace prefix (above)
 *   {blob}   BLOB (SQLite) / BYTEA (Postgres)
 *   {id}     an auto-increment primary key column type:
 *            INTEGER PRIMARY KEY AUTOINCREMENT / BIGSERIAL PRIMARY KEY
 *   ?        a positional parameter (rewritten to $1..$n on Postgres; `?` inside '...' literals,
 *            "..." identifiers and comments is left alone)
 * Portable types: TEXT, BIGINT (integers; use 0/1 for booleans), {blob}. Timestamps are BIGINT
 * milliseconds since the epoch set by the caller (st_wall_s()*1000 or similar), never
 * engine-specific time functions. Both engines accept INSERT ... ON CONFLICT (...) DO UPDATE SET
 * x = excluded.x, INSERT/UPDATE/DELETE ... RETURNING, LIMIT ? OFFSET ?, CREATE TABLE/INDEX IF NOT
 * EXISTS. Integers come back as int64, text as text, {blob} as bytes on both.
 *
 * Threads. A handle is safe to use from many threads at once: it keeps a small pool of
 * connections (STORE_POOL_DEFAULT, at most `pool_size`), and each call borrows one for its
 * duration. store_tx() pins one connection for the whole transaction and hands the callback a
 * transaction handle; inside the callback use only that handle (using the outer handle there
 * could wait for a connection the transaction itself holds). Row callbacks must not call the
 * store through the outer handle either.
 *
 * Reconnects (Postgres). Before a pooled connection is used it is checked; a connection the
 * server closed (restart, failover, idle kill) is re-established transparently, with bounded
 * retries and backoff while the server comes back. A statement that fails because the
 * connection dropped while it was in flight is retried once only when it is a read (SELECT /
 * WITH ... SELECT / VALUES) outside a transaction; a write or anything inside store_tx() fails
 * with -ECONNRESET and a message saying it may or may not have been applied.
 *
 * Errors follow common.h: 0 or a negative errno-style code plus a message in *err.
 *   -ENOENT    store_query_one() found no row
 *   -EBUSY     data migration retry while it runs
 *   -EPROTO    the database is newer than this binary / upgrade gate refused
 *   -ECONNRESET connection lost during a write
 *   -EINVAL    bad SQL / arguments; -EEXIST constraint violation (unique, primary key)
 *   -EIO       anything else the engine reported
 */
#ifndef STOCKADE_STORE_H
#define STOCKADE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ---- opening ----------------------------------------------------------------------------- */

struct store; /* opaque handle bound to one namespace */

enum store_backend { STORE_SQLITE, STORE_POSTGRES };

#define STORE_POOL_DEFAULT 4

struct store_options {
	enum store_backend backend;
	const char *sqlite_path; /* STORE_SQLITE: the database file (created 0600 if missing) */
	const char *pg_conninfo; /* STORE_POSTGRES: libpq conninfo string or postgres:// URI */
	const char *ns; /* namespace: schema (Postgres) or table prefix (SQLite) */
	/* Postgres schema when it differs from ns (a configured `postgresql.schema`); same naming
	 * rules; NULL = ns. */
	const char *pg_schema;
	unsigned pool_size; /* 0 = STORE_POOL_DEFAULT */
	unsigned busy_timeout_ms; /* SQLite lock wait and Postgres reconnect budget; 0 = 10000 */
	/* A running data migration whose heartbeat is older than this is stale (its runner died);
	 * 0 = 60000. The runner refreshes its heartbeat every stale/4. */
	unsigned data_migration_stale_ms;
};

/*
 * Open a handle. Creates the schema (Postgres) and the bookkeeping tables
 * ({ns}schema_migrations, {ns}data_migrations) if needed, under the migration lock, so it is
 * safe for several processes to open the same database at once. SQLite connections use WAL,
 * busy_timeout, foreign_keys=ON and synchronous=NORMAL.
 */
int store_open(const struct store_options *opts, struct store **out, struct st_error **err);
/* Shorthands for store_open(). */
int store_open_sqlite(const char *path, const char *ns, struct store **out, struct st_error **err);
int store_open_pg(const char *conninfo, const char *ns, struct store **out, struct st_error **err);
/* Waits for background data migrations of this handle to stop (see below), then closes. */
void store_free(struct store *s);

struct stockade_config; /* config/config.h */
/*
 * Open namespace ns where the configuration puts it: Postgres when `postgresql` is configured
 * (for ns "agent_executor", the agent sandbox's own or inherited connection), its schema the
 * configured one except that the default "public" maps to ns; otherwise SQLite at
 * <dataDir>/stockade.db. `stockade serve` and `stockade migrate --config` both use this.
 */
int store_open_config(const struct stockade_config *cfg, const char *ns, struct store **out,
                      struct st_error **err);

enum store_backend store_backend(const struct store *s);
const char *store_ns(const struct store *s);
/* "sqlite" or "postgres" */
const char *store_backend_name(const struct store *s);

/* ---- values and statements ----------------------------------------------------------------- */

enum store_type { STORE_NULL, STORE_INT, STORE_TEXT, STORE_BLOB };

/* A parameter. Text and blob memory is borrowed for the duration of the call. */
struct store_value {
	enum store_type type;
	int64_t i;
	const char *s; /* STORE_TEXT: NUL-terminated UTF-8 */
	const void *p; /* STORE_BLOB */
	size_t len; /* STORE_BLOB */
};

static inline struct store_value store_null(void)
{
	return (struct store_value){.type = STORE_NULL};
}
static inline struct store_value store_int(int64_t i)
{
	return (struct store_value){.type = STORE_INT, .i = i};
}
/* A NULL pointer becomes SQL NULL. */
static inline struct store_value store_text(const char *s)
{
	return (struct store_value){.type = s ? STORE_TEXT : STORE_NULL, .s = s};
}
static inline struct store_value store_blob(const void *p, size_t len)
{
	return (struct store_value){.type = STORE_BLOB, .p = p, .len = len};
}

/* One result row, valid only during the row callback. Columns are 0-based. */
struct store_row;
size_t store_row_columns(const struct store_row *r);
const char *store_row_name(const struct store_row *r, size_t col);
bool store_row_is_null(const struct store_row *r, size_t col);
/* Integer value (text is parsed; NULL or unparsable gives 0). */
int64_t store_row_int(const struct store_row *r, size_t col);
/* Text value, NULL for SQL NULL. Valid until the callback returns. */
const char *store_row_text(const struct store_row *r, size_t col);
/* Blob bytes and length, NULL (and *len 0) for SQL NULL. Valid until the callback returns. */
const void *store_row_blob(const struct store_row *r, size_t col, size_t *len);

/* Return 0 to continue, 1 to stop early (not an error), negative to abort with that error. */
typedef int (*store_row_fn)(void *ctx, const struct store_row *row, struct st_error **err);

/*
 * Execute a statement (or, with nparams == 0, several separated by ';'). *changes (if not
 * NULL) gets the number of rows inserted/updated/deleted by the last statement.
 */
int store_exec(struct store *s, const char *sql, const struct store_value *params, size_t nparams,
               int64_t *changes, struct st_error **err);
/* Run a query and call fn for each row. */
int store_query(struct store *s, const char *sql, const struct store_value *params, size_t nparams,
                store_row_fn fn, void *ctx, struct st_error **err);
/*
 * Run a query and return its rows as a JSON array of objects keyed by column name: integers as
 * JSON integers, text as strings, NULL as null, blobs as base64 strings. Caller json_decref()s.
 */
int store_query_json(struct store *s, const char *sql, const struct store_value *params,
                     size_t nparams, json_t **rows, struct st_error **err);
/* The first row as a JSON object; -ENOENT (message names nothing; callers add context). */
int store_query_one(struct store *s, const char *sql, const struct store_value *params,
                    size_t nparams, json_t **row, struct st_error **err);
/* The first column of the first row as an integer; -ENOENT when there is no row. */
int store_query_int(struct store *s, const char *sql, const struct store_value *params,
                    size_t nparams, int64_t *out, struct st_error **err);

/*
 * Run fn inside one transaction on one connection. fn gets a transaction handle `tx` (use it,
 * not `s`, for every statement of the transaction). fn returning 0 commits; negative rolls back
 * and the error is returned. Transactions do not nest (store_tx on a tx handle: -EINVAL).
 * SQLite transactions start with BEGIN IMMEDIATE (they take the write lock up front, so they
 * never fail half-way with SQLITE_BUSY).
 */
typedef int (*store_tx_fn)(struct store *tx, void *ctx, struct st_error **err);
int store_tx(struct store *s, store_tx_fn fn, void *ctx, struct st_error **err);

/* Expand the dialect tokens of sql for this handle (for logging or tests). Caller frees. */
char *store_expand_sql(const struct store *s, const char *sql);

/* ---- schema migrations --------------------------------------------------------------------- */

/*
 * One schema migration. Versions are positive, strictly increasing within a component and never
 * reused; a released migration is never edited (its checksum is recorded). `sql` is portable
 * SQL with the dialect tokens; sql_sqlite / sql_pg, when set, replace it on that backend.
 */
struct store_migration {
	int64_t version;
	const char *name; /* short slug: "create-functions" */
	const char *sql;
	const char *sql_sqlite;
	const char *sql_pg;
};

/*
 * Apply the pending migrations of `component` (a name unique within the namespace, usually the
 * namespace itself) in version order, each in its own transaction together with its row in
 * {ns}schema_migrations (component, version, name, applied_at, checksum), while holding the
 * migration lock (pg_advisory_lock on a hash of namespace+component; BEGIN IMMEDIATE on SQLite),
 * so concurrent starters apply each migration exactly once. Refuses with -EPROTO when the
 * database already has a version newer than the newest in `migrations` (a newer release ran
 * against it). A recorded checksum that differs from the binary's is logged as a warning.
 * *applied (if not NULL) gets how many migrations this call applied.
 */
int store_migrate(struct store *s, const char *component, const struct store_migration *migrations,
                  size_t n, int *applied, struct st_error **err);
/*
 * Declare a component's migrations process-wide so that `stockade migrate up|status` and the
 * schema-integrity-check know them even in a process that does not run the component. The
 * array must outlive the process (a static const array). STORE_DECLARE_MIGRATIONS does it from a
 * constructor; a later declaration of the same (ns, component) replaces the earlier one.
 */
void store_declare_migrations(const char *ns, const char *component,
                              const struct store_migration *migrations, size_t n);
#define STORE_DECLARE_MIGRATIONS(ns, component, array)                                \
	__attribute__((constructor)) static void store_declare_##array(void)          \
	{                                                                             \
		store_declare_migrations(ns, component, array, ST_ARRAY_SIZE(array)); \
	}
/* store_migrate() every component declared for this handle's namespace. */
int store_migrate_declared(struct store *s, int *applied, struct st_error **err);

/* Highest applied version of component (0 when none). */
int store_schema_version(struct store *s, const char *component, int64_t *version,
                         struct st_error **err);

/* ---- background data migrations ------------------------------------------------------------ */

/*
 * A data migration rewrites data rather than schema and may take long, so it runs on a
 * background thread while the service keeps working. Its state lives in {ns}data_migrations:
 *
 *   pending --claim--> running --fn ok--> done
 *                         |
 *                         +--fn fails--> failed --retry--> pending
 *   running with a heartbeat older than the stale limit (its runner died) counts as pending
 *   for claiming and as retryable.
 *
 * Claiming is one conditional UPDATE, so among several replicas exactly one runs it. While
 * running, the runner refreshes heartbeat_at every few seconds. A failed migration stays failed
 * (service keeps working; status and /healthz report it) until an admin retries it.
 */
struct store_data_migration {
	const char *name; /* stable slug, e.g. "schema-integrity-check" */
	const char *description; /* one line for status output */
	/* Does the work through s (the same namespace). Must be idempotent: a retry re-runs it. */
	int (*run)(struct store *s, void *ctx, struct st_error **err);
	void *ctx;
};

/*
 * Make a data migration known to this handle and record it as pending if the database has never
 * seen it. The struct is copied; name/description/ctx must outlive the handle.
 */
int store_data_migration_register(struct store *s, const struct store_data_migration *m,
                                  struct st_error **err);
/* Register Stockade's own data migrations (schema-integrity-check, and when the environment
 * variable STOCKADE_TEST_DATA_MIGRATION is set, the test-only "test-canary"; with
 * STOCKADE_TEST_SCHEMA_MIGRATIONS it also declares the test-only "test-schema" migrations). */
int store_register_builtin_data_migrations(struct store *s, struct st_error **err);

/* Start one background thread that runs every registered pending migration in turn (and any
 * later retry of this handle). Returns at once. Idempotent. */
int store_data_migrations_start(struct store *s, struct st_error **err);
/* Run pending registered migrations on the calling thread (CLI, tests). */
int store_data_migrations_run_now(struct store *s, struct st_error **err);
/* Run one registered data migration on the calling thread if it can be claimed (pending, or
 * running with a stale heartbeat); 0 when it was not claimable. -ENOENT when not registered. */
int store_data_migration_run(struct store *s, const char *name, struct st_error **err);
/* Block until the background thread is idle (nothing pending that it can claim). */
void store_data_migrations_wait(struct store *s);

/*
 * Status for `/api/v1/admin/migrations`, `/healthz` and `stockade migrate status`:
 *   {"namespace":"stockade","backend":"sqlite",
 *    "schema":[{"component":"stockade","version":3,"name":"...","applied_at":ms}, ...],
 *    "data":[{"name","description","state","error","attempts","started_at","finished_at",
 *             "owner","heartbeat_at","stale","known"}...],
 *    "pending_schema":[{"component","version","name"}...],   (declared, not yet applied)
 *    "failed":["name",...], "running":["name",...], "ok":true|false}
 * `known` says whether this binary registered it; "ok" is false when any data migration failed.
 */
int store_migration_status(struct store *s, json_t **out, struct st_error **err);

/*
 * Re-trigger a failed (or stale running) data migration: -EBUSY while it is running, -EALREADY
 * when done, -ENOENT when unknown. Marks it pending; when the background thread of this handle
 * is started it picks it up, otherwise call store_data_migrations_run_now().
 */
int store_data_migration_retry(struct store *s, const char *name, struct st_error **err);

/*
 * Start-up gate for a newer release: refuses (-EPROTO) while any of `required` (n names; NULL
 * means every data migration recorded in the database that this binary does not register) is
 * failed, naming it, its error and how to resolve it: run `stockade migrate retry NAME` with the
 * previous version until `stockade migrate status` shows it done, or roll back to it.
 */
int store_check_upgrade_gate(struct store *s, const char *const *required, size_t n,
                             struct st_error **err);

#endif
