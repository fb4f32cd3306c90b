/*
 * mcp-tools.c - the tools the MCP server offers: execute_code over the code-executor engines
 * and sandbox_* over the agent sandbox manager, each a thin adapter that turns tool arguments
 * into the component's request and its answer into a CallToolResult with structuredContent.
 *
 * Scopes: execute_code needs `execute`; reading sandboxes (list, read/list files) needs
 * `sandbox:read`; everything that changes a sandbox needs `sandbox:write`.
 * Sandboxes created through MCP belong to the calling principal, exactly as over the REST API.
 */
#include "engine/engine.h"
#include "mcp/mcp-internal.h"
#include "sandbox/sandbox.h"

#define OUTPUT_CAP (256u << 10)
#define FILE_READ_CAP (1u << 20)

/* ---- execute_code ----------------------------------------------------------------------- */

static int t_execute(void *ctx, struct mcp_call *call, json_t *args, json_t **result,
                     struct st_error **err)
{
	struct app *app = ctx;
	struct engine_pool *pool = NULL;
	if (api_engine_pool(app, &pool, err) < 0)
		return st_error_wrap(err, "the code-executor is not available");
	struct engine_request req;
	engine_request_init(&req);
	const char *lang = json_string_value(json_object_get(args, "language"));
	if (engine_language_parse(lang, &req.language) < 0)
		return st_error_make(err, EINVAL, "language must be 'javascript' or 'python'");
	req.code = json_string_value(json_object_get(args, "code"));
	req.params = json_object_get(args, "params");
	req.timeout_ms = (uint64_t)json_integer_value(json_object_get(args, "timeoutMs"));
	req.memory_mb = (uint64_t)json_integer_value(json_object_get(args, "memoryMb"));
	mcp_call_progress(call, 0, 1, "running");
	struct engine_result res;
	int r = engine_execute(pool, &req, &res, err);
	if (r < 0) {
		if (r == -EAGAIN || r == -EBUSY) {
			*result = mcp_text_result(
			    "the code-executor is busy: try again in a moment", NULL, true);
			st_error_release(err);
			return 0;
		}
		if (r == -EINVAL)
			return r;
		return st_error_wrap(err, "execute_code");
	}
	mcp_call_progress(call, 1, 1, engine_status_name(res.status));
	json_t *structured = engine_result_to_json(&res);
	bool failed = res.status != ENGINE_OK;
	struct st_buf text;
	st_buf_init(&text, 64 << 10);
	if (failed) {
		st_buf_appendf(&text, "status: %s\n", engine_status_name(res.status));
		if (res.has_error)
			st_buf_appendf(&text, "%s: %s\n", res.error.name ? res.error.name : "Error",
			               res.error.message ? res.error.message : "");
		if (res.has_error && res.error.line)
			st_buf_appendf(&text, "at line %d of the code\n", res.error.line);
	} else {
		char *rj = json_dumps(res.result ? res.result : json_null(),
		                      JSON_COMPACT | JSON_ENCODE_ANY);
		st_buf_appendf(&text, "result: %s\n", rj ? rj : "null");
		free(rj);
	}
	if (res.stdout_len)
		st_buf_appendf(&text, "stdout:\n%s%s", res.stdout_text,
		               res.stdout_truncated ? "\n[stdout truncated]\n" : "");
	if (res.stderr_len)
		st_buf_appendf(&text, "stderr:\n%s%s", res.stderr_text,
		               res.stderr_truncated ? "\n[stderr truncated]\n" : "");
	*result = mcp_text_result(text.data ? text.data : "", structured, failed);
	st_buf_release(&text);
	engine_result_release(&res);
	return 0;
}

/* ---- sandboxes ----------------------------------------------------------------------------- */

/* Sandbox tools get the manager from one place, which also says when there is none. */
typedef int (*sandbox_tool_fn)(struct sandbox_mgr *m, struct mcp_call *call, json_t *args,
                               json_t **result, struct st_error **err);
