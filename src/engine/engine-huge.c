/*
 * engine-huge.c - the zygote's memory on 2 MiB pages before its first fork.
 *
 * Why: every execution is a fork of the zygote, and a fresh address space pays for each page
 * it touches the first time, even a page it only reads. On a host whose page tables are
 * shadowed by the hypervisor that cost is large: measured here, a forked child reading 32 MiB
 * of its parent's 4 KiB pages takes 4.7 us per page (no guest page fault at all: the time is
 * spent below the kernel), against 0.02 us per page when the same memory is mapped with
 * 2 MiB pages. A trivial execution touches thousands of pages of the runtime's code and heap,
 * which is most of its latency. So, once the runtime is initialised and warm, the zygote:
 *
 *   - copies the read-only file mappings of its shared objects (code, read-only data) that
 *     span at least one aligned 2 MiB block into anonymous memory with the same protection,
 *     moved over the original with mremap (atomic; the content is identical), because this
 *     kernel cannot put file-backed code on huge pages (no CONFIG_READ_ONLY_THP_FOR_FS);
 *   - marks those and its anonymous writable mappings MADV_HUGEPAGE and collapses each
 *     aligned 2 MiB block that is at least half resident (MADV_COLLAPSE, Linux >= 6.1), so a
 *     sparse reservation is not filled with zeroes.
 *
 * fork() then shares 2 MiB mappings: fewer page-table entries to copy and to tear down, one
 * entry per 2 MiB for the child to touch. A child that writes into a huge page gets that
 * mapping split and the 4 KiB page copied, as before. Nothing here changes what any page
 * contains. It costs the zygote the code's size in anonymous memory (shared with every
 * child), and it is best effort: where the kernel refuses (no THP, "never" mode, no
 * MADV_COLLAPSE), the zygote keeps its 4 KiB pages and says so in a debug line.
 * STOCKADE_ENGINE_HUGEPAGES=0 turns it off (for measurements).
 */
#include <stdio.h>
#include <sys/mman.h>

#include "engine/engine-internal.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define HUGE_SZ (2ul << 20)
#define SMALL_SZ 4096ul
/* Larger anonymous mappings are reservations (a sanitizer's shadow memory, say), not heap:
   walking them 2 MiB at a time would cost more than it could gain. */
#define MAX_ANON (1ul << 30)

struct huge_stats {
	size_t remapped_bytes; /* file mappings moved to anonymous memory */
	size_t collapsed; /* 2 MiB blocks now huge */
	size_t refused; /* blocks the kernel would not collapse */
	int first_errno; /* why, for the first refusal */
};

static uintptr_t align_up(uintptr_t a)
{
	return (a + HUGE_SZ - 1) & ~(HUGE_SZ - 1);
}

/* Is at least half of [a, a + 2 MiB) resident? */
static bool mostly_resident(uintptr_t a)
{
	unsigned char vec[HUGE_SZ / SMALL_SZ];
	if (mincore((void *)a, HUGE_SZ, vec) < 0)
		return false;
	size_t n = 0;
	for (size_t i = 0; i < sizeof(vec); i++)
		n += vec[i] & 1;
	return n >= sizeof(vec) / 2;
}

static void collapse_range(uintptr_t start, uintptr_t end, bool check_resident,
                           struct huge_stats *st)
{
	uintptr_t a = align_up(start);
	uintptr_t e = end & ~(HUGE_SZ - 1);
	if (a >= e)
		return;
	if (madvise((void *)a, e - a, MADV_HUGEPAGE) < 0) {
		if (st->first_errno == 0)
			st->first_errno = errno;
		st->refused += (e - a) / HUGE_SZ;
		return;
	}
	for (; a < e; a += HUGE_SZ) {
		if (check_resident && !mostly_resident(a))
			continue;
		if (madvise((void *)a, HUGE_SZ, MADV_COLLAPSE) == 0) {
			st->collapsed++;
		} else {
			if (st->first_errno == 0)
				st->first_errno = errno;
			st->refused++;
		}
	}
}

/* Replace the file mapping [start, end) by an anonymous copy with protection prot. */
static int remap_anonymous(uintptr_t start, uintptr_t end, int prot)
{
	size_t len = end - start;
	void *tmp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (tmp == MAP_FAILED)
		return -errno;
	memcpy(tmp, (void *)start, len);
	if (mprotect(tmp, len, prot) < 0 ||
	    mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)start) == MAP_FAILED) {
		int e = errno;
		munmap(tmp, len);
		return -e;
	}
	return 0;
}

void engine__huge_pages(const char *what)
{
	const char *env = getenv(ENGINE_HUGEPAGES_ENV);
	if (env != NULL && strcmp(env, "0") == 0)
		return;
	FILE *f = fopen("/proc/self/maps", "re");
	if (f == NULL) {
		st_log(ST_LOG_DEBUG, "the %s zygote keeps 4 KiB pages: /proc/self/maps: %s", what,
		       strerror(errno));
		return;
	}
	/* Read the whole list first: remapping changes it. */
	struct {
		uintptr_t start, end;
		char perms[5];
		bool file;
	} maps[1024];
	size_t n = 0;
	char line[512];
	uintptr_t self = (uintptr_t)&engine__huge_pages;
	while (n < ST_ARRAY_SIZE(maps) && fgets(line, sizeof(line), f) != NULL) {
		unsigned long s, e, ino;
		char perms[5];
		if (sscanf(line, "%lx-%lx %4s %*s %*s %lu", &s, &e, perms, &ino) != 4)
			continue;
		if (self >= s && self < e)
			continue; /* our own code stays where it is */
		if (strchr(line, '[') != NULL && strstr(line, "[heap]") == NULL)
			continue; /* [stack], [vdso], [vvar]... */
		maps[n].start = s;
		maps[n].end = e;
		memcpy(maps[n].perms, perms, sizeof(perms));
		maps[n].file = ino != 0;
		n++;
	}
	fclose(f);

	struct huge_stats st = {0};
	for (size_t i = 0; i < n; i++) {
		uintptr_t s = maps[i].start, e = maps[i].end;
		if (align_up(s) + HUGE_SZ > e)
			continue; /* no whole aligned 2 MiB block inside */
		const char *p = maps[i].perms;
		if (p[3] != 'p')
			continue; /* shared mappings are not ours to copy */
		if (maps[i].file && p[1] == '-' && p[0] == 'r') {
			int prot = PROT_READ | (p[2] == 'x' ? PROT_EXEC : 0);
			int r = remap_anonymous(s, e, prot);
			if (r < 0) {
				if (st.first_errno == 0)
					st.first_errno = -r;
				continue;
			}
			st.remapped_bytes += e - s;
			collapse_range(s, e, false, &st);
		} else if (!maps[i].file && p[0] == 'r' && p[1] == 'w' && e - s <= MAX_ANON) {
			collapse_range(s, e, true, &st);
		}
	}
	st_log(ST_LOG_DEBUG,
	       "the %s zygote: %zu MiB of code moved to anonymous memory, %zu blocks of 2 MiB "
	       "collapsed, %zu refused%s%s",
	       what, st.remapped_bytes >> 20, st.collapsed, st.refused, st.first_errno ? ": " : "",
	       st.first_errno ? strerror(st.first_errno) : "");
}
