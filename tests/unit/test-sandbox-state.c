/*
 * test-sandbox-state.c - the agent sandbox's records in the state store without a runtime
 * (no root, no runsc): sandbox rows through boot, claim, pause and end; snapshot records,
 * listing and ownership; and a delete that waits for a restore reading the snapshot. The
 * manager is assembled by hand with only what sandbox-state.c uses; the store is the private
 * SQLite file the manager opens when it is given none. tests/e2e/sandbox-state.sh drives the
 * same code through the service with runsc, on SQLite and on Postgres, with kill -9 recovery.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "sandbox/sandbox-internal.h"
#include "store/store.h"
#include "unit.h"

static char g_dir[64];

static struct sandbox_mgr *fake_mgr(void)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/stk-sbstate-%d", (int)getpid());
	CHECK(st_mkdir_p(g_dir, 0700, NULL) == 0);
	struct sandbox_mgr *m = st_xcalloc(1, sizeof(*m));
	sandbox_options_init(&m->o);
	m->state_dir = st_xstrdup(g_dir);
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	memset(m->key, 7, sizeof(m->key));
	m->has_key = true;
	struct st_error *err = NULL;
	int r = sandbox__state_open(m, &err);
	if (r < 0)
		fprintf(stderr, "state open: %s\n", st_error_msg(err));
	CHECK(r == 0);
	return m;
}

static void fake_mgr_free(struct sandbox_mgr *m)
{
	sandbox__state_close(m);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m->state_dir);
	free(m);
	CHECK(unit_rm_rf(g_dir) == 0);
}

/* A second handle on the manager's database, to look at the rows. */
static char *one(const char *sql)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/state.db", g_dir);
	struct store *s = NULL;
	CHECK(store_open_sqlite(path, "agent_executor", &s, NULL) == 0);
	json_t *rows = NULL;
	CHECK(store_query_json(s, sql, NULL, 0, &rows, NULL) == 0);
	char *out = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	store_free(s);
	return out;
}

TEST(sandbox_rows_follow_the_lifecycle)
{
	struct sandbox_mgr *m = fake_mgr();
	struct sandbox *sb = sandbox__sb_new(m, "sb-00112233445566778899");
	struct st_error *err = NULL;
	CHECK(sandbox__state_boot(m, sb, &err) == 0);
	char *r = one("SELECT owner, state FROM {ns}sandboxes");
	CHECK_STREQ(r, "[{\"owner\":null,\"state\":\"pool\"}]");
	free(r);

	sb->owner = st_xstrdup("alice");
	sb->claimed_ms = sb->last_active_ms = st_now_ms();
	sb->env = json_pack("{s:s}", "TOKEN", "very-secret");
	sb->allow_egress = true;
	sb->allowed_domains = st_xcalloc(2, sizeof(char *));
	sb->allowed_domains[0] = st_xstrdup("pypi.org");
	sb->from_snapshot = st_xstrdup("snap-00000000000000000000aa");
	CHECK(sandbox__state_claim(m, sb, &err) == 0);
	r = one("SELECT owner, state, allow_egress, allowed_domains, env_sealed, from_snapshot, "
	        "runtime FROM {ns}sandboxes");
	CHECK_STREQ(r,
	            "[{\"owner\":\"alice\",\"state\":\"running\",\"allow_egress\":1,"
	            "\"allowed_domains\":\"[\\\"pypi.org\\\"]\",\"env_sealed\":1,"
	            "\"from_snapshot\":\"snap-00000000000000000000aa\",\"runtime\":\"gvisor\"}]");
	free(r);
	r = one("SELECT env FROM {ns}sandboxes");
	CHECK(strstr(r, "very-secret") == NULL);
	free(r);
	CHECK(sandbox__state_owned(m, "alice", sb->id, &err) == 0);
	CHECK_EQ_INT(sandbox__state_owned(m, "bob", sb->id, &err), -ENOENT);
	st_error_release(&err);

	sandbox__state_set(m, sb->id, "paused");
	r = one("SELECT state FROM {ns}sandboxes");
	CHECK_STREQ(r, "[{\"state\":\"paused\"}]");
	free(r);
	sandbox__state_end(m, sb->id, "sandboxIdleTimeoutMs reached");
	r = one("SELECT state, end_reason, ended_at IS NOT NULL AS ended FROM {ns}sandboxes");
	CHECK_STREQ(r, "[{\"state\":\"expired\",\"end_reason\":\"sandboxIdleTimeoutMs "
	               "reached\",\"ended\":1}]");
	free(r);

	/* A pool sandbox that ends leaves no row. */
	struct sandbox *p = sandbox__sb_new(m, "sb-aa112233445566778899");
	CHECK(sandbox__state_boot(m, p, &err) == 0);
	sandbox__state_end(m, p->id, "service stopping (warm pool)");
	r = one("SELECT count(*) AS n FROM {ns}sandboxes WHERE owner IS NULL");
	CHECK_STREQ(r, "[{\"n\":0}]");
	free(r);
	sandbox__sb_free(p);
	sandbox__sb_free(sb);
	fake_mgr_free(m);
}