struct sandbox_tool {
	struct mcp_tool tool;
	sandbox_tool_fn fn;
};

static int t_sandbox(void *ctx, struct mcp_call *call, json_t *args, json_t **result,
                     struct st_error **err)
{
	const struct sandbox_tool *st = ctx;
	struct sandbox_mgr *m = api_sandbox_mgr();
	if (!m)
		return st_error_make(err, ENODEV,
		                     "the agent sandbox is not running in this process");
	return st->fn(m, call, args, result, err);
}

static const char *str_arg(json_t *args, const char *k)
{
	return json_string_value(json_object_get(args, k));
}

/* A failure the model should read (no such sandbox, path refused...) is a tool error. */
static int tool_error(json_t **result, struct st_error **err, const char *what)
{
	char *t = st_xasprintf("%s: %s", what, st_error_msg(*err));
	*result = mcp_text_result(t, json_pack("{s:s}", "error", st_error_msg(*err)), true);
	free(t);
	st_error_release(err);
	return 0;
}

static int json_reply(json_t **result, const char *summary, json_t *obj)
{
	char *t = json_dumps(obj, JSON_COMPACT);
	char *text =
	    st_xasprintf("%s%s%s", summary ? summary : "", summary ? "\n" : "", t ? t : "");
	*result = mcp_text_result(text, obj, false);
	free(t);
	free(text);
	return 0;
}

static int t_create(struct sandbox_mgr *m, struct mcp_call *call, json_t *args, json_t **result,
                    struct st_error **err)
{
	struct sandbox_create_opts o = {.owner = call->principal,
	                                .env = json_object_get(args, "env"),
	                                .allow_egress =
	                                    json_is_true(json_object_get(args, "allowEgress")),
	                                .from_snapshot = str_arg(args, "fromSnapshot")};
	json_t *out = NULL;
	mcp_call_progress(call, 0, 1, "creating sandbox");
	if (sandbox_create(m, &o, &out, err) < 0)
		return tool_error(result, err, "cannot create the sandbox");
	mcp_call_progress(call, 1, 1, "ready");
	return json_reply(result, "sandbox created; use its id with the other sandbox tools", out);
}

static int t_restore(struct sandbox_mgr *m, struct mcp_call *call, json_t *args, json_t **result,
                     struct st_error **err)
{
	struct sandbox_create_opts o = {.owner = call->principal,
	                                .env = json_object_get(args, "env"),
	                                .from_snapshot = str_arg(args, "snapshotId")};
	json_t *out = NULL;
	if (sandbox_create(m, &o, &out, err) < 0)
		return tool_error(result, err, "cannot restore the snapshot");
	return json_reply(result, "sandbox restored from the snapshot", out);
}

static int t_list(struct sandbox_mgr *m, struct mcp_call *call, json_t *args, json_t **result,
                  struct st_error **err)
{
	return json_reply(result, NULL,
	                  json_pack("{s:o}", "sandboxes", sandbox_list(m, call->principal)));
}

static int t_destroy(struct sandbox_mgr *m, struct mcp_call *call, json_t *args, json_t **result,
                     struct st_error **err)
{
	const char *id = str_arg(args, "sandboxId");
	if (sandbox_destroy(m, call->principal, id, err) < 0)
		return tool_error(result, err, "cannot destroy the sandbox");
	return json_reply(result, "sandbox destroyed",
	                  json_pack("{s:s, s:b}", "id", id, "destroyed", 1));
}

static int t_snapshot(struct sandbox_mgr *m, struct mcp_call *call, json_t *args, json_t **result,
                      struct st_error **err)
{
	json_t *out = NULL;
	mcp_call_progress(call, 0, 1, "archiving the workspace");
	if (sandbox_snapshot(m, call->principal, str_arg(args, "sandboxId"), &out, err) < 0)
		return tool_error(result, err, "cannot snapshot the sandbox");
	mcp_call_progress(call, 1, 1, "stored");
	return json_reply(result, "snapshot stored; restore it with sandbox_restore", out);
}

