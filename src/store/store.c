/*
 * store.c - the backend-independent half of the state store: opening a handle, the connection
 * pool, the portable SQL dialect ({ns}, {blob}, {id}, `?`), row accessors, JSON results and
 * transactions. Backends live in store-sqlite.c and store-pg.c; migrations in store-migrate.c.
 *
 * Invariants:
 *  1. A connection is used by one thread at a time: it is either idle in the pool or lent to
 *     exactly one call (or pinned by one store_tx for its whole duration).
 *  2. `total` never exceeds `max`; a caller that finds the pool empty and full waits on `cv`.
 *  3. A transaction handle never outlives the store_tx call that made it and never touches the
 *     pool; its calls go straight to the pinned connection.
 *
 * Handle lifecycle: store_open (connect one connection, bootstrap bookkeeping) -> calls from any
 * thread -> store_free (stop the data-migration thread, disconnect everything).
 */
#include "store/store-internal.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <time.h>

/* ---- dialect ---------------------------------------------------------------------------- */

static bool ns_is_valid(const char *ns)
{
	if (ns == NULL || !islower((unsigned char)ns[0]))
		return false;
	size_t n = strlen(ns);
	if (n > 40)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!islower((unsigned char)ns[i]) && !isdigit((unsigned char)ns[i]) &&
		    ns[i] != '_')
			return false;
	return true;
}

/*
 * One pass over the SQL text that skips literals, quoted identifiers and comments so a `?` or
 * `{` inside them is never rewritten.
 */
char *store__expand(enum store_backend backend, const char *ns, const char *sql)
{
	struct st_buf b;
	st_buf_init(&b, SIZE_MAX);
	bool pg = backend == STORE_POSTGRES;
	int param = 0;
	const char *p = sql;
	while (*p) {
		char c = *p;
		if (c == '\'' || c == '"') {
			const char *q = p + 1;
			while (*q) {
				if (*q == c && q[1] == c) {
					q += 2;
					continue;
				}
				if (*q == c)
					break;
				q++;
			}
			if (*q)
				q++;
			if (st_buf_append(&b, p, (size_t)(q - p)) < 0)
				abort();
			p = q;
			continue;
		}
		if (c == '-' && p[1] == '-') {
			const char *q = strchr(p, '\n');
			q = q ? q : p + strlen(p);
			if (st_buf_append(&b, p, (size_t)(q - p)) < 0)
				abort();
			p = q;
			continue;
		}
		if (c == '/' && p[1] == '*') {
			const char *q = strstr(p + 2, "*/");
			q = q ? q + 2 : p + strlen(p);
			if (st_buf_append(&b, p, (size_t)(q - p)) < 0)
				abort();
			p = q;
			continue;
		}
		int r = 0;
		if (c == '?') {
			if (pg)
				r = st_buf_appendf(&b, "$%d", ++param);
			else
				r = st_buf_append(&b, "?", 1);
			p++;
		} else if (st_str_has_prefix(p, "{ns}")) {
			if (!pg)
				r = st_buf_appendf(&b, "%s_", ns);
			p += 4;
		} else if (st_str_has_prefix(p, "{blob}")) {
			r = st_buf_appendf(&b, "%s", pg ? "BYTEA" : "BLOB");
			p += 6;
		} else if (st_str_has_prefix(p, "{id}")) {
			r = st_buf_appendf(&b, "%s",
			                   pg ? "BIGSERIAL PRIMARY KEY"
			                      : "INTEGER PRIMARY KEY AUTOINCREMENT");
			p += 4;
		} else {
			r = st_buf_append(&b, p, 1);
			p++;
		}
		if (r < 0)
			abort();
	}
	if (b.data == NULL)
		return st_xstrdup("");
	return st_buf_steal(&b);
}

bool store__is_read(const char *sql)
{
	while (isspace((unsigned char)*sql) || *sql == '(')
		sql++;
	return strncasecmp(sql, "select", 6) == 0 || strncasecmp(sql, "values", 6) == 0 ||
	       (strncasecmp(sql, "with", 4) == 0 && strcasestr(sql, "insert") == NULL &&
	        strcasestr(sql, "update") == NULL && strcasestr(sql, "delete") == NULL);
}

void store__sha256_hex(const char *s, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	if (EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL) != 1)
		len = 0;
	static const char hex[] = "0123456789abcdef";
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = i < len ? hex[md[i] >> 4] : '0';
		out[2 * i + 1] = i < len ? hex[md[i] & 15] : '0';
	}
	out[64] = '\0';
}

