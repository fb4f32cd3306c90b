/*
 * cmd-run.c - `stockade run`: run JavaScript or Python once in the jailed engines and print
 * the result JSON (the same shape as POST /api/v1/execute).
 *
 * Exit codes: 0 the code ran and returned (status ok), 1 it ran but did not succeed (any
 * other status) or the engine could not start, 2 usage error.
 */
#include <getopt.h>

#include "common/common.h"
#include "engine/engine.h"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: stockade run --lang javascript|python (FILE | -c CODE) [--params JSON]\n"
	    "                    [--timeout-ms N] [--memory-mb N] [--unsandboxed]\n"
	    "                    [--repeat N] [--modules-dir DIR] [--python-modules M,N]\n"
	    "\n"
	    "Runs CODE (a function body: `params` is in scope, `return` gives the result) in\n"
	    "a fresh jailed engine and prints {status, result, stdout, stderr, error, stats,\n"
	    "sandboxed}. FILE '-' reads the code from stdin.\n"
	    "\n"
	    "  --lang L          javascript (js) or python (py)\n"
	    "  -c CODE           the code itself\n"
	    "  --params JSON     the value of `params` (default null)\n"
	    "  --timeout-ms N    wall-clock limit (default 10000)\n"
	    "  --memory-mb N     memory limit (default 256)\n"
	    "  --unsandboxed     no namespaces (seccomp, rlimits, no_new_privs still apply)\n"
	    "  --repeat N        run N times and print latency percentiles instead (benchmark)\n"
	    "  --modules-dir DIR JavaScript packages for require() (default lib/js/node_modules)\n"
	    "  --python-modules M,N  modules the Python zygote imports at start (default json,\n"
	    "                    math,re,datetime,collections,numpy,pandas)\n"
	    "\n"
	    "exit codes: 0 status ok, 1 any other status or engine failure, 2 usage\n");
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

