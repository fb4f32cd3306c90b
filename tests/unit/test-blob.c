/*
 * test-blob.c - blob storage: the filesystem backend end to end (round trips, metadata, listing,
 * atomicity under a killed writer, confinement under planted symlinks, threads), the key and
 * metadata rules every backend shares, option handling (env, GCS defaults, S3 addressing,
 * Azure connection strings) and the small XML reader the S3/Azure backends use. The network
 * backends are exercised against real servers in tests/node/blob-*.test.mjs.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "blob/blob-internal.h"
#include "unit.h"

static char *make_root(void)
{
	char tmpl[] = "/tmp/test-blob-XXXXXX";
	char *d = mkdtemp(tmpl);
	CHECK(d != NULL);
	return st_xstrdup(d);
}

static struct blob_store *open_fs(const char *root, const char *prefix)
{
	struct blob_options o = {.provider = BLOB_PROVIDER_FS, .prefix = prefix};
	o.fs.path = root;
	struct blob_store *s = NULL;
	cleanup_error struct st_error *err = NULL;
	int r = blob_open(&o, &s, &err);
	if (r < 0)
		fprintf(stderr, "blob_open: %s\n", st_error_msg(err));
	CHECK(r == 0);
	return s;
}

struct collect {
	char keys[64][256];
	uint64_t sizes[64];
	int n;
};

static int collect_cb(const struct blob_entry *e, void *ud)
{
	struct collect *c = ud;
	if (c->n < 64) {
		snprintf(c->keys[c->n], sizeof(c->keys[0]), "%s", e->key);
		c->sizes[c->n] = e->size;
		c->n++;
	}
	return 0;
}

TEST(fs_round_trip_with_metadata)
{
	cleanup_free char *root = make_root();
	struct blob_store *s = open_fs(root, NULL);
	cleanup_error struct st_error *err = NULL;
	struct blob_meta meta[] = {{"owner", "alice"}, {"content_sha", "abc-123"}};
	CHECK_EQ_INT(blob_put(s, "a/b/c.txt", "hello", 5, meta, 2, &err), 0);
	char *data = NULL;
	size_t len = 0;
	struct blob_info info = {0};
	CHECK_EQ_INT(blob_get(s, "a/b/c.txt", 1024, &data, &len, &info, &err), 0);
	CHECK_EQ_INT(len, 5);
	CHECK(memcmp(data, "hello", 5) == 0);
	CHECK_EQ_INT(info.size, 5);
	CHECK_STREQ(blob_info_meta(&info, "owner"), "alice");
	CHECK_STREQ(blob_info_meta(&info, "content_sha"), "abc-123");
	CHECK(info.etag != NULL);
	free(data);
	blob_info_release(&info);

	/* Overwrite without metadata: the old metadata must not survive. */
	CHECK_EQ_INT(blob_put(s, "a/b/c.txt", "bye", 3, NULL, 0, &err), 0);
	CHECK_EQ_INT(blob_stat(s, "a/b/c.txt", &info, &err), 0);
	CHECK_EQ_INT(info.size, 3);
	CHECK_EQ_INT(info.n_meta, 0);
	blob_info_release(&info);

	/* Too large for the caller's cap. */
	CHECK_EQ_INT(blob_get(s, "a/b/c.txt", 2, &data, &len, NULL, &err), -EFBIG);
	st_error_release(&err);

	CHECK_EQ_INT(blob_delete(s, "a/b/c.txt", &err), 0);
	CHECK_EQ_INT(blob_stat(s, "a/b/c.txt", &info, &err), -ENOENT);
	CHECK_CONTAINS(st_error_msg(err), "no such object");
	st_error_release(&err);
	/* Deleting again is fine; empty directories were pruned. */
	CHECK_EQ_INT(blob_delete(s, "a/b/c.txt", &err), 0);
	cleanup_free char *adir = st_xasprintf("%s/a", root);
	struct stat st;
	CHECK(stat(adir, &st) < 0 && errno == ENOENT);
	blob_close(s);
	CHECK(unit_rm_rf(root) == 0);
}

