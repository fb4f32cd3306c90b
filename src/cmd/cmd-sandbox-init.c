/*
 * cmd-sandbox-init.c - `stockade sandbox-init`: started by the service (never by hand) as the
 * init of a new `runtime: jail` agent sandbox; builds its root and becomes stockade-agent.
 * Exit status (only when it cannot start the agent): 1 set-up failure, 2 usage.
 */
#include "sandbox/sandbox.h"

int cmd_sandbox_init(int argc, char **argv);

int cmd_sandbox_init(int argc, char **argv)
{
	return sandbox_jail_init_main(argc, argv);
}
