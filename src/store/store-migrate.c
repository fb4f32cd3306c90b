/*
 * store-migrate.c - schema migrations and background data migrations, on top of the portable
 * statements of store.c.
 *
 * Bookkeeping lives in each namespace:
 *   {ns}schema_migrations (component, version, name, applied_at, checksum)  PK(component,version)
 *   {ns}data_migrations   (name PK, description, state, error, attempts, created_at,
 *                          started_at, finished_at, owner, heartbeat_at)
 *
 * Schema migrations: applied in version order, each in its own transaction together with its
 * bookkeeping row. Exactly-once across processes comes from two layers: on Postgres a session
 * advisory lock keyed on namespace+component serialises whole runs; on both engines each
 * migration re-checks "already applied?" inside its write transaction (BEGIN IMMEDIATE on
 * SQLite takes the database write lock, so a second process waits and then sees the row).
 *
 * Data migrations, states and who moves them:
 *
 *   (register) -> pending --runner claims--> running --run() ok--> done
 *                    ^                          |   \--run() fails--> failed
 *                    |                          |                        |
 *                    +------ admin retry -------+-(only when stale)------+
 *
 *   - Claiming is one conditional UPDATE (state pending, or running with a heartbeat older than
 *     stale_ms), so exactly one runner among all replicas wins.
 *   - The runner refreshes heartbeat_at every stale_ms/4 from a helper thread while run() works;
 *     a runner that died leaves a stale heartbeat, which makes the row claimable and retryable.
 *   - A failed migration stays failed until an admin retries it; the service keeps working and
 *     status/healthz report it. Retry of a live running migration is refused (-EBUSY).
 *   - A newer release calls store_check_upgrade_gate() and refuses to start over a failure.
 */
#include <time.h>

#include "store/store-internal.h"

/* ---- bookkeeping ------------------------------------------------------------------------ */

static const char bookkeeping_sql[] = "CREATE TABLE IF NOT EXISTS {ns}schema_migrations ("
                                      " component TEXT NOT NULL,"
                                      " version BIGINT NOT NULL,"
                                      " name TEXT NOT NULL,"
                                      " applied_at BIGINT NOT NULL,"
                                      " checksum TEXT,"
                                      " PRIMARY KEY (component, version));"
                                      "CREATE TABLE IF NOT EXISTS {ns}data_migrations ("
                                      " name TEXT PRIMARY KEY,"
                                      " description TEXT,"
                                      " state TEXT NOT NULL DEFAULT 'pending'"
                                      "  CHECK (state IN ('pending', 'running', 'done', 'failed')),"
                                      " error TEXT,"
                                      " attempts BIGINT NOT NULL DEFAULT 0,"
                                      " created_at BIGINT NOT NULL,"
                                      " started_at BIGINT,"
                                      " finished_at BIGINT,"
                                      " owner TEXT,"
                                      " heartbeat_at BIGINT);";

int store__bootstrap(struct store *s, struct st_error **err)
{
	struct store_conn *c = NULL;
	int r = store__conn_get(s, &c, err);
	if (r < 0)
		return r;
	int64_t key = store__lock_key(s->pg_schema ? s->pg_schema : s->ns, "bootstrap");
	/* Before the first goto: the error paths jump past its assignment. */
	cleanup_free char *sql = NULL;
	if (s->ops->lock && (r = s->ops->lock(s, c, key, err)) < 0)
		goto out;
	if (s->ops->create_ns && (r = s->ops->create_ns(s, c, err)) < 0)
		goto unlock;
	if ((r = s->ops->begin(c, err)) < 0)
		goto unlock;
	sql = store__expand(s->backend, s->ns, bookkeeping_sql);
	r = s->ops->exec(s, c, sql, NULL, 0, NULL, true, err);
	if (r == 0)
		r = s->ops->commit(c, err);
	if (r < 0)
		s->ops->rollback(c);
unlock:
	if (s->ops->unlock)
		s->ops->unlock(c, key);
out:
	store__conn_put(s, c);
	if (r < 0)
		st_error_wrap(err, "cannot prepare the %s store '%s'", s->ops->name, s->ns);
	return r;
}

/* ---- known schema migrations (process-wide, for the integrity check) --------------------- */

struct known_migration {
	enum store_backend backend;
	char *ns;
	char *component;
	int64_t version;
	char checksum[65];
};

static pthread_mutex_t known_mu = PTHREAD_MUTEX_INITIALIZER;
static struct known_migration *known;
static size_t nknown;

static void known_add(enum store_backend backend, const char *ns, const char *component,
                      int64_t version, const char *checksum)
{
	pthread_mutex_lock(&known_mu);
	for (size_t i = 0; i < nknown; i++) {
		struct known_migration *k = &known[i];
		if (k->backend == backend && k->version == version && strcmp(k->ns, ns) == 0 &&
		    strcmp(k->component, component) == 0) {
			pthread_mutex_unlock(&known_mu);
			return;
		}
	}
	struct known_migration *nk = realloc(known, (nknown + 1) * sizeof(*known));
	if (nk == NULL)
		abort();
	known = nk;
	known[nknown] = (struct known_migration){
	    .backend = backend,
	    .ns = st_xstrdup(ns),
	    .component = st_xstrdup(component),
	    .version = version,
	};
	st_strlcpy(known[nknown].checksum, checksum, sizeof(known[nknown].checksum));
	nknown++;
	pthread_mutex_unlock(&known_mu);
}

