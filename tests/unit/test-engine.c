/*
 * test-engine.c - the engines end to end through the library: every status, result
 * conversions, the JavaScript host API and require(), error line numbers, isolation between
 * executions, admission control, zygote replacement and shutdown.
 *
 * Each TEST starts its own pool (zygotes take a moment, pandas most), so checks that share a
 * pool are grouped. Jailed pools need user namespaces: without them the tests skip.
 */
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include "engine/engine.h"
#include "unit.h"

static struct engine_pool *pool_start(bool js, bool py, enum engine_mode mode)
{
	struct engine_pool_options o;
	engine_pool_options_init(&o);
	o.languages[ENGINE_LANG_JAVASCRIPT] = js;
	o.languages[ENGINE_LANG_PYTHON] = py;
	o.mode = mode;
	o.max_concurrency = 4;
	struct engine_pool *pool = NULL;
	struct st_error *err = NULL;
	if (engine_pool_new(&o, &pool, &err) < 0) {
		fprintf(stderr, "engine_pool_new: %s\n", st_error_msg(err));
		if (err && (err->code == EPERM || err->code == EINVAL || err->code == ENOSPC))
			UNIT_SKIP("user namespaces are not available here");
		CHECK(!"the pool starts");
	}
	return pool;
}

struct run_opts {
	const char *params;
	const char *params_name;
	uint64_t timeout_ms;
	uint64_t memory_mb;
	size_t max_output;
};

static void run_ex(struct engine_pool *pool, enum engine_language lang, const char *code,
                   const struct run_opts *ro, struct engine_result *res)
{
	struct engine_request req;
	engine_request_init(&req);
	req.language = lang;
	req.code = code;
	if (ro) {
		req.params_json = ro->params;
		req.params_name = ro->params_name;
		req.timeout_ms = ro->timeout_ms;
		req.memory_mb = ro->memory_mb;
		req.max_output_bytes = ro->max_output;
	}
	struct st_error *err = NULL;
	int r = engine_execute(pool, &req, res, &err);
	if (r < 0)
		fprintf(stderr, "engine_execute: %s\n", st_error_msg(err));
	CHECK_EQ_INT(r, 0);
	st_error_free(err);
}

/* Run and return the result JSON as compact text (caller frees) plus the status. */
static char *run_text(struct engine_pool *pool, enum engine_language lang, const char *code,
                      const struct run_opts *ro, enum engine_status *status)
{
	struct engine_result res;
	run_ex(pool, lang, code, ro, &res);
	json_t *j = engine_result_to_json(&res);
	char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	if (status)
		*status = res.status;
	engine_result_release(&res);
	return text;
}

static void expect(struct engine_pool *pool, enum engine_language lang, const char *code,
                   enum engine_status want, const char *needle)
{
	enum engine_status st;
	char *text = run_text(pool, lang, code, NULL, &st);
	if (st != want || (needle && strstr(text, needle) == NULL)) {
		fprintf(stderr, "code: %s\nwant status %s and %s\ngot: %s\n", code,
		        engine_status_name(want), needle ? needle : "", text);
		free(text);
		CHECK(!"result as expected");
	}
	free(text);
}

#define JS ENGINE_LANG_JAVASCRIPT
#define PY ENGINE_LANG_PYTHON

TEST(engine_names)
{
	enum engine_language l;
	CHECK(engine_language_parse("javascript", &l) == 0 && l == JS);
	CHECK(engine_language_parse("js", &l) == 0 && l == JS);
	CHECK(engine_language_parse("python", &l) == 0 && l == PY);
	CHECK(engine_language_parse("ruby", &l) == -EINVAL);
	CHECK_STREQ(engine_status_name(ENGINE_MEMORY_LIMIT), "memory_limit");
	CHECK_STREQ(engine_status_name(ENGINE_SANDBOX_VIOLATION), "sandbox_violation");
}