static int t_snapshot_list(struct sandbox_mgr *m, struct mcp_call *call, json_t *args,
                           json_t **result, struct st_error **err)
{
	json_t *list = NULL;
	if (sandbox_snapshot_list(m, call->principal, str_arg(args, "sandboxId"), &list, err) < 0)
		return tool_error(result, err, "cannot list snapshots");
	return json_reply(result, NULL, json_pack("{s:o}", "snapshots", list));
}

static int t_snapshot_delete(struct sandbox_mgr *m, struct mcp_call *call, json_t *args,
                             json_t **result, struct st_error **err)
{
	const char *id = str_arg(args, "snapshotId");
	if (sandbox_snapshot_delete(m, call->principal, id, err) < 0)
		return tool_error(result, err, "cannot delete the snapshot");
	return json_reply(result, "snapshot deleted",
	                  json_pack("{s:s, s:b}", "id", id, "deleted", 1));
}

struct exec_out {
	struct mcp_call *call;
	struct st_buf out, err;
	bool out_trunc, err_trunc;
	double chunks;
};

static int on_output(void *ctx, int stream, const void *data, size_t n)
{
	struct exec_out *e = ctx;
	if (stream == 2)
		e->err_trunc |= !st_buf_append_trunc(&e->err, data, n);
	else
		e->out_trunc |= !st_buf_append_trunc(&e->out, data, n);
	if (e->call->progress_token) {
		/* Stream the output as progress messages so a long command shows life. */
		char *msg = st_xasprintf("%s%.*s", stream == 2 ? "[stderr] " : "",
		                         (int)(n > 4000 ? 4000 : n), (const char *)data);
		e->chunks += 1;
		mcp_call_progress(e->call, e->chunks, 0, msg);
		free(msg);
	}
	return 0;
}

static int t_exec(struct sandbox_mgr *m, struct mcp_call *call, json_t *args, json_t **result,
                  struct st_error **err)
{
	json_t *jargs = json_object_get(args, "args");
	size_t n = json_array_size(jargs);
	const char **argv = st_xcalloc(n + 1, sizeof(char *));
	size_t i;
	json_t *v;
	json_array_foreach(jargs, i, v)
	{
		if (!json_is_string(v)) {
			free(argv);
			return st_error_make(err, EINVAL,
			                     "every element of 'args' must be a string");
		}
		argv[i] = json_string_value(v);
	}
	const char *in = str_arg(args, "stdin");
	struct sandbox_exec_req r = {
	    .cmd = str_arg(args, "cmd"),
	    .args = jargs ? argv : NULL,
	    .cwd = str_arg(args, "cwd"),
	    .env = json_object_get(args, "env"),
	    .stdin_data = in,
	    .stdin_len = in ? strlen(in) : 0,
	    .timeout_ms = (uint64_t)json_integer_value(json_object_get(args, "timeoutMs")),
	    .background = json_is_true(json_object_get(args, "background"))};
	struct exec_out e = {.call = call};
	st_buf_init(&e.out, OUTPUT_CAP);
	st_buf_init(&e.err, OUTPUT_CAP);
	struct sandbox_exec_result res = {0};
	int rc = sandbox_exec(m, call->principal, str_arg(args, "sandboxId"), &r, on_output, &e,
	                      &res, err);
	free(argv);
	if (rc < 0) {
		st_buf_release(&e.out);
		st_buf_release(&e.err);
		return tool_error(result, err, "cannot run the command");
	}
	json_t *s =
	    json_pack("{s:i, s:s, s:s, s:b, s:b, s:b, s:I}", "exitCode", res.exit_code, "stdout",
	              e.out.data ? e.out.data : "", "stderr", e.err.data ? e.err.data : "",
	              "timedOut", res.timed_out, "stdoutTruncated", e.out_trunc, "stderrTruncated",
	              e.err_trunc, "wallMs", (json_int_t)res.wall_ms);
	if (res.signal)
		json_object_set_new(s, "signal", json_integer(res.signal));
	if (r.background)
		json_object_set_new(s, "pid", json_integer(res.pid));
	bool failed = res.exit_code != 0 || res.signal || res.timed_out;
	char *text =
	    st_xasprintf("%s%s%s%s%s", r.background ? "started in the background\n" : "",
	                 e.out.len ? e.out.data : "", e.err.len ? "\n[stderr]\n" : "",
	                 e.err.len ? e.err.data : "", res.timed_out ? "\n[timed out]" : "");
	char *full = st_xasprintf("%s\n[exit code %d]", text, res.exit_code);
	*result = mcp_text_result(full, s, failed);
	free(text);
	free(full);
	st_buf_release(&e.out);
	st_buf_release(&e.err);
	return 0;
}

