/*
 * unit-main.c - runs every TEST of one test binary, each in a forked child, and prints TAP.
 * `test-foo NAME...` runs only the named tests. Exit status: 0 when all passed.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#define MAX_TESTS 512
#define SKIP_STATUS 77

static struct {
	const char *name;
	void (*fn)(void);
} tests[MAX_TESTS];
static int n_tests;
static const char *skip_reason_file;

void unit_register(const char *name, void (*fn)(void))
{
	if (n_tests < MAX_TESTS) {
		tests[n_tests].name = name;
		tests[n_tests].fn = fn;
		n_tests++;
	}
}

void unit_skip(const char *why)
{
	if (skip_reason_file) {
		FILE *f = fopen(skip_reason_file, "w");
		if (f) {
			fputs(why, f);
			fclose(f);
		}
	}
	exit(SKIP_STATUS);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) < 0 && errno != ENOENT) {
		fprintf(stderr, "unit_rm_rf: cannot remove '%s': %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int unit_rm_rf(const char *path)
{
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT) {
		fprintf(stderr, "unit_rm_rf: cannot remove '%s': %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Test binaries live in <build>/tests/, the language runtimes' object in <build>/ (the
 * executable looks next to itself): point the engine at it unless the caller already did.
 */
static void find_lang_lib(void)
{
	const char *set = getenv("STOCKADE_LANG_LIB");
	if (set != NULL && *set != '\0')
		return;
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash == NULL)
		return;
	*slash = '\0';
	char path[4200];
	snprintf(path, sizeof(path), "%s/../libstockade-lang.so", exe);
	setenv("STOCKADE_LANG_LIB", path, 1);
}

static int selected(const char *name, int argc, char **argv)
{
	if (argc < 2)
		return 1;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	find_lang_lib();
	char reason_path[] = "/tmp/unit-skip-XXXXXX";
	int rfd = mkstemp(reason_path);
	if (rfd >= 0) {
		close(rfd);
		skip_reason_file = reason_path;
	}
	int failed = 0, num = 0;
	for (int i = 0; i < n_tests; i++) {
		if (!selected(tests[i].name, argc, argv))
			continue;
		num++;
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			tests[i].fn();
			fflush(NULL);
			_exit(0);
		}
		int st = 0;
		while (waitpid(pid, &st, 0) < 0)
			;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			printf("ok %d - %s:%s\n", num, prog, tests[i].name);
		} else if (WIFEXITED(st) && WEXITSTATUS(st) == SKIP_STATUS) {
			char why[256] = "";
			FILE *f = fopen(reason_path, "r");
			if (f) {
				if (!fgets(why, sizeof(why), f))
					why[0] = '\0';
				fclose(f);
			}
			printf("ok %d - %s:%s # SKIP %s\n", num, prog, tests[i].name, why);
		} else {
			failed++;
			if (WIFSIGNALED(st))
				printf("not ok %d - %s:%s (signal %d)\n", num, prog, tests[i].name,
				       WTERMSIG(st));
			else
				printf("not ok %d - %s:%s (exit %d)\n", num, prog, tests[i].name,
				       WEXITSTATUS(st));
		}
	}
	if (skip_reason_file)
		unlink(reason_path);
	printf("1..%d\n", num);
	return failed ? 1 : 0;
}
