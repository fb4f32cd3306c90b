/*
 * kernel.c - syscalls that widen the kernel attack surface or act on the whole machine.
 * One variant per syscall family; each call uses arguments that would do something real if
 * the call were let through, but nothing destructive (reboot asks for CAD_OFF, swapon names a
 * regular file that is not a swap area, acct points into the jail's /tmp).
 *   bpf perf-event userfaultfd kexec modules reboot swap acct io-uring keyctl add-key
 *   request-key shocker (open_by_handle_at)
 * A refusal (EPERM/ENOSYS/EACCES) or a seccomp kill is a pass; EFAULT/EINVAL/EBADF mean the
 * kernel parsed the arguments, so the filter let the syscall through, which is reported.
 */
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <sys/syscall.h>

#include "hostile.h"

static void refused(long r, const char *what)
{
	if (r >= 0)
		ESCAPED("%s succeeded (%ld)", what, r);
	else if (errno == EPERM || errno == ENOSYS || errno == EACCES)
		BLOCKED("%s: %s", what, strerror(errno));
	else
		ESCAPED("%s reached the kernel: %s (the filter let it through)", what,
		        strerror(errno));
}

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "bpf";
	const char *v = h_variant;
	if (!strcmp(v, "bpf")) {
		union bpf_attr a;
		memset(&a, 0, sizeof a);
		a.map_type = BPF_MAP_TYPE_ARRAY;
		a.key_size = 4;
		a.value_size = 4;
		a.max_entries = 1;
		refused(syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a), "bpf(MAP_CREATE)");
	} else if (!strcmp(v, "perf-event")) {
		struct perf_event_attr a;
		memset(&a, 0, sizeof a);
		a.type = PERF_TYPE_SOFTWARE;
		a.size = sizeof a;
		a.config = PERF_COUNT_SW_CPU_CLOCK;
		a.exclude_kernel = 1;
		refused(syscall(SYS_perf_event_open, &a, 0, -1, -1, 0), "perf_event_open(self)");
	} else if (!strcmp(v, "userfaultfd")) {
		refused(syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */),
		        "userfaultfd");
		int fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (fd >= 0)
			ESCAPED("opened /dev/userfaultfd");
		else
			BLOCKED("open /dev/userfaultfd: %s", strerror(errno));
	} else if (!strcmp(v, "kexec")) {
		refused(syscall(SYS_kexec_load, 0, 0, NULL, 0), "kexec_load");
		refused(syscall(SYS_kexec_file_load, -1, -1, 0, "", 0), "kexec_file_load");
	} else if (!strcmp(v, "modules")) {
		refused(syscall(SYS_init_module, NULL, 0, ""), "init_module");
		refused(syscall(SYS_finit_module, 0, "", 0), "finit_module");
		refused(syscall(SYS_delete_module, "hostile_none", O_NONBLOCK), "delete_module");
	} else if (!strcmp(v, "reboot")) {
		refused(syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		                LINUX_REBOOT_CMD_CAD_OFF, NULL),
		        "reboot(CAD_OFF)");
	} else if (!strcmp(v, "swap")) {
		int fd = open("/tmp/swapfile", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
		refused(syscall(SYS_swapon, "/tmp/swapfile", 0), "swapon");
		refused(syscall(SYS_swapoff, "/tmp/swapfile"), "swapoff");
	} else if (!strcmp(v, "acct")) {
		int fd = open("/tmp/acct", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
		long r = syscall(SYS_acct, "/tmp/acct");
		refused(r, "acct(/tmp/acct)");
		if (r == 0)
			syscall(SYS_acct, NULL);
	} else if (!strcmp(v, "io-uring")) {
		struct io_uring_params p;
		memset(&p, 0, sizeof p);
		refused(syscall(SYS_io_uring_setup, 8, &p), "io_uring_setup");
		refused(syscall(SYS_io_uring_enter, 99, 1, 0, 0, NULL, 0), "io_uring_enter");
		refused(syscall(SYS_io_uring_register, 99, 0, NULL, 0), "io_uring_register");
	} else if (!strcmp(v, "keyctl")) {
		refused(syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, "hostile"),
		        "keyctl(JOIN_SESSION_KEYRING)");
		refused(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0),
		        "keyctl(GET_KEYRING_ID)");
	} else if (!strcmp(v, "add-key")) {
		refused(syscall(SYS_add_key, "user", "hostile", "covert", 6, -3 /* session */),
		        "add_key(user)");
	} else if (!strcmp(v, "request-key")) {
		refused(syscall(SYS_request_key, "user", "hostile", NULL, -3), "request_key(user)");
	} else if (!strcmp(v, "shocker")) {
		/* The 2014 Docker escape: a handle for inode 2 (the root of an ext4 filesystem)
		   opened relative to any fd on that filesystem reaches outside every bind. */
		struct {
			unsigned int handle_bytes;
			int handle_type;
			unsigned char f_handle[8];
		} h = {8, 1, {2, 0, 0, 0, 0, 0, 0, 0}};
		const char *anchors[] = {"/usr", "/etc", "/", "/tmp"};
		for (size_t i = 0; i < 4; i++) {
			int m = open(anchors[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (m < 0)
				continue;
			char what[80];
			snprintf(what, sizeof what, "open_by_handle_at(%s, inode 2)", anchors[i]);
			long fd = syscall(SYS_open_by_handle_at, m, &h, O_RDONLY | O_DIRECTORY);
			if (fd >= 0)
				ESCAPED("%s opened a directory", what);
			else if (errno == EPERM || errno == ENOSYS || errno == EACCES)
				BLOCKED("%s: %s", what, strerror(errno));
			else
				INFO("%s: %s", what, strerror(errno));
			close(m);
		}
		struct {
			unsigned int handle_bytes;
			int handle_type;
			unsigned char f_handle[128];
		} nh = {128, 0, {0}};
		int mnt = -1;
		long r = syscall(SYS_name_to_handle_at, AT_FDCWD, "/usr", &nh, &mnt, 0);
		INFO("name_to_handle_at(/usr) = %ld", r);
		if (!h_blocked && !h_escaped)
			BLOCKED("no handle opened");
	}
	return h_finish();
}