/* Copies the checksum into out; false when this process never saw the migration. */
static bool known_find(enum store_backend backend, const char *ns, const char *component,
                       int64_t version, char out[65])
{
	bool found = false;
	pthread_mutex_lock(&known_mu);
	for (size_t i = 0; i < nknown && !found; i++) {
		struct known_migration *k = &known[i];
		if (k->backend == backend && k->version == version && strcmp(k->ns, ns) == 0 &&
		    strcmp(k->component, component) == 0) {
			memcpy(out, k->checksum, 65);
			found = true;
		}
	}
	pthread_mutex_unlock(&known_mu);
	return found;
}

/* ---- declared migrations (process-wide) -------------------------------------------------- */

struct declared_set {
	const char *ns;
	const char *component;
	const struct store_migration *m;
	size_t n;
};

static struct declared_set *declared;
static size_t ndeclared;

void store_declare_migrations(const char *ns, const char *component,
                              const struct store_migration *migrations, size_t n)
{
	pthread_mutex_lock(&known_mu);
	size_t i = 0;
	while (i < ndeclared &&
	       !(strcmp(declared[i].ns, ns) == 0 && strcmp(declared[i].component, component) == 0))
		i++;
	if (i == ndeclared) {
		struct declared_set *nd = realloc(declared, (ndeclared + 1) * sizeof(*declared));
		if (nd == NULL)
			abort();
		declared = nd;
		ndeclared++;
	}
	declared[i] =
	    (struct declared_set){.ns = ns, .component = component, .m = migrations, .n = n};
	pthread_mutex_unlock(&known_mu);
}

/* A snapshot of the sets declared for ns (caller frees the array, not the entries). */
static struct declared_set *declared_for(const char *ns, size_t *n)
{
	pthread_mutex_lock(&known_mu);
	struct declared_set *out = st_xcalloc(ndeclared + 1, sizeof(*out));
	*n = 0;
	for (size_t i = 0; i < ndeclared; i++)
		if (strcmp(declared[i].ns, ns) == 0)
			out[(*n)++] = declared[i];
	pthread_mutex_unlock(&known_mu);
	return out;
}

/* ---- schema migrations ------------------------------------------------------------------ */

static const char *migration_sql(const struct store *s, const struct store_migration *m)
{
	if (s->backend == STORE_POSTGRES && m->sql_pg)
		return m->sql_pg;
	if (s->backend == STORE_SQLITE && m->sql_sqlite)
		return m->sql_sqlite;
	return m->sql;
}

struct checksum_row {
	bool found;
	char checksum[65];
};

static int checksum_cb(void *ctx, const struct store_row *row, struct st_error **err)
{
	struct checksum_row *cr = ctx;
	cr->found = true;
	const char *c = store_row_text(row, 0);
	st_strlcpy(cr->checksum, c ? c : "", sizeof(cr->checksum));
	return 1;
}

/* Apply one migration in its own transaction unless it is already recorded. */
static int apply_one(struct store *view, const char *component, const struct store_migration *m,
                     bool *did, struct st_error **err)
{
	struct store *root = store__root(view);
	struct store_conn *c = view->pinned;
	const char *sql = migration_sql(view, m);
	char sum[65];
	store__sha256_hex(sql, sum);
	*did = false;

	int r = root->ops->begin(c, err);
	if (r < 0)
		return r;
	/* Before the first goto: the error paths jump past its assignment. */
	cleanup_free char *x = NULL;
	struct checksum_row cr = {0};
	struct store_value key[] = {store_text(component), store_int(m->version)};
	r = store_query(view,
	                "SELECT checksum FROM {ns}schema_migrations WHERE component = ? AND "
	                "version = ?",
	                key, 2, checksum_cb, &cr, err);
	if (r < 0)
		goto fail;
	if (cr.found) {
		if (cr.checksum[0] && strcmp(cr.checksum, sum) != 0)
			st_log(
			    ST_LOG_WARN,
			    "store '%s': schema migration %s/%lld '%s' was applied with checksum "
			    "%.12s but this binary has %.12s; the migration text changed after "
			    "release",
			    root->ns, component, (long long)m->version, m->name, cr.checksum, sum);
		root->ops->rollback(c);
		return 0;
	}
	x = store__expand(view->backend, view->ns, sql);
	r = root->ops->exec(root, c, x, NULL, 0, NULL, true, err);
	if (r < 0) {
		st_error_wrap(err, "schema migration %s/%lld '%s' failed", component,
		              (long long)m->version, m->name);
		goto fail;
	}
	struct store_value row[] = {store_text(component), store_int(m->version),
	                            store_text(m->name), store_int(store__now_ms()),
	                            store_text(sum)};
	r = store_exec(view,
	               "INSERT INTO {ns}schema_migrations (component, version, name, applied_at, "
	               "checksum) VALUES (?, ?, ?, ?, ?)",
	               row, 5, NULL, err);
	if (r < 0)
		goto fail;
	r = root->ops->commit(c, err);
	if (r < 0)
		goto fail;
	*did = true;
	st_log(ST_LOG_INFO, "store '%s': applied schema migration %s/%lld '%s'", root->ns,
	       component, (long long)m->version, m->name);
	return 0;
fail:
	root->ops->rollback(c);
	return r;
}