TEST(fs_empty_object_and_missing)
{
	cleanup_free char *root = make_root();
	struct blob_store *s = open_fs(root, NULL);
	cleanup_error struct st_error *err = NULL;
	CHECK_EQ_INT(blob_put(s, "empty", NULL, 0, NULL, 0, &err), 0);
	char *data = NULL;
	size_t len = 99;
	CHECK_EQ_INT(blob_get(s, "empty", 10, &data, &len, NULL, &err), 0);
	CHECK_EQ_INT(len, 0);
	free(data);
	CHECK_EQ_INT(blob_get(s, "missing/x", 10, &data, &len, NULL, &err), -ENOENT);
	blob_close(s);
	CHECK(unit_rm_rf(root) == 0);
}

TEST(fs_list_sorted_prefix_and_key_that_is_also_a_directory)
{
	cleanup_free char *root = make_root();
	struct blob_store *s = open_fs(root, NULL);
	cleanup_error struct st_error *err = NULL;
	const char *keys[] = {"b", "a/b", "a/b/c", "a/x.blob/y", "a/x.blob", "a/x.meta_/z", "ab"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(keys); i++)
		CHECK_EQ_INT(blob_put(s, keys[i], keys[i], strlen(keys[i]), NULL, 0, &err), 0);
	struct collect c = {0};
	CHECK_EQ_INT(blob_list(s, "", collect_cb, &c, &err), 0);
	CHECK_EQ_INT(c.n, 7);
	CHECK_STREQ(c.keys[0], "a/b");
	CHECK_STREQ(c.keys[1], "a/b/c");
	CHECK_STREQ(c.keys[2], "a/x.blob");
	CHECK_STREQ(c.keys[3], "a/x.blob/y");
	CHECK_STREQ(c.keys[4], "a/x.meta_/z");
	CHECK_STREQ(c.keys[5], "ab");
	CHECK_STREQ(c.keys[6], "b");
	CHECK_EQ_INT(c.sizes[3], strlen("a/x.blob/y"));
	/* Every key reads back its own bytes (no collisions on disk). */
	for (size_t i = 0; i < ST_ARRAY_SIZE(keys); i++) {
		char *data = NULL;
		size_t len = 0;
		CHECK_EQ_INT(blob_get(s, keys[i], 100, &data, &len, NULL, &err), 0);
		CHECK_EQ_INT(len, strlen(keys[i]));
		CHECK(memcmp(data, keys[i], len) == 0);
		free(data);
	}
	memset(&c, 0, sizeof(c));
	CHECK_EQ_INT(blob_list(s, "a/b", collect_cb, &c, &err), 0);
	CHECK_EQ_INT(c.n, 2);
	memset(&c, 0, sizeof(c));
	CHECK_EQ_INT(blob_list(s, "a/x.", collect_cb, &c, &err), 0);
	CHECK_EQ_INT(c.n, 3);
	memset(&c, 0, sizeof(c));
	CHECK_EQ_INT(blob_list(s, "zzz", collect_cb, &c, &err), 0);
	CHECK_EQ_INT(c.n, 0);
	blob_close(s);
	CHECK(unit_rm_rf(root) == 0);
}

static int stop_after_two(const struct blob_entry *e, void *ud)
{
	int *n = ud;
	return ++*n == 2 ? 42 : 0;
}

TEST(fs_list_callback_stops)
{
	cleanup_free char *root = make_root();
	struct blob_store *s = open_fs(root, NULL);
	cleanup_error struct st_error *err = NULL;
	for (int i = 0; i < 5; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		CHECK_EQ_INT(blob_put(s, k, "x", 1, NULL, 0, &err), 0);
	}
	int n = 0;
	CHECK_EQ_INT(blob_list(s, NULL, stop_after_two, &n, &err), 42);
	CHECK_EQ_INT(n, 2);
	blob_close(s);
	CHECK(unit_rm_rf(root) == 0);
}

