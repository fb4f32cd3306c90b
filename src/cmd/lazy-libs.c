/*
 * lazy-libs.c - the `stockade` executable links only libc and jansson; the libraries that
 * only some commands need (libcurl, libpq, libarchive, libmicrohttpd, SQLite, OpenSSL,
 * libzstd, libyaml, libseccomp, libcap) are called through lazy-binding trampolines generated
 * at build time (scripts/lazy-trampolines.sh), and this file loads them.
 *
 * Why: loading and relocating those libraries and what they pull in (GnuTLS, Kerberos,
 * LDAP, ...) cost tens of milliseconds per start, which `stockade jail` and `stockade doctor`
 * should not pay (their seccomp programs are compiled at build time; libseccomp is loaded
 * only to name a violation or to compile extra allowed syscalls).
 *
 * When: a constructor looks at argv[1]. For `jail`, `doctor`, `sandbox-init` (the init of
 * a `runtime: jail` agent sandbox, which execs the agent), help and version nothing is
 * loaded up front; a trampoline that is called anyway loads its library then (these commands
 * are single-threaded). Everything else (the other commands, and the engine zygotes, which run
 * with argv[0] only) loads all of them before main(), exactly when a normally linked program
 * would have: the service starts threads and the zygotes fork, and a child must never be the
 * first to dlopen (another thread may hold the loader's or malloc's locks at fork time, a
 * jailed child may not see the library, and each execution would pay the load again).
 *
 * Invariants: a slot holds either its trampoline's resolver entry or the real function; it is
 * written once, under `lock`, with a release store (trampolines read it with a plain indirect
 * jump, which is fine: a stale read only takes the resolver path once more). A library that
 * cannot be loaded ends the process with a message naming it: there is no partial mode.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

/* From the generated trampolines ($(OUT)/gen/lazy-trampolines.S). */
extern void *cmd__lazy_slots[];
extern const char *const cmd__lazy_names[];
extern const unsigned char cmd__lazy_lib_of[];
extern unsigned char cmd__lazy_done[]; /* 1 once the slot holds the real function */
extern const char *const cmd__lazy_libs[];
extern const unsigned cmd__lazy_n_syms;
extern const unsigned cmd__lazy_n_libs;

void *cmd__lazy_resolve(unsigned idx);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *handles[64];

__attribute__((noreturn)) static void die(const char *what, const char *name)
{
	const char *why = dlerror();
	char msg[1024];
	int n = snprintf(msg, sizeof(msg),
	                 "stockade: cannot load %s: %s (install the dependencies: "
	                 "scripts/deps.sh)\n",
	                 name, why ? why : what);
	if (n > 0)
		(void)st_write_all(2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
	_exit(127);
}

/* Called with lock held. */
static void *lib_handle(unsigned lib)
{
	if (handles[lib] == NULL) {
		/* RTLD_GLOBAL: the same scope a linked library has, so libraries loaded later
		   (the language runtimes' object) bind to the same copies. */
		handles[lib] = dlopen(cmd__lazy_libs[lib], RTLD_NOW | RTLD_GLOBAL);
		if (handles[lib] == NULL)
			die("dlopen failed", cmd__lazy_libs[lib]);
	}
	return handles[lib];
}

static void *resolve_locked(unsigned idx)
{
	if (cmd__lazy_done[idx])
		return cmd__lazy_slots[idx];
	void *h = lib_handle(cmd__lazy_lib_of[idx]);
	dlerror();
	void *f = dlsym(h, cmd__lazy_names[idx]);
	if (f == NULL)
		die("symbol not found", cmd__lazy_names[idx]);
	__atomic_store_n(&cmd__lazy_slots[idx], f, __ATOMIC_RELEASE);
	cmd__lazy_done[idx] = 1;
	return f;
}

/* The trampolines' slow path (see scripts/lazy-trampolines.sh): returns the function to jump
   to. */
void *cmd__lazy_resolve(unsigned idx)
{
	pthread_mutex_lock(&lock);
	void *f = resolve_locked(idx);
	pthread_mutex_unlock(&lock);
	return f;
}

/* glibc passes main's arguments to the executable's constructors. */
__attribute__((constructor)) static void lazy_init(int argc, char **argv, char **envp)
{
	(void)envp;
	static const char *const lean[] = {"jail",   "doctor", "sandbox-init", "help",
	                                   "--help", "-h",     "version",      "--version"};
	/* Anything else loads everything: the other commands, and the engine zygotes, which
	   the executable runs with only argv[0] ("stockade-zygote-js") and which fork. */
	if (argc >= 2 && argv != NULL && argv[1] != NULL)
		for (size_t i = 0; i < ST_ARRAY_SIZE(lean); i++)
			if (strcmp(argv[1], lean[i]) == 0)
				return;
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < cmd__lazy_n_syms; i++)
		(void)resolve_locked(i);
	pthread_mutex_unlock(&lock);
}
