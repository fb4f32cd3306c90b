/*
 * agent-proto.h - the wire protocol between the service and stockade-agent, the init process of
 * every agent sandbox. Shared by src/agent/ (the server, inside the sandbox) and
 * src/sandbox/sandbox-agentproto.c (the client, in the service). Header only, no dependencies,
 * so the agent stays a self-contained program.
 *
 * Transport: the agent listens on a unix socket in a host directory bind-mounted into the
 * sandbox (runsc --host-uds=create makes the socket reachable from the host). One connection
 * carries one request, so concurrent execs and file transfers never multiplex.
 *
 * Frame: 1 byte type, 4 bytes big-endian payload length, payload (at most AGENT_FRAME_MAX).
 * The first frame from the client is AGENT_F_REQ: NUL-terminated "key=value" strings, "op=..."
 * first. Repeated keys (arg, env) keep their order. Replies:
 *   AGENT_F_OK   request accepted; payload "key=value" strings (pid, size, ...)
 *   AGENT_F_ERR  request refused or failed; payload "errno=N\0msg=...\0"; connection ends
 *   AGENT_F_OUT / AGENT_F_ERRDATA   stdout / stderr chunks of a command
 *   AGENT_F_EXIT "exit=N\0signal=N\0timedout=0|1\0wall_ms=N\0" then the connection ends
 *   AGENT_F_DATA file bytes (both directions); an empty DATA frame ends the stream
 *   AGENT_F_ENT  one directory entry "name\0type\0size\0mode\0mtime\0"
 * From the client during exec: AGENT_F_STDIN chunks (empty = EOF), AGENT_F_SIGNAL "sig=N\0".
 * After AGENT_F_OK to op=connect the connection becomes a raw byte stream to the port.
 */
#ifndef STOCKADE_AGENT_PROTO_H
#define STOCKADE_AGENT_PROTO_H

#define AGENT_FRAME_MAX (1024 * 1024)
#define AGENT_HDR_LEN 5

#define AGENT_F_REQ 'Q'
#define AGENT_F_OK 'K'
#define AGENT_F_ERR 'R'
#define AGENT_F_OUT 'O'
#define AGENT_F_ERRDATA 'E'
#define AGENT_F_EXIT 'X'
#define AGENT_F_DATA 'D'
#define AGENT_F_ENT 'L'
#define AGENT_F_STDIN 'I'
#define AGENT_F_SIGNAL 'S'

/* Paths inside the sandbox. */
#define AGENT_CHAN_DIR "/run/stockade"
#define AGENT_SOCK_NAME "agent.sock"
#define AGENT_EGRESS_SOCK_NAME "egress.sock"
#define AGENT_WORKSPACE "/workspace"
/* stockade-compat.so (agent-compat.c), mounted by the gVisor runtime; the agent preloads it into
   commands when the kernel under it needs it. */
#define AGENT_COMPAT_PATH "/opt/stockade/compat.so"
/* The in-sandbox HTTP(S) proxy port the agent forwards to the service's egress proxy. */
#define AGENT_EGRESS_PORT 3128
/* Commands run as this unprivileged user; the agent itself stays root so they cannot kill it. */
#define AGENT_USER_UID 1000
#define AGENT_USER_GID 1000

#endif
