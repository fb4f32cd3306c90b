/*
 * blob-fs.c - the filesystem backend: objects are files beneath one root directory.
 *
 * Layout: key "a/b/c" is the file <root>/a/b/c.blob, its user metadata the sidecar
 * <root>/a/b/c.meta (JSON). Because every object file ends in ".blob" (and every sidecar in
 * ".meta"), a key may also be a prefix directory of other keys ("a/b" and "a/b/c" coexist, as on
 * S3). Directory names that would end in ".blob"/".meta" (optionally followed by '_') get one
 * more '_' appended, so the two namespaces never collide; listing undoes it.
 *
 * Invariants:
 *  1. A reader sees the old object or the complete new one, never a partial one: data is
 *     written to a temporary file in the same directory (".tmp-<random>"), fsynced, renamed over
 *     the object file, and the directory is fsynced. A crash leaves at most a stray ".tmp-*"
 *     file, which listing ignores.
 *  2. Metadata travels with the data it was written for: the sidecar records the identity of
 *     its data file (inode, size, mtime in ns), and is renamed into place *before* the data.
 *     If a crash falls between the two renames, the old data no longer matches the new sidecar
 *     and is reported without metadata; the new data is never reported with stale metadata.
 *  3. Nothing outside the root is ever touched: directories are opened with openat2
 *     (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) where the kernel has it, otherwise one segment at
 *     a time with O_NOFOLLOW; files are opened O_NOFOLLOW relative to their directory fd.
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <jansson.h>

#include "blob/blob-internal.h"

#define FS_MAX_DEPTH 128
#define FS_SIDECAR_MAX (64 * 1024)

int blob__fs_open(struct blob_store *s, struct st_error **err)
{
	int r = st_mkdir_p(s->fs_root, 0700, err);
	if (r < 0)
		return st_error_wrap(err, "cannot create blob storage directory '%s'", s->fs_root);
	s->fs_rootfd = open(s->fs_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (s->fs_rootfd < 0)
		return st_error_make(err, errno, "cannot open blob storage directory '%s'",
		                     s->fs_root);
	return 0;
}

/* A directory segment as stored on disk (escaped), heap string. */
static char *dir_escape(const char *seg, size_t len)
{
	size_t end = len;
	while (end > 0 && seg[end - 1] == '_')
		end--;
	bool reserved = (end >= 5 && (memcmp(seg + end - 5, ".blob", 5) == 0 ||
	                              memcmp(seg + end - 5, ".meta", 5) == 0));
	return st_xasprintf("%.*s%s", (int)len, seg, reserved ? "_" : "");
}

/* The inverse for listing: NULL when name is not a valid escaped directory name. */
static char *dir_unescape(const char *name)
{
	size_t len = strlen(name), end = len;
	while (end > 0 && name[end - 1] == '_')
		end--;
	bool reserved = (end >= 5 && (memcmp(name + end - 5, ".blob", 5) == 0 ||
	                              memcmp(name + end - 5, ".meta", 5) == 0));
	if (reserved) {
		if (end == len)
			return NULL; /* a bare "x.blob" directory is not ours */
		return st_xasprintf("%.*s", (int)(len - 1), name);
	}
	return st_xstrdup(name);
}