TEST(js_results_and_host_api)
{
	struct engine_pool *pool = pool_start(true, false, ENGINE_MODE_JAILED);
	expect(pool, JS, "return 1+1", ENGINE_OK, "\"result\":2");
	expect(pool, JS, "return 1+1", ENGINE_OK, "\"sandboxed\":true");
	expect(pool, JS, "let x = 1", ENGINE_OK, "\"result\":null");
	expect(pool, JS, "return {a: [1, 'two', null, true], b: undefined}", ENGINE_OK,
	       "\"result\":{\"a\":[1,\"two\",null,true]}");
	struct run_opts ro = {.params = "{\"n\": 20}"};
	char *t = run_text(pool, JS, "return params.n * 2", &ro, NULL);
	CHECK_CONTAINS(t, "\"result\":40");
	free(t);
	ro.params_name = "args";
	t = run_text(pool, JS, "return args.n + 1", &ro, NULL);
	CHECK_CONTAINS(t, "\"result\":21");
	free(t);
	expect(pool, JS, "console.log('a', 1, {b: [2]}); console.error('oops'); console.info('c')",
	       ENGINE_OK, "\"stdout\":\"a 1 { b: [ 2 ] }\\nc\\n\"");
	expect(pool, JS, "console.warn('w'); console.error('e')", ENGINE_OK,
	       "\"stderr\":\"w\\ne\\n\"");
	/* async, timers in order, clearTimeout */
	expect(pool, JS,
	       "const out = []; setTimeout(() => out.push('b'), 20); setTimeout(() => "
	       "out.push('a'), 5);\n"
	       "const id = setTimeout(() => out.push('never'), 1); clearTimeout(id);\n"
	       "await new Promise(r => setTimeout(r, 40)); return out",
	       ENGINE_OK, "\"result\":[\"a\",\"b\"]");
	expect(pool, JS, "setTimeout(() => console.log('late'), 10); return 1", ENGINE_OK,
	       "\"stdout\":\"late\\n\"");
	expect(pool, JS, "return await Promise.all([1, Promise.resolve(2)])", ENGINE_OK, "[1,2]");
	expect(pool, JS,
	       "const e = new TextEncoder().encode('h\\u00e9\\u{1F600}'); "
	       "return [e.length, new TextDecoder().decode(e) === 'h\\u00e9\\u{1F600}']",
	       ENGINE_OK, "[7,true]");
	expect(pool, JS, "return [btoa('hello'), atob('aGVsbG8=')]", ENGINE_OK,
	       "[\"aGVsbG8=\",\"hello\"]");
	expect(
	    pool, JS,
	    "const a = crypto.getRandomValues(new Uint8Array(16)); const u = crypto.randomUUID();"
	    "return [a.length, "
	    "/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(u)]",
	    ENGINE_OK, "[16,true]");
	expect(
	    pool, JS,
	    "const o = {d: new Date(0), m: new Map([[1, 2]]), s: new Set([3])}; o.self = o;"
	    "const c = structuredClone(o); return [c !== o, c.self === c, c.m.get(1), c.s.has(3), "
	    "c.d.getTime()]",
	    ENGINE_OK, "[true,true,2,true,0]");
	expect(pool, JS, "structuredClone(() => 1)", ENGINE_ERROR, "DataCloneError");
	/* require */
	expect(pool, JS, "const _ = require('lodash'); return _.chunk([1, 2, 3, 4, 5], 2)",
	       ENGINE_OK, "[[1,2],[3,4],[5]]");
	expect(pool, JS,
	       "const dayjs = require('dayjs'); return dayjs('2024-03-05').format('DD/MM/YYYY')",
	       ENGINE_OK, "\"05/03/2024\"");
	expect(pool, JS, "require('fs')", ENGINE_ERROR, "Cannot find module 'fs'");
	expect(pool, JS, "require('../../../../etc/passwd')", ENGINE_ERROR, "Cannot find module");
	expect(pool, JS, "require('/etc/passwd')", ENGINE_ERROR, "Cannot find module");
	/* conversions that fail */
	expect(pool, JS, "return 10n", ENGINE_ERROR, "ResultError");
	expect(pool, JS, "const a = {}; a.a = a; return a", ENGINE_ERROR, "ResultError");
	expect(pool, JS, "return new Promise(() => {})", ENGINE_ERROR, "PendingPromise");
	engine_pool_shutdown(pool, 1000);
}

TEST(js_errors_and_lines)
{
	struct engine_pool *pool = pool_start(true, false, ENGINE_MODE_JAILED);
	struct engine_result res;
	run_ex(pool, JS, "let a = 1;\nlet b = 2;\nthrow new TypeError('bad ' + (a + b));", NULL,
	       &res);
	CHECK_EQ_INT(res.status, ENGINE_ERROR);
	CHECK_STREQ(res.error.name, "TypeError");
	CHECK_STREQ(res.error.message, "bad 3");
	CHECK_EQ_INT(res.error.line, 3);
	CHECK_CONTAINS(res.error.stack, "code:3");
	engine_result_release(&res);
	run_ex(pool, JS, "// comment\nlet x = ;\n", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_ERROR);
	CHECK_STREQ(res.error.name, "SyntaxError");
	CHECK_EQ_INT(res.error.line, 2);
	engine_result_release(&res);
	run_ex(pool, JS, "\n\nawait null;\nnull.foo();", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_ERROR);
	CHECK_STREQ(res.error.name, "TypeError");
	CHECK_EQ_INT(res.error.line, 4);
	engine_result_release(&res);
	/* Columns on line 1 are the user's, and the wrapper's own frame is not shown. */
	run_ex(pool, JS, "return undefinedVar", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_ERROR);
	CHECK_STREQ(res.error.name, "ReferenceError");
	CHECK_EQ_INT(res.error.line, 1);
	CHECK_STREQ(res.error.stack, "@code:1:20");
	engine_result_release(&res);
	/* Code that ends too early: its own last line, not the wrapper's closing brace. */
	run_ex(pool, JS, "let a = 1;\nreturn a +", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_ERROR);
	CHECK_STREQ(res.error.name, "SyntaxError");
	CHECK_STREQ(res.error.message, "Unexpected end of code");
	CHECK_EQ_INT(res.error.line, 2);
	engine_result_release(&res);
	run_ex(pool, JS, "throw 'plain string'", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_ERROR);
	CHECK_STREQ(res.error.message, "plain string");
	engine_result_release(&res);
	run_ex(pool, JS, "function f(n) { return f(n + 1) + 1 }\nreturn f(0)", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_ERROR);
	CHECK_STREQ(res.error.name, "RangeError");
	engine_result_release(&res);
	engine_pool_shutdown(pool, 1000);
}

