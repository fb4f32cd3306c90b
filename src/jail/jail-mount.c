/*
 * jail-mount.c - the jail's filesystem, built inside the child's new mount namespace.
 *
 * Invariants:
 *   1. Every mount is made by file descriptor with the new mount API: sources are cloned with
 *      open_tree(OPEN_TREE_CLONE), fresh filesystems come from fsopen/fsmount, and they are
 *      attached with move_mount onto a target *fd*. Targets are created and opened below the
 *      new root without following symlinks (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or an
 *      O_NOFOLLOW walk when openat2 is missing), so a symlink planted in a bound directory
 *      cannot redirect a mount outside the root or onto another target.
 *   2. All bind sources are cloned before the new root is attached (it is attached over the
 *      old /tmp in our private mount namespace, which would otherwise hide sources there).
 *   3. Binds are nosuid and nodev (device binds keep dev but lose exec), read-only ones
 *      recursively read-only; flags the host locked on a mount are never cleared
 *      (mount_setattr only sets).
 *   4. The root tmpfs and /dev are made read-only once populated; then pivot_root(".", ".")
 *      and the old root is detached (MNT_DETACH), so nothing of the host stays reachable.
 * Runs in the child after clone: no allocation, only syscalls and stack buffers.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail/jail-internal.h"

#define MAX_MNTS 96

static long sys_openat2(int dirfd, const char *path, struct open_how *how)
{
	return syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
}

/* Open (or with create: make, as a directory) each component of rel below rootfd with
   O_NOFOLLOW, never leaving the tree. Returns an O_PATH fd of the last directory. */
static int walk_dirs(int rootfd, const char *rel, bool create)
{
	char comp[256];
	int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return -errno;
	for (const char *p = rel; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 0) {
			p++;
			continue;
		}
		if (n >= sizeof(comp) || (n == 2 && p[0] == '.' && p[1] == '.')) {
			close(cur);
			return -EINVAL;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (create && mkdirat(cur, comp, 0755) < 0 && errno != EEXIST) {
			int e = errno;
			close(cur);
			return -e;
		}
		int next = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(cur);
		if (next < 0)
			return e == ENOTDIR ? -ELOOP : -e;
		cur = next;
		p += n;
	}
	return cur;
}

/* Open rel below rootfd, no symlinks anywhere on the way. */
static int open_beneath(const struct jail__child *c, int rootfd, const char *rel, int flags)
{
	if (!c->no_openat2) {
		struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
		                       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
		                                  RESOLVE_NO_MAGICLINKS};
		long fd = sys_openat2(rootfd, rel, &how);
		if (fd >= 0 || errno != ENOSYS)
			return fd >= 0 ? (int)fd : -errno;
	}
	/* Fallback: walk the directories, then the last component with O_NOFOLLOW. */
	const char *slash = strrchr(rel, '/');
	char dir[512];
	const char *last = rel;
	int dfd;
	if (slash) {
		size_t n = (size_t)(slash - rel);
		if (n >= sizeof(dir))
			return -ENAMETOOLONG;
		memcpy(dir, rel, n);
		dir[n] = '\0';
		last = slash + 1;
		dfd = walk_dirs(rootfd, dir, false);
	} else {
		dfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	}
	if (dfd < 0)
		return slash ? dfd : -errno;
	int fd = openat(dfd, last, flags | O_CLOEXEC | O_NOFOLLOW);
	int e = errno;
	close(dfd);
	return fd >= 0 ? fd : -e;
}

