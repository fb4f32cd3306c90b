/*
 * sandbox-runsc.c - the gVisor runtime: OCI bundle generation and the runsc commands (run,
 * kill, delete, pause, resume, state, list) for one sandbox.
 *
 * Layout under the state dir:
 *   rootfs/            the read-only root every sandbox shares: mount points, a minimal /etc
 *                      (generated passwd/group/hosts plus read-only binds of what binaries need)
 *                      and symlinks mirroring the host's merged-/usr layout
 *   runsc/             runsc --root (container state; `runsc list` shows only ours)
 *   sb/<id>/bundle/    config.json of that sandbox
 *   sb/<id>/chan/      bind-mounted at /run/stockade: the agent socket (and the egress socket)
 *   sb/<id>/ws/        the workspace tmpfs, bind-mounted read-write at /workspace
 *   sb/<id>/agent.log  the agent's and runsc's stderr
 *
 * Isolation of one sandbox: gVisor's sentry (ptrace or kvm platform) with --network=none (no
 * interface but loopback: egress only through the agent and the service's proxy), a fresh pid,
 * ipc, uts and mount namespace, cgroup limits from the OCI spec (memory with swap off, pids,
 * cpu quota), a read-only root, the workspace as the only writable host path. --host-uds=all
 * lets the agent create its socket in the bind-mounted channel dir and connect to the egress
 * socket; no other host path is writable, so no other socket can be created or reached.
 */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "sandbox/sandbox-internal.h"

extern char **environ;

/* Run `runsc <global flags> args...`, capture its output (capped), wait at most timeout_ms. */
static int runsc_run(const char *runsc, const char *root, const char *platform,
                     const char *const *args, int out_fd, int64_t timeout_ms, char **output,
                     struct st_error **err)
{
	const char *argv[32];
	size_t n = 0;
	char rootarg[4096], platarg[64];
	argv[n++] = runsc;
	if (root) {
		snprintf(rootarg, sizeof(rootarg), "--root=%s", root);
		argv[n++] = rootarg;
	}
	snprintf(platarg, sizeof(platarg), "--platform=%s", platform ? platform : "ptrace");
	argv[n++] = platarg;
	argv[n++] = "--network=none";
	argv[n++] = "--host-uds=all";
	/* Operators chasing a runtime problem: runsc's own debug logs into this directory. */
	const char *dbg = getenv("STOCKADE_RUNSC_DEBUG_LOG");
	char dbgarg[4200];
	if (dbg && *dbg) {
		snprintf(dbgarg, sizeof(dbgarg), "--debug-log=%s/", dbg);
		argv[n++] = "--debug";
		argv[n++] = dbgarg;
	}
	for (size_t i = 0; args[i] && n + 1 < ST_ARRAY_SIZE(argv); i++)
		argv[n++] = args[i];
	argv[n] = NULL;

