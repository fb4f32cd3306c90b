/* test-mcp.c - the MCP protocol core without HTTP: sessions, negotiation, dispatch, argument
   checks, progress. */
#include "mcp/mcp.h"
#include "unit.h"

static int echo_tool(void *ctx, struct mcp_call *call, json_t *args, json_t **result,
                     struct st_error **err)
{
	mcp_call_progress(call, 1, 2, "half");
	mcp_call_progress(call, 0, 2, "backwards is clamped");
	*result = mcp_text_result("ok", json_deep_copy(args), false);
	return 0;
}

static struct mcp_server *server(void)
{
	struct mcp_server *s = NULL;
	CHECK(mcp_server_new(NULL, &s, NULL) == 0);
	struct mcp_tool t = {.name = "echo",
	                     .description = "echo",
	                     .input_schema =
	                         "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":"
	                         "\"integer\",\"minimum\":0},\"s\":{\"type\":\"string\","
	                         "\"enum\":[\"a\",\"b\"]}},\"required\":[\"n\"],"
	                         "\"additionalProperties\":false}",
	                     .scope = "execute",
	                     .fn = echo_tool};
	CHECK(mcp_add_tool(s, &t, NULL) == 0);
	CHECK(mcp_add_tool(s, &t, NULL) == -EEXIST);
	return s;
}

static char *init_session(struct mcp_server *s, const char *who)
{
	const char *b = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
	                "\"protocolVersion\":\"2025-06-18\"}}";
	struct mcp_post in = {.principal = who, .body = b, .body_len = strlen(b)};
	struct mcp_post_result out;
	mcp_handle_post(s, &in, &out);
	CHECK_EQ_INT(out.status, 200);
	CHECK_STREQ(json_string_value(
	                json_object_get(json_object_get(out.body, "result"), "protocolVersion")),
	            "2025-06-18");
	char *sid = st_xstrdup(out.new_session_id);
	mcp_post_result_release(&out);
	return sid;
}

static struct mcp_post_result post(struct mcp_server *s, const char *sid, const char *who,
                                   const char *body)
{
	struct mcp_post in = {
	    .session_id = sid, .principal = who, .body = body, .body_len = strlen(body)};
	struct mcp_post_result out;
	mcp_handle_post(s, &in, &out);
	return out;
}

static int error_code(json_t *body)
{
	return (int)json_integer_value(json_object_get(json_object_get(body, "error"), "code"));
}

TEST(sessions_and_dispatch)
{
	struct mcp_server *s = server();
	char *sid = init_session(s, "alice");
	CHECK_EQ_INT(mcp_session_count(s), 1);
	struct mcp_post_result r =
	    post(s, sid, "alice", "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}");
	CHECK_EQ_INT(r.status, 200);
	CHECK(json_object_size(json_object_get(r.body, "result")) == 0);
	mcp_post_result_release(&r);
	r = post(s, sid, "bob", "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}");
	CHECK_EQ_INT(r.status, 404); /* a session is its owner's */
	mcp_post_result_release(&r);
	r = post(s, NULL, "alice", "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}");
	CHECK_EQ_INT(r.status, 400);
	mcp_post_result_release(&r);
	r = post(s, sid, "alice", "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
	CHECK_EQ_INT(r.status, 202);
	CHECK(r.body == NULL);
	mcp_post_result_release(&r);
	r = post(s, sid, "alice", "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x/y\"}");
	CHECK_EQ_INT(error_code(r.body), MCP_METHOD_NOT_FOUND);
	mcp_post_result_release(&r);
	r = post(s, sid, "alice", "[1]");
	CHECK_EQ_INT(error_code(r.body), MCP_INVALID_REQUEST);
	mcp_post_result_release(&r);
	r = post(s, sid, "alice", "{nope");
	CHECK_EQ_INT(error_code(r.body), MCP_PARSE_ERROR);
	mcp_post_result_release(&r);
	r = post(s, sid, "alice", "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}");
	CHECK_EQ_INT(error_code(r.body), MCP_INVALID_REQUEST);
	mcp_post_result_release(&r);
	CHECK(mcp_end_session(s, sid, "bob") == -ENOENT);
	CHECK(mcp_end_session(s, sid, "alice") == 0);
	r = post(s, sid, "alice", "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}");
	CHECK_EQ_INT(r.status, 404);
	mcp_post_result_release(&r);
	free(sid);
	mcp_server_free(s);
}

static json_t *notes;
static int collect(void *ctx, json_t *n)
{
	json_array_append_new(notes, n);
	return 0;
}

TEST(tool_call_args_and_progress)
{
	struct mcp_server *s = server();
	char *sid = init_session(s, "alice");
	struct mcp_post_result r = post(
	    s, sid, "alice",
	    "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
	    "\"arguments\":{\"n\":3},\"_meta\":{\"progressToken\":7}}}");
	CHECK(r.kind == MCP_POST_CALL_TOOL);
	CHECK_STREQ(r.needed_scope, "execute");
	notes = json_array();
	struct mcp_call call = {.principal = "alice", .notify = collect};
	json_t *resp = mcp_run_call(s, r.request, &call);
	CHECK_EQ_INT(
	    json_integer_value(json_object_get(
	        json_object_get(json_object_get(resp, "result"), "structuredContent"), "n")),
	    3);
	CHECK_EQ_INT(json_array_size(notes), 2);
	json_t *p2 = json_object_get(json_array_get(notes, 1), "params");
	CHECK(json_number_value(json_object_get(p2, "progress")) == 1.0);
	CHECK_EQ_INT(json_integer_value(json_object_get(p2, "progressToken")), 7);
	json_decref(resp);
	json_decref(notes);
	mcp_post_result_release(&r);

	static const char *const bad[] = {"{}",
	                                  "{\"n\":\"x\"}",
	                                  "{\"n\":-1}",
	                                  "{\"n\":1,\"s\":\"c\"}",
	                                  "{\"n\":1,\"zzz\":1}",
	                                  "{\"n\":1.5}"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(bad); i++) {
		json_t *args = json_loads(bad[i], 0, NULL);
		cleanup_error struct st_error *err = NULL;
		CHECK(mcp_check_args(s, "echo", args, &err) < 0);
		json_decref(args);
	}
	r = post(s, sid, "alice",
	         "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/"
	         "call\",\"params\":{\"name\":\"nope\"}}");
	CHECK_EQ_INT(error_code(r.body), MCP_INVALID_PARAMS);
	mcp_post_result_release(&r);
	free(sid);
	mcp_server_free(s);
}

TEST(versions)
{
	CHECK(mcp_protocol_supported("2025-11-25"));
	CHECK(mcp_protocol_supported("2025-06-18"));
	CHECK(mcp_protocol_supported("2025-03-26"));
	CHECK(!mcp_protocol_supported("2024-11-05"));
	CHECK(!mcp_protocol_supported(NULL));
}
