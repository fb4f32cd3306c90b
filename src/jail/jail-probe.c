/*
 * jail-probe.c - what this host supports, for `stockade doctor`: user namespaces (and the
 * sysctls that restrict them), cgroup hierarchies and which controllers are usable and
 * writable, seccomp actions and user-notify, runsc and pasta, and which isolation modes
 * will work, each gap with its fix. Probes run real operations in short-lived children
 * (a jail, an unprivileged unshare) rather than guessing from versions.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail/jail-internal.h"

static json_t *read_trimmed(const char *path)
{
	char *s = NULL;
	size_t n;
	if (st_read_file(path, 4096, &s, &n, NULL) < 0)
		return json_null();
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
	json_t *j = json_string(s);
	free(s);
	return j ? j : json_null();
}

/* Can an unprivileged user create a user namespace? Tried for real in a child. */
static bool probe_unpriv_userns(char *why, size_t len)
{
	pid_t p = fork();
	if (p < 0) {
		snprintf(why, len, "fork: %s", strerror(errno));
		return false;
	}
	if (p == 0) {
		if (geteuid() == 0 &&
		    (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		     setresuid(65534, 65534, 65534) < 0))
			_exit(3);
		_exit(unshare(CLONE_NEWUSER) == 0 ? 0 : (errno == EPERM ? 1 : 2));
	}
	int st = 0;
	while (waitpid(p, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return true;
	snprintf(why, len, "unshare(CLONE_NEWUSER) as an unprivileged user failed (%s)",
	         WIFEXITED(st) && WEXITSTATUS(st) == 1 ? "EPERM" : "error");
	return false;
}

static json_t *probe_jail(bool rootless, const char **fix_step)
{
	struct jail_spec spec;
	jail_spec_init(&spec);
	char t[] = "/bin/true";
	char *argv[] = {t, NULL};
	spec.argv = argv;
	spec.rootless = rootless;
	spec.no_cgroup = true;
	spec.capture_output = true;
	struct jail_report r;
	struct st_error *err = NULL;
	json_t *o = json_object();
	if (jail_run(&spec, &r, &err) < 0) {
		json_object_set_new(o, "works", json_false());
		json_object_set_new(o, "error", json_string(st_error_msg(err)));
		st_error_free(err);
		return o;
	}
	json_object_set_new(o, "works", json_boolean(r.status == JAIL_OK));
	if (r.status != JAIL_OK) {
		char *m = st_xasprintf("%s%s%s%s", jail_status_name(r.status),
		                       r.setup_step ? " at '" : "",
		                       r.setup_step ? r.setup_step : "", r.setup_step ? "'" : "");
		json_object_set_new(o, "error", json_string(m));
		if (r.setup_error)
			json_object_set_new(o, "detail", json_string(r.setup_error));
		free(m);
		*fix_step = r.setup_step;
	}
	jail_report_release(&r);
	return o;
}

static bool writable(const char *dir)
{
	return access(dir, W_OK) == 0;
}

static char *run_capture(const char *cmd)
{
	FILE *f = popen(cmd, "r");
	if (!f)
		return NULL;
	char buf[512];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	int st = pclose(f);
	if (st != 0 && n == 0)
		return NULL;
	buf[strcspn(buf, "\n")] = '\0';
	return st_xstrdup(buf);
}

static const char *which(const char *name, char *buf, size_t len)
{
	const char *dirs[] = {"/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(dirs); i++) {
		snprintf(buf, len, "%s/%s", dirs[i], name);
		if (access(buf, X_OK) == 0)
			return buf;
	}
	return NULL;
}

json_t *jail_probe_host_ex(unsigned flags)
{
	json_t *o = json_object();
	json_object_set_new(o, "euid", json_integer(geteuid()));
	char why[256] = "";

	/* user namespaces */
	json_t *u = json_object();
	json_object_set_new(u, "maxUserNamespaces",
	                    read_trimmed("/proc/sys/user/max_user_namespaces"));
	json_object_set_new(u, "unprivilegedUsernsClone",
	                    read_trimmed("/proc/sys/kernel/unprivileged_userns_clone"));
	json_object_set_new(u, "apparmorRestrictUnprivilegedUserns",
	                    read_trimmed("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"));
	bool unpriv = probe_unpriv_userns(why, sizeof(why));
	json_object_set_new(u, "unprivileged", json_boolean(unpriv));
	if (!unpriv)
		json_object_set_new(u, "error", json_string(why));
	json_object_set_new(o, "userNamespaces", u);

	/* cgroups */
	json_t *c = json_object();
	jail__cg_host_json(c);
	json_t *v2m = json_object_get(c, "v2Mount");
	bool v2_writable = false;
	if (json_is_string(v2m)) {
		const char *own = json_string_value(json_object_get(c, "v2Own"));
		char *dir = st_xasprintf("%s%s", json_string_value(v2m),
		                         own && strcmp(own, "/") ? own : "");
		char *ctl = st_xasprintf("%s/cgroup.controllers", dir);
		json_object_set_new(c, "v2Controllers", read_trimmed(ctl));
		v2_writable = writable(dir);
		json_object_set_new(c, "v2Writable", json_boolean(v2_writable));
		free(ctl);
		free(dir);
	}
	json_t *v1 = json_object_get(c, "v1Mounts");
	json_t *v1w = json_object();
	const char *key;
	json_t *val;
	json_object_foreach(v1, key, val)
	{
		json_object_set_new(v1w, key, json_boolean(writable(json_string_value(val))));
	}
	json_object_set_new(c, "v1Writable", v1w);
	/* Which hierarchy serves each limit for a jail made now (a real create). */
	struct jail_limits lim;
	memset(&lim, 0, sizeof(lim));
	lim.memory_bytes = 64u << 20;
	lim.pids = 64;
	lim.cpus = 1;
	lim.cpu_ms = 1000;
	struct jail_cgroup *cg = NULL;
	char name[48];
	snprintf(name, sizeof(name), "doctor-%d", (int)getpid());
	json_t *serve = json_object();
	json_t *cw = json_array();
	if (jail_cgroup_create(name, &lim, &cg, NULL) == 0) {
		static const char *const res[] = {"memory", "pids", "cpu", "cpuacct"};
		for (int i = 0; i < JAIL__CG_NRES; i++)
			json_object_set_new(serve, res[i],
			                    json_string((cg->v2_ctrl & (1u << i)) ? "v2"
			                                : cg->v1_fd[i] >= 0       ? "v1"
			                                                          : "none"));
		json_object_set_new(
		    serve, "kill", json_string(cg->v2_fd >= 0 ? "v2 cgroup.kill" : "v1 kill loop"));
		for (size_t i = 0; i < cg->n_warnings; i++)
			json_array_append_new(cw, json_string(cg->warnings[i]));
		jail_cgroup_destroy(cg);
		(void)jail_cgroup_remove_parent(); /* only succeeds when no jail uses it */
	} else {
		json_array_append_new(cw, json_string("cannot create a cgroup"));
	}
	json_object_set_new(c, "limitsServedBy", serve);
	json_object_set_new(c, "warnings", cw);
	json_object_set_new(o, "cgroups", c);

	/* seccomp */
	json_t *s = json_object();
	json_t *acts = read_trimmed("/proc/sys/kernel/seccomp/actions_avail");
	bool notify = json_is_string(acts) && strstr(json_string_value(acts), "user_notif");
	json_object_set_new(s, "actionsAvailable", acts);
	json_object_set_new(s, "userNotify", json_boolean(notify));
	json_object_set_new(o, "seccomp", s);

	/* tools */
	char path[256];
	json_t *rs = json_object();
	const char *rp = which("runsc", path, sizeof(path));
	json_object_set_new(rs, "path", rp ? json_string(rp) : json_null());
	if (rp) {
		char *v = run_capture("runsc --version 2>/dev/null");
		json_object_set_new(rs, "version", v ? json_string(v) : json_null());
		free(v);
		if (flags & JAIL_PROBE_RUNSC) {
			int st = system(
			    "runsc --rootless=false --platform=ptrace --network=none do true "
			    ">/dev/null 2>&1");
			json_object_set_new(rs, "doTrue", json_boolean(st == 0));
		}
	}
	json_object_set_new(o, "runsc", rs);
	json_t *ps = json_object();
	const char *pp = which("pasta", path, sizeof(path));
	json_object_set_new(ps, "path", pp ? json_string(pp) : json_null());
	json_object_set_new(o, "pasta", ps);
	/* the git server's protocol backend (Debian's git) */
	json_t *gs = json_object();
	static const char backend[] = "/usr/lib/git-core/git-http-backend";
	json_object_set_new(gs, "path",
	                    access(backend, X_OK) == 0 ? json_string(backend) : json_null());
	json_object_set_new(o, "gitHttpBackend", gs);

	/* modes */
	json_t *m = json_object();
	const char *step = NULL;
	json_t *priv = geteuid() == 0 ? probe_jail(false, &step) : json_object();
	if (geteuid() != 0) {
		json_object_set_new(priv, "works", json_false());
		json_object_set_new(priv, "error", json_string("not running as root"));
	}
	if (!json_is_true(json_object_get(priv, "works")))
		json_object_set_new(
		    priv, "fix",
		    json_string("run the service as root in its container (privileged, "
		                "or CAP_SYS_ADMIN with unconfined seccomp and AppArmor), "
		                "or use the seccomp mode"));
	json_object_set_new(m, "privileged", priv);
	json_t *rl = probe_jail(true, &step);
	if (!unpriv) {
		json_object_set_new(rl, "works", json_false());
		json_object_set_new(rl, "error", json_string(why));
	}
	if (!json_is_true(json_object_get(rl, "works")))
		json_object_set_new(
		    rl, "fix",
		    json_string(
		        "allow unprivileged user namespaces: sysctl user.max_user_namespaces="
		        "15000; kernel.unprivileged_userns_clone=1 (Debian); "
		        "kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04); in a "
		        "container use the published deploy/seccomp profile"));
	else if (!v2_writable)
		json_object_set_new(
		    rl, "note",
		    json_string("cgroup limits need a writable delegated subtree "
		                "(systemd Delegate=yes, or a cgroup owned by the "
		                "service user); without it memory/pids/cpu limits are "
		                "reported as not enforced"));
	json_object_set_new(m, "seccomp", rl);
	json_t *un = json_object();
	json_object_set_new(un, "works", json_boolean(json_is_string(acts)));
	json_object_set_new(un, "note",
	                    json_string("no namespaces: seccomp, rlimits and "
	                                "no_new_privs only; code-executor opt-in"));
	json_object_set_new(m, "unsandboxed", un);
	json_t *gv = json_object();
	json_object_set_new(gv, "works", json_boolean(rp != NULL));
	if (!rp)
		json_object_set_new(gv, "fix", json_string("apt-get install runsc (gVisor)"));
	json_object_set_new(m, "agentSandbox", gv);
	json_object_set_new(o, "modes", m);
	return o;
}

json_t *jail_probe_host(void)
{
	return jail_probe_host_ex(0);
}
