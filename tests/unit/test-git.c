/*
 * test-git.c - the git server's storage (git-repo.c): names, two server processes ("replicas")
 * sharing one state store and one blob store, the push lease, a push that is not committed,
 * an archive that holds what Stockade never writes, deletion.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob/blob.h"
#include "git/git.h"
#include "store/store.h"
#include "unit.h"

struct fixture {
	char dir[64];
	struct store *store;
	struct blob_store *blob;
	struct git_server *g1, *g2; /* two replicas: own caches, shared store and blobs */
};

static struct git_server *open_git(struct fixture *f, const char *cache)
{
	cleanup_free char *path = st_xasprintf("%s/%s", f->dir, cache);
	struct git_options o = {
	    .store = f->store, .blob = f->blob, .cache_dir = path, .lease_wait_ms = 300};
	struct git_server *g = NULL;
	cleanup_error struct st_error *err = NULL;
	int r = git_server_open(&o, &g, &err);
	if (r < 0)
		fprintf(stderr, "git_server_open: %s\n", st_error_msg(err));
	CHECK(r == 0);
	return g;
}

static void setup(struct fixture *f)
{
	if (access("/usr/bin/git", X_OK) != 0)
		unit_skip("git is not installed (scripts/deps.sh installs it)");
	snprintf(f->dir, sizeof(f->dir), "/tmp/st-git-XXXXXX");
	CHECK(mkdtemp(f->dir) != NULL);
	/* Postgres when tests/e2e/store-pg.sh runs this binary against its private server. */
	const char *pg = getenv("STOCKADE_TEST_PG");
	if (pg && *pg) {
		char ns[32];
		snprintf(ns, sizeof(ns), "git_%d", (int)getpid());
		cleanup_error struct st_error *err = NULL;
		int r = store_open_pg(pg, ns, &f->store, &err);
		if (r < 0)
			fprintf(stderr, "store_open_pg: %s\n", st_error_msg(err));
		CHECK(r == 0);
	} else {
		cleanup_free char *db = st_xasprintf("%s/state.db", f->dir);
		CHECK(store_open_sqlite(db, "stockade", &f->store, NULL) == 0);
	}
	cleanup_free char *root = st_xasprintf("%s/blobs", f->dir);
	struct blob_options o = {.provider = BLOB_PROVIDER_FS, .prefix = "git/"};
	o.fs.path = root;
	CHECK(blob_open(&o, &f->blob, NULL) == 0);
	f->g1 = open_git(f, "c1");
	f->g2 = open_git(f, "c2");
}

static void teardown(struct fixture *f)
{
	git_server_close(f->g1);
	git_server_close(f->g2);
	blob_close(f->blob);
	store_free(f->store);
	CHECK(unit_rm_rf(f->dir) == 0);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = NULL;
	CHECK(vasprintf(&cmd, fmt, ap) >= 0);
	va_end(ap);
	int r = system(cmd);
	if (r != 0)
		fprintf(stderr, "failed: %s\n", cmd);
	CHECK(r == 0);
	free(cmd);
}

/* The output of a shell command, trimmed. */
static char *sh_out(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	CHECK(p != NULL);
	static char buf[256];
	size_t n = fread(buf, 1, sizeof(buf) - 1, p);
	pclose(p);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return buf;
}

#define GIT "GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null git "

/* In a push's working copy: a commit holding one file with `text`, as refs/heads/main. */
static void commit_in(const struct git_serve *s, const char *text)
{
	sh("cd '%s/r.git' && b=$(printf '%s' | " GIT "hash-object -w --stdin) && "
	   "t=$(printf '100644 blob %%s\\tfile\\n' $b | " GIT "mktree) && "
	   "c=$(GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t "
	   "GIT_COMMITTER_EMAIL=t@t " GIT "commit-tree $t -m m) && " GIT
	   "update-ref refs/heads/main $c",
	   git_serve_root(s), text);
}

