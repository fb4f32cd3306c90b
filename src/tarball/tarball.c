/*
 * tarball.c - directory <-> pax tar + zstd on an fd, for git's stored repositories and the
 * agent sandbox's snapshots (tarball.h says what each caller decides). A packed file is read
 * from the path the walk reported with O_NOFOLLOW: one swapped for a symlink is not followed.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>

#include "tarball/tarball.h"

#define COPY_BYTES (256 * 1024)

/* The entry's data from its source file; a write error shows at the next header or close. */
static int copy_data(struct archive *w, struct archive_entry *e, char *buf,
                     const struct tarball_pack_opts *o, struct st_error **err)
{
	int fd = open(archive_entry_sourcepath(e), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return o->lenient ? 0
		                  : st_error_make(err, errno, "cannot open '%s'",
		                                  archive_entry_sourcepath(e));
	ssize_t k;
	while ((k = read(fd, buf, COPY_BYTES)) > 0)
		if (archive_write_data(w, buf, (size_t)k) < 0)
			break;
	close(fd);
	return 0;
}

int tarball_pack(const char *dir, int out_fd, const struct tarball_pack_opts *o, uint64_t *size,
                 struct st_error **err)
{
	struct archive *w = archive_write_new();
	struct archive *d = archive_read_disk_new();
	cleanup_free char *buf = st_xmalloc(COPY_BYTES);
	int r = 0;
	archive_write_set_format_pax_restricted(w);
	archive_write_add_filter_zstd(w);
	archive_read_disk_set_symlink_physical(d);
	if (o->owners)
		archive_read_disk_set_standard_lookup(d);
	if (archive_write_open_fd(w, out_fd) != ARCHIVE_OK) {
		r = st_error_make(err, 0, "cannot start the archive: %s", archive_error_string(w));
		goto out;
	}
	if (archive_read_disk_open(d, dir) != ARCHIVE_OK) {
		r = st_error_make(err, 0, "cannot read '%s': %s", dir, archive_error_string(d));
		goto out;
	}
	size_t dl = strlen(dir);
	for (;;) {
		struct archive_entry *e = archive_entry_new();
		int ar = archive_read_next_header2(d, e);
		if (ar == ARCHIVE_EOF) {
			archive_entry_free(e);
			break;
		}
		if (ar < ARCHIVE_WARN || (ar != ARCHIVE_OK && !o->lenient)) {
			r = o->walk_error ? st_error_make(err, 0, "%s: %s", o->walk_error,
			                                  archive_error_string(d))
			                  : st_error_make(err, 0, "cannot read '%s': %s", dir,
			                                  archive_error_string(d));
			archive_entry_free(e);
			break;
		}
		/* Names relative to the root; the root itself is walked, not archived. */
		const char *p = archive_entry_pathname(e);
		const char *rel = p ? p : "";
		if (p && strncmp(p, dir, dl) == 0) {
			rel = p + dl;
			while (*rel == '/')
				rel++;
			if (!*rel) {
				archive_read_disk_descend(d);
				archive_entry_free(e);
				continue;
			}
		}
		mode_t type = archive_entry_filetype(e);
		if (o->keep && !o->keep(rel, type)) {
			archive_entry_free(e);
			continue;
		}
		if (type == AE_IFDIR)
			archive_read_disk_descend(d);
		char *relc = st_xstrdup(rel);
		archive_entry_set_pathname(e, relc);
		free(relc);
		if (!o->owners) {
			archive_entry_set_uid(e, 0);
			archive_entry_set_gid(e, 0);
			archive_entry_set_uname(e, NULL);
			archive_entry_set_gname(e, NULL);
		}
		if (archive_write_header(w, e) != ARCHIVE_OK) {
			r = st_error_make(err, 0, "cannot archive '%s': %s",
			                  archive_entry_pathname(e), archive_error_string(w));
			archive_entry_free(e);
			break;
		}
		if (type == AE_IFREG && archive_entry_size(e) > 0)
			r = copy_data(w, e, buf, o, err);
		archive_entry_free(e);
		if (r < 0)
			break;
	}
	if (r == 0 && archive_write_close(w) != ARCHIVE_OK)
		r = st_error_make(err, 0, "cannot finish the archive: %s", archive_error_string(w));
out:
	archive_read_free(d);
	archive_write_free(w);
	if (r == 0 && size) {
		off_t end = lseek(out_fd, 0, SEEK_CUR);
		if (end < 0)
			return st_error_make(err, errno, "lseek");
		*size = (uint64_t)end;
	}
	return r;
}

/* Whether a stored name would land outside the directory once put under it: absolute, or
 * with a ".." component anywhere. */
static bool name_escapes(const char *p)
{
	if (p[0] == '/')
		return true;
	for (const char *s = p; s != NULL; s = strchr(s, '/')) {
		if (*s == '/')
			s++;
		if (s[0] == '.' && s[1] == '.' && (s[2] == '/' || s[2] == '\0'))
			return true;
	}
	return false;
}

int tarball_unpack(int in_fd, const char *dir, const struct tarball_unpack_opts *o,
                   struct st_error **err)
{
	struct archive *a = archive_read_new();
	struct archive *w = archive_write_disk_new();
	archive_read_support_format_tar(a);
	archive_read_support_filter_zstd(a);
	/* The names are checked by o->check and then made absolute (under dir) on purpose, which
	 * libarchive's own check of absolute names would refuse. */
	archive_write_disk_set_options(w, o->flags);
	int r = 0;
	if (archive_read_open_fd(a, in_fd, 256 * 1024) != ARCHIVE_OK) {
		r = st_error_make(err, 0, "%s: %s", o->unreadable, archive_error_string(a));
		goto out;
	}
	for (;;) {
		struct archive_entry *e;
		int ar = archive_read_next_header(a, &e);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar < ARCHIVE_WARN || (ar != ARCHIVE_OK && !o->lenient)) {
			r = st_error_make(err, 0, "%s: %s", o->damaged, archive_error_string(a));
			break;
		}
		const char *p0 = archive_entry_pathname(e);
		cleanup_free char *p = st_xstrdup(p0 ? p0 : "");
		int c = o->check(e, p, err);
		if (c < 0) {
			r = c;
			break;
		}
		if (c == 0)
			continue;
		/* Each caller's check refuses these with its own words; this is the backstop, so
		   that a check written later cannot forget it. */
		const char *hl0 = archive_entry_hardlink(e);
		if (name_escapes(p) || (hl0 != NULL && name_escapes(hl0))) {
			r = st_error_make(err, EINVAL, "%s: entry '%s' leaves the directory",
			                  o->damaged, p);
			break;
		}
		cleanup_free char *full = st_xasprintf("%s/%s", dir, p);
		archive_entry_set_pathname(e, full);
		const char *hl = archive_entry_hardlink(e);
		if (hl) {
			cleanup_free char *hfull = st_xasprintf("%s/%s", dir, hl);
			archive_entry_set_hardlink(e, hfull);
		}
		if (archive_write_header(w, e) < ARCHIVE_WARN) {
			r = st_error_make(err, 0, "cannot %s '%s': %s", o->verb, p,
			                  archive_error_string(w));
			break;
		}
		const void *buf;
		size_t size;
		la_int64_t off;
		while ((ar = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK)
			if (archive_write_data_block(w, buf, size, off) < ARCHIVE_WARN)
				break;
		if (ar != ARCHIVE_EOF && ar != ARCHIVE_OK && !o->lenient) {
			r = st_error_make(err, 0, "%s: %s", o->damaged, archive_error_string(a));
			break;
		}
		if (archive_write_finish_entry(w) < ARCHIVE_WARN && !o->lenient) {
			r = st_error_make(err, 0, "cannot %s '%s': %s", o->verb, p,
			                  archive_error_string(w));
			break;
		}
	}
out:
	archive_read_free(a);
	archive_write_free(w);
	return r;
}
