/*
 * common.h - the few things every subsystem shares: error objects that carry context up the
 * stack, cleanup attributes, a capped dynamic buffer, strict number parsing, EINTR-safe I/O and
 * structured logging.
 *
 * Error convention (crun's libcrun_error_t, git's message style): a function that can fail
 * returns 0 or a negative errno-style code and, when given a non-NULL `struct st_error **`,
 * stores a message there. Each layer may wrap the message with its own context:
 *     "cannot start jail: mount '/proc': Operation not permitted"
 * Messages are lowercase, have no final full stop, and quote their subject.
 * Library code never exits; only main() maps errors to exit codes.
 */
#ifndef STOCKADE_COMMON_H
#define STOCKADE_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "banned.h"

/* ---- errors ---------------------------------------------------------------------------- */

struct st_error {
	int code; /* positive errno value, or 0 when there is no underlying errno */
	char *msg; /* heap-allocated, never NULL once set */
};

/*
 * Set *err (if err is non-NULL and *err is NULL) to a message formatted from fmt; when errnum
 * is non-zero, ": <strerror(errnum)>" is appended. Returns -errnum, or -EIO when errnum is 0,
 * so callers can write `return st_error_make(err, errno, "cannot open '%s'", path);`.
 */
int st_error_make(struct st_error **err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix the existing message with "<context>: ". Returns the stored negative code. */
int st_error_wrap(struct st_error **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The message, or "unknown error" when err is NULL. */
const char *st_error_msg(const struct st_error *err);
void st_error_free(struct st_error *err);
/* Frees *err and sets it to NULL. */
void st_error_release(struct st_error **err);

/* ---- cleanup attributes (crun, bubblewrap) --------------------------------------------- */

void st__cleanup_free(void *p);
void st__cleanup_close(int *fd);
void st__cleanup_fclose(FILE **f);
void st__cleanup_error(struct st_error **e);
void st__cleanup_closedir(void *d);

#define cleanup_free __attribute__((cleanup(st__cleanup_free)))
#define cleanup_close __attribute__((cleanup(st__cleanup_close)))
#define cleanup_fclose __attribute__((cleanup(st__cleanup_fclose)))
#define cleanup_error __attribute__((cleanup(st__cleanup_error)))
#define cleanup_closedir __attribute__((cleanup(st__cleanup_closedir)))

static inline void *st__steal_pointer(void *pp)
{
	void **p = (void **)pp;
	void *r = *p;
	*p = NULL;
	return r;
}
#define steal_pointer(pp) ((__typeof__(*(pp)))st__steal_pointer(pp))

static inline int steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

#define ST_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- memory ---------------------------------------------------------------------------- */

/* Allocation that aborts on failure: used only where failure cannot be reported sensibly. */
void *st_xmalloc(size_t n);
void *st_xcalloc(size_t n, size_t size);
char *st_xstrdup(const char *s);
/* asprintf that aborts on failure. */
char *st_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- capped dynamic buffer (curl dynbuf) ------------------------------------------------ */

struct st_buf {
	char *data; /* always NUL-terminated when non-NULL */
	size_t len;
	size_t cap;
	size_t max; /* appends past max fail with -ENOSPC and leave the buffer unchanged */
};

void st_buf_init(struct st_buf *b, size_t max);
int st_buf_append(struct st_buf *b, const void *data, size_t n);
int st_buf_appendf(struct st_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append as much of data as fits; returns true when everything fit. */
bool st_buf_append_trunc(struct st_buf *b, const void *data, size_t n);
void st_buf_reset(struct st_buf *b);
/* Hand the data to the caller (who frees it); the buffer is left empty. */
char *st_buf_steal(struct st_buf *b);
void st_buf_release(struct st_buf *b);

/* ---- strings and numbers ---------------------------------------------------------------- */

/* Strict parsers: whole string, base 10, range-checked. Return 0 or -EINVAL / -ERANGE. */
int st_parse_i64(const char *s, int64_t *out);
int st_parse_u64(const char *s, uint64_t *out);
/* Parse sizes such as "64", "64k", "16M", "1G" (binary units) into bytes. */
int st_parse_size(const char *s, uint64_t *out);
/* Bounded copy that always terminates; returns true when src fit. */
bool st_strlcpy(char *dst, const char *src, size_t size);
bool st_str_has_prefix(const char *s, const char *prefix);
bool st_str_has_suffix(const char *s, const char *suffix);

/* ---- I/O -------------------------------------------------------------------------------- */

/* Retry EINTR in one place. read/write loop until done or error; return bytes or -errno. */
ssize_t st_read_all(int fd, void *buf, size_t n);
ssize_t st_write_all(int fd, const void *buf, size_t n);
/* Read a whole file (at most max bytes; -EFBIG beyond) into a NUL-terminated heap buffer. */
int st_read_file(const char *path, size_t max, char **out, size_t *len, struct st_error **err);
int st_read_file_at(int dirfd, const char *path, size_t max, char **out, size_t *len,
                    struct st_error **err);
/* Write a whole file atomically (temp + fsync + rename) with the given mode. */
int st_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         struct st_error **err);
/* Write a small string to an existing file (sysfs, procfs, cgroupfs). */
int st_write_string_at(int dirfd, const char *path, const char *s, struct st_error **err);
/* mkdir -p with the given mode; existing directories are fine. */
int st_mkdir_p(const char *path, mode_t mode, struct st_error **err);

/* Monotonic milliseconds / microseconds. */
int64_t st_now_ms(void);
int64_t st_now_us(void);
/* Wall-clock seconds since the epoch. */
int64_t st_wall_s(void);

/* ---- logging ---------------------------------------------------------------------------- */

enum st_log_level { ST_LOG_DEBUG, ST_LOG_INFO, ST_LOG_WARN, ST_LOG_ERROR };

/* One JSON object per line on stderr: {"ts":"...","level":"warn","msg":"..."}. */
void st_log(enum st_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void st_log_set_level(enum st_log_level level);
enum st_log_level st_log_get_level(void);
/* Human-readable lines ("stockade: warning: ...") instead of JSON, for CLI commands. */
void st_log_set_plain(bool plain);

#define ST_VERSION "0.1.0"

#endif
