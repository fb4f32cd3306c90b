/*
 * jail.h - Stockade's process jail: the one public header of src/jail/.
 *
 * Two ways to use it:
 *   1. jail_run(): describe a jail with struct jail_spec, run a command in it, get a
 *      struct jail_report (and its JSON form). This is what `stockade jail` uses.
 *   2. Building blocks for processes that jail *themselves* after a fork (the engine zygotes):
 *      cgroups (v1 and v2) managed from outside, and the in-process steps (rlimits, privilege
 *      drop, seccomp) applied by the child on itself, in that order, just before running
 *      untrusted code.
 *
 * Every function returns 0 or a negative errno-style code and fills *err (see common.h).
 */
#ifndef STOCKADE_JAIL_H
#define STOCKADE_JAIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "../common/common.h"

/* ---- the description ------------------------------------------------------------------ */

enum jail_mount_kind {
	JAIL_MOUNT_RO_BIND, /* read-only, nosuid, nodev bind of src at dst */
	JAIL_MOUNT_BIND, /* read-write, nosuid, nodev bind of src at dst */
	JAIL_MOUNT_TMPFS, /* fresh tmpfs at dst, size bytes (0: the default tmpfs size) */
};

struct jail_mount {
	enum jail_mount_kind kind;
	const char *src; /* host path; NULL for tmpfs */
	const char *dst; /* absolute path inside the jail */
	uint64_t size; /* tmpfs only */
};

enum jail_net {
	JAIL_NET_LOOPBACK = 0, /* own network namespace, only `lo`, up (the default) */
	JAIL_NET_NONE, /* own network namespace, `lo` left down */
};

/* Resource limits; 0 means "no limit of this kind" unless stated. */
struct jail_limits {
	uint64_t memory_bytes; /* cgroup memory.max / memory.limit_in_bytes; swap off */
	uint64_t pids; /* cgroup pids.max */
	double cpus; /* cgroup cpu quota in CPUs (0.5 = half a core) */
	uint64_t wall_ms; /* wall-clock limit: the whole jail is killed at it */
	uint64_t cpu_ms; /* CPU-time limit (RLIMIT_CPU plus cgroup accounting) */
	uint64_t output_bytes; /* cap on captured stdout and on stderr, each */
	uint64_t fsize_bytes; /* RLIMIT_FSIZE */
	uint64_t nofile; /* RLIMIT_NOFILE */
	uint64_t stack_bytes; /* RLIMIT_STACK */
	uint64_t tmp_bytes; /* size of the /tmp tmpfs (and the working dir tmpfs) */
};

struct jail_spec {
	char *const *argv; /* argv[0] is resolved inside the jail's root */
	char *const *env; /* NULL-terminated "K=V" list; NULL: the minimal default env */
	const char *hostname; /* NULL: "stockade" */
	const char *cwd; /* inside the jail; NULL: "/tmp" */
	const struct jail_mount *mounts; /* in addition to the default root, applied in order */
	size_t n_mounts;
	bool no_default_mounts; /* true: only `mounts` (plus /dev, /proc, /tmp) make the root */
	struct jail_limits limits;
	enum jail_net net;
	const char
	    *seccomp_policy; /* a policy name, see jail_seccomp_policies(); NULL: "default" */
	int stdin_fd; /* -1: /dev/null */
	bool capture_output; /* true: stdout/stderr captured into the report (capped);
				     false: passed through to the caller's fds 1 and 2 (still capped) */
	bool rootless; /* force the rootless path even when running as root (tests) */
	/* Added after the first version (jail_spec_init sets them): */
	const char *const *seccomp_extra_allow; /* syscall names allowed on top of the policy */
	const char *cgroup_name; /* NULL: "jail-<pid>-<n>" */
	bool no_cgroup; /* skip cgroups (no memory/pids/cpu limits, no cgroup stats) */
};

/* Fill spec with the defaults: argv/env NULL, net loopback, policy "default", tmp 64 MiB,
   nofile 256, fsize 64 MiB, stack 8 MiB, output 1 MiB, stdin /dev/null. */
void jail_spec_init(struct jail_spec *spec);

/* ---- the report ----------------------------------------------------------------------- */

enum jail_status {
	JAIL_OK = 0, /* exited 0 */
	JAIL_ERROR, /* exited non-zero */
	JAIL_SIGNALED, /* killed by a signal it was not killed for by us */
	JAIL_TIMEOUT, /* wall or CPU time limit */
	JAIL_MEMORY_LIMIT, /* cgroup OOM */
	JAIL_OUTPUT_LIMIT, /* stdout or stderr passed its cap */
	JAIL_SANDBOX_VIOLATION, /* seccomp refused a syscall with a kill */
	JAIL_SETUP_ERROR, /* the jail could not be built: see setup_step / setup_error */
};

enum jail_limit_hit {
	JAIL_HIT_MEMORY = 1u << 0,
	JAIL_HIT_PIDS = 1u << 1,
	JAIL_HIT_WALL = 1u << 2,
	JAIL_HIT_CPU = 1u << 3,
	JAIL_HIT_OUTPUT = 1u << 4,
	JAIL_HIT_FSIZE = 1u << 5,
};

struct jail_report {
	enum jail_status status;
	int exit_code; /* valid when the program exited */
	int signal; /* valid when it was killed by a signal */
	int64_t wall_ms;
	int64_t cpu_ms;
	int64_t max_rss_kb; /* from the cgroup (peak), else from rusage */
	unsigned limits_hit; /* enum jail_limit_hit bits */
	char *violation_syscall; /* name of the refused syscall, when known */
	char *setup_step; /* which setup step failed ("mount /proc", "cgroup memory", ...) */
	char *setup_error; /* and why */
	char *out; /* captured stdout (capture_output), NUL-terminated */
	size_t out_len;
	char *err; /* captured stderr */
	size_t err_len;
	bool out_truncated;
	bool err_truncated;
	char **warnings; /* limits that could not be enforced on this host, and why */
	size_t n_warnings;
};

