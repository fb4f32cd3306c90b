/* test-jail.c - the jail library: spec defaults, report JSON, seccomp policies and syscall
   names, cgroups, and jail_run reaching each limit. Tests that build jails need root (or
   skip); each uses its own cgroup parent and removes it. */
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "common/common.h"
#include "jail/jail-internal.h"
#include "jail/jail.h"
#include "unit.h"

/* argv arrays from literals (which are const here): copies freed at exit. */
static char **dup_list[64];
static int n_dup;
static void free_dups(void)
{
	for (int i = 0; i < n_dup; i++) {
		for (char **p = dup_list[i]; *p; p++)
			free(*p);
		free(dup_list[i]);
	}
}
static char **dup_argv(const char *const *src)
{
	size_t n = 0;
	while (src[n])
		n++;
	char **a = st_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		a[i] = st_xstrdup(src[i]);
	if (n_dup == 0)
		atexit(free_dups);
	if (n_dup < 64)
		dup_list[n_dup++] = a;
	return a;
}
#define ARGV(name, ...)                                       \
	const char *const name##_lit[] = {__VA_ARGS__, NULL}; \
	char **name = dup_argv(name##_lit)

static void unique_parent(void)
{
	char name[64];
	snprintf(name, sizeof(name), "stockade-unit-%d", (int)getpid());
	setenv("STOCKADE_CGROUP_PARENT", name, 1);
}

static void need_root(void)
{
	if (geteuid() != 0)
		UNIT_SKIP("needs root");
}

/* Run argv in a jail with the given limits; output captured. */
static void run(char *const *argv, const struct jail_limits *lim, struct jail_report *r)
{
	struct jail_spec spec;
	jail_spec_init(&spec);
	spec.argv = argv;
	spec.capture_output = true;
	if (lim) {
		uint64_t out = spec.limits.output_bytes;
		spec.limits = *lim;
		if (!spec.limits.output_bytes)
			spec.limits.output_bytes = out;
		if (!spec.limits.tmp_bytes)
			spec.limits.tmp_bytes = 16u << 20;
		if (!spec.limits.nofile)
			spec.limits.nofile = 256;
	}
	cleanup_error struct st_error *err = NULL;
	int rc = jail_run(&spec, r, &err);
	if (rc < 0)
		fprintf(stderr, "jail_run: %s\n", st_error_msg(err));
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(jail_cgroup_remove_parent(), 0);
}

TEST(spec_defaults)
{
	struct jail_spec s;
	jail_spec_init(&s);
	CHECK(s.argv == NULL && s.env == NULL);
	CHECK_EQ_INT(s.net, JAIL_NET_LOOPBACK);
	CHECK_STREQ(s.seccomp_policy, "default");
	CHECK_EQ_INT(s.limits.tmp_bytes, 64u << 20);
	CHECK_EQ_INT(s.limits.nofile, 256);
	CHECK_EQ_INT(s.limits.fsize_bytes, 64u << 20);
	CHECK_EQ_INT(s.limits.stack_bytes, 8u << 20);
	CHECK_EQ_INT(s.limits.output_bytes, 1u << 20);
	CHECK_EQ_INT(s.stdin_fd, -1);
	CHECK(!s.rootless && !s.capture_output && !s.no_cgroup);
}

TEST(report_json)
{
	struct jail_report r;
	memset(&r, 0, sizeof(r));
	r.status = JAIL_SANDBOX_VIOLATION;
	r.signal = 9;
	r.wall_ms = 12;
	r.limits_hit = JAIL_HIT_PIDS | JAIL_HIT_WALL;
	r.violation_syscall = st_xstrdup("ptrace");
	r.out = st_xstrdup("a\xff"
	                   "b");
	r.out_len = 3;
	json_t *j = jail_report_to_json(&r);
	char *s = json_dumps(j, JSON_COMPACT);
	CHECK_CONTAINS(s, "\"status\":\"sandbox_violation\"");
	CHECK_CONTAINS(s, "\"violation\":{\"syscall\":\"ptrace\"}");
	CHECK_CONTAINS(s, "\"limitsHit\":[\"pids\",\"wall\"]");
	CHECK_CONTAINS(s, "\"exitCode\":null");
	CHECK_CONTAINS(s, "\"stdout\":\"a\xef\xbf\xbd"
	                  "b\"");
	free(s);
	json_decref(j);
	jail_report_release(&r);
	r.status = JAIL_SETUP_ERROR;
	r.setup_step = st_xstrdup("mount /proc");
	r.setup_error = st_xstrdup("Operation not permitted");
	j = jail_report_to_json(&r);
	s = json_dumps(j, JSON_COMPACT);
	CHECK_CONTAINS(s, "\"setupError\":{\"step\":\"mount /proc\",\"message\":\"Operation not "
	                  "permitted\"}");
	free(s);
	json_decref(j);
	jail_report_release(&r);
	const char *names[] = {"ok",           "error",        "signaled",          "timeout",
	                       "memory_limit", "output_limit", "sandbox_violation", "setup_error"};
	for (int i = 0; i <= JAIL_SETUP_ERROR; i++)
		CHECK_STREQ(jail_status_name((enum jail_status)i), names[i]);
}

TEST(syscall_names)
{
	CHECK_STREQ(jail_syscall_name(101), "ptrace");
	CHECK_STREQ(jail_syscall_name(SYS_bpf), "bpf");
	CHECK_STREQ(jail_syscall_name(0), "read");
	CHECK(jail_syscall_name(99999) == NULL);
	const char *const *p = jail_seccomp_policies();
	CHECK_STREQ(p[0], "default");
	CHECK_STREQ(p[1], "egress");
}

TEST(policy_compile)
{
	char path[] = "/tmp/unit-pfc-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	unlink(path);
	cleanup_error struct st_error *err = NULL;
	CHECK_EQ_INT(jail_seccomp_export_pfc("default", fd, &err), 0);
	char *text = NULL;
	size_t len;
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	CHECK_EQ_INT(st_read_file(proc, 1 << 22, &text, &len, NULL), 0);
	CHECK_CONTAINS(text, "x86_64");
	CHECK_CONTAINS(text, "ptrace");
	free(text);
	close(fd);
	CHECK(jail_seccomp_export_pfc("nonsense", fd, &err) == -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "unknown seccomp policy 'nonsense'");
}

/* The programs compiled at build time are exactly what libseccomp gives at run time, for
   every policy with and without the user-notify action; extra syscalls compile at run time. */
TEST(seccomp_prebuilt_matches_libseccomp)
{
	const char *const *names = jail_seccomp_policies();
	int n = 0;
	for (; names[n]; n++) {
		CHECK(n < JAIL__SECCOMP_NPOLICIES);
		for (int notify = 0; notify < 2; notify++) {
			struct jail__bpf *fresh = NULL;
			cleanup_error struct st_error *err = NULL;
			CHECK_EQ_INT(jail__seccomp_build(names[n], NULL, notify, &fresh, &err), 0);
			const struct jail__bpf *pre = &jail__seccomp_prebuilt[n][notify];
			CHECK_EQ_INT(pre->len, fresh->len);
			CHECK(memcmp(pre->insns, fresh->insns,
			             fresh->len * sizeof(*fresh->insns)) == 0);
			const struct jail__bpf *got = NULL;
			bool owned = true;
			CHECK_EQ_INT(
			    jail__seccomp_compile(names[n], NULL, notify, &got, &owned, &err), 0);
			CHECK(got == pre && !owned);
			jail__bpf_free(fresh);
		}
	}
	CHECK_EQ_INT(n, JAIL__SECCOMP_NPOLICIES);
	const char *extra[] = {"ptrace", NULL};
	const struct jail__bpf *got = NULL;
	bool owned = false;
	cleanup_error struct st_error *err = NULL;
	CHECK_EQ_INT(jail__seccomp_compile("default", extra, true, &got, &owned, &err), 0);
	const struct jail__bpf *pre = &jail__seccomp_prebuilt[0][1];
	CHECK(owned);
	CHECK(got->len != pre->len ||
	      memcmp(got->insns, pre->insns, got->len * sizeof(*got->insns)) != 0);
	jail__bpf_free(got);
}

/* In-process load (the zygote path): forbidden calls kill with SIGSYS, argument-checked
   ones fail with their errno, ordinary ones work. */
static int child_status(void (*fn)(void))
{
	pid_t p = fork();
	CHECK(p >= 0);
	if (p == 0) {
		cleanup_error struct st_error *err = NULL;
		if (jail_seccomp_load("default", &err) < 0) {
			fprintf(stderr, "%s\n", st_error_msg(err));
			_exit(99);
		}
		fn();
		_exit(0);
	}
	int st;
	CHECK(waitpid(p, &st, 0) == p);
	return st;
}

static void do_ptrace(void)
{
	syscall(SYS_ptrace, 0, 0, 0, 0);
}
static void do_socket_checks(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s >= 0 || errno != EAFNOSUPPORT)
		_exit(10);
	s = socket(AF_PACKET, SOCK_RAW, 0);
	if (s >= 0 || errno != EAFNOSUPPORT)
		_exit(11);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0)
		_exit(12);
	close(s);
	/* TIOCSTI with high bits set is still TIOCSTI */
	char c = 'x';
	if (syscall(SYS_ioctl, 0, 0x100000000ul | TIOCSTI, &c) != -1 || errno != EPERM)
		_exit(13);
	struct clone_args ca;
	memset(&ca, 0, sizeof(ca));
	if (syscall(SYS_clone3, &ca, sizeof(ca)) != -1 || errno != ENOSYS)
		_exit(14);
	if (syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0) != -1 || errno != EPERM)
		_exit(15);
	if (getpid() <= 0)
		_exit(16);
	/* file locks: taken "successfully" but never visible (no covert channel) */
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0)
		_exit(17);
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (fcntl(fd, F_OFD_GETLK, &fl) != -1 || errno != ENOLCK)
		_exit(18);
	if (fcntl(fd, F_GETFD) < 0) /* other fcntl commands untouched */
		_exit(19);
	close(fd);
}
static void do_x32(void)
{
	syscall(0x40000000 | 39); /* x32 getpid */
}

