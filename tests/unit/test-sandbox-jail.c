/*
 * test-sandbox-jail.c - the agent sandbox manager on `runtime: jail`, driven directly: exec as
 * the sandbox user, pause through the cgroup freezer (a paused sandbox's processes do not
 * run), limits from the jail cgroup, re-adoption by a second manager, a dead init cleaned up
 * as lost, and nothing left behind (record, cgroups, processes). Skipped when not root or
 * where the jail does not work.
 */
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "jail/jail.h"
#include "sandbox/sandbox.h"
#include "unit.h"

static char g_dir[64];
static char *g_priv, *g_pub;
static uint8_t g_key[32];
static bool g_egress_disabled; /* proxy.egressEnabled: false for the next open_mgr */

static struct sandbox_mgr *open_mgr(void)
{
	if (geteuid() != 0)
		unit_skip("needs root for runtime: jail");
	snprintf(g_dir, sizeof(g_dir), "/tmp/stk-sbj-%d", (int)getpid());
	if (!g_priv) {
		CHECK(crypto_es256_generate(&g_priv, &g_pub, NULL) == 0);
		CHECK(crypto_random_bytes(g_key, 32) == 0);
	}
	struct sandbox_options o;
	sandbox_options_init(&o);
	o.runtime = SANDBOX_RUNTIME_JAIL;
	o.state_dir = g_dir;
	o.prewarm_pool_size = 0;
	o.jwt_private_key_pem = g_priv;
	o.jwt_public_key_pem = g_pub;
	o.encryption_key = g_key;
	o.workspace_bytes = 32 << 20;
	o.memory_bytes = 128 << 20;
	o.pids = 64;
	o.egress_disabled = g_egress_disabled;
	struct sandbox_mgr *m = NULL;
	struct st_error *err = NULL;
	int r = sandbox_mgr_open(&o, &m, &err);
	if (r < 0) {
		fprintf(stderr, "open: %s\n", st_error_msg(err));
		st_error_free(err);
		unit_skip("runtime: jail not usable here");
	}
	return m;
}

static void rm_dir(void)
{
	CHECK(unit_rm_rf(g_dir) == 0);
}

static int collect(void *ctx, int stream, const void *d, size_t n)
{
	if (stream == 1)
		st_buf_append(ctx, d, n);
	return 0;
}

/* Run argv in the sandbox; stdout into out (NUL-terminated). */
static int run(struct sandbox_mgr *m, const char *id, const char *cmd, const char *const *args,
               struct st_buf *out, int64_t *exit_code)
{
	st_buf_release(out);
	st_buf_init(out, 1 << 20);
	struct sandbox_exec_req rq = {.cmd = cmd, .args = args, .timeout_ms = 10000};
	struct sandbox_exec_result res;
	struct st_error *err = NULL;
	int r = sandbox_exec(m, "alice", id, &rq, collect, out, &res, &err);
	if (r < 0)
		fprintf(stderr, "exec: %s\n", st_error_msg(err));
	st_error_free(err);
	st_buf_append(out, "", 1);
	if (exit_code)
		*exit_code = res.exit_code;
	return r;
}

static char *create(struct sandbox_mgr *m)
{
	struct sandbox_create_opts co = {.owner = "alice"};
	json_t *j = NULL;
	struct st_error *err = NULL;
	int r = sandbox_create(m, &co, &j, &err);
	if (r < 0)
		fprintf(stderr, "create: %s\n", st_error_msg(err));
	CHECK(r == 0);
	CHECK_STREQ(json_string_value(json_object_get(j, "runtime")), "jail");
	char *id = st_xstrdup(json_string_value(json_object_get(j, "id")));
	json_decref(j);
	return id;
}

static json_t *record(const char *id)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/jail/%s.json", g_dir, id);
	return json_load_file(p, 0, NULL);
}

