/*
 * cgroup.c - cgroup v1 release_agent escape (CVE-2022-0492).
 *   mount-v1        mount a cgroup v1 hierarchy (memory, rdma, a named one) and cgroup2
 *   release-agent   find any cgroupfs in /proc/self/mountinfo or under /sys/fs/cgroup and
 *                   try to write release_agent / notify_on_release / cgroup.procs there
 *   view            /proc/self/cgroup must show the jail's cgroup namespace root ("/")
 */
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "hostile.h"

static void try_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		BLOCKED("open %s for writing: %s", path, strerror(errno));
		return;
	}
	ssize_t n = write(fd, val, strlen(val));
	if (n >= 0)
		ESCAPED("wrote %s", path);
	else
		BLOCKED("write %s: %s", path, strerror(errno));
	close(fd);
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "mount-v1";
	if (!strcmp(h_variant, "mount-v1")) {
		mkdir("/tmp/cg", 0700);
		const char *opts[] = {"memory", "rdma", "none,name=hostile", "pids"};
		for (size_t i = 0; i < 4; i++) {
			char what[80];
			snprintf(what, sizeof what, "mount cgroup -o %s", opts[i]);
			long r = mount("cgroup", "/tmp/cg", "cgroup", 0, opts[i]);
			EXPECT_FAIL(r, what);
			if (r == 0) {
				try_write("/tmp/cg/release_agent", "/tmp/pwn\n");
				umount2("/tmp/cg", MNT_DETACH);
			}
		}
		EXPECT_FAIL(mount("cgroup2", "/tmp/cg", "cgroup2", 0, NULL), "mount cgroup2");
	} else if (!strcmp(h_variant, "release-agent")) {
		FILE *f = fopen("/proc/self/mountinfo", "re");
		char line[4096];
		int found = 0;
		while (f && fgets(line, sizeof line, f)) {
			char *sep = strstr(line, " - ");
			if (!sep || (strncmp(sep + 3, "cgroup ", 7) && strncmp(sep + 3, "cgroup2 ", 8)))
				continue;
			found++;
			char mp[1024];
			if (sscanf(line, "%*s %*s %*s %*s %1023s", mp) != 1)
				continue;
			INFO("cgroupfs visible at %s", mp);
			char p[1100];
			snprintf(p, sizeof p, "%s/release_agent", mp);
			try_write(p, "/tmp/pwn\n");
			snprintf(p, sizeof p, "%s/notify_on_release", mp);
			try_write(p, "1\n");
			snprintf(p, sizeof p, "%s/cgroup.procs", mp);
			try_write(p, "1\n");
		}
		if (f)
			fclose(f);
		const char *guesses[] = {"/sys/fs/cgroup/release_agent",
		                         "/sys/fs/cgroup/memory/release_agent",
		                         "/sys/fs/cgroup/rdma/release_agent"};
		for (size_t i = 0; i < 3; i++)
			if (access(guesses[i], F_OK) == 0) {
				found++;
				try_write(guesses[i], "/tmp/pwn\n");
			}
		if (!found)
			BLOCKED("no cgroupfs visible inside");
	} else if (!strcmp(h_variant, "view")) {
		FILE *f = fopen("/proc/self/cgroup", "re");
		char line[1024];
		while (f && fgets(line, sizeof line, f)) {
			line[strcspn(line, "\n")] = 0;
			char *path = strrchr(line, ':');
			INFO("cgroup line %s", line);
			if (path && strcmp(path, ":/") != 0)
				ESCAPED("cgroup path outside the namespace root visible: %s", line);
		}
		if (f)
			fclose(f);
		if (!h_escaped)
			BLOCKED("own cgroup namespace: every entry is '/'");
	}
	return h_finish();
}