TEST(seccomp_in_process)
{
	int st = child_status(do_ptrace);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
	st = child_status(do_socket_checks);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "status %d\n", st);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	st = child_status(do_x32);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
}

TEST(privileges_and_rlimits)
{
	pid_t p = fork();
	CHECK(p >= 0);
	if (p == 0) {
		struct jail_limits l;
		memset(&l, 0, sizeof(l));
		l.nofile = 64;
		l.fsize_bytes = 4096;
		if (jail_apply_rlimits(&l, NULL) < 0 || jail_drop_privileges(NULL) < 0)
			_exit(1);
		char *st = NULL;
		size_t n;
		if (st_read_file("/proc/self/status", 1 << 16, &st, &n, NULL) < 0)
			_exit(2);
		if (!strstr(st, "CapEff:\t0000000000000000") || !strstr(st, "NoNewPrivs:\t1") ||
		    (!strstr(st, "CapBnd:\t0000000000000000") && geteuid() == 0))
			_exit(3);
		free(st);
		struct rlimit rl;
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur != 64)
			_exit(4);
		getrlimit(RLIMIT_CORE, &rl);
		_exit(rl.rlim_max == 0 ? 0 : 5);
	}
	int st;
	CHECK(waitpid(p, &st, 0) == p);
	CHECK_EQ_INT(WEXITSTATUS(st), 0);
}

