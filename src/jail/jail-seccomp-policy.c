/*
 * jail-seccomp-policy.c - the seccomp policies, compiled with libseccomp into BPF.
 *
 * A policy is a deny-by-default allowlist. Syscalls fall in four groups:
 *   - allowed without looking at arguments (most of them: the kernel caches constant
 *     actions, so these cost nothing per call);
 *   - allowed with an argument check (socket families, clone without CLONE_NEW*, ioctl except
 *     TIOCSTI/TIOCLINUX compared on the low 32 bits, personality queries);
 *   - "dangerous": kernel attack surface or escape tools (ptrace, bpf, mount, unshare, ...).
 *     They end the jail as a sandbox_violation: with a supervisor listening they go to a
 *     seccomp user-notify listener, so the supervisor learns the syscall number and can name
 *     it; without one (self-jailing zygotes) they kill the process (SECCOMP_RET_KILL_PROCESS);
 *   - everything else: EPERM (clone3: ENOSYS, so libc falls back to clone, whose flags we can
 *     inspect).
 * Only the native x86_64 ABI is accepted; i386 (int 0x80) and x32 (nr | 0x40000000) calls kill
 * the process (libseccomp's bad-arch action, and its x32 range check).
 *
 * This file is also compiled into the build-time generator (tools/jail-seccomp-gen.c) that
 * writes every policy's program into the library (jail-seccomp.c uses those, and compiles
 * here at run time only for extra syscalls): it must not depend on anything but libseccomp
 * and src/common. Stateless; every call builds from scratch.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail/jail-internal.h"

/* Allowed without argument checks: what shells, coreutils, python3 and node need. */
static const char *const allowed[] = {
    "read",
    "write",
    "open",
    "openat",
    "openat2",
    "close",
    "close_range",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "poll",
    "ppoll",
    "lseek",
    "mmap",
    "mprotect",
    "munmap",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "access",
    "faccessat",
    "faccessat2",
    "pipe",
    "pipe2",
    "select",
    "pselect6",
    "sched_yield",
    "mremap",
    "msync",
    "mincore",
    "madvise",
    "dup",
    "dup2",
    "dup3",
    "pause",
    "nanosleep",
    "clock_nanosleep",
    "getitimer",
    "setitimer",
    "alarm",
    "getpid",
    "getppid",
    "gettid",
    "sendfile",
    "connect",
    "accept",
    "accept4",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    "shutdown",
    "bind",
    "listen",
    "getsockname",
    "getpeername",
    "setsockopt",
    "getsockopt",
    "fork",
    "vfork",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "kill",
    "tgkill",
    "tkill",
    "uname",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "sync",
    "syncfs",
    "truncate",
    "ftruncate",
    "getdents",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "creat",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "symlink",
    "symlinkat",
    "readlink",
    "readlinkat",
    "chmod",
    "fchmod",
    "fchmodat",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "umask",
    "gettimeofday",
    "getrlimit",
    "setrlimit",
    "prlimit64",
    "getrusage",
    "sysinfo",
    "times",
    "getuid",
    "getgid",
    "geteuid",
    "getegid",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "getresuid",
    "getresgid",
    "getgroups",
    "setgroups",
    "getpgrp",
    "getpgid",
    "setpgid",
    "getsid",
    "setsid",
    "capget",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "statfs",
    "fstatfs",
    "getpriority",
    "setpriority",
    "sched_getparam",
    "sched_setparam",
    "sched_getscheduler",
    "sched_setscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_getaffinity",
    "sched_getattr",
    "sched_setattr",
    "prctl",
    "arch_prctl",
    "time",
    "futex",
    "futex_waitv",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    "eventfd",
    "eventfd2",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "clock_gettime",
    "clock_getres",
    "getrandom",
    "memfd_create",
    "splice",
    "tee",
    "sync_file_range",
    "fallocate",
    "fadvise64",
    "readahead",
    "copy_file_range",
    "rseq",
    "membarrier",
    "pidfd_open",
    "pidfd_send_signal",
    "getcpu",
    "get_mempolicy",
    "mlock",
    "mlock2",
    "munlock",
    "shmget",
    "shmat",
    "shmctl",
    "shmdt",
    "semget",
    "semop",
    "semctl",
    "semtimedop",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "set_thread_area",
    "get_thread_area",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "seccomp",
    "restart_syscall",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "io_setup",
    "io_destroy",
    "io_submit",
    "io_cancel",
    "io_getevents",
    "io_pgetevents",
    "process_madvise",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
};

