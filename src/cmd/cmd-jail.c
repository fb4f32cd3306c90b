/*
 * cmd-jail.c - `stockade jail [options] -- CMD [ARGS]`: parse options into a jail_spec, run
 * it, print the JSON report if asked, and map the report to an exit code.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>

#include "common/common.h"
#include "jail/jail.h"

int cmd_jail(int argc, char **argv);

/* Exit codes for non-ok statuses (documented in --help and docs/jail.md). */
#define EXIT_TIMEOUT 124
#define EXIT_SETUP 125
#define EXIT_OUTPUT 126
#define EXIT_VIOLATION 159 /* 128 + SIGSYS */
#define EXIT_MEMORY 137 /* 128 + SIGKILL, as the OOM killer leaves it */

static void usage(FILE *f)
{
	fputs(
	    "usage: stockade jail [options] -- CMD [ARGS...]\n"
	    "\n"
	    "Run CMD in a new jail: user, pid, mount, net, ipc, uts and cgroup namespaces; a\n"
	    "read-only root (/usr, /bin, /sbin, /lib*, a generated /etc), fresh /tmp, /dev and\n"
	    "/proc; cgroup limits (v2 or v1), rlimits, no capabilities, no_new_privs, a seccomp\n"
	    "allowlist. stdin is /dev/null; stdout and stderr pass through, each capped.\n"
	    "\n"
	    "filesystem:\n"
	    "  --ro-bind SRC DST     bind host SRC read-only at DST (nosuid, nodev)\n"
	    "  --bind SRC DST        bind host SRC read-write at DST (nosuid, nodev)\n"
	    "  --tmpfs DST[:SIZE]    fresh tmpfs at DST (SIZE like 16M; default: the /tmp size)\n"
	    "  --tmp-size SIZE       size of /tmp and of a working-dir tmpfs (default 64M)\n"
	    "  --chdir DIR           working directory inside (default /tmp; a missing one gets a\n"
	    "                        fresh tmpfs)\n"
	    "  --no-default-mounts   only the binds given (plus /dev, /proc, /tmp) make the root\n"
	    "environment and identity:\n"
	    "  --env K=V             add a variable (the environment is PATH, HOME=/tmp,\n"
	    "                        LANG=C.UTF-8, TMPDIR=/tmp plus these; repeatable)\n"
	    "  --hostname NAME       hostname inside (default 'stockade')\n"
	    "  --rootless            build the jail as an unprivileged user would, even as root\n"
	    "limits:\n"
	    "  --memory MB           cgroup memory limit, swap off\n"
	    "  --pids N              cgroup pids limit (every process and thread)\n"
	    "  --cpus N              cgroup CPU quota in CPUs (e.g. 0.5)\n"
	    "  --time-limit SEC      wall-clock limit; the whole jail is killed at it\n"
	    "  --cpu-time SEC        CPU-time limit (RLIMIT_CPU and the cgroup's CPU usage)\n"
	    "  --output-limit BYTES  cap on stdout and on stderr, each (default 1M; at the cap "
	    "the\n"
	    "                        jail is killed and the status is output_limit)\n"
	    "  --fsize SIZE          largest file the program may write (default 64M)\n"
	    "  --nofile N            open files (default 256)\n"
	    "network and syscalls:\n"
	    "  --net none|loopback   own network namespace; loopback (default) brings 'lo' up\n"
	    "  --seccomp POLICY      default | egress | jsc | python; 'none' disables the filter\n"
	    "                        (debugging only; a loud warning is printed)\n"
	    "report:\n"
	    "  --report FILE         write the JSON report to FILE ('-': stdout, after the\n"
	    "                        program's output)\n"
	    "  --capture             capture output into the report instead of passing it on\n"
	    "  --no-cgroup           do not create a cgroup (no memory/pids/cpu limits)\n"
	    "\n"
	    "exit status: the program's own exit code when it exited; otherwise\n"
	    "  124 timeout (wall or CPU)      125 setup error (the report names the step)\n"
	    "  126 output limit               137 memory limit\n"
	    "  159 sandbox violation (a refused syscall; the report names it)\n"
	    "  128+N killed by signal N       2 usage error\n"
	    "environment: STOCKADE_CGROUP_PARENT (parent cgroup name, default 'stockade'),\n"
	    "  STOCKADE_CGROUP_VERSION=1|2 (use only that cgroup hierarchy)\n",
	    f);
}