TEST(js_isolation)
{
	struct engine_pool *pool = pool_start(true, false, ENGINE_MODE_JAILED);
	expect(pool, JS,
	       "globalThis.leak = 42; Array.prototype.map = null; JSON.stringify = () => 'x';"
	       "Object.prototype.polluted = 1; console.log = null; return 1",
	       ENGINE_OK, "\"result\":1");
	expect(pool, JS,
	       "console.log('still here'); return [typeof leak, [1, 2].map(x => x * 2), "
	       "JSON.stringify({a: 1}), ({}).polluted === undefined]",
	       ENGINE_OK, "[\"undefined\",[2,4],\"{\\\"a\\\":1}\",true]");
	expect(pool, JS, "require('lodash').VERSION = 'hacked'; return 1", ENGINE_OK, NULL);
	expect(pool, JS, "return require('lodash').VERSION !== 'hacked'", ENGINE_OK,
	       "\"result\":true");
	engine_pool_shutdown(pool, 1000);
}

TEST(js_limits)
{
	struct engine_pool *pool = pool_start(true, false, ENGINE_MODE_JAILED);
	struct run_opts ro = {.timeout_ms = 500};
	enum engine_status st;
	char *t = run_text(pool, JS, "while (true) {}", &ro, &st);
	CHECK_EQ_INT(st, ENGINE_TIMEOUT);
	free(t);
	t = run_text(pool, JS, "setInterval(() => {}, 10)", &ro, &st);
	CHECK_EQ_INT(st, ENGINE_TIMEOUT);
	free(t);
	struct run_opts mem = {.memory_mb = 64, .timeout_ms = 20000};
	t = run_text(pool, JS,
	             "const a = []; while (true) a.push(new Array(1 << 20).fill(a.length))", &mem,
	             &st);
	if (st != ENGINE_MEMORY_LIMIT)
		fprintf(stderr, "memory bomb: %s\n", t);
	CHECK_EQ_INT(st, ENGINE_MEMORY_LIMIT);
	free(t);
	struct run_opts out = {.max_output = 1000};
	t = run_text(pool, JS, "while (true) console.log('flood flood flood')", &out, &st);
	CHECK_EQ_INT(st, ENGINE_OUTPUT_LIMIT);
	CHECK_CONTAINS(t, "\"stdoutTruncated\":true");
	free(t);
	/* The engine still answers. */
	expect(pool, JS, "return 'alive'", ENGINE_OK, "\"alive\"");
	engine_pool_shutdown(pool, 1000);
}

