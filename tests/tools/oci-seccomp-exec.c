/*
 * oci-seccomp-exec.c - run a command under an OCI/Docker seccomp profile, as a container
 * runtime would, then as a non-root user. Test tool (built by the test scripts, not by make).
 *
 *   oci-seccomp-exec [-v] [--uid N] [--gid N] [--cap NAME]... [--nnp] PROFILE.json -- CMD [ARGS]
 *
 * What it implements of the profile format (the subset Docker/containerd/CRI-O read):
 *   defaultAction, defaultErrnoRet; architectures (OCI) or archMap (Docker: the entry of the
 *   native architecture and its subArchitectures); syscalls[] with names, action, errnoRet,
 *   args (index, value, valueTwo, op), includes/excludes with arches, caps and minKernel.
 *   As in Docker: args on distinct indexes form one rule (AND); when an index repeats, each arg
 *   is its own rule (OR). A rule whose caps are not held (--cap) is skipped, like a container
 *   without those capabilities; names unknown on this architecture are skipped.
 *
 * Order, as runc does without no_new_privs: drop the bounding set, set groups and gid, load the
 * filter while still privileged (so no_new_privs is not needed), then setresuid to the target
 * user (which clears the remaining capabilities) and exec. With --nnp, no_new_privs is set too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <jansson.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <unistd.h>

static int verbose;
static const char *held_caps[64];
static int n_held_caps;

static void die(const char *msg, const char *what)
{
	fprintf(stderr, "oci-seccomp-exec: %s%s%s\n", msg, what ? ": " : "", what ? what : "");
	exit(125);
}

static bool parse_action(const char *s, uint32_t errno_ret, uint32_t *out)
{
	if (!s)
		return false;
	if (!strcmp(s, "SCMP_ACT_ALLOW"))
		*out = SCMP_ACT_ALLOW;
	else if (!strcmp(s, "SCMP_ACT_ERRNO"))
		*out = SCMP_ACT_ERRNO(errno_ret);
	else if (!strcmp(s, "SCMP_ACT_KILL") || !strcmp(s, "SCMP_ACT_KILL_THREAD"))
		*out = SCMP_ACT_KILL;
	else if (!strcmp(s, "SCMP_ACT_KILL_PROCESS"))
		*out = SCMP_ACT_KILL_PROCESS;
	else if (!strcmp(s, "SCMP_ACT_TRAP"))
		*out = SCMP_ACT_TRAP;
	else if (!strcmp(s, "SCMP_ACT_LOG"))
		*out = SCMP_ACT_LOG;
	else if (!strcmp(s, "SCMP_ACT_TRACE"))
		*out = SCMP_ACT_TRACE(errno_ret);
	else
		return false;
	return true;
}

static bool parse_op(const char *s, enum scmp_compare *out)
{
	static const struct {
		const char *name;
		enum scmp_compare op;
	} ops[] = {{"SCMP_CMP_NE", SCMP_CMP_NE},         {"SCMP_CMP_LT", SCMP_CMP_LT},
	           {"SCMP_CMP_LE", SCMP_CMP_LE},         {"SCMP_CMP_EQ", SCMP_CMP_EQ},
	           {"SCMP_CMP_GE", SCMP_CMP_GE},         {"SCMP_CMP_GT", SCMP_CMP_GT},
	           {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
	for (size_t i = 0; s && i < sizeof ops / sizeof ops[0]; i++)
		if (!strcmp(s, ops[i].name)) {
			*out = ops[i].op;
			return true;
		}
	return false;
}

/* Docker's names for SCMP_ARCH_* values, as used in includes/excludes "arches". */
static const char *native_docker_arch(void)
{
#if defined(__x86_64__)
	return "amd64";
#elif defined(__aarch64__)
	return "arm64";
#else
	return "unknown";
#endif
}

static bool has_cap(const char *c)
{
	for (int i = 0; i < n_held_caps; i++)
		if (!strcmp(held_caps[i], c))
			return true;
	return false;
}

static int kernel_cmp(const char *min)
{
	struct utsname u;
	if (uname(&u) < 0)
		return 0;
	int a = 0, b = 0, x = 0, y = 0;
	sscanf(u.release, "%d.%d", &a, &b);
	sscanf(min, "%d.%d", &x, &y);
	return a != x ? a - x : b - y;
}

