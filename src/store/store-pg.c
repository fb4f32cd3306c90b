/*
 * store-pg.c - the Postgres backend (libpq): one PGconn per pooled store_conn, every session
 * with search_path set to the handle's schema and client_min_messages at warning (the NOTICEs of
 * CREATE ... IF NOT EXISTS are noise). Results come back in text format (bytea unescaped on
 * access); blob parameters go in binary, integers as int8, text untyped so Postgres infers.
 *
 * Reconnects. A connection sitting in the pool cannot notice that the server went away until
 * it is used; store.c calls pg_check() before lending it out, which polls the socket, lets libpq
 * consume whatever arrived (a FATAL "terminating connection" or EOF) and, when the connection
 * is bad, re-establishes it with PQreset, retrying with backoff for up to busy_ms while the
 * server restarts. That makes the first statement after a restart succeed without guessing.
 * A statement that loses its connection while in flight is retried once only when it is a read
 * outside a transaction; otherwise the caller gets -ECONNRESET, because a write may or may not
 * have been committed and only the caller can decide whether repeating it is safe.
 */
#include <libpq-fe.h>
#include <poll.h>
#include <time.h>

#include "store/store-internal.h"

/* Type OIDs from pg_type.h (not installed with the client headers). */
#define PG_BOOLOID 16
#define PG_BYTEAOID 17
#define PG_INT8OID 20
#define PG_INT2OID 21
#define PG_INT4OID 23
#define PG_OIDOID 26
#define PG_NUMERICOID 1700

struct store_conn {
	PGconn *pg;
};

static void quiet_notices(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static char *pg_message(const char *m)
{
	char *s = st_xstrdup(m && *m ? m : "unknown error");
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
	/* libpq messages are several lines; keep them on one. */
	for (char *p = s; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return s;
}

static int session_setup(struct store *s, PGconn *pg, struct st_error **err)
{
	PQsetNoticeProcessor(pg, quiet_notices, NULL);
	cleanup_free char *sql =
	    st_xasprintf("SET search_path TO %s; SET client_min_messages TO warning", s->pg_schema);
	PGresult *res = PQexec(pg, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		cleanup_free char *m = pg_message(PQerrorMessage(pg));
		PQclear(res);
		return store__error(err, EIO, "cannot set up postgres session: %s", m);
	}
	PQclear(res);
	return 0;
}

static int pg_connect(struct store *s, struct store_conn **out, struct st_error **err)
{
	PGconn *pg = PQconnectdb(s->pg_conninfo);
	if (pg == NULL)
		return store__error(err, ENOMEM, "cannot allocate a postgres connection");
	if (PQstatus(pg) != CONNECTION_OK) {
		cleanup_free char *m = pg_message(PQerrorMessage(pg));
		PQfinish(pg);
		return store__error(err, ECONNREFUSED,
		                    "cannot connect to postgres: %s (check the connection string "
		                    "and that the server is running)",
		                    m);
	}
	int r = session_setup(s, pg, err);
	if (r < 0) {
		PQfinish(pg);
		return r;
	}
	struct store_conn *c = st_xcalloc(1, sizeof(*c));
	c->pg = pg;
	*out = c;
	return 0;
}

static void pg_disconnect(struct store_conn *c)
{
	if (c == NULL)
		return;
	PQfinish(c->pg);
	free(c);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Re-establish a broken connection, waiting up to busy_ms for the server to come back. */
static int pg_reconnect(struct store *s, struct store_conn *c, struct st_error **err)
{
	int64_t deadline = st_now_ms() + s->busy_ms;
	long backoff = 50;
	for (;;) {
		PQreset(c->pg);
		if (PQstatus(c->pg) == CONNECTION_OK) {
			int r = session_setup(s, c->pg, err);
			if (r == 0)
				st_log(ST_LOG_INFO, "store '%s': reconnected to postgres", s->ns);
			return r;
		}
		if (st_now_ms() + backoff > deadline) {
			cleanup_free char *m = pg_message(PQerrorMessage(c->pg));
			return store__error(err, ECONNREFUSED,
			                    "lost the postgres connection and could not reconnect "
			                    "within %u ms: %s",
			                    s->busy_ms, m);
		}
		sleep_ms(backoff);
		backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
	}
}

static int pg_check(struct store *s, struct store_conn *c, struct st_error **err)
{
	/*
	 * An idle connection has nothing to read unless the server spoke: a FATAL "terminating
	 * connection" and EOF when it shut down, or a notification. Reading once may only get the
	 * message (libpq notices EOF on a later read), so read until the socket is drained, then
	 * confirm with an empty query that the connection still answers.
	 */
	bool spoke = false;
	for (int i = 0; i < 8 && PQstatus(c->pg) == CONNECTION_OK; i++) {
		struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN};
		if (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0)
			break;
		spoke = true;
		if (PQconsumeInput(c->pg) != 1)
			break;
		PGnotify *n;
		while ((n = PQnotifies(c->pg)) != NULL)
			PQfreemem(n);
	}
	if (spoke && PQstatus(c->pg) == CONNECTION_OK) {
		PGresult *res = PQexec(c->pg, "");
		PQclear(res);
	}
	if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) == PQTRANS_IDLE)
		return 0;
	if (PQstatus(c->pg) == CONNECTION_OK) {
		/* A connection handed back mid-transaction (a bug elsewhere): discard its state. */
		PGresult *res = PQexec(c->pg, "ROLLBACK");
		PQclear(res);
		if (PQstatus(c->pg) == CONNECTION_OK)
			return 0;
	}
	return pg_reconnect(s, c, err);
}

