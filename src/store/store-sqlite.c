/*
 * store-sqlite.c - the SQLite backend: one sqlite3 connection per pooled store_conn, opened
 * in WAL mode (readers never block the writer) with a busy timeout (writers from other
 * connections and processes wait instead of failing), foreign keys on and synchronous=NORMAL
 * (durable at checkpoints, safe against corruption in WAL mode).
 *
 * Connections are opened with SQLITE_OPEN_NOMUTEX: the pool in store.c guarantees a connection
 * is used by one thread at a time. The file is created 0600 before SQLite opens it.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>

#include "store/store-internal.h"

struct store_conn {
	sqlite3 *db;
};

static int sqlite_error(sqlite3 *db, int rc, struct st_error **err, const char *what)
{
	int ext = db ? sqlite3_extended_errcode(db) : rc;
	const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
	int code = EIO;
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
		code = (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
		           ? EEXIST
		           : EINVAL;
		break;
	case SQLITE_ERROR:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE: code = EINVAL; break;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: code = EAGAIN; break;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH: code = EACCES; break;
	case SQLITE_FULL: code = ENOSPC; break;
	default: break;
	}
	st_error_make(err, 0, "sqlite: %s: %s", what, msg);
	if (err && *err)
		(*err)->code = code;
	return -code;
}

static int sqlite_connect(struct store *s, struct store_conn **out, struct st_error **err)
{
	/* Create the file ourselves so its mode is 0600 whatever the umask. Only when it does not
	 * exist yet: closing any descriptor of an existing database file drops every POSIX lock
	 * this process holds on it, including those of our open SQLite connections; another
	 * process (`stockade migrate`, sqlite3) would then see no reader, checkpoint and remove
	 * the WAL under us, and our later writes would go to an unlinked file. */
	int fd = open(s->sqlite_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST)
		fd = -2;
	if (fd == -1 && errno == ENOENT)
		return store__error(
		    err, ENOENT,
		    "cannot open sqlite database '%s': its directory does not exist "
		    "(create the data directory or set dataDir)",
		    s->sqlite_path);
	if (fd == -1)
		return st_error_make(err, errno, "cannot open sqlite database '%s'",
		                     s->sqlite_path);
	if (fd >= 0)
		close(fd);
	sqlite3 *db = NULL;
	int rc =
	    sqlite3_open_v2(s->sqlite_path, &db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		int r = sqlite_error(db, rc, err, "open");
		sqlite3_close(db);
		st_error_wrap(err, "cannot open sqlite database '%s'", s->sqlite_path);
		return r;
	}
	sqlite3_busy_timeout(db, (int)s->busy_ms);
	sqlite3_extended_result_codes(db, 1);
	/*
	 * Switching a fresh database to WAL needs an exclusive lock, and SQLite answers BUSY at
	 * once (without the busy handler) when another connection is doing the same, which is
	 * exactly what several processes starting together do. Retry for up to busy_ms.
	 */
	char *emsg = NULL;
	int64_t deadline = st_now_ms() + s->busy_ms;
	long backoff = 5;
	for (;;) {
		rc = sqlite3_exec(db,
		                  "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; "
		                  "PRAGMA synchronous=NORMAL;",
		                  NULL, NULL, &emsg);
		if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
			break;
		if (st_now_ms() + backoff > deadline)
			break;
		sqlite3_free(emsg);
		emsg = NULL;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = backoff * 1000000L};
		nanosleep(&ts, NULL);
		backoff = backoff * 2 > 200 ? 200 : backoff * 2;
	}
	if (rc != SQLITE_OK) {
		st_error_make(err, 0, "cannot configure sqlite database '%s': %s", s->sqlite_path,
		              emsg ? emsg : sqlite3_errstr(rc));
		sqlite3_free(emsg);
		sqlite3_close(db);
		return -EIO;
	}
	struct store_conn *c = st_xcalloc(1, sizeof(*c));
	c->db = db;
	*out = c;
	return 0;
}

static void sqlite_disconnect(struct store_conn *c)
{
	if (c == NULL)
		return;
	sqlite3_close_v2(c->db);
	free(c);
}

static int sqlite_check(struct store *s, struct store_conn *c, struct st_error **err)
{
	return 0;
}

static int bind_params(sqlite3 *db, sqlite3_stmt *st, const struct store_value *params,
                       size_t nparams, struct st_error **err)
{
	int want = sqlite3_bind_parameter_count(st);
	if ((size_t)want != nparams)
		return store__error(err, EINVAL, "statement has %d parameters but %zu were given",
		                    want, nparams);
	for (size_t i = 0; i < nparams; i++) {
		int idx = (int)i + 1, rc = SQLITE_OK;
		const struct store_value *v = &params[i];
		switch (v->type) {
		case STORE_NULL: rc = sqlite3_bind_null(st, idx); break;
		case STORE_INT: rc = sqlite3_bind_int64(st, idx, v->i); break;
		case STORE_TEXT: rc = sqlite3_bind_text(st, idx, v->s, -1, SQLITE_STATIC); break;
		case STORE_BLOB:
			rc = sqlite3_bind_blob64(st, idx, v->p ? v->p : "", v->len, SQLITE_STATIC);
			break;
		default:
			return store__error(err, EINVAL, "parameter %zu has an unknown type",
			                    i + 1);
		}
		if (rc != SQLITE_OK)
			return sqlite_error(db, rc, err, "bind");
	}
	return 0;
}