static bool is_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t len = c < 0x80         ? 1
		             : (c >> 5) == 6  ? 2
		             : (c >> 4) == 14 ? 3
		             : (c >> 3) == 30 ? 4
		                              : 0;
		if (len == 0 || i + len > n || c == 0)
			return false;
		for (size_t k = 1; k < len; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
		i += len;
	}
	return true;
}

static int on_data(void *ctx, const void *data, size_t n)
{
	return st_buf_append(ctx, data, n) == 0 ? 0 : -EFBIG;
}

static int t_read(struct sandbox_mgr *m, struct mcp_call *call, json_t *args, json_t **result,
                  struct st_error **err)
{
	struct st_buf b;
	st_buf_init(&b, FILE_READ_CAP);
	uint64_t size = 0;
	const char *path = str_arg(args, "path");
	int r = sandbox_file_read(m, call->principal, str_arg(args, "sandboxId"), path, on_data, &b,
	                          &size, err);
	if (r == -EFBIG || (r == 0 && size > FILE_READ_CAP)) {
		st_buf_release(&b);
		st_error_release(err);
		char *t = st_xasprintf("'%s' is larger than %u bytes: read it in parts with "
		                       "sandbox_exec (e.g. head -c / tail -c)",
		                       path, FILE_READ_CAP);
		*result = mcp_text_result(t, NULL, true);
		free(t);
		return 0;
	}
	if (r < 0) {
		st_buf_release(&b);
		return tool_error(result, err, "cannot read the file");
	}
	bool text = is_utf8((const unsigned char *)(b.data ? b.data : ""), b.len);
	json_t *s;
	if (text) {
		s = json_pack("{s:s, s:s%, s:s, s:I}", "path", path, "content",
		              b.data ? b.data : "", b.len, "encoding", "utf8", "size",
		              (json_int_t)b.len);
		*result = mcp_text_result(b.data ? b.data : "", s, false);
	} else {
		char *b64 = crypto_base64_encode(b.data, b.len);
		s = json_pack("{s:s, s:s, s:s, s:I}", "path", path, "content", b64, "encoding",
		              "base64", "size", (json_int_t)b.len);
		char *t =
		    st_xasprintf("binary file, %zu bytes, base64 in structuredContent", b.len);
		*result = mcp_text_result(t, s, false);
		free(t);
		free(b64);
	}
	st_buf_release(&b);
	return 0;
}

static int t_write(struct sandbox_mgr *m, struct mcp_call *call, json_t *args, json_t **result,
                   struct st_error **err)
{
	const char *path = str_arg(args, "path");
	const char *content = str_arg(args, "content");
	const char *enc = str_arg(args, "encoding");
	uint8_t *raw = NULL;
	size_t len = strlen(content);
	const void *data = content;
	if (enc && strcmp(enc, "base64") == 0) {
		if (crypto_base64_decode(content, len, &raw, &len) < 0)
			return st_error_make(err, EINVAL, "'content' is not valid base64");
		data = raw;
	}
	int r = sandbox_file_write(m, call->principal, str_arg(args, "sandboxId"), path, data, len,
	                           err);
	free(raw);
	if (r < 0)
		return tool_error(result, err, "cannot write the file");
	return json_reply(result, "written",
	                  json_pack("{s:s, s:I}", "path", path, "size", (json_int_t)len));
}