static int result_error(struct store_conn *c, PGresult *res, struct st_error **err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	cleanup_free char *m = pg_message(primary ? primary : PQerrorMessage(c->pg));
	int code = EIO;
	if (PQstatus(c->pg) != CONNECTION_OK)
		code = ECONNRESET;
	else if (state && strcmp(state, "23505") == 0)
		code = EEXIST;
	else if (state && (strncmp(state, "23", 2) == 0 || strncmp(state, "42", 2) == 0 ||
	                   strncmp(state, "22", 2) == 0))
		code = EINVAL;
	else if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0))
		code = EAGAIN;
	else if (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0))
		code = ECONNRESET;
	st_error_make(err, 0, "postgres: %s%s%s%s", m, state ? " (SQLSTATE " : "",
	              state ? state : "", state ? ")" : "");
	if (err && *err)
		(*err)->code = code;
	return -code;
}

/* ---- rows ---- */

struct pg_cursor {
	PGresult *res;
	int row;
	unsigned char **unesc; /* per column, bytea values unescaped on demand */
	size_t *unesc_len;
};

static size_t row_columns(const struct store_row *r)
{
	const struct pg_cursor *cur = r->impl;
	return (size_t)PQnfields(cur->res);
}

static const char *row_name(const struct store_row *r, size_t col)
{
	const struct pg_cursor *cur = r->impl;
	return PQfname(cur->res, (int)col);
}

static enum store_type row_type(const struct store_row *r, size_t col)
{
	const struct pg_cursor *cur = r->impl;
	if (PQgetisnull(cur->res, cur->row, (int)col))
		return STORE_NULL;
	switch (PQftype(cur->res, (int)col)) {
	case PG_BOOLOID:
	case PG_INT8OID:
	case PG_INT2OID:
	case PG_INT4OID:
	case PG_OIDOID: return STORE_INT;
	case PG_BYTEAOID: return STORE_BLOB;
	case PG_NUMERICOID: {
		/* SUM() and friends return numeric on Postgres; integral values are integers on
		 * SQLite, so report them the same way. */
		int64_t v = 0;
		return st_parse_i64(PQgetvalue(cur->res, cur->row, (int)col), &v) == 0 ? STORE_INT
		                                                                       : STORE_TEXT;
	}
	default: return STORE_TEXT;
	}
}