static bool only_space(const char *p)
{
	while (*p) {
		if (*p == '-' && p[1] == '-') {
			const char *nl = strchr(p, '\n');
			if (nl == NULL)
				return true;
			p = nl;
		} else if (!strchr(" \t\r\n;", *p)) {
			return false;
		}
		p++;
	}
	return true;
}

/* ---- rows ---- */

static size_t row_columns(const struct store_row *r)
{
	return (size_t)sqlite3_column_count(r->impl);
}

static const char *row_name(const struct store_row *r, size_t col)
{
	return sqlite3_column_name(r->impl, (int)col);
}

static enum store_type row_type(const struct store_row *r, size_t col)
{
	switch (sqlite3_column_type(r->impl, (int)col)) {
	case SQLITE_NULL: return STORE_NULL;
	case SQLITE_INTEGER: return STORE_INT;
	case SQLITE_BLOB: return STORE_BLOB;
	default: return STORE_TEXT;
	}
}

static int64_t row_int(const struct store_row *r, size_t col)
{
	return sqlite3_column_int64(r->impl, (int)col);
}

static const char *row_text(const struct store_row *r, size_t col)
{
	return (const char *)sqlite3_column_text(r->impl, (int)col);
}

static const void *row_blob(const struct store_row *r, size_t col, size_t *len)
{
	const void *p = sqlite3_column_blob(r->impl, (int)col);
	*len = (size_t)sqlite3_column_bytes(r->impl, (int)col);
	return p ? p : "";
}

static const struct store__row_ops sqlite_row_ops = {
    .columns = row_columns,
    .name = row_name,
    .type = row_type,
    .get_int = row_int,
    .get_text = row_text,
    .get_blob = row_blob,
};

/*
 * Run every statement in sql (parameters bind to a single statement only), calling fn for the
 * rows of each when fn is set.
 */
static int run(struct store_conn *c, const char *sql, const struct store_value *params,
               size_t nparams, int64_t *changes, store_row_fn fn, void *ctx, struct st_error **err)
{
	const char *p = sql;
	bool first = true;
	while (!only_space(p)) {
		sqlite3_stmt *st = NULL;
		const char *tail = NULL;
		int rc = sqlite3_prepare_v2(c->db, p, -1, &st, &tail);
		if (rc != SQLITE_OK)
			return sqlite_error(c->db, rc, err, "prepare");
		if (st == NULL) { /* comment or whitespace only */
			p = tail;
			continue;
		}
		if (nparams > 0 && (!first || !only_space(tail))) {
			sqlite3_finalize(st);
			return store__error(
			    err, EINVAL, "a statement with parameters must be the only statement");
		}
		int r = bind_params(c->db, st, params, first ? nparams : 0, err);
		if (r < 0) {
			sqlite3_finalize(st);
			return r;
		}
		struct store_row row = {.ops = &sqlite_row_ops, .impl = st};
		bool stop = false;
		for (;;) {
			rc = sqlite3_step(st);
			if (rc == SQLITE_DONE)
				break;
			if (rc != SQLITE_ROW) {
				r = sqlite_error(c->db, rc, err, "step");
				sqlite3_finalize(st);
				return r;
			}
			if (fn && !stop) {
				r = fn(ctx, &row, err);
				if (r < 0) {
					sqlite3_finalize(st);
					return r;
				}
				if (r > 0) {
					stop = true;
					break;
				}
			}
		}
		if (changes)
			*changes = sqlite3_changes64(c->db);
		sqlite3_finalize(st);
		first = false;
		p = tail;
		if (stop)
			break;
	}
	return 0;
}

static int sqlite_exec(struct store *s, struct store_conn *c, const char *sql,
                       const struct store_value *params, size_t nparams, int64_t *changes,
                       bool in_tx, struct st_error **err)
{
	return run(c, sql, params, nparams, changes, NULL, NULL, err);
}

static int sqlite_query(struct store *s, struct store_conn *c, const char *sql,
                        const struct store_value *params, size_t nparams, store_row_fn fn,
                        void *ctx, bool in_tx, struct st_error **err)
{
	return run(c, sql, params, nparams, NULL, fn, ctx, err);
}

static int simple(struct store_conn *c, const char *sql, struct st_error **err)
{
	char *emsg = NULL;
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, &emsg);
	if (rc != SQLITE_OK) {
		sqlite3_free(emsg);
		return sqlite_error(c->db, rc, err, sql);
	}
	return 0;
}

static int sqlite_begin(struct store_conn *c, struct st_error **err)
{
	return simple(c, "BEGIN IMMEDIATE", err);
}

static int sqlite_commit(struct store_conn *c, struct st_error **err)
{
	return simple(c, "COMMIT", err);
}

static void sqlite_rollback(struct store_conn *c)
{
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

const struct store__ops store__sqlite_ops = {
    .name = "sqlite",
    .connect = sqlite_connect,
    .disconnect = sqlite_disconnect,
    .check = sqlite_check,
    .exec = sqlite_exec,
    .query = sqlite_query,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .lock = NULL,
    .unlock = NULL,
    .create_ns = NULL,
};
