/*
 * engine-js.c - the JavaScript engine: JavaScriptCore through its C API.
 *
 * Zygote: one context group and one global context are created, the host API installed
 * (engine-js-host.c) and a warm-up script run, all before any fork. JavaScriptCore has a helper
 * thread at that point which sleeps; the fork leaves it behind and the child starts its own
 * helpers as it needs them (measured: the child's GC and JIT work). Each child therefore
 * starts from the same pristine global object: a fork of a clean zygote is the fresh state.
 *
 * Child: the code becomes `(async function(<params name>) {<code>\n})` evaluated with the
 * source URL "code", on the first line so that line numbers are the user's own; the driver
 * (prelude) calls it, microtasks drain whenever control returns to C, due timers fire until
 * none is left, then the value is serialised with JSON.stringify (undefined -> null;
 * BigInt, cycles -> ResultError).
 */
#include <dirent.h>
#include <dlfcn.h>

#include "engine/engine-internal.h"

static JSGlobalContextRef ctx;

static JSValueRef call(JSObjectRef obj, const char *method, size_t argc, const JSValueRef *argv,
                       JSValueRef *exc);

static int count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/*
 * require() every top-level package of the operator's modules dir once, in the zygote: each
 * child then finds them loaded (a fork copy, so one execution's changes to a package are
 * invisible to the next) instead of parsing lodash on every execution.
 */
static void preload_packages(const char *dir)
{
	if (dir == NULL)
		return;
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	JSValueRef names[256];
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < ST_ARRAY_SIZE(names)) {
		if (e->d_name[0] == '.' || e->d_name[0] == '@')
			continue;
		JSStringRef s = JSStringCreateWithUTF8CString(e->d_name);
		names[n++] = JSValueMakeString(ctx, s);
		JSStringRelease(s);
	}
	closedir(d);
	JSObjectRef arr = JSObjectMakeArray(ctx, n, names, NULL);
	JSValueRef args[1] = {arr};
	JSObjectRef driver = engine__js_driver();
	call(driver, "preload", 1, args, NULL);
	call(driver, "reset", 0, NULL, NULL);
	JSGarbageCollect(ctx);
}

int engine__js_zygote_init(const char *modules_dir, struct st_error **err)
{
	/*
	 * Fork safety: the zygote must have no thread that can hold a lock when it forks.
	 * JavaScriptCore would start three kinds: libpas's scavenger (returns freed memory to the
	 * kernel on a timer, taking the heap lock: a fork at that moment leaves the child's
	 * allocator locked for ever), GC marker helpers and concurrent JIT workers. The scavenger
	 * is switched off through libpas's own flag (looked up at run time: it is internal to the
	 * library, a build without it simply keeps it), the others by JSC options, read from the
	 * environment on initialisation. Children are short-lived, so neither costs much.
	 */
	bool *scavenger = dlsym(RTLD_DEFAULT, "pas_scavenger_is_enabled");
	if (scavenger != NULL)
		*scavenger = false;
	setenv("JSC_useConcurrentJIT", "false", 1);
	setenv("JSC_useConcurrentGC", "false", 1);
	setenv("JSC_numberOfGCMarkers", "1", 1);
	JSContextGroupRef group = JSContextGroupCreate();
	if (group == NULL)
		return st_error_make(err, 0, "cannot create a JavaScriptCore context group");
	ctx = JSGlobalContextCreateInGroup(group, NULL);
	if (ctx == NULL)
		return st_error_make(err, 0, "cannot create a JavaScriptCore context");
	engine__js_host_install(ctx, modules_dir);
	if (engine__js_driver() == NULL)
		return st_error_make(err, 0, "cannot install the JavaScript host API");
	engine__js_warm_up();
	preload_packages(modules_dir);
	unsetenv("JSC_useConcurrentJIT");
	unsetenv("JSC_useConcurrentGC");
	unsetenv("JSC_numberOfGCMarkers");
	int threads = count_threads();
	if (threads != 1)
		st_log(ST_LOG_WARN,
		       "the javascript zygote has %d threads before its first fork; "
		       "forks are only safe with one",
		       threads);
	return 0;
}

static JSValueRef call(JSObjectRef obj, const char *method, size_t argc, const JSValueRef *argv,
                       JSValueRef *exc);

/* Run the whole driver path once (wrapper compile, promise, timers, JSON) with a function of
   our own, then reset the driver's state. */
