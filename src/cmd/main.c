/*
 * main.c - the `stockade` binary: picks a command and maps its result to an exit code.
 *
 * Each command lives in its own src/cmd/cmd-<name>.c as `int cmd_<name>(int argc, char **argv)`
 * and returns the process exit code. Commands only parse arguments and call the library.
 *
 * Exit codes shared by every command (each command documents its own in --help):
 *   0 success, 1 failure of the operation, 2 usage error.
 *
 * Internal commands (no summary) are dispatched like the others but left out of the help.
 */
#include <stdio.h>
#include <string.h>

#include "common/common.h"

int cmd_jail(int argc, char **argv) __attribute__((weak));
int cmd_doctor(int argc, char **argv) __attribute__((weak));
int cmd_serve(int argc, char **argv) __attribute__((weak));
int cmd_run(int argc, char **argv) __attribute__((weak));
int cmd_config(int argc, char **argv) __attribute__((weak));
int cmd_keys(int argc, char **argv) __attribute__((weak));
int cmd_migrate(int argc, char **argv) __attribute__((weak));
int cmd_blob(int argc, char **argv) __attribute__((weak));
int cmd_sandbox_init(int argc, char **argv) __attribute__((weak));

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary; /* NULL: internal, run by the service itself and not listed in help */
};

static const struct command commands[] = {
    {"serve", cmd_serve, "run the HTTP service (all enabled components, or one --role)"},
    {"run", cmd_run, "run JavaScript or Python once in a jailed engine and print the result"},
    {"jail", cmd_jail, "run a command in a jail and report how it ended"},
    {"doctor", cmd_doctor, "report what this host supports and which modes will work"},
    {"config", cmd_config, "check or show a stockade.yaml"},
    {"keys", cmd_keys, "generate the agent sandbox keypair and encryption key"},
    {"migrate", cmd_migrate, "show or retry state store migrations"},
    {"blob", cmd_blob, "put, get, list and delete objects in the configured blob storage"},
    /* The init of a `runtime: jail` agent sandbox (src/cmd/cmd-sandbox-init.c). */
    {"sandbox-init", cmd_sandbox_init, NULL},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: stockade <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < ST_ARRAY_SIZE(commands); i++)
		if (commands[i].fn && commands[i].summary)
			fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'stockade <command> --help' describes each command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
		printf("stockade %s\n", ST_VERSION);
		return 0;
	}
	for (size_t i = 0; i < ST_ARRAY_SIZE(commands); i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		if (commands[i].fn == NULL) {
			fprintf(stderr, "stockade: command '%s' is not part of this build\n", name);
			return 2;
		}
		return commands[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "stockade: unknown command '%s'\n\n", name);
	usage(stderr);
	return 2;
}