/* Paused: a background counter in the workspace stops counting; the state says so. */
static void check_pause_stops(struct sandbox_mgr *m, const char *id)
{
	struct sandbox_exec_req bg = {
	    .cmd = "sh",
	    .args =
	        (const char *const[]){"-c", "i=0; while :; do i=$((i+1)); echo $i >n; done", NULL},
	    .background = true};
	struct sandbox_exec_result res;
	struct st_error *err = NULL;
	CHECK(sandbox_exec(m, "alice", id, &bg, NULL, NULL, &res, &err) == 0);
	usleep(200 * 1000);
	CHECK(sandbox_pause(m, "alice", id, &err) == 0);
	json_t *j = NULL;
	CHECK(sandbox_get(m, "alice", id, &j, &err) == 0);
	CHECK_STREQ(json_string_value(json_object_get(j, "state")), "paused");
	json_decref(j);
	char ws[256];
	snprintf(ws, sizeof(ws), "%s/sb/%s/ws/n", g_dir, id);
	char *a = NULL, *b = NULL;
	size_t len;
	usleep(100 * 1000);
	CHECK(st_read_file(ws, 64, &a, &len, NULL) == 0);
	usleep(300 * 1000);
	CHECK(st_read_file(ws, 64, &b, &len, NULL) == 0);
	CHECK_STREQ(a ? a : "", b ? b : "");
	free(a);
	free(b);
}

TEST(sandbox_jail_exec_pause_limits)
{
	struct sandbox_mgr *m = open_mgr();
	char *id = create(m);
	struct st_buf out = {0};
	int64_t ec = -1;
	CHECK(run(m, id, "id", (const char *const[]){"-u", NULL}, &out, &ec) == 0);
	CHECK_STREQ(out.data, "1000\n");
	CHECK(run(m, id, "cat", (const char *const[]){"/proc/1/cmdline", NULL}, &out, &ec) == 0);
	CHECK_CONTAINS(out.data, "/opt/stockade/agent");
	const char *lim[] = {
	    "-c", "grep 'Max processes' /proc/self/limits | tr -s ' ' | cut -d' ' -f3; hostname",
	    NULL};
	CHECK(run(m, id, "sh", lim, &out, &ec) == 0);
	CHECK_STREQ(out.data, "64\nsandbox\n");

	/* The record names the cgroups; the memory limit is the configured one. */
	json_t *rec = record(id);
	CHECK(rec != NULL);
	bool mem_ok = false;
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(rec, "cgroups"), i, d)
	{
		char p[512];
		snprintf(p, sizeof(p), "%s/memory.max", json_string_value(d));
		char *t = NULL;
		size_t len;
		if (st_read_file(p, 64, &t, &len, NULL) == 0 && strstr(t, "134217728"))
			mem_ok = true;
		free(t);
		snprintf(p, sizeof(p), "%s/memory.limit_in_bytes", json_string_value(d));
		if (st_read_file(p, 64, &t, &len, NULL) == 0 && strstr(t, "134217728"))
			mem_ok = true;
		free(t);
	}
	CHECK(mem_ok);

	struct st_error *err = NULL;
	check_pause_stops(m, id);
	CHECK(sandbox_resume(m, "alice", id, &err) == 0);
	CHECK(run(m, id, "echo", (const char *const[]){"back", NULL}, &out, &ec) == 0);
	CHECK_STREQ(out.data, "back\n");

	/* Destroy leaves no record, no cgroup and no process. */
	pid_t pid = (pid_t)json_integer_value(json_object_get(rec, "pid"));
	CHECK(sandbox_destroy(m, "alice", id, &err) == 0);
	json_t *gone = record(id);
	CHECK(gone == NULL);
	json_array_foreach(json_object_get(rec, "cgroups"), i, d)
	{
		struct stat st;
		CHECK(stat(json_string_value(d), &st) < 0);
	}
	CHECK(kill(pid, 0) < 0);
	json_decref(rec);
	st_buf_release(&out);
	free(id);
	sandbox_mgr_free(m);
	rm_dir();
}

TEST(sandbox_jail_recovery)
{
	struct sandbox_mgr *m = open_mgr();
	char *keep = create(m);
	char *lost = create(m);
	struct st_error *err = NULL;
	CHECK(sandbox_file_write(m, "alice", keep, "k.txt", "kept", 4, &err) == 0);
	json_t *lrec = record(lost);
	CHECK(lrec != NULL);
	pid_t lpid = (pid_t)json_integer_value(json_object_get(lrec, "pid"));
	/* The manager goes (claimed sandboxes stay for the next one); one init dies meanwhile. */
	sandbox_mgr_free(m);
	CHECK(kill(lpid, SIGKILL) == 0);
	usleep(100 * 1000);
	m = open_mgr();
	struct st_buf out = {0};
	int64_t ec = -1;
	CHECK(run(m, keep, "cat", (const char *const[]){"k.txt", NULL}, &out, &ec) == 0);
	CHECK_STREQ(out.data, "kept");
	json_t *j = NULL;
	CHECK(sandbox_get(m, "alice", lost, &j, &err) == -ENOENT);
	st_error_release(&err);
	json_t *gone = record(lost);
	CHECK(gone == NULL);
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(lrec, "cgroups"), i, d)
	{
		struct stat st;
		CHECK(stat(json_string_value(d), &st) < 0);
	}
	json_decref(lrec);
	sandbox_mgr_destroy_all(m);
	json_t *kept = record(keep);
	CHECK(kept == NULL);
	st_buf_release(&out);
	free(keep);
	free(lost);
	sandbox_mgr_free(m);
	rm_dir();
}

