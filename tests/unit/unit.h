/*
 * unit.h - a tiny unit-test harness: each TEST runs in its own forked process (libuv style), so
 * a crash or a leaked resource in one test cannot mask another. Output is TAP ("ok N - name",
 * "not ok N - name"), which tests/run.sh counts.
 *
 *   TEST(parse_size) { CHECK(st_parse_size("1k", &v) == 0); CHECK_EQ_INT(v, 1024); }
 *
 * A test passes when it returns; CHECK failures print file:line and the expression and exit 1.
 * UNIT_SKIP("why") marks the test skipped.
 */
#ifndef STOCKADE_UNIT_H
#define STOCKADE_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void unit_register(const char *name, void (*fn)(void));
void unit_skip(const char *why) __attribute__((noreturn));
/* Remove path and everything under it (not following links); a path already gone is fine.
 * Returns 0, or -1 after saying on stderr what could not be removed. */
int unit_rm_rf(const char *path);

#define TEST(name)                                                     \
	static void test_##name(void);                                 \
	__attribute__((constructor)) static void register_##name(void) \
	{                                                              \
		unit_register(#name, test_##name);                     \
	}                                                              \
	static void test_##name(void)

#define CHECK(cond)                                                                              \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                                 \
		}                                                                                \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                                \
	do {                                                                              \
		long long a_ = (long long)(a), b_ = (long long)(b);                       \
		if (a_ != b_) {                                                           \
			fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", \
			        __FILE__, __LINE__, #a, #b, a_, b_);                      \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

#define CHECK_STREQ(a, b)                                                                     \
	do {                                                                                  \
		const char *a_ = (a), *b_ = (b);                                              \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                        \
			fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", \
			        __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)",               \
			        b_ ? b_ : "(null)");                                          \
			exit(1);                                                              \
		}                                                                             \
	} while (0)

#define CHECK_CONTAINS(hay, needle)                                                                \
	do {                                                                                       \
		const char *h_ = (hay), *n_ = (needle);                                            \
		if (h_ == NULL || strstr(h_, n_) == NULL) {                                        \
			fprintf(stderr, "%s:%d: CHECK failed: \"%s\" contains \"%s\"\n", __FILE__, \
			        __LINE__, h_ ? h_ : "(null)", n_);                                 \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define UNIT_SKIP(why) unit_skip(why)

#endif