/* includes: every listed condition must hold; excludes: none may hold. */
static bool rule_applies(json_t *rule)
{
	json_t *inc = json_object_get(rule, "includes"), *exc = json_object_get(rule, "excludes");
	size_t i;
	json_t *v;
	if (json_is_object(inc)) {
		json_t *arches = json_object_get(inc, "arches");
		if (json_array_size(arches)) {
			bool found = false;
			json_array_foreach(arches, i, v) if (!strcmp(json_string_value(v) ?: "",
			                                              native_docker_arch())) found = true;
			if (!found)
				return false;
		}
		json_t *caps = json_object_get(inc, "caps");
		json_array_foreach(caps, i, v) if (!has_cap(json_string_value(v) ?: "")) return false;
		const char *mk = json_string_value(json_object_get(inc, "minKernel"));
		if (mk && kernel_cmp(mk) < 0)
			return false;
	}
	if (json_is_object(exc)) {
		json_t *arches = json_object_get(exc, "arches");
		json_array_foreach(arches, i, v) if (!strcmp(json_string_value(v) ?: "",
		                                              native_docker_arch())) return false;
		json_t *caps = json_object_get(exc, "caps");
		json_array_foreach(caps, i, v) if (has_cap(json_string_value(v) ?: "")) return false;
		const char *mk = json_string_value(json_object_get(exc, "minKernel"));
		if (mk && kernel_cmp(mk) >= 0)
			return false;
	}
	return true;
}