int64_t store__lock_key(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ULL;
	const char *parts[] = {"stockade-store", a, b};
	for (size_t k = 0; k < ST_ARRAY_SIZE(parts); k++) {
		for (const char *p = parts[k]; p && *p; p++) {
			h ^= (unsigned char)*p;
			h *= 1099511628211ULL;
		}
		h ^= ':';
		h *= 1099511628211ULL;
	}
	return (int64_t)(h & 0x7fffffffffffffffULL);
}

int store__error(struct st_error **err, int code, const char *fmt, ...)
{
	if (err == NULL || *err != NULL)
		return -code;
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	st_error_make(err, 0, "%s", msg ? msg : "out of memory while formatting an error");
	free(msg);
	if (*err)
		(*err)->code = code;
	return -code;
}

int64_t store__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *store_expand_sql(const struct store *s, const char *sql)
{
	return store__expand(s->backend, s->ns, sql);
}

/* ---- pool ------------------------------------------------------------------------------- */

int store__conn_get(struct store *s, struct store_conn **out, struct st_error **err)
{
	if (s->pinned) {
		*out = s->pinned;
		return 0;
	}
	struct store *root = store__root(s);
	pthread_mutex_lock(&root->mu);
	for (;;) {
		if (root->nidle > 0) {
			struct store_conn *c = root->idle[--root->nidle];
			pthread_mutex_unlock(&root->mu);
			int r = root->ops->check(root, c, err);
			if (r < 0) {
				/* Keep the broken connection in the pool: the next check retries it. */
				pthread_mutex_lock(&root->mu);
				root->idle[root->nidle++] = c;
				pthread_cond_signal(&root->cv);
				pthread_mutex_unlock(&root->mu);
				return r;
			}
			*out = c;
			return 0;
		}
		if (root->total < root->max) {
			root->total++;
			pthread_mutex_unlock(&root->mu);
			int r = root->ops->connect(root, out, err);
			if (r < 0) {
				pthread_mutex_lock(&root->mu);
				root->total--;
				pthread_cond_signal(&root->cv);
				pthread_mutex_unlock(&root->mu);
			}
			return r;
		}
		pthread_cond_wait(&root->cv, &root->mu);
	}
}

void store__conn_put(struct store *s, struct store_conn *c)
{
	if (s->pinned)
		return;
	struct store *root = store__root(s);
	pthread_mutex_lock(&root->mu);
	root->idle[root->nidle++] = c;
	pthread_cond_signal(&root->cv);
	pthread_mutex_unlock(&root->mu);
}

/* ---- open / free ------------------------------------------------------------------------ */

