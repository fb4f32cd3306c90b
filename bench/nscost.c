/*
 * nscost.c - what each namespace costs on this host: N times clone3 with one namespace flag (or
 * none, or all the jail's six), the child execs PROGRAM (or exits at once without one), the
 * parent waits; median and p90 per flag set, in one run. No uid map is written, so the child
 * runs as the overflow uid in a new user namespace: enough for `true`.
 *
 *   nscost N [PROGRAM]
 */
#define _GNU_SOURCE
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 2 || atoi(argv[1]) <= 0) {
		fprintf(stderr, "usage: nscost N [PROGRAM]\n");
		return 2;
	}
	int n = atoi(argv[1]);
	const char *prog = argc > 2 ? argv[2] : NULL;
	static const struct {
		const char *name;
		uint64_t flags;
	} sets[] = {
	    {"none", 0},
	    {"user", CLONE_NEWUSER},
	    {"mount", CLONE_NEWNS},
	    {"pid", CLONE_NEWPID},
	    {"net", CLONE_NEWNET},
	    {"ipc", CLONE_NEWIPC},
	    {"uts", CLONE_NEWUTS},
	    {"cgroup", CLONE_NEWCGROUP},
	    {"jail's six", CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
	                       CLONE_NEWIPC | CLONE_NEWUTS},
	    {"six without net", CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC |
	                            CLONE_NEWUTS},
	};
	double *v = calloc((size_t)n, sizeof(*v));
	if (v == NULL)
		return 1;
	printf("%-16s %10s %10s   (%d runs each, child %s)\n", "namespaces", "median ms", "p90 ms",
	       n, prog ? prog : "exits at once");
	for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
		int done = 0;
		for (int k = 0; k < n; k++) {
			struct clone_args ca;
			memset(&ca, 0, sizeof(ca));
			ca.flags = sets[s].flags;
			ca.exit_signal = SIGCHLD;
			double t0 = now_ms();
			pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
			if (pid == 0) {
				if (prog != NULL) {
					char *const a[] = {(char *)prog, NULL};
					execve(prog, a, environ);
				}
				_exit(0);
			}
			if (pid < 0) {
				perror(sets[s].name);
				break;
			}
			int st;
			if (waitpid(pid, &st, 0) < 0) {
				perror("waitpid");
				break;
			}
			v[done++] = now_ms() - t0;
		}
		if (done == 0)
			continue;
		qsort(v, (size_t)done, sizeof(*v), cmp_double);
		printf("%-16s %10.3f %10.3f\n", sets[s].name, v[done / 2], v[done * 9 / 10]);
	}
	free(v);
	return 0;
}