/* Escape tools and kernel attack surface: a call ends the jail as a violation. */
static const char *const dangerous[] = {
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "unshare",
    "setns",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "open_by_handle_at",
    "name_to_handle_at",
    "pidfd_getfd",
    "iopl",
    "ioperm",
    "modify_ldt",
    "quotactl",
    "lookup_dcookie",
    "syslog",
    "vhangup",
    "uselib",
    "kcmp",
    "move_pages",
    "migrate_pages",
    "set_mempolicy",
    "mbind",
};

/* Namespace flags refused in clone(2). CLONE_NEWTIME (0x80) lives in clone's exit-signal
   byte and can only be asked for through clone3/unshare, both refused already. */
#define NS_FLAGS                                                                               \
	((uint64_t)(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | \
	            CLONE_NEWNET | CLONE_NEWCGROUP))

static const char *const policy_names[] = {"default", "egress", "jsc", "python", NULL};

const char *const *jail_seccomp_policies(void)
{
	return policy_names;
}

const char *jail_syscall_name(int nr)
{
	/* libseccomp returns a heap string; keep a small per-call static-free answer by looking
	   it up in its table and caching nothing: callers copy it. */
	static __thread char buf[64];
	char *n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, nr);
	if (n == NULL)
		return NULL;
	st_strlcpy(buf, n, sizeof(buf));
	free(n);
	return buf;
}

static int add_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
                    const struct scmp_arg_cmp *cmp, struct st_error **err)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR)
		return 0; /* not on this architecture/kernel headers: nothing to allow or deny */
	int r = seccomp_rule_add_array(ctx, action, nr, n, cmp);
	if (r < 0)
		return st_error_make(err, -r, "seccomp rule for '%s'", name);
	return 0;
}