int store_migrate(struct store *s, const char *component, const struct store_migration *migrations,
                  size_t n, int *applied, struct st_error **err)
{
	if (applied)
		*applied = 0;
	if (s->pinned)
		return store__error(err, EINVAL, "store_migrate cannot run inside a transaction");
	if (component == NULL || component[0] == '\0')
		return store__error(err, EINVAL, "schema migrations need a component name");
	for (size_t i = 0; i < n; i++) {
		const struct store_migration *m = &migrations[i];
		if (m->version <= 0 || (i > 0 && m->version <= migrations[i - 1].version))
			return store__error(
			    err, EINVAL,
			    "schema migrations of '%s' must have increasing positive "
			    "versions (entry %zu has %lld)",
			    component, i, (long long)m->version);
		if (m->name == NULL || migration_sql(s, m) == NULL)
			return store__error(err, EINVAL,
			                    "schema migration %s/%lld needs a name and SQL for %s",
			                    component, (long long)m->version, s->ops->name);
		char sum[65];
		store__sha256_hex(migration_sql(s, m), sum);
		known_add(s->backend, s->ns, component, m->version, sum);
	}
	int64_t newest = n > 0 ? migrations[n - 1].version : 0;

	struct store_conn *c = NULL;
	int r = store__conn_get(s, &c, err);
	if (r < 0)
		return r;
	struct store view;
	store__view_init(&view, s, c);
	int64_t key = store__lock_key(s->pg_schema ? s->pg_schema : s->ns, component);
	if (s->ops->lock && (r = s->ops->lock(s, c, key, err)) < 0) {
		store__conn_put(s, c);
		return r;
	}
	int64_t have = 0;
	struct store_value cp = store_text(component);
	r = store_query_int(&view,
	                    "SELECT COALESCE(MAX(version), 0) FROM {ns}schema_migrations WHERE "
	                    "component = ?",
	                    &cp, 1, &have, err);
	if (r == 0 && have > newest) {
		r = store__error(
		    err, EPROTO,
		    "the database schema of '%s' in %s store '%s' is at version %lld but "
		    "this stockade knows only up to version %lld: a newer release has "
		    "run against this database; run that release (or newer), or restore "
		    "a backup taken before the upgrade",
		    component, s->ops->name, s->ns, (long long)have, (long long)newest);
	}
	for (size_t i = 0; r == 0 && i < n; i++) {
		bool did = false;
		r = apply_one(&view, component, &migrations[i], &did, err);
		if (r == 0 && did && applied)
			(*applied)++;
	}
	if (s->ops->unlock)
		s->ops->unlock(c, key);
	store__conn_put(s, c);
	return r;
}

int store_migrate_declared(struct store *s, int *applied, struct st_error **err)
{
	if (applied)
		*applied = 0;
	size_t n = 0;
	struct declared_set *sets = declared_for(store__root(s)->ns, &n);
	int r = 0;
	for (size_t i = 0; r == 0 && i < n; i++) {
		int a = 0;
		r = store_migrate(s, sets[i].component, sets[i].m, sets[i].n, &a, err);
		if (applied)
			*applied += a;
	}
	free(sets);
	return r;
}

int store_schema_version(struct store *s, const char *component, int64_t *version,
                         struct st_error **err)
{
	struct store_value cp = store_text(component);
	return store_query_int(s,
	                       "SELECT COALESCE(MAX(version), 0) FROM {ns}schema_migrations "
	                       "WHERE component = ?",
	                       &cp, 1, version, err);
}

/* ---- data migrations: registry ---------------------------------------------------------- */

static struct store__dm_entry *dm_find(struct store *s, const char *name)
{
	for (size_t i = 0; i < s->ndm; i++)
		if (strcmp(s->dm[i].m.name, name) == 0)
			return &s->dm[i];
	return NULL;
}

int store_data_migration_register(struct store *s, const struct store_data_migration *m,
                                  struct st_error **err)
{
	s = store__root(s);
	if (m->name == NULL || m->name[0] == '\0' || m->run == NULL)
		return store__error(err, EINVAL, "a data migration needs a name and a function");
	struct store_value v[] = {store_text(m->name), store_text(m->description),
	                          store_int(store__now_ms())};
	int r =
	    store_exec(s,
	               "INSERT INTO {ns}data_migrations (name, description, state, attempts, "
	               "created_at) VALUES (?, ?, 'pending', 0, ?) ON CONFLICT (name) DO UPDATE "
	               "SET description = excluded.description",
	               v, 3, NULL, err);
	if (r < 0)
		return st_error_wrap(err, "cannot register data migration '%s'", m->name);
	pthread_mutex_lock(&s->dm_mu);
	struct store__dm_entry *e = dm_find(s, m->name);
	if (e == NULL) {
		struct store__dm_entry *n = realloc(s->dm, (s->ndm + 1) * sizeof(*s->dm));
		if (n == NULL)
			abort();
		s->dm = n;
		e = &s->dm[s->ndm++];
	}
	e->m = *m;
	pthread_mutex_unlock(&s->dm_mu);
	return 0;
}

