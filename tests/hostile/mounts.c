/*
 * mounts.c - change the jail's filesystem view or leave it.
 *   mount-tmpfs    mount a tmpfs, mount proc, mount sysfs
 *   remount-rw     remount / and /usr read-write (MS_REMOUNT|MS_BIND), then write there
 *   umount         umount2 /proc and /usr to uncover what is beneath
 *   pivot-root     pivot_root into /tmp
 *   mknod          mknod a char device (1:1 /dev/mem) and a block device (8:0), open them
 *   chroot SECRET  the classic chroot-in-chroot escape, then look for the host path SECRET
 *   root-ro        write into /, /usr, /etc, /proc/self/root (read-only root)
 *   mountinfo P..  print /proc/self/mountinfo; ESCAPED if a listed path P is a mount point
 */
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include "hostile.h"

static void try_create(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (fd >= 0) {
		ESCAPED("created %s on the read-only root", path);
		close(fd);
		unlink(path);
	} else {
		BLOCKED("create %s: %s", path, strerror(errno));
	}
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "mount-tmpfs";
	const char *v = h_variant;
	if (!strcmp(v, "mount-tmpfs")) {
		mkdir("/tmp/m", 0700);
		EXPECT_FAIL(mount("tmpfs", "/tmp/m", "tmpfs", 0, "size=1m"), "mount tmpfs");
		EXPECT_FAIL(mount("proc", "/tmp/m", "proc", 0, NULL), "mount proc");
		EXPECT_FAIL(mount("sysfs", "/tmp/m", "sysfs", 0, NULL), "mount sysfs");
		EXPECT_FAIL(mount("/", "/tmp/m", NULL, MS_BIND | MS_REC, NULL), "bind mount /");
	} else if (!strcmp(v, "remount-rw")) {
		EXPECT_FAIL(mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL), "remount / rw");
		EXPECT_FAIL(mount(NULL, "/usr", NULL, MS_REMOUNT | MS_BIND, NULL), "remount /usr rw");
		try_create("/hostile-rw");
		try_create("/usr/hostile-rw");
	} else if (!strcmp(v, "umount")) {
		EXPECT_FAIL(umount2("/proc", MNT_DETACH), "umount2 /proc");
		EXPECT_FAIL(umount2("/usr", MNT_DETACH), "umount2 /usr");
		EXPECT_FAIL(umount2("/", MNT_DETACH), "umount2 /");
	} else if (!strcmp(v, "pivot-root")) {
		mkdir("/tmp/old", 0700);
		EXPECT_FAIL(syscall(SYS_pivot_root, "/tmp", "/tmp/old"), "pivot_root(/tmp)");
		EXPECT_FAIL(syscall(SYS_pivot_root, ".", "."), "pivot_root(.,.)");
	} else if (!strcmp(v, "mknod")) {
		long r = mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1));
		EXPECT_FAIL(r, "mknod c 1:1");
		if (r == 0) {
			int fd = open("/tmp/mem", O_RDONLY | O_CLOEXEC);
			EXPECT_FAIL(fd, "open the new /dev/mem node");
		}
		r = mknod("/tmp/sda", S_IFBLK | 0600, makedev(8, 0));
		EXPECT_FAIL(r, "mknod b 8:0");
		if (r == 0) {
			int fd = open("/tmp/sda", O_RDONLY | O_CLOEXEC);
			EXPECT_FAIL(fd, "open the new block node");
		}
		/* A fifo or socket node is harmless and may be allowed. */
	} else if (!strcmp(v, "chroot")) {
		const char *secret = argc > 2 ? argv[2] : "/HOST_SECRET";
		mkdir("/tmp/cr", 0700);
		long r = chroot("/tmp/cr");
		EXPECT_FAIL(r, "chroot(/tmp/cr)");
		for (int i = 0; i < 64; i++)
			if (chdir("..") < 0)
				break;
		if (r == 0)
			EXPECT_FAIL(chroot("."), "chroot(.) after walking up");
		int fd = open(secret, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			char buf[128] = "";
			ssize_t n = read(fd, buf, sizeof buf - 1);
			buf[n > 0 ? n : 0] = 0;
			ESCAPED("read host file %s: %s", secret, buf);
			close(fd);
		} else {
			BLOCKED("host file %s not reachable: %s", secret, strerror(errno));
		}
	} else if (!strcmp(v, "root-ro")) {
		try_create("/hostile-x");
		try_create("/usr/hostile-x");
		try_create("/etc/hostile-x");
		try_create("/proc/self/root/hostile-x");
	} else if (!strcmp(v, "mountinfo")) {
		FILE *f = fopen("/proc/self/mountinfo", "re");
		char line[4096];
		while (f && fgets(line, sizeof line, f)) {
			char mp[2048];
			if (sscanf(line, "%*s %*s %*s %*s %2047s", mp) != 1)
				continue;
			printf("MOUNT %s\n", mp);
			for (int i = 2; i < argc; i++)
				if (!strcmp(mp, argv[i]))
					ESCAPED("%s is a mount point", mp);
		}
		if (f)
			fclose(f);
		for (int i = 2; i < argc; i++) {
			struct stat st;
			if (lstat(argv[i], &st) == 0)
				INFO("%s exists (%s)", argv[i], S_ISLNK(st.st_mode) ? "symlink" : "not a symlink");
		}
		if (!h_escaped)
			BLOCKED("no listed path is a mount point");
	}
	return h_finish();
}
