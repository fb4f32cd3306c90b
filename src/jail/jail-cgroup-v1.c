/*
 * jail-cgroup-v1.c - the cgroup v1 backend, one directory per controller hierarchy:
 * memory.limit_in_bytes (+ memory.memsw.limit_in_bytes = the same, so no swap, when the
 * kernel accounts swap), pids.max, cpu.cfs_quota_us/cfs_period_us; stats from
 * memory.max_usage_in_bytes, memory.oom_control (oom_kill), pids.events and cpuacct.usage.
 * v1 has no cgroup.kill: killing is the SIGKILL-until-empty loop on each hierarchy (the
 * jail's pid namespace dying with its init already takes every process with it).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "jail/jail-internal.h"

static int wr(struct jail_cgroup *cg, int res, const char *file, const char *v,
              struct st_error **err)
{
	int r = jail__cg_write(cg->v1_fd[res], file, v);
	if (r < 0)
		return st_error_make(err, -r, "cgroup %s", file);
	return 0;
}

int jail__cg_v1_apply(struct jail_cgroup *cg, const struct jail_limits *l, struct st_error **err)
{
	char v[64];
	int r;
	if (cg->v1_fd[JAIL__CG_MEMORY] >= 0 && l->memory_bytes) {
		snprintf(v, sizeof(v), "%" PRIu64, l->memory_bytes);
		if ((r = wr(cg, JAIL__CG_MEMORY, "memory.limit_in_bytes", v, err)) < 0)
			return r;
		r = jail__cg_write(cg->v1_fd[JAIL__CG_MEMORY], "memory.memsw.limit_in_bytes", v);
		if (r == 0)
			cg->v1_memsw = true;
		else if (r == -ENOENT)
			jail__cg_warn(cg,
			              "swap not limited: 'memory.memsw.limit_in_bytes' is missing "
			              "(boot with swapaccount=1)");
		else
			return st_error_make(err, -r, "cgroup memory.memsw.limit_in_bytes");
	}
	if (cg->v1_fd[JAIL__CG_PIDS] >= 0 && l->pids) {
		snprintf(v, sizeof(v), "%" PRIu64, l->pids);
		if ((r = wr(cg, JAIL__CG_PIDS, "pids.max", v, err)) < 0)
			return r;
	}
	if (cg->v1_fd[JAIL__CG_CPU] >= 0 && l->cpus > 0) {
		uint64_t quota = (uint64_t)(l->cpus * 100000.0);
		if (quota < 1000)
			quota = 1000;
		if ((r = wr(cg, JAIL__CG_CPU, "cpu.cfs_period_us", "100000", err)) < 0)
			return r;
		snprintf(v, sizeof(v), "%" PRIu64, quota);
		if ((r = wr(cg, JAIL__CG_CPU, "cpu.cfs_quota_us", v, err)) < 0)
			return r;
	}
	return 0;
}

void jail__cg_v1_stats(struct jail_cgroup *cg, struct jail_cgroup_stats *st)
{
	uint64_t v;
	int fd = cg->v1_fd[JAIL__CG_MEMORY];
	if (fd >= 0) {
		if (jail__cg_read_u64(fd, "memory.max_usage_in_bytes", &v) == 0)
			st->max_rss_kb = (int64_t)(v / 1024);
		if (jail__cg_read_key(fd, "memory.oom_control", "oom_kill", &v) == 0 && v > 0)
			st->oom_killed = true;
	}
	fd = cg->v1_fd[JAIL__CG_PIDS];
	if (fd >= 0 && jail__cg_read_key(fd, "pids.events", "max", &v) == 0 && v > 0)
		st->pids_limit_hit = true;
	fd = cg->v1_fd[JAIL__CG_CPUACCT];
	if (fd >= 0 && jail__cg_read_u64(fd, "cpuacct.usage", &v) == 0)
		st->cpu_ms = (int64_t)(v / 1000000);
}

int jail__cg_v1_kill(struct jail_cgroup *cg)
{
	int ret = 0;
	for (int i = 0; i < JAIL__CG_NRES; i++) {
		if (cg->v1_fd[i] < 0)
			continue;
		int r = jail_cgroup_kill_procs(cg->v1_fd[i], JAIL__CG_KILL_TIMEOUT_MS);
		if (r < 0 && ret == 0)
			ret = r;
	}
	return ret;
}