static void drive(const char *src)
{
	JSObjectRef driver = engine__js_driver();
	JSStringRef s = JSStringCreateWithUTF8CString(src);
	JSStringRef url = JSStringCreateWithUTF8CString("code");
	JSValueRef fn = JSEvaluateScript(ctx, s, NULL, url, 1, NULL);
	JSStringRelease(s);
	JSStringRelease(url);
	if (fn != NULL) {
		JSStringRef pj = JSStringCreateWithUTF8CString("{\"k\":[1,2]}");
		JSValueRef args[2] = {fn, JSValueMakeString(ctx, pj)};
		JSStringRelease(pj);
		call(driver, "start", 2, args, NULL);
		for (int i = 0; i < 10; i++) {
			JSValueRef pending = call(driver, "pendingTimers", 0, NULL, NULL);
			if (pending == NULL || JSValueToNumber(ctx, pending, NULL) <= 0)
				break;
			call(driver, "step", 0, NULL, NULL);
		}
		JSValueRef maxr = JSValueMakeNumber(ctx, 1 << 20);
		call(driver, "finish", 1, &maxr, NULL);
	}
	call(driver, "reset", 0, NULL, NULL);
}

/* In the zygote, so that the children start with warm caches. */
void engine__js_warm_up(void)
{
	drive("(async function(params) {const a = [1,2,3].map(x => x * 2); "
	      "await new Promise(r => setTimeout(r, 0)); JSON.parse('{\"x\":1}'); "
	      "return {a, s: JSON.stringify(params)};\n})");
	JSGarbageCollect(ctx);
}

void engine__js_after_fork(void)
{
	engine__js_host_reseed();
}

void engine__js_touch(void)
{
	drive("(async function(params) {return 1+1;\n})");
}

static JSValueRef call(JSObjectRef obj, const char *method, size_t argc, const JSValueRef *argv,
                       JSValueRef *exc)
{
	JSStringRef n = JSStringCreateWithUTF8CString(method);
	JSValueRef f = JSObjectGetProperty(ctx, obj, n, NULL);
	JSStringRelease(n);
	if (f == NULL || !JSValueIsObject(ctx, f))
		return NULL;
	return JSObjectCallAsFunction(ctx, engine__js_obj(f), obj, argc, argv, exc);
}

static char *to_cstr(JSValueRef v)
{
	if (v == NULL)
		return NULL;
	JSStringRef s = JSValueToStringCopy(ctx, v, NULL);
	if (s == NULL)
		return NULL;
	size_t max = JSStringGetMaximumUTF8CStringSize(s);
	char *buf = st_xmalloc(max);
	JSStringGetUTF8CString(s, buf, max);
	JSStringRelease(s);
	return buf;
}

static JSValueRef get(JSValueRef obj, const char *name)
{
	if (obj == NULL || !JSValueIsObject(ctx, obj))
		return NULL;
	JSStringRef n = JSStringCreateWithUTF8CString(name);
	JSValueRef v = JSObjectGetProperty(ctx, engine__js_obj(obj), n, NULL);
	JSStringRelease(n);
	if (v == NULL || JSValueIsUndefined(ctx, v))
		return NULL;
	return v;
}

static int parse_line(const char *s)
{
	long v = strtol(s, NULL, 10);
	return v > 0 && v < 1000000000 ? (int)v : 0;
}

/* How many columns of line 1 of "code" the wrapper takes before the user's first character
   (set by engine__js_run). */
static size_t wrapper_cols;
/* How many lines the user's code has: the wrapper's closing "})" is the line after. */
static int user_lines;

/* The text of one frame, with a column on line 1 of "code" made the user's (the wrapper's
   opening shifts it). False for a frame inside the wrapper's opening itself: noise, like
   the prelude's frames. */
static bool user_frame(struct st_buf *b, const char *p, size_t n)
{
	const char *at = memmem(p, n, "@code:1:", 8);
	if (at == NULL || wrapper_cols == 0) {
		st_buf_append_trunc(b, p, n);
		return true;
	}
	const char *col = at + 8;
	long c = strtol(col, NULL, 10);
	if (c <= (long)wrapper_cols)
		return false;
	size_t head = (size_t)(col - p);
	const char *rest = col;
	while (rest < p + n && *rest >= '0' && *rest <= '9')
		rest++;
	char num[24];
	int k = snprintf(num, sizeof(num), "%ld", c - (long)wrapper_cols);
	st_buf_append_trunc(b, p, head);
	st_buf_append_trunc(b, num, (size_t)k);
	st_buf_append_trunc(b, rest, (size_t)(p + n - rest));
	return true;
}

/* Keep the user's frames; the prelude's and the wrapper's are noise. */
static char *clean_stack(const char *stack, int *line)
{
	struct st_buf b;
	st_buf_init(&b, 1 << 20);
	const char *p = stack;
	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (memmem(p, n, "stockade:prelude", 16) == NULL) {
			size_t before = b.len;
			if (b.len)
				st_buf_append_trunc(&b, "\n", 1);
			if (!user_frame(&b, p, n)) {
				b.len = before;
				if (b.data)
					b.data[before] = '\0';
				p = nl ? nl + 1 : NULL;
				continue;
			}
			const char *at = memmem(p, n, "@code:", 6);
			if (at && *line == 0)
				*line = parse_line(at + 6);
		}
		p = nl ? nl + 1 : NULL;
	}
	char *out = st_buf_steal(&b);
	return out ? out : st_xstrdup("");
}