TEST(python_results)
{
	struct engine_pool *pool = pool_start(false, true, ENGINE_MODE_JAILED);
	expect(pool, PY, "return 1+1", ENGINE_OK, "\"result\":2");
	expect(pool, PY, "x = 1", ENGINE_OK, "\"result\":null");
	expect(pool, PY,
	       "print('hello', 1)\nimport sys\nprint('warn', file=sys.stderr)\nreturn True",
	       ENGINE_OK, "\"stderr\":\"warn\\n\"");
	expect(pool, PY, "print('hello', 1)", ENGINE_OK, "\"stdout\":\"hello 1\\n\"");
	struct run_opts ro = {.params = "{\"xs\": [1, 2, 3]}"};
	char *t = run_text(pool, PY, "return sum(params['xs'])", &ro, NULL);
	CHECK_CONTAINS(t, "\"result\":6");
	free(t);
	expect(pool, PY, "import asyncio\nawait asyncio.sleep(0.01)\nreturn 'awaited'", ENGINE_OK,
	       "\"awaited\"");
	expect(pool, PY,
	       "import numpy as np\nreturn {'i': np.int64(3), 'f': np.float32(0.5), 'a': "
	       "np.arange(4).reshape(2, 2), 'b': np.bool_(True)}",
	       ENGINE_OK, "{\"a\":[[0,1],[2,3]],\"b\":true,\"f\":0.5,\"i\":3}");
	expect(pool, PY,
	       "import pandas as pd\ndf = pd.DataFrame({'x': [1, 2], 'y': ['a', None]})\nreturn df",
	       ENGINE_OK, "[{\"x\":1,\"y\":\"a\"},{\"x\":2,\"y\":null}]");
	expect(pool, PY, "import pandas as pd\nreturn pd.Series([1.5, float('nan')])", ENGINE_OK,
	       "\"result\":[1.5,null]");
	expect(pool, PY, "import pandas as pd\nreturn pd.Series({'a': 1, 'b': 2})", ENGINE_OK,
	       "\"result\":{\"a\":1,\"b\":2}");
	expect(pool, PY, "import datetime\nreturn datetime.date(2024, 1, 2)", ENGINE_OK,
	       "\"2024-01-02\"");
	expect(pool, PY, "return {1: (1, 2), 'k': {3}}", ENGINE_OK, "{\"1\":[1,2],\"k\":[3]}");
	expect(pool, PY, "return object()", ENGINE_ERROR, "ResultError");
	expect(pool, PY, "return b'raw'", ENGINE_ERROR, "ResultError");
	expect(pool, PY, "raise SystemExit(3)", ENGINE_ERROR, "SystemExit");
	engine_pool_shutdown(pool, 1000);
}

/* Wait (generously: never assert speed) until pool has `plain` plain and `pandas` pandas-ready
   warm Python children. */
static void wait_warm_python(struct engine_pool *pool, unsigned plain, unsigned pandas)
{
	struct engine_pool_stats st;
	for (int i = 0; i < 2400; i++) {
		engine_pool_stats(pool, &st);
		if (st.warm_pandas >= pandas &&
		    st.warm[ENGINE_LANG_PYTHON] - st.warm_pandas >= plain)
			return;
		poll(NULL, 0, 50);
	}
}

/* Python code that mentions pandas runs in a child prepared for it (its pages copied and a
   DataFrame execution of our own run before READY): seen in the execution's memory, which
   counts the copies. Nothing of that run is visible, and results are the same as anywhere. */
TEST(python_pandas_children)
{
	struct engine_pool_options o;
	engine_pool_options_init(&o);
	o.languages[ENGINE_LANG_JAVASCRIPT] = false;
	o.warm_per_language = 2;
	struct engine_pool *pool = NULL;
	struct st_error *err = NULL;
	if (engine_pool_new(&o, &pool, &err) < 0)
		UNIT_SKIP("user namespaces are not available here");
	wait_warm_python(pool, 2, 2);
	struct engine_pool_stats st;
	engine_pool_stats(pool, &st);
	CHECK_EQ_INT(st.warm_pandas, 2);
	json_t *sj = engine_pool_stats_to_json(pool);
	json_t *py = json_object_get(json_object_get(sj, "engines"), "python");
	CHECK(json_integer_value(json_object_get(py, "warmPandas")) == 2);
	CHECK(json_integer_value(json_object_get(py, "warm")) == 4);
	json_decref(sj);

	struct engine_result plain, pandas;
	run_ex(pool, PY, "return 1", NULL, &plain);
	CHECK_EQ_INT(plain.status, ENGINE_OK);
	wait_warm_python(pool, 2, 2);
	run_ex(pool, PY,
	       "# uses pandas\nreturn sorted(k for k in globals() if not k.startswith('__'))", NULL,
	       &pandas);
	CHECK_EQ_INT(pandas.status, ENGINE_OK);
	char *t = json_dumps(pandas.result, JSON_COMPACT | JSON_ENCODE_ANY);
	CHECK_STREQ(t, "[]");
	free(t);
	/* A pandas-ready child has copied ~4 MiB more before its request (measured 2.7 against
	   6.9 MiB); a plain one has not. */
	CHECK(pandas.stats.max_rss_kb > plain.stats.max_rss_kb + 2048);
	/* cpuMs is the execution's, not what the child spent getting ready (a pandas-ready
	   child spends tens of ms copying pages and running pandas once): one thread cannot
	   use more CPU than the wall time it ran (1 ms each way for rounding). */
	CHECK(pandas.stats.cpu_ms <= pandas.stats.wall_ms + 2);
	CHECK(plain.stats.cpu_ms <= plain.stats.wall_ms + 2);
	int64_t pandas_rss_kb = pandas.stats.max_rss_kb;
	engine_result_release(&plain);
	engine_result_release(&pandas);

	expect(pool, PY,
	       "import pandas as pd\nreturn int(pd.DataFrame({'a': [1, 2, 3]})['a'].sum())",
	       ENGINE_OK, "\"result\":6");
	expect(pool, PY, "s = 'pandas'\nreturn s", ENGINE_OK, "\"result\":\"pandas\"");
	/* Less memory than warm children have: a plain child (a pandas-ready one starts with
	   several MiB of its limit used). */
	wait_warm_python(pool, 2, 2);
	struct run_opts small = {.memory_mb = 16};
	struct engine_result sres;
	run_ex(pool, PY, "# pandas\nreturn 'small'", &small, &sres);
	CHECK_EQ_INT(sres.status, ENGINE_OK);
	CHECK(sres.stats.max_rss_kb + 2048 < pandas_rss_kb);
	engine_result_release(&sres);
	engine_pool_shutdown(pool, 1000);

	/* Without warm children, pandas code runs on a child prepared for the waiting request. */
	o.warm_per_language = -1;
	pool = NULL;
	CHECK_EQ_INT(engine_pool_new(&o, &pool, &err), 0);
	engine_pool_stats(pool, &st);
	CHECK_EQ_INT(st.warm_pandas, 0);
	expect(pool, PY, "import pandas as pd\nreturn pd.Series([1, 2]).sum() * 1.5", ENGINE_OK,
	       "\"result\":4.5");
	engine_pool_shutdown(pool, 1000);
}