/* ---- data migrations: running ----------------------------------------------------------- */

struct heartbeat {
	struct store *s;
	const char *name;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static void *heartbeat_main(void *arg)
{
	struct heartbeat *hb = arg;
	unsigned every = hb->s->stale_ms / 4 ? hb->s->stale_ms / 4 : 1;
	pthread_mutex_lock(&hb->mu);
	while (!hb->done) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += every / 1000;
		ts.tv_nsec += (long)(every % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&hb->cv, &hb->mu, &ts);
		if (hb->done)
			break;
		pthread_mutex_unlock(&hb->mu);
		struct st_error *e = NULL;
		struct store_value v[] = {store_int(store__now_ms()), store_text(hb->name),
		                          store_text(hb->s->owner)};
		if (store_exec(hb->s,
		               "UPDATE {ns}data_migrations SET heartbeat_at = ? WHERE name = ? AND "
		               "owner = ? AND state = 'running'",
		               v, 3, NULL, &e) < 0)
			st_log(ST_LOG_WARN, "data migration '%s': heartbeat failed: %s", hb->name,
			       st_error_msg(e));
		st_error_free(e);
		pthread_mutex_lock(&hb->mu);
	}
	pthread_mutex_unlock(&hb->mu);
	return NULL;
}

/* Claim and run one migration. *ran says whether this process ran it; *failed whether it
 * failed (its message goes to *err). */
static int dm_run_one(struct store *s, const struct store_data_migration *m, bool *ran,
                      bool *failed, struct st_error **err)
{
	*ran = false;
	*failed = false;
	int64_t now = store__now_ms();
	int64_t changes = 0;
	struct store_value claim[] = {store_text(s->owner), store_int(now), store_int(now),
	                              store_text(m->name), store_int(now - (int64_t)s->stale_ms)};
	int r = store_exec(s,
	                   "UPDATE {ns}data_migrations SET state = 'running', owner = ?, "
	                   "started_at = ?, heartbeat_at = ?, finished_at = NULL, error = NULL, "
	                   "attempts = attempts + 1 WHERE name = ? AND (state = 'pending' OR "
	                   "(state = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)))",
	                   claim, 5, &changes, err);
	if (r < 0)
		return st_error_wrap(err, "cannot claim data migration '%s'", m->name);
	if (changes != 1)
		return 0; /* someone else has it, or it is not pending */
	*ran = true;
	st_log(ST_LOG_INFO, "store '%s': data migration '%s' started", s->ns, m->name);

	struct heartbeat hb = {.s = s, .name = m->name};
	pthread_mutex_init(&hb.mu, NULL);
	pthread_cond_init(&hb.cv, NULL);
	pthread_t hb_thread;
	bool hb_ok = pthread_create(&hb_thread, NULL, heartbeat_main, &hb) == 0;

	struct st_error *merr = NULL;
	int mr = m->run(s, m->ctx, &merr);

	if (hb_ok) {
		pthread_mutex_lock(&hb.mu);
		hb.done = true;
		pthread_cond_broadcast(&hb.cv);
		pthread_mutex_unlock(&hb.mu);
		pthread_join(hb_thread, NULL);
	}
	pthread_mutex_destroy(&hb.mu);
	pthread_cond_destroy(&hb.cv);

	const char *emsg = mr < 0 ? (merr ? st_error_msg(merr) : "failed without a message") : NULL;
	now = store__now_ms();
	struct store_value fin[] = {store_text(mr < 0 ? "failed" : "done"),
	                            store_text(emsg),
	                            store_int(now),
	                            store_int(now),
	                            store_text(m->name),
	                            store_text(s->owner)};
	r = store_exec(s,
	               "UPDATE {ns}data_migrations SET state = ?, error = ?, finished_at = ?, "
	               "heartbeat_at = ? WHERE name = ? AND owner = ?",
	               fin, 6, NULL, err);
	if (mr < 0) {
		*failed = true;
		st_log(
		    ST_LOG_ERROR,
		    "store '%s': data migration '%s' failed: %s (the service keeps working; retry "
		    "with 'stockade migrate retry %s')",
		    s->ns, m->name, emsg, m->name);
		if (r == 0)
			store__error(err, -mr, "data migration '%s' failed: %s", m->name, emsg);
		st_error_free(merr);
		return r < 0 ? r : mr;
	}
	st_error_free(merr);
	if (r < 0)
		return st_error_wrap(err, "cannot record the result of data migration '%s'",
		                     m->name);
	st_log(ST_LOG_INFO, "store '%s': data migration '%s' done", s->ns, m->name);
	return 0;
}

struct names {
	char **v;
	size_t n;
};

static int names_cb(void *ctx, const struct store_row *row, struct st_error **err)
{
	struct names *nm = ctx;
	char **nv = realloc(nm->v, (nm->n + 1) * sizeof(*nm->v));
	if (nv == NULL)
		return store__error(err, ENOMEM, "out of memory");
	nm->v = nv;
	nm->v[nm->n++] = st_xstrdup(store_row_text(row, 0) ? store_row_text(row, 0) : "");
	return 0;
}

static bool names_has(const struct names *nm, const char *name)
{
	for (size_t i = 0; i < nm->n; i++)
		if (strcmp(nm->v[i], name) == 0)
			return true;
	return false;
}

