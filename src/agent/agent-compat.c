/*
 * agent-compat.c - stockade-compat.so, preloaded (through the sandbox's /etc/ld.so.preload)
 * into every dynamically linked program of a gVisor sandbox, to paper over one system call
 * that gVisor releases such as Debian 12's runsc refuse and the host's programs use.
 *
 * statx(2) with AT_NO_AUTOMOUNT: those runsc releases answer EINVAL (and fstatat(2) with the
 * same flag too), and coreutils passes it on every call, so `ls -l`, `stat` and `cp -a` fail
 * on every file of the sandbox. The flag only means "do not trigger an automount", and there
 * are no automount points in a sandbox, so a call refused for it is repeated without it: the
 * answer is the one the flag asked for. A call the kernel accepts is never repeated, so on a
 * kernel that knows the flag nothing changes. (glibc's fstatat(2) does not pass the flag on its
 * own, so statx is the one entry point to cover.)
 *
 * It must stay tiny and dependency-free: it is mapped into every process of the sandbox.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AT_NO_AUTOMOUNT
#define AT_NO_AUTOMOUNT 0x800
#endif

/* The glibc wrapper's signature; struct statx comes from <sys/stat.h> (glibc >= 2.28). */
int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf)
{
	long r = syscall(SYS_statx, dirfd, path, flags, mask, buf);
	if (r < 0 && errno == EINVAL && (flags & AT_NO_AUTOMOUNT))
		r = syscall(SYS_statx, dirfd, path, flags & ~AT_NO_AUTOMOUNT, mask, buf);
	return (int)r;
}
