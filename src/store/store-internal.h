/*
 * store-internal.h - what store.c (the pool, dialect and JSON helpers), store-migrate.c and the
 * two backends (store-sqlite.c, store-pg.c) share. Nothing outside src/store includes this.
 */
#ifndef STOCKADE_STORE_INTERNAL_H
#define STOCKADE_STORE_INTERNAL_H

#include <pthread.h>

#include "store/store.h"

/* A backend connection; each backend defines its own struct. */
struct store_conn;

/* How a backend exposes one row to the generic accessors in store.c. */
struct store__row_ops {
	size_t (*columns)(const struct store_row *r);
	const char *(*name)(const struct store_row *r, size_t col);
	/* The value's type: STORE_NULL, STORE_INT, STORE_TEXT or STORE_BLOB. */
	enum store_type (*type)(const struct store_row *r, size_t col);
	int64_t (*get_int)(const struct store_row *r, size_t col);
	const char *(*get_text)(const struct store_row *r, size_t col);
	const void *(*get_blob)(const struct store_row *r, size_t col, size_t *len);
};

struct store_row {
	const struct store__row_ops *ops;
	void *impl; /* sqlite3_stmt * or the Postgres row cursor */
};

/*
 * The backend interface. `sql` given to exec/query is already expanded (tokens, and `$n` on
 * Postgres). in_tx says whether the connection is inside store_tx(), which forbids silent
 * retries.
 */
struct store__ops {
	const char *name;
	int (*connect)(struct store *s, struct store_conn **out, struct st_error **err);
	void (*disconnect)(struct store_conn *c);
	/* Called on a pooled connection before it is lent out: re-establish it when it broke. */
	int (*check)(struct store *s, struct store_conn *c, struct st_error **err);
	int (*exec)(struct store *s, struct store_conn *c, const char *sql,
	            const struct store_value *params, size_t nparams, int64_t *changes, bool in_tx,
	            struct st_error **err);
	int (*query)(struct store *s, struct store_conn *c, const char *sql,
	             const struct store_value *params, size_t nparams, store_row_fn fn, void *ctx,
	             bool in_tx, struct st_error **err);
	/* Start a write transaction (BEGIN IMMEDIATE on SQLite). */
	int (*begin)(struct store_conn *c, struct st_error **err);
	int (*commit)(struct store_conn *c, struct st_error **err);
	void (*rollback)(struct store_conn *c);
	/* Session-wide migration lock (Postgres advisory lock); NULL on SQLite. */
	int (*lock)(struct store *s, struct store_conn *c, int64_t key, struct st_error **err);
	void (*unlock)(struct store_conn *c, int64_t key);
	/* Create the namespace itself (CREATE SCHEMA on Postgres); NULL when nothing to do. */
	int (*create_ns)(struct store *s, struct store_conn *c, struct st_error **err);
};

extern const struct store__ops store__sqlite_ops;
extern const struct store__ops store__pg_ops;

struct store__dm_entry {
	struct store_data_migration m;
};

struct store {
	enum store_backend backend;
	const struct store__ops *ops;
	char *ns;
	char *sqlite_path;
	char *pg_conninfo;
	char *pg_schema; /* Postgres schema (defaults to ns) */
	unsigned busy_ms;
	unsigned stale_ms;

	/* A transaction handle (made by store_tx) points at its parent and pins one connection;
	 * it owns nothing else. */
	struct store *parent;
	struct store_conn *pinned;

	/* Connection pool: idle connections wait in `idle`; `total` counts lent + idle. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct store_conn **idle;
	size_t nidle;
	size_t total;
	size_t max;

	/* Data migrations registered by this process (guarded by dm_mu). */
	pthread_mutex_t dm_mu;
	pthread_cond_t dm_cv;
	struct store__dm_entry *dm;
	size_t ndm;
	char owner[160]; /* host:pid:random, recorded on claim */
	bool dm_thread_started;
	bool dm_stopping;
	bool dm_kick;
	bool dm_busy;
	pthread_t dm_thread;
};

/* The handle owning the pool (itself unless a transaction handle). */
static inline struct store *store__root(struct store *s)
{
	return s->parent ? s->parent : s;
}

/* Borrow a connection from the pool (or the pinned one) and give it back. */
int store__conn_get(struct store *s, struct store_conn **out, struct st_error **err);
void store__conn_put(struct store *s, struct store_conn *c);
/* Make `view` a handle pinned to c (like a transaction handle, but without BEGIN). */
void store__view_init(struct store *view, struct store *s, struct store_conn *c);

/*
 * Like st_error_make() with a code but without the strerror() suffix: store messages already
 * say what happened ("is already running", not "...: Device or resource busy"). Returns -code.
 */
int store__error(struct st_error **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Expand dialect tokens; on Postgres also number the `?` parameters. Caller frees. */
char *store__expand(enum store_backend backend, const char *ns, const char *sql);
/* True when sql is a read-only statement (SELECT, WITH ... SELECT, VALUES). */
bool store__is_read(const char *sql);
/* Lowercase hex SHA-256 of s into out[65]. */
void store__sha256_hex(const char *s, char out[65]);
/* FNV-1a 64-bit of the strings joined by ':' (advisory lock keys). */
int64_t store__lock_key(const char *a, const char *b);
int64_t store__now_ms(void);

/* Bookkeeping tables; store_open creates them. */
int store__bootstrap(struct store *s, struct st_error **err);
/* The data-migration thread; store_free stops it. */
void store__dm_stop(struct store *s);
void store__dm_release(struct store *s);

#endif
