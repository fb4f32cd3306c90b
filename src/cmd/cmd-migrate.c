/*
 * cmd-migrate.c - `stockade migrate status|retry`: show schema and background data migrations
 * of the state store, and re-trigger a failed data migration.
 *
 * Exit codes: 0 success; 1 failure (store unreachable, retry refused or the migration failed
 * again); 2 usage error.
 */
#include <getopt.h>
#include <time.h>

#include "common/common.h"
#include "config/config.h"
#include "store/store.h"

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: stockade migrate status [STORE] [--json]\n"
	        "       stockade migrate retry NAME [STORE] [--no-wait]\n"
	        "       stockade migrate up [STORE]\n"
	        "\n"
	        "STORE is one of (default: --data-dir ./data):\n"
	        "  --config FILE        the store stockade.yaml configures (postgresql, else\n"
	        "                       SQLite under dataDir; with --namespace agent_executor the\n"
	        "                       agent sandbox's database)\n"
	        "  --data-dir DIR       the SQLite store DIR/stockade.db\n"
	        "  --sqlite FILE        a SQLite database file\n"
	        "  --pg CONNINFO        a Postgres connection string or postgres:// URL\n"
	        "  --namespace NS       the component namespace (default: stockade)\n"
	        "  --schema SCHEMA      the Postgres schema when it differs from NS\n"
	        "\n"
	        "status   schema migrations applied and the state of every background data\n"
	        "         migration (pending, running, done, failed with its error)\n"
	        "up       apply the pending schema migrations of every component in the\n"
	        "         namespace now (the service also does this when it starts; safe to run\n"
	        "         from several processes at once)\n"
	        "retry    re-run a failed data migration; refused while it is running. Stockade's\n"
	        "         own migrations run here and the command waits for the result; others\n"
	        "         (or with --no-wait) are queued for the running service to pick up\n"
	        "\n"
	        "exit codes: 0 success, 1 failure or refused, 2 usage\n");
}

struct args {
	const char *config;
	const char *data_dir;
	const char *sqlite;
	const char *pg;
	const char *ns;
	const char *schema;
	bool json;
	bool no_wait;
};

static int open_store(const struct args *a, struct store **s)
{
	struct store_options o = {.ns = a->ns, .pg_schema = a->schema};
	cleanup_free char *path = NULL;
	if (a->config) {
		struct config_problems probs;
		config_problems_init(&probs);
		struct st_error *cerr = NULL;
		struct stockade_config cfg;
		int r = config_load(a->config, &cfg, &probs, &cerr);
		if (r < 0) {
			if (r == -EINVAL)
				config_problems_print(&probs, stderr);
			else
				fprintf(stderr, "stockade migrate: %s\n", st_error_msg(cerr));
			st_error_free(cerr);
			config_problems_release(&probs);
			return r;
		}
		config_problems_release(&probs);
		r = store_open_config(&cfg, a->ns, s, &cerr);
		config_release(&cfg);
		if (r == 0)
			r = store_register_builtin_data_migrations(*s, &cerr);
		if (r < 0) {
			fprintf(stderr, "stockade migrate: %s\n", st_error_msg(cerr));
			st_error_free(cerr);
			store_free(*s);
			*s = NULL;
		}
		return r;
	} else if (a->pg) {
		o.backend = STORE_POSTGRES;
		o.pg_conninfo = a->pg;
	} else {
		o.backend = STORE_SQLITE;
		if (a->sqlite) {
			path = st_xstrdup(a->sqlite);
		} else {
			const char *dir = a->data_dir ? a->data_dir : "./data";
			if (access(dir, F_OK) != 0) {
				fprintf(
				    stderr,
				    "stockade migrate: data directory '%s' does not exist (pass "
				    "--data-dir DIR, --config FILE or --pg CONNINFO)\n",
				    dir);
				return -ENOENT;
			}
			path = st_xasprintf("%s/stockade.db", dir);
		}
		o.sqlite_path = path;
	}
	struct st_error *err = NULL;
	int r = store_open(&o, s, &err);
	if (r == 0)
		r = store_register_builtin_data_migrations(*s, &err);
	if (r < 0) {
		fprintf(stderr, "stockade migrate: %s\n", st_error_msg(err));
		st_error_free(err);
		store_free(*s);
		*s = NULL;
	}
	return r;
}

