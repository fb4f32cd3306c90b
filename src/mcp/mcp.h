/*
 * mcp.h - the Model Context Protocol server: Stockade's execution and agent sandboxes as MCP
 * tools, over the streamable HTTP transport at /mcp, as an OAuth 2.1 resource server.
 *
 * The protocol core (mcp.c) is transport-free: it owns sessions, protocol-version negotiation,
 * JSON-RPC dispatch and the tool registry, and is driven by mcp_handle_post / mcp_end_session.
 * mcp-http.c puts it on the HTTP server (routes, Origin/Host checks, SSE), mcp-auth.c checks
 * bearer tokens (JWKS-verified JWTs, or a development static token), mcp-tools.c defines the
 * tools over the engines and the sandbox manager.
 */
#ifndef STOCKADE_MCP_H
#define STOCKADE_MCP_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"

#define MCP_PROTOCOL_LATEST "2025-11-25"

struct mcp_server; /* opaque */

struct mcp_options {
	const char *server_name; /* serverInfo.name; default "stockade" */
	const char *instructions; /* initialize result `instructions`; may be NULL */
	uint64_t session_idle_ms; /* sessions unused this long expire (404); default 30 min */
	unsigned max_sessions; /* oldest idle sessions are dropped beyond it; default 1024 */
	size_t max_message_bytes; /* larger POST bodies: 413; default 4 MiB */
};
void mcp_options_init(struct mcp_options *o);

int mcp_server_new(const struct mcp_options *o, struct mcp_server **out, struct st_error **err);
void mcp_server_free(struct mcp_server *s);

/* Is a protocol version one this server speaks? */
bool mcp_protocol_supported(const char *version);

/* ---- tools ----------------------------------------------------------------------------- */

/* A tool call in progress: who is calling, and a way to report progress. */
struct mcp_call {
	const char *principal; /* authenticated subject ("anonymous" when auth is off) */
	json_t *progress_token; /* params._meta.progressToken, or NULL */
	/* Emit a JSON-RPC notification to the client (steals n); NULL when the reply is not a
	   stream, in which case progress is dropped. */
	int (*notify)(void *notify_ctx, json_t *n);
	void *notify_ctx;
	double progress; /* last progress value sent (monotonic) */
};

/* Send notifications/progress when the caller asked for it (progress_token set). */
void mcp_call_progress(struct mcp_call *call, double progress, double total, const char *message);

/*
 * A tool handler fills *result with a CallToolResult ({content, structuredContent?,
 * isError?}) and returns 0. A tool *failure* (the code raised, the sandbox is gone) is a
 * result with isError true, so the model can read it. Return -EINVAL with *err set for
 * arguments that do not fit the schema (JSON-RPC -32602); other negative codes are internal
 * errors (-32603).
 */
typedef int (*mcp_tool_fn)(void *ctx, struct mcp_call *call, json_t *args, json_t **result,
                           struct st_error **err);

struct mcp_tool {
	const char *name;
	const char *title;
	const char *description; /* written for a model: what it does, when to use it */
	const char *input_schema; /* JSON Schema (2020-12) text for `arguments` */
	const char *scope; /* OAuth scope a caller needs; NULL: none */
	bool read_only; /* annotations.readOnlyHint */
	bool destructive; /* annotations.destructiveHint */
	mcp_tool_fn fn;
	void *ctx;
};

/* The tool is copied (strings duplicated); fails on a duplicate name or a bad schema. */
int mcp_add_tool(struct mcp_server *s, const struct mcp_tool *tool, struct st_error **err);
/* The scope a tool needs (NULL: none, or no such tool). */
const char *mcp_tool_scope(struct mcp_server *s, const char *name);
size_t mcp_tool_count(struct mcp_server *s);

/* Helpers for tool handlers. */
json_t *mcp_text_result(const char *text, json_t *structured /* stolen, may be NULL */,
                        bool is_error);
/* Validate args against the tool's schema: required properties, types of declared
   properties, no undeclared ones when additionalProperties is false. */
int mcp_check_args(struct mcp_server *s, const char *tool, json_t *args, struct st_error **err);

/* ---- the transport-free core ------------------------------------------------------------ */

/* What the transport learned from the HTTP request. */
struct mcp_post {
	const char *session_id; /* Mcp-Session-Id header, or NULL */
	const char *protocol_version; /* MCP-Protocol-Version header, or NULL */
	const char *principal; /* authenticated subject */
	const char *body; /* the raw POST body */
	size_t body_len;
	bool accepts_sse; /* Accept includes text/event-stream */
};

enum mcp_post_kind {
	MCP_POST_REPLY, /* reply `status` with `body` (may be NULL: no body) */
	MCP_POST_CALL_TOOL, /* a tools/call to run: mcp_run_call() (maybe on a stream) */
};

struct mcp_post_result {
	enum mcp_post_kind kind;
	unsigned status; /* HTTP status for MCP_POST_REPLY */
	json_t *body; /* owned */
	char *new_session_id; /* set by initialize: send as Mcp-Session-Id */
	/* MCP_POST_CALL_TOOL: */
	json_t *request; /* the JSON-RPC request (owned) */
	const char *needed_scope; /* the tool's scope, for the transport's 403 check */
};
void mcp_post_result_release(struct mcp_post_result *r);

/* Classify and (except for tools/call) answer one POSTed message. */
void mcp_handle_post(struct mcp_server *s, const struct mcp_post *in, struct mcp_post_result *out);
/* Run a tools/call request; returns the JSON-RPC response (never NULL). */
json_t *mcp_run_call(struct mcp_server *s, json_t *request, struct mcp_call *call);
/* DELETE: 0 when the session existed (and is now gone), -ENOENT otherwise. */
int mcp_end_session(struct mcp_server *s, const char *session_id, const char *principal);
size_t mcp_session_count(struct mcp_server *s);

/* JSON-RPC error codes. */
#define MCP_PARSE_ERROR (-32700)
#define MCP_INVALID_REQUEST (-32600)
#define MCP_METHOD_NOT_FOUND (-32601)
#define MCP_INVALID_PARAMS (-32602)
#define MCP_INTERNAL_ERROR (-32603)

json_t *mcp_jsonrpc_error(json_t *id /* borrowed, may be NULL */, int code, const char *message);

#endif
