/*
 * fuzz-mcp.c - libFuzzer target: any bytes as the body of a POST to /mcp, through the
 * transport-free MCP core (mcp.h): JSON-RPC classification, batches, initialize and version
 * negotiation, sessions, tools/list, tools/call argument checks against a tool's JSON Schema
 * (mcp_check_args) and the call itself on a dummy tool. The first byte picks the transport
 * facts (session header or not, protocol-version header, SSE accepted); the rest is the body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/mcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mcp_server *g_srv;
static char *g_sid;

static int echo_tool(void *ctx, struct mcp_call *call, json_t *args, json_t **result,
                     struct st_error **err)
{
	(void)ctx;
	int r = mcp_check_args(g_srv, "echo", args, err);
	if (r < 0)
		return r;
	mcp_call_progress(call, 1, 2, "half");
	*result = mcp_text_result("ok", json_deep_copy(args), false);
	return 0;
}

static void setup(void)
{
	struct mcp_options o;
	mcp_options_init(&o);
	o.max_sessions = 64;
	if (mcp_server_new(&o, &g_srv, NULL) < 0)
		abort();
	struct mcp_tool t = {
	    .name = "echo",
	    .description = "echo its arguments",
	    .input_schema = "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\","
	                    "\"minimum\":0},\"s\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"]},"
	                    "\"o\":{\"type\":\"object\"},\"l\":{\"type\":\"array\",\"items\":{"
	                    "\"type\":\"string\"}},\"b\":{\"type\":\"boolean\"},\"x\":{\"type\":"
	                    "\"number\"}},\"required\":[\"n\"],\"additionalProperties\":false}",
	    .scope = "execute",
	    .fn = echo_tool};
	if (mcp_add_tool(g_srv, &t, NULL) < 0)
		abort();
	const char *b = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
	                "\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{"
	                "\"name\":\"fuzz\",\"version\":\"1\"}}}";
	struct mcp_post in = {.principal = "fuzz", .body = b, .body_len = strlen(b)};
	struct mcp_post_result out;
	mcp_handle_post(g_srv, &in, &out);
	if (out.status != 200 || !out.new_session_id)
		abort();
	g_sid = strdup(out.new_session_id);
	mcp_post_result_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!g_srv)
		setup();
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	static const char *const versions[] = {NULL, "2025-06-18", "2025-11-25", "1999-01-01"};
	/* the body in an exact-size buffer (the transport passes body_len; no NUL promised) */
	size_t n = size - 1;
	char *body = malloc(n ? n : 1);
	if (!body)
		abort();
	if (n)
		memcpy(body, data + 1, n);
	struct mcp_post in = {.session_id = (mode & 1) ? g_sid : ((mode & 2) ? "bogus" : NULL),
	                      .protocol_version = versions[(mode >> 2) & 3],
	                      .principal = (mode & 16) ? "someone-else" : "fuzz",
	                      .body = body,
	                      .body_len = n,
	                      .accepts_sse = (mode & 32) != 0};
	struct mcp_post_result out;
	mcp_handle_post(g_srv, &in, &out);
	if (out.kind == MCP_POST_CALL_TOOL) {
		if (!out.request)
			abort();
		struct mcp_call call = {.principal = in.principal};
		json_t *resp = mcp_run_call(g_srv, out.request, &call);
		if (!resp)
			abort();
		json_decref(resp);
	} else if (out.status == 0) {
		abort(); /* every reply has a status */
	}
	if (out.new_session_id && strcmp(out.new_session_id, g_sid) != 0)
		mcp_end_session(g_srv, out.new_session_id, in.principal);
	mcp_post_result_release(&out);
	if (mcp_session_count(g_srv) == 0)
		abort(); /* our own session was lost */

	/* the schema check alone, on the body as arguments */
	json_t *args = json_loadb(body, n, 0, NULL);
	if (args) {
		struct st_error *err = NULL;
		if (mcp_check_args(g_srv, "echo", args, &err) < 0 && !err)
			abort();
		st_error_free(err);
		json_decref(args);
	}
	free(body);
	return 0;
}
