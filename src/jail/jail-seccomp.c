/*
 * jail-seccomp.c - loading the seccomp policies (see jail-seccomp-policy.c for what they are).
 *
 * Every policy's program, with and without the user-notify action, is compiled by libseccomp
 * at build time (tools/jail-seccomp-gen.c -> jail__seccomp_prebuilt) and used from there:
 * a jail start does not build a filter. Only a policy with extra allowed syscalls is compiled
 * at run time (jail__seccomp_build), and the unit tests check that the two give the same
 * program. Those run-time programs are owned by the caller; the prebuilt ones are immutable,
 * so jail_run stays thread-safe without a cache or a lock.
 */
#include <errno.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail/jail-internal.h"

static int policy_index(const char *policy)
{
	if (policy == NULL)
		return 0;
	const char *const *names = jail_seccomp_policies();
	for (int i = 0; names[i] && i < JAIL__SECCOMP_NPOLICIES; i++)
		if (strcmp(policy, names[i]) == 0)
			return i;
	return -1;
}

int jail__seccomp_compile(const char *policy, const char *const *extra, bool notify,
                          const struct jail__bpf **out, bool *owned, struct st_error **err)
{
	int idx = policy_index(policy);
	if ((extra == NULL || extra[0] == NULL) && idx >= 0 &&
	    jail__seccomp_prebuilt[idx][notify].len > 0) {
		*out = &jail__seccomp_prebuilt[idx][notify];
		*owned = false;
		return 0;
	}
	struct jail__bpf *b = NULL;
	int r = jail__seccomp_build(policy, extra, notify, &b, err);
	if (r < 0)
		return r;
	*out = b;
	*owned = true;
	return 0;
}

int jail__seccomp_install(const struct jail__bpf *bpf, bool notify, unsigned extra_flags)
{
	/* The kernel only reads the program; sock_fprog just lacks the const. */
	struct sock_fprog prog = {.len = bpf->len,
	                          .filter = (struct sock_filter *)(uintptr_t)bpf->insns};
	unsigned flags = extra_flags | (notify ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0);
	long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
	if (r < 0)
		return -errno;
	return notify ? (int)r : 0;
}

int jail_seccomp_load_ex(const char *policy, const char *const *extra_allow, int *notify_fd,
                         struct st_error **err)
{
	const struct jail__bpf *bpf;
	bool owned;
	bool notify = notify_fd != NULL;
	int r = jail__seccomp_compile(policy, extra_allow, notify, &bpf, &owned, err);
	if (r < 0)
		return r;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		r = st_error_make(err, errno, "prctl(PR_SET_NO_NEW_PRIVS)");
		goto out;
	}
	/* TSYNC so every thread of an already-threaded process gets the filter. TSYNC and
	   NEW_LISTENER together need TSYNC_ESRCH. */
	unsigned flags = SECCOMP_FILTER_FLAG_TSYNC | (notify ? SECCOMP_FILTER_FLAG_TSYNC_ESRCH : 0);
	r = jail__seccomp_install(bpf, notify, flags);
	if (r < 0) {
		r = st_error_make(err, -r, "cannot load seccomp policy '%s'",
		                  policy ? policy : "default");
		goto out;
	}
	if (notify)
		*notify_fd = r;
	r = 0;
out:
	if (owned)
		jail__bpf_free(bpf);
	return r;
}

int jail_seccomp_load(const char *policy, struct st_error **err)
{
	return jail_seccomp_load_ex(policy, NULL, NULL, err);
}

int jail_seccomp_notify_handle(int notify_fd, int *syscall_nr, struct st_error **err)
{
	struct seccomp_notif req;
	memset(&req, 0, sizeof(req));
	if (ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
		return st_error_make(err, errno, "seccomp notification");
	*syscall_nr = req.data.nr;
	/* No answer: the trapped thread stays blocked in the refused syscall until the caller has
	   killed the jail. Answering first (even with an error) let the program run on and print
	   before the kill landed. */
	return 0;
}