TEST(python_errors_and_lines)
{
	struct engine_pool *pool = pool_start(false, true, ENGINE_MODE_JAILED);
	struct engine_result res;
	run_ex(pool, PY, "a = 1\nb = 0\nreturn a / b", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_ERROR);
	CHECK_STREQ(res.error.name, "ZeroDivisionError");
	CHECK_EQ_INT(res.error.line, 3);
	CHECK_CONTAINS(res.error.stack, "line 3");
	CHECK(strstr(res.error.stack, "<stockade>") == NULL);
	engine_result_release(&res);
	run_ex(pool, PY, "x = 1\nif x:\n  y = (\n", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_ERROR);
	CHECK_STREQ(res.error.name, "SyntaxError");
	CHECK(res.error.line >= 3);
	engine_result_release(&res);
	run_ex(pool, PY, "def f():\n    raise KeyError('k')\n\nf()", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_ERROR);
	CHECK_STREQ(res.error.name, "KeyError");
	CHECK_EQ_INT(res.error.line, 2);
	engine_result_release(&res);
	run_ex(pool, PY, "def f(n): return f(n + 1)\nf(0)", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_ERROR);
	CHECK_STREQ(res.error.name, "RecursionError");
	engine_result_release(&res);
	engine_pool_shutdown(pool, 1000);
}

TEST(python_isolation_and_sandbox)
{
	struct engine_pool *pool = pool_start(false, true, ENGINE_MODE_JAILED);
	expect(pool, PY,
	       "import json, math\njson.dumps = None\nmath.leak = 1\nglobal G\nG = 1\n"
	       "open('/tmp/left-behind', 'w').write('x')\nimport builtins\nbuiltins.len = None\n"
	       "return 1",
	       ENGINE_OK, "\"result\":1");
	expect(pool, PY,
	       "import json, math, os\nreturn [json.dumps([1]), hasattr(math, 'leak'), "
	       "'G' in globals(), os.path.exists('/tmp/left-behind'), len('ab')]",
	       ENGINE_OK, "[\"[1]\",false,false,false,2]");
	expect(pool, PY, "open('/etc/shadow').read()", ENGINE_ERROR, "FileNotFoundError");
	expect(pool, PY, "import os\nreturn sorted(os.listdir('/'))", ENGINE_OK, "\"tmp\"");
	expect(pool, PY, "open('/usr/evil', 'w')", ENGINE_ERROR, "OSError");
	expect(pool, PY, "import os\nos.fork()", ENGINE_ERROR, "PermissionError");
	expect(pool, PY, "import socket\nsocket.socket()", ENGINE_ERROR, "PermissionError");
	/* Its own pid namespace: it is pid 1 and sees no other process. */
	expect(pool, PY,
	       "import os\nreturn [os.getpid(), [p for p in os.listdir('/proc') if p.isdigit()]]",
	       ENGINE_OK, "\"result\":[1,[\"1\"]]");
	struct engine_result res;
	run_ex(pool, PY, "import ctypes\nctypes.CDLL(None).syscall(101, 0, 0, 0, 0)", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_SANDBOX_VIOLATION);
	CHECK_STREQ(res.violation_syscall, "ptrace");
	engine_result_release(&res);
	struct run_opts ro = {.timeout_ms = 500};
	enum engine_status st;
	char *t = run_text(pool, PY, "while True: pass", &ro, &st);
	CHECK_EQ_INT(st, ENGINE_TIMEOUT);
	free(t);
	struct run_opts mem = {.memory_mb = 64, .timeout_ms = 20000};
	t = run_text(pool, PY, "a = []\nwhile True: a.append(' ' * (1 << 20))", &mem, &st);
	if (st != ENGINE_MEMORY_LIMIT)
		fprintf(stderr, "memory bomb: %s\n", t);
	CHECK_EQ_INT(st, ENGINE_MEMORY_LIMIT);
	free(t);
	struct run_opts out = {.max_output = 1000};
	t = run_text(pool, PY, "while True: print('flood')", &out, &st);
	CHECK_EQ_INT(st, ENGINE_OUTPUT_LIMIT);
	free(t);
	expect(pool, PY, "return 'alive'", ENGINE_OK, "\"alive\"");
	engine_pool_shutdown(pool, 1000);
}