/* Create repository "r" on g and push one commit holding `text` to it (generation 1). */
static void create_and_push(struct git_server *g, const char *text)
{
	json_t *row = NULL;
	CHECK(git_repo_create(g, "r", NULL, NULL, &row, NULL) == 0);
	json_decref(row);
	struct git_serve *p = NULL;
	CHECK(git_serve_begin(g, "r", true, &p, NULL) == 0);
	commit_in(p, text);
	CHECK(git_serve_commit(p, NULL) == 0);
	git_serve_end(p);
}

/* The content of "file" on main in the working copy that a fetch from g serves. */
static char *served_file(struct git_server *g)
{
	struct git_serve *r = NULL;
	CHECK(git_serve_begin(g, "r", false, &r, NULL) == 0);
	cleanup_free char *show =
	    st_xasprintf("cd '%s/r.git' && " GIT "show main:file", git_serve_root(r));
	char *out = st_xstrdup(sh_out(show));
	git_serve_end(r);
	return out;
}

static int64_t generation(struct git_server *g)
{
	json_t *row = NULL;
	CHECK(git_repo_get(g, "r", &row, NULL) == 0);
	int64_t gen = json_integer_value(json_object_get(row, "generation"));
	json_decref(row);
	return gen;
}

TEST(git_repository_names)
{
	static const char *const good[] = {"a", "app", "my-app_2", "v1.2", "A9"};
	static const char *const bad[] = {"",       "-x",   ".hidden", "a/b",  "a b", "x.git",
	                                  "x.lock", "a..b", "é",       "a\\b", NULL};
	for (size_t i = 0; i < ST_ARRAY_SIZE(good); i++)
		CHECK(git_repo_name_valid(good[i]));
	for (size_t i = 0; i < ST_ARRAY_SIZE(bad); i++)
		CHECK(!git_repo_name_valid(bad[i]));
	char longname[102];
	memset(longname, 'a', 101);
	longname[101] = '\0';
	CHECK(!git_repo_name_valid(longname));
	longname[100] = '\0';
	CHECK(git_repo_name_valid(longname));
}

TEST(git_replicas_share_storage_and_serialise_pushes)
{
	struct fixture f;
	setup(&f);
	json_t *row = NULL;
	CHECK(git_repo_create(f.g1, "r", "d", "me", &row, NULL) == 0);
	json_decref(row);
	struct st_error *err = NULL;
	CHECK_EQ_INT(git_repo_create(f.g2, "r", NULL, NULL, &row, &err), -EEXIST);
	st_error_free(err);
	err = NULL;

	struct git_serve *p1 = NULL, *p2 = NULL;
	CHECK(git_serve_begin(f.g1, "r", true, &p1, NULL) == 0);
	commit_in(p1, "one");
	/* replica 2 waits for the lease, then gives up */
	CHECK_EQ_INT(git_serve_begin(f.g2, "r", true, &p2, &err), -EBUSY);
	CHECK_CONTAINS(st_error_msg(err), "another push to 'r'");
	st_error_free(err);
	err = NULL;
	CHECK(git_serve_commit(p1, NULL) == 0);
	git_serve_end(p1);
	CHECK_EQ_INT(generation(f.g1), 1);
	cleanup_free char *obj = st_xasprintf("%s/blobs/git/r/1.tar.zst.blob", f.dir);
	struct stat st;
	CHECK(stat(obj, &st) == 0);

	/* replica 2 serves what replica 1 stored */
	cleanup_free char *one = served_file(f.g2);
	CHECK_STREQ(one, "one");

	/* and pushes on top of it */
	CHECK(git_serve_begin(f.g2, "r", true, &p2, NULL) == 0);
	commit_in(p2, "two");
	CHECK(git_serve_commit(p2, NULL) == 0);
	git_serve_end(p2);
	CHECK_EQ_INT(generation(f.g1), 2);
	CHECK(stat(obj, &st) < 0 && errno == ENOENT); /* the replaced archive is gone */
	cleanup_free char *two = served_file(f.g1);
	CHECK_STREQ(two, "two");

	/* a push that changes no ref stores nothing */
	CHECK(git_serve_begin(f.g1, "r", true, &p1, NULL) == 0);
	CHECK(git_serve_commit(p1, NULL) == 0);
	git_serve_end(p1);
	CHECK_EQ_INT(generation(f.g1), 2);
	teardown(&f);
}