static void fmt_time(json_t *ms, char *buf, size_t len)
{
	if (!json_is_integer(ms)) {
		st_strlcpy(buf, "-", len);
		return;
	}
	time_t t = (time_t)(json_integer_value(ms) / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void print_status(json_t *st)
{
	printf("store: %s namespace '%s'\n\nschema migrations:\n",
	       json_string_value(json_object_get(st, "backend")),
	       json_string_value(json_object_get(st, "namespace")));
	size_t i;
	json_t *row;
	char when[32];
	if (json_array_size(json_object_get(st, "schema")) == 0 &&
	    json_array_size(json_object_get(st, "pending_schema")) == 0)
		printf("  (none)\n");
	json_array_foreach(json_object_get(st, "schema"), i, row)
	{
		fmt_time(json_object_get(row, "applied_at"), when, sizeof(when));
		printf("  %-16s %4lld  %-32s applied %s\n",
		       json_string_value(json_object_get(row, "component")),
		       (long long)json_integer_value(json_object_get(row, "version")),
		       json_string_value(json_object_get(row, "name")), when);
	}
	json_array_foreach(json_object_get(st, "pending_schema"), i, row)
	{
		printf(
		    "  %-16s %4lld  %-32s pending ('stockade migrate up' or start the service)\n",
		    json_string_value(json_object_get(row, "component")),
		    (long long)json_integer_value(json_object_get(row, "version")),
		    json_string_value(json_object_get(row, "name")));
	}
	printf("\ndata migrations:\n");
	if (json_array_size(json_object_get(st, "data")) == 0)
		printf("  (none)\n");
	json_array_foreach(json_object_get(st, "data"), i, row)
	{
		const char *state = json_string_value(json_object_get(row, "state"));
		bool stale = json_is_true(json_object_get(row, "stale"));
		fmt_time(json_object_get(row, "finished_at"), when, sizeof(when));
		printf("  %-28s %-8s%s attempts %lld, finished %s\n",
		       json_string_value(json_object_get(row, "name")), state,
		       stale ? " (stale: its runner stopped heartbeating)" : "",
		       (long long)json_integer_value(json_object_get(row, "attempts")), when);
		const char *e = json_string_value(json_object_get(row, "error"));
		if (e)
			printf("      error: %s\n", e);
	}
	json_t *failed = json_object_get(st, "failed");
	if (json_array_size(failed) > 0) {
		printf("\n%zu data migration%s failed; the service keeps working, but resolve %s "
		       "before upgrading:\n",
		       json_array_size(failed), json_array_size(failed) == 1 ? "" : "s",
		       json_array_size(failed) == 1 ? "it" : "them");
		json_array_foreach(failed, i, row)
		    printf("  stockade migrate retry %s\n", json_string_value(row));
	}
}

static int do_status(const struct args *a)
{
	struct store *s = NULL;
	if (open_store(a, &s) < 0)
		return 1;
	json_t *st = NULL;
	struct st_error *err = NULL;
	int r = store_migration_status(s, &st, &err);
	if (r < 0) {
		fprintf(stderr, "stockade migrate: %s\n", st_error_msg(err));
		st_error_free(err);
		store_free(s);
		return 1;
	}
	if (a->json) {
		char *text = json_dumps(st, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("%s\n", text ? text : "{}");
		free(text);
	} else {
		print_status(st);
	}
	json_decref(st);
	store_free(s);
	return 0;
}

static int do_up(const struct args *a)
{
	struct store *s = NULL;
	if (open_store(a, &s) < 0)
		return 1;
	struct st_error *err = NULL;
	int applied = 0;
	int r = store_migrate_declared(s, &applied, &err);
	if (r < 0) {
		fprintf(stderr, "stockade migrate: %s\n", st_error_msg(err));
		st_error_free(err);
		store_free(s);
		return 1;
	}
	printf("applied %d schema migration%s in namespace '%s'\n", applied,
	       applied == 1 ? "" : "s", store_ns(s));
	store_free(s);
	return 0;
}

static bool is_known(json_t *st, const char *name, const char **state, const char **error)
{
	size_t i;
	json_t *row;
	json_array_foreach(json_object_get(st, "data"), i, row)
	{
		if (strcmp(json_string_value(json_object_get(row, "name")), name) != 0)
			continue;
		*state = json_string_value(json_object_get(row, "state"));
		*error = json_string_value(json_object_get(row, "error"));
		return json_is_true(json_object_get(row, "known"));
	}
	return false;
}

static int do_retry(const struct args *a, const char *name)
{
	struct store *s = NULL;
	if (open_store(a, &s) < 0)
		return 1;
	struct st_error *err = NULL;
	int r = store_data_migration_retry(s, name, &err);
	if (r < 0) {
		fprintf(stderr, "stockade migrate: %s\n", st_error_msg(err));
		st_error_free(err);
		store_free(s);
		return 1;
	}
	json_t *st = NULL;
	const char *state = NULL, *error = NULL;
	if (store_migration_status(s, &st, &err) < 0 || !is_known(st, name, &state, &error) ||
	    a->no_wait) {
		st_error_release(&err);
		printf("data migration '%s' queued; the running service picks it up within a "
		       "minute ('stockade migrate status' shows progress)\n",
		       name);
		json_decref(st);
		store_free(s);
		return 0;
	}
	json_decref(st);
	/* Ours: run it here, now, and report. Another process may claim it first; then this
	 * reports what that one is doing. */
	r = store_data_migration_run(s, name, &err);
	st_error_release(&err);
	if (store_migration_status(s, &st, &err) < 0) {
		fprintf(stderr, "stockade migrate: %s\n", st_error_msg(err));
		st_error_free(err);
		store_free(s);
		return 1;
	}
	is_known(st, name, &state, &error);
	int code = 0;
	if (state && strcmp(state, "done") == 0) {
		printf("data migration '%s' done\n", name);
	} else if (state && strcmp(state, "failed") == 0) {
		fprintf(stderr,
		        "stockade migrate: data migration '%s' failed again: %s (fix the cause and "
		        "retry; contact support if it keeps failing)\n",
		        name, error ? error : "no error recorded");
		code = 1;
	} else {
		printf("data migration '%s' is %s in another process ('stockade migrate status' "
		       "shows progress)\n",
		       name, state ? state : "queued");
	}
	json_decref(st);
	store_free(s);
	return code;
}

int cmd_migrate(int argc, char **argv);
int cmd_migrate(int argc, char **argv)
{
	struct args a = {.ns = "stockade"};
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"data-dir", required_argument, NULL, 'd'},
	    {"sqlite", required_argument, NULL, 's'},
	    {"pg", required_argument, NULL, 'p'},
	    {"namespace", required_argument, NULL, 'n'},
	    {"schema", required_argument, NULL, 'S'},
	    {"json", no_argument, NULL, 'j'},
	    {"no-wait", no_argument, NULL, 'W'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	optind = 1;
	int c;
	/* GNU getopt permutes: options may come before or after the subcommand and NAME. */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': a.config = optarg; break;
		case 'd': a.data_dir = optarg; break;
		case 's': a.sqlite = optarg; break;
		case 'p': a.pg = optarg; break;
		case 'n': a.ns = optarg; break;
		case 'S': a.schema = optarg; break;
		case 'j': a.json = true; break;
		case 'W': a.no_wait = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	const char *pos[3] = {0};
	size_t npos = 0;
	for (int i = optind; i < argc; i++) {
		if (npos < ST_ARRAY_SIZE(pos))
			pos[npos] = argv[i];
		npos++;
	}
	if (npos == 0) {
		usage(stderr);
		return 2;
	}
	if ((a.pg != NULL) + (a.sqlite != NULL) + (a.data_dir != NULL) + (a.config != NULL) > 1) {
		fprintf(
		    stderr,
		    "stockade migrate: give only one of --config, --data-dir, --sqlite, --pg\n");
		return 2;
	}
	st_log_set_plain(true);
	st_log_set_level(ST_LOG_WARN);
	if (strcmp(pos[0], "status") == 0 && npos == 1)
		return do_status(&a);
	if (strcmp(pos[0], "up") == 0 && npos == 1)
		return do_up(&a);
	if (strcmp(pos[0], "retry") == 0 && npos == 2)
		return do_retry(&a, pos[1]);
	if (strcmp(pos[0], "retry") == 0)
		fprintf(stderr, "stockade migrate: retry needs exactly one NAME (see 'stockade "
		                "migrate status')\n");
	else
		fprintf(stderr, "stockade migrate: unknown subcommand '%s'\n", pos[0]);
	usage(stderr);
	return 2;
}