int store_data_migrations_run_now(struct store *s, struct st_error **err)
{
	s = store__root(s);
	pthread_mutex_lock(&s->dm_mu);
	size_t n = s->ndm;
	struct store_data_migration *list = st_xcalloc(n + 1, sizeof(*list));
	for (size_t i = 0; i < n; i++)
		list[i] = s->dm[i].m;
	pthread_mutex_unlock(&s->dm_mu);

	/* Read first, claim only what could be claimed: the background thread polls this, and a
	 * poll should not write when there is nothing to do. */
	struct names cand = {0};
	struct store_value v = store_int(store__now_ms() - (int64_t)s->stale_ms);
	int ret = n == 0
	              ? 0
	              : store_query(s,
	                            "SELECT name FROM {ns}data_migrations WHERE state = 'pending' "
	                            "OR (state = 'running' AND (heartbeat_at IS NULL OR "
	                            "heartbeat_at < ?))",
	                            &v, 1, names_cb, &cand, err);
	for (size_t i = 0; ret == 0 && i < n; i++) {
		if (!names_has(&cand, list[i].name))
			continue;
		bool ran = false, failed = false;
		struct st_error *e = NULL;
		int r = dm_run_one(s, &list[i], &ran, &failed, &e);
		if (r < 0 && ret == 0) {
			ret = r;
			if (err && *err == NULL)
				*err = steal_pointer(&e);
		}
		st_error_free(e);
	}
	for (size_t i = 0; i < cand.n; i++)
		free(cand.v[i]);
	free(cand.v);
	free(list);
	return ret;
}

int store_data_migration_run(struct store *s, const char *name, struct st_error **err)
{
	s = store__root(s);
	pthread_mutex_lock(&s->dm_mu);
	struct store__dm_entry *e = dm_find(s, name);
	struct store_data_migration m = e ? e->m : (struct store_data_migration){0};
	pthread_mutex_unlock(&s->dm_mu);
	if (e == NULL)
		return store__error(err, ENOENT, "data migration '%s' is not registered here",
		                    name);
	bool ran = false, failed = false;
	return dm_run_one(s, &m, &ran, &failed, err);
}

static void *dm_thread_main(void *arg)
{
	struct store *s = arg;
	unsigned every = s->stale_ms / 4 ? s->stale_ms / 4 : 1;
	pthread_mutex_lock(&s->dm_mu);
	while (!s->dm_stopping) {
		if (!s->dm_kick) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += every / 1000;
			ts.tv_nsec += (long)(every % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			/* Wake up now and then too: another process may have queued a retry. */
			pthread_cond_timedwait(&s->dm_cv, &s->dm_mu, &ts);
			if (s->dm_stopping)
				break;
		}
		s->dm_kick = false;
		s->dm_busy = true;
		pthread_mutex_unlock(&s->dm_mu);
		struct st_error *e = NULL;
		store_data_migrations_run_now(s, &e); /* failures are logged and recorded */
		st_error_free(e);
		pthread_mutex_lock(&s->dm_mu);
		s->dm_busy = false;
		pthread_cond_broadcast(&s->dm_cv);
	}
	pthread_mutex_unlock(&s->dm_mu);
	return NULL;
}

int store_data_migrations_start(struct store *s, struct st_error **err)
{
	s = store__root(s);
	pthread_mutex_lock(&s->dm_mu);
	if (s->dm_thread_started) {
		pthread_mutex_unlock(&s->dm_mu);
		return 0;
	}
	s->dm_kick = true;
	s->dm_stopping = false;
	int r = pthread_create(&s->dm_thread, NULL, dm_thread_main, s);
	if (r != 0) {
		pthread_mutex_unlock(&s->dm_mu);
		return st_error_make(err, r, "cannot start the data migration thread");
	}
	s->dm_thread_started = true;
	pthread_mutex_unlock(&s->dm_mu);
	return 0;
}

void store_data_migrations_wait(struct store *s)
{
	s = store__root(s);
	pthread_mutex_lock(&s->dm_mu);
	while (s->dm_thread_started && (s->dm_kick || s->dm_busy))
		pthread_cond_wait(&s->dm_cv, &s->dm_mu);
	pthread_mutex_unlock(&s->dm_mu);
}

void store__dm_stop(struct store *s)
{
	pthread_mutex_lock(&s->dm_mu);
	if (!s->dm_thread_started) {
		pthread_mutex_unlock(&s->dm_mu);
		return;
	}
	s->dm_stopping = true;
	pthread_cond_broadcast(&s->dm_cv);
	pthread_mutex_unlock(&s->dm_mu);
	pthread_join(s->dm_thread, NULL);
	s->dm_thread_started = false;
}

void store__dm_release(struct store *s)
{
	free(s->dm);
	s->dm = NULL;
	s->ndm = 0;
}

/* ---- status, retry, gate ---------------------------------------------------------------- */

