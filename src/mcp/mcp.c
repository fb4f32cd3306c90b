/*
 * mcp.c - the MCP protocol core: sessions, version negotiation, JSON-RPC dispatch, the tool
 * registry and argument checks. No HTTP here (mcp-http.c), no auth (mcp-auth.c).
 *
 * Session lifecycle:
 *   (none) --initialize--> live --any request--> live (last_used refreshed)
 *   live --DELETE--> gone;  live --idle > session_idle_ms--> gone (next use: 404)
 * A session belongs to the principal that initialized it; another principal presenting its id
 * is treated as presenting an unknown session (404), so ids cannot be borrowed.
 *
 * Invariants: every JSON-RPC *request* gets exactly one response object; notifications and
 * client responses get HTTP 202 with no body; batches (JSON arrays) are refused with
 * -32600, as protocol versions from 2025-06-18 on no longer allow them.
 */
#include "mcp/mcp.h"

#include <math.h>
#include <pthread.h>

#include "crypto/crypto.h"

static const char *const protocol_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26"};

struct session {
	char id[33];
	char *principal;
	char *protocol_version;
	int64_t last_used_ms;
	struct session *next;
};

struct tool_entry {
	struct mcp_tool t; /* its strings point into own[] */
	char *own[5];
	json_t *schema;
	struct tool_entry *next;
};

struct mcp_server {
	struct mcp_options opts;
	char *name;
	char *instructions;
	pthread_mutex_t lock;
	struct session *sessions;
	size_t n_sessions;
	struct tool_entry *tools, *tools_tail;
	size_t n_tools;
};

void mcp_options_init(struct mcp_options *o)
{
	memset(o, 0, sizeof(*o));
	o->server_name = "stockade";
	o->session_idle_ms = 30 * 60 * 1000;
	o->max_sessions = 1024;
	o->max_message_bytes = 4 << 20;
}

int mcp_server_new(const struct mcp_options *o, struct mcp_server **out, struct st_error **err)
{
	struct mcp_server *s = st_xcalloc(1, sizeof(*s));
	mcp_options_init(&s->opts);
	if (o)
		s->opts = *o;
	s->name = st_xstrdup(s->opts.server_name ? s->opts.server_name : "stockade");
	s->instructions = s->opts.instructions ? st_xstrdup(s->opts.instructions) : NULL;
	s->opts.server_name = s->name;
	s->opts.instructions = s->instructions;
	if (!s->opts.session_idle_ms)
		s->opts.session_idle_ms = 30 * 60 * 1000;
	if (!s->opts.max_sessions)
		s->opts.max_sessions = 1024;
	int r = pthread_mutex_init(&s->lock, NULL);
	if (r != 0) {
		free(s->name);
		free(s->instructions);
		free(s);
		return st_error_make(err, r, "cannot create the mcp session lock");
	}
	*out = s;
	return 0;
}

static void session_free(struct session *x)
{
	free(x->principal);
	free(x->protocol_version);
	free(x);
}

void mcp_server_free(struct mcp_server *s)
{
	if (!s)
		return;
	for (struct session *x = s->sessions, *n; x; x = n) {
		n = x->next;
		session_free(x);
	}
	for (struct tool_entry *t = s->tools, *n; t; t = n) {
		n = t->next;
		for (size_t i = 0; i < ST_ARRAY_SIZE(t->own); i++)
			free(t->own[i]);
		json_decref(t->schema);
		free(t);
	}
	pthread_mutex_destroy(&s->lock);
	free(s->name);
	free(s->instructions);
	free(s);
}

bool mcp_protocol_supported(const char *version)
{
	for (size_t i = 0; version && i < ST_ARRAY_SIZE(protocol_versions); i++)
		if (strcmp(version, protocol_versions[i]) == 0)
			return true;
	return false;
}