int cmd_run(int argc, char **argv);
int cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"lang", required_argument, NULL, 'l'},
	    {"params", required_argument, NULL, 'p'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"memory-mb", required_argument, NULL, 'm'},
	    {"unsandboxed", no_argument, NULL, 'U'},
	    {"repeat", required_argument, NULL, 'r'},
	    {"modules-dir", required_argument, NULL, 'M'},
	    {"python-modules", required_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *lang_s = NULL, *code_arg = NULL, *params = NULL, *modules = NULL;
	const char *pymods = NULL;
	uint64_t timeout_ms = 0, memory_mb = 0, repeat = 0;
	bool unsandboxed = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': lang_s = optarg; break;
		case 'c': code_arg = optarg; break;
		case 'p': params = optarg; break;
		case 't':
			if (st_parse_u64(optarg, &timeout_ms) < 0 || timeout_ms == 0) {
				fprintf(stderr,
				        "stockade run: --timeout-ms must be a positive integer\n");
				return 2;
			}
			break;
		case 'm':
			if (st_parse_u64(optarg, &memory_mb) < 0 || memory_mb == 0) {
				fprintf(stderr,
				        "stockade run: --memory-mb must be a positive integer\n");
				return 2;
			}
			break;
		case 'r':
			if (st_parse_u64(optarg, &repeat) < 0 || repeat == 0 || repeat > 1000000) {
				fprintf(stderr,
				        "stockade run: --repeat must be between 1 and 1000000\n");
				return 2;
			}
			break;
		case 'U': unsandboxed = true; break;
		case 'M': modules = optarg; break;
		case 'P': pymods = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	enum engine_language lang;
	if (lang_s == NULL || engine_language_parse(lang_s, &lang) < 0) {
		fprintf(stderr, "stockade run: --lang must be 'javascript' or 'python'\n");
		return 2;
	}
	char *code = NULL;
	if (code_arg != NULL) {
		if (optind < argc) {
			fprintf(stderr, "stockade run: give either -c CODE or FILE, not both\n");
			return 2;
		}
		code = st_xstrdup(code_arg);
	} else if (optind + 1 == argc) {
		const char *file = argv[optind];
		struct st_error *err = NULL;
		size_t len = 0;
		int r = strcmp(file, "-") == 0
		            ? st_read_file("/dev/stdin", 1u << 20, &code, &len, &err)
		            : st_read_file(file, 1u << 20, &code, &len, &err);
		if (r < 0) {
			fprintf(stderr, "stockade run: %s\n", st_error_msg(err));
			st_error_free(err);
			return 1;
		}
	} else {
		usage(stderr);
		return 2;
	}

	st_log_set_plain(true);
	struct engine_pool_options o;
	engine_pool_options_init(&o);
	for (int l = 0; l < ENGINE_LANG__COUNT; l++)
		o.languages[l] = l == (int)lang;
	o.mode = unsandboxed ? ENGINE_MODE_UNSANDBOXED : ENGINE_MODE_JAILED;
	o.js_modules_dir = modules;
	char *pymods_copy = NULL;
	const char *pylist[64] = {NULL};
	if (pymods != NULL) {
		pymods_copy = st_xstrdup(pymods);
		size_t n = 0;
		char *save = NULL;
		for (char *t = strtok_r(pymods_copy, ",", &save); t && n < 63;
		     t = strtok_r(NULL, ",", &save))
			pylist[n++] = t;
		o.python_modules = pylist;
	}
	if (timeout_ms > o.max_timeout_ms)
		o.max_timeout_ms = timeout_ms;
	if (memory_mb > o.max_memory_mb)
		o.max_memory_mb = memory_mb;
	struct engine_pool *pool = NULL;
	struct st_error *err = NULL;
	if (engine_pool_new(&o, &pool, &err) < 0) {
		fprintf(stderr, "stockade run: cannot start the %s engine: %s\n",
		        engine_language_name(lang), st_error_msg(err));
		st_error_free(err);
		free(code);
		free(pymods_copy);
		return 1;
	}
	struct engine_request req;
	engine_request_init(&req);
	req.language = lang;
	req.code = code;
	req.params_json = params;
	req.timeout_ms = timeout_ms;
	req.memory_mb = memory_mb;

	int rc = 0;
	if (repeat > 0) {
		int64_t *lat = st_xcalloc(repeat, sizeof(int64_t));
		unsigned failures = 0;
		int64_t t_all = st_now_us();
		for (uint64_t i = 0; i < repeat; i++) {
			struct engine_result res;
			int64_t t0 = st_now_us();
			int r = engine_execute(pool, &req, &res, &err);
			lat[i] = st_now_us() - t0;
			if (r < 0 || res.status != ENGINE_OK)
				failures++;
			if (r < 0)
				st_error_release(&err);
			else
				engine_result_release(&res);
		}
		int64_t total = st_now_us() - t_all;
		qsort(lat, repeat, sizeof(int64_t), cmp_i64);
		struct engine_pool_stats st;
		engine_pool_stats(pool, &st);
		printf("{\"language\":\"%s\",\"runs\":%llu,\"failures\":%u,\"p50Ms\":%.3f,"
		       "\"p90Ms\":%.3f,\"p99Ms\":%.3f,\"maxMs\":%.3f,\"perSecond\":%.1f,"
		       "\"zygoteRssKb\":%lld}\n",
		       engine_language_name(lang), (unsigned long long)repeat, failures,
		       (double)lat[repeat / 2] / 1000.0, (double)lat[repeat * 9 / 10] / 1000.0,
		       (double)lat[repeat * 99 / 100] / 1000.0, (double)lat[repeat - 1] / 1000.0,
		       (double)repeat * 1e6 / (double)(total ? total : 1),
		       (long long)st.zygote_rss_kb[lang]);
		free(lat);
		rc = failures ? 1 : 0;
	} else {
		struct engine_result res;
		int r = engine_execute(pool, &req, &res, &err);
		if (r < 0) {
			fprintf(stderr, "stockade run: %s\n", st_error_msg(err));
			st_error_free(err);
			rc = r == -EINVAL || r == -E2BIG ? 2 : 1;
		} else {
			json_t *j = engine_result_to_json(&res);
			char *text = json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII);
			printf("%s\n", text ? text : "{}");
			free(text);
			json_decref(j);
			rc = res.status == ENGINE_OK ? 0 : 1;
			engine_result_release(&res);
		}
	}
	engine_pool_shutdown(pool, 5000);
	free(code);
	free(pymods_copy);
	return rc;
}
