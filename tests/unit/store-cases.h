/*
 * store-cases.h - the state store test cases, shared by test-store.c (SQLite) and
 * test-store-pg.c (Postgres). The including file defines STORE_CASE_PG to 0 or 1.
 *
 * Postgres cases need STOCKADE_TEST_PG (a libpq conninfo); tests/e2e/store-pg.sh starts a
 * private server with tests/pg.sh and sets it, plus STOCKADE_TEST_PG_CTL (a script taking
 * stop/start) for the restart cases. Without it they are skipped. Every case uses its own
 * namespace (Postgres schema) or its own database file, so cases never see each other's rows.
 */
#ifndef STORE_CASE_PG
#error "define STORE_CASE_PG before including store-cases.h"
#endif

#include <pthread.h>
#include <sys/wait.h>
#include <time.h>

#include "store/store.h"
#include "unit.h"

/*
 * One temporary directory per test binary run, made by the parent before it forks the tests
 * and removed when the parent exits (test processes end with _exit and never run destructors).
 */
static char tmpdir[64];
static pid_t tmpdir_owner;

__attribute__((constructor)) static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/stockade-store-test-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		tmpdir[0] = '\0';
	tmpdir_owner = getpid();
}

__attribute__((destructor)) static void remove_tmpdir(void)
{
	if (tmpdir[0] && getpid() == tmpdir_owner) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	}
}

/* A namespace unique to this test process. */
static const char *test_ns(const char *tag)
{
	static char ns[41];
	snprintf(ns, sizeof(ns), "t%d_%s", (int)getpid(), tag);
	return ns;
}

static struct store_options test_options(const char *tag, unsigned stale_ms)
{
	struct store_options o = {.ns = test_ns(tag), .data_migration_stale_ms = stale_ms};
	if (STORE_CASE_PG) {
		const char *conn = getenv("STOCKADE_TEST_PG");
		if (conn == NULL || conn[0] == '\0')
			UNIT_SKIP("STOCKADE_TEST_PG is not set (tests/e2e/store-pg.sh runs these "
			          "against a private postgres)");
		o.backend = STORE_POSTGRES;
		o.pg_conninfo = conn;
	} else {
		CHECK(tmpdir[0] != '\0');
		static char path[128];
		snprintf(path, sizeof(path), "%s/%s.db", tmpdir, o.ns);
		o.backend = STORE_SQLITE;
		o.sqlite_path = path;
	}
	return o;
}

