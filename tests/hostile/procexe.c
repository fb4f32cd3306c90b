/*
 * procexe.c - overwrite the supervisor through /proc/<pid>/exe (CVE-2019-5736).
 *   self-exe     open /proc/self/exe for writing (and the O_PATH reopen trick)
 *   parent-exe   the same on the parent and on pid 1 (the jail's init, maybe the supervisor)
 *   scan-pids    every pid visible in /proc: open exe for writing; report any process whose
 *                cmdline contains the tag given reversed in argv[2] (reversed, so that the
 *                attack's own command line does not carry it)
 *   exe-race     hold /proc/1/exe with O_PATH and keep reopening it for writing for a second,
 *                the pattern that wins once the supervisor binary stops running
 */
#include <dirent.h>
#include <fcntl.h>
#include <time.h>

#include "hostile.h"

static void try_write_exe(const char *path)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ESCAPED("opened %s for writing", path);
		close(fd);
		return;
	}
	int e = errno;
	int p = open(path, O_PATH | O_CLOEXEC);
	if (p < 0) {
		BLOCKED("open %s for writing: %s; O_PATH: %s", path, strerror(e), strerror(errno));
		return;
	}
	char via[64];
	snprintf(via, sizeof via, "/proc/self/fd/%d", p);
	fd = open(via, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ESCAPED("reopened %s for writing through %s", path, via);
		close(fd);
	} else {
		BLOCKED("open %s for writing: %s; reopen via O_PATH: %s", path, strerror(e),
		        strerror(errno));
	}
	close(p);
}

static int read_cmdline(const char *pid, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%s/cmdline", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == 0)
			buf[i] = ' ';
	buf[n] = 0;
	return 0;
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "self-exe";
	char tag_buf[256] = "";
	const char *tag = NULL;
	if (argc > 2) {
		size_t n = strlen(argv[2]);
		if (n >= sizeof tag_buf)
			n = sizeof tag_buf - 1;
		for (size_t i = 0; i < n; i++)
			tag_buf[i] = argv[2][n - 1 - i];
		tag_buf[n] = 0;
		tag = tag_buf;
	}
	if (!strcmp(h_variant, "self-exe")) {
		try_write_exe("/proc/self/exe");
	} else if (!strcmp(h_variant, "parent-exe")) {
		char p[64];
		snprintf(p, sizeof p, "/proc/%d/exe", (int)getppid());
		INFO("ppid %d", (int)getppid());
		if (getppid() > 0)
			try_write_exe(p);
		try_write_exe("/proc/1/exe");
	} else if (!strcmp(h_variant, "scan-pids")) {
		DIR *d = opendir("/proc");
		if (!d) {
			BLOCKED("opendir /proc: %s", strerror(errno));
			return h_finish();
		}
		int n = 0;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] < '0' || de->d_name[0] > '9')
				continue;
			n++;
			char path[300], cmd[4096];
			snprintf(path, sizeof path, "/proc/%s/exe", de->d_name);
			char target[4096] = "";
			ssize_t l = readlink(path, target, sizeof target - 1);
			if (l > 0)
				target[l] = 0;
			if (read_cmdline(de->d_name, cmd, sizeof cmd) == 0) {
				INFO("pid %s exe=%s cmd=%.120s", de->d_name, target, cmd);
				if (tag && strstr(cmd, tag))
					ESCAPED("host process visible: pid %s %s", de->d_name, cmd);
			}
			int fd = open(path, O_WRONLY | O_CLOEXEC);
			if (fd >= 0) {
				ESCAPED("opened %s (%s) for writing", path, target);
				close(fd);
			}
		}
		closedir(d);
		BLOCKED("%d pids visible, none writable through exe, no host tag", n);
	} else if (!strcmp(h_variant, "exe-race")) {
		int p = open("/proc/1/exe", O_PATH | O_CLOEXEC);
		if (p < 0) {
			BLOCKED("O_PATH /proc/1/exe: %s", strerror(errno));
			return h_finish();
		}
		char via[64];
		snprintf(via, sizeof via, "/proc/self/fd/%d", p);
		int last = 0;
		struct timespec t0, t;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do {
			int fd = open(via, O_WRONLY | O_CLOEXEC);
			if (fd >= 0) {
				ESCAPED("reopened pid 1's exe for writing");
				close(fd);
				break;
			}
			last = errno;
			clock_gettime(CLOCK_MONOTONIC, &t);
		} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 1000);
		if (!h_escaped)
			BLOCKED("1 s of reopen attempts: %s", strerror(last));
	}
	return h_finish();
}