static int t_list_files(struct sandbox_mgr *m, struct mcp_call *call, json_t *args, json_t **result,
                        struct st_error **err)
{
	const char *path = str_arg(args, "path");
	json_t *out = NULL;
	if (sandbox_file_list(m, call->principal, str_arg(args, "sandboxId"), path ? path : ".",
	                      &out, err) < 0)
		return tool_error(result, err, "cannot list the directory");
	return json_reply(result, NULL,
	                  json_pack("{s:s, s:o}", "path", path ? path : ".", "entries", out));
}

/* ---- the registry ------------------------------------------------------------------------- */

#define ID_PROP \
	"\"sandboxId\":{\"type\":\"string\",\"description\":\"The id sandbox_create returned.\"}"
#define SCHEMA(props, req)                                                                   \
	"{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"type\":\"object\"," \
	"\"properties\":{" props "},\"required\":[" req "],\"additionalProperties\":false}"

static const struct mcp_tool exec_tools[] = {
    {.name = "execute_code",
     .title = "Run JavaScript or Python",
     .description =
         "Run a self-contained JavaScript or Python snippet in a fresh, isolated interpreter and "
         "get its return value as JSON. The code is a function body: `params` is in scope, "
         "`return` gives the result, `await` works in JavaScript. console.log / print output is "
         "captured. No network, no persistent files (use a sandbox for that). Python has numpy "
         "and pandas; JavaScript can require('lodash') and require('dayjs').",
     .input_schema =
         SCHEMA("\"language\":{\"type\":\"string\",\"enum\":[\"javascript\",\"python\"]},"
                "\"code\":{\"type\":\"string\",\"description\":\"Function body; use return to give "
                "the result.\"},"
                "\"params\":{\"description\":\"Any JSON value, bound to the variable params.\"},"
                "\"timeoutMs\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":300000},"
                "\"memoryMb\":{\"type\":\"integer\",\"minimum\":16,\"maximum\":16384}",
                "\"language\",\"code\""),
     .scope = "execute",
     .fn = t_execute},
};