TEST(cgroup_lifecycle)
{
	need_root();
	unique_parent();
	struct jail_limits l;
	memset(&l, 0, sizeof(l));
	l.memory_bytes = 64u << 20;
	l.pids = 16;
	struct jail_cgroup *cg = NULL;
	cleanup_error struct st_error *err = NULL;
	CHECK_EQ_INT(jail_cgroup_create("t1", &l, &cg, &err), 0);
	pid_t p = fork();
	if (p == 0) {
		pause();
		_exit(0);
	}
	CHECK_EQ_INT(jail_cgroup_attach(cg, p, &err), 0);
	struct jail_cgroup_stats st;
	CHECK_EQ_INT(jail_cgroup_read_stats(cg, &st), 0);
	CHECK(!st.oom_killed);
	CHECK_EQ_INT(jail_cgroup_kill(cg, &err), 0);
	int ws;
	CHECK(waitpid(p, &ws, 0) == p);
	CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
	jail_cgroup_destroy(cg);
	CHECK_EQ_INT(jail_cgroup_remove_parent(), 0);
	/* A bad parent name is refused. */
	setenv("STOCKADE_CGROUP_PARENT", "../escape", 1);
	CHECK(jail_cgroup_create("t2", &l, &cg, &err) == -EINVAL);
}