static int parse_secs_ms(const char *s, uint64_t *ms)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 1e7)
		return -EINVAL;
	*ms = (uint64_t)ceil(v * 1000.0);
	return 0;
}

static int bad(const char *opt, const char *val, const char *want)
{
	fprintf(stderr, "stockade jail: bad value '%s' for %s: %s\n", val, opt, want);
	return 2;
}

int cmd_jail(int argc, char **argv)
{
	enum {
		O_RO_BIND = 256,
		O_BIND,
		O_TMPFS,
		O_CHDIR,
		O_ENV,
		O_MEMORY,
		O_PIDS,
		O_CPUS,
		O_TIME,
		O_CPU_TIME,
		O_OUTPUT,
		O_NET,
		O_SECCOMP,
		O_HOSTNAME,
		O_REPORT,
		O_ROOTLESS,
		O_CAPTURE,
		O_NO_CGROUP,
		O_TMP_SIZE,
		O_FSIZE,
		O_NOFILE,
		O_NO_DEFAULT,
		O_HELP
	};
	static const struct option opts[] = {
	    {"ro-bind", required_argument, 0, O_RO_BIND},
	    {"bind", required_argument, 0, O_BIND},
	    {"tmpfs", required_argument, 0, O_TMPFS},
	    {"chdir", required_argument, 0, O_CHDIR},
	    {"env", required_argument, 0, O_ENV},
	    {"memory", required_argument, 0, O_MEMORY},
	    {"pids", required_argument, 0, O_PIDS},
	    {"cpus", required_argument, 0, O_CPUS},
	    {"time-limit", required_argument, 0, O_TIME},
	    {"cpu-time", required_argument, 0, O_CPU_TIME},
	    {"output-limit", required_argument, 0, O_OUTPUT},
	    {"net", required_argument, 0, O_NET},
	    {"seccomp", required_argument, 0, O_SECCOMP},
	    {"hostname", required_argument, 0, O_HOSTNAME},
	    {"report", required_argument, 0, O_REPORT},
	    {"rootless", no_argument, 0, O_ROOTLESS},
	    {"capture", no_argument, 0, O_CAPTURE},
	    {"no-cgroup", no_argument, 0, O_NO_CGROUP},
	    {"tmp-size", required_argument, 0, O_TMP_SIZE},
	    {"fsize", required_argument, 0, O_FSIZE},
	    {"nofile", required_argument, 0, O_NOFILE},
	    {"no-default-mounts", no_argument, 0, O_NO_DEFAULT},
	    {"help", no_argument, 0, O_HELP},
	    {0, 0, 0, 0},
	};
	struct jail_spec spec;
	jail_spec_init(&spec);
	struct jail_report rep;
	cleanup_error struct st_error *err = NULL;
	struct jail_mount mounts[64];
	size_t n_mounts = 0;
	char *envs[130];
	size_t n_env = 0;
	static char def_path[] =
	    "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
	static char def_home[] = "HOME=/tmp", def_lang[] = "LANG=C.UTF-8",
	            def_tmp[] = "TMPDIR=/tmp";
	envs[n_env++] = def_path;
	envs[n_env++] = def_home;
	envs[n_env++] = def_lang;
	envs[n_env++] = def_tmp;
	const char *report_path = NULL;
	char *tmpfs_dsts[64];
	size_t n_tmpfs = 0;
	int ret = 2;
	optind = 1;
	opterr = 0;
	int o;
	while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		uint64_t v;
		switch (o) {
		case O_RO_BIND:
		case O_BIND:
			if (optind >= argc) {
				fprintf(stderr, "stockade jail: %s needs SRC and DST\n",
				        o == O_BIND ? "--bind" : "--ro-bind");
				goto out;
			}
			if (n_mounts >= ST_ARRAY_SIZE(mounts)) {
				fprintf(stderr, "stockade jail: too many mounts (at most 64)\n");
				goto out;
			}
			mounts[n_mounts++] =
			    (struct jail_mount){o == O_BIND ? JAIL_MOUNT_BIND : JAIL_MOUNT_RO_BIND,
			                        optarg, argv[optind++], 0};
			break;
		case O_TMPFS: {
			if (n_mounts >= ST_ARRAY_SIZE(mounts) ||
			    n_tmpfs >= ST_ARRAY_SIZE(tmpfs_dsts)) {
				fprintf(stderr, "stockade jail: too many mounts (at most 64)\n");
				goto out;
			}
			char *d = st_xstrdup(optarg);
			tmpfs_dsts[n_tmpfs++] = d;
			uint64_t size = 0;
			char *colon = strrchr(d, ':');
			if (colon) {
				*colon = '\0';
				if (st_parse_size(colon + 1, &size) < 0 || size == 0) {
					ret = bad("--tmpfs", optarg,
					          "want DST[:SIZE], SIZE like 16M");
					goto out;
				}
			}
			mounts[n_mounts++] = (struct jail_mount){JAIL_MOUNT_TMPFS, NULL, d, size};
			break;
		}
		case O_CHDIR: spec.cwd = optarg; break;
		case O_ENV:
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				ret = bad("--env", optarg, "want K=V");
				goto out;
			}
			if (n_env >= ST_ARRAY_SIZE(envs) - 1) {
				fprintf(stderr, "stockade jail: too many --env (at most 120)\n");
				goto out;
			}
			/* A later K= replaces an earlier one (including the defaults). */
			{
				size_t kl = (size_t)(strchr(optarg, '=') - optarg) + 1;
				size_t j;
				for (j = 0; j < n_env; j++)
					if (strncmp(envs[j], optarg, kl) == 0)
						break;
				envs[j] = optarg;
				if (j == n_env)
					n_env++;
			}
			break;
		case O_MEMORY:
			if (st_parse_u64(optarg, &v) < 0 || v == 0 || v > (1u << 30)) {
				ret = bad("--memory", optarg, "want a number of MiB, at least 1");
				goto out;
			}
			spec.limits.memory_bytes = v << 20;
			break;
		case O_PIDS:
			if (st_parse_u64(optarg, &v) < 0 || v == 0) {
				ret = bad("--pids", optarg, "want a positive number");
				goto out;
			}
			spec.limits.pids = v;
			break;
		case O_CPUS: {
			char *end;
			double d = strtod(optarg, &end);
			if (end == optarg || *end || !(d > 0) || d > 1024) {
				ret = bad("--cpus", optarg,
				          "want a positive number of CPUs, e.g. 0.5");
				goto out;
			}
			spec.limits.cpus = d;
			break;
		}
		case O_TIME:
			if (parse_secs_ms(optarg, &spec.limits.wall_ms) < 0) {
				ret = bad("--time-limit", optarg, "want seconds, e.g. 1.5");
				goto out;
			}
			break;
		case O_CPU_TIME:
			if (parse_secs_ms(optarg, &spec.limits.cpu_ms) < 0) {
				ret = bad("--cpu-time", optarg, "want seconds, e.g. 1");
				goto out;
			}
			break;
		case O_OUTPUT:
			if (st_parse_size(optarg, &spec.limits.output_bytes) < 0 ||
			    spec.limits.output_bytes == 0) {
				ret = bad("--output-limit", optarg, "want bytes, e.g. 65536 or 1M");
				goto out;
			}
			break;
		case O_TMP_SIZE:
			if (st_parse_size(optarg, &spec.limits.tmp_bytes) < 0 ||
			    spec.limits.tmp_bytes == 0) {
				ret = bad("--tmp-size", optarg, "want a size, e.g. 16M");
				goto out;
			}
			break;
		case O_FSIZE:
			if (st_parse_size(optarg, &spec.limits.fsize_bytes) < 0) {
				ret = bad("--fsize", optarg, "want a size, e.g. 16M");
				goto out;
			}
			break;
		case O_NOFILE:
			if (st_parse_u64(optarg, &spec.limits.nofile) < 0 ||
			    spec.limits.nofile < 4) {
				ret = bad("--nofile", optarg, "want a number, at least 4");
				goto out;
			}
			break;
		case O_NET:
			if (strcmp(optarg, "none") == 0)
				spec.net = JAIL_NET_NONE;
			else if (strcmp(optarg, "loopback") == 0)
				spec.net = JAIL_NET_LOOPBACK;
			else {
				ret = bad("--net", optarg, "want none or loopback");
				goto out;
			}
			break;
		case O_SECCOMP: {
			bool known = strcmp(optarg, "none") == 0;
			for (const char *const *pn = jail_seccomp_policies(); *pn; pn++)
				if (strcmp(*pn, optarg) == 0)
					known = true;
			if (!known) {
				ret = bad("--seccomp", optarg,
				          "want default, egress, jsc, python or none");
				goto out;
			}
			if (strcmp(optarg, "none") == 0)
				fprintf(
				    stderr,
				    "stockade jail: WARNING: --seccomp none: NO SYSCALL FILTER; "
				    "the jailed program can reach the whole kernel syscall "
				    "surface. Use for debugging only.\n");
			spec.seccomp_policy = optarg;
			break;
		}
		case O_HOSTNAME:
			if (optarg[0] == '\0' || strlen(optarg) > 64) {
				ret = bad("--hostname", optarg, "want 1 to 64 characters");
				goto out;
			}
			spec.hostname = optarg;
			break;
		case O_REPORT: report_path = optarg; break;
		case O_ROOTLESS: spec.rootless = true; break;
		case O_CAPTURE: spec.capture_output = true; break;
		case O_NO_CGROUP: spec.no_cgroup = true; break;
		case O_NO_DEFAULT: spec.no_default_mounts = true; break;
		case O_HELP:
		case 'h':
			usage(stdout);
			ret = 0;
			goto out;
		default:
			fprintf(stderr,
			        "stockade jail: unknown or incomplete option '%s' (see --help)\n",
			        argv[optind - 1]);
			goto out;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "stockade jail: no command given: stockade jail [options] -- CMD "
		                "[ARGS...] (see --help)\n");
		goto out;
	}
	envs[n_env] = NULL;
	spec.env = envs;
	spec.argv = argv + optind;
	spec.mounts = mounts;
	spec.n_mounts = n_mounts;

	if (jail_run(&spec, &rep, &err) < 0) {
		fprintf(stderr, "stockade jail: %s\n", st_error_msg(err));
		ret = 1;
		goto out;
	}
	for (size_t i = 0; i < rep.n_warnings; i++)
		fprintf(stderr, "stockade jail: warning: %s\n", rep.warnings[i]);
	if (rep.status == JAIL_SETUP_ERROR)
		fprintf(stderr, "stockade jail: setup failed at '%s': %s\n", rep.setup_step,
		        rep.setup_error);
	else if (rep.status == JAIL_SANDBOX_VIOLATION)
		fprintf(stderr, "stockade jail: sandbox violation: syscall %s refused\n",
		        rep.violation_syscall ? rep.violation_syscall : "(unknown)");
	if (report_path) {
		json_t *j = jail_report_to_json(&rep);
		char *s = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		if (strcmp(report_path, "-") == 0) {
			fflush(stdout);
			printf("%s\n", s);
			fflush(stdout);
		} else {
			cleanup_error struct st_error *we = NULL;
			if (st_write_file_atomic(report_path, s, strlen(s), 0644, &we) < 0)
				fprintf(stderr, "stockade jail: cannot write the report: %s\n",
				        st_error_msg(we));
		}
		free(s);
	}
	switch (rep.status) {
	case JAIL_OK:
	case JAIL_ERROR: ret = rep.exit_code; break;
	case JAIL_TIMEOUT: ret = EXIT_TIMEOUT; break;
	case JAIL_SETUP_ERROR: ret = EXIT_SETUP; break;
	case JAIL_OUTPUT_LIMIT: ret = EXIT_OUTPUT; break;
	case JAIL_MEMORY_LIMIT: ret = EXIT_MEMORY; break;
	case JAIL_SANDBOX_VIOLATION: ret = EXIT_VIOLATION; break;
	case JAIL_SIGNALED: ret = 128 + rep.signal; break;
	default: ret = 1; break;
	}
	jail_report_release(&rep);
out:
	for (size_t i = 0; i < n_tmpfs; i++)
		free(tmpfs_dsts[i]);
	return ret;
}