int store_migration_status(struct store *s, json_t **out, struct st_error **err)
{
	*out = NULL;
	struct store *root = store__root(s);
	json_t *schema = NULL, *data = NULL;
	int r = store_query_json(s,
	                         "SELECT component, version, name, applied_at, checksum FROM "
	                         "{ns}schema_migrations ORDER BY component, version",
	                         NULL, 0, &schema, err);
	if (r < 0)
		return st_error_wrap(err, "cannot read schema migrations");
	r = store_query_json(
	    s,
	    "SELECT name, description, state, error, attempts, created_at, "
	    "started_at, finished_at, owner, heartbeat_at FROM {ns}data_migrations "
	    "ORDER BY created_at, name",
	    NULL, 0, &data, err);
	if (r < 0) {
		json_decref(schema);
		return st_error_wrap(err, "cannot read data migrations");
	}
	json_t *failed = json_array(), *running = json_array();
	int64_t stale_before = store__now_ms() - (int64_t)root->stale_ms;
	size_t i;
	json_t *row;
	json_array_foreach(data, i, row)
	{
		const char *name = json_string_value(json_object_get(row, "name"));
		const char *state = json_string_value(json_object_get(row, "state"));
		json_t *hb = json_object_get(row, "heartbeat_at");
		bool stale = state && strcmp(state, "running") == 0 &&
		             (!json_is_integer(hb) || json_integer_value(hb) < stale_before);
		json_object_set_new(row, "stale", json_boolean(stale));
		pthread_mutex_lock(&root->dm_mu);
		bool is_known = name && dm_find(root, name) != NULL;
		pthread_mutex_unlock(&root->dm_mu);
		json_object_set_new(row, "known", json_boolean(is_known));
		if (state && strcmp(state, "failed") == 0)
			json_array_append_new(failed, json_string(name));
		if (state && strcmp(state, "running") == 0)
			json_array_append_new(running, json_string(name));
	}
	json_t *pending = json_array();
	size_t nsets = 0;
	struct declared_set *sets = declared_for(root->ns, &nsets);
	for (size_t k = 0; k < nsets; k++) {
		for (size_t m = 0; m < sets[k].n; m++) {
			bool applied = false;
			json_array_foreach(schema, i, row)
			{
				if (strcmp(json_string_value(json_object_get(row, "component")),
				           sets[k].component) == 0 &&
				    json_integer_value(json_object_get(row, "version")) ==
				        sets[k].m[m].version)
					applied = true;
			}
			if (applied)
				continue;
			json_array_append_new(pending, json_pack("{s:s, s:I, s:s}", "component",
			                                         sets[k].component, "version",
			                                         (json_int_t)sets[k].m[m].version,
			                                         "name", sets[k].m[m].name));
		}
	}
	free(sets);
	json_t *o = json_object();
	json_object_set_new(o, "namespace", json_string(root->ns));
	json_object_set_new(o, "backend", json_string(root->ops->name));
	json_object_set_new(o, "schema", schema);
	json_object_set_new(o, "pending_schema", pending);
	json_object_set_new(o, "data", data);
	json_object_set_new(o, "ok", json_boolean(json_array_size(failed) == 0));
	json_object_set_new(o, "failed", failed);
	json_object_set_new(o, "running", running);
	*out = o;
	return 0;
}

int store_data_migration_retry(struct store *s, const char *name, struct st_error **err)
{
	struct store *root = store__root(s);
	int64_t now = store__now_ms();
	int64_t changes = 0;
	struct store_value v[] = {store_text(name), store_int(now - (int64_t)root->stale_ms)};
	int r =
	    store_exec(s,
	               "UPDATE {ns}data_migrations SET state = 'pending', error = NULL, owner = "
	               "NULL, heartbeat_at = NULL WHERE name = ? AND (state = 'failed' OR "
	               "(state = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)))",
	               v, 2, &changes, err);
	if (r < 0)
		return st_error_wrap(err, "cannot retry data migration '%s'", name);
	if (changes != 1) {
		json_t *row = NULL;
		struct st_error *qerr = NULL;
		r = store_query_one(
		    s,
		    "SELECT state, owner, started_at FROM {ns}data_migrations WHERE "
		    "name = ?",
		    v, 1, &row, &qerr);
		if (r == -ENOENT) {
			st_error_free(qerr);
			return store__error(err, ENOENT,
			                    "no data migration named '%s' (see 'stockade migrate "
			                    "status' for the list)",
			                    name);
		}
		if (r < 0) {
			if (err && *err == NULL)
				*err = qerr;
			else
				st_error_free(qerr);
			return r;
		}
		const char *state = json_string_value(json_object_get(row, "state"));
		if (state && strcmp(state, "running") == 0) {
			const char *owner = json_string_value(json_object_get(row, "owner"));
			json_int_t started = json_integer_value(json_object_get(row, "started_at"));
			r = store__error(
			    err, EBUSY,
			    "data migration '%s' is already running (by '%s', for %llds); "
			    "a retry is refused until it finishes",
			    name, owner ? owner : "?", (long long)((now - started) / 1000));
		} else if (state && strcmp(state, "done") == 0) {
			r = store__error(
			    err, EALREADY,
			    "data migration '%s' is already done; there is nothing to retry", name);
		} else {
			r = 0; /* already pending: it will run */
		}
		json_decref(row);
		if (r < 0)
			return r;
	}
	st_log(ST_LOG_INFO, "store '%s': data migration '%s' queued for retry", root->ns, name);
	pthread_mutex_lock(&root->dm_mu);
	root->dm_kick = true;
	pthread_cond_broadcast(&root->dm_cv);
	pthread_mutex_unlock(&root->dm_mu);
	return 0;
}