TEST(cgroup_v2_only)
{
	need_root();
	unique_parent();
	setenv("STOCKADE_CGROUP_VERSION", "2", 1);
	struct jail_limits l;
	memset(&l, 0, sizeof(l));
	l.memory_bytes = 64u << 20;
	struct jail_cgroup *cg = NULL;
	CHECK_EQ_INT(jail_cgroup_create("v2", &l, &cg, NULL), 0);
	size_t nw;
	const char *const *w = jail_cgroup_warnings(cg, &nw);
	struct stat sb;
	if (stat("/sys/fs/cgroup/unified/cgroup.procs", &sb) == 0 ||
	    stat("/sys/fs/cgroup/cgroup.procs", &sb) == 0) {
		/* membership and kill work on v2 even without controllers */
		pid_t p = fork();
		if (p == 0) {
			pause();
			_exit(0);
		}
		CHECK_EQ_INT(jail_cgroup_attach(cg, p, NULL), 0);
		CHECK_EQ_INT(jail_cgroup_kill(cg, NULL), 0);
		int ws;
		CHECK(waitpid(p, &ws, 0) == p && WIFSIGNALED(ws));
	}
	/* on a host without the v2 memory controller the limit is a warning, not a failure */
	bool mem_warned = false;
	for (size_t i = 0; i < nw; i++)
		if (strstr(w[i], "memory limit not enforced"))
			mem_warned = true;
	char ctrls[256] = "";
	FILE *f = fopen("/sys/fs/cgroup/unified/cgroup.controllers", "r");
	if (f) {
		if (!fgets(ctrls, sizeof(ctrls), f))
			ctrls[0] = '\0';
		fclose(f);
	}
	if (!strstr(ctrls, "memory"))
		CHECK(mem_warned);
	jail_cgroup_destroy(cg);
	CHECK_EQ_INT(jail_cgroup_remove_parent(), 0);
}

/* jail_cgroup_kill_procs only reads the directory's cgroup.procs: a plain directory stands in
   for a cgroup, and since that list never empties the call ends with -EBUSY. */
static int write_procs(const char *dir, const char *text)
{
	cleanup_free char *p = st_xasprintf("%s/cgroup.procs", dir);
	return st_write_file_atomic(p, text, strlen(text), 0600, NULL);
}