/* ---- tools ----------------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	return s ? st_xstrdup(s) : NULL;
}

int mcp_add_tool(struct mcp_server *s, const struct mcp_tool *tool, struct st_error **err)
{
	if (!tool->name || !*tool->name || !tool->description || !tool->fn)
		return st_error_make(err, EINVAL,
		                     "a tool needs a name, a description and a handler");
	json_error_t je;
	json_t *schema =
	    json_loads(tool->input_schema ? tool->input_schema : "{\"type\":\"object\"}",
	               JSON_REJECT_DUPLICATES, &je);
	if (!schema || !json_is_object(schema)) {
		json_decref(schema);
		return st_error_make(err, EINVAL,
		                     "input schema of tool '%s' is not a JSON object: %s",
		                     tool->name, je.text);
	}
	pthread_mutex_lock(&s->lock);
	for (struct tool_entry *t = s->tools; t; t = t->next)
		if (strcmp(t->t.name, tool->name) == 0) {
			pthread_mutex_unlock(&s->lock);
			json_decref(schema);
			return st_error_make(err, EEXIST, "tool '%s' is already registered",
			                     tool->name);
		}
	struct tool_entry *e = st_xcalloc(1, sizeof(*e));
	e->t = *tool;
	e->t.name = e->own[0] = st_xstrdup(tool->name);
	e->t.title = e->own[1] = dup_or_null(tool->title);
	e->t.description = e->own[2] = st_xstrdup(tool->description);
	e->t.input_schema = e->own[3] = dup_or_null(tool->input_schema);
	e->t.scope = e->own[4] = dup_or_null(tool->scope);
	e->schema = schema;
	if (s->tools_tail)
		s->tools_tail->next = e;
	else
		s->tools = e;
	s->tools_tail = e;
	s->n_tools++;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Tools are only added before the server starts serving, so lookups need no lock. */
static struct tool_entry *find_tool(struct mcp_server *s, const char *name)
{
	for (struct tool_entry *t = s->tools; t && name; t = t->next)
		if (strcmp(t->t.name, name) == 0)
			return t;
	return NULL;
}

const char *mcp_tool_scope(struct mcp_server *s, const char *name)
{
	struct tool_entry *t = find_tool(s, name);
	return t ? t->t.scope : NULL;
}

size_t mcp_tool_count(struct mcp_server *s)
{
	return s->n_tools;
}

json_t *mcp_text_result(const char *text, json_t *structured, bool is_error)
{
	json_t *r =
	    json_pack("{s:[{s:s, s:s}]}", "content", "type", "text", "text", text ? text : "");
	if (structured)
		json_object_set_new(r, "structuredContent", structured);
	if (is_error)
		json_object_set_new(r, "isError", json_true());
	return r;
}

static bool type_matches(const char *type, json_t *v)
{
	if (strcmp(type, "string") == 0)
		return json_is_string(v);
	if (strcmp(type, "integer") == 0)
		return json_is_integer(v) ||
		       (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v));
	if (strcmp(type, "number") == 0)
		return json_is_number(v);
	if (strcmp(type, "boolean") == 0)
		return json_is_boolean(v);
	if (strcmp(type, "object") == 0)
		return json_is_object(v);
	if (strcmp(type, "array") == 0)
		return json_is_array(v);
	if (strcmp(type, "null") == 0)
		return json_is_null(v);
	return true; /* unknown type keywords are not ours to enforce */
}

/* "type" may be a string or an array of strings. */
static bool value_has_type(json_t *type, json_t *v)
{
	if (json_is_string(type))
		return type_matches(json_string_value(type), v);
	if (json_is_array(type)) {
		size_t i;
		json_t *t;
		json_array_foreach(type, i, t)
		{
			if (json_is_string(t) && type_matches(json_string_value(t), v))
				return true;
		}
		return false;
	}
	return true;
}

static const char *type_text(json_t *type)
{
	if (json_is_string(type))
		return json_string_value(type);
	return "one of the allowed types";
}