static __attribute__((noreturn)) void finish_error(JSValueRef e)
{
	char *name = NULL, *message = NULL, *stack = NULL;
	int line = 0;
	if (e != NULL && JSValueIsObject(ctx, e)) {
		name = to_cstr(get(e, "name"));
		message = to_cstr(get(e, "message"));
		char *raw = to_cstr(get(e, "stack"));
		stack = clean_stack(raw ? raw : "", &line);
		free(raw);
		if (line == 0) {
			/* Syntax errors carry the line of the wrapper, which is the user's. */
			JSValueRef l = get(e, "line");
			char *url = to_cstr(get(e, "sourceURL"));
			if (l && JSValueIsNumber(ctx, l) &&
			    (url == NULL || strcmp(url, "code") == 0))
				line = (int)JSValueToNumber(ctx, l, NULL);
			free(url);
			/* Code that ends too early (an open bracket, a dangling operator) is
			   reported at the wrapper's closing brace, which the user never wrote. */
			if (user_lines > 0 && line > user_lines) {
				line = user_lines;
				if (message && strcmp(message, "Unexpected token '}'") == 0) {
					free(message);
					message = st_xstrdup("Unexpected end of code");
				}
			}
		}
		if (message == NULL && name == NULL)
			message = to_cstr(e);
	} else if (e != NULL) {
		message = to_cstr(e);
		name = st_xstrdup("Error");
	}
	engine__child_finish(ENGINE_ERROR, NULL, name ? name : "Error", message ? message : "",
	                     stack ? stack : "", line);
}

void engine__js_run(const struct engine_child_request *req)
{
	JSObjectRef driver = engine__js_driver();
	struct st_buf src;
	st_buf_init(&src, strlen(req->code) + 256);
	st_buf_appendf(&src, "(async function(%s) {", req->params_name);
	wrapper_cols = src.len;
	user_lines = 1;
	for (const char *c = req->code; *c; c++)
		user_lines += *c == '\n';
	st_buf_append(&src, req->code, strlen(req->code));
	st_buf_append(&src, "\n})", 3);
	JSStringRef s = JSStringCreateWithUTF8CString(src.data);
	st_buf_release(&src);
	JSStringRef url = JSStringCreateWithUTF8CString("code");
	JSValueRef exc = NULL;
	JSValueRef fn = JSEvaluateScript(ctx, s, NULL, url, 1, &exc);
	JSStringRelease(s);
	JSStringRelease(url);
	if (fn == NULL)
		finish_error(exc);

	JSStringRef pj = JSStringCreateWithUTF8CString(req->params_json);
	JSValueRef args[2] = {fn, JSValueMakeString(ctx, pj)};
	JSStringRelease(pj);
	exc = NULL;
	if (call(driver, "start", 2, args, &exc) == NULL)
		finish_error(exc);
	/* Control is back in C: the microtask queue has drained. Fire timers until none left. */
	for (;;) {
		exc = NULL;
		JSValueRef pending = call(driver, "pendingTimers", 0, NULL, &exc);
		if (pending == NULL || JSValueToNumber(ctx, pending, NULL) <= 0)
			break;
		exc = NULL;
		if (call(driver, "step", 0, NULL, &exc) == NULL)
			finish_error(exc);
	}
	JSValueRef st = call(driver, "state", 0, NULL, NULL);
	if (st == NULL || JSValueToNumber(ctx, st, NULL) == 0)
		engine__child_finish(ENGINE_ERROR, NULL, "PendingPromise",
		                     "the code's promise never settled (it awaits something that "
		                     "cannot happen once no timers are left)",
		                     NULL, 0);
	JSValueRef maxr = JSValueMakeNumber(ctx, (double)req->max_result_bytes);
	exc = NULL;
	JSValueRef out = call(driver, "finish", 1, &maxr, &exc);
	if (out == NULL)
		finish_error(exc);
	JSValueRef ok = get(out, "ok");
	if (ok == NULL || !JSValueToBoolean(ctx, ok))
		finish_error(get(out, "error"));
	char *text = to_cstr(get(out, "text"));
	json_error_t jerr;
	json_t *v = text ? json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr) : NULL;
	free(text);
	if (v == NULL)
		engine__child_finish(ENGINE_ERROR, NULL, "ResultError",
		                     "the result cannot be converted to JSON", NULL, 0);
	engine__child_finish(ENGINE_OK, v, NULL, NULL, NULL, 0);
}