TEST(cgroup_kill_procs_list)
{
	char dir[] = "/tmp/stockade-test-killprocs-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	cleanup_close int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	CHECK(dirfd >= 0);
	CHECK_EQ_INT(jail_cgroup_kill_procs(dirfd, 5), -ENOENT);
	CHECK_EQ_INT(write_procs(dir, ""), 0);
	CHECK_EQ_INT(jail_cgroup_kill_procs(dirfd, 5), 0);

	pid_t p = fork();
	if (p == 0) {
		pause();
		_exit(0);
	}
	CHECK(p > 0);
	/* A list too long for one read: a pid cut off at the end is not taken for the shorter
	   number it starts with (here: the child's pid followed by one more digit). */
	size_t digits = (size_t)snprintf(NULL, 0, "%d", (int)p);
	struct st_buf b;
	st_buf_init(&b, 1 << 16);
	size_t pad = 8191 - digits; /* what one read of the list takes */
	if (pad % 2) {
		CHECK_EQ_INT(st_buf_append(&b, "00\n", 3), 0);
		pad -= 3;
	}
	for (; pad; pad -= 2)
		CHECK_EQ_INT(st_buf_append(&b, "0\n", 2), 0);
	char last[32];
	int n = snprintf(last, sizeof(last), "%d9\n", (int)p);
	CHECK_EQ_INT(st_buf_append(&b, last, (size_t)n), 0);
	CHECK_EQ_INT(write_procs(dir, b.data), 0);
	CHECK_EQ_INT(jail_cgroup_kill_procs(dirfd, 5), -EBUSY);
	int ws;
	CHECK_EQ_INT(waitpid(p, &ws, WNOHANG), 0);

	/* Listed whole: killed. */
	snprintf(last, sizeof(last), "0\n%d\n", (int)p);
	CHECK_EQ_INT(write_procs(dir, last), 0);
	CHECK_EQ_INT(jail_cgroup_kill_procs(dirfd, 5), -EBUSY);
	CHECK(waitpid(p, &ws, 0) == p);
	CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
	st_buf_release(&b);
	cleanup_free char *procs = st_xasprintf("%s/cgroup.procs", dir);
	CHECK(unlink(procs) == 0 && rmdir(dir) == 0);
}

TEST(run_ok_and_exit_code)
{
	need_root();
	unique_parent();
	struct jail_report r;
	ARGV(a1, "/bin/sh", "-c", "echo out; echo err >&2; exit 3");
	run(a1, NULL, &r);
	CHECK_STREQ(jail_status_name(r.status), "error");
	CHECK_EQ_INT(r.exit_code, 3);
	CHECK_STREQ(r.out, "out\n");
	CHECK_STREQ(r.err, "err\n");
	CHECK(r.wall_ms >= 0 && r.max_rss_kb > 0);
	jail_report_release(&r);
	ARGV(a2, "true");
	run(a2, NULL, &r);
	CHECK_EQ_INT(r.status, JAIL_OK);
	jail_report_release(&r);
}

TEST(run_memory_limit)
{
	need_root();
	unique_parent();
	struct jail_limits l;
	memset(&l, 0, sizeof(l));
	l.memory_bytes = 32u << 20;
	l.wall_ms = 20000;
	ARGV(a, "/usr/bin/python3", "-c", "a=[]\nwhile True: a.append(bytearray(1<<20))");
	struct jail_report r;
	run(a, &l, &r);
	CHECK_STREQ(jail_status_name(r.status), "memory_limit");
	CHECK(r.limits_hit & JAIL_HIT_MEMORY);
	jail_report_release(&r);
}

TEST(run_pids_limit)
{
	need_root();
	unique_parent();
	struct jail_limits l;
	memset(&l, 0, sizeof(l));
	l.pids = 8;
	l.wall_ms = 5000;
	ARGV(a, "/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 3 & done; wait");
	struct jail_report r;
	run(a, &l, &r);
	CHECK(r.limits_hit & JAIL_HIT_PIDS);
	jail_report_release(&r);
}

TEST(run_wall_timeout)
{
	need_root();
	unique_parent();
	struct jail_limits l;
	memset(&l, 0, sizeof(l));
	l.wall_ms = 300;
	ARGV(a, "sleep", "100");
	struct jail_report r;
	run(a, &l, &r);
	CHECK_STREQ(jail_status_name(r.status), "timeout");
	CHECK(r.limits_hit & JAIL_HIT_WALL);
	jail_report_release(&r);
}

TEST(run_cpu_timeout)
{
	need_root();
	unique_parent();
	struct jail_limits l;
	memset(&l, 0, sizeof(l));
	l.cpu_ms = 500;
	l.wall_ms = 30000;
	ARGV(a, "/bin/sh", "-c", "while :; do :; done");
	struct jail_report r;
	run(a, &l, &r);
	CHECK_STREQ(jail_status_name(r.status), "timeout");
	CHECK(r.limits_hit & JAIL_HIT_CPU);
	jail_report_release(&r);
}

