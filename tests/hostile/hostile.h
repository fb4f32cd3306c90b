/*
 * hostile.h - the reporting protocol shared by the attack programs in tests/hostile/.
 *
 * Each program runs one attack variant (argv[1]) inside a jail and prints one line per attempt:
 *   "BLOCKED <variant>: <what failed and how>"   the defence held
 *   "ESCAPED <variant>: <what worked>"           the attack succeeded
 * and exits 42 if anything escaped, 0 otherwise. A seccomp kill ends the program before it can
 * print; the test script then sees status "sandbox_violation" in the jail report, which also
 * means the defence held. The scripts never rely on the exit code alone.
 */
#ifndef HOSTILE_H
#define HOSTILE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *h_variant = "?";
static int h_escaped;
static int h_blocked;

#define BLOCKED(...)                                                                               \
	do {                                                                                       \
		printf("BLOCKED %s: ", h_variant);                                                 \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		fflush(stdout);                                                                    \
		h_blocked++;                                                                       \
	} while (0)
#define ESCAPED(...)                                                                               \
	do {                                                                                       \
		printf("ESCAPED %s: ", h_variant);                                                 \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		fflush(stdout);                                                                    \
		h_escaped++;                                                                       \
	} while (0)
#define INFO(...)                                                                                  \
	do {                                                                                       \
		printf("INFO %s: ", h_variant);                                                    \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		fflush(stdout);                                                                    \
	} while (0)

/* A syscall result: r < 0 with errno e counts as refused; r >= 0 as reached. */
#define EXPECT_FAIL(r, what)                                                                       \
	do {                                                                                       \
		long h_r_ = (long)(r);                                                             \
		if (h_r_ < 0)                                                                      \
			BLOCKED("%s: %s", what, strerror(errno));                                  \
		else                                                                               \
			ESCAPED("%s succeeded (returned %ld)", what, h_r_);                        \
	} while (0)

static inline int h_finish(void)
{
	if (!h_escaped && !h_blocked)
		printf("BLOCKED %s: nothing to attack\n", h_variant);
	fflush(stdout);
	return h_escaped ? 42 : 0;
}

/* Try to leave a file at a host path given on the command line; the script checks the host. */
static inline void h_try_marker(const char *path)
{
	if (!path || !*path)
		return;
	FILE *f = fopen(path, "w");
	if (f) {
		fputs("escaped\n", f);
		fclose(f);
		INFO("wrote %s in its own view; the host check decides", path);
	}
}

#endif
