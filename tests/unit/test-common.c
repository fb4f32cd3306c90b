/* test-common.c - the shared helpers: errors, buffers, parsing, atomic files. */
#include <fcntl.h>
#include <sys/stat.h>

#include "common/common.h"
#include "unit.h"

TEST(error_make_and_wrap)
{
	cleanup_error struct st_error *err = NULL;
	int r = st_error_make(&err, ENOENT, "cannot open '%s'", "x");
	CHECK_EQ_INT(r, -ENOENT);
	CHECK_STREQ(st_error_msg(err), "cannot open 'x': No such file or directory");
	r = st_error_wrap(&err, "loading config");
	CHECK_EQ_INT(r, -ENOENT);
	CHECK_STREQ(st_error_msg(err),
	            "loading config: cannot open 'x': No such file or directory");
	/* the first error wins: a second make does not overwrite it */
	st_error_make(&err, EINVAL, "later");
	CHECK_CONTAINS(st_error_msg(err), "cannot open");
}

TEST(error_without_errno)
{
	cleanup_error struct st_error *err = NULL;
	CHECK_EQ_INT(st_error_make(&err, 0, "bad '%s'", "k"), -EIO);
	CHECK_STREQ(st_error_msg(err), "bad 'k'");
	CHECK_EQ_INT(st_error_make(NULL, EPERM, "ignored"), -EPERM);
}

TEST(buf_caps)
{
	struct st_buf b;
	st_buf_init(&b, 8);
	CHECK_EQ_INT(st_buf_append(&b, "12345", 5), 0);
	CHECK_EQ_INT(st_buf_append(&b, "6789", 4), -ENOSPC);
	CHECK_EQ_INT(b.len, 5);
	CHECK(!st_buf_append_trunc(&b, "abcdef", 6));
	CHECK_EQ_INT(b.len, 8);
	CHECK_STREQ(b.data, "12345abc");
	st_buf_release(&b);
}

TEST(parse_numbers)
{
	int64_t i;
	uint64_t u;
	CHECK_EQ_INT(st_parse_i64("-42", &i), 0);
	CHECK_EQ_INT(i, -42);
	CHECK_EQ_INT(st_parse_i64("42x", &i), -EINVAL);
	CHECK_EQ_INT(st_parse_i64("", &i), -EINVAL);
	CHECK_EQ_INT(st_parse_i64(" 1", &i), -EINVAL);
	CHECK_EQ_INT(st_parse_u64("-1", &u), -EINVAL);
	CHECK_EQ_INT(st_parse_u64("99999999999999999999999", &u), -ERANGE);
	CHECK_EQ_INT(st_parse_size("16M", &u), 0);
	CHECK_EQ_INT(u, 16 << 20);
	CHECK_EQ_INT(st_parse_size("1kb", &u), 0);
	CHECK_EQ_INT(u, 1024);
	CHECK_EQ_INT(st_parse_size("1q", &u), -EINVAL);
}

TEST(atomic_file)
{
	char dir[] = "/tmp/st-unit-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	cleanup_free char *path = st_xasprintf("%s/f", dir);
	cleanup_error struct st_error *err = NULL;
	CHECK_EQ_INT(st_write_file_atomic(path, "hello", 5, 0600, &err), 0);
	struct stat stt;
	CHECK(stat(path, &stt) == 0);
	CHECK_EQ_INT(stt.st_mode & 0777, 0600);
	cleanup_free char *data = NULL;
	size_t len = 0;
	CHECK_EQ_INT(st_read_file(path, 100, &data, &len, &err), 0);
	CHECK_EQ_INT(len, 5);
	CHECK_STREQ(data, "hello");
	free(data);
	data = NULL;
	CHECK(st_read_file(path, 3, &data, &len, &err) == -EFBIG);
	unlink(path);
	rmdir(dir);
}
