/*
 * common.c - error objects, cleanup helpers, capped buffers, strict parsing, EINTR-safe I/O
 * and logging shared by every subsystem. Nothing here knows about jails or HTTP.
 */
#include "common.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- errors ---------------------------------------------------------------------------- */

static int error_vmake(struct st_error **err, int errnum, const char *fmt, va_list ap)
{
	int ret = errnum > 0 ? -errnum : (errnum < 0 ? errnum : -EIO);
	if (err == NULL || *err != NULL)
		return ret;
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	if (msg && errnum != 0) {
		char *full = NULL;
		if (asprintf(&full, "%s: %s", msg, strerror(errnum < 0 ? -errnum : errnum)) >= 0) {
			free(msg);
			msg = full;
		}
	}
	struct st_error *e = calloc(1, sizeof(*e));
	if (e == NULL) {
		free(msg);
		return ret;
	}
	e->code = errnum < 0 ? -errnum : errnum;
	e->msg = msg ? msg : strdup("out of memory while formatting an error");
	*err = e;
	return ret;
}

int st_error_make(struct st_error **err, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = error_vmake(err, errnum, fmt, ap);
	va_end(ap);
	return r;
}

int st_error_wrap(struct st_error **err, const char *fmt, ...)
{
	if (err == NULL || *err == NULL)
		return -EIO;
	struct st_error *e = *err;
	int ret = e->code ? -e->code : -EIO;
	char *ctx = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&ctx, fmt, ap);
	va_end(ap);
	if (n < 0)
		return ret;
	char *full = NULL;
	if (asprintf(&full, "%s: %s", ctx, e->msg ? e->msg : "") >= 0) {
		free(e->msg);
		e->msg = full;
	}
	free(ctx);
	return ret;
}

const char *st_error_msg(const struct st_error *err)
{
	return err && err->msg ? err->msg : "unknown error";
}

void st_error_free(struct st_error *err)
{
	if (err == NULL)
		return;
	free(err->msg);
	free(err);
}

void st_error_release(struct st_error **err)
{
	if (err == NULL)
		return;
	st_error_free(*err);
	*err = NULL;
}

/* ---- cleanup ---------------------------------------------------------------------------- */

void st__cleanup_free(void *p)
{
	free(*(void **)p);
}

void st__cleanup_close(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

void st__cleanup_fclose(FILE **f)
{
	if (*f)
		fclose(*f);
}

void st__cleanup_error(struct st_error **e)
{
	st_error_release(e);
}

void st__cleanup_closedir(void *d)
{
	DIR **dp = d;
	if (*dp)
		closedir(*dp);
}

/* ---- memory ----------------------------------------------------------------------------- */

void *st_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		abort();
	return p;
}

void *st_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		abort();
	return p;
}

char *st_xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (p == NULL)
		abort();
	return p;
}

char *st_xasprintf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	return s;
}

/* ---- capped buffer ---------------------------------------------------------------------- */