static int64_t row_int(const struct store_row *r, size_t col)
{
	const struct pg_cursor *cur = r->impl;
	const char *v = PQgetvalue(cur->res, cur->row, (int)col);
	if (PQftype(cur->res, (int)col) == PG_BOOLOID)
		return v[0] == 't';
	int64_t out = 0;
	if (st_parse_i64(v, &out) < 0)
		return 0;
	return out;
}

static const char *row_text(const struct store_row *r, size_t col)
{
	const struct pg_cursor *cur = r->impl;
	return PQgetvalue(cur->res, cur->row, (int)col);
}

static const void *row_blob(const struct store_row *r, size_t col, size_t *len)
{
	struct pg_cursor *cur = r->impl;
	const char *v = PQgetvalue(cur->res, cur->row, (int)col);
	if (PQftype(cur->res, (int)col) != PG_BYTEAOID) {
		*len = strlen(v);
		return v;
	}
	if (cur->unesc[col] == NULL) {
		size_t n = 0;
		cur->unesc[col] = PQunescapeBytea((const unsigned char *)v, &n);
		if (cur->unesc[col] == NULL) {
			*len = 0;
			return "";
		}
		cur->unesc_len[col] = n;
	}
	*len = cur->unesc_len[col];
	return cur->unesc[col];
}

static const struct store__row_ops pg_row_ops = {
    .columns = row_columns,
    .name = row_name,
    .type = row_type,
    .get_int = row_int,
    .get_text = row_text,
    .get_blob = row_blob,
};

/* ---- statements ---- */

static PGresult *pg_send(struct store_conn *c, const char *sql, const struct store_value *params,
                         size_t nparams, bool multi)
{
	if (nparams == 0 && multi)
		return PQexec(c->pg, sql);
	Oid *types = st_xcalloc(nparams + 1, sizeof(*types));
	const char **values = st_xcalloc(nparams + 1, sizeof(*values));
	int *lengths = st_xcalloc(nparams + 1, sizeof(*lengths));
	int *formats = st_xcalloc(nparams + 1, sizeof(*formats));
	char(*ints)[24] = st_xcalloc(nparams + 1, sizeof(*ints));
	for (size_t i = 0; i < nparams; i++) {
		const struct store_value *v = &params[i];
		switch (v->type) {
		case STORE_INT:
			snprintf(ints[i], sizeof(ints[i]), "%lld", (long long)v->i);
			values[i] = ints[i];
			types[i] = PG_INT8OID;
			break;
		case STORE_TEXT: values[i] = v->s; break;
		case STORE_BLOB:
			values[i] = v->p ? v->p : "";
			lengths[i] = (int)v->len;
			formats[i] = 1;
			types[i] = PG_BYTEAOID;
			break;
		case STORE_NULL:
		default: values[i] = NULL; break;
		}
	}
	PGresult *res =
	    PQexecParams(c->pg, sql, (int)nparams, types, values, lengths, formats, 0 /* text */);
	free(types);
	free(values);
	free(lengths);
	free(formats);
	free(ints);
	return res;
}

/*
 * Send and, if the connection dropped under a read outside a transaction, reconnect and send
 * once more. On success *out is the result (caller PQclear()s).
 */
static int pg_run(struct store *s, struct store_conn *c, const char *sql,
                  const struct store_value *params, size_t nparams, bool multi, bool in_tx,
                  PGresult **out, struct st_error **err)
{
	*out = NULL;
	for (int attempt = 0;; attempt++) {
		PGresult *res = pg_send(c, sql, params, nparams, multi);
		ExecStatusType st = PQresultStatus(res);
		if (res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
			*out = res;
			return 0;
		}
		bool lost = PQstatus(c->pg) != CONNECTION_OK;
		if (lost && attempt == 0 && !in_tx && store__is_read(sql)) {
			PQclear(res);
			int r = pg_reconnect(s, c, err);
			if (r < 0)
				return r;
			continue;
		}
		int r = result_error(c, res, err);
		PQclear(res);
		if (lost || r == -ECONNRESET) {
			st_error_wrap(err,
			              "postgres connection lost; the statement may or may not have "
			              "been applied");
			r = -ECONNRESET;
		}
		return r;
	}
}