TEST(git_uncommitted_push_is_rolled_back)
{
	struct fixture f;
	setup(&f);
	create_and_push(f.g1, "kept");
	struct git_serve *p = NULL;
	CHECK(git_serve_begin(f.g1, "r", true, &p, NULL) == 0);
	commit_in(p, "lost"); /* e.g. storing it failed: the caller ends without commit */
	git_serve_end(p);
	cleanup_free char *kept = served_file(f.g1);
	CHECK_STREQ(kept, "kept");
	CHECK_EQ_INT(generation(f.g1), 1);
	teardown(&f);
}

TEST(git_stored_archive_with_foreign_entries_is_refused)
{
	struct fixture f;
	setup(&f);
	create_and_push(f.g1, "x");
	/* what an attacker with write access to the bucket might plant */
	static const char *const plants[] = {"config", "hooks/post-update", "info/attributes"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(plants); i++) {
		sh("cd '%s' && rm -rf evil && mkdir -p evil/$(dirname %s) && echo x > evil/%s && "
		   "tar -C evil -c %s | zstd -q -f -o blobs/git/r/1.tar.zst.blob",
		   f.dir, plants[i], plants[i], plants[i]);
		struct git_serve *r = NULL;
		struct st_error *err = NULL;
		CHECK(git_serve_begin(f.g2, "r", false, &r, &err) < 0);
		CHECK_CONTAINS(st_error_msg(err), "refusing it");
		st_error_free(err);
	}
	/* a symbolic link, and a name that climbs out */
	sh("cd '%s' && rm -rf evil && mkdir -p evil/refs && ln -s /etc evil/refs/x && "
	   "tar -C evil -c refs | zstd -q -f -o blobs/git/r/1.tar.zst.blob",
	   f.dir);
	struct git_serve *r = NULL;
	struct st_error *err = NULL;
	CHECK(git_serve_begin(f.g2, "r", false, &r, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "refusing it");
	st_error_free(err);
	err = NULL;
	sh("cd '%s' && tar -c -P --transform 's,^,objects/../../,' -C evil refs 2>/dev/null | "
	   "zstd -q -f -o blobs/git/r/1.tar.zst.blob",
	   f.dir);
	CHECK(git_serve_begin(f.g2, "r", false, &r, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "refusing it");
	st_error_free(err);
	cleanup_free char *escaped = st_xasprintf("%s/refs", f.dir);
	struct stat st;
	CHECK(lstat(escaped, &st) < 0);
	teardown(&f);
}

TEST(git_delete_removes_row_archives_and_copy)
{
	struct fixture f;
	setup(&f);
	create_and_push(f.g1, "x");
	struct git_serve *p = NULL;
	CHECK(git_repo_delete(f.g1, "r", NULL) == 0);
	struct st_error *err = NULL;
	CHECK_EQ_INT(git_repo_delete(f.g1, "r", &err), -ENOENT);
	st_error_free(err);
	err = NULL;
	CHECK_EQ_INT(git_serve_begin(f.g1, "r", false, &p, &err), -ENOENT);
	st_error_free(err);
	cleanup_free char *left = st_xasprintf("ls -A '%s/blobs/git/r' 2>/dev/null | wc -l", f.dir);
	CHECK_STREQ(sh_out(left), "0");
	cleanup_free char *copy = st_xasprintf("%s/c1/r.git", f.dir);
	struct stat st;
	CHECK(stat(copy, &st) < 0);
	/* the name starts over, empty */
	json_t *row = NULL;
	CHECK(git_repo_create(f.g1, "r", NULL, NULL, &row, NULL) == 0);
	CHECK_EQ_INT(json_integer_value(json_object_get(row, "generation")), 0);
	json_decref(row);
	struct git_serve *r = NULL;
	CHECK(git_serve_begin(f.g1, "r", false, &r, NULL) == 0);
	cleanup_free char *refs =
	    st_xasprintf("cd '%s/r.git' && " GIT "for-each-ref | wc -l", git_serve_root(r));
	CHECK_STREQ(sh_out(refs), "0");
	git_serve_end(r);
	teardown(&f);
}

TEST(git_branches_from_loose_and_packed_refs)
{
	struct fixture f;
	setup(&f);
	create_and_push(f.g1, "x");
	json_t *branches = NULL;
	char *head = NULL;
	CHECK(git_repo_branches(f.g1, "r", &branches, &head, NULL) == 0);
	CHECK_STREQ(head, "main");
	CHECK_EQ_INT(json_array_size(branches), 1);
	const char *commit =
	    json_string_value(json_object_get(json_array_get(branches, 0), "commit"));
	CHECK(commit != NULL && strlen(commit) == 40);
	cleanup_free char *want = st_xstrdup(commit);
	json_decref(branches);
	free(head);
	/* packed, plus a loose branch that sorts first */
	sh("cd '%s/c1/r.git' && " GIT "pack-refs --all && " GIT "update-ref refs/heads/a/b main",
	   f.dir);
	CHECK(git_repo_branches(f.g1, "r", &branches, &head, NULL) == 0);
	CHECK_EQ_INT(json_array_size(branches), 2);
	CHECK_STREQ(json_string_value(json_object_get(json_array_get(branches, 0), "name")), "a/b");
	CHECK_STREQ(json_string_value(json_object_get(json_array_get(branches, 1), "name")),
	            "main");
	CHECK_STREQ(json_string_value(json_object_get(json_array_get(branches, 1), "commit")),
	            want);
	json_decref(branches);
	free(head);
	struct st_error *err = NULL;
	CHECK_EQ_INT(git_repo_branches(f.g1, "nope", &branches, &head, &err), -ENOENT);
	st_error_free(err);
	teardown(&f);
}

TEST(git_leases_of_dead_runs_on_this_host_are_released_at_start)
{
	struct fixture f;
	setup(&f);
	create_and_push(f.g1, "x");
	json_t *row = NULL;
	CHECK(git_repo_create(f.g1, "other", NULL, NULL, &row, NULL) == 0);
	json_decref(row);
	char host[256] = "";
	CHECK(gethostname(host, sizeof(host) - 1) == 0);
	/* a crashed run of this host (a pid that is not running), and a live one elsewhere */
	cleanup_free char *dead = st_xasprintf("%s:4194303:00:1", host);
	struct store_value p1[] = {store_text(dead), store_text("r")};
	CHECK(store_exec(f.store,
	                 "UPDATE {ns}git_repos SET lease_owner = ?, lease_until = 9999999999999 "
	                 "WHERE name = ?",
	                 p1, 2, NULL, NULL) == 0);
	struct store_value p2[] = {store_text("elsewhere.invalid:1:00:1"), store_text("other")};
	CHECK(store_exec(f.store,
	                 "UPDATE {ns}git_repos SET lease_owner = ?, lease_until = 9999999999999 "
	                 "WHERE name = ?",
	                 p2, 2, NULL, NULL) == 0);
	struct git_server *g3 = open_git(&f, "c3");
	struct git_serve *p = NULL;
	CHECK(git_serve_begin(g3, "r", true, &p, NULL) == 0); /* no wait: the lease was freed */
	git_serve_end(p);
	struct st_error *err = NULL;
	CHECK_EQ_INT(git_serve_begin(g3, "other", true, &p, &err), -EBUSY);
	st_error_free(err);
	git_server_close(g3);
	teardown(&f);
}
