/*
 * test-tarball.c - src/tarball: a directory packed and unpacked again (keep filter, symlinks
 * kept as links, the size reported), and archives whose names or hardlink targets leave the
 * directory refused even by a check that accepts everything.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tarball/tarball.h"
#include "unit.h"

/* Every directory a test makes is under one root; a test removes it as it ends (the harness
 * leaves a passing test with _exit), a failing CHECK through exit and atexit. */
static char root[] = "/tmp/stk-tarball-XXXXXX";

static void remove_root(void)
{
	if (root[strlen(root) - 1] != 'X')
		(void)unit_rm_rf(root); /* also an atexit handler: no exit here */
}

static char *make_dir(void)
{
	static unsigned n;
	if (n == 0) {
		CHECK(mkdtemp(root) != NULL);
		CHECK(atexit(remove_root) == 0);
	}
	char *d = st_xasprintf("%s/%u", root, n++);
	CHECK(mkdir(d, 0755) == 0);
	return d;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	CHECK(fputs(text, f) >= 0);
	CHECK(fclose(f) == 0);
}

static char *read_file(const char *path)
{
	char buf[256];
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return st_xstrdup(buf);
}

static bool keep_not_skip(const char *rel, mode_t type)
{
	(void)type;
	return strncmp(rel, "skip", 4) != 0;
}

static int accept_all(struct archive_entry *e, const char *name, struct st_error **err)
{
	(void)e;
	(void)err;
	return *name ? 1 : 0;
}

static const struct tarball_unpack_opts unpack_all = {
    .flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_SYMLINKS,
    .check = accept_all,
    .unreadable = "cannot read the test archive",
    .damaged = "the test archive is damaged",
    .verb = "unpack",
};

TEST(pack_and_unpack_round_trip)
{
	cleanup_free char *src = make_dir();
	cleanup_free char *dst = make_dir();
	cleanup_free char *sub = st_xasprintf("%s/sub", src);
	CHECK(mkdir(sub, 0755) == 0);
	cleanup_free char *f1 = st_xasprintf("%s/sub/a.txt", src);
	write_file(f1, "alpha");
	cleanup_free char *f2 = st_xasprintf("%s/skip.txt", src);
	write_file(f2, "left out");
	cleanup_free char *ln = st_xasprintf("%s/link", src);
	CHECK(symlink("sub/a.txt", ln) == 0);

	int fd = memfd_create("tarball", MFD_CLOEXEC);
	CHECK(fd >= 0);
	const struct tarball_pack_opts po = {.keep = keep_not_skip};
	uint64_t size = 0;
	cleanup_error struct st_error *err = NULL;
	CHECK_EQ_INT(tarball_pack(src, fd, &po, &size, &err), 0);
	CHECK(size > 0);
	CHECK_EQ_INT(size, lseek(fd, 0, SEEK_CUR));

	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	int r = tarball_unpack(fd, dst, &unpack_all, &err);
	if (r < 0)
		fprintf(stderr, "unpack: %s\n", st_error_msg(err));
	CHECK_EQ_INT(r, 0);
	close(fd);

	cleanup_free char *g1 = st_xasprintf("%s/sub/a.txt", dst);
	cleanup_free char *got = read_file(g1);
	CHECK_STREQ(got, "alpha");
	cleanup_free char *g2 = st_xasprintf("%s/skip.txt", dst);
	CHECK(access(g2, F_OK) != 0);
	cleanup_free char *gl = st_xasprintf("%s/link", dst);
	struct stat st;
	CHECK(lstat(gl, &st) == 0);
	CHECK(S_ISLNK(st.st_mode));
	char target[64] = {0};
	CHECK(readlink(gl, target, sizeof(target) - 1) > 0);
	CHECK_STREQ(target, "sub/a.txt");
	remove_root();
}

/* An archive of one entry, written with libarchive the way any tar writer could. */
static int crafted(const char *name, const char *hardlink)
{
	int fd = memfd_create("crafted", MFD_CLOEXEC);
	CHECK(fd >= 0);
	struct archive *w = archive_write_new();
	archive_write_set_format_pax_restricted(w);
	archive_write_add_filter_zstd(w);
	CHECK(archive_write_open_fd(w, fd) == ARCHIVE_OK);
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	if (hardlink) {
		archive_entry_set_hardlink(e, hardlink);
		archive_entry_set_size(e, 0);
	} else {
		archive_entry_set_size(e, 4);
	}
	CHECK(archive_write_header(w, e) == ARCHIVE_OK);
	if (!hardlink)
		CHECK(archive_write_data(w, "evil", 4) == 4);
	archive_entry_free(e);
	CHECK(archive_write_close(w) == ARCHIVE_OK);
	archive_write_free(w);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	return fd;
}

static void check_refused(const char *name, const char *hardlink)
{
	cleanup_free char *parent = make_dir();
	cleanup_free char *dst = st_xasprintf("%s/inner", parent);
	CHECK(mkdir(dst, 0755) == 0);
	int fd = crafted(name, hardlink);
	cleanup_error struct st_error *err = NULL;
	int r = tarball_unpack(fd, dst, &unpack_all, &err);
	close(fd);
	CHECK(r < 0);
	CHECK_CONTAINS(st_error_msg(err), "leaves the directory");
	cleanup_free char *outside = st_xasprintf("%s/evil", parent);
	CHECK(access(outside, F_OK) != 0);
}

TEST(unpack_refuses_dotdot_names_whatever_the_check_says)
{
	check_refused("../evil", NULL);
	check_refused("a/../../evil", NULL);
	check_refused("..", NULL);
	remove_root();
}

TEST(unpack_refuses_absolute_names)
{
	cleanup_free char *abs = st_xasprintf("%s/absolute-evil", root);
	check_refused(abs, NULL);
	CHECK(access(abs, F_OK) != 0);
	remove_root();
}

TEST(unpack_refuses_hardlinks_out_of_the_directory)
{
	check_refused("inside", "../evil");
	check_refused("inside", "/etc/passwd");
	remove_root();
}

TEST(unpack_accepts_dots_inside_names)
{
	cleanup_free char *dst = make_dir();
	int fd = crafted("a..b/..c/d..", NULL);
	cleanup_error struct st_error *err = NULL;
	int r = tarball_unpack(fd, dst, &unpack_all, &err);
	close(fd);
	if (r < 0)
		fprintf(stderr, "unpack: %s\n", st_error_msg(err));
	CHECK_EQ_INT(r, 0);
	cleanup_free char *p = st_xasprintf("%s/a..b/..c/d..", dst);
	cleanup_free char *got = read_file(p);
	CHECK_STREQ(got, "evil");
	remove_root();
}

TEST(unpack_reports_an_archive_that_is_not_one)
{
	cleanup_free char *dst = make_dir();
	int fd = memfd_create("junk", MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(write(fd, "not a tarball at all", 20) == 20);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	cleanup_error struct st_error *err = NULL;
	CHECK(tarball_unpack(fd, dst, &unpack_all, &err) < 0);
	close(fd);
	CHECK_CONTAINS(st_error_msg(err), "the test archive");
	remove_root();
}
