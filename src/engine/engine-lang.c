/*
 * engine-lang.c - finds and loads the language runtimes' shared object (libstockade-lang.so).
 *
 * Why a separate object: JavaScriptCore (with glib, ICU...) and libpython cost tens of shared
 * objects and ~100k relocations at every exec. Linked into the executable, `stockade jail`,
 * `stockade --version` and every other command paid that before main(). Only a zygote runs a
 * runtime, so only a zygote loads them, once, before it forks its first execution.
 *
 * Where: $STOCKADE_LANG_LIB when set (non-empty), else libstockade-lang.so in the directory of
 * the running executable (/proc/self/exe, so symlinks to the binary still work). The pool
 * passes STOCKADE_LANG_LIB on to the zygotes it starts.
 *
 * States: not loaded -> loaded (the handle is never closed: the runtimes live until exit).
 * Not thread-safe; the zygote is single-threaded when it calls this.
 */
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <unistd.h>

#include "engine/engine-internal.h"

static int lang_path(char *out, size_t size, struct st_error **err)
{
	const char *env = getenv(ENGINE_LANG_LIB_ENV);
	if (env != NULL && *env != '\0') {
		if (!st_strlcpy(out, env, size))
			return st_error_make(err, ENAMETOOLONG, "%s is too long",
			                     ENGINE_LANG_LIB_ENV);
		return 0;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		return st_error_make(
		    err, errno,
		    "cannot find the language runtimes: cannot read '/proc/self/exe' "
		    "(set %s to the path of %s)",
		    ENGINE_LANG_LIB_ENV, ENGINE_LANG_LIB_NAME);
	exe[n] = '\0';
	int w = snprintf(out, size, "%s/%s", dirname(exe), ENGINE_LANG_LIB_NAME);
	if (w < 0 || (size_t)w >= size)
		return st_error_make(err, ENAMETOOLONG, "the path of %s is too long",
		                     ENGINE_LANG_LIB_NAME);
	return 0;
}

const struct engine_lang_ops *engine__lang_load(struct st_error **err)
{
	static const struct engine_lang_ops *ops;
	if (ops != NULL)
		return ops;
	char path[PATH_MAX];
	if (lang_path(path, sizeof(path), err) < 0)
		return NULL;
	if (access(path, R_OK) < 0) {
		int e = errno;
		st_error_make(err, 0,
		              "cannot load the language runtimes from '%s': %s (%s is built next "
		              "to the stockade binary by 'make build'; set %s to its path if it "
		              "lives elsewhere)",
		              path, strerror(e), ENGINE_LANG_LIB_NAME, ENGINE_LANG_LIB_ENV);
		return NULL;
	}
	/* RTLD_GLOBAL: CPython's extension modules (numpy's) are not linked against libpython
	   and expect its symbols in the global scope; the JS side looks libpas's flag up there. */
	void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
	if (h == NULL) {
		st_error_make(err, 0, "cannot load the language runtimes from '%s': %s", path,
		              dlerror());
		return NULL;
	}
	const struct engine_lang_ops *o = dlsym(h, ENGINE_LANG_OPS_SYMBOL);
	if (o == NULL) {
		st_error_make(err, 0, "'%s' has no '%s': not a stockade language object", path,
		              ENGINE_LANG_OPS_SYMBOL);
		return NULL;
	}
	if (o->abi != ENGINE_LANG_ABI) {
		st_error_make(err, 0,
		              "'%s' was built for another stockade (interface %u, this binary "
		              "needs %u): rebuild both with 'make build'",
		              path, (unsigned)o->abi, (unsigned)ENGINE_LANG_ABI);
		return NULL;
	}
	ops = o;
	return ops;
}