TEST(run_output_limit)
{
	need_root();
	unique_parent();
	struct jail_limits l;
	memset(&l, 0, sizeof(l));
	l.output_bytes = 1000;
	l.wall_ms = 20000;
	ARGV(a, "yes");
	struct jail_report r;
	run(a, &l, &r);
	CHECK_STREQ(jail_status_name(r.status), "output_limit");
	CHECK(r.out_truncated);
	CHECK_EQ_INT(r.out_len, 1000);
	jail_report_release(&r);
}

TEST(run_violation_named)
{
	need_root();
	unique_parent();
	ARGV(a, "/usr/bin/python3", "-c",
	     "import ctypes; ctypes.CDLL(None).syscall(321, 0, 0, 0); print('alive')");
	struct jail_report r;
	run(a, NULL, &r);
	CHECK_STREQ(jail_status_name(r.status), "sandbox_violation");
	CHECK_STREQ(r.violation_syscall, "bpf");
	CHECK(strstr(r.out, "alive") == NULL);
	jail_report_release(&r);
}

TEST(run_setup_error_named)
{
	need_root();
	unique_parent();
	struct jail_spec spec;
	jail_spec_init(&spec);
	ARGV(a, "true");
	struct jail_mount m = {JAIL_MOUNT_RO_BIND, "/nonexistent-stockade", "/x", 0};
	spec.argv = a;
	spec.mounts = &m;
	spec.n_mounts = 1;
	struct jail_report r;
	CHECK_EQ_INT(jail_run(&spec, &r, NULL), 0);
	CHECK_STREQ(jail_status_name(r.status), "setup_error");
	CHECK_STREQ(r.setup_step, "ro-bind source");
	CHECK_CONTAINS(r.setup_error, "No such file or directory");
	jail_report_release(&r);
	ARGV(b, "/no/such/program");
	spec.argv = b;
	spec.n_mounts = 0;
	CHECK_EQ_INT(jail_run(&spec, &r, NULL), 0);
	CHECK_STREQ(r.setup_step, "execve");
	jail_report_release(&r);
	CHECK_EQ_INT(jail_cgroup_remove_parent(), 0);
}

static void *thread_run(void *arg)
{
	struct jail_spec spec;
	jail_spec_init(&spec);
	ARGV(a, "/bin/sh", "-c", "echo $$");
	spec.argv = a;
	spec.capture_output = true;
	struct jail_report r;
	intptr_t ok = jail_run(&spec, &r, NULL) == 0 && r.status == JAIL_OK &&
	              strcmp(r.out, "2\n") == 0; /* pid 2: init is 1 in every jail */
	jail_report_release(&r);
	(void)arg;
	return (void *)ok;
}

TEST(run_concurrent_threads)
{
	need_root();
	unique_parent();
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		CHECK_EQ_INT(pthread_create(&t[i], NULL, thread_run, NULL), 0);
	for (int i = 0; i < 4; i++) {
		void *ok;
		pthread_join(t[i], &ok);
		CHECK(ok != NULL);
	}
	CHECK_EQ_INT(jail_cgroup_remove_parent(), 0);
}

TEST(run_rootless_spec)
{
	need_root();
	unique_parent();
	struct jail_spec spec;
	jail_spec_init(&spec);
	ARGV(a, "/bin/sh", "-c", "cat /proc/self/uid_map; grep CapEff /proc/self/status");
	spec.argv = a;
	spec.rootless = true;
	spec.capture_output = true;
	struct jail_report r;
	CHECK_EQ_INT(jail_run(&spec, &r, NULL), 0);
	CHECK_EQ_INT(r.status, JAIL_OK);
	CHECK_CONTAINS(r.out, "0          0          1"); /* root maps to the caller (root) */
	CHECK_CONTAINS(r.out, "CapEff:\t0000000000000000");
	jail_report_release(&r);
	CHECK_EQ_INT(jail_cgroup_remove_parent(), 0);
}