int mcp_check_args(struct mcp_server *s, const char *tool, json_t *args, struct st_error **err)
{
	struct tool_entry *t = find_tool(s, tool);
	if (!t)
		return st_error_make(err, ENOENT, "unknown tool '%s'", tool);
	if (!json_is_object(args))
		return st_error_make(err, EINVAL, "arguments of '%s' must be a JSON object", tool);
	json_t *props = json_object_get(t->schema, "properties");
	json_t *req = json_object_get(t->schema, "required");
	size_t i;
	json_t *name;
	json_array_foreach(req, i, name)
	{
		if (json_is_string(name) && !json_object_get(args, json_string_value(name)))
			return st_error_make(err, EINVAL, "'%s' is required by tool '%s'",
			                     json_string_value(name), tool);
	}
	const char *key;
	json_t *v;
	bool closed = json_is_false(json_object_get(t->schema, "additionalProperties"));
	json_object_foreach(args, key, v)
	{
		json_t *p = json_object_get(props, key);
		if (!p) {
			if (closed)
				return st_error_make(
				    err, EINVAL,
				    "tool '%s' has no argument '%s' (see its inputSchema)", tool,
				    key);
			continue;
		}
		json_t *type = json_object_get(p, "type");
		if (type && !value_has_type(type, v))
			return st_error_make(err, EINVAL, "argument '%s' of '%s' must be %s", key,
			                     tool, type_text(type));
		json_t *en = json_object_get(p, "enum");
		if (json_is_array(en)) {
			bool found = false;
			size_t j;
			json_t *e;
			json_array_foreach(en, j, e)
			{
				if (json_equal(e, v))
					found = true;
			}
			if (!found)
				return st_error_make(
				    err, EINVAL,
				    "argument '%s' of '%s' is not one of its allowed values", key,
				    tool);
		}
		json_t *mn = json_object_get(p, "minimum"), *mx = json_object_get(p, "maximum");
		if (json_is_number(v) && json_is_number(mn) &&
		    json_number_value(v) < json_number_value(mn))
			return st_error_make(err, EINVAL,
			                     "argument '%s' of '%s' must be at least %g", key, tool,
			                     json_number_value(mn));
		if (json_is_number(v) && json_is_number(mx) &&
		    json_number_value(v) > json_number_value(mx))
			return st_error_make(err, EINVAL,
			                     "argument '%s' of '%s' must be at most %g", key, tool,
			                     json_number_value(mx));
	}
	return 0;
}

void mcp_call_progress(struct mcp_call *call, double progress, double total, const char *message)
{
	if (!call || !call->progress_token || !call->notify)
		return;
	if (progress < call->progress) /* progress must increase */
		progress = call->progress;
	call->progress = progress;
	json_t *params =
	    json_pack("{s:O, s:f}", "progressToken", call->progress_token, "progress", progress);
	if (total > 0)
		json_object_set_new(params, "total", json_real(total));
	if (message)
		json_object_set_new(params, "message", json_string(message));
	json_t *n = json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method",
	                      "notifications/progress", "params", params);
	call->notify(call->notify_ctx, n);
}

/* ---- sessions ----------------------------------------------------------------------------- */

static void sessions_expire_locked(struct mcp_server *s, int64_t now)
{
	struct session **pp = &s->sessions;
	while (*pp) {
		struct session *x = *pp;
		if (now - x->last_used_ms > (int64_t)s->opts.session_idle_ms) {
			*pp = x->next;
			session_free(x);
			s->n_sessions--;
		} else {
			pp = &x->next;
		}
	}
}