static int build(const char *policy, const char *const *extra, bool notify, scmp_filter_ctx *out,
                 struct st_error **err)
{
	bool egress;
	if (policy == NULL || strcmp(policy, "default") == 0 || strcmp(policy, "jsc") == 0 ||
	    strcmp(policy, "python") == 0)
		egress = false;
	else if (strcmp(policy, "egress") == 0)
		egress = true;
	else
		return st_error_make(
		    err, EINVAL,
		    "unknown seccomp policy '%s' (known: default, egress, jsc, python)", policy);

	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	if (ctx == NULL)
		return st_error_make(err, ENOMEM, "seccomp_init");
	int r;
	/* i386 and x32 calls: the process dies; native arch only (seccomp_init added it). */
	if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0 ||
	    (r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0) {
		seccomp_release(ctx);
		return st_error_make(err, -r, "seccomp attributes");
	}
	uint32_t bad = notify ? SCMP_ACT_NOTIFY : SCMP_ACT_KILL_PROCESS;
	int e = 0;
	for (size_t i = 0; i < ST_ARRAY_SIZE(allowed) && e == 0; i++)
		e = add_rule(ctx, SCMP_ACT_ALLOW, allowed[i], 0, NULL, err);
	for (size_t i = 0; extra && extra[i] && e == 0; i++)
		e = add_rule(ctx, SCMP_ACT_ALLOW, extra[i], 0, NULL, err);
	for (size_t i = 0; i < ST_ARRAY_SIZE(dangerous) && e == 0; i++) {
		bool extra_allowed = false;
		for (size_t j = 0; extra && extra[j]; j++)
			if (strcmp(extra[j], dangerous[i]) == 0)
				extra_allowed = true;
		if (!extra_allowed)
			e = add_rule(ctx, bad, dangerous[i], 0, NULL, err);
	}
	if (e == 0)
		e = add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err);
	/* clone only without namespace flags (threads and fork); with them: EPERM (default). */
	struct scmp_arg_cmp c_clone = SCMP_A0(SCMP_CMP_MASKED_EQ, NS_FLAGS, 0);
	if (e == 0)
		e = add_rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &c_clone, err);
	/* Sockets: AF_UNIX always; AF_INET/AF_INET6 with egress; others fail with
	   EAFNOSUPPORT so probing programs (glibc's netlink use) carry on. */
	int fams[] = {AF_UNIX, AF_INET, AF_INET6};
	for (size_t i = 0; i < ST_ARRAY_SIZE(fams) && e == 0; i++) {
		if (!egress && fams[i] != AF_UNIX)
			continue;
		struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_EQ, (uint64_t)fams[i]);
		e = add_rule(ctx, SCMP_ACT_ALLOW, "socket", 1, &c, err);
		if (e == 0 && fams[i] == AF_UNIX)
			e = add_rule(ctx, SCMP_ACT_ALLOW, "socketpair", 1, &c, err);
	}
	/* Other families: AF_UNSPEC, the ones between, and everything above the highest allowed. */
	uint64_t top = egress ? AF_INET6 : AF_UNIX;
	for (uint64_t f = 0; f < top && e == 0; f++) {
		if (f == AF_UNIX || (egress && f == AF_INET))
			continue;
		struct scmp_arg_cmp cf = SCMP_A0(SCMP_CMP_EQ, f);
		e = add_rule(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket", 1, &cf, err);
	}
	struct scmp_arg_cmp c_top = SCMP_A0(SCMP_CMP_GT, top);
	if (e == 0)
		e = add_rule(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket", 1, &c_top, err);
	/* ioctl is allowed here; TIOCSTI/TIOCLINUX are refused by a hand-written prefix (see
	   bpf_prefix), as are file locks: libseccomp cannot combine "allow" with a masked "deny"
	   on one syscall. */
	if (e == 0)
		e = add_rule(ctx, SCMP_ACT_ALLOW, "ioctl", 0, NULL, err);
	/* personality: queries and the plain Linux persona only (no READ_IMPLIES_EXEC). */
	uint64_t personas[] = {0 /* PER_LINUX */, 0xffffffffu /* query */};
	for (size_t i = 0; i < ST_ARRAY_SIZE(personas) && e == 0; i++) {
		struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_EQ, personas[i]);
		e = add_rule(ctx, SCMP_ACT_ALLOW, "personality", 1, &c, err);
	}
	if (e < 0) {
		seccomp_release(ctx);
		return e;
	}
	*out = ctx;
	return 0;
}

/*
 * Prepended to libseccomp's program, for what libseccomp cannot express next to an
 * unconditional "allow" of the same syscall (and compared on the low 32 bits only, because
 * the kernel truncates these arguments to an int: CVE-2019-10063 set high bits to slip past):
 *   - ioctl(fd, TIOCSTI or TIOCLINUX, ...) fails with EPERM (terminal injection);
 *   - file locks are a covert channel between jails that bind the same host file, so flock()
 *     and fcntl(F_SETLK/F_SETLKW/F_OFD_SETLK/F_OFD_SETLKW) succeed without taking a lock, and
 *     fcntl(F_GETLK/F_OFD_GETLK) fails with ENOLCK: nothing about another jail's locks can be
 *     observed. (Locking between processes of one jail is therefore advisory-only too.)
 * libseccomp's program starts by loading the architecture itself, so a prefix cannot disturb
 * it (BPF jumps are relative). Offsets: target = pc + 1 + off.
 */
