/*
 * cmd-doctor.c - `stockade doctor [--json] [--probe-runsc]`: what this host supports and
 * which isolation modes will work, with the fix for each gap. Exit 0 when at least one
 * sandboxed mode (privileged or seccomp) works, 1 otherwise, 2 on usage errors.
 */
#include <getopt.h>

#include "common/common.h"
#include "jail/jail.h"
#include "sandbox/sandbox.h"

int cmd_doctor(int argc, char **argv);

static const char *str(json_t *o, const char *path1, const char *path2)
{
	json_t *v = json_object_get(o, path1);
	if (path2)
		v = json_object_get(v, path2);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void line(const char *what, bool good, const char *detail)
{
	printf("  [%s] %s%s%s\n", good ? " ok " : "MISS", what, detail ? ": " : "",
	       detail ? detail : "");
}

static void mode(json_t *modes, const char *name, const char *label)
{
	json_t *m = json_object_get(modes, name);
	bool works = json_is_true(json_object_get(m, "works"));
	line(label, works, works ? str(m, "note", NULL) : str(m, "error", NULL));
	if (!works && str(m, "fix", NULL))
		printf("         fix: %s\n", str(m, "fix", NULL));
}

int cmd_doctor(int argc, char **argv)
{
	bool as_json = false;
	unsigned flags = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			as_json = true;
		} else if (strcmp(argv[i], "--probe-runsc") == 0) {
			flags |= JAIL_PROBE_RUNSC;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: stockade doctor [--json] [--probe-runsc]\n\n"
			       "Report what this host supports for Stockade's isolation: user "
			       "namespaces,\n"
			       "cgroup v1/v2 hierarchies and which limits each can enforce, "
			       "seccomp actions\n"
			       "and user-notify, runsc (gVisor) and pasta; then which modes "
			       "(privileged,\n"
			       "seccomp, unsandboxed, agent sandbox) work here, with the fix for "
			       "each gap.\n"
			       "  --json          machine-readable output\n"
			       "  --probe-runsc   also run 'runsc --platform=ptrace --network=none "
			       "do true'\n"
			       "                  (slow)\n"
			       "exit status: 0 when a sandboxed mode works, 1 when none does, 2 "
			       "usage\n");
			return 0;
		} else {
			fprintf(stderr, "stockade doctor: unknown option '%s' (see --help)\n",
			        argv[i]);
			return 2;
		}
	}
	json_t *o = jail_probe_host_ex(flags);
	json_t *modes = json_object_get(o, "modes");
	/* The agent sandbox's explicit alternative to gVisor: one long-lived jail per sandbox,
	 * probed the way the service probes it at start. */
	json_t *aj = json_object();
	struct sandbox_options so;
	sandbox_options_init(&so);
	so.runtime = SANDBOX_RUNTIME_JAIL;
	struct st_error *e = NULL;
	bool jail_works = sandbox_runtime_probe(&so, &e) == 0;
	json_object_set_new(aj, "works", json_boolean(jail_works));
	if (jail_works) {
		json_object_set_new(aj, "note",
		                    json_string("rr.agentSandbox.runtime: jail; weaker than gVisor "
		                                "(the host kernel is shared), see "
		                                "docs/agent-sandbox.md"));
	} else {
		json_object_set_new(aj, "error", json_string(st_error_msg(e)));
		json_object_set_new(aj, "fix",
		                    json_string("run the service as root where the privileged jail "
		                                "mode works (above), or use runtime: gvisor"));
	}
	st_error_free(e);
	json_object_set_new(modes, "agentSandboxJail", aj);
	bool any = json_is_true(json_object_get(json_object_get(modes, "privileged"), "works")) ||
	           json_is_true(json_object_get(json_object_get(modes, "seccomp"), "works"));
	if (as_json) {
		char *s = json_dumps(o, JSON_INDENT(2));
		printf("%s\n", s);
		free(s);
		json_decref(o);
		return any ? 0 : 1;
	}
	json_t *u = json_object_get(o, "userNamespaces");
	printf("stockade doctor (euid %lld)\n\nuser namespaces:\n",
	       (long long)json_integer_value(json_object_get(o, "euid")));
	line("unprivileged user namespaces", json_is_true(json_object_get(u, "unprivileged")),
	     str(u, "error", NULL));
	if (str(u, "maxUserNamespaces", NULL))
		printf("         user.max_user_namespaces = %s\n",
		       str(u, "maxUserNamespaces", NULL));
	if (str(u, "apparmorRestrictUnprivilegedUserns", NULL))
		printf("         kernel.apparmor_restrict_unprivileged_userns = %s\n",
		       str(u, "apparmorRestrictUnprivilegedUserns", NULL));
	json_t *c = json_object_get(o, "cgroups");
	printf("cgroups:\n");
	line("cgroup v2 hierarchy", str(c, "v2Mount", NULL) != NULL, str(c, "v2Mount", NULL));
	if (str(c, "v2Mount", NULL))
		printf("         controllers: %s; writable here: %s\n",
		       str(c, "v2Controllers", NULL) ? str(c, "v2Controllers", NULL) : "?",
		       json_is_true(json_object_get(c, "v2Writable")) ? "yes" : "no");
	const char *key;
	json_t *val;
	json_object_foreach(json_object_get(c, "v1Mounts"), key, val)
	{
		bool w = json_is_true(json_object_get(json_object_get(c, "v1Writable"), key));
		printf("  [ ok ] cgroup v1 %s at %s (writable: %s)\n", key, json_string_value(val),
		       w ? "yes" : "no");
	}
	json_object_foreach(json_object_get(c, "limitsServedBy"), key, val)
	{
		bool none = strcmp(json_string_value(val), "none") == 0;
		printf("  [%s] %s limits via %s\n", none ? "MISS" : " ok ", key,
		       json_string_value(val));
	}
	size_t i;
	json_array_foreach(json_object_get(c, "warnings"), i, val)
	{
		printf("         warning: %s\n", json_string_value(val));
	}
	json_t *s = json_object_get(o, "seccomp");
	printf("seccomp:\n");
	line("seccomp filters", str(s, "actionsAvailable", NULL) != NULL,
	     str(s, "actionsAvailable", NULL));
	line("user-notify (violations named in reports)",
	     json_is_true(json_object_get(s, "userNotify")), NULL);
	printf("tools:\n");
	line("runsc (gVisor)", str(o, "runsc", "path") != NULL,
	     str(o, "runsc", "version") ? str(o, "runsc", "version") : str(o, "runsc", "path"));
	json_t *dt = json_object_get(json_object_get(o, "runsc"), "doTrue");
	if (dt)
		line("runsc --platform=ptrace do true", json_is_true(dt), NULL);
	line("pasta (user-mode networking)", str(o, "pasta", "path") != NULL,
	     str(o, "pasta", "path"));
	line("git http-backend (git server; Debian's git)",
	     str(o, "gitHttpBackend", "path") != NULL, str(o, "gitHttpBackend", "path"));
	printf("modes:\n");
	mode(modes, "privileged", "privileged (root, namespaces + cgroups)");
	mode(modes, "seccomp", "seccomp (non-root, user namespaces)");
	mode(modes, "unsandboxed", "unsandboxed (code-executor opt-in)");
	mode(modes, "agentSandbox", "agent sandbox (gVisor)");
	mode(modes, "agentSandboxJail", "agent sandbox (runtime: jail)");
	json_decref(o);
	return any ? 0 : 1;
}