TEST(fs_prefix_isolates_subsystems)
{
	cleanup_free char *root = make_root();
	struct blob_store *git = open_fs(root, "git/");
	struct blob_store *snap = open_fs(root, "snapshots");
	cleanup_error struct st_error *err = NULL;
	CHECK_EQ_INT(blob_put(git, "repo/pack", "G", 1, NULL, 0, &err), 0);
	CHECK_EQ_INT(blob_put(snap, "repo/pack", "S", 1, NULL, 0, &err), 0);
	char *data = NULL;
	size_t len = 0;
	CHECK_EQ_INT(blob_get(git, "repo/pack", 10, &data, &len, NULL, &err), 0);
	CHECK(data[0] == 'G');
	free(data);
	struct collect c = {0};
	CHECK_EQ_INT(blob_list(snap, "", collect_cb, &c, &err), 0);
	CHECK_EQ_INT(c.n, 1);
	CHECK_STREQ(c.keys[0], "repo/pack");
	cleanup_free char *ondisk = st_xasprintf("%s/snapshots/repo/pack.blob", root);
	struct stat st;
	CHECK(stat(ondisk, &st) == 0);
	blob_close(git);
	blob_close(snap);
	CHECK(unit_rm_rf(root) == 0);
}

TEST(key_rules)
{
	cleanup_error struct st_error *err = NULL;
	CHECK_EQ_INT(blob_key_check("a/b.c-d_e~f g", &err), 0);
	const char *bad[] = {"",       "/abs", "a//b", "a/",   "..",
	                     "a/../b", "./a",  "a/.",  "a\nb", "a\x7f"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(bad); i++) {
		CHECK_EQ_INT(blob_key_check(bad[i], &err), -EINVAL);
		CHECK_CONTAINS(st_error_msg(err), "invalid blob key");
		st_error_release(&err);
	}
	char longkey[BLOB_KEY_MAX + 2];
	memset(longkey, 'a', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	CHECK_EQ_INT(blob_key_check(longkey, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "at most 1024");
	st_error_release(&err);
	char seg[300];
	memset(seg, 'b', sizeof(seg) - 1);
	seg[sizeof(seg) - 1] = '\0';
	CHECK_EQ_INT(blob_key_check(seg, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "255");
}

TEST(metadata_rules)
{
	cleanup_free char *root = make_root();
	struct blob_store *s = open_fs(root, NULL);
	cleanup_error struct st_error *err = NULL;
	struct blob_meta upper[] = {{"Owner", "x"}};
	CHECK_EQ_INT(blob_put(s, "k", "x", 1, upper, 1, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "lowercase");
	st_error_release(&err);
	struct blob_meta dash[] = {{"build-id", "x"}};
	CHECK_EQ_INT(blob_put(s, "k", "x", 1, dash, 1, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "S3 and Azure");
	st_error_release(&err);
	struct blob_meta ctl[] = {{"owner", "a\nb"}};
	CHECK_EQ_INT(blob_put(s, "k", "x", 1, ctl, 1, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "printable ASCII");
	st_error_release(&err);
	struct blob_meta dup[] = {{"a", "1"}, {"a", "2"}};
	CHECK_EQ_INT(blob_put(s, "k", "x", 1, dup, 2, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "twice");
	st_error_release(&err);
	/* Nothing was written by the refused puts. */
	struct blob_info info = {0};
	CHECK_EQ_INT(blob_stat(s, "k", &info, &err), -ENOENT);
	blob_close(s);
	CHECK(unit_rm_rf(root) == 0);
}

TEST(fs_streaming_large_object)
{
	cleanup_free char *root = make_root();
	struct blob_store *s = open_fs(root, NULL);
	cleanup_error struct st_error *err = NULL;
	size_t n = 3 * 1024 * 1024 + 17;
	cleanup_free char *src = st_xmalloc(n);
	for (size_t i = 0; i < n; i++)
		src[i] = (char)(i * 7 + (i >> 13));
	int p[2];
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		_exit(st_write_all(p[1], src, n) < 0 ? 1 : 0);
	}
	close(p[1]);
	CHECK_EQ_INT(blob_put_fd(s, "big/obj", p[0], NULL, 0, &err), 0);
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	char out[] = "/tmp/test-blob-out-XXXXXX";
	int fd = mkstemp(out);
	CHECK(fd >= 0);
	struct blob_info info = {0};
	CHECK_EQ_INT(blob_get_to_fd(s, "big/obj", fd, &info, &err), 0);
	CHECK_EQ_INT(info.size, n);
	blob_info_release(&info);
	char *back = NULL;
	size_t len = 0;
	CHECK_EQ_INT(st_read_file(out, n + 1, &back, &len, &err), 0);
	CHECK_EQ_INT(len, n);
	CHECK(memcmp(back, src, n) == 0);
	free(back);
	close(fd);
	unlink(out);
	blob_close(s);
	CHECK(unit_rm_rf(root) == 0);
}

/*
 * A writer killed mid-upload must leave the key absent (new key) or with its old content
 * (existing key), never a partial object.
 */
static void killed_writer(struct blob_store *s, const char *key)
{
	int p[2];
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(p[1]);
		struct st_error *e = NULL;
		blob_put_fd(s, key, p[0], NULL, 0, &e);
		_exit(0);
	}
	close(p[0]);
	char chunk[65536];
	memset(chunk, 'N', sizeof(chunk));
	for (int i = 0; i < 16; i++)
		CHECK(st_write_all(p[1], chunk, sizeof(chunk)) == (ssize_t)sizeof(chunk));
	/* The child is now blocked reading the rest of the stream, a temp file half written. */
	kill(pid, SIGKILL);
	int st;
	waitpid(pid, &st, 0);
	close(p[1]);
	CHECK(WIFSIGNALED(st));
}

TEST(fs_killed_writer_leaves_no_partial_object)
{
	cleanup_free char *root = make_root();
	struct blob_store *s = open_fs(root, NULL);
	cleanup_error struct st_error *err = NULL;
	killed_writer(s, "new/key");
	struct blob_info info = {0};
	CHECK_EQ_INT(blob_stat(s, "new/key", &info, &err), -ENOENT);
	st_error_release(&err);

	struct blob_meta meta[] = {{"v", "old"}};
	CHECK_EQ_INT(blob_put(s, "old/key", "OLD", 3, meta, 1, &err), 0);
	killed_writer(s, "old/key");
	char *data = NULL;
	size_t len = 0;
	CHECK_EQ_INT(blob_get(s, "old/key", 1 << 20, &data, &len, &info, &err), 0);
	CHECK_EQ_INT(len, 3);
	CHECK(memcmp(data, "OLD", 3) == 0);
	CHECK_STREQ(blob_info_meta(&info, "v"), "old");
	free(data);
	blob_info_release(&info);
	/* The stray temporary files are invisible to listing. */
	struct collect c = {0};
	CHECK_EQ_INT(blob_list(s, "", collect_cb, &c, &err), 0);
	CHECK_EQ_INT(c.n, 1);
	CHECK_STREQ(c.keys[0], "old/key");
	blob_close(s);
	CHECK(unit_rm_rf(root) == 0);
}

TEST(fs_confined_under_root_despite_symlinks)
{
	cleanup_free char *root = make_root();
	cleanup_free char *outside = make_root();
	struct blob_store *s = open_fs(root, NULL);
	cleanup_error struct st_error *err = NULL;
	/* Someone with write access to the store plants symlinks to escape it. */
	cleanup_free char *link1 = st_xasprintf("%s/evil", root);
	CHECK(symlink(outside, link1) == 0);
	cleanup_free char *secret = st_xasprintf("%s/secret.blob", outside);
	CHECK(st_write_file_atomic(secret, "TOPSECRET", 9, 0600, &err) == 0);
	cleanup_free char *link2 = st_xasprintf("%s/leak.blob", root);
	CHECK(symlink(secret, link2) == 0);

	CHECK(blob_put(s, "evil/x", "pwned", 5, NULL, 0, &err) < 0);
	st_error_release(&err);
	cleanup_free char *escaped = st_xasprintf("%s/x.blob", outside);
	struct stat st;
	CHECK(stat(escaped, &st) < 0);

	char *data = NULL;
	size_t len = 0;
	CHECK(blob_get(s, "evil/secret", 100, &data, &len, NULL, &err) < 0);
	st_error_release(&err);
	CHECK(blob_get(s, "leak", 100, &data, &len, NULL, &err) < 0);
	st_error_release(&err);
	/* Refused (a symlink in the way) or a no-op: never a removal outside the root. */
	int r = blob_delete(s, "evil/secret", &err);
	CHECK(r == 0 || r == -ELOOP);
	st_error_release(&err);
	CHECK(stat(secret, &st) == 0);
	struct collect c = {0};
	CHECK_EQ_INT(blob_list(s, "", collect_cb, &c, &err), 0);
	CHECK_EQ_INT(c.n, 0);
	blob_close(s);
	CHECK(unit_rm_rf(root) == 0);
	CHECK(unit_rm_rf(outside) == 0);
}

struct thread_arg {
	struct blob_store *s;
	int id;
	int failures;
};

static void *hammer(void *p)
{
	struct thread_arg *a = p;
	for (int i = 0; i < 40; i++) {
		char key[64], val[64];
		snprintf(key, sizeof(key), "t%d/k%d", a->id, i % 5);
		snprintf(val, sizeof(val), "v-%d-%d", a->id, i);
		struct st_error *err = NULL;
		struct blob_meta m[] = {{"writer", val}};
		if (blob_put(a->s, key, val, strlen(val), m, 1, &err) < 0)
			a->failures++;
		char *data = NULL;
		size_t len = 0;
		struct blob_info info = {0};
		if (blob_get(a->s, key, 100, &data, &len, &info, &err) < 0 || len != strlen(val) ||
		    memcmp(data, val, len) != 0)
			a->failures++;
		/* Shared key across threads: whatever we read must be self-consistent. */
		if (blob_get(a->s, "shared/k", 100, &data, &len, &info, &err) == 0) {
			const char *w = blob_info_meta(&info, "writer");
			if (w && (strlen(w) != len || memcmp(w, data, len) != 0))
				a->failures++;
		}
		blob_info_release(&info);
		free(data);
		if (blob_put(a->s, "shared/k", val, strlen(val), m, 1, &err) < 0)
			a->failures++;
		if (i % 7 == 0 && blob_delete(a->s, "shared/k", &err) < 0)
			a->failures++;
		st_error_free(err);
	}
	return NULL;
}

TEST(fs_store_shared_by_threads)
{
	cleanup_free char *root = make_root();
	struct blob_store *s = open_fs(root, NULL);
	pthread_t th[4];
	struct thread_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){.s = s, .id = i};
		CHECK(pthread_create(&th[i], NULL, hammer, &args[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(args[i].failures, 0);
	}
	blob_close(s);
	CHECK(unit_rm_rf(root) == 0);
}

TEST(open_errors_name_what_to_fix)
{
	cleanup_error struct st_error *err = NULL;
	struct blob_store *s = NULL;
	struct blob_options o = {0};
	CHECK_EQ_INT(blob_open(&o, &s, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "no blob storage provider");
	st_error_release(&err);
	o.provider = BLOB_PROVIDER_S3;
	CHECK_EQ_INT(blob_open(&o, &s, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "bucket");
	st_error_release(&err);
	o.s3.bucket = "my-bucket";
	o.s3.access_key_id = "AK";
	CHECK_EQ_INT(blob_open(&o, &s, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "no secret access key");
	st_error_release(&err);
	o.s3.access_key_id = NULL;
	CHECK_EQ_INT(blob_open(&o, &s, &err), 0); /* anonymous */
	CHECK(s->s3_anonymous);
	blob_close(s);
	o.s3.access_key_id = "AK";
	o.s3.secret_access_key = "SK";
	o.s3.endpoint = "ftp://x";
	CHECK_EQ_INT(blob_open(&o, &s, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "http:// or https://");
	st_error_release(&err);
	o.s3.endpoint = NULL;
	o.s3.bucket = "Bad_Bucket";
	CHECK_EQ_INT(blob_open(&o, &s, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "invalid bucket name");
	st_error_release(&err);
	struct blob_options f = {.provider = BLOB_PROVIDER_FS};
	CHECK_EQ_INT(blob_open(&f, &s, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "needs a path");
	st_error_release(&err);
	f.fs.path = "/tmp/x";
	f.prefix = "../up";
	CHECK_EQ_INT(blob_open(&f, &s, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "prefix");
}

TEST(s3_addressing_and_gcs_defaults)
{
	cleanup_error struct st_error *err = NULL;
	struct blob_store *s = NULL;
	struct blob_options o = {.provider = BLOB_PROVIDER_S3};
	o.s3.bucket = "bkt";
	o.s3.access_key_id = "AK";
	o.s3.secret_access_key = "SK";
	o.s3.region = "eu-west-1";
	CHECK_EQ_INT(blob_open(&o, &s, &err), 0);
	CHECK(!s->path_style);
	CHECK_STREQ(s->s3_base, "https://bkt.s3.eu-west-1.amazonaws.com");
	CHECK_STREQ(s->sigv4, "aws:amz:eu-west-1:s3");
	blob_close(s);
	o.s3.force_path_style = true;
	CHECK_EQ_INT(blob_open(&o, &s, &err), 0);
	CHECK(s->path_style);
	CHECK_STREQ(s->s3_base, "https://s3.eu-west-1.amazonaws.com");
	blob_close(s);
	o.s3.force_path_style = false;
	o.s3.endpoint = "http://127.0.0.1:9000/";
	CHECK_EQ_INT(blob_open(&o, &s, &err), 0);
	CHECK(s->path_style); /* an IP cannot take a bucket label */
	CHECK_STREQ(s->s3_base, "http://127.0.0.1:9000");
	blob_close(s);
	o.s3.endpoint = "https://minio.example.com";
	CHECK_EQ_INT(blob_open(&o, &s, &err), 0);
	CHECK_STREQ(s->s3_base, "https://bkt.minio.example.com");
	blob_close(s);

	struct blob_options g = {.provider = BLOB_PROVIDER_GCS};
	g.s3.bucket = "gbucket";
	g.s3.access_key_id = "GOOG1EXAMPLE";
	g.s3.secret_access_key = "secret";
	CHECK_EQ_INT(blob_open(&g, &s, &err), 0);
	CHECK_STREQ(s->s3_base, "https://gbucket.storage.googleapis.com");
	CHECK_STREQ(s->sigv4, "aws:amz:auto:s3");
	CHECK_EQ_INT(blob_store_provider(s), BLOB_PROVIDER_GCS);
	blob_close(s);
}

TEST(options_from_env_fall_back_to_default)
{
	cleanup_error struct st_error *err = NULL;
	struct blob_options o = {0};
	unsetenv("RRT_GIT_S3_BUCKET");
	unsetenv("RRT_DEFAULT_S3_BUCKET");
	CHECK_EQ_INT(blob_options_from_env(&o, "RRT_GIT_S3", "RRT_DEFAULT_S3", &err), 0);
	CHECK_EQ_INT(o.provider, BLOB_PROVIDER_NONE);
	setenv("RRT_DEFAULT_S3_BUCKET", "shared", 1);
	setenv("RRT_DEFAULT_S3_REGION", "us-west-2", 1);
	setenv("RRT_DEFAULT_S3_ACCESS_KEY_ID", "AKDEF", 1);
	setenv("RRT_GIT_S3_ACCESS_KEY_ID", "AKGIT", 1);
	setenv("RRT_GIT_S3_FORCE_PATH_STYLE", "true", 1);
	CHECK_EQ_INT(blob_options_from_env(&o, "RRT_GIT_S3", "RRT_DEFAULT_S3", &err), 1);
	CHECK_EQ_INT(o.provider, BLOB_PROVIDER_S3);
	CHECK_STREQ(o.s3.bucket, "shared");
	CHECK_STREQ(o.s3.region, "us-west-2");
	CHECK_STREQ(o.s3.access_key_id, "AKGIT");
	CHECK(o.s3.force_path_style);
	setenv("RRT_GIT_S3_FORCE_PATH_STYLE", "maybe", 1);
	CHECK_EQ_INT(blob_options_from_env(&o, "RRT_GIT_S3", "RRT_DEFAULT_S3", &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "FORCE_PATH_STYLE");
}

TEST(azure_connection_strings)
{
	cleanup_error struct st_error *err = NULL;
	struct blob_store *s = NULL;
	struct blob_options o = {.provider = BLOB_PROVIDER_AZURE};
	o.azure.container = "snaps";
	o.azure.connection_string = "UseDevelopmentStorage=true";
	CHECK_EQ_INT(blob_open(&o, &s, &err), 0);
	CHECK_STREQ(s->az_account, "devstoreaccount1");
	CHECK_STREQ(s->az_base, "http://127.0.0.1:10000/devstoreaccount1");
	CHECK_STREQ(s->az_resource_base, "/devstoreaccount1/devstoreaccount1");
	CHECK_EQ_INT(s->az_key_len, 64);
	blob_close(s);
	o.azure.connection_string = "DefaultEndpointsProtocol=https;AccountName=acme;"
	                            "AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net";
	CHECK_EQ_INT(blob_open(&o, &s, &err), 0);
	CHECK_STREQ(s->az_base, "https://acme.blob.core.windows.net");
	CHECK_STREQ(s->az_resource_base, "/acme");
	CHECK_EQ_INT(s->az_key_len, 6);
	CHECK(memcmp(s->az_key, "secret", 6) == 0);
	blob_close(s);
	o.azure.connection_string = "AccountName=acme;AccountKey=not*base64";
	CHECK_EQ_INT(blob_open(&o, &s, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "account key");
	st_error_release(&err);
	o.azure.connection_string = "garbage";
	CHECK_EQ_INT(blob_open(&o, &s, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "connection string");
	st_error_release(&err);
	o.azure.connection_string = "UseDevelopmentStorage=true";
	o.azure.container = "Bad--Name";
	CHECK_EQ_INT(blob_open(&o, &s, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "container name");
}

TEST(xml_reader)
{
	const char *x = "<?xml version=\"1.0\"?><R xmlns=\"u\"><Contents><Key>a&amp;b &lt;c&gt; "
	                "&#233;&#x4e2d;</Key><Size>12</Size></Contents><Contents><Key>k2</Key>"
	                "<Size>3</Size></Contents><Empty/><IsTruncated>false</IsTruncated></R>";
	const char *end = x + strlen(x);
	const char *pos = x, *in, *in_end;
	CHECK(blob__xml_next(&pos, end, "Contents", &in, &in_end));
	cleanup_free char *k1 = blob__xml_text(in, in_end, "Key");
	CHECK_STREQ(k1, "a&b <c> \xc3\xa9\xe4\xb8\xad");
	CHECK(blob__xml_next(&pos, end, "Contents", &in, &in_end));
	cleanup_free char *k2 = blob__xml_text(in, in_end, "Key");
	CHECK_STREQ(k2, "k2");
	CHECK(!blob__xml_next(&pos, end, "Contents", &in, &in_end));
	cleanup_free char *empty = blob__xml_text(x, end, "Empty");
	CHECK_STREQ(empty, "");
	cleanup_free char *missing = blob__xml_text(x, end, "Nope");
	CHECK(missing == NULL);
	/* <Key> must not match <KeyCount>. */
	const char *y = "<KeyCount>5</KeyCount><Key>real</Key>";
	cleanup_free char *k = blob__xml_text(y, y + strlen(y), "Key");
	CHECK_STREQ(k, "real");
	/* Unterminated: reported missing, not half-read. */
	const char *z = "<Key>abc";
	CHECK(blob__xml_text(z, z + strlen(z), "Key") == NULL);
	CHECK_EQ_INT(blob__parse_time("Wed, 21 Oct 2015 07:28:00 GMT"), 1445412480);
	CHECK_EQ_INT(blob__parse_time("2015-10-21T07:28:00.000Z"), 1445412480);
	CHECK_EQ_INT(blob__parse_time("nonsense"), 0);
	cleanup_free char *enc = blob__uri_encode("a b/c+d~é", true);
	CHECK_STREQ(enc, "a%20b/c%2Bd~%C3%A9");
	cleanup_free char *enc2 = blob__uri_encode("a/b", false);
	CHECK_STREQ(enc2, "a%2Fb");
}