/* Stockade's own data migrations ship with every release (registered or not yet). */
static bool is_builtin(const char *name)
{
	return strcmp(name, "schema-integrity-check") == 0 || strcmp(name, "test-canary") == 0;
}

int store_check_upgrade_gate(struct store *s, const char *const *required, size_t n,
                             struct st_error **err)
{
	struct store *root = store__root(s);
	json_t *rows = NULL;
	int r =
	    store_query_json(s,
	                     "SELECT name, error, attempts FROM {ns}data_migrations WHERE state "
	                     "= 'failed' ORDER BY name",
	                     NULL, 0, &rows, err);
	if (r < 0)
		return st_error_wrap(err, "cannot check data migrations before starting");
	struct st_buf msg;
	st_buf_init(&msg, 64 * 1024);
	size_t blocked = 0;
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		const char *name = json_string_value(json_object_get(row, "name"));
		const char *e = json_string_value(json_object_get(row, "error"));
		bool gating = false;
		if (required) {
			for (size_t k = 0; k < n && !gating; k++)
				gating = strcmp(required[k], name) == 0;
		} else {
			pthread_mutex_lock(&root->dm_mu);
			gating = dm_find(root, name) == NULL && !is_builtin(name);
			pthread_mutex_unlock(&root->dm_mu);
		}
		if (!gating)
			continue;
		st_buf_appendf(&msg, "%s'%s' (failed after %lld attempt%s: %s)",
		               blocked ? ", " : "", name,
		               (long long)json_integer_value(json_object_get(row, "attempts")),
		               json_integer_value(json_object_get(row, "attempts")) == 1 ? "" : "s",
		               e ? e : "no error recorded");
		blocked++;
	}
	json_decref(rows);
	if (blocked == 0) {
		st_buf_release(&msg);
		return 0;
	}
	r = store__error(err, EPROTO,
	                 "refusing to start: background data migration%s %s of the previous "
	                 "release must complete before upgrading to this one; resolve it with the "
	                 "previous release ('stockade migrate retry NAME', then 'stockade migrate "
	                 "status' until it shows done) or roll back to that release",
	                 blocked == 1 ? "" : "s", msg.data ? msg.data : "");
	st_buf_release(&msg);
	return r;
}

/* ---- Stockade's own data migrations ----------------------------------------------------- */

struct integrity_ctx {
	struct store *s;
	struct st_buf problems;
	size_t nproblems;
	size_t backfilled;
	size_t checked;
};

struct sm_row {
	char *component;
	int64_t version;
	char *name;
	char *checksum;
};

struct sm_rows {
	struct sm_row *v;
	size_t n;
};

static int sm_row_cb(void *ctx, const struct store_row *row, struct st_error **err)
{
	struct sm_rows *rows = ctx;
	struct sm_row *nv = realloc(rows->v, (rows->n + 1) * sizeof(*rows->v));
	if (nv == NULL)
		return store__error(err, ENOMEM, "out of memory");
	rows->v = nv;
	const char *c = store_row_text(row, 3);
	rows->v[rows->n++] = (struct sm_row){
	    .component = st_xstrdup(store_row_text(row, 0) ? store_row_text(row, 0) : ""),
	    .version = store_row_int(row, 1),
	    .name = st_xstrdup(store_row_text(row, 2) ? store_row_text(row, 2) : ""),
	    .checksum = c ? st_xstrdup(c) : NULL,
	};
	return 0;
}

static int quick_check_cb(void *ctx, const struct store_row *row, struct st_error **err)
{
	struct integrity_ctx *ic = ctx;
	const char *t = store_row_text(row, 0);
	if (t && strcmp(t, "ok") != 0) {
		st_buf_appendf(&ic->problems, "%ssqlite quick_check: %s", ic->nproblems ? "; " : "",
		               t);
		ic->nproblems++;
	}
	return 0;
}

/*
 * schema-integrity-check: the database-consistency pass a release runs once after upgrading.
 * It compares every applied schema migration this process knows with the binary's checksum,
 * records checksums missing from rows written before checksums existed (or by hand), and on
 * SQLite runs PRAGMA quick_check. Any mismatch fails the migration, naming what differs, so
 * an admin sees it before the next upgrade builds on a schema that is not what it expects.
 */