int store_open(const struct store_options *opts, struct store **out, struct st_error **err)
{
	*out = NULL;
	if (!ns_is_valid(opts->ns))
		return store__error(
		    err, EINVAL,
		    "invalid store namespace '%s': use 1-40 characters a-z, 0-9 and _, "
		    "starting with a letter",
		    opts->ns ? opts->ns : "");
	struct store *s = st_xcalloc(1, sizeof(*s));
	s->backend = opts->backend;
	s->ns = st_xstrdup(opts->ns);
	s->busy_ms = opts->busy_timeout_ms ? opts->busy_timeout_ms : 10000;
	s->stale_ms = opts->data_migration_stale_ms ? opts->data_migration_stale_ms : 60000;
	s->max = opts->pool_size ? opts->pool_size : STORE_POOL_DEFAULT;
	s->idle = st_xcalloc(s->max, sizeof(*s->idle));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_mutex_init(&s->dm_mu, NULL);
	pthread_cond_init(&s->dm_cv, NULL);
	char host[64] = "host";
	if (gethostname(host, sizeof(host) - 1) < 0)
		st_strlcpy(host, "host", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	unsigned rnd = (unsigned)(st_now_us() ^ (uint64_t)getpid() << 16);
	snprintf(s->owner, sizeof(s->owner), "%s:%d:%08x", host, (int)getpid(), rnd);

	switch (opts->backend) {
	case STORE_SQLITE:
		if (opts->sqlite_path == NULL || opts->sqlite_path[0] == '\0') {
			store_free(s);
			return store__error(err, EINVAL, "sqlite store needs a database path");
		}
		s->ops = &store__sqlite_ops;
		s->sqlite_path = st_xstrdup(opts->sqlite_path);
		break;
	case STORE_POSTGRES:
		if (opts->pg_conninfo == NULL) {
			store_free(s);
			return store__error(err, EINVAL,
			                    "postgres store needs a connection string");
		}
		if (opts->pg_schema && !ns_is_valid(opts->pg_schema)) {
			store_free(s);
			return store__error(
			    err, EINVAL,
			    "invalid postgres schema '%s': use 1-40 characters a-z, 0-9 "
			    "and _, starting with a letter",
			    opts->pg_schema);
		}
		s->ops = &store__pg_ops;
		s->pg_conninfo = st_xstrdup(opts->pg_conninfo);
		s->pg_schema = st_xstrdup(opts->pg_schema ? opts->pg_schema : opts->ns);
		break;
	default:
		store_free(s);
		return store__error(err, EINVAL, "unknown store backend %d", (int)opts->backend);
	}

	int r = store__bootstrap(s, err);
	if (r < 0) {
		store_free(s);
		return r;
	}
	*out = s;
	return 0;
}

int store_open_sqlite(const char *path, const char *ns, struct store **out, struct st_error **err)
{
	struct store_options o = {.backend = STORE_SQLITE, .sqlite_path = path, .ns = ns};
	return store_open(&o, out, err);
}

int store_open_pg(const char *conninfo, const char *ns, struct store **out, struct st_error **err)
{
	struct store_options o = {.backend = STORE_POSTGRES, .pg_conninfo = conninfo, .ns = ns};
	return store_open(&o, out, err);
}

void store_free(struct store *s)
{
	if (s == NULL || s->parent)
		return;
	store__dm_stop(s);
	pthread_mutex_lock(&s->mu);
	/* Every lent connection must be back: callers finish their calls before freeing. */
	for (size_t i = 0; i < s->nidle; i++)
		s->ops->disconnect(s->idle[i]);
	s->nidle = 0;
	pthread_mutex_unlock(&s->mu);
	store__dm_release(s);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->dm_mu);
	pthread_cond_destroy(&s->dm_cv);
	free(s->idle);
	free(s->ns);
	free(s->sqlite_path);
	free(s->pg_conninfo);
	free(s->pg_schema);
	free(s);
}

enum store_backend store_backend(const struct store *s)
{
	return s->backend;
}

const char *store_ns(const struct store *s)
{
	return s->ns;
}

const char *store_backend_name(const struct store *s)
{
	return s->backend == STORE_POSTGRES ? "postgres" : "sqlite";
}

/* ---- statements ------------------------------------------------------------------------- */

int store_exec(struct store *s, const char *sql, const struct store_value *params, size_t nparams,
               int64_t *changes, struct st_error **err)
{
	if (changes)
		*changes = 0;
	struct store_conn *c = NULL;
	int r = store__conn_get(s, &c, err);
	if (r < 0)
		return r;
	cleanup_free char *x = store__expand(s->backend, s->ns, sql);
	r = s->ops->exec(store__root(s), c, x, params, nparams, changes, s->pinned != NULL, err);
	store__conn_put(s, c);
	return r;
}

int store_query(struct store *s, const char *sql, const struct store_value *params, size_t nparams,
                store_row_fn fn, void *ctx, struct st_error **err)
{
	struct store_conn *c = NULL;
	int r = store__conn_get(s, &c, err);
	if (r < 0)
		return r;
	cleanup_free char *x = store__expand(s->backend, s->ns, sql);
	r = s->ops->query(store__root(s), c, x, params, nparams, fn, ctx, s->pinned != NULL, err);
	store__conn_put(s, c);
	return r;
}

/* ---- rows ------------------------------------------------------------------------------- */

size_t store_row_columns(const struct store_row *r)
{
	return r->ops->columns(r);
}

const char *store_row_name(const struct store_row *r, size_t col)
{
	return col < r->ops->columns(r) ? r->ops->name(r, col) : NULL;
}

bool store_row_is_null(const struct store_row *r, size_t col)
{
	return col >= r->ops->columns(r) || r->ops->type(r, col) == STORE_NULL;
}

int64_t store_row_int(const struct store_row *r, size_t col)
{
	return store_row_is_null(r, col) ? 0 : r->ops->get_int(r, col);
}

const char *store_row_text(const struct store_row *r, size_t col)
{
	return store_row_is_null(r, col) ? NULL : r->ops->get_text(r, col);
}

const void *store_row_blob(const struct store_row *r, size_t col, size_t *len)
{
	*len = 0;
	return store_row_is_null(r, col) ? NULL : r->ops->get_blob(r, col, len);
}

struct json_rows {
	json_t *rows;
	bool first_only;
};