const char *jail_status_name(enum jail_status s);
/* {"status","exitCode","signal","wallMs","cpuMs","maxRssKb","limitsHit":[...],
    "violation":{"syscall"}, "setupError":{"step","message"}, "stdoutTruncated", ...} */
json_t *jail_report_to_json(const struct jail_report *r);
void jail_report_release(struct jail_report *r);

/*
 * Run spec->argv in a new jail and wait for it. Returns 0 when a report was produced (whatever
 * the program did, including JAIL_SETUP_ERROR inside the child); negative only when the
 * supervisor itself could not work (then *err says why).
 */
int jail_run(const struct jail_spec *spec, struct jail_report *report, struct st_error **err);

/* ---- host capabilities (stockade doctor) ----------------------------------------------- */

/* A JSON object describing what this host supports and which modes work, with fixes. */
json_t *jail_probe_host(void);
/* With JAIL_PROBE_RUNSC: also try `runsc --platform=ptrace --network=none do true` (slow). */
#define JAIL_PROBE_RUNSC 1u
json_t *jail_probe_host_ex(unsigned flags);

/* ---- building blocks for self-jailing processes (zygotes) ------------------------------ */

/* A per-execution cgroup in whichever hierarchy (v2 or v1 controllers) the host offers. */
struct jail_cgroup;

/* Create the cgroup `name` under Stockade's parent cgroup and apply the limits. When a
   controller is not available, a warning is recorded (jail_cgroup_warnings) and the limit is
   not enforced; that is not an error. */
int jail_cgroup_create(const char *name, const struct jail_limits *limits, struct jail_cgroup **out,
                       struct st_error **err);
int jail_cgroup_attach(struct jail_cgroup *cg, pid_t pid, struct st_error **err);
struct jail_cgroup_stats {
	int64_t cpu_ms;
	int64_t max_rss_kb;
	bool oom_killed;
	bool pids_limit_hit;
};
int jail_cgroup_read_stats(struct jail_cgroup *cg, struct jail_cgroup_stats *st);
/* Kill every process in the cgroup and wait until it is empty. */
int jail_cgroup_kill(struct jail_cgroup *cg, struct st_error **err);
/* SIGKILL, through a pidfd each, every process listed in the cgroup.procs of dirfd (a cgroup
   directory of either hierarchy, e.g. one known only by path after a restart) until the list
   reads empty, re-reading it 1 ms apart for at most timeout_ms rounds. 0 once empty, -EBUSY
   when processes remain, or the negative errno of reading cgroup.procs (-ENOENT: no such
   cgroup). For a cgroup made by jail_cgroup_create, use jail_cgroup_kill. */
int jail_cgroup_kill_procs(int dirfd, unsigned timeout_ms);
/* Kill, then remove the cgroup directories and free the handle. NULL is fine. */
void jail_cgroup_destroy(struct jail_cgroup *cg);
const char *const *jail_cgroup_warnings(const struct jail_cgroup *cg, size_t *n);
/* Remove Stockade's parent cgroup (default "stockade", or $STOCKADE_CGROUP_PARENT) from every
   hierarchy where it exists and is empty. For tests and uninstall; jails never need it. */
int jail_cgroup_remove_parent(void);

/* In-process steps, for a child about to run untrusted code, applied in this order. */
int jail_apply_rlimits(const struct jail_limits *limits, struct st_error **err);
/* no_new_privs, every capability set cleared, securebits locked. */
int jail_drop_privileges(struct st_error **err);
/* Bring up `lo` in the caller's (new) network namespace; 0 or -errno. Syscalls only, so a
   freshly cloned child may call it. */
int jail_loopback_up(void);
/* Write s to /proc/<pid>/<file> in one write (uid_map, gid_map, setgroups); 0 or -errno. */
int jail_write_proc(pid_t pid, const char *file, const char *s);
/* Load the named seccomp policy into the calling process (with TSYNC if threads exist). */
int jail_seccomp_load(const char *policy, struct st_error **err);
/*
 * jail_seccomp_load with options: extra_allow (NULL-terminated syscall names, may be NULL) are
 * allowed on top of the policy; notify_fd non-NULL: the dangerous syscalls are sent to a
 * seccomp user-notify listener whose fd is stored there (hand it to a supervisor, e.g. over
 * SCM_RIGHTS, then close it) instead of killing the process outright. With nobody listening
 * they fail with ENOSYS, so a listener must exist for the violation to end the process.
 */
int jail_seccomp_load_ex(const char *policy, const char *const *extra_allow, int *notify_fd,
                         struct st_error **err);
/* Supervisor side: receive one notification from a listener and store the syscall number
   (name it with jail_syscall_name). It is not answered: the caller kills the jail, so the
   refused syscall never returns to the program. */
int jail_seccomp_notify_handle(int notify_fd, int *syscall_nr, struct st_error **err);
/* Human-readable form of a policy (libseccomp PFC), for review and tests. */
int jail_seccomp_export_pfc(const char *policy, int fd, struct st_error **err);
/* Names of the policies jail_seccomp_load knows, NULL-terminated. */
const char *const *jail_seccomp_policies(void);
/* The syscall name for a number on this architecture, or NULL (valid until the next call
   on the same thread). */
const char *jail_syscall_name(int nr);

#endif