static struct sandbox_tool sandbox_tools[] = {
    {.tool =
         {
             .name = "sandbox_create",
             .title = "Create a sandbox",
             .description =
                 "Create a persistent, isolated Linux sandbox (gVisor) with a writable workspace. "
                 "Returns "
                 "its id (pass it to the other sandbox tools) and a preview token. Optionally "
                 "start from "
                 "a snapshot, set environment variables, or allow outbound HTTP(S) to allow-listed "
                 "domains. Sandboxes expire when idle; destroy them when done.",
             .input_schema =
                 SCHEMA("\"env\":{\"type\":\"object\",\"additionalProperties\":{\"type\":"
                        "\"string\"}},"
                        "\"allowEgress\":{\"type\":\"boolean\"},"
                        "\"fromSnapshot\":{\"type\":\"string\"}",
                        ""),
             .scope = "sandbox:write",
         },
     .fn = t_create},
    {.tool =
         {
             .name = "sandbox_list",
             .title = "List sandboxes",
             .description = "List your sandboxes with their ids, states and expiry times.",
             .input_schema = SCHEMA("", ""),
             .scope = "sandbox:read",
             .read_only = true,
         },
     .fn = t_list},
    {.tool =
         {
             .name = "sandbox_exec",
             .title = "Run a command in a sandbox",
             .description = "Run a command in a sandbox's workspace and get its exit code, stdout "
                            "and stderr. cmd "
                            "is the program (e.g. \"bash\") and args its arguments (e.g. [\"-c\", "
                            "\"ls -la\"]). "
                            "Use background: true to start a long-running server and return at "
                            "once. Output is "
                            "streamed as progress when the client asks for progress.",
             .input_schema = SCHEMA(
                 ID_PROP
                 ",\"cmd\":{\"type\":\"string\"},"
                 "\"args\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
                 "\"cwd\":{\"type\":\"string\",\"description\":\"Relative to the workspace.\"},"
                 "\"env\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}},"
                 "\"stdin\":{\"type\":\"string\"},"
                 "\"timeoutMs\":{\"type\":\"integer\",\"minimum\":1},"
                 "\"background\":{\"type\":\"boolean\"}",
                 "\"sandboxId\",\"cmd\""),
             .scope = "sandbox:write",
         },
     .fn = t_exec},
    {.tool =
         {
             .name = "sandbox_read_file",
             .title = "Read a file",
             .description =
                 "Read a file from a sandbox's workspace (up to 1 MiB). Text comes back as is; "
                 "binary content as base64.",
             .input_schema =
                 SCHEMA(ID_PROP ",\"path\":{\"type\":\"string\",\"description\":\"Relative "
                                "to the workspace.\"}",
                        "\"sandboxId\",\"path\""),
             .scope = "sandbox:read",
             .read_only = true,
         },
     .fn = t_read},
    {.tool =
         {
             .name = "sandbox_write_file",
             .title = "Write a file",
             .description =
                 "Create or replace a file in a sandbox's workspace; missing parent "
                 "directories are created. encoding is utf8 (default) or base64 for binary "
                 "content.",
             .input_schema = SCHEMA(ID_PROP ",\"path\":{\"type\":\"string\"},"
                                            "\"content\":{\"type\":\"string\"},"
                                            "\"encoding\":{\"type\":\"string\",\"enum\":[\"utf8\","
                                            "\"base64\"]}",
                                    "\"sandboxId\",\"path\",\"content\""),
             .scope = "sandbox:write",
         },
     .fn = t_write},
    {.tool =
         {
             .name = "sandbox_list_files",
             .title = "List a directory",
             .description =
                 "List a directory of a sandbox's workspace with names, types and sizes.",
             .input_schema =
                 SCHEMA(ID_PROP ",\"path\":{\"type\":\"string\",\"description\":\"Relative "
                                "to the workspace; default the workspace itself.\"}",
                        "\"sandboxId\""),
             .scope = "sandbox:read",
             .read_only = true,
         },
     .fn = t_list_files},
    {.tool =
         {
             .name = "sandbox_snapshot",
             .title = "Snapshot a sandbox",
             .description =
                 "Save the sandbox's workspace as an encrypted snapshot and return its id. "
                 "Restore it later with sandbox_restore.",
             .input_schema = SCHEMA(ID_PROP, "\"sandboxId\""),
             .scope = "sandbox:write",
         },
     .fn = t_snapshot},
    {.tool =
         {
             .name = "sandbox_restore",
             .title = "Restore a snapshot",
             .description = "Create a new sandbox whose workspace is the content of a snapshot.",
             .input_schema =
                 SCHEMA("\"snapshotId\":{\"type\":\"string\"},"
                        "\"env\":{\"type\":\"object\",\"additionalProperties\":{\"type\":"
                        "\"string\"}}",
                        "\"snapshotId\""),
             .scope = "sandbox:write",
         },
     .fn = t_restore},
    {.tool =
         {
             .name = "sandbox_snapshot_list",
             .title = "List snapshots",
             .description = "List your snapshots (newest first) with their ids, sizes and the "
                            "sandbox each was taken from; give sandboxId for one sandbox's.",
             .input_schema = SCHEMA("\"sandboxId\":{\"type\":\"string\"}", ""),
             .scope = "sandbox:read",
             .read_only = true,
         },
     .fn = t_snapshot_list},
    {.tool =
         {
             .name = "sandbox_snapshot_delete",
             .title = "Delete a snapshot",
             .description = "Delete a snapshot for good (its stored archive too).",
             .input_schema = SCHEMA("\"snapshotId\":{\"type\":\"string\"}", "\"snapshotId\""),
             .scope = "sandbox:write",
             .destructive = true,
         },
     .fn = t_snapshot_delete},
    {.tool =
         {
             .name = "sandbox_destroy",
             .title = "Destroy a sandbox",
             .description = "Stop a sandbox and delete its workspace. Snapshots are kept.",
             .input_schema = SCHEMA(ID_PROP, "\"sandboxId\""),
             .scope = "sandbox:write",
             .destructive = true,
         },
     .fn = t_destroy},
};