TEST(bad_requests)
{
	struct engine_pool *pool = pool_start(true, false, ENGINE_MODE_JAILED);
	struct engine_request req;
	struct engine_result res;
	struct st_error *err = NULL;
	engine_request_init(&req);
	req.language = JS;
	CHECK_EQ_INT(engine_execute(pool, &req, &res, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "'code'");
	st_error_release(&err);
	req.code = "return 1";
	req.timeout_ms = 10u * 60 * 60 * 1000;
	CHECK_EQ_INT(engine_execute(pool, &req, &res, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "timeoutMs");
	st_error_release(&err);
	req.timeout_ms = 0;
	req.memory_mb = 1u << 20;
	CHECK_EQ_INT(engine_execute(pool, &req, &res, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "memoryMb");
	st_error_release(&err);
	req.memory_mb = 0;
	req.params_json = "{not json";
	CHECK_EQ_INT(engine_execute(pool, &req, &res, &err), -EINVAL);
	CHECK_CONTAINS(st_error_msg(err), "params");
	st_error_release(&err);
	req.params_json = NULL;
	req.language = PY;
	CHECK_EQ_INT(engine_execute(pool, &req, &res, &err), -ENOTSUP);
	st_error_release(&err);
	req.language = JS;
	char *big = malloc((2u << 20) + 1);
	memset(big, ' ', 2u << 20);
	big[2u << 20] = '\0';
	req.code = big;
	CHECK_EQ_INT(engine_execute(pool, &req, &res, &err), -E2BIG);
	st_error_release(&err);
	free(big);
	engine_pool_shutdown(pool, 1000);
}

struct bg {
	struct engine_pool *pool;
	const char *code;
	enum engine_language lang;
	uint64_t timeout_ms;
	int rc;
	struct engine_result res;
};

static void *bg_run(void *arg)
{
	struct bg *b = arg;
	struct engine_request req;
	engine_request_init(&req);
	req.language = b->lang;
	req.code = b->code;
	req.timeout_ms = b->timeout_ms;
	struct st_error *err = NULL;
	b->rc = engine_execute(b->pool, &req, &b->res, &err);
	st_error_free(err);
	return NULL;
}

static pid_t find_zygote(const char *comm)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;
	while (d && (e = readdir(d)) != NULL) {
		char path[300];
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "re");
		if (f == NULL)
			continue;
		char c[64] = "";
		int pid = 0, ppid = 0;
		char state;
		if (fscanf(f, "%d (%63[^)]) %c %d", &pid, c, &state, &ppid) == 4 &&
		    ppid == getpid() && strcmp(c, comm) == 0)
			found = pid;
		fclose(f);
	}
	if (d)
		closedir(d);
	return found;
}

/* Wait (generously: never assert speed) for a JavaScript zygote other than `old`. */
static pid_t wait_new_zygote(struct engine_pool *pool, pid_t old)
{
	for (int i = 0; i < 2400; i++) {
		pid_t z = find_zygote("zygote-js");
		if (z > 0 && z != old && engine_pool_is_ready(pool))
			return z;
		poll(NULL, 0, 50);
	}
	return 0;
}

/* Does `parent` have a child that has used at least 0.5 s of CPU (utime + stime)? Warm
   children use far less. */
static bool has_busy_child(pid_t parent)
{
	long hz = sysconf(_SC_CLK_TCK);
	DIR *d = opendir("/proc");
	struct dirent *e;
	bool found = false;
	while (d && !found && (e = readdir(d)) != NULL) {
		char path[300], buf[1024];
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "re");
		if (f == NULL)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		char *rp = strrchr(buf, ')');
		int ppid = 0;
		unsigned long ut = 0, stt = 0;
		/* after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt
		   cmajflt utime stime */
		if (rp &&
		    sscanf(rp + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ppid, &ut,
		           &stt) == 3 &&
		    ppid == parent && (long)(ut + stt) >= hz / 2)
			found = true;
	}
	if (d)
		closedir(d);
	return found;
}