/* Record a local snapshot object with content `text`. */
static void make_snapshot(struct sandbox_mgr *m, const char *owner, const char *sbid,
                          const char *id, const char *text)
{
	char key[128], path[256], dir[256];
	snprintf(key, sizeof(key), "own/%s", id);
	snprintf(dir, sizeof(dir), "%s/snapshots/own", g_dir);
	snprintf(path, sizeof(path), "%s/snapshots/%s", g_dir, key);
	CHECK(st_mkdir_p(dir, 0700, NULL) == 0);
	CHECK(st_write_file_atomic(path, text, strlen(text), 0600, NULL) == 0);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	struct sandbox_snaprec rec;
	struct st_error *err = NULL;
	CHECK(sandbox__snaprec_begin(m, owner, sbid, id, key, fd, &rec, &err) == 0);
	close(fd);
	CHECK_EQ_INT((int)rec.size, (int)strlen(text));
	CHECK_EQ_INT((int)strlen(rec.sha256), 64);
	CHECK(sandbox__snaprec_finish(m, id, true, &err) == 0);
}

TEST(snapshot_records_list_and_ownership)
{
	struct sandbox_mgr *m = fake_mgr();
	struct st_error *err = NULL;
	struct sandbox *sb = sandbox__sb_new(m, "sb-00112233445566778899");
	CHECK(sandbox__state_boot(m, sb, &err) == 0);
	sb->owner = st_xstrdup("alice");
	CHECK(sandbox__state_claim(m, sb, &err) == 0);
	make_snapshot(m, "alice", sb->id, "snap-000000000000000000000a", "one");
	make_snapshot(m, "alice", sb->id, "snap-000000000000000000000b", "two");
	make_snapshot(m, "bob", "sb-ffffffffffffffffffff", "snap-000000000000000000000c", "three");

	json_t *l = NULL;
	CHECK(sandbox_snapshot_list(m, "alice", NULL, &l, &err) == 0);
	CHECK_EQ_INT((int)json_array_size(l), 2);
	json_decref(l);
	CHECK(sandbox_snapshot_list(m, "alice", sb->id, &l, &err) == 0);
	CHECK_EQ_INT((int)json_array_size(l), 2);
	CHECK_STREQ(json_string_value(json_object_get(json_array_get(l, 0), "sandboxId")), sb->id);
	json_decref(l);
	CHECK_EQ_INT(sandbox_snapshot_list(m, "bob", sb->id, &l, &err), -ENOENT);
	st_error_release(&err);
	CHECK_EQ_INT(sandbox_snapshot_get(m, "bob", "snap-000000000000000000000a", &l, &err),
	             -ENOENT);
	st_error_release(&err);
	CHECK_EQ_INT(sandbox_snapshot_delete(m, "bob", "snap-000000000000000000000a", &err),
	             -ENOENT);
	st_error_release(&err);
	struct sandbox_snaprec rec;
	CHECK_EQ_INT(sandbox__snaprec_open(m, "bob", "snap-000000000000000000000a", &rec, &err),
	             -ENOENT);
	st_error_release(&err);
	/* No record at all: a snapshot from before the store (restored by its key). */
	CHECK_EQ_INT(sandbox__snaprec_open(m, "alice", "snap-0000000000000000000009", &rec, &err),
	             0);

	CHECK(sandbox_snapshot_delete(m, "alice", "snap-000000000000000000000a", &err) == 0);
	char path[256];
	snprintf(path, sizeof(path), "%s/snapshots/own/snap-000000000000000000000a", g_dir);
	CHECK(access(path, F_OK) < 0);
	CHECK(sandbox_snapshot_list(m, "alice", NULL, &l, &err) == 0);
	CHECK_EQ_INT((int)json_array_size(l), 1);
	json_decref(l);
	sandbox__sb_free(sb);
	fake_mgr_free(m);
}

struct del_ctx {
	struct sandbox_mgr *m;
	int r;
	bool done;
};

static void *delete_thread(void *arg)
{
	struct del_ctx *d = arg;
	struct st_error *err = NULL;
	d->r = sandbox_snapshot_delete(d->m, "alice", "snap-000000000000000000000a", &err);
	st_error_free(err);
	__atomic_store_n(&d->done, true, __ATOMIC_SEQ_CST);
	return NULL;
}

TEST(snapshot_delete_waits_for_a_restore_reading_it)
{
	struct sandbox_mgr *m = fake_mgr();
	struct st_error *err = NULL;
	make_snapshot(m, "alice", "sb-00112233445566778899", "snap-000000000000000000000a",
	              "content");
	struct sandbox_snaprec rec;
	CHECK_EQ_INT(sandbox__snaprec_open(m, "alice", "snap-000000000000000000000a", &rec, &err),
	             1);
	struct del_ctx d = {.m = m};
	pthread_t t;
	CHECK(pthread_create(&t, NULL, delete_thread, &d) == 0);
	/* The delete marks it first: a new restore does not find it. */
	struct sandbox_snaprec rec2;
	for (int i = 0; i < 200; i++) {
		int r =
		    sandbox__snaprec_open(m, "alice", "snap-000000000000000000000a", &rec2, &err);
		if (r < 0) {
			CHECK_EQ_INT(r, -ENOENT);
			st_error_release(&err);
			break;
		}
		sandbox__snaprec_close(m, "snap-000000000000000000000a", &rec2);
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	/* ... but the object stays while the first restore still reads it. */
	struct timespec ts = {0, 300 * 1000 * 1000};
	nanosleep(&ts, NULL);
	CHECK(!__atomic_load_n(&d.done, __ATOMIC_SEQ_CST));
	char path[256];
	snprintf(path, sizeof(path), "%s/snapshots/own/snap-000000000000000000000a", g_dir);
	CHECK(access(path, F_OK) == 0);
	sandbox__snaprec_close(m, "snap-000000000000000000000a", &rec);
	pthread_join(t, NULL);
	CHECK_EQ_INT(d.r, 0);
	CHECK(access(path, F_OK) < 0);
	fake_mgr_free(m);
}