static json_t *row_to_json(const struct store_row *r)
{
	json_t *o = json_object();
	size_t n = store_row_columns(r);
	for (size_t i = 0; i < n; i++) {
		json_t *v = NULL;
		switch (r->ops->type(r, i)) {
		case STORE_NULL: v = json_null(); break;
		case STORE_INT: v = json_integer(r->ops->get_int(r, i)); break;
		case STORE_TEXT:
			v = json_string(r->ops->get_text(r, i));
			if (v ==
			    NULL) /* not UTF-8: keep the bytes visible rather than dropping them */
				v = json_stringn_nocheck(r->ops->get_text(r, i),
				                         strlen(r->ops->get_text(r, i)));
			break;
		case STORE_BLOB: {
			size_t len = 0;
			const unsigned char *p = r->ops->get_blob(r, i, &len);
			size_t cap = 4 * ((len + 2) / 3) + 1;
			char *b64 = st_xmalloc(cap);
			int m = EVP_EncodeBlock((unsigned char *)b64,
			                        p ? p : (const unsigned char *)"", (int)len);
			v = json_stringn(b64, m > 0 ? (size_t)m : 0);
			free(b64);
			break;
		}
		default: v = json_null(); break;
		}
		json_object_set_new(o, r->ops->name(r, i), v);
	}
	return o;
}

static int json_row_cb(void *ctx, const struct store_row *row, struct st_error **err)
{
	struct json_rows *jr = ctx;
	json_array_append_new(jr->rows, row_to_json(row));
	return jr->first_only ? 1 : 0;
}

int store_query_json(struct store *s, const char *sql, const struct store_value *params,
                     size_t nparams, json_t **rows, struct st_error **err)
{
	struct json_rows jr = {.rows = json_array()};
	int r = store_query(s, sql, params, nparams, json_row_cb, &jr, err);
	if (r < 0) {
		json_decref(jr.rows);
		*rows = NULL;
		return r;
	}
	*rows = jr.rows;
	return 0;
}

int store_query_one(struct store *s, const char *sql, const struct store_value *params,
                    size_t nparams, json_t **row, struct st_error **err)
{
	*row = NULL;
	struct json_rows jr = {.rows = json_array(), .first_only = true};
	int r = store_query(s, sql, params, nparams, json_row_cb, &jr, err);
	if (r < 0) {
		json_decref(jr.rows);
		return r;
	}
	if (json_array_size(jr.rows) == 0) {
		json_decref(jr.rows);
		return store__error(err, ENOENT, "no row");
	}
	*row = json_incref(json_array_get(jr.rows, 0));
	json_decref(jr.rows);
	return 0;
}

struct int_result {
	int64_t v;
	bool found;
};

static int int_row_cb(void *ctx, const struct store_row *row, struct st_error **err)
{
	struct int_result *ir = ctx;
	ir->v = store_row_int(row, 0);
	ir->found = true;
	return 1;
}

int store_query_int(struct store *s, const char *sql, const struct store_value *params,
                    size_t nparams, int64_t *out, struct st_error **err)
{
	struct int_result ir = {0};
	int r = store_query(s, sql, params, nparams, int_row_cb, &ir, err);
	if (r < 0)
		return r;
	if (!ir.found)
		return store__error(err, ENOENT, "no row");
	*out = ir.v;
	return 0;
}

/* ---- transactions ----------------------------------------------------------------------- */

void store__view_init(struct store *view, struct store *s, struct store_conn *c)
{
	memset(view, 0, sizeof(*view));
	view->backend = s->backend;
	view->ops = s->ops;
	view->ns = s->ns;
	view->busy_ms = s->busy_ms;
	view->stale_ms = s->stale_ms;
	view->parent = store__root(s);
	view->pinned = c;
}

int store_tx(struct store *s, store_tx_fn fn, void *ctx, struct st_error **err)
{
	if (s->pinned)
		return store__error(err, EINVAL, "transactions do not nest");
	struct store_conn *c = NULL;
	int r = store__conn_get(s, &c, err);
	if (r < 0)
		return r;
	r = s->ops->begin(c, err);
	if (r < 0) {
		store__conn_put(s, c);
		return r;
	}
	struct store tx;
	store__view_init(&tx, s, c);
	r = fn(&tx, ctx, err);
	if (r < 0) {
		s->ops->rollback(c);
	} else {
		r = s->ops->commit(c, err);
		if (r < 0)
			s->ops->rollback(c);
		else
			r = 0;
	}
	store__conn_put(s, c);
	return r;
}