	int pfd[2] = {-1, -1};
	if (out_fd < 0 && pipe2(pfd, O_CLOEXEC) < 0)
		return st_error_make(err, errno, "pipe");
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	int w = out_fd >= 0 ? out_fd : pfd[1];
	posix_spawn_file_actions_adddup2(&fa, w, 1);
	posix_spawn_file_actions_adddup2(&fa, w, 2);
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	pid_t pid;
	int r = posix_spawnp(&pid, runsc, &fa, &at, (char *const *)(uintptr_t)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (r != 0) {
		if (pfd[0] >= 0)
			close(pfd[0]);
		return st_error_make(
		    err, r, "cannot run '%s' (install gVisor: apt-get install runsc)", runsc);
	}
	struct st_buf out;
	st_buf_init(&out, 64 * 1024);
	int64_t deadline = st_now_ms() + timeout_ms;
	bool killed = false;
	if (pfd[0] >= 0) {
		fcntl(pfd[0], F_SETFL, O_NONBLOCK);
		for (;;) {
			char b[4096];
			ssize_t k = read(pfd[0], b, sizeof(b));
			if (k > 0) {
				st_buf_append_trunc(&out, b, (size_t)k);
				continue;
			}
			if (k == 0)
				break;
			if (errno != EAGAIN && errno != EINTR)
				break;
			if (st_now_ms() > deadline && !killed) {
				kill(-pid, SIGKILL);
				killed = true;
			}
			struct timespec ts = {0, 2 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		close(pfd[0]);
	}
	int status = 0;
	for (;;) {
		pid_t wr = waitpid(pid, &status, out_fd >= 0 ? WNOHANG : 0);
		if (wr == pid)
			break;
		if (wr < 0 && errno != EINTR)
			break;
		if (wr == 0) {
			if (st_now_ms() > deadline && !killed) {
				kill(-pid, SIGKILL);
				killed = true;
			}
			struct timespec ts = {0, 2 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	if (output)
		*output = out.data ? st_buf_steal(&out) : st_xstrdup("");
	st_buf_release(&out);
	if (killed)
		return st_error_make(err, ETIMEDOUT, "'%s %s' did not finish in %lld ms", runsc,
		                     args[0], (long long)timeout_ms);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return st_error_make(err, 0, "'%s %s' failed (status %d)", runsc, args[0],
		                     WIFEXITED(status) ? WEXITSTATUS(status)
		                                       : 128 + WTERMSIG(status));
	return 0;
}

int sandbox__runsc_probe(const char *runsc, const char *platform, struct st_error **err)
{
	char tmp[] = "/tmp/stockade-runsc-probe-XXXXXX";
	if (!mkdtemp(tmp))
		return st_error_make(err, errno, "mkdtemp");
	const char *args[] = {"do", "true", NULL};
	cleanup_free char *out = NULL;
	struct st_error *e = NULL;
	int r = runsc_run(runsc, tmp, platform, args, -1, 20000, &out, &e);
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		st_log(ST_LOG_WARN, "cannot remove '%s'", tmp);
	if (r < 0) {
		size_t l = out ? strlen(out) : 0;
		while (l && (out[l - 1] == '\n'))
			out[--l] = '\0';
		const char *tail = out && l > 300 ? out + l - 300 : (out ? out : "");
		r = st_error_make(
		    err, e ? e->code : 0,
		    "gVisor is not usable: %s%s%s; install runsc (apt-get install runsc), "
		    "run the service as root or with the published gvisor seccomp "
		    "profile, or choose another platform (rr.agentSandbox.platform: "
		    "ptrace); `runtime: jail` is the explicit alternative",
		    st_error_msg(e), *tail ? ": " : "", tail);
	}
	st_error_free(e);
	return r;
}

static int write_text(const char *dir, const char *name, const char *text, struct st_error **err)
{
	cleanup_free char *p = st_xasprintf("%s/%s", dir, name);
	return st_write_file_atomic(p, text, strlen(text), 0644, err);
}

/* Top-level host entries mirrored into the rootfs: symlinks copied, directories bound. */
const char *const sandbox__base_dirs[] = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"};
const size_t sandbox__n_base_dirs = ST_ARRAY_SIZE(sandbox__base_dirs);
/* /etc entries binaries commonly need; everything else of the host's /etc stays out. */
const char *const sandbox__etc_binds[] = {"alternatives", "ssl",       "ca-certificates",
                                          "ld.so.cache",  "localtime", "mime.types",
                                          "python3",      "python3.11"};
const size_t sandbox__n_etc_binds = ST_ARRAY_SIZE(sandbox__etc_binds);

int sandbox__prepare_rootfs(struct sandbox_mgr *m, struct st_error **err)
{
	if (m->o.rootfs)
		return 0;
	cleanup_free char *root = st_xasprintf("%s/rootfs", m->state_dir);
	cleanup_free char *marker = st_xasprintf("%s/.ready-v1", root);
	free(m->rootfs);
	m->rootfs = st_xstrdup(root);
	if (access(marker, F_OK) == 0)
		return 0;
	static const char *const dirs[] = {"proc",         "dev",          "tmp", "workspace",
	                                   "run/stockade", "opt/stockade", "etc", "var/tmp",
	                                   "root",         "home"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(dirs); i++) {
		cleanup_free char *p = st_xasprintf("%s/%s", root, dirs[i]);
		int r = st_mkdir_p(p, 0755, err);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < sandbox__n_base_dirs; i++) {
		cleanup_free char *host = st_xasprintf("/%s", sandbox__base_dirs[i]);
		cleanup_free char *p = st_xasprintf("%s/%s", root, sandbox__base_dirs[i]);
		struct stat st;
		if (lstat(host, &st) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			char target[4096];
			ssize_t k = readlink(host, target, sizeof(target) - 1);
			if (k <= 0)
				continue;
			target[k] = '\0';
			if (symlink(target, p) < 0 && errno != EEXIST)
				return st_error_make(err, errno, "cannot create '%s'", p);
		} else if (S_ISDIR(st.st_mode)) {
			int r = st_mkdir_p(p, 0755, err);
			if (r < 0)
				return r;
		}
	}
	cleanup_free char *etc = st_xasprintf("%s/etc", root);
	for (size_t i = 0; i < sandbox__n_etc_binds; i++) {
		cleanup_free char *host = st_xasprintf("/etc/%s", sandbox__etc_binds[i]);
		cleanup_free char *p = st_xasprintf("%s/%s", etc, sandbox__etc_binds[i]);
		struct stat st;
		if (lstat(host, &st) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			char target[4096];
			ssize_t k = readlink(host, target, sizeof(target) - 1);
			if (k > 0) {
				target[k] = '\0';
				if (symlink(target, p) < 0 && errno != EEXIST)
					return st_error_make(err, errno, "cannot create '%s'", p);
			}
		} else if (S_ISDIR(st.st_mode)) {
			int r = st_mkdir_p(p, 0755, err);
			if (r < 0)
				return r;
		} else if (S_ISREG(st.st_mode)) {
			int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
			if (fd < 0)
				return st_error_make(err, errno, "cannot create '%s'", p);
			close(fd);
		}
	}
	int r;
	if ((r = write_text(etc, "passwd",
	                    "root:x:0:0:root:/root:/bin/sh\n"
	                    "user:x:1000:1000:user:/workspace:/bin/sh\n"
	                    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
	                    err)) < 0 ||
	    (r = write_text(etc, "group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n", err)) <
	        0 ||
	    (r = write_text(etc, "hosts", "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost\n", err)) <
	        0 ||
	    (r = write_text(etc, "hostname", "sandbox\n", err)) < 0 ||
	    (r = write_text(etc, "resolv.conf", "# no DNS: egress goes through the HTTP proxy\n",
	                    err)) < 0 ||
	    (r = write_text(etc, "nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n",
	                    err)) < 0)
		return r;
	return st_write_file_atomic(marker, "", 0, 0644, err);
}

static json_t *mount_bind(const char *src, const char *dst, bool ro)
{
	json_t *opts = json_pack("[sss]", "rbind", "nosuid", "nodev");
	json_array_append_new(opts, json_string(ro ? "ro" : "rw"));
	return json_pack("{s:s,s:s,s:s,s:o}", "destination", dst, "type", "bind", "source", src,
	                 "options", opts);
}

/*
 * The read-only system binds get gVisor's exclusive file access (mount hint share=container):
 * the sentry then trusts its own dentry and attribute cache for them instead of asking the
 * gofer to revalidate every path component on every lookup. A command's start is mostly such
 * lookups (the binary, ld.so, libc, a dozen locale files, half of them misses), so this is
 * most of an exec's cost on this runtime. The price: a change the host makes under /usr while
 * a sandbox runs (a package upgrade) may not be seen by that sandbox; new sandboxes see it.
 * The workspace and the channel directory stay shared: the service writes into a running
 * sandbox's workspace (snapshot restore) and reads it (snapshots).
 */
static void hint_exclusive(json_t *annotations, const char *src)
{
	char key[64];
	size_t n = json_object_size(annotations) / 3;
	snprintf(key, sizeof(key), "dev.gvisor.spec.mount.sys%zu.source", n);
	json_object_set_new(annotations, key, json_string(src));
	snprintf(key, sizeof(key), "dev.gvisor.spec.mount.sys%zu.type", n);
	json_object_set_new(annotations, key, json_string("bind"));
	snprintf(key, sizeof(key), "dev.gvisor.spec.mount.sys%zu.share", n);
	json_object_set_new(annotations, key, json_string("container"));
}

static json_t *bundle_spec(struct sandbox_mgr *m, struct sandbox *sb)
{
	json_t *mounts = json_array();
	json_t *annotations = json_object();
	json_array_append_new(mounts, json_pack("{s:s,s:s,s:s}", "destination", "/proc", "type",
	                                        "proc", "source", "proc"));
	json_array_append_new(mounts, json_pack("{s:s,s:s,s:s,s:[ssss]}", "destination", "/tmp",
	                                        "type", "tmpfs", "source", "tmpfs", "options",
	                                        "nosuid", "nodev", "mode=1777", "size=256m"));
	if (!m->o.rootfs) {
		for (size_t i = 0; i < sandbox__n_base_dirs; i++) {
			cleanup_free char *host = st_xasprintf("/%s", sandbox__base_dirs[i]);
			struct stat st;
			if (lstat(host, &st) < 0 || !S_ISDIR(st.st_mode))
				continue;
			json_array_append_new(mounts, mount_bind(host, host, true));
			hint_exclusive(annotations, host);
		}
		for (size_t i = 0; i < sandbox__n_etc_binds; i++) {
			cleanup_free char *host = st_xasprintf("/etc/%s", sandbox__etc_binds[i]);
			struct stat st;
			if (lstat(host, &st) < 0 || S_ISLNK(st.st_mode))
				continue;
			json_array_append_new(mounts, mount_bind(host, host, true));
			hint_exclusive(annotations, host);
		}
	}
	cleanup_free char *ws = sandbox__workspace_path(sb);
	cleanup_free char *chan = st_xasprintf("%s/chan", sb->dir);
	json_array_append_new(mounts, mount_bind(ws, AGENT_WORKSPACE, false));
	json_array_append_new(mounts, mount_bind(chan, AGENT_CHAN_DIR, false));
	json_array_append_new(mounts, mount_bind(m->agent_path, "/opt/stockade/agent", true));
	/* The agent preloads it into commands where this runsc needs it (agent-compat.c). */
	if (m->compat_path != NULL) {
		json_array_append_new(mounts, mount_bind(m->compat_path, AGENT_COMPAT_PATH, true));
		hint_exclusive(annotations, m->compat_path);
	}

	int64_t mem = (int64_t)m->o.memory_bytes;
	int64_t period = 100000;
	int64_t quota = (int64_t)(m->o.cpus * (double)period);
	json_t *res = json_object();
	if (mem > 0)
		json_object_set_new(
		    res, "memory",
		    json_pack("{s:I,s:I}", "limit", (json_int_t)mem, "swap", (json_int_t)mem));
	/* `pids` bounds the sandbox's own processes (RLIMIT_NPROC, applied by the agent to every
	 * command). The host cgroup also holds the sentry's threads and, on the ptrace platform,
	 * gVisor's stub processes that hold address spaces (released lazily), so its limit leaves
	 * generous room: a sentry that cannot create a stub process panics and takes the whole
	 * sandbox down. */
	if (m->o.pids > 0)
		json_object_set_new(res, "pids",
		                    json_pack("{s:I}", "limit", (json_int_t)m->o.pids * 8 + 4096));
	if (quota > 0)
		json_object_set_new(res, "cpu",
		                    json_pack("{s:I,s:I}", "quota", (json_int_t)quota, "period",
		                              (json_int_t)period));
	cleanup_free char *cg = st_xasprintf("/stockade/%s", sb->id);
	char procs[24];
	snprintf(procs, sizeof(procs), "%u", m->o.pids ? m->o.pids : 0);
	/* The agent (root inside) needs to switch to the sandbox user and manage its processes;
	 * commands lose every capability when they switch. Nothing else is granted. */
	static const char *const caps[] = {"CAP_SETUID",          "CAP_SETGID",       "CAP_KILL",
	                                   "CAP_CHOWN",           "CAP_DAC_OVERRIDE", "CAP_FOWNER",
	                                   "CAP_NET_BIND_SERVICE"};
	json_t *capset = json_array();
	for (size_t i = 0; i < ST_ARRAY_SIZE(caps); i++)
		json_array_append_new(capset, json_string(caps[i]));
	json_t *capobj = json_pack("{s:O,s:O,s:O,s:O}", "bounding", capset, "effective", capset,
	                           "permitted", capset, "inheritable", json_array());
	json_decref(capset);

	json_t *spec = json_pack(
	    "{s:s, s:{s:b, s:{s:i,s:i}, s:[sssssssss], s:[s], s:s, s:[{s:s,s:i,s:i}], s:b},"
	    " s:{s:s,s:b}, s:s, s:o,"
	    " s:{s:[{s:s},{s:s},{s:s},{s:s},{s:s}], s:o, s:s, s:[ss], s:[ssss]}}",
	    "ociVersion", "1.0.0", "process", "terminal", 0, "user", "uid", 0, "gid", 0, "args",
	    "/opt/stockade/agent", "--listen", AGENT_CHAN_DIR "/" AGENT_SOCK_NAME, "--workspace",
	    AGENT_WORKSPACE, "--egress-sock", AGENT_CHAN_DIR "/" AGENT_EGRESS_SOCK_NAME,
	    "--max-procs", procs, "env", "PATH=/usr/local/bin:/usr/bin:/bin", "cwd", "/", "rlimits",
	    "type", "RLIMIT_NOFILE", "hard", 4096, "soft", 4096, "noNewPrivileges", 1, "root",
	    "path", m->o.rootfs ? m->o.rootfs : m->rootfs, "readonly", 1, "hostname", "sandbox",
	    "mounts", mounts, "linux", "namespaces", "type", "pid", "type", "network", "type",
	    "ipc", "type", "uts", "type", "mount", "resources", res, "cgroupsPath", cg,
	    "maskedPaths", "/proc/kcore", "/sys/firmware", "readonlyPaths", "/proc/sys",
	    "/proc/sysrq-trigger", "/proc/irq", "/proc/bus");
	if (spec) {
		json_object_set_new(json_object_get(spec, "process"), "capabilities", capobj);
		json_object_set_new(spec, "annotations", annotations);
	} else {
		json_decref(capobj);
		json_decref(annotations);
	}
	return spec;
}

int sandbox__runsc_start(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err)
{
	cleanup_free char *bundle = st_xasprintf("%s/bundle", sb->dir);
	int r = st_mkdir_p(bundle, 0700, err);
	if (r < 0)
		return r;
	json_t *spec = bundle_spec(m, sb);
	if (!spec)
		return st_error_make(err, EINVAL, "cannot build the OCI spec");
	cleanup_free char *text = json_dumps(spec, JSON_COMPACT);
	json_decref(spec);
	cleanup_free char *cfg = st_xasprintf("%s/config.json", bundle);
	if ((r = st_write_file_atomic(cfg, text, strlen(text), 0600, err)) < 0)
		return r;
	cleanup_free char *logp = st_xasprintf("%s/agent.log", sb->dir);
	cleanup_close int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (logfd < 0)
		return st_error_make(err, errno, "cannot open '%s'", logp);
	const char *args[] = {"run", "--detach", "--bundle", bundle, sb->id, NULL};
	r = runsc_run(m->runsc, m->runsc_root, m->platform, args, logfd,
	              (int64_t)m->o.ready_timeout_ms, NULL, err);
	if (r < 0)
		sandbox__error_wrap_log_tail(err, logp, "runsc");
	return r;
}

int sandbox__runsc_destroy(struct sandbox_mgr *m, const char *id, struct st_error **err)
{
	const char *args[] = {"delete", "--force", id, NULL};
	cleanup_free char *out = NULL;
	int r = runsc_run(m->runsc, m->runsc_root, m->platform, args, -1, 30000, &out, err);
	if (r < 0 && out && strstr(out, "does not exist")) {
		st_error_release(err);
		return 0;
	}
	return r;
}

int sandbox__runsc_pause(struct sandbox_mgr *m, const char *id, bool pause, struct st_error **err)
{
	const char *args[] = {pause ? "pause" : "resume", id, NULL};
	return runsc_run(m->runsc, m->runsc_root, m->platform, args, -1, 30000, NULL, err);
}

char *sandbox__runsc_state(struct sandbox_mgr *m, const char *id)
{
	const char *args[] = {"state", id, NULL};
	cleanup_free char *out = NULL;
	if (runsc_run(m->runsc, m->runsc_root, m->platform, args, -1, 10000, &out, NULL) < 0)
		return NULL;
	json_t *j = json_loads(out, 0, NULL);
	const char *s = j ? json_string_value(json_object_get(j, "status")) : NULL;
	char *r = s ? st_xstrdup(s) : NULL;
	json_decref(j);
	return r;
}

char **sandbox__runsc_list(struct sandbox_mgr *m)
{
	const char *args[] = {"list", "--quiet", NULL};
	cleanup_free char *out = NULL;
	char **ids = st_xcalloc(1, sizeof(char *));
	if (runsc_run(m->runsc, m->runsc_root, m->platform, args, -1, 10000, &out, NULL) < 0)
		return ids;
	size_t n = 0;
	char *save = NULL;
	for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (!*l)
			continue;
		ids = realloc(ids, (n + 2) * sizeof(char *));
		if (!ids)
			abort();
		ids[n++] = st_xstrdup(l);
		ids[n] = NULL;
	}
	return ids;
}

static int runsc_probe_opts(const struct sandbox_options *o, struct st_error **err)
{
	return sandbox__runsc_probe(o->runsc_path ? o->runsc_path : "runsc",
	                            o->platform ? o->platform : "ptrace", err);
}

const struct sandbox_runtime_ops sandbox__runtime_runsc = {
    .name = "gvisor",
    .probe = runsc_probe_opts,
    .prepare = sandbox__prepare_rootfs,
    .start = sandbox__runsc_start,
    .destroy = sandbox__runsc_destroy,
    .pause = sandbox__runsc_pause,
    .state = sandbox__runsc_state,
    .list = sandbox__runsc_list,
};
