/*
 * jail-internal.h - what the files of src/jail/ share and nobody else sees.
 *
 *   jail.c          the supervisor: jail_run(), spec defaults, the event loop
 *   jail-ns.c       the child side: user/uts/net namespace set-up, the init, the payload
 *   jail-mount.c    the new root, built by fd (open_tree/fsmount/move_mount)
 *   jail-cgroup*.c  per-jail cgroups: detection, v1 and v2 backends
 *   jail-seccomp.c  policies compiled with libseccomp, cached as BPF
 *   jail-caps.c     rlimits and the privilege drop
 *   jail-report.c   the report and its JSON
 *   jail-probe.c    host capabilities (stockade doctor)
 */
#ifndef STOCKADE_JAIL_INTERNAL_H
#define STOCKADE_JAIL_INTERNAL_H

#include <linux/filter.h>
#include <stdint.h>

#include "jail/jail.h"

/* ---- seccomp ---------------------------------------------------------------------------- */

/* A compiled filter: a BPF program ready for seccomp(2), shared and immutable once built. */
struct jail__bpf {
	struct sock_filter *insns;
	unsigned short len;
};

/* Compile (or fetch from the cache) a policy. notify: dangerous syscalls go to a user-notify
   listener instead of killing the process. The result is owned by the cache (never freed)
   unless extra is non-empty, in which case the caller frees it with jail__bpf_free. */
int jail__seccomp_compile(const char *policy, const char *const *extra, bool notify,
                          const struct jail__bpf **out, bool *owned, struct st_error **err);
void jail__bpf_free(const struct jail__bpf *bpf);
/* Install a compiled filter on the calling thread; returns the listener fd (notify) or 0. */
int jail__seccomp_install(const struct jail__bpf *bpf, bool notify, unsigned extra_flags);

/* ---- cgroups ---------------------------------------------------------------------------- */

enum jail__cg_res {
	JAIL__CG_MEMORY,
	JAIL__CG_PIDS,
	JAIL__CG_CPU,
	JAIL__CG_CPUACCT,
	JAIL__CG_NRES,
};

/* Where one jail lives in the cgroup hierarchies. A resource is served either by the v2
   cgroup (v2_ctrl bit set) or by its v1 hierarchy (v1_fd[res] >= 0), or not at all (then a
   warning says so). The v2 cgroup, when it exists, also tracks membership and kills. */
struct jail_cgroup {
	int v2_fd; /* directory fd of the jail's v2 cgroup, -1 when none */
	char *v2_path;
	unsigned v2_ctrl; /* 1 << enum jail__cg_res served by v2 */
	int v1_fd[JAIL__CG_NRES]; /* directory fds of v1 cgroups, -1 when not used */
	char *v1_path[JAIL__CG_NRES];
	bool v1_memsw; /* memory.memsw.limit_in_bytes was set (swap off) */
	bool killed;
	char **warnings;
	size_t n_warnings;
};

void jail__cg_warn(struct jail_cgroup *cg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Backends. apply: write the limits; stats: read counters; procs_fd: an fd of a cgroup.procs
   file listing the jail's processes (for the kill loop). */
int jail__cg_v2_apply(struct jail_cgroup *cg, const struct jail_limits *l, struct st_error **err);
void jail__cg_v2_stats(struct jail_cgroup *cg, struct jail_cgroup_stats *st);
int jail__cg_v2_kill(struct jail_cgroup *cg);
int jail__cg_v1_apply(struct jail_cgroup *cg, const struct jail_limits *l, struct st_error **err);
void jail__cg_v1_stats(struct jail_cgroup *cg, struct jail_cgroup_stats *st);
int jail__cg_v1_kill(struct jail_cgroup *cg);
/* Small file helpers relative to a directory fd. */
int jail__cg_write(int dirfd, const char *file, const char *value);
int jail__cg_read_u64(int dirfd, const char *file, uint64_t *out);
/* Value of "key N" in a flat-keyed file (memory.events, pids.events, cpu.stat, ...). */
int jail__cg_read_key(int dirfd, const char *file, const char *key, uint64_t *out);
/* Send SIGKILL to every pid listed in dirfd/cgroup.procs until it stays empty. */
int jail__cg_kill_loop(int dirfd);
/* Host summary for the doctor: hierarchies and our place in them. */
void jail__cg_host_json(json_t *o);

/* ---- the child side --------------------------------------------------------------------- */

/* Everything the child needs, prepared by the supervisor before clone: the child runs
   without allocating (the supervisor may be multi-threaded, so malloc locks may be held). */
struct jail__mnt {
	enum jail_mount_kind kind;
	const char *src;
	const char *dst; /* relative to the new root, no leading '/' */
	uint64_t size;
	bool is_dir; /* bind of a directory (else a file) */
	bool dev; /* device node bind: keep dev, drop exec */
	bool optional; /* a missing source is skipped, not an error */
};

struct jail__symlink {
	const char *target;
	const char *path; /* relative to the new root */
};

struct jail__file {
	const char *path; /* relative to the new root */
	const char *data;
	mode_t mode;
};

struct jail__child {
	const struct jail_spec *spec;
	char *const *argv;
	char *const *envp;
	const char *path_env; /* PATH used to find argv[0] */
	const char *hostname;
	const char *cwd;
	struct jail__mnt *mnts;
	size_t n_mnts;
	struct jail__symlink *links;
	size_t n_links;
	struct jail__file *files;
	size_t n_files;
	char tmp_opts[64]; /* "size=N" for /tmp */
	const struct jail__bpf *bpf; /* NULL: no seccomp */
	bool notify;
	int sync_rd; /* supervisor says "maps written, go" */
	int ctl_wr; /* messages to the supervisor (setup errors, exit status) */
	int sock_wr; /* sends the seccomp listener fd */
	int stdin_fd, out_wr, err_wr;
	bool rootless;
	bool no_openat2; /* test hook: take the O_NOFOLLOW-walk fallback */
	int host_uid, host_gid; /* for rootless: the ids mapped to root */
};

/* Messages on the control pipe, fixed size so one write is atomic. */
enum jail__msg_kind { JAIL__MSG_SETUP_ERROR = 1, JAIL__MSG_EXIT = 2, JAIL__MSG_EXECED = 3 };
struct jail__msg {
	int kind;
	int err; /* errno */
	int status; /* wait status of the payload */
	char step[112];
	char detail[128];
};

/* Run in the cloned child (pid 1 of the new pid namespace); never returns. */
__attribute__((noreturn)) void jail__child_main(struct jail__child *c);
/* Build the new root and pivot into it. On failure *step names the failed step. */
int jail__mount_root(struct jail__child *c, const char **step, char *detail, size_t detail_len);
/* Report a setup failure to the supervisor and exit. */
__attribute__((noreturn)) void jail__child_fail(struct jail__child *c, const char *step,
                                                const char *detail, int e);

/* ---- capabilities and rlimits ------------------------------------------------------------ */

/* Allocation-free versions usable right after clone. */
int jail__drop_privileges_raw(const char **step);
int jail__apply_rlimits_raw(const struct jail_limits *limits, const char **step);

#endif