static int integrity_check(struct store *s, void *ctx_unused, struct st_error **err)
{
	struct integrity_ctx ic = {.s = s};
	st_buf_init(&ic.problems, 16 * 1024);
	int r = 0;
	if (store_backend(s) == STORE_SQLITE) {
		r = store_query(s, "PRAGMA quick_check", NULL, 0, quick_check_cb, &ic, err);
		if (r < 0)
			goto out;
	}
	/* Migrations declared by components this process does not run count as known too. */
	size_t nsets = 0;
	struct declared_set *sets = declared_for(store_ns(s), &nsets);
	for (size_t i = 0; i < nsets; i++) {
		for (size_t k = 0; k < sets[i].n; k++) {
			const char *sql = migration_sql(s, &sets[i].m[k]);
			if (sql == NULL)
				continue;
			char sum[65];
			store__sha256_hex(sql, sum);
			known_add(store_backend(s), store_ns(s), sets[i].component,
			          sets[i].m[k].version, sum);
		}
	}
	free(sets);
	struct sm_rows rows = {0};
	r = store_query(
	    s,
	    "SELECT component, version, name, checksum FROM {ns}schema_migrations ORDER "
	    "BY component, version",
	    NULL, 0, sm_row_cb, &rows, err);
	for (size_t i = 0; r == 0 && i < rows.n; i++) {
		struct sm_row *m = &rows.v[i];
		char want[65];
		if (!known_find(store_backend(s), store_ns(s), m->component, m->version, want))
			continue; /* a component this process does not run */
		ic.checked++;
		if (m->checksum == NULL || m->checksum[0] == '\0') {
			struct store_value v[] = {store_text(want), store_text(m->component),
			                          store_int(m->version)};
			r = store_exec(
			    s,
			    "UPDATE {ns}schema_migrations SET checksum = ? WHERE component = "
			    "? AND version = ? AND checksum IS NULL",
			    v, 3, NULL, err);
			ic.backfilled++;
		} else if (strcmp(m->checksum, want) != 0) {
			st_buf_appendf(
			    &ic.problems,
			    "%sschema migration %s/%lld '%s' was applied with checksum %.12s "
			    "but this release expects %.12s",
			    ic.nproblems ? "; " : "", m->component, (long long)m->version, m->name,
			    m->checksum, want);
			ic.nproblems++;
		}
	}
	for (size_t i = 0; i < rows.n; i++) {
		free(rows.v[i].component);
		free(rows.v[i].name);
		free(rows.v[i].checksum);
	}
	free(rows.v);
	if (r < 0)
		goto out;
	if (ic.nproblems > 0) {
		r = store__error(err, EIO, "database is in an inconsistent state: %s",
		                 ic.problems.data);
		goto out;
	}
	st_log(ST_LOG_INFO,
	       "store '%s': schema integrity check passed (%zu migrations checked, %zu checksums "
	       "backfilled)",
	       store_ns(s), ic.checked, ic.backfilled);
out:
	st_buf_release(&ic.problems);
	return r;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * test-canary: only registered when STOCKADE_TEST_DATA_MIGRATION names a control file, so tests
 * can drive the failure -> retry -> done path through the real binary. The file holds words:
 * "fail" makes the run fail, "sleep N" makes it take N milliseconds first.
 */
static int test_canary(struct store *s, void *ctx, struct st_error **err)
{
	const char *path = getenv("STOCKADE_TEST_DATA_MIGRATION");
	if (path == NULL)
		return 0;
	cleanup_free char *text = NULL;
	size_t len = 0;
	struct st_error *e = NULL;
	if (st_read_file(path, 4096, &text, &len, &e) < 0) {
		st_error_free(e);
		return 0; /* no control file: succeed */
	}
	const char *sl = strstr(text, "sleep ");
	if (sl) {
		int64_t ms = 0;
		char num[24] = {0};
		size_t k = 0;
		for (const char *p = sl + 6; *p >= '0' && *p <= '9' && k < sizeof(num) - 1; p++)
			num[k++] = *p;
		if (st_parse_i64(num, &ms) == 0 && ms > 0)
			sleep_ms((long)ms);
	}
	if (strstr(text, "fail"))
		return store__error(err, EIO, "test canary failed as asked by '%s'", path);
	return 0;
}

/*
 * Test-only schema migrations (STOCKADE_TEST_SCHEMA_MIGRATIONS set), so tests can run several
 * `stockade migrate up` processes at once. Each insert would show up twice if applied twice;
 * on Postgres they sleep inside the transaction to widen the window.
 */
static const struct store_migration test_schema_migrations[] = {
    {1, "create-log", "CREATE TABLE {ns}test_log (v BIGINT NOT NULL)", NULL, NULL},
    {2, "insert-two", "INSERT INTO {ns}test_log (v) VALUES (2)", NULL,
     "SELECT pg_sleep(0.2); INSERT INTO {ns}test_log (v) VALUES (2)"},
    {3, "insert-three", "INSERT INTO {ns}test_log (v) VALUES (3)", NULL,
     "SELECT pg_sleep(0.2); INSERT INTO {ns}test_log (v) VALUES (3)"},
};

int store_register_builtin_data_migrations(struct store *s, struct st_error **err)
{
	if (getenv("STOCKADE_TEST_SCHEMA_MIGRATIONS"))
		store_declare_migrations(store_ns(s), "test-schema", test_schema_migrations,
		                         ST_ARRAY_SIZE(test_schema_migrations));
	static const struct store_data_migration integrity = {
	    .name = "schema-integrity-check",
	    .description = "verify applied schema migrations against this release and backfill "
	                   "missing checksums",
	    .run = integrity_check,
	};
	static const struct store_data_migration canary = {
	    .name = "test-canary",
	    .description = "test-only migration driven by STOCKADE_TEST_DATA_MIGRATION",
	    .run = test_canary,
	};
	int r = store_data_migration_register(s, &integrity, err);
	if (r == 0 && getenv("STOCKADE_TEST_DATA_MIGRATION"))
		r = store_data_migration_register(s, &canary, err);
	return r;
}
