/*
 * fuzz-agentproto.c - libFuzzer target: any bytes as what a sandbox's agent sends back to the
 * service (agent/agent-proto.h). The agent runs inside the sandbox, so a compromised sandbox
 * controls every byte: the service's decoder (sandbox__frame_read, sandbox__kv_get,
 * sandbox__agent_call in sandbox-agentproto.c) must refuse or parse it, never crash, and
 * never report success for anything but an OK frame.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sandbox/sandbox-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT (64 * 1024) /* stays well inside a socket buffer: no blocking */

static char *g_buf;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX_INPUT)
		return 0;
	if (!g_buf && !(g_buf = malloc(AGENT_FRAME_MAX + 1)))
		abort();
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	int big = 4 * FUZZ_MAX_INPUT;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (size && st_write_all(sv[1], data, size) < 0)
		abort();
	shutdown(sv[1], SHUT_WR);

	/* The service's first step of every operation: send a request, read the first reply. */
	struct st_buf req;
	st_buf_init(&req, 4096);
	sandbox__kv_add(&req, "op", "stat");
	sandbox__kv_add(&req, "path", "dir/file.txt");
	uint32_t len = 0;
	struct st_error *err = NULL;
	int r = sandbox__agent_call(sv[0], &req, g_buf, &len, &err);
	st_buf_release(&req);
	if (r > 0)
		abort(); /* a positive return reads as success to every caller */
	if (r == 0) {
		if (err || data[0] != AGENT_F_OK)
			abort();
		/* what callers then read out of an OK payload */
		static const char *const keys[] = {"size", "mode", "mtime", "type", "pid"};
		for (size_t i = 0; i < 5; i++) {
			const char *v = sandbox__kv_get(g_buf, len, keys[i]);
			int64_t n;
			if (v && (v < g_buf || v > g_buf + len))
				abort();
			if (v)
				(void)st_parse_i64(v, &n);
		}
		/* the rest of the stream: output, exit status, data, directory entries */
		char t;
		while (sandbox__frame_read(sv[0], &t, g_buf, &len) > 0) {
			if (t == AGENT_F_EXIT) {
				static const char *const ek[] = {"exit", "signal", "timedout",
				                                 "wall_ms"};
				for (size_t i = 0; i < 4; i++) {
					const char *v = sandbox__kv_get(g_buf, len, ek[i]);
					int64_t n;
					if (v)
						(void)st_parse_i64(v, &n);
				}
			}
		}
	} else {
		if (!err)
			abort(); /* a failure without a message */
	}
	st_error_free(err);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