static int pg_exec(struct store *s, struct store_conn *c, const char *sql,
                   const struct store_value *params, size_t nparams, int64_t *changes, bool in_tx,
                   struct st_error **err)
{
	PGresult *res = NULL;
	int r = pg_run(s, c, sql, params, nparams, true, in_tx, &res, err);
	if (r < 0)
		return r;
	if (changes) {
		const char *t = PQcmdTuples(res);
		int64_t n = 0;
		if (t && *t && st_parse_i64(t, &n) == 0)
			*changes = n;
	}
	PQclear(res);
	return 0;
}

static int pg_query(struct store *s, struct store_conn *c, const char *sql,
                    const struct store_value *params, size_t nparams, store_row_fn fn, void *ctx,
                    bool in_tx, struct st_error **err)
{
	PGresult *res = NULL;
	int r = pg_run(s, c, sql, params, nparams, false, in_tx, &res, err);
	if (r < 0)
		return r;
	int nrows = PQntuples(res), ncols = PQnfields(res);
	struct pg_cursor cur = {
	    .res = res,
	    .unesc = st_xcalloc((size_t)ncols + 1, sizeof(*cur.unesc)),
	    .unesc_len = st_xcalloc((size_t)ncols + 1, sizeof(*cur.unesc_len)),
	};
	struct store_row row = {.ops = &pg_row_ops, .impl = &cur};
	for (int i = 0; i < nrows && fn; i++) {
		cur.row = i;
		r = fn(ctx, &row, err);
		for (int k = 0; k < ncols; k++) {
			if (cur.unesc[k])
				PQfreemem(cur.unesc[k]);
			cur.unesc[k] = NULL;
		}
		if (r != 0)
			break;
	}
	free(cur.unesc);
	free(cur.unesc_len);
	PQclear(res);
	return r < 0 ? r : 0;
}

static int simple(struct store_conn *c, const char *sql, struct st_error **err)
{
	PGresult *res = PQexec(c->pg, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		int r = result_error(c, res, err);
		PQclear(res);
		return r;
	}
	PQclear(res);
	return 0;
}

static int pg_begin(struct store_conn *c, struct st_error **err)
{
	return simple(c, "BEGIN", err);
}

static int pg_commit(struct store_conn *c, struct st_error **err)
{
	return simple(c, "COMMIT", err);
}

static void pg_rollback(struct store_conn *c)
{
	if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		PGresult *res = PQexec(c->pg, "ROLLBACK");
		PQclear(res);
	}
}

static int pg_lock(struct store *s, struct store_conn *c, int64_t key, struct st_error **err)
{
	struct store_value v = store_int(key);
	PGresult *res = NULL;
	int r = pg_run(s, c, "SELECT pg_advisory_lock($1)", &v, 1, false, true, &res, err);
	if (r < 0) {
		st_error_wrap(err, "cannot take the migration lock");
		return r;
	}
	PQclear(res);
	return 0;
}

static void pg_unlock(struct store_conn *c, int64_t key)
{
	if (PQstatus(c->pg) != CONNECTION_OK)
		return; /* the server released it with the session */
	struct store_value v = store_int(key);
	PGresult *res = pg_send(c, "SELECT pg_advisory_unlock($1)", &v, 1, false);
	PQclear(res);
}

static int pg_create_ns(struct store *s, struct store_conn *c, struct st_error **err)
{
	cleanup_free char *sql = st_xasprintf("CREATE SCHEMA IF NOT EXISTS %s", s->pg_schema);
	int r = simple(c, sql, err);
	if (r < 0)
		return st_error_wrap(err, "cannot create schema '%s'", s->pg_schema);
	return 0;
}

const struct store__ops store__pg_ops = {
    .name = "postgres",
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .check = pg_check,
    .exec = pg_exec,
    .query = pg_query,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .lock = pg_lock,
    .unlock = pg_unlock,
    .create_ns = pg_create_ns,
};
