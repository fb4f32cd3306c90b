/*
 * dos.c - resource abuse and attempts to outlive the jail.
 *   forkbomb            fork until refused, every child paused; exit after 2 s
 *   balloon             allocate and touch memory in 16 MiB steps, forever
 *   tmpfill DIR         write DIR/fill until an error; print bytes and errno
 *   fsize DIR           one file past RLIMIT_FSIZE (SIGXFSZ ignored to see EFBIG)
 *   output              write to stdout forever
 *   ignore-term TAG     ignore every catchable signal, fork a helper, wait forever
 *   vfork TAG           vfork+exec and clone(CLONE_VM) children that sleep; parent exits 0
 *   double-fork TAG     fork, setsid, fork again; the grandchild sleeps; parent exits 0
 *   stopped TAG         a child that SIGSTOPs itself; parent exits 0
 *   sleeper TAG         sleep 60 s ignoring SIGTERM/SIGHUP/SIGINT (used by the others)
 *   spin                burn CPU forever
 *   sleep               sleep 100 s
 * TAG is a host-unique word in the children's argv so the script can look for survivors.
 */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "hostile.h"

static char *self_path = "/proc/self/exe";

static void exec_sleeper(const char *tag)
{
	execl("/proc/self/exe", "dos", "sleeper", tag, (char *)NULL);
	execl(self_path, "dos", "sleeper", tag, (char *)NULL);
	_exit(127);
}

static int clone_child(void *arg)
{
	exec_sleeper((const char *)arg);
	return 0;
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "sleep";
	self_path = argv[0];
	const char *v = h_variant, *arg = argc > 2 ? argv[2] : "/tmp";
	if (!strcmp(v, "forkbomb")) {
		long made = 0, refused = 0;
		time_t t0 = time(NULL);
		while (time(NULL) - t0 < 2) {
			pid_t p = fork();
			if (p == 0) {
				for (;;)
					pause();
			}
			if (p < 0) {
				refused++;
				usleep(1000);
			} else {
				made++;
			}
		}
		INFO("forked %ld, refused %ld", made, refused);
		if (refused)
			BLOCKED("fork refused after %ld children", made);
		else
			ESCAPED("no fork refused in 2 s (%ld children)", made);
	} else if (!strcmp(v, "balloon")) {
		size_t total = 0;
		for (;;) {
			char *p = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE,
			               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED) {
				BLOCKED("mmap refused after %zu MiB", total >> 20);
				break;
			}
			memset(p, 1, 16 << 20);
			total += 16 << 20;
			if (total > (8UL << 30)) {
				ESCAPED("touched 8 GiB");
				break;
			}
		}
	} else if (!strcmp(v, "tmpfill") || !strcmp(v, "fsize")) {
		signal(SIGXFSZ, SIG_IGN);
		char p[512];
		snprintf(p, sizeof p, "%s/fill", arg);
		int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			BLOCKED("create %s: %s", p, strerror(errno));
			return h_finish();
		}
		static char block[1 << 20];
		memset(block, 'x', sizeof block);
		unsigned long long total = 0;
		for (;;) {
			ssize_t n = write(fd, block, sizeof block);
			if (n < 0) {
				printf("FILL bytes=%llu errno=%s\n", total, strerrorname_np(errno));
				BLOCKED("stopped at %llu MiB: %s", total >> 20, strerror(errno));
				break;
			}
			if (n == 0)
				break;
			total += (unsigned long long)n;
			if (total > (4ULL << 30)) {
				ESCAPED("wrote 4 GiB");
				break;
			}
		}
		close(fd);
	} else if (!strcmp(v, "output")) {
		static char block[65536];
		memset(block, 'o', sizeof block);
		block[sizeof block - 1] = '\n';
		for (unsigned long long total = 0; total < (1ULL << 30); total += sizeof block)
			if (write(1, block, sizeof block) < 0)
				break;
		fprintf(stderr, "wrote 1 GiB of output without being stopped\n");
		return 42;
	} else if (!strcmp(v, "ignore-term")) {
		for (int s = 1; s < 65; s++)
			if (s != SIGKILL && s != SIGSTOP)
				signal(s, SIG_IGN);
		if (fork() == 0)
			exec_sleeper(arg);
		printf("READY\n");
		fflush(stdout);
		for (;;)
			pause();
	} else if (!strcmp(v, "vfork")) {
		for (int i = 0; i < 3; i++) {
			pid_t p = vfork();
			if (p == 0)
				exec_sleeper(arg);
		}
		static char stack[3][65536];
		for (int i = 0; i < 3; i++)
			clone(clone_child, stack[i] + sizeof stack[i], CLONE_VM | CLONE_VFORK | SIGCHLD,
			      (void *)arg);
		printf("SPAWNED\n");
		BLOCKED("children left behind (host check decides)");
	} else if (!strcmp(v, "double-fork")) {
		pid_t p = fork();
		if (p == 0) {
			setsid();
			if (fork() == 0) {
				setsid();
				exec_sleeper(arg);
			}
			_exit(0);
		}
		waitpid(p, NULL, 0);
		BLOCKED("grandchild detached (host check decides)");
	} else if (!strcmp(v, "stopped")) {
		pid_t p = fork();
		if (p == 0) {
			raise(SIGSTOP);
			exec_sleeper(arg);
		}
		usleep(100000);
		BLOCKED("stopped child left behind (host check decides)");
	} else if (!strcmp(v, "sleeper")) {
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		sleep(60);
		return 0;
	} else if (!strcmp(v, "spin")) {
		volatile unsigned long x = 0;
		for (;;)
			x++;
	} else if (!strcmp(v, "sleep")) {
		sleep(100);
		ESCAPED("slept 100 s");
	}
	return h_finish();
}
