/*
 * bench/forkceil.c - the most executions per second this host could give a design that forks
 * one child per execution from a zygote, before the child runs any code of its own.
 *
 *   forkceil [HEAP_MB [PAGES [WORKERS]]]      defaults: 93 300 <online CPUs>
 *
 * Each worker is a process holding HEAP_MB of written anonymous memory (collapsed into 2 MiB
 * pages where the kernel allows, as the engine's zygotes do) that, in a closed loop, clones a
 * child, the child writes one byte in each of PAGES distinct 4 KiB pages of that heap (the
 * copy-on-write faults an execution takes) and exits, and the worker waits for it. The rows
 * vary one thing at a time: no heap (a small process), the heap with a child that writes
 * nothing, the heap with PAGES written, and the same with the namespaces a zygote child takes
 * (pid, mount, ipc; needs root or CAP_SYS_ADMIN). The aggregate rate of all workers is printed.
 * The engine's child also attaches to a cgroup, mounts /tmp and /proc, installs seccomp and
 * runs the interpreter: a real execution costs more than the last row, so that row is a
 * ceiling for the design on this host, not a prediction.
 *
 * Not a test: nothing here fails because the machine is slow.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define ROUNDS 400

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long parse_arg(const char *s, const char *what, long lo, long hi)
{
	char *end = NULL;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "forkceil: %s must be a whole number from %ld to %ld, not '%s'\n",
		        what, lo, hi, s);
		exit(2);
	}
	return v;
}

/* One worker: ROUNDS clones; exits 0, or 1 when a clone or wait failed. */
static int worker(size_t heap_mb, long pages, unsigned long ns_flags)
{
	char *heap = NULL;
	size_t len = heap_mb << 20;
	if (len > 0) {
		heap = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (heap == MAP_FAILED) {
			perror("forkceil: mmap");
			return 1;
		}
		(void)madvise(heap, len, MADV_HUGEPAGE); /* best effort, as in the engine */
		memset(heap, 1, len);
		(void)madvise(heap, len, MADV_COLLAPSE);
	}
	for (int i = 0; i < ROUNDS; i++) {
		pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD | ns_flags, NULL, NULL, NULL, NULL);
		if (pid < 0) {
			perror("forkceil: clone");
			return 1;
		}
		if (pid == 0) {
			/* Consecutive pages from the heap's start: the fewest 2 MiB blocks split
			   for that many faults, the kindest case (a ceiling should be kind). */
			size_t npages = len / 4096;
			for (long k = 0; k < pages && (size_t)k < npages; k++)
				heap[(size_t)k * 4096]++;
			_exit(0);
		}
		int status = 0;
		while (waitpid(pid, &status, 0) < 0)
			if (errno != EINTR) {
				perror("forkceil: waitpid");
				return 1;
			}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "forkceil: a child ended with status %#x\n", status);
			return 1;
		}
	}
	return 0;
}

/* Runs `workers` workers at once; prints and returns the aggregate clones per second. */
static double row(const char *label, size_t heap_mb, long pages, unsigned long ns_flags,
                  long workers)
{
	pid_t pids[64];
	double t0 = now_s();
	for (long w = 0; w < workers; w++) {
		pids[w] = fork();
		if (pids[w] < 0) {
			perror("forkceil: fork");
			exit(1);
		}
		if (pids[w] == 0)
			_exit(worker(heap_mb, pages, ns_flags));
	}
	int failed = 0;
	for (long w = 0; w < workers; w++) {
		int status = 0;
		while (waitpid(pids[w], &status, 0) < 0)
			if (errno != EINTR) {
				perror("forkceil: waitpid");
				exit(1);
			}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	}
	double secs = now_s() - t0;
	if (failed) {
		printf("%-58s failed (see above)\n", label);
		return 0;
	}
	/* The workers' set-up (writing the heap) is inside the window: it is small next to
	   ROUNDS clones, and counting it makes the rate conservative. */
	double rate = (double)(workers * ROUNDS) / secs;
	printf("%-58s %8.0f /s  (%.2f ms per child per worker)\n", label, rate,
	       secs * 1000.0 / ROUNDS);
	return rate;
}

int main(int argc, char **argv)
{
	long heap_mb = argc > 1 ? parse_arg(argv[1], "HEAP_MB", 0, 65536) : 93;
	long pages = argc > 2 ? parse_arg(argv[2], "PAGES", 0, 1 << 20) : 300;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	long workers = argc > 3 ? parse_arg(argv[3], "WORKERS", 1, 64) : (ncpu > 0 ? ncpu : 1);
	if (workers > 64)
		workers = 64;
	char label[128];
	printf("# clones per second, %ld workers in parallel, %d children each\n", workers, ROUNDS);
	row("small process, child exits at once", 0, 0, 0, workers);
	snprintf(label, sizeof(label), "%ld MiB heap, child writes nothing", heap_mb);
	row(label, (size_t)heap_mb, 0, 0, workers);
	snprintf(label, sizeof(label), "%ld MiB heap, child writes %ld pages", heap_mb, pages);
	row(label, (size_t)heap_mb, pages, 0, workers);
	snprintf(label, sizeof(label), "%ld MiB heap, %ld pages, new pid+mount+ipc namespaces",
	         heap_mb, pages);
	row(label, (size_t)heap_mb, pages, CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC, workers);
	return 0;
}