static struct store *open_test(const char *tag)
{
	struct store_options o = test_options(tag, 0);
	struct store *s = NULL;
	struct st_error *err = NULL;
	int r = store_open(&o, &s, &err);
	if (r < 0)
		fprintf(stderr, "store_open: %s\n", st_error_msg(err));
	CHECK(r == 0);
	st_error_free(err);
	return s;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

#define OK(call)                                                                     \
	do {                                                                         \
		struct st_error *e_ = NULL;                                          \
		int r_ = (call);                                                     \
		if (r_ < 0)                                                          \
			fprintf(stderr, "%s: %d %s\n", #call, r_, st_error_msg(e_)); \
		CHECK(r_ >= 0);                                                      \
		st_error_free(e_);                                                   \
	} while (0)
#define E (&e_)

static int64_t count(struct store *s, const char *sql)
{
	int64_t n = -1;
	OK(store_query_int(s, sql, NULL, 0, &n, E));
	return n;
}

/* ---- dialect ---- */

TEST(dialect_expansion)
{
	struct store *s = open_test("dialect");
	char *x = store_expand_sql(s, "INSERT INTO {ns}t (a, b, c) VALUES (?, '?{ns}', ?) -- ?\n");
	if (STORE_CASE_PG)
		CHECK_STREQ(x, "INSERT INTO t (a, b, c) VALUES ($1, '?{ns}', $2) -- ?\n");
	else {
		char want[256];
		snprintf(want, sizeof(want),
		         "INSERT INTO %s_t (a, b, c) VALUES (?, '?{ns}', ?) -- ?\n", store_ns(s));
		CHECK_STREQ(x, want);
	}
	free(x);
	x = store_expand_sql(s, "CREATE TABLE {ns}x (id {id}, b {blob})");
	CHECK_CONTAINS(x, STORE_CASE_PG ? "BIGSERIAL PRIMARY KEY" : "INTEGER PRIMARY KEY");
	CHECK_CONTAINS(x, STORE_CASE_PG ? "BYTEA" : "BLOB");
	free(x);
	store_free(s);
}

TEST(bad_namespace_rejected)
{
	struct store_options o = test_options("x", 0);
	o.ns = "Bad-Name";
	struct store *s = NULL;
	struct st_error *err = NULL;
	CHECK(store_open(&o, &s, &err) == -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "invalid store namespace 'Bad-Name'");
	st_error_free(err);
}

/* ---- statements ---- */

struct collected {
	int rows;
	int64_t id;
	char text[64];
	unsigned char blob[16];
	size_t blob_len;
	bool null_seen;
};

static int collect_cb(void *ctx, const struct store_row *row, struct st_error **err)
{
	struct collected *c = ctx;
	c->rows++;
	CHECK_EQ_INT(store_row_columns(row), 4);
	CHECK_STREQ(store_row_name(row, 1), "name");
	c->id = store_row_int(row, 0);
	snprintf(c->text, sizeof(c->text), "%s", store_row_text(row, 1));
	size_t len = 0;
	const void *p = store_row_blob(row, 2, &len);
	CHECK(len <= sizeof(c->blob));
	memcpy(c->blob, p, len);
	c->blob_len = len;
	c->null_seen = store_row_is_null(row, 3) && store_row_text(row, 3) == NULL;
	return 0;
}

TEST(crud_roundtrip)
{
	struct store *s = open_test("crud");
	OK(store_exec(s,
	              "CREATE TABLE {ns}items (id {id}, name TEXT NOT NULL UNIQUE, data {blob}, "
	              "note TEXT, n BIGINT)",
	              NULL, 0, NULL, E));
	const unsigned char bytes[] = {0, 1, 2, 0xff, 0x7f, 0};
	struct store_value v[] = {store_text("it's ? here"), store_blob(bytes, sizeof(bytes)),
	                          store_null(), store_int(INT64_C(9007199254740993))};
	int64_t changes = 0;
	OK(store_exec(s, "INSERT INTO {ns}items (name, data, note, n) VALUES (?, ?, ?, ?)", v, 4,
	              &changes, E));
	CHECK_EQ_INT(changes, 1);

	struct collected c = {0};
	OK(store_query(s, "SELECT id, name, data, note FROM {ns}items WHERE name = ?", v, 1,
	               collect_cb, &c, E));
	CHECK_EQ_INT(c.rows, 1);
	CHECK_EQ_INT(c.id, 1);
	CHECK_STREQ(c.text, "it's ? here");
	CHECK_EQ_INT(c.blob_len, sizeof(bytes));
	CHECK(memcmp(c.blob, bytes, sizeof(bytes)) == 0);
	CHECK(c.null_seen);

	json_t *row = NULL;
	OK(store_query_one(s, "SELECT name, data, note, n FROM {ns}items", NULL, 0, &row, E));
	CHECK_STREQ(json_string_value(json_object_get(row, "name")), "it's ? here");
	CHECK_STREQ(json_string_value(json_object_get(row, "data")), "AAEC/38A");
	CHECK(json_is_null(json_object_get(row, "note")));
	CHECK(json_integer_value(json_object_get(row, "n")) == INT64_C(9007199254740993));
	json_decref(row);

	/* Unique violation is -EEXIST; no row is -ENOENT; wrong parameter count is an error. */
	struct st_error *err = NULL;
	CHECK_EQ_INT(store_exec(s, "INSERT INTO {ns}items (name) VALUES (?)", v, 1, NULL, &err),
	             -EEXIST);
	st_error_release(&err);
	struct store_value missing = store_text("nope");
	CHECK_EQ_INT(
	    store_query_one(s, "SELECT * FROM {ns}items WHERE name = ?", &missing, 1, &row, &err),
	    -ENOENT);
	st_error_release(&err);
	CHECK(store_exec(s, "INSERT INTO {ns}items (name) VALUES (?, ?)", v, 1, NULL, &err) < 0);
	CHECK(err != NULL);
	st_error_release(&err);
	CHECK_EQ_INT(store_exec(s, "SELEKT 1", NULL, 0, NULL, &err), -EINVAL);
	st_error_release(&err);

	/* Aggregates come back as integers on both engines (numeric on Postgres). */
	OK(store_query_one(s, "SELECT SUM(n) AS total, COUNT(*) AS c FROM {ns}items", NULL, 0, &row,
	                   E));
	CHECK(json_is_integer(json_object_get(row, "total")));
	CHECK(json_integer_value(json_object_get(row, "total")) == INT64_C(9007199254740993));
	CHECK_EQ_INT(json_integer_value(json_object_get(row, "c")), 1);
	json_decref(row);

	/* Upsert and RETURNING are part of the portable dialect. */
	struct store_value up[] = {store_text("it's ? here"), store_int(5)};
	OK(store_exec(s,
	              "INSERT INTO {ns}items (name, n) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
	              "SET n = excluded.n",
	              up, 2, NULL, E));
	int64_t n = 0;
	OK(store_query_int(s, "UPDATE {ns}items SET n = n + 1 RETURNING n", NULL, 0, &n, E));
	CHECK_EQ_INT(n, 6);
	store_free(s);
}

static int tx_insert_then_fail(struct store *tx, void *ctx, struct st_error **err)
{
	struct store_value v = store_text(ctx);
	int r = store_exec(tx, "INSERT INTO {ns}t (name) VALUES (?)", &v, 1, NULL, err);
	if (r < 0)
		return r;
	if (strcmp(ctx, "fail") == 0)
		return st_error_make(err, EIO, "asked to fail");
	/* A transaction handle cannot start another transaction. */
	struct st_error *e = NULL;
	CHECK_EQ_INT(store_tx(tx, tx_insert_then_fail, ctx, &e), -EINVAL);
	st_error_free(e);
	return 0;
}

TEST(transactions_commit_and_rollback)
{
	struct store *s = open_test("tx");
	OK(store_exec(s, "CREATE TABLE {ns}t (name TEXT)", NULL, 0, NULL, E));
	char keep[] = "keep", fail[] = "fail";
	OK(store_tx(s, tx_insert_then_fail, keep, E));
	struct st_error *err = NULL;
	CHECK_EQ_INT(store_tx(s, tx_insert_then_fail, fail, &err), -EIO);
	CHECK_CONTAINS(st_error_msg(err), "asked to fail");
	st_error_free(err);
	CHECK_EQ_INT(count(s, "SELECT COUNT(*) FROM {ns}t"), 1);
	store_free(s);
}

struct thread_arg {
	struct store *s;
	int id;
};

static void *thread_main(void *arg)
{
	struct thread_arg *ta = arg;
	for (int i = 0; i < 40; i++) {
		struct store_value v[] = {store_int(ta->id), store_int(i)};
		OK(store_exec(ta->s, "INSERT INTO {ns}t (a, b) VALUES (?, ?)", v, 2, NULL, E));
		CHECK(count(ta->s, "SELECT COUNT(*) FROM {ns}t") > 0);
	}
	return NULL;
}

TEST(many_threads_share_a_handle)
{
	struct store *s = open_test("threads");
	OK(store_exec(s, "CREATE TABLE {ns}t (a BIGINT, b BIGINT)", NULL, 0, NULL, E));
	pthread_t th[8];
	struct thread_arg ta[8];
	for (int i = 0; i < 8; i++) {
		ta[i] = (struct thread_arg){.s = s, .id = i};
		CHECK(pthread_create(&th[i], NULL, thread_main, &ta[i]) == 0);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ_INT(count(s, "SELECT COUNT(*) FROM {ns}t"), 8 * 40);
	store_free(s);
}

/* ---- schema migrations ---- */

static const struct store_migration migs_v3[] = {
    {1, "create-things",
     "CREATE TABLE {ns}things (id {id}, name TEXT NOT NULL);"
     "CREATE INDEX {ns}things_by_name ON {ns}things (name)",
     NULL, NULL},
    {2, "add-size", "ALTER TABLE {ns}things ADD COLUMN size BIGINT", NULL, NULL},
    {3, "seed-row", "INSERT INTO {ns}things (name, size) VALUES ('seed', 1)", NULL, NULL},
};

TEST(migrations_apply_once)
{
	struct store *s = open_test("mig");
	int applied = -1;
	OK(store_migrate(s, "core", migs_v3, 2, &applied, E));
	CHECK_EQ_INT(applied, 2);
	OK(store_migrate(s, "core", migs_v3, 2, &applied, E));
	CHECK_EQ_INT(applied, 0);
	OK(store_migrate(s, "core", migs_v3, 3, &applied, E));
	CHECK_EQ_INT(applied, 1);
	OK(store_migrate(s, "core", migs_v3, 3, &applied, E));
	CHECK_EQ_INT(applied, 0);
	CHECK_EQ_INT(count(s, "SELECT COUNT(*) FROM {ns}things"), 1);
	int64_t v = 0;
	OK(store_schema_version(s, "core", &v, E));
	CHECK_EQ_INT(v, 3);
	/* Another component in the same namespace has its own versions. */
	OK(store_schema_version(s, "other", &v, E));
	CHECK_EQ_INT(v, 0);
	CHECK_EQ_INT(count(s, "SELECT COUNT(*) FROM {ns}schema_migrations WHERE checksum IS NOT "
	                      "NULL AND length(checksum) = 64"),
	             3);
	/* The migrated schema works: the index and added column exist. */
	struct store_value ins[] = {store_text("x"), store_int(7)};
	OK(store_exec(s, "INSERT INTO {ns}things (name, size) VALUES (?, ?)", ins, 2, NULL, E));
	store_free(s);

	/* A second handle (a restart) sees everything applied. */
	s = open_test("mig");
	OK(store_migrate(s, "core", migs_v3, 3, &applied, E));
	CHECK_EQ_INT(applied, 0);
	store_free(s);
}

TEST(newer_database_refused)
{
	struct store *s = open_test("newer");
	OK(store_migrate(s, "core", migs_v3, 3, NULL, E));
	struct st_error *err = NULL;
	CHECK_EQ_INT(store_migrate(s, "core", migs_v3, 2, NULL, &err), -EPROTO);
	CHECK_CONTAINS(st_error_msg(err), "is at version 3");
	CHECK_CONTAINS(st_error_msg(err), "knows only up to version 2");
	CHECK_CONTAINS(st_error_msg(err), "restore a backup");
	st_error_free(err);
	store_free(s);
}

TEST(failed_migration_rolls_back)
{
	struct store *s = open_test("rollback");
	const struct store_migration bad[] = {
	    {1, "ok", "CREATE TABLE {ns}a (x BIGINT)", NULL, NULL},
	    {2, "half", "CREATE TABLE {ns}b (x BIGINT); INSERT INTO {ns}nonexistent VALUES (1)",
	     NULL, NULL},
	};
	struct st_error *err = NULL;
	int applied = 0;
	CHECK(store_migrate(s, "core", bad, 2, &applied, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "schema migration core/2 'half' failed");
	st_error_free(err);
	CHECK_EQ_INT(applied, 1);
	int64_t v = 0;
	OK(store_schema_version(s, "core", &v, E));
	CHECK_EQ_INT(v, 1);
	/* Table b was created inside the failed transaction and must be gone. */
	err = NULL;
	CHECK(store_exec(s, "INSERT INTO {ns}b VALUES (1)", NULL, 0, NULL, &err) < 0);
	st_error_free(err);
	store_free(s);
}

TEST(bad_migration_lists_rejected)
{
	struct store *s = open_test("badlist");
	const struct store_migration dup[] = {
	    {2, "b", "SELECT 1", NULL, NULL},
	    {2, "c", "SELECT 1", NULL, NULL},
	};
	struct st_error *err = NULL;
	CHECK_EQ_INT(store_migrate(s, "core", dup, 2, NULL, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "increasing positive versions");
	st_error_free(err);
	store_free(s);
}

/* Each migration inserts a row: applying one twice would leave two rows. */
static const struct store_migration race_migs[] = {
    {1, "create", "CREATE TABLE {ns}log (v BIGINT NOT NULL)", NULL, NULL},
    {2, "two", "INSERT INTO {ns}log (v) VALUES (2)", NULL,
     "SELECT pg_sleep(0.1); INSERT INTO {ns}log (v) VALUES (2)"},
    {3, "three", "INSERT INTO {ns}log (v) VALUES (3)", NULL,
     "SELECT pg_sleep(0.1); INSERT INTO {ns}log (v) VALUES (3)"},
    {4, "four", "INSERT INTO {ns}log (v) VALUES (4)", NULL, NULL},
};

TEST(concurrent_processes_apply_each_once)
{
	/* Parent picks the namespace/file; children open their own handles at the same time. */
	struct store_options o = test_options("race", 0);
	enum { N = 4 };
	int go[2];
	CHECK(pipe(go) == 0);
	pid_t kids[N];
	for (int i = 0; i < N; i++) {
		kids[i] = fork();
		CHECK(kids[i] >= 0);
		if (kids[i] == 0) {
			close(go[1]);
			char b;
			if (read(go[0], &b, 1) < 0)
				_exit(3);
			struct store *s = NULL;
			struct st_error *err = NULL;
			int applied = 0;
			int r = store_open(&o, &s, &err);
			if (r == 0)
				r = store_migrate(s, "core", race_migs, 4, &applied, &err);
			if (r < 0)
				fprintf(stderr, "child %d: %s\n", i, st_error_msg(err));
			st_error_free(err);
			store_free(s);
			_exit(r < 0 ? 1 : 10 + applied);
		}
	}
	close(go[0]);
	close(go[1]); /* everyone starts now */
	int total = 0;
	for (int i = 0; i < N; i++) {
		int st = 0;
		CHECK(waitpid(kids[i], &st, 0) == kids[i]);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) >= 10);
		total += WEXITSTATUS(st) - 10;
	}
	CHECK_EQ_INT(total, 4);
	struct store *s = NULL;
	OK(store_open(&o, &s, E));
	CHECK_EQ_INT(count(s, "SELECT COUNT(*) FROM {ns}log"), 3);
	CHECK_EQ_INT(count(s, "SELECT COUNT(DISTINCT v) FROM {ns}log"), 3);
	CHECK_EQ_INT(count(s, "SELECT COUNT(*) FROM {ns}schema_migrations"), 4);
	store_free(s);
}

TEST(declared_migrations_show_pending_and_apply)
{
	struct store *s = open_test("decl");
	static char ns[41];
	snprintf(ns, sizeof(ns), "%s", store_ns(s));
	store_declare_migrations(ns, "core", migs_v3, 3);
	json_t *st = NULL;
	OK(store_migration_status(s, &st, E));
	CHECK_EQ_INT(json_array_size(json_object_get(st, "pending_schema")), 3);
	CHECK_STREQ(json_string_value(json_object_get(
	                json_array_get(json_object_get(st, "pending_schema"), 2), "name")),
	            "seed-row");
	json_decref(st);
	int applied = 0;
	OK(store_migrate_declared(s, &applied, E));
	CHECK_EQ_INT(applied, 3);
	OK(store_migration_status(s, &st, E));
	CHECK_EQ_INT(json_array_size(json_object_get(st, "pending_schema")), 0);
	CHECK_EQ_INT(json_array_size(json_object_get(st, "schema")), 3);
	json_decref(st);
	OK(store_migrate_declared(s, &applied, E));
	CHECK_EQ_INT(applied, 0);
	store_free(s);
}

/* ---- data migrations ---- */

struct flaky {
	int calls;
	int fail_times;
};

static int flaky_run(struct store *s, void *ctx, struct st_error **err)
{
	struct flaky *f = ctx;
	f->calls++;
	if (f->calls <= f->fail_times)
		return st_error_make(err, EIO, "space 'acme' has a dangling permission row");
	return store_exec(s, "UPDATE {ns}data_migrations SET description = description", NULL, 0,
	                  NULL, err);
}

static json_t *find_dm(json_t *status, const char *name)
{
	size_t i;
	json_t *row;
	json_array_foreach(json_object_get(status, "data"), i, row)
	{
		if (strcmp(json_string_value(json_object_get(row, "name")), name) == 0)
			return row;
	}
	return NULL;
}

static const char *dm_state(struct store *s, const char *name)
{
	static char state[32];
	json_t *st = NULL;
	OK(store_migration_status(s, &st, E));
	json_t *row = find_dm(st, name);
	snprintf(state, sizeof(state), "%s",
	         row ? json_string_value(json_object_get(row, "state")) : "(missing)");
	json_decref(st);
	return state;
}

TEST(data_migration_fail_retry_gate)
{
	struct store *s = open_test("dm");
	struct flaky f = {.fail_times = 1};
	struct store_data_migration m = {
	    .name = "normalize-permissions",
	    .description = "rewrite permission rows",
	    .run = flaky_run,
	    .ctx = &f,
	};
	OK(store_data_migration_register(s, &m, E));
	CHECK_STREQ(dm_state(s, "normalize-permissions"), "pending");

	struct st_error *err = NULL;
	CHECK(store_data_migrations_run_now(s, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "dangling permission row");
	st_error_release(&err);

	json_t *st = NULL;
	OK(store_migration_status(s, &st, E));
	CHECK(json_is_false(json_object_get(st, "ok")));
	CHECK_STREQ(json_string_value(json_array_get(json_object_get(st, "failed"), 0)),
	            "normalize-permissions");
	json_t *row = find_dm(st, "normalize-permissions");
	CHECK_STREQ(json_string_value(json_object_get(row, "state")), "failed");
	CHECK_CONTAINS(json_string_value(json_object_get(row, "error")), "dangling permission");
	CHECK_EQ_INT(json_integer_value(json_object_get(row, "attempts")), 1);
	CHECK(json_is_true(json_object_get(row, "known")));
	json_decref(st);

	/* The service keeps working: other statements are unaffected. */
	CHECK(count(s, "SELECT COUNT(*) FROM {ns}data_migrations") >= 1);

	/* This release (which registers it) may start; a newer one requiring it may not. */
	OK(store_check_upgrade_gate(s, NULL, 0, E));
	const char *req[] = {"normalize-permissions"};
	CHECK_EQ_INT(store_check_upgrade_gate(s, req, 1, &err), -EPROTO);
	CHECK_CONTAINS(st_error_msg(err), "refusing to start");
	CHECK_CONTAINS(st_error_msg(err), "'normalize-permissions' (failed after 1 attempt");
	CHECK_CONTAINS(st_error_msg(err), "stockade migrate retry");
	CHECK_CONTAINS(st_error_msg(err), "roll back");
	st_error_release(&err);
	/* A newer binary that no longer ships it refuses with required = NULL too. */
	struct store *newer = open_test("dm");
	CHECK_EQ_INT(store_check_upgrade_gate(newer, NULL, 0, &err), -EPROTO);
	st_error_release(&err);

	/* Stockade's own migrations never gate the release that ships them, registered yet or
	 * not (serve may check the gate before registering). */
	OK(store_exec(newer,
	              "INSERT INTO {ns}data_migrations (name, state, error, attempts, created_at) "
	              "VALUES ('schema-integrity-check', 'failed', 'x', 1, 1)",
	              NULL, 0, NULL, E));
	CHECK_EQ_INT(store_check_upgrade_gate(newer, NULL, 0, &err), -EPROTO);
	CHECK(strstr(st_error_msg(err), "schema-integrity-check") == NULL);
	st_error_release(&err);
	OK(store_exec(newer,
	              "DELETE FROM {ns}data_migrations WHERE name = 'schema-integrity-check'", NULL,
	              0, NULL, E));

	/* Not re-run automatically: still failed after another pass. */
	OK(store_data_migrations_run_now(s, E));
	CHECK_STREQ(dm_state(s, "normalize-permissions"), "failed");
	CHECK_EQ_INT(f.calls, 1);

	OK(store_data_migration_retry(s, "normalize-permissions", E));
	CHECK_STREQ(dm_state(s, "normalize-permissions"), "pending");
	OK(store_data_migrations_run_now(s, E));
	CHECK_STREQ(dm_state(s, "normalize-permissions"), "done");
	CHECK_EQ_INT(f.calls, 2);
	OK(store_check_upgrade_gate(newer, NULL, 0, E));
	OK(store_check_upgrade_gate(s, req, 1, E));

	CHECK_EQ_INT(store_data_migration_retry(s, "normalize-permissions", &err), -EALREADY);
	CHECK_CONTAINS(st_error_msg(err), "already done");
	st_error_release(&err);
	CHECK_EQ_INT(store_data_migration_retry(s, "no-such", &err), -ENOENT);
	CHECK_CONTAINS(st_error_msg(err), "no data migration named 'no-such'");
	st_error_release(&err);

	OK(store_migration_status(s, &st, E));
	CHECK(json_is_true(json_object_get(st, "ok")));
	row = find_dm(st, "normalize-permissions");
	CHECK_EQ_INT(json_integer_value(json_object_get(row, "attempts")), 2);
	CHECK(json_is_null(json_object_get(row, "error")));
	json_decref(st);
	store_free(newer);
	store_free(s);
}

struct gated {
	int fd; /* read end: run() waits until a byte arrives */
	int calls;
};

static int gated_run(struct store *s, void *ctx, struct st_error **err)
{
	struct gated *g = ctx;
	g->calls++;
	char b;
	if (read(g->fd, &b, 1) != 1)
		return st_error_make(err, EIO, "gate closed");
	return b == 'f' ? st_error_make(err, EIO, "told to fail") : 0;
}

TEST(data_migration_retry_refused_while_running)
{
	struct store_options o = test_options("busy", 400);
	struct store *s = NULL;
	OK(store_open(&o, &s, E));
	int p[2];
	CHECK(pipe(p) == 0);
	struct gated g = {.fd = p[0]};
	struct store_data_migration m = {.name = "slow-one", .run = gated_run, .ctx = &g};
	OK(store_data_migration_register(s, &m, E));
	OK(store_data_migrations_start(s, E));
	for (int i = 0; i < 500 && strcmp(dm_state(s, "slow-one"), "running") != 0; i++)
		sleep_ms(10);
	CHECK_STREQ(dm_state(s, "slow-one"), "running");

	/* Running well past the stale limit: the heartbeat keeps it live, so retry is refused,
	 * from this handle and from another process's handle alike. */
	sleep_ms(1000);
	struct st_error *err = NULL;
	CHECK_EQ_INT(store_data_migration_retry(s, "slow-one", &err), -EBUSY);
	CHECK_CONTAINS(st_error_msg(err), "already running");
	st_error_release(&err);
	struct store *other = NULL;
	OK(store_open(&o, &other, E));
	CHECK_EQ_INT(store_data_migration_retry(other, "slow-one", &err), -EBUSY);
	st_error_release(&err);
	json_t *st = NULL;
	OK(store_migration_status(other, &st, E));
	CHECK(json_is_false(json_object_get(find_dm(st, "slow-one"), "stale")));
	CHECK(json_is_false(json_object_get(find_dm(st, "slow-one"), "known")));
	CHECK_STREQ(json_string_value(json_array_get(json_object_get(st, "running"), 0)),
	            "slow-one");
	json_decref(st);

	CHECK(write(p[1], "f", 1) == 1); /* fail this run */
	for (int i = 0; i < 500 && strcmp(dm_state(s, "slow-one"), "failed") != 0; i++)
		sleep_ms(10);
	CHECK_STREQ(dm_state(s, "slow-one"), "failed");

	/* Retry from the other handle (as `stockade migrate retry` would); the background thread
	 * of the first handle picks it up on its next poll. */
	CHECK(write(p[1], "o", 1) == 1);
	OK(store_data_migration_retry(other, "slow-one", E));
	for (int i = 0; i < 500 && strcmp(dm_state(s, "slow-one"), "done") != 0; i++)
		sleep_ms(10);
	CHECK_STREQ(dm_state(s, "slow-one"), "done");
	CHECK_EQ_INT(g.calls, 2);
	store_free(other);
	store_free(s);
	close(p[0]);
	close(p[1]);
}

static int noop_run(struct store *s, void *ctx, struct st_error **err)
{
	int *calls = ctx;
	(*calls)++;
	return 0;
}

TEST(stale_running_migration_is_reclaimed)
{
	struct store_options o = test_options("stale", 400);
	struct store *s = NULL;
	OK(store_open(&o, &s, E));
	int calls = 0;
	/* A runner on another host died mid-run an hour ago. */
	struct store_value v[] = {store_int(1), store_int(2)};
	OK(store_exec(s,
	              "INSERT INTO {ns}data_migrations (name, state, attempts, created_at, "
	              "started_at, owner, heartbeat_at) VALUES ('crashed', 'running', 1, ?, ?, "
	              "'gone:1:0', 3)",
	              v, 2, NULL, E));
	json_t *st = NULL;
	OK(store_migration_status(s, &st, E));
	CHECK(json_is_true(json_object_get(find_dm(st, "crashed"), "stale")));
	json_decref(st);
	struct store_data_migration m = {.name = "crashed", .run = noop_run, .ctx = &calls};
	OK(store_data_migration_register(s, &m, E));
	OK(store_data_migrations_start(s, E));
	store_data_migrations_wait(s);
	CHECK_STREQ(dm_state(s, "crashed"), "done");
	CHECK_EQ_INT(calls, 1);
	CHECK_EQ_INT(count(s, "SELECT attempts FROM {ns}data_migrations WHERE name = 'crashed'"),
	             2);

	/* A stale row can also be retried by an admin. */
	OK(store_exec(s,
	              "UPDATE {ns}data_migrations SET state = 'running', heartbeat_at = 5 WHERE "
	              "name = 'crashed'",
	              NULL, 0, NULL, E));
	OK(store_data_migration_retry(s, "crashed", E));
	store_data_migrations_wait(s);
	for (int i = 0; i < 500 && strcmp(dm_state(s, "crashed"), "done") != 0; i++)
		sleep_ms(10);
	CHECK_EQ_INT(calls, 2);
	store_free(s);
}

TEST(builtin_integrity_check)
{
	struct store *s = open_test("integrity");
	OK(store_migrate(s, "core", migs_v3, 3, NULL, E));
	/* A row recorded without a checksum (an older layout) gets one backfilled. */
	OK(store_exec(s, "UPDATE {ns}schema_migrations SET checksum = NULL WHERE version = 1", NULL,
	              0, NULL, E));
	OK(store_register_builtin_data_migrations(s, E));
	OK(store_data_migrations_run_now(s, E));
	CHECK_STREQ(dm_state(s, "schema-integrity-check"), "done");
	CHECK_EQ_INT(count(s, "SELECT COUNT(*) FROM {ns}schema_migrations WHERE checksum IS NULL"),
	             0);

	/* Someone edited a released migration: the check fails and says which. */
	OK(store_exec(
	    s,
	    "UPDATE {ns}schema_migrations SET checksum = 'deadbeefdeadbeef' WHERE version "
	    "= 2",
	    NULL, 0, NULL, E));
	/* (a later release would register it afresh; here, put it back to pending by hand) */
	OK(store_exec(s,
	              "UPDATE {ns}data_migrations SET state = 'pending' WHERE name = "
	              "'schema-integrity-check'",
	              NULL, 0, NULL, E));
	struct st_error *err = NULL;
	CHECK(store_data_migrations_run_now(s, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "inconsistent state");
	CHECK_CONTAINS(st_error_msg(err), "core/2 'add-size'");
	st_error_free(err);
	CHECK_STREQ(dm_state(s, "schema-integrity-check"), "failed");
	store_free(s);
}

/* ---- Postgres only: the server restarts under us ---- */

static void pg_ctl(const char *verb)
{
	const char *ctl = getenv("STOCKADE_TEST_PG_CTL");
	if (ctl == NULL)
		UNIT_SKIP("STOCKADE_TEST_PG_CTL is not set");
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "%s %s", ctl, verb);
	CHECK(system(cmd) == 0);
}

TEST(reconnects_after_server_restart)
{
	if (!STORE_CASE_PG)
		UNIT_SKIP("postgres only");
	struct store *s = open_test("restart");
	if (getenv("STOCKADE_TEST_PG_CTL") == NULL)
		UNIT_SKIP("STOCKADE_TEST_PG_CTL is not set");
	OK(store_exec(s, "CREATE TABLE {ns}t (v BIGINT)", NULL, 0, NULL, E));
	struct store_value one = store_int(1);
	OK(store_exec(s, "INSERT INTO {ns}t (v) VALUES (?)", &one, 1, NULL, E));

	pg_ctl("restart");
	/* A write is the first statement after the restart: the pooled connection is checked
	 * and re-established before the statement is sent, so it succeeds exactly once. */
	struct store_value two = store_int(2);
	OK(store_exec(s, "INSERT INTO {ns}t (v) VALUES (?)", &two, 1, NULL, E));
	CHECK_EQ_INT(count(s, "SELECT COUNT(*) FROM {ns}t"), 2);

	/* Down for a while: the next call waits for the server (bounded) and then works. */
	pg_ctl("stop");
	pid_t kid = fork();
	CHECK(kid >= 0);
	if (kid == 0) {
		sleep_ms(1500);
		const char *ctl = getenv("STOCKADE_TEST_PG_CTL");
		char cmd[512];
		snprintf(cmd, sizeof(cmd), "%s start", ctl);
		_exit(system(cmd) == 0 ? 0 : 1);
	}
	CHECK_EQ_INT(count(s, "SELECT COUNT(*) FROM {ns}t"), 2);
	int st = 0;
	CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* Migrations and data migrations keep working on the re-established connections. */
	OK(store_migrate(s, "core", migs_v3, 3, NULL, E));
	store_free(s);
}

struct killer {
	struct store *s;
	const char *marker;
	int64_t killed;
};

/* Terminate the backend running the statement tagged with marker, once it shows up. */
static void *killer_main(void *arg)
{
	struct killer *k = arg;
	for (int i = 0; i < 200 && k->killed == 0; i++) {
		sleep_ms(20);
		struct store_value v = store_text(k->marker);
		int64_t n = 0;
		OK(store_query_int(
		    k->s,
		    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
		    "query LIKE '%' || ? || '%' AND pid <> pg_backend_pid() AND query NOT "
		    "LIKE '%pg_terminate_backend%'",
		    &v, 1, &n, E));
		k->killed = n;
	}
	return NULL;
}

TEST(in_flight_drop_retries_reads_not_writes)
{
	if (!STORE_CASE_PG)
		UNIT_SKIP("postgres only");
	struct store *s = open_test("inflight");
	struct store *admin = open_test("inflight");
	OK(store_exec(s, "CREATE TABLE {ns}t (v BIGINT)", NULL, 0, NULL, E));

	/* A read whose connection is killed mid-statement is retried once and succeeds. */
	struct killer k = {.s = admin, .marker = "read_marker_1"};
	pthread_t th;
	CHECK(pthread_create(&th, NULL, killer_main, &k) == 0);
	int64_t n = 0;
	OK(store_query_int(s, "SELECT 7 + 0 * length('read_marker_1') FROM pg_sleep(1)", NULL, 0,
	                   &n, E));
	pthread_join(th, NULL);
	CHECK_EQ_INT(k.killed, 1);
	CHECK_EQ_INT(n, 7);

	/* A write is not repeated: the caller hears that it may or may not have been applied. */
	k = (struct killer){.s = admin, .marker = "write_marker_1"};
	CHECK(pthread_create(&th, NULL, killer_main, &k) == 0);
	struct st_error *err = NULL;
	int r =
	    store_exec(s, "INSERT INTO {ns}t (v) SELECT length('write_marker_1') FROM pg_sleep(1)",
	               NULL, 0, NULL, &err);
	pthread_join(th, NULL);
	CHECK_EQ_INT(k.killed, 1);
	CHECK_EQ_INT(r, -ECONNRESET);
	CHECK_CONTAINS(st_error_msg(err), "may or may not have been applied");
	st_error_free(err);
	/* And the handle works again right away. */
	CHECK_EQ_INT(count(s, "SELECT COUNT(*) FROM {ns}t"), 0);
	store_free(admin);
	store_free(s);
}

TEST(down_server_gives_clear_error)
{
	if (!STORE_CASE_PG)
		UNIT_SKIP("postgres only");
	struct store_options o = test_options("down", 0);
	o.pg_conninfo = "host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=2";
	struct store *s = NULL;
	struct st_error *err = NULL;
	CHECK(store_open(&o, &s, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "cannot connect to postgres");
	st_error_free(err);
}