static int openat2_beneath(int dirfd, const char *path, int flags)
{
	struct open_how how = {
	    .flags = (uint64_t)flags,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/*
 * Open the directory holding key's files (O_PATH), creating it when create is set; *leaf gets
 * the last segment. Returns the fd or -errno.
 */
static int open_parent(struct blob_store *s, const char *key, bool create, const char **leaf)
{
	const char *last = strrchr(key, '/');
	*leaf = last ? last + 1 : key;
	if (last == NULL) {
		int fd = fcntl(s->fs_rootfd, F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? -errno : fd;
	}
	/* Build the escaped relative directory path. */
	struct st_buf path;
	st_buf_init(&path, 8192);
	const char *seg = key;
	while (seg < last + 1) {
		const char *slash = strchr(seg, '/');
		cleanup_free char *esc = dir_escape(seg, (size_t)(slash - seg));
		if (st_buf_appendf(&path, "%s%s", path.len ? "/" : "", esc) < 0) {
			st_buf_release(&path);
			return -ENAMETOOLONG;
		}
		seg = slash + 1;
	}
	if (!create) {
		int fd = openat2_beneath(s->fs_rootfd, path.data, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) {
			int e = errno;
			st_buf_release(&path);
			return fd >= 0 ? fd : -e;
		}
	}
	/* Segment by segment with O_NOFOLLOW (also the fallback without openat2). */
	int cur = fcntl(s->fs_rootfd, F_DUPFD_CLOEXEC, 0);
	if (cur < 0) {
		st_buf_release(&path);
		return -errno;
	}
	char *p = path.data;
	while (p && *p) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		if (create && mkdirat(cur, p, 0700) < 0 && errno != EEXIST) {
			int e = errno;
			close(cur);
			st_buf_release(&path);
			return -e;
		}
		int next = openat(cur, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(cur);
		if (next < 0) {
			st_buf_release(&path);
			return -(e == ELOOP ? ENOTDIR : e);
		}
		cur = next;
		p = slash ? slash + 1 : NULL;
	}
	st_buf_release(&path);
	return cur;
}

static int sink_write(struct blob__sink *sink, const void *data, size_t n)
{
	if (sink->buf) {
		if (st_buf_append(sink->buf, data, n) < 0)
			return -EFBIG;
	} else {
		ssize_t w = st_write_all(sink->fd, data, n);
		if (w < 0) {
			sink->failed_write = true;
			sink->write_errno = (int)-w;
			return (int)w;
		}
	}
	sink->written += n;
	return 0;
}

static char *identity(const struct stat *st)
{
	return st_xasprintf("%llx-%llx-%llx%09ld", (unsigned long long)st->st_ino,
	                    (unsigned long long)st->st_size, (unsigned long long)st->st_mtim.tv_sec,
	                    st->st_mtim.tv_nsec);
}

static int make_temp(int dirfd, char *name, size_t name_size)
{
	for (int attempt = 0; attempt < 100; attempt++) {
		unsigned long long rnd = (unsigned long long)st_now_us() ^
		                         ((unsigned long long)getpid() << 40) ^
		                         ((unsigned long long)attempt * 0x9e3779b97f4a7c15ull) ^
		                         (unsigned long long)(uintptr_t)name;
		snprintf(name, name_size, ".tmp-%016llx", rnd);
		int fd =
		    openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd >= 0 ? fd : -errno;
	}
	return -EEXIST;
}

/* Write a file in dirfd: temp + fsync; *tmpname gets its name. Returns the fd (still open). */
static int write_temp(int dirfd, const void *data, size_t len, int srcfd, char *tmpname,
                      size_t tmpname_size, struct st_error **err)
{
	int fd = make_temp(dirfd, tmpname, tmpname_size);
	if (fd < 0)
		return st_error_make(err, -fd, "cannot create temporary file");
	if (srcfd < 0) {
		ssize_t w = st_write_all(fd, data, len);
		if (w < 0) {
			st_error_make(err, (int)-w, "cannot write temporary file");
			goto fail;
		}
	} else {
		size_t bufsz = 1 << 20;
		cleanup_free char *buf = st_xmalloc(bufsz);
		for (;;) {
			ssize_t n = read(srcfd, buf, bufsz);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				st_error_make(err, errno, "cannot read the input");
				goto fail;
			}
			if (n == 0)
				break;
			ssize_t w = st_write_all(fd, buf, (size_t)n);
			if (w < 0) {
				st_error_make(err, (int)-w, "cannot write temporary file");
				goto fail;
			}
		}
	}
	if (fsync(fd) < 0) {
		st_error_make(err, errno, "cannot fsync temporary file");
		goto fail;
	}
	return fd;
fail:
	close(fd);
	unlinkat(dirfd, tmpname, 0);
	return -EIO;
}

static int put_once(struct blob_store *s, const char *key, const void *data, size_t len, int srcfd,
                    const struct blob_meta *meta, size_t n_meta, bool *retry_enoent,
                    struct st_error **err)
{
	const char *leaf;
	cleanup_close int dirfd = open_parent(s, key, true, &leaf);
	if (dirfd < 0) {
		if (dirfd == -ENOENT)
			*retry_enoent = true;
		return st_error_make(err, -dirfd, "cannot create the directory of '%s'", key);
	}
	/* O_PATH fds cannot be fsynced or used for creation on every kernel: reopen it. */
	cleanup_close int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return st_error_make(err, errno, "cannot open the directory of '%s'", key);
	char tmp[64], tmpm[64];
	int fd = write_temp(dfd, data, len, srcfd, tmp, sizeof(tmp), err);
	if (fd < 0) {
		if (err && *err && (*err)->code == ENOENT)
			*retry_enoent = true;
		return fd;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		unlinkat(dfd, tmp, 0);
		return st_error_make(err, e, "cannot stat temporary file");
	}
	close(fd);
	cleanup_free char *objname = st_xasprintf("%s.blob", leaf);
	cleanup_free char *metaname = st_xasprintf("%s.meta", leaf);
	if (n_meta > 0) {
		json_t *m = json_object();
		for (size_t i = 0; i < n_meta; i++)
			json_object_set_new(m, meta[i].name,
			                    json_string(meta[i].value ? meta[i].value : ""));
		cleanup_free char *id = identity(&st);
		json_t *doc = json_pack("{s:s, s:o}", "id", id, "meta", m);
		cleanup_free char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(doc);
		int mfd = write_temp(dfd, text, strlen(text), -1, tmpm, sizeof(tmpm), err);
		if (mfd < 0) {
			unlinkat(dfd, tmp, 0);
			return mfd;
		}
		close(mfd);
		if (renameat(dfd, tmpm, dfd, metaname) < 0) {
			int e = errno;
			unlinkat(dfd, tmpm, 0);
			unlinkat(dfd, tmp, 0);
			return st_error_make(err, e, "cannot rename metadata into place");
		}
	}
	if (renameat(dfd, tmp, dfd, objname) < 0) {
		int e = errno;
		unlinkat(dfd, tmp, 0);
		return st_error_make(err, e, "cannot rename '%s' into place", objname);
	}
	if (n_meta == 0 && unlinkat(dfd, metaname, 0) < 0 && errno != ENOENT)
		return st_error_make(err, errno, "cannot remove old metadata '%s'", metaname);
	if (fsync(dfd) < 0)
		return st_error_make(err, errno, "cannot fsync the directory of '%s'", key);
	return 0;
}

int blob__fs_put(struct blob_store *s, const char *key, const void *data, size_t len, int fd,
                 const struct blob_meta *meta, size_t n_meta, struct st_error **err)
{
	/* A concurrent delete may prune the directory between our mkdir and our create; that is
	 * the only ENOENT we can meet, and trying again is correct. Input from a non-seekable fd
	 * is consumed on the first attempt, so only in-memory data is retried. */
	for (int attempt = 0;; attempt++) {
		bool again = false;
		struct st_error *e = NULL;
		int r = put_once(s, key, data, len, fd, meta, n_meta, &again, &e);
		if (r == 0)
			return 0;
		if (!again || attempt >= 3 || fd >= 0) {
			if (err && *err == NULL)
				*err = e;
			else
				st_error_free(e);
			return r;
		}
		st_error_free(e);
	}
}

static void read_sidecar(int dfd, const char *metaname, const struct stat *st,
                         struct blob_info *info)
{
	cleanup_free char *text = NULL;
	size_t len = 0;
	cleanup_close int fd = openat(dfd, metaname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat mst;
	if (fstat(fd, &mst) < 0 || !S_ISREG(mst.st_mode) || mst.st_size > FS_SIDECAR_MAX)
		return;
	text = st_xmalloc((size_t)mst.st_size + 1);
	ssize_t n = st_read_all(fd, text, (size_t)mst.st_size);
	if (n < 0)
		return;
	len = (size_t)n;
	text[len] = '\0';
	json_t *doc = json_loadb(text, len, 0, NULL);
	if (doc == NULL)
		return;
	cleanup_free char *id = identity(st);
	const char *got = json_string_value(json_object_get(doc, "id"));
	json_t *m = json_object_get(doc, "meta");
	if (got && strcmp(got, id) == 0 && json_is_object(m)) {
		const char *k;
		json_t *v;
		json_object_foreach(m, k, v)
		{
			const char *vs = json_string_value(v);
			if (vs)
				blob__info_add_meta(info, k, strlen(k), vs, strlen(vs));
		}
	}
	json_decref(doc);
}

int blob__fs_get(struct blob_store *s, const char *key, struct blob__sink *sink,
                 struct blob_info *info, struct st_error **err)
{
	const char *leaf;
	cleanup_close int dirfd = open_parent(s, key, false, &leaf);
	if (dirfd == -ENOENT || dirfd == -ENOTDIR)
		return blob__fail(err, ENOENT, "no such object");
	if (dirfd < 0)
		return st_error_make(err, -dirfd, "cannot open the directory of the object");
	cleanup_free char *objname = st_xasprintf("%s.blob", leaf);
	cleanup_free char *metaname = st_xasprintf("%s.meta", leaf);
	cleanup_close int fd = openat(dirfd, objname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ELOOP)
			return blob__fail(err, ENOENT, "no such object");
		return st_error_make(err, errno, "cannot open '%s'", objname);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return st_error_make(err, errno, "cannot stat '%s'", objname);
	if (!S_ISREG(st.st_mode))
		return blob__fail(err, ENOENT, "no such object");
	info->size = (uint64_t)st.st_size;
	info->mtime = st.st_mtim.tv_sec;
	info->etag = identity(&st);
	read_sidecar(dirfd, metaname, &st, info);
	if (sink == NULL)
		return 0;
	if (sink->buf && info->size > sink->buf->max)
		return blob__fail(err, EFBIG, "object is %llu bytes, more than the %zu allowed",
		                  (unsigned long long)info->size, sink->buf->max);
	size_t bufsz = 1 << 20;
	cleanup_free char *buf = st_xmalloc(bufsz);
	for (;;) {
		ssize_t n = read(fd, buf, bufsz);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return st_error_make(err, errno, "cannot read '%s'", objname);
		}
		if (n == 0)
			break;
		int r = sink_write(sink, buf, (size_t)n);
		if (r == -EFBIG)
			return blob__fail(err, EFBIG, "object is larger than the %zu bytes allowed",
			                  sink->buf->max);
		if (r < 0)
			return st_error_make(err, -r, "cannot write the output");
	}
	return 0;
}

int blob__fs_delete(struct blob_store *s, const char *key, struct st_error **err)
{
	const char *leaf;
	cleanup_close int dirfd = open_parent(s, key, false, &leaf);
	if (dirfd == -ENOENT || dirfd == -ENOTDIR)
		return 0;
	if (dirfd < 0)
		return st_error_make(err, -dirfd, "cannot open the directory of the object");
	cleanup_close int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return st_error_make(err, errno, "cannot open the directory of the object");
	cleanup_free char *objname = st_xasprintf("%s.blob", leaf);
	cleanup_free char *metaname = st_xasprintf("%s.meta", leaf);
	if (unlinkat(dfd, objname, 0) < 0 && errno != ENOENT)
		return st_error_make(err, errno, "cannot remove '%s'", objname);
	if (unlinkat(dfd, metaname, 0) < 0 && errno != ENOENT)
		return st_error_make(err, errno, "cannot remove '%s'", metaname);
	if (fsync(dfd) < 0)
		return st_error_make(err, errno, "cannot fsync the directory");

	/* Prune directories left empty, deepest first, each relative to its parent's fd. */
	if (strchr(key, '/') == NULL)
		return 0;
	int fds[FS_MAX_DEPTH];
	char *names[FS_MAX_DEPTH];
	int depth = 0;
	cleanup_free char *copy = st_xstrdup(key);
	char *p = copy;
	int cur = fcntl(s->fs_rootfd, F_DUPFD_CLOEXEC, 0);
	while (cur >= 0 && depth < FS_MAX_DEPTH) {
		char *slash = strchr(p, '/');
		if (slash == NULL)
			break;
		*slash = '\0';
		char *esc = dir_escape(p, strlen(p));
		int next = openat(cur, esc, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		fds[depth] = cur;
		names[depth] = esc;
		depth++;
		cur = next;
		p = slash + 1;
	}
	if (cur >= 0)
		close(cur);
	bool stop = false;
	for (int i = depth - 1; i >= 0; i--) {
		if (!stop && unlinkat(fds[i], names[i], AT_REMOVEDIR) < 0)
			stop = true; /* ENOTEMPTY (other objects, or a concurrent put): keep it */
		close(fds[i]);
		free(names[i]);
	}
	return 0;
}

/* ---- listing ------------------------------------------------------------------------------ */

struct fs_item {
	char *key;
	uint64_t size;
	int64_t mtime;
	char *etag;
};

struct fs_list {
	struct fs_item *items;
	size_t n, cap;
	const char *prefix;
	size_t prefix_len;
};

static int list_dir(struct fs_list *l, int parentfd, const char *keypath, int depth)
{
	if (depth > FS_MAX_DEPTH)
		return 0;
	int fd = openat(parentfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		int e = errno;
		close(fd);
		return -e;
	}
	int r = 0;
	struct dirent *de;
	while ((errno = 0, de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
		    st_str_has_prefix(name, ".tmp-"))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* removed meanwhile */
		if (S_ISDIR(st.st_mode)) {
			cleanup_free char *seg = dir_unescape(name);
			if (seg == NULL)
				continue;
			cleanup_free char *sub = st_xasprintf("%s%s/", keypath, seg);
			size_t sl = strlen(sub);
			/* Descend only where keys under sub can match the prefix. */
			if (strncmp(sub, l->prefix, sl < l->prefix_len ? sl : l->prefix_len) != 0)
				continue;
			int sfd =
			    openat(dirfd(d), name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sfd < 0)
				continue;
			r = list_dir(l, sfd, sub, depth + 1);
			close(sfd);
			if (r < 0)
				break;
		} else if (S_ISREG(st.st_mode) && st_str_has_suffix(name, ".blob") &&
		           strlen(name) > 5) {
			char *key = st_xasprintf("%s%.*s", keypath, (int)(strlen(name) - 5), name);
			if (!st_str_has_prefix(key, l->prefix)) {
				free(key);
				continue;
			}
			if (l->n == l->cap) {
				l->cap = l->cap ? l->cap * 2 : 64;
				l->items = realloc(l->items, l->cap * sizeof(*l->items));
				if (l->items == NULL)
					abort();
			}
			l->items[l->n++] = (struct fs_item){.key = key,
			                                    .size = (uint64_t)st.st_size,
			                                    .mtime = st.st_mtim.tv_sec,
			                                    .etag = identity(&st)};
		}
	}
	if (r == 0 && errno != 0)
		r = -errno;
	closedir(d);
	return r;
}

static int item_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fs_item *)a)->key, ((const struct fs_item *)b)->key);
}

int blob__fs_list(struct blob_store *s, const char *prefix, blob_list_fn fn, void *ud,
                  struct st_error **err)
{
	struct fs_list l = {.prefix = prefix, .prefix_len = strlen(prefix)};
	int r = list_dir(&l, s->fs_rootfd, "", 0);
	if (r < 0)
		st_error_make(err, -r, "cannot read blob storage directory '%s'", s->fs_root);
	else if (l.n > 0)
		qsort(l.items, l.n, sizeof(*l.items), item_cmp);
	for (size_t i = 0; i < l.n; i++) {
		if (r == 0) {
			struct blob_entry e = {.key = l.items[i].key,
			                       .size = l.items[i].size,
			                       .etag = l.items[i].etag,
			                       .mtime = l.items[i].mtime};
			r = fn(&e, ud);
		}
		free(l.items[i].key);
		free(l.items[i].etag);
	}
	free(l.items);
	return r;
}
