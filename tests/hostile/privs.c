/*
 * privs.c - privileges and the host's files, from inside.
 *   caps           every Cap* set zero, NoNewPrivs 1, Seccomp 2; capset, ambient raise and
 *                  securebits changes refused
 *   suid PATH      exec PATH (a setuid- or setgid-root copy of this program) with "idprobe":
 *                  its euid, egid and CapEff must equal ours (no_new_privs, nosuid, unmapped
 *                  owner)
 *   idprobe        print euid, egid and CapEff (what the setuid copy runs)
 *   sysrq          open /proc/sysrq-trigger for writing
 *   procsys        open machine-wide /proc/sys files for writing; read /proc/kcore, kmsg
 *   sys            write /sys files that act on the host (uevent_helper, power/state)
 *   hostfiles VAR  read /etc/shadow, list /root and /home, look for env var VAR in every
 *                  /proc/<pid>/environ and our own environment; print what is found
 *   hostname       print the jail's hostname, then sethostname() (own UTS ns: harmless)
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "hostile.h"

static void status_line(const char *key, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[512];
	out[0] = 0;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == ':') {
			char *p = line + strlen(key) + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			p[strcspn(p, "\n")] = 0;
			snprintf(out, len, "%s", p);
		}
	if (f)
		fclose(f);
}

static void try_open_write(const char *path)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ESCAPED("opened %s for writing", path);
		close(fd);
	} else {
		BLOCKED("open %s for writing: %s", path, strerror(errno));
	}
}

static void try_read(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		BLOCKED("open %s: %s", path, strerror(errno));
		return;
	}
	char buf[64];
	ssize_t n = read(fd, buf, sizeof buf);
	if (n > 0)
		ESCAPED("read %zd bytes of %s", n, path);
	else
		BLOCKED("read %s: %s", path, n < 0 ? strerror(errno) : "empty");
	close(fd);
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "caps";
	const char *v = h_variant;
	if (!strcmp(v, "caps")) {
		const char *keys[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
		char val[128];
		for (size_t i = 0; i < 5; i++) {
			status_line(keys[i], val, sizeof val);
			if (strcmp(val, "0000000000000000") != 0)
				ESCAPED("%s is %s, not zero", keys[i], val);
			else
				BLOCKED("%s zero", keys[i]);
		}
		status_line("NoNewPrivs", val, sizeof val);
		if (strcmp(val, "1"))
			ESCAPED("NoNewPrivs is '%s'", val);
		status_line("Seccomp", val, sizeof val);
		if (strcmp(val, "2"))
			ESCAPED("Seccomp is '%s'", val);
		struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
		struct __user_cap_data_struct d[2];
		memset(d, 0xff, sizeof d);
		EXPECT_FAIL(syscall(SYS_capset, &h, d), "capset(all)");
		EXPECT_FAIL(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0),
		            "ambient raise CAP_SYS_ADMIN");
		EXPECT_FAIL(prctl(PR_SET_SECUREBITS, 0, 0, 0, 0), "clear securebits");
		EXPECT_FAIL(prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0), "clear no_new_privs");
	} else if (!strcmp(v, "idprobe")) {
		char val[128];
		status_line("CapEff", val, sizeof val);
		printf("ID euid=%d egid=%d CapEff=%s\n", (int)geteuid(), (int)getegid(), val);
		return 0;
	} else if (!strcmp(v, "suid")) {
		const char *path = argc > 2 ? argv[2] : "";
		int pfd[2];
		if (pipe(pfd) < 0)
			return 1;
		pid_t p = fork();
		if (p == 0) {
			dup2(pfd[1], 1);
			execl(path, path, "idprobe", (char *)NULL);
			printf("ID exec-failed %s\n", strerror(errno));
			_exit(0);
		}
		close(pfd[1]);
		char buf[256] = "";
		ssize_t n = read(pfd[0], buf, sizeof buf - 1);
		buf[n > 0 ? n : 0] = 0;
		buf[strcspn(buf, "\n")] = 0;
		waitpid(p, NULL, 0);
		char mine[64];
		snprintf(mine, sizeof mine, "ID euid=%d egid=%d CapEff=0000000000000000", (int)geteuid(),
		         (int)getegid());
		INFO("we are euid %d; the setuid copy says '%s'", (int)geteuid(), buf);
		if (!strncmp(buf, "ID exec-failed", 14))
			BLOCKED("setuid binary could not run: %s", buf);
		else if (strcmp(buf, mine) != 0)
			ESCAPED("setuid exec changed privileges: '%s'", buf);
		else
			BLOCKED("setuid exec kept euid and empty capabilities");
	} else if (!strcmp(v, "sysrq")) {
		try_open_write("/proc/sysrq-trigger");
	} else if (!strcmp(v, "procsys")) {
		try_open_write("/proc/sys/kernel/core_pattern");
		try_open_write("/proc/sys/kernel/modprobe");
		try_open_write("/proc/sys/vm/drop_caches");
		try_open_write("/proc/sys/kernel/panic");
		try_open_write("/proc/sys/fs/binfmt_misc/register");
		try_read("/proc/kcore");
		try_read("/proc/kmsg");
	} else if (!strcmp(v, "sys")) {
		try_open_write("/sys/kernel/uevent_helper");
		try_open_write("/sys/power/state");
		try_open_write("/sys/fs/cgroup/cgroup.procs");
		try_open_write("/sys/kernel/mm/transparent_hugepage/enabled");
	} else if (!strcmp(v, "hostfiles")) {
		const char *var = argc > 2 ? argv[2] : "HOSTILE_TOKEN";
		try_read("/etc/shadow");
		try_read("/etc/gshadow");
		const char *dirs[] = {"/root", "/home", "/work", "/var/lib"};
		for (size_t i = 0; i < 4; i++) {
			DIR *d = opendir(dirs[i]);
			if (!d) {
				BLOCKED("opendir %s: %s", dirs[i], strerror(errno));
				continue;
			}
			struct dirent *de;
			int n = 0;
			while ((de = readdir(d)))
				if (de->d_name[0] != '.') {
					INFO("%s/%s", dirs[i], de->d_name);
					n++;
				}
			closedir(d);
			if (n)
				INFO("%s lists %d entries", dirs[i], n);
		}
		if (getenv(var))
			ESCAPED("own environment carries %s=%s", var, getenv(var));
		DIR *d = opendir("/proc");
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (de->d_name[0] < '0' || de->d_name[0] > '9')
				continue;
			char p[300], buf[8192];
			snprintf(p, sizeof p, "/proc/%s/environ", de->d_name);
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			ssize_t n = read(fd, buf, sizeof buf - 1);
			close(fd);
			for (ssize_t i = 0; i < n; i++)
				if (!buf[i])
					buf[i] = '\n';
			buf[n > 0 ? n : 0] = 0;
			if (strstr(buf, var))
				ESCAPED("%s in %s", var, p);
		}
		if (d)
			closedir(d);
		BLOCKED("host environment not visible");
	} else if (!strcmp(v, "hostname")) {
		struct utsname u;
		uname(&u);
		printf("NODENAME %s\n", u.nodename);
		long r = sethostname("hostile-renamed", 15);
		INFO("sethostname inside: %s", r == 0 ? "allowed (own UTS namespace)" : strerror(errno));
		BLOCKED("host hostname checked by the script");
	}
	return h_finish();
}
