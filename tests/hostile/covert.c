/*
 * covert.c - channels between two jails running at the same time.
 *   flock-hold PATH SEC     take LOCK_EX (flock) and an OFD write lock on PATH, print LOCKED,
 *                           keep them SEC seconds
 *   flock-probe PATH        from a second jail: a lock held by the first must not be visible
 *   shm-write NAME TOKEN    leave TOKEN in /dev/shm/NAME, print WRITTEN, stay 3 s
 *   shm-read NAME           from a second jail: /dev/shm/NAME must not exist
 *   sysv-hold KEY SEC       create a SysV shm segment, message queue and semaphore with KEY
 *   sysv-probe KEY          from a second jail: none of them visible (own IPC namespace)
 */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

#include "hostile.h"

int main(int argc, char **argv)
{
	h_variant = argc > 1 ? argv[1] : "flock-probe";
	const char *v = h_variant, *a2 = argc > 2 ? argv[2] : "", *a3 = argc > 3 ? argv[3] : "1";
	if (!strcmp(v, "flock-hold")) {
		int fd = open(a2, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			BLOCKED("open %s: %s", a2, strerror(errno));
			return h_finish();
		}
		int r1 = flock(fd, LOCK_EX | LOCK_NB);
		struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
		int r2 = fcntl(fd, F_OFD_SETLK, &fl);
		printf("LOCKED flock=%d ofd=%d\n", r1, r2);
		fflush(stdout);
		sleep((unsigned)strtol(a3, NULL, 10));
		BLOCKED("holder done");
	} else if (!strcmp(v, "flock-probe")) {
		int fd = open(a2, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			fd = open(a2, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			BLOCKED("open %s: %s", a2, strerror(errno));
			return h_finish();
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK)
			ESCAPED("flock on %s is held by the other jail: a covert channel", a2);
		else
			BLOCKED("flock: no contention visible (%s)", strerror(errno));
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
			ESCAPED("OFD lock on %s held by the other jail is visible", a2);
		else
			BLOCKED("OFD lock: none visible");
	} else if (!strcmp(v, "shm-write")) {
		char p[256];
		snprintf(p, sizeof p, "/dev/shm/%s", a2);
		int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
		if (fd < 0) {
			BLOCKED("create %s: %s", p, strerror(errno));
		} else {
			if (write(fd, a3, strlen(a3)) < 0)
				INFO("write: %s", strerror(errno));
			close(fd);
			printf("WRITTEN\n");
			fflush(stdout);
			sleep(3);
			BLOCKED("writer done");
		}
	} else if (!strcmp(v, "shm-read")) {
		char p[256], buf[256];
		snprintf(p, sizeof p, "/dev/shm/%s", a2);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, buf, sizeof buf - 1);
			buf[n > 0 ? n : 0] = 0;
			ESCAPED("read the other jail's %s: %s", p, buf);
		} else {
			BLOCKED("open %s: %s", p, strerror(errno));
		}
	} else if (!strcmp(v, "sysv-hold")) {
		key_t k = (key_t)strtol(a2, NULL, 0);
		int s = shmget(k, 4096, IPC_CREAT | 0666);
		int q = msgget(k, IPC_CREAT | 0666);
		int m = semget(k, 1, IPC_CREAT | 0666);
		printf("LOCKED shm=%d msg=%d sem=%d\n", s, q, m);
		fflush(stdout);
		sleep((unsigned)strtol(a3, NULL, 10));
		BLOCKED("holder done");
	} else if (!strcmp(v, "sysv-probe")) {
		key_t k = (key_t)strtol(a2, NULL, 0);
		int s = shmget(k, 0, 0), q = msgget(k, 0), m = semget(k, 0, 0);
		if (s >= 0)
			ESCAPED("SysV shm key %s visible (id %d)", a2, s);
		if (q >= 0)
			ESCAPED("SysV msg queue key %s visible (id %d)", a2, q);
		if (m >= 0)
			ESCAPED("SysV semaphore key %s visible (id %d)", a2, m);
		/* Ids are small integers: probe the first few directly too. */
		for (int id = 0; id < 64; id++) {
			struct shmid_ds ds;
			if (shmctl(id, IPC_STAT, &ds) == 0)
				ESCAPED("shm id %d visible (key 0x%x)", id, (unsigned)ds.shm_perm.__key);
		}
		if (!h_escaped)
			BLOCKED("no SysV object of the other jail visible");
	}
	return h_finish();
}
