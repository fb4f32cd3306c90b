/*
 * jail-cgroup-v2.c - the cgroup v2 backend: memory.max (+ memory.swap.max = 0), pids.max,
 * cpu.max; stats from memory.peak, memory.events, pids.events and cpu.stat; cgroup.kill.
 * Only resources whose controller is enabled in the jail's cgroup (cg->v2_ctrl) are touched;
 * cpu.stat's usage_usec is always there, controller or not.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "jail/jail-internal.h"

static int wr(struct jail_cgroup *cg, const char *file, const char *v, struct st_error **err)
{
	int r = jail__cg_write(cg->v2_fd, file, v);
	if (r < 0)
		return st_error_make(err, -r, "cgroup %s", file);
	return 0;
}

int jail__cg_v2_apply(struct jail_cgroup *cg, const struct jail_limits *l, struct st_error **err)
{
	char v[64];
	int r;
	if (cg->v2_fd < 0)
		return 0;
	if ((cg->v2_ctrl & (1u << JAIL__CG_MEMORY)) && l->memory_bytes) {
		snprintf(v, sizeof(v), "%" PRIu64, l->memory_bytes);
		if ((r = wr(cg, "memory.max", v, err)) < 0)
			return r;
		r = jail__cg_write(cg->v2_fd, "memory.swap.max", "0");
		if (r == -ENOENT)
			jail__cg_warn(cg, "swap not limited: 'memory.swap.max' is missing "
			                  "(kernel without swap accounting)");
		else if (r < 0)
			return st_error_make(err, -r, "cgroup memory.swap.max");
	}
	if ((cg->v2_ctrl & (1u << JAIL__CG_PIDS)) && l->pids) {
		snprintf(v, sizeof(v), "%" PRIu64, l->pids);
		if ((r = wr(cg, "pids.max", v, err)) < 0)
			return r;
	}
	if ((cg->v2_ctrl & (1u << JAIL__CG_CPU)) && l->cpus > 0) {
		uint64_t quota = (uint64_t)(l->cpus * 100000.0);
		if (quota < 1000)
			quota = 1000;
		snprintf(v, sizeof(v), "%" PRIu64 " 100000", quota);
		if ((r = wr(cg, "cpu.max", v, err)) < 0)
			return r;
	}
	return 0;
}

void jail__cg_v2_stats(struct jail_cgroup *cg, struct jail_cgroup_stats *st)
{
	uint64_t v;
	if (cg->v2_fd < 0)
		return;
	if (jail__cg_read_key(cg->v2_fd, "cpu.stat", "usage_usec", &v) == 0)
		st->cpu_ms = (int64_t)(v / 1000);
	if (cg->v2_ctrl & (1u << JAIL__CG_MEMORY)) {
		if (jail__cg_read_u64(cg->v2_fd, "memory.peak", &v) == 0)
			st->max_rss_kb = (int64_t)(v / 1024);
		if (jail__cg_read_key(cg->v2_fd, "memory.events", "oom_kill", &v) == 0 && v > 0)
			st->oom_killed = true;
	}
	if ((cg->v2_ctrl & (1u << JAIL__CG_PIDS)) &&
	    jail__cg_read_key(cg->v2_fd, "pids.events", "max", &v) == 0 && v > 0)
		st->pids_limit_hit = true;
}

int jail__cg_v2_kill(struct jail_cgroup *cg)
{
	/* cgroup.kill (Linux 5.14) kills atomically, forks in flight included; older kernels
	   fall back to the kill loop alone. */
	int r = jail__cg_write(cg->v2_fd, "cgroup.kill", "1");
	if (r < 0 && r != -ENOENT)
		return r;
	return jail_cgroup_kill_procs(cg->v2_fd, JAIL__CG_KILL_TIMEOUT_MS);
}