#define SECCOMP_DATA_ARCH 4
#define SECCOMP_DATA_NR 0
#define SECCOMP_DATA_ARG1_LO 24 /* offsetof(args[1]) on little-endian x86_64 */
#define RET_ERRNO(e) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((e)&SECCOMP_RET_DATA))
static const struct sock_filter bpf_prefix[] = {
    /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SECCOMP_DATA_ARCH),
    /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 19),
    /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SECCOMP_DATA_NR),
    /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 4),
    /* 4 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SECCOMP_DATA_ARG1_LO),
    /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 12, 0),
    /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 11, 0),
    /* 7 */ BPF_STMT(BPF_JMP | BPF_JA, 13),
    /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_flock, 10, 0),
    /* 9 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fcntl, 0, 11),
    /* 10 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SECCOMP_DATA_ARG1_LO),
    /* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, F_SETLK, 7, 0),
    /* 12 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, F_SETLKW, 6, 0),
    /* 13 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, F_OFD_SETLK, 5, 0),
    /* 14 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, F_OFD_SETLKW, 4, 0),
    /* 15 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, F_GETLK, 4, 0),
    /* 16 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, F_OFD_GETLK, 3, 0),
    /* 17 */ BPF_STMT(BPF_JMP | BPF_JA, 3),
    /* 18 */ RET_ERRNO(EPERM),
    /* 19 */ RET_ERRNO(0),
    /* 20 */ RET_ERRNO(ENOLCK),
    /* 21: libseccomp's program */
};

static int export_bpf(scmp_filter_ctx ctx, struct jail__bpf **out, struct st_error **err)
{
	/* libseccomp 2.5 exports to an fd only: go through a memfd. */
	cleanup_close int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
	if (fd < 0)
		return st_error_make(err, errno, "memfd_create");
	int r = seccomp_export_bpf(ctx, fd);
	if (r < 0)
		return st_error_make(err, -r, "seccomp_export_bpf");
	off_t size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 ||
	    size / (off_t)sizeof(struct sock_filter) + ST_ARRAY_SIZE(bpf_prefix) > BPF_MAXINSNS)
		return st_error_make(err, EINVAL, "seccomp filter has a bad size (%lld bytes)",
		                     (long long)size);
	size_t np = ST_ARRAY_SIZE(bpf_prefix);
	struct sock_filter *insns = st_xmalloc((size_t)size + sizeof(bpf_prefix));
	memcpy(insns, bpf_prefix, sizeof(bpf_prefix));
	if (pread(fd, insns + np, (size_t)size, 0) != size) {
		free(insns);
		return st_error_make(err, EIO, "cannot read back the seccomp filter");
	}
	struct jail__bpf *b = st_xcalloc(1, sizeof(*b));
	b->insns = insns;
	b->len = (unsigned short)(np + (size_t)size / sizeof(struct sock_filter));
	*out = b;
	return 0;
}

int jail__seccomp_build(const char *policy, const char *const *extra, bool notify,
                        struct jail__bpf **out, struct st_error **err)
{
	scmp_filter_ctx ctx;
	int r = build(policy, extra, notify, &ctx, err);
	if (r < 0)
		return r;
	r = export_bpf(ctx, out, err);
	seccomp_release(ctx);
	return r;
}

void jail__bpf_free(const struct jail__bpf *bpf)
{
	if (bpf == NULL)
		return;
	struct jail__bpf *b = (struct jail__bpf *)(uintptr_t)bpf;
	free((void *)(uintptr_t)b->insns);
	free(b);
}

int jail_seccomp_export_pfc(const char *policy, int fd, struct st_error **err)
{
	scmp_filter_ctx ctx;
	int r = build(policy, NULL, true, &ctx, err);
	if (r < 0)
		return r;
	r = seccomp_export_pfc(ctx, fd);
	seccomp_release(ctx);
	if (r < 0)
		return st_error_make(err, -r, "seccomp_export_pfc");
	return 0;
}
