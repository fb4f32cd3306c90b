/*
 * cmd-config.c - `stockade config check|show`: validate a stockade.yaml without starting
 * anything, or print the effective configuration with secrets redacted.
 *
 * Exit codes: 0 valid (warnings allowed), 1 errors found or the file is unreadable, 2 usage.
 */
#include <stdio.h>
#include <string.h>

#include "common/common.h"
#include "config/config.h"

int cmd_config(int argc, char **argv);

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: stockade config check FILE [--json]\n"
	        "       stockade config show [FILE] [--json]\n\n"
	        "check  validate FILE and print every problem at once (errors and warnings, each\n"
	        "       with its key path); exit 1 when there is any error, 0 otherwise\n"
	        "show   print the effective configuration (file + environment + defaults) as\n"
	        "       JSON with secrets redacted; without FILE, the embedded defaults\n\n"
	        "--json  machine-readable output: check prints {\"valid\":..,\"problems\":[..]},\n"
	        "        show prints one line\n\n"
	        "Environment variables that override the file are listed in\n"
	        "docs/configuration.md (ENCRYPTION_KEY, JWT_SECRET, RR_DEFAULT_S3_*, ...).\n"
	        "exit codes: 0 ok, 1 invalid or unreadable, 2 usage\n");
}

int cmd_config(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		usage(stdout);
		return 0;
	}
	bool json = false;
	const char *file = NULL;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "stockade config: unknown option '%s'\n", argv[i]);
			return 2;
		} else if (file == NULL) {
			file = argv[i];
		} else {
			fprintf(stderr, "stockade config: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
	}
	bool check = strcmp(sub, "check") == 0;
	if (!check && strcmp(sub, "show") != 0) {
		fprintf(stderr, "stockade config: unknown subcommand '%s' (check or show)\n", sub);
		return 2;
	}
	if (check && file == NULL) {
		fprintf(stderr, "stockade config check: a FILE is required\n");
		return 2;
	}

	struct stockade_config cfg;
	struct config_problems pr;
	struct st_error *err = NULL;
	config_problems_init(&pr);
	int rc = config_load(file, &cfg, &pr, &err);
	if (rc < 0 && rc != -EINVAL) {
		fprintf(stderr, "stockade config: %s\n", st_error_msg(err));
		st_error_free(err);
		config_problems_release(&pr);
		return 1;
	}
	size_t nerr = config_problems_count(&pr, CONFIG_ERROR);
	size_t nwarn = config_problems_count(&pr, CONFIG_WARNING);
	int exit_code = nerr ? 1 : 0;
	if (check) {
		if (json) {
			json_t *o =
			    json_pack("{s:s, s:b, s:I, s:I, s:o}", "file", file, "valid", nerr == 0,
			              "errors", (json_int_t)nerr, "warnings", (json_int_t)nwarn,
			              "problems", config_problems_to_json(&pr));
			char *s = json_dumps(o, JSON_COMPACT);
			printf("%s\n", s);
			free(s);
			json_decref(o);
		} else {
			config_problems_print(&pr, stdout);
			printf("%s: %s (%zu error%s, %zu warning%s)\n", file,
			       nerr ? "invalid" : "ok", nerr, nerr == 1 ? "" : "s", nwarn,
			       nwarn == 1 ? "" : "s");
		}
	} else {
		if (nerr) {
			config_problems_print(&pr, stderr);
			fprintf(stderr, "%s: invalid (%zu error%s); nothing to show\n",
			        file ? file : "embedded defaults", nerr, nerr == 1 ? "" : "s");
		} else {
			config_problems_print(&pr, stderr);
			json_t *o = config_to_json(&cfg, true);
			char *s = json_dumps(o, json ? JSON_COMPACT : JSON_INDENT(2));
			printf("%s\n", s);
			free(s);
			json_decref(o);
		}
	}
	if (rc == 0)
		config_release(&cfg);
	config_problems_release(&pr);
	return exit_code;
}