static void add_arch(scmp_filter_ctx ctx, const char *name)
{
	static const struct {
		const char *name;
		uint32_t arch;
	} arches[] = {{"SCMP_ARCH_X86_64", SCMP_ARCH_X86_64}, {"SCMP_ARCH_X86", SCMP_ARCH_X86},
	              {"SCMP_ARCH_X32", SCMP_ARCH_X32},       {"SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64},
	              {"SCMP_ARCH_ARM", SCMP_ARCH_ARM}};
	for (size_t i = 0; i < sizeof arches / sizeof arches[0]; i++)
		if (!strcmp(name, arches[i].name)) {
			int r = seccomp_arch_add(ctx, arches[i].arch);
			if (r < 0 && r != -EEXIST)
				die("cannot add architecture", name);
			if (verbose)
				fprintf(stderr, "oci-seccomp-exec: architecture %s\n", name);
			return;
		}
	if (verbose)
		fprintf(stderr, "oci-seccomp-exec: architecture %s not handled, skipped\n", name);
}

static uint32_t native_scmp_arch(void)
{
	return seccomp_arch_native();
}

static const char *scmp_arch_name(uint32_t a)
{
	switch (a) {
	case SCMP_ARCH_X86_64:
		return "SCMP_ARCH_X86_64";
	case SCMP_ARCH_AARCH64:
		return "SCMP_ARCH_AARCH64";
	default:
		return "?";
	}
}

static void add_rule(scmp_filter_ctx ctx, uint32_t def, uint32_t act, int nr, const char *name,
                     struct scmp_arg_cmp *cmp, unsigned n)
{
	if (act == def)
		return;
	int r = seccomp_rule_add_array(ctx, act, nr, n, cmp);
	if (r < 0) {
		fprintf(stderr, "oci-seccomp-exec: rule for %s: %s\n", name, strerror(-r));
		exit(125);
	}
}

int main(int argc, char **argv)
{
	uid_t uid = 65534;
	gid_t gid = 65534;
	bool nnp = false;
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			verbose = 1;
		else if (!strcmp(argv[i], "--uid") && i + 1 < argc)
			uid = (uid_t)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--gid") && i + 1 < argc)
			gid = (gid_t)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--cap") && i + 1 < argc && n_held_caps < 64)
			held_caps[n_held_caps++] = argv[++i];
		else if (!strcmp(argv[i], "--nnp"))
			nnp = true;
		else
			break;
	}
	if (i + 2 >= argc || strcmp(argv[i + 1], "--") != 0) {
		fprintf(stderr, "usage: oci-seccomp-exec [-v] [--uid N] [--gid N] [--cap NAME]... "
		                "[--nnp] PROFILE.json -- CMD [ARGS]\n");
		return 2;
	}
	const char *profile = argv[i];
	char **cmd = argv + i + 2;

	json_error_t jerr;
	json_t *root = json_load_file(profile, 0, &jerr);
	if (!root) {
		fprintf(stderr, "oci-seccomp-exec: '%s' line %d: %s\n", profile, jerr.line, jerr.text);
		return 125;
	}
	json_t *jdef_errno = json_object_get(root, "defaultErrnoRet");
	uint32_t def_errno = json_is_integer(jdef_errno) ? (uint32_t)json_integer_value(jdef_errno)
	                                                 : EPERM;
	uint32_t def;
	if (!parse_action(json_string_value(json_object_get(root, "defaultAction")), def_errno, &def))
		die("bad or missing defaultAction", profile);
	scmp_filter_ctx ctx = seccomp_init(def);
	if (!ctx)
		die("seccomp_init failed", NULL);
	if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, nnp ? 1 : 0) < 0)
		die("cannot set the no_new_privs attribute", NULL);

	/* Architectures: OCI "architectures" or Docker "archMap" (native entry only). */
	size_t k;
	json_t *v;
	json_t *archs = json_object_get(root, "architectures");
	json_array_foreach(archs, k, v) add_arch(ctx, json_string_value(v) ?: "");
	json_t *amap = json_object_get(root, "archMap");
	json_array_foreach(amap, k, v)
	{
		const char *a = json_string_value(json_object_get(v, "architecture")) ?: "";
		if (strcmp(a, scmp_arch_name(native_scmp_arch())) != 0)
			continue;
		add_arch(ctx, a);
		size_t m;
		json_t *sub;
		json_array_foreach(json_object_get(v, "subArchitectures"), m, sub)
		    add_arch(ctx, json_string_value(sub) ?: "");
	}

	unsigned rules = 0, skipped = 0, unknown = 0;
	json_t *rule;
	json_array_foreach(json_object_get(root, "syscalls"), k, rule)
	{
		if (!rule_applies(rule)) {
			skipped++;
			continue;
		}
		json_t *jerrno = json_object_get(rule, "errnoRet");
		uint32_t eret = json_is_integer(jerrno) ? (uint32_t)json_integer_value(jerrno) : EPERM;
		uint32_t act;
		if (!parse_action(json_string_value(json_object_get(rule, "action")), eret, &act))
			die("bad action in a syscalls[] entry", json_string_value(json_object_get(rule, "action")));
		struct scmp_arg_cmp cmp[6];
		unsigned n = 0;
		bool repeated = false, seen[6] = {false};
		size_t m;
		json_t *arg;
		json_t *args = json_object_get(rule, "args");
		json_array_foreach(args, m, arg)
		{
			if (n >= 6)
				die("more than 6 args in a rule", NULL);
			enum scmp_compare op;
			if (!parse_op(json_string_value(json_object_get(arg, "op")), &op))
				die("bad op", json_string_value(json_object_get(arg, "op")));
			unsigned idx = (unsigned)json_integer_value(json_object_get(arg, "index"));
			if (idx > 5)
				die("arg index above 5", NULL);
			if (seen[idx])
				repeated = true;
			seen[idx] = true;
			cmp[n].arg = idx;
			cmp[n].op = op;
			cmp[n].datum_a = (scmp_datum_t)json_integer_value(json_object_get(arg, "value"));
			cmp[n].datum_b = (scmp_datum_t)json_integer_value(json_object_get(arg, "valueTwo"));
			n++;
		}
		json_t *name;
		json_array_foreach(json_object_get(rule, "names"), m, name)
		{
			const char *s = json_string_value(name) ?: "";
			int nr = seccomp_syscall_resolve_name(s);
			if (nr == __NR_SCMP_ERROR) {
				unknown++;
				continue;
			}
			if (repeated) {
				for (unsigned a = 0; a < n; a++)
					add_rule(ctx, def, act, nr, s, &cmp[a], 1);
			} else {
				add_rule(ctx, def, act, nr, s, cmp, n);
			}
			rules++;
		}
	}
	if (verbose)
		fprintf(stderr, "oci-seccomp-exec: %u syscall rules, %u entries skipped, %u names unknown here\n",
		        rules, skipped, unknown);

	/* Become the target user except for the uid, then load, then drop the uid. */
	for (int c = 0; c <= CAP_LAST_CAP; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			die("cannot drop the bounding set", strerror(errno));
	if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0)
		die("cannot set groups and gid", strerror(errno));
	int r = seccomp_load(ctx);
	if (r < 0)
		die("seccomp_load failed", strerror(-r));
	seccomp_release(ctx);
	json_decref(root);
	if (setresuid(uid, uid, uid) < 0)
		die("cannot set uid", strerror(errno));
	execvp(cmd[0], cmd);
	fprintf(stderr, "oci-seccomp-exec: cannot run '%s': %s\n", cmd[0], strerror(errno));
	return 127;
}
