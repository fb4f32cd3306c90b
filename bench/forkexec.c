/*
 * forkexec.c - start-up timer for bench/jail-start.sh.
 *
 *   forkexec N LABEL CMD [ARGS] [--- LABEL CMD [ARGS]]...
 *
 * Runs every command N times, round-robin (one of each per round, so drift in machine load
 * touches all of them alike), each with stdin/stdout/stderr on /dev/null, and prints one line
 * per run: "LABEL <microseconds> <exit status>". The time is from just before vfork() to the
 * return of waitpid(), i.e. what a caller of the command waits. Built by the bench script.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct cmd {
	const char *label;
	char **argv;
};

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: forkexec N LABEL CMD [ARGS] [--- LABEL CMD [ARGS]]...\n");
		return 2;
	}
	long n = strtol(argv[1], NULL, 10);
	struct cmd cmds[16];
	int nc = 0;
	for (int i = 2; i < argc && nc < 16;) {
		cmds[nc].label = argv[i++];
		cmds[nc].argv = &argv[i];
		while (i < argc && strcmp(argv[i], "---") != 0)
			i++;
		if (i < argc)
			argv[i++] = NULL;
		nc++;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	for (long r = 0; r < n; r++)
		for (int c = 0; c < nc; c++) {
			struct timespec t0, t1;
			pid_t pid;
			int st = 0;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			if (posix_spawn(&pid, cmds[c].argv[0], &fa, NULL, cmds[c].argv, environ) != 0) {
				perror(cmds[c].argv[0]);
				return 1;
			}
			waitpid(pid, &st, 0);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			long us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
			printf("%s %ld %d\n", cmds[c].label, us, st);
		}
	return 0;
}