/* Create the mount point (directory or empty file) for rel and open it. */
static int make_target(const struct jail__child *c, int rootfd, const char *rel, bool dir)
{
	const char *slash = strrchr(rel, '/');
	char parent[512];
	if (slash) {
		size_t n = (size_t)(slash - rel);
		if (n >= sizeof(parent))
			return -ENAMETOOLONG;
		memcpy(parent, rel, n);
		parent[n] = '\0';
		int pfd = walk_dirs(rootfd, parent, true);
		if (pfd < 0)
			return pfd;
		const char *last = slash + 1;
		int r = 0;
		if (dir) {
			if (mkdirat(pfd, last, 0755) < 0 && errno != EEXIST)
				r = -errno;
		} else {
			int f =
			    openat(pfd, last, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
			if (f < 0)
				r = errno == EISDIR ? 0 : -errno;
			else
				close(f);
		}
		close(pfd);
		if (r < 0 && r != -EROFS && r != -EACCES)
			return r;
	} else if (dir) {
		if (mkdirat(rootfd, rel, 0755) < 0 && errno != EEXIST && errno != EROFS)
			return -errno;
	} else {
		int f = openat(rootfd, rel, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (f < 0 && errno != EROFS && errno != EACCES && errno != EISDIR)
			return -errno;
		if (f >= 0)
			close(f);
	}
	/* Existing targets (e.g. inside a read-only bind) are fine as long as they are not
	   symlinks: open_beneath refuses those. */
	return open_beneath(c, rootfd, rel, O_PATH | (dir ? O_DIRECTORY : 0));
}

static int attach(int tree, int target)
{
	if (move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		return -errno;
	return 0;
}

static int new_fs(const char *type, const char *size, const char *mode, unsigned attrs)
{
	int fs = fsopen(type, FSOPEN_CLOEXEC);
	if (fs < 0)
		return -errno;
	if ((size && fsconfig(fs, FSCONFIG_SET_STRING, "size", size, 0) < 0) ||
	    (mode && fsconfig(fs, FSCONFIG_SET_STRING, "mode", mode, 0) < 0) ||
	    fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		int e = errno;
		close(fs);
		return -e;
	}
	int m = fsmount(fs, FSMOUNT_CLOEXEC, attrs);
	int e = errno;
	close(fs);
	return m >= 0 ? m : -e;
}

static int set_attrs(int fd, uint64_t set, bool recursive)
{
	struct mount_attr a = {.attr_set = set};
	unsigned flags = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
	if (mount_setattr(fd, "", flags, &a, sizeof(a)) < 0)
		return -errno;
	return 0;
}

static void u64_str(char *buf, size_t size, uint64_t v)
{
	char tmp[24];
	size_t n = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < sizeof(tmp));
	size_t i = 0;
	for (; i < n && i + 1 < size; i++)
		buf[i] = tmp[n - 1 - i];
	buf[i] = '\0';
}

static int write_file(int rootfd, const struct jail__file *f)
{
	const char *slash = strrchr(f->path, '/');
	char parent[256];
	int dfd;
	const char *last = f->path;
	if (slash) {
		size_t n = (size_t)(slash - f->path);
		if (n >= sizeof(parent))
			return -ENAMETOOLONG;
		memcpy(parent, f->path, n);
		parent[n] = '\0';
		last = slash + 1;
		dfd = walk_dirs(rootfd, parent, true);
		if (dfd < 0)
			return dfd;
	} else {
		dfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
		if (dfd < 0)
			return -errno;
	}
	int fd = openat(dfd, last, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, f->mode);
	int e = errno;
	close(dfd);
	if (fd < 0)
		return -e;
	ssize_t w = st_write_all(fd, f->data, strlen(f->data));
	close(fd);
	return w < 0 ? (int)w : 0;
}

static int make_link(int rootfd, const struct jail__symlink *l)
{
	const char *slash = strrchr(l->path, '/');
	char parent[256];
	int dfd;
	const char *last = l->path;
	if (slash) {
		size_t n = (size_t)(slash - l->path);
		if (n >= sizeof(parent))
			return -ENAMETOOLONG;
		memcpy(parent, l->path, n);
		parent[n] = '\0';
		last = slash + 1;
		dfd = walk_dirs(rootfd, parent, true);
		if (dfd < 0)
			return dfd;
	} else {
		dfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
		if (dfd < 0)
			return -errno;
	}
	int r = symlinkat(l->target, dfd, last) < 0 ? -errno : 0;
	close(dfd);
	return r;
}

#define FAIL(s, e)           \
	do {                 \
		*step = (s); \
		ret = (e);   \
		goto out;    \
	} while (0)

static void detail_set(char *detail, size_t len, const char *a, const char *b, const char *c)
{
	size_t n = 0;
	const char *parts[3] = {a, b, c};
	for (int k = 0; k < 3; k++)
		for (const char *s = parts[k]; s && *s && n + 1 < len; s++)
			detail[n++] = *s;
	detail[n] = '\0';
}

int jail__mount_root(struct jail__child *c, const char **step, char *detail, size_t detail_len)
{
	int trees[MAX_MNTS];
	int rootfd = -1, devfd = -1, ret = 0;
	size_t n = c->n_mnts < MAX_MNTS ? c->n_mnts : MAX_MNTS;
	for (size_t i = 0; i < MAX_MNTS; i++)
		trees[i] = -1;

	*step = "make mounts private";
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		FAIL("make mounts private", -errno);

	/* 1. Clone every bind source while the host tree is still as the caller sees it. */
	for (size_t i = 0; i < n; i++) {
		struct jail__mnt *m = &c->mnts[i];
		if (m->kind == JAIL_MOUNT_TMPFS)
			continue;
		int t =
		    open_tree(AT_FDCWD, m->src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
		if (t < 0) {
			if (m->optional && errno == ENOENT)
				continue;
			detail_set(detail, detail_len, "'", m->src, "'");
			FAIL(m->kind == JAIL_MOUNT_RO_BIND ? "ro-bind source" : "bind source",
			     -errno);
		}
		uint64_t attrs = m->dev ? MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC
		                        : MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
		if (m->kind == JAIL_MOUNT_RO_BIND)
			attrs |= MOUNT_ATTR_RDONLY;
		int r = set_attrs(t, attrs, true);
		if (r < 0) {
			close(t);
			detail_set(detail, detail_len, "'", m->src, "'");
			FAIL("set bind mount flags", r);
		}
		trees[i] = t;
	}

	/* 2. The new root: a small tmpfs, attached over the old /tmp (private to us). */
	rootfd = new_fs("tmpfs", "4m", "0755", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
	if (rootfd < 0)
		FAIL("mount root tmpfs", rootfd);
	{
		int r = -ENOENT;
		static const char *const spots[] = {"/tmp", "/mnt", "/"};
		for (size_t i = 0; i < ST_ARRAY_SIZE(spots) && r < 0; i++)
			r = move_mount(rootfd, "", AT_FDCWD, spots[i], MOVE_MOUNT_F_EMPTY_PATH) < 0
			        ? -errno
			        : 0;
		if (r < 0)
			FAIL("attach root tmpfs", r);
	}

	/* 3. Generated files and symlinks (/etc, /bin -> usr/bin on merged-/usr hosts, ...). */
	for (size_t i = 0; i < c->n_files; i++) {
		int r = write_file(rootfd, &c->files[i]);
		if (r < 0) {
			detail_set(detail, detail_len, "\'/", c->files[i].path, "\'");
			FAIL("write file", r);
		}
	}
	for (size_t i = 0; i < c->n_links; i++) {
		int r = make_link(rootfd, &c->links[i]);
		if (r < 0) {
			detail_set(detail, detail_len, "\'/", c->links[i].path, "\'");
			FAIL("create symlink", r);
		}
	}

	/* 4. Mounts in order: binds and tmpfs. */
	for (size_t i = 0; i < n; i++) {
		struct jail__mnt *m = &c->mnts[i];
		if (m->kind != JAIL_MOUNT_TMPFS && trees[i] < 0)
			continue; /* optional and missing */
		int tfd = make_target(c, rootfd, m->dst, m->kind == JAIL_MOUNT_TMPFS || m->is_dir);
		if (tfd < 0) {
			detail_set(detail, detail_len, "\'/", m->dst, "\'");
			FAIL("create mount point", tfd);
		}
		int r;
		if (m->kind == JAIL_MOUNT_TMPFS) {
			char size[32];
			u64_str(size, sizeof(size), m->size ? m->size : 64u << 20);
			const char *mode = strcmp(m->dst, "dev") == 0 ? "0755" : "1777";
			int fs = new_fs("tmpfs", size, mode, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
			if (fs < 0) {
				close(tfd);
				detail_set(detail, detail_len, "\'/", m->dst, "\'");
				FAIL("mount tmpfs", fs);
			}
			r = attach(fs, tfd);
			if (r == 0 && strcmp(m->dst, "dev") == 0)
				devfd = fs;
			else
				close(fs);
		} else {
			r = attach(trees[i], tfd);
		}
		close(tfd);
		if (r < 0) {
			detail_set(detail, detail_len, "\'/", m->dst, "\'");
			FAIL(m->kind == JAIL_MOUNT_TMPFS ? "mount tmpfs" : "bind mount", r);
		}
	}

	/* The stdio links of /dev, made in the /dev tmpfs itself. */
	if (devfd >= 0) {
		static const char *const dl[][2] = {{"/proc/self/fd", "fd"},
		                                    {"/proc/self/fd/0", "stdin"},
		                                    {"/proc/self/fd/1", "stdout"},
		                                    {"/proc/self/fd/2", "stderr"}};
		for (size_t i = 0; i < ST_ARRAY_SIZE(dl); i++)
			if (symlinkat(dl[i][0], devfd, dl[i][1]) < 0 && errno != EEXIST)
				FAIL("create /dev links", -errno);
	}

	/* 5. A fresh /proc for our pid namespace. */
	{
		int pfd = new_fs("proc", NULL, NULL,
		                 MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
		if (pfd < 0)
			FAIL("mount /proc", pfd);
		int tfd = make_target(c, rootfd, "proc", true);
		if (tfd < 0) {
			close(pfd);
			FAIL("create mount point /proc", tfd);
		}
		int r = attach(pfd, tfd);
		close(tfd);
		close(pfd);
		if (r < 0)
			FAIL("mount /proc", r);
	}

	/* 6. Freeze the skeleton, then switch roots. */
	if (devfd >= 0) {
		int r = set_attrs(devfd, MOUNT_ATTR_RDONLY, false);
		if (r < 0)
			FAIL("make /dev read-only", r);
	}
	{
		int r = set_attrs(rootfd, MOUNT_ATTR_RDONLY, false);
		if (r < 0)
			FAIL("make root read-only", r);
	}
	if (fchdir(rootfd) < 0)
		FAIL("enter new root", -errno);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		FAIL("pivot_root", -errno);
	if (umount2(".", MNT_DETACH) < 0)
		FAIL("detach old root", -errno);
	if (chdir("/") < 0)
		FAIL("chdir /", -errno);
out:
	for (size_t i = 0; i < MAX_MNTS; i++)
		if (trees[i] >= 0)
			close(trees[i]);
	if (rootfd >= 0)
		close(rootfd);
	if (devfd >= 0)
		close(devfd);
	return ret;
}