int mcp__register_tools(struct mcp_server *s, struct app *app, struct st_error **err)
{
	struct engine_pool *pool = NULL;
	cleanup_error struct st_error *perr = NULL;
	if (api_engine_pool(app, &pool, &perr) == 0) {
		for (size_t i = 0; i < ST_ARRAY_SIZE(exec_tools); i++) {
			struct mcp_tool t = exec_tools[i];
			t.ctx = app;
			int r = mcp_add_tool(s, &t, err);
			if (r < 0)
				return r;
		}
	} else {
		st_log(ST_LOG_WARN, "mcp: execute_code is not offered: %s", st_error_msg(perr));
	}
	if (api_sandbox_mgr()) {
		for (size_t i = 0; i < ST_ARRAY_SIZE(sandbox_tools); i++) {
			struct mcp_tool t = sandbox_tools[i].tool;
			t.fn = t_sandbox;
			t.ctx = &sandbox_tools[i];
			int r = mcp_add_tool(s, &t, err);
			if (r < 0)
				return r;
		}
	} else {
		st_log(ST_LOG_INFO,
		       "mcp: sandbox tools are not offered: the agent sandbox does not "
		       "run in this process (enable rr.agentSandbox, role all)");
	}
	return 0;
}

/* ---- fixtures for the MCP conformance suite -------------------------------------------------- */

static int t_conf_error(void *ctx, struct mcp_call *call, json_t *args, json_t **result,
                        struct st_error **err)
{
	*result =
	    mcp_text_result("This tool intentionally returns an error for testing", NULL, true);
	return 0;
}

static int t_conf_progress(void *ctx, struct mcp_call *call, json_t *args, json_t **result,
                           struct st_error **err)
{
	for (int i = 0; i <= 2; i++) {
		mcp_call_progress(call, i * 50, 100, NULL);
		if (i < 2)
			usleep(50 * 1000);
	}
	*result = mcp_text_result("progress test completed", NULL, false);
	return 0;
}

static int t_conf_schema(void *ctx, struct mcp_call *call, json_t *args, json_t **result,
                         struct st_error **err)
{
	*result = mcp_text_result("ok", NULL, false);
	return 0;
}

int mcp__register_conformance_tools(struct mcp_server *s, struct st_error **err)
{
	static const struct mcp_tool tools[] = {
	    {.name = "test_error_handling",
	     .description = "Conformance fixture: always fails.",
	     .input_schema = "{\"type\":\"object\",\"properties\":{}}",
	     .fn = t_conf_error},
	    {.name = "test_tool_with_progress",
	     .description = "Conformance fixture: reports progress 0, 50, 100 of 100.",
	     .input_schema = "{\"type\":\"object\",\"properties\":{}}",
	     .fn = t_conf_progress},
	    {.name = "json_schema_2020_12_tool",
	     .description = "Tool with JSON Schema 2020-12 features",
	     .input_schema =
	         "{\"$schema\":\"https://json-schema.org/draft/2020-12/"
	         "schema\",\"type\":\"object\","
	         "\"$defs\":{\"address\":{\"type\":\"object\",\"properties\":{\"street\":{\"type\":"
	         "\"string\"},\"city\":{\"type\":\"string\"}}}},\"properties\":{\"name\":{\"type\":"
	         "\"string\"},\"address\":{\"$ref\":\"#/$defs/address\"}},\"additionalProperties\":"
	         "false}",
	     .fn = t_conf_schema},
	};
	st_log(ST_LOG_WARN, "mcp: conformance fixture tools are enabled (tests only)");
	for (size_t i = 0; i < ST_ARRAY_SIZE(tools); i++) {
		int r = mcp_add_tool(s, &tools[i], err);
		if (r < 0)
			return r;
	}
	return 0;
}