/* Wait until `parent` has a busy child (an execution seen running on it). */
static bool wait_busy_child(pid_t parent)
{
	for (int i = 0; i < 1200; i++) {
		if (has_busy_child(parent))
			return true;
		poll(NULL, 0, 50);
	}
	return false;
}

TEST(zygote_death_and_replacement)
{
	struct engine_pool *pool = pool_start(true, false, ENGINE_MODE_JAILED);
	/* The zygote dies under a running execution: it is run again on the replacement, within
	   its deadline, and answers. */
	struct bg b = {.pool = pool,
	               .lang = JS,
	               .timeout_ms = 60000,
	               .code = "await new Promise(r => setTimeout(r, 2000)); return 'again'"};
	pthread_t th;
	pthread_create(&th, NULL, bg_run, &b);
	poll(NULL, 0, 500);
	pid_t z = find_zygote("zygote-js");
	CHECK(z > 0);
	kill(z, SIGKILL);
	pthread_join(th, NULL);
	CHECK_EQ_INT(b.rc, 0);
	CHECK_EQ_INT(b.res.status, ENGINE_OK);
	CHECK(json_is_string(b.res.result) &&
	      strcmp(json_string_value(b.res.result), "again") == 0);
	engine_result_release(&b.res);

	/* Once only: when the replacement dies under the second run too, the execution ends as
	   `internal`. Each zygote is killed once the execution is seen running on it (a child of
	   it that has used half a second of CPU: warm children use far less). */
	z = wait_new_zygote(pool, z);
	CHECK(z > 0);
	struct bg b2 = {.pool = pool,
	                .lang = JS,
	                .timeout_ms = 60000,
	                .code = "const t = Date.now(); while (Date.now() - t < 4000) {} return 1"};
	pthread_create(&th, NULL, bg_run, &b2);
	CHECK(wait_busy_child(z));
	kill(z, SIGKILL);
	pid_t z2 = wait_new_zygote(pool, z);
	CHECK(z2 > 0);
	CHECK(wait_busy_child(z2));
	kill(z2, SIGKILL);
	pthread_join(th, NULL);
	CHECK_EQ_INT(b2.rc, 0);
	CHECK_EQ_INT(b2.res.status, ENGINE_INTERNAL);
	CHECK_CONTAINS(b2.res.error.message, "died");
	engine_result_release(&b2.res);

	/* Requests sent the moment a zygote dies are served: one that lands on a warm child
	   of the dying zygote (which closes its sockets before the kernel kills its children,
	   so the child still looks alive) runs again on the replacement. */
	pid_t z3 = wait_new_zygote(pool, z2);
	CHECK(z3 > 0);
	kill(z3, SIGKILL);
	for (int i = 0; i < 5; i++) {
		enum engine_status st_rep = ENGINE_INTERNAL;
		char *t = run_text(pool, JS,
		                   "await new Promise(r => setTimeout(r, 200)); return 'replaced'",
		                   NULL, &st_rep);
		CHECK_EQ_INT(st_rep, ENGINE_OK);
		CHECK_CONTAINS(t, "\"replaced\"");
		free(t);
	}
	struct engine_pool_stats st;
	engine_pool_stats(pool, &st);
	CHECK(st.zygote_restarts >= 4);
	engine_pool_shutdown(pool, 1000);
}

/* Code can write on its own end of the execution's socket. A frame that is not one ends the
   execution as `internal`, saying so; a RESULT of its own is its answer, and then it is
   killed: it does not run on after its answer (outside the concurrency limit). */
TEST(python_forged_frames)
{
	struct engine_pool *pool = pool_start(false, true, ENGINE_MODE_JAILED);
	struct engine_result res;
	run_ex(
	    pool, PY,
	    "import os\nos.write(3, b'\\x01\\x00\\x00\\x00\\xff\\xff\\xff\\xff')\nwhile True: pass",
	    NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_INTERNAL);
	CHECK_CONTAINS(res.error.message, "broke its channel");
	engine_result_release(&res);
	run_ex(pool, PY,
	       "import os, struct\nb = b'{\"status\":\"ok\",\"result\":7}'\n"
	       "os.write(3, struct.pack('<II', 3, len(b)) + b)\nwhile True: pass",
	       NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_OK);
	engine_result_release(&res);
	poll(NULL, 0, 1000);
	pid_t z = find_zygote("zygote-python");
	CHECK(z > 0);
	CHECK(!has_busy_child(z));
	expect(pool, PY, "return 6 * 7", ENGINE_OK, "\"result\":42");
	engine_pool_shutdown(pool, 1000);
}

