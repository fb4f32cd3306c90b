/*
 * jail-caps.c - the in-process hardening steps: rlimits and the privilege drop.
 *
 * Both are written allocation-free with raw syscalls (not libcap) because jail_run's child
 * runs them right after clone() in a possibly multi-threaded supervisor, where malloc locks
 * may be held by threads that do not exist in the child.
 *
 * Order matters in jail_drop_privileges: securebits and the bounding set need CAP_SETPCAP,
 * so they go first; capset() last removes the capability that allowed them.
 */
#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail/jail-internal.h"

static int set_rlimit(int res, rlim_t soft, rlim_t hard)
{
	struct rlimit rl = {.rlim_cur = soft, .rlim_max = hard};
	if (setrlimit(res, &rl) == 0)
		return 0;
	if (errno != EPERM)
		return -errno;
	/* Raising the hard limit needs CAP_SYS_RESOURCE: lowering to at most the current
	   hard limit always works, which is what a jail wants anyway. */
	struct rlimit cur;
	if (getrlimit(res, &cur) < 0)
		return -errno;
	if (rl.rlim_max > cur.rlim_max)
		rl.rlim_max = cur.rlim_max;
	if (rl.rlim_cur > rl.rlim_max)
		rl.rlim_cur = rl.rlim_max;
	return setrlimit(res, &rl) == 0 ? 0 : -errno;
}

int jail__apply_rlimits_raw(const struct jail_limits *l, const char **step)
{
	int r;
	*step = "rlimit core";
	if ((r = set_rlimit(RLIMIT_CORE, 0, 0)) < 0)
		return r;
	if (l->fsize_bytes) {
		*step = "rlimit fsize";
		if ((r = set_rlimit(RLIMIT_FSIZE, l->fsize_bytes, l->fsize_bytes)) < 0)
			return r;
	}
	if (l->nofile) {
		*step = "rlimit nofile";
		if ((r = set_rlimit(RLIMIT_NOFILE, l->nofile, l->nofile)) < 0)
			return r;
	}
	if (l->stack_bytes) {
		*step = "rlimit stack";
		if ((r = set_rlimit(RLIMIT_STACK, l->stack_bytes, l->stack_bytes)) < 0)
			return r;
	}
	if (l->cpu_ms) {
		/* SIGXCPU at the soft limit, SIGKILL one second later. Per process only: the
		   supervisor also watches the cgroup's CPU time, which counts every process. */
		rlim_t s = (rlim_t)((l->cpu_ms + 999) / 1000);
		*step = "rlimit cpu";
		if ((r = set_rlimit(RLIMIT_CPU, s, s + 1)) < 0)
			return r;
	}
	return 0;
}

int jail_apply_rlimits(const struct jail_limits *limits, struct st_error **err)
{
	const char *step = "rlimits";
	int r = jail__apply_rlimits_raw(limits, &step);
	if (r < 0)
		return st_error_make(err, -r, "%s", step);
	return 0;
}

static bool has_setpcap(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) < 0)
		return false;
	return (d[0].effective & (1u << CAP_SETPCAP)) != 0;
}

int jail__lock_bounding_raw(const char **step)
{
	if (has_setpcap()) {
		*step = "lock securebits";
		unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
		                     SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
		                     SECBIT_NO_CAP_AMBIENT_RAISE |
		                     SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
		if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0)
			return -errno;
		*step = "drop bounding set";
		for (int cap = 0; cap < 64; cap++) {
			if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
				if (errno == EINVAL)
					break; /* past the last capability this kernel knows */
				return -errno;
			}
		}
	}
	return 0;
}

int jail__drop_privileges_raw(bool bounding_done, const char **step)
{
	int r;
	if (!bounding_done && (r = jail__lock_bounding_raw(step)) < 0)
		return r;
	*step = "clear ambient capabilities";
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -errno;
	*step = "clear capabilities";
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capset, &h, d) < 0)
		return -errno;
	*step = "set no_new_privs";
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	return 0;
}

int jail_drop_privileges(struct st_error **err)
{
	const char *step = "drop privileges";
	int r = jail__drop_privileges_raw(false, &step);
	if (r < 0)
		return st_error_make(err, -r, "%s", step);
	return 0;
}