void st_buf_init(struct st_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

static int buf_reserve(struct st_buf *b, size_t extra)
{
	if (extra > b->max || b->len > b->max - extra)
		return -ENOSPC;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *p = realloc(b->data, cap);
	if (p == NULL)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int st_buf_append(struct st_buf *b, const void *data, size_t n)
{
	int r = buf_reserve(b, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int st_buf_appendf(struct st_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	int r = st_buf_append(b, s, (size_t)n);
	free(s);
	return r;
}

bool st_buf_append_trunc(struct st_buf *b, const void *data, size_t n)
{
	size_t room = b->max > b->len ? b->max - b->len : 0;
	size_t take = n < room ? n : room;
	if (take && st_buf_append(b, data, take) < 0)
		return false;
	return take == n;
}

void st_buf_reset(struct st_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

char *st_buf_steal(struct st_buf *b)
{
	char *d = b->data ? b->data : st_xstrdup("");
	b->data = NULL;
	b->len = b->cap = 0;
	return d;
}

void st_buf_release(struct st_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* ---- parsing ---------------------------------------------------------------------------- */

int st_parse_i64(const char *s, int64_t *out)
{
	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return -EINVAL;
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (end == s || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

int st_parse_u64(const char *s, uint64_t *out)
{
	if (s == NULL || *s == '\0' || *s == '-' || isspace((unsigned char)*s))
		return -EINVAL;
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (end == s || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

int st_parse_size(const char *s, uint64_t *out)
{
	if (s == NULL || !isdigit((unsigned char)*s))
		return -EINVAL;
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	uint64_t mult = 1;
	if (*end) {
		switch (tolower((unsigned char)*end)) {
		case 'k': mult = 1ULL << 10; break;
		case 'm': mult = 1ULL << 20; break;
		case 'g': mult = 1ULL << 30; break;
		default: return -EINVAL;
		}
		end++;
		if (*end == 'b' || *end == 'B')
			end++;
		if (*end)
			return -EINVAL;
	}
	if (mult > 1 && v > UINT64_MAX / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

bool st_strlcpy(char *dst, const char *src, size_t size)
{
	if (size == 0)
		return false;
	size_t n = strlen(src);
	size_t take = n < size - 1 ? n : size - 1;
	memcpy(dst, src, take);
	dst[take] = '\0';
	return take == n;
}

bool st_str_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool st_str_has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

/* ---- I/O ---------------------------------------------------------------------------- */

ssize_t st_read_all(int fd, void *buf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = read(fd, (char *)buf + done, n - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

ssize_t st_write_all(int fd, const void *buf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = write(fd, (const char *)buf + done, n - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)r;
	}
	return (ssize_t)done;
}

int st_read_file_at(int dirfd, const char *path, size_t max, char **out, size_t *len,
                    struct st_error **err)
{
	cleanup_close int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return st_error_make(err, errno, "cannot open '%s'", path);
	struct st_buf b;
	st_buf_init(&b, max);
	char chunk[8192];
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof(chunk));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			st_buf_release(&b);
			return st_error_make(err, e, "cannot read '%s'", path);
		}
		if (r == 0)
			break;
		if (st_buf_append(&b, chunk, (size_t)r) < 0) {
			st_buf_release(&b);
			return st_error_make(err, EFBIG, "'%s' is larger than %zu bytes", path,
			                     max);
		}
	}
	if (len)
		*len = b.len;
	*out = st_buf_steal(&b);
	return 0;
}

int st_read_file(const char *path, size_t max, char **out, size_t *len, struct st_error **err)
{
	return st_read_file_at(AT_FDCWD, path, max, out, len, err);
}

int st_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         struct st_error **err)
{
	cleanup_free char *tmp = st_xasprintf("%s.tmp.%d", path, (int)getpid());
	cleanup_close int fd =
	    open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return st_error_make(err, errno, "cannot create '%s'", tmp);
	if (fchmod(fd, mode) < 0) {
		int e = errno;
		unlink(tmp);
		return st_error_make(err, e, "cannot chmod '%s'", tmp);
	}
	ssize_t w = st_write_all(fd, data, len);
	if (w < 0 || fsync(fd) < 0) {
		int e = w < 0 ? (int)-w : errno;
		unlink(tmp);
		return st_error_make(err, e, "cannot write '%s'", tmp);
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return st_error_make(err, e, "cannot rename '%s' to '%s'", tmp, path);
	}
	return 0;
}

int st_write_string_at(int dirfd, const char *path, const char *s, struct st_error **err)
{
	cleanup_close int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return st_error_make(err, errno, "cannot open '%s'", path);
	size_t n = strlen(s);
	ssize_t w;
	do
		w = write(fd, s, n);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return st_error_make(err, errno, "cannot write '%s' to '%s'", s, path);
	if ((size_t)w != n)
		return st_error_make(err, EIO, "short write to '%s'", path);
	return 0;
}

int st_mkdir_p(const char *path, mode_t mode, struct st_error **err)
{
	cleanup_free char *p = st_xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return st_error_make(err, errno, "cannot create directory '%s'", p);
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return st_error_make(err, errno, "cannot create directory '%s'", p);
	return 0;
}

int64_t st_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t st_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t st_wall_s(void)
{
	return (int64_t)time(NULL);
}

/* ---- logging ---------------------------------------------------------------------------- */

static enum st_log_level log_min = ST_LOG_INFO;
static bool log_plain;

void st_log_set_level(enum st_log_level level)
{
	log_min = level;
}

enum st_log_level st_log_get_level(void)
{
	return log_min;
}

void st_log_set_plain(bool plain)
{
	log_plain = plain;
}

void st_log(enum st_log_level level, const char *fmt, ...)
{
	if (level < log_min)
		return;
	static const char *names[] = {"debug", "info", "warn", "error"};
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (log_plain) {
		static const char *plain[] = {"debug: ", "", "warning: ", "error: "};
		fprintf(stderr, "stockade: %s%s\n", plain[level], msg);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		char when[64];
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		char stamp[80];
		snprintf(stamp, sizeof(stamp), "%s.%03ldZ", when, ts.tv_nsec / 1000000);
		json_t *o =
		    json_pack("{s:s, s:s, s:s}", "ts", stamp, "level", names[level], "msg", msg);
		char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (line)
			fprintf(stderr, "%s\n", line);
		free(line);
		json_decref(o);
	}
	free(msg);
}