/* Hosts without a v2 cgroup for the sandbox pause through a v1 freezer cgroup. */
TEST(sandbox_jail_pause_cgroup_v1)
{
	setenv("STOCKADE_CGROUP_VERSION", "1", 1);
	struct sandbox_mgr *m = open_mgr();
	char *id = create(m);
	json_t *rec = record(id);
	CHECK(rec != NULL);
	if (!json_string_value(json_object_get(rec, "freezer")))
		unit_skip("no v1 freezer controller on this host");
	CHECK(json_string_value(json_object_get(rec, "v2")) == NULL);
	check_pause_stops(m, id);
	struct st_error *err = NULL;
	CHECK(sandbox_resume(m, "alice", id, &err) == 0);
	CHECK(sandbox_destroy(m, "alice", id, &err) == 0);
	struct stat st;
	CHECK(stat(json_string_value(json_object_get(rec, "freezer")), &st) < 0);
	json_decref(rec);
	free(id);
	sandbox_mgr_free(m);
	rm_dir();
}

/* A start cut short by a kill -9 of the service (the cgroup made, the init never released)
 * leaves a record naming the cgroup; the next manager removes both. */
static struct jail_cgroup *g_orphan; /* reachable: the test never frees it on purpose */

TEST(sandbox_jail_interrupted_start_cleaned)
{
	if (geteuid() != 0)
		unit_skip("needs root for runtime: jail");
	const char *id = "sb-0123456789abcdef0123";
	char name[64], dir[128], rec[256];
	snprintf(name, sizeof(name), "sbx-%s", id);
	snprintf(g_dir, sizeof(g_dir), "/tmp/stk-sbj-%d", (int)getpid());
	snprintf(dir, sizeof(dir), "%s/jail", g_dir);
	struct st_error *err = NULL;
	CHECK(st_mkdir_p(dir, 0700, &err) == 0);
	struct jail_limits lim;
	memset(&lim, 0, sizeof(lim));
	lim.pids = 16;
	CHECK(jail_cgroup_create(name, &lim, &g_orphan, &err) == 0);
	snprintf(rec, sizeof(rec), "%s/%s.json", dir, id);
	char text[256];
	snprintf(text, sizeof(text), "{\"pid\":0,\"start\":-1,\"cgroups\":[],\"name\":\"%s\"}",
	         name);
	CHECK(st_write_file_atomic(rec, text, strlen(text), 0600, &err) == 0);
	struct sandbox_mgr *m = open_mgr();
	struct stat st;
	CHECK(stat(rec, &st) < 0);
	/* The cgroup is gone: nothing can join it any more. */
	CHECK(jail_cgroup_attach(g_orphan, getpid(), &err) < 0);
	st_error_release(&err);
	sandbox_mgr_free(m);
	rm_dir();
}

TEST(sandbox_jail_egress_switched_off)
{
	g_egress_disabled = true;
	struct sandbox_mgr *m = open_mgr();
	/* Asking for egress is refused, naming the field and the setting. */
	struct sandbox_create_opts co = {.owner = "alice", .allow_egress = true};
	json_t *j = NULL;
	struct st_error *err = NULL;
	CHECK_EQ_INT(sandbox_create(m, &co, &j, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "network.allowEgress");
	CHECK_CONTAINS(st_error_msg(err), "egressEnabled: false");
	st_error_free(err);
	/* Without it, sandboxes are served as before. */
	char *id = create(m);
	err = NULL;
	CHECK(sandbox_destroy(m, "alice", id, &err) == 0);
	free(id);
	sandbox_mgr_free(m);
	rm_dir();
}