TEST(queue_full_and_shutdown)
{
	struct engine_pool_options o;
	engine_pool_options_init(&o);
	o.languages[PY] = false;
	o.max_concurrency = 1;
	o.queue_size = 1;
	struct engine_pool *pool = NULL;
	struct st_error *err = NULL;
	if (engine_pool_new(&o, &pool, &err) < 0)
		UNIT_SKIP("user namespaces are not available here");
	struct bg a = {.pool = pool, .lang = JS, .code = "while (true) {}"};
	struct bg b = {.pool = pool, .lang = JS, .code = "return 2"};
	pthread_t ta, tb;
	pthread_create(&ta, NULL, bg_run, &a);
	poll(NULL, 0, 300);
	pthread_create(&tb, NULL, bg_run, &b);
	poll(NULL, 0, 300);
	struct engine_pool_stats st;
	engine_pool_stats(pool, &st);
	CHECK_EQ_INT(st.in_flight, 1);
	CHECK_EQ_INT(st.queued, 1);
	struct engine_request req;
	engine_request_init(&req);
	req.language = JS;
	req.code = "return 3";
	struct engine_result res;
	CHECK_EQ_INT(engine_execute(pool, &req, &res, &err), -EAGAIN);
	st_error_release(&err);
	json_t *sj = engine_pool_stats_to_json(pool);
	CHECK(json_integer_value(json_object_get(sj, "queued")) == 1);
	json_decref(sj);
	engine_pool_shutdown(pool, 200);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	CHECK_EQ_INT(a.rc, 0);
	CHECK_EQ_INT(a.res.status, ENGINE_KILLED);
	CHECK_EQ_INT(b.rc, -ESHUTDOWN);
	engine_result_release(&a.res);
}

TEST(unsandboxed_mode)
{
	struct engine_pool *pool = pool_start(true, true, ENGINE_MODE_UNSANDBOXED);
	expect(pool, JS, "return 1+1", ENGINE_OK, "\"sandboxed\":false");
	expect(pool, PY, "return 1+1", ENGINE_OK, "\"sandboxed\":false");
	if (geteuid() == 0)
		expect(pool, PY, "import os\nreturn os.getuid()", ENGINE_OK, "\"result\":65534");
	struct engine_result res;
	run_ex(pool, PY, "import ctypes\nctypes.CDLL(None).syscall(101, 0, 0, 0, 0)", NULL, &res);
	CHECK_EQ_INT(res.status, ENGINE_SANDBOX_VIOLATION);
	engine_result_release(&res);
	size_t n = 0;
	const char *const *w = engine_pool_warnings(pool, &n);
	bool found = false;
	for (size_t i = 0; i < n; i++)
		if (strstr(w[i], "UNSANDBOXED"))
			found = true;
	CHECK(found);
	engine_pool_shutdown(pool, 1000);
}

TEST(memory_admission)
{
	struct engine_pool_options o;
	engine_pool_options_init(&o);
	o.languages[PY] = false;
	o.memory_budget_bytes = 8u << 20;
	struct engine_pool *pool = NULL;
	struct st_error *err = NULL;
	if (engine_pool_new(&o, &pool, &err) < 0)
		UNIT_SKIP("user namespaces are not available here");
	struct bg a = {.pool = pool,
	               .lang = JS,
	               .timeout_ms = 60000,
	               .code = "const a = new Uint8Array(32 << 20).fill(1);"
	                       "await new Promise(r => setTimeout(r, 2000)); return a.length"};
	pthread_t ta;
	pthread_create(&ta, NULL, bg_run, &a);
	int rc = 0;
	struct engine_request req;
	engine_request_init(&req);
	req.language = JS;
	req.code = "return 1";
	struct engine_result res;
	for (int i = 0; i < 30 && rc != -EBUSY; i++) {
		poll(NULL, 0, 100);
		struct engine_pool_stats st;
		engine_pool_stats(pool, &st);
		if (st.memory_used_bytes < (8u << 20))
			continue;
		rc = engine_execute(pool, &req, &res, &err);
		if (rc == 0)
			engine_result_release(&res);
		st_error_release(&err);
	}
	pthread_join(ta, NULL);
	if (a.res.status != ENGINE_OK)
		fprintf(stderr, "background execution: %s: %s\n", engine_status_name(a.res.status),
		        a.res.error.message ? a.res.error.message : "");
	CHECK_EQ_INT(a.res.status, ENGINE_OK);
	engine_result_release(&a.res);
	struct engine_pool_stats st;
	engine_pool_stats(pool, &st);
	if (st.memory_budget_bytes == 0 || !rc)
		UNIT_SKIP("no memory cgroup to measure executions with");
	CHECK_EQ_INT(rc, -EBUSY);
	/* Once it ended, work is admitted again. */
	CHECK_EQ_INT(engine_execute(pool, &req, &res, &err), 0);
	engine_result_release(&res);
	engine_pool_shutdown(pool, 1000);
}