static char *session_create(struct mcp_server *s, const char *principal, const char *version)
{
	struct session *x = st_xcalloc(1, sizeof(*x));
	uint8_t raw[16];
	if (crypto_random_bytes(raw, sizeof(raw)) < 0) {
		free(x);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(x->id + 2 * i, 3, "%02x", raw[i]);
	x->principal = st_xstrdup(principal ? principal : "anonymous");
	x->protocol_version = st_xstrdup(version);
	x->last_used_ms = st_now_ms();
	pthread_mutex_lock(&s->lock);
	sessions_expire_locked(s, x->last_used_ms);
	/* Over the cap: drop the least recently used session. */
	while (s->n_sessions >= s->opts.max_sessions && s->sessions) {
		struct session **oldest = &s->sessions;
		for (struct session **pp = &s->sessions; *pp; pp = &(*pp)->next)
			if ((*pp)->last_used_ms < (*oldest)->last_used_ms)
				oldest = pp;
		struct session *o = *oldest;
		*oldest = o->next;
		session_free(o);
		s->n_sessions--;
	}
	x->next = s->sessions;
	s->sessions = x;
	s->n_sessions++;
	char *id = st_xstrdup(x->id);
	pthread_mutex_unlock(&s->lock);
	return id;
}

/* Touch a session; false when unknown, expired or owned by someone else. */
static bool session_touch(struct mcp_server *s, const char *id, const char *principal)
{
	bool ok = false;
	int64_t now = st_now_ms();
	pthread_mutex_lock(&s->lock);
	sessions_expire_locked(s, now);
	for (struct session *x = s->sessions; x; x = x->next)
		if (crypto_str_equal(x->id, id)) {
			if (strcmp(x->principal, principal ? principal : "anonymous") == 0) {
				x->last_used_ms = now;
				ok = true;
			}
			break;
		}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

int mcp_end_session(struct mcp_server *s, const char *session_id, const char *principal)
{
	int r = -ENOENT;
	if (!session_id)
		return r;
	pthread_mutex_lock(&s->lock);
	for (struct session **pp = &s->sessions; *pp; pp = &(*pp)->next) {
		struct session *x = *pp;
		if (crypto_str_equal(x->id, session_id) &&
		    strcmp(x->principal, principal ? principal : "anonymous") == 0) {
			*pp = x->next;
			session_free(x);
			s->n_sessions--;
			r = 0;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

size_t mcp_session_count(struct mcp_server *s)
{
	pthread_mutex_lock(&s->lock);
	sessions_expire_locked(s, st_now_ms());
	size_t n = s->n_sessions;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- JSON-RPC -------------------------------------------------------------------------------- */

json_t *mcp_jsonrpc_error(json_t *id, int code, const char *message)
{
	return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
	                 "error", "code", code, "message", message);
}

static json_t *jsonrpc_result(json_t *id, json_t *result)
{
	return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result);
}

void mcp_post_result_release(struct mcp_post_result *r)
{
	json_decref(r->body);
	json_decref(r->request);
	free(r->new_session_id);
	memset(r, 0, sizeof(*r));
}

static void reply(struct mcp_post_result *out, unsigned status, json_t *body)
{
	out->kind = MCP_POST_REPLY;
	out->status = status;
	out->body = body;
}

static json_t *tools_list(struct mcp_server *s)
{
	json_t *arr = json_array();
	for (struct tool_entry *t = s->tools; t; t = t->next) {
		json_t *o = json_pack("{s:s, s:s, s:O}", "name", t->t.name, "description",
		                      t->t.description, "inputSchema", t->schema);
		if (t->t.title)
			json_object_set_new(o, "title", json_string(t->t.title));
		json_t *ann = json_pack("{s:b, s:b, s:b}", "readOnlyHint", t->t.read_only,
		                        "destructiveHint", t->t.destructive, "openWorldHint", 0);
		if (t->t.title)
			json_object_set_new(ann, "title", json_string(t->t.title));
		json_object_set_new(o, "annotations", ann);
		json_array_append_new(arr, o);
	}
	return json_pack("{s:o}", "tools", arr);
}

static json_t *initialize_result(struct mcp_server *s, const char *version)
{
	json_t *r = json_pack("{s:s, s:{s:{s:b}}, s:{s:s, s:s, s:s}}", "protocolVersion", version,
	                      "capabilities", "tools", "listChanged", 0, "serverInfo", "name",
	                      s->name, "title", "Stockade", "version", ST_VERSION);
	if (s->instructions)
		json_object_set_new(r, "instructions", json_string(s->instructions));
	return r;
}

void mcp_handle_post(struct mcp_server *s, const struct mcp_post *in, struct mcp_post_result *out)
{
	memset(out, 0, sizeof(*out));
	if (s->opts.max_message_bytes && in->body_len > s->opts.max_message_bytes) {
		reply(out, 413,
		      mcp_jsonrpc_error(NULL, MCP_INVALID_REQUEST,
		                        "message too large: split the work or send files through "
		                        "sandbox_write_file in parts"));
		return;
	}
	json_error_t je;
	json_t *msg = json_loadb(in->body, in->body_len, JSON_REJECT_DUPLICATES, &je);
	if (!msg) {
		char m[256];
		snprintf(m, sizeof(m), "parse error: %s (line %d, column %d)", je.text, je.line,
		         je.column);
		reply(out, 400, mcp_jsonrpc_error(NULL, MCP_PARSE_ERROR, m));
		return;
	}
	if (json_is_array(msg)) {
		json_decref(msg);
		reply(out, 400,
		      mcp_jsonrpc_error(NULL, MCP_INVALID_REQUEST,
		                        "JSON-RPC batches are not supported: send one message per "
		                        "POST"));
		return;
	}
	json_t *id = json_object_get(msg, "id");
	json_t *method = json_object_get(msg, "method");
	if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "jsonrpc")) ||
	    strcmp(json_string_value(json_object_get(msg, "jsonrpc")), "2.0") != 0) {
		reply(
		    out, 400,
		    mcp_jsonrpc_error(json_is_object(msg) ? id : NULL, MCP_INVALID_REQUEST,
		                      "not a JSON-RPC 2.0 message: it needs \"jsonrpc\": \"2.0\""));
		json_decref(msg);
		return;
	}
	bool is_request = method && id;
	if (!method) {
		/* A response to a server request (we send none) or garbage with an id. */
		if (json_object_get(msg, "result") || json_object_get(msg, "error")) {
			reply(out, 202, NULL);
		} else {
			reply(out, 400,
			      mcp_jsonrpc_error(id, MCP_INVALID_REQUEST,
			                        "a request needs a \"method\" string"));
		}
		json_decref(msg);
		return;
	}
	if (!json_is_string(method) || (id && !json_is_string(id) && !json_is_integer(id))) {
		reply(out, 400,
		      mcp_jsonrpc_error(
		          json_is_string(id) || json_is_integer(id) ? id : NULL,
		          MCP_INVALID_REQUEST,
		          "\"method\" must be a string and \"id\" a string or integer"));
		json_decref(msg);
		return;
	}
	const char *m = json_string_value(method);
	json_t *params = json_object_get(msg, "params");
	if (params && !json_is_object(params)) {
		reply(out, 400,
		      mcp_jsonrpc_error(id, MCP_INVALID_PARAMS, "\"params\" must be an object"));
		json_decref(msg);
		return;
	}

	if (is_request && strcmp(m, "initialize") == 0) {
		const char *want = json_string_value(json_object_get(params, "protocolVersion"));
		if (!want) {
			reply(out, 400,
			      mcp_jsonrpc_error(id, MCP_INVALID_PARAMS,
			                        "initialize needs params.protocolVersion"));
			json_decref(msg);
			return;
		}
		/* Echo a version we speak; otherwise offer our latest and let the client decide. */
		const char *version = mcp_protocol_supported(want) ? want : MCP_PROTOCOL_LATEST;
		char *sid = session_create(s, in->principal, version);
		if (!sid) {
			reply(out, 500,
			      mcp_jsonrpc_error(id, MCP_INTERNAL_ERROR, "cannot create a session"));
			json_decref(msg);
			return;
		}
		out->new_session_id = sid;
		reply(out, 200, jsonrpc_result(id, initialize_result(s, version)));
		json_decref(msg);
		return;
	}

	/* Everything else happens inside a session. */
	if (!in->session_id) {
		reply(out, 400,
		      mcp_jsonrpc_error(id, MCP_INVALID_REQUEST,
		                        "missing Mcp-Session-Id header: send initialize first and "
		                        "echo the session id it returns"));
		json_decref(msg);
		return;
	}
	if (!session_touch(s, in->session_id, in->principal)) {
		reply(out, 404,
		      mcp_jsonrpc_error(id, MCP_INVALID_REQUEST,
		                        "session not found or expired: initialize a new session"));
		json_decref(msg);
		return;
	}
	if (!is_request) { /* notifications/initialized, notifications/cancelled, ... */
		reply(out, 202, NULL);
		json_decref(msg);
		return;
	}
	if (strcmp(m, "ping") == 0) {
		reply(out, 200, jsonrpc_result(id, json_object()));
	} else if (strcmp(m, "tools/list") == 0) {
		reply(out, 200, jsonrpc_result(id, tools_list(s)));
	} else if (strcmp(m, "tools/call") == 0) {
		const char *name = json_string_value(json_object_get(params, "name"));
		if (!name) {
			reply(out, 200,
			      mcp_jsonrpc_error(id, MCP_INVALID_PARAMS,
			                        "tools/call needs params.name"));
		} else if (!find_tool(s, name)) {
			char text[300];
			snprintf(text, sizeof(text),
			         "unknown tool '%.200s': call tools/list to see the tools", name);
			reply(out, 200, mcp_jsonrpc_error(id, MCP_INVALID_PARAMS, text));
		} else {
			out->kind = MCP_POST_CALL_TOOL;
			out->status = 200;
			out->needed_scope = mcp_tool_scope(s, name);
			out->request = msg;
			return;
		}
	} else if (strcmp(m, "resources/list") == 0 || strcmp(m, "prompts/list") == 0 ||
	           strcmp(m, "logging/setLevel") == 0 || strcmp(m, "completion/complete") == 0) {
		char text[200];
		snprintf(text, sizeof(text),
		         "method '%s' is not offered: this server has tools only", m);
		reply(out, 200, mcp_jsonrpc_error(id, MCP_METHOD_NOT_FOUND, text));
	} else {
		char text[300];
		snprintf(text, sizeof(text), "method not found: '%.200s'", m);
		reply(out, 200, mcp_jsonrpc_error(id, MCP_METHOD_NOT_FOUND, text));
	}
	json_decref(msg);
}

json_t *mcp_run_call(struct mcp_server *s, json_t *request, struct mcp_call *call)
{
	json_t *id = json_object_get(request, "id");
	json_t *params = json_object_get(request, "params");
	const char *name = json_string_value(json_object_get(params, "name"));
	struct tool_entry *t = find_tool(s, name);
	if (!t)
		return mcp_jsonrpc_error(id, MCP_INVALID_PARAMS, "unknown tool");
	json_t *args = json_object_get(params, "arguments");
	json_t *empty = NULL;
	if (!args)
		args = empty = json_object();
	cleanup_error struct st_error *err = NULL;
	if (mcp_check_args(s, name, args, &err) < 0) {
		json_decref(empty);
		return mcp_jsonrpc_error(id, MCP_INVALID_PARAMS, st_error_msg(err));
	}
	json_t *meta = json_object_get(params, "_meta");
	json_t *token = json_object_get(meta, "progressToken");
	if (json_is_string(token) || json_is_integer(token))
		call->progress_token = token;
	json_t *result = NULL;
	int r = t->t.fn(t->t.ctx, call, args, &result, &err);
	json_decref(empty);
	if (r == -EINVAL) {
		json_decref(result);
		return mcp_jsonrpc_error(id, MCP_INVALID_PARAMS, st_error_msg(err));
	}
	if (r < 0) {
		json_decref(result);
		/* An internal failure is still reported to the model as a tool error it can read. */
		char *text = st_xasprintf("%s failed: %s", name, st_error_msg(err));
		json_t *res = mcp_text_result(text, NULL, true);
		free(text);
		return jsonrpc_result(id, res);
	}
	return jsonrpc_result(id, result ? result : mcp_text_result("", NULL, false));
}
