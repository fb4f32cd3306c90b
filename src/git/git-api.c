/*
 * git-api.c - the git server's HTTP side: repository management under /api/v1/git/repos and
 * git's smart-HTTP protocol under /git/<name>.git/, answered by `git http-backend` run as a CGI
 * program in the repository's working copy (git-repo.c keeps that copy in step with storage).
 *
 * Clients authenticate with an API token that has the "git" permission: as a bearer token, or
 * as the password of Basic auth (what git sends: http://x:<token>@host/git/name.git, or a
 * credential helper). A fetch streams git's answer as it comes; a push is answered only after
 * the new state is stored, so a push the client sees succeed is never lost.
 */
#include <ctype.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/api.h"
#include "blob/blob.h"
#include "config/config.h"
#include "git/git.h"
#include "http/http.h"

#define BACKEND_DEADLINE_MS (30 * 60 * 1000) /* the longest clone or push we wait for */
#define PUSH_REPLY_MAX (64u << 20) /* a push's answer is git's status report: small */

static struct git_server *g_git;
static struct blob_store *g_blob;
/* git requests being served (a fetch's streaming thread included); shutdown waits for them */
static atomic_int g_active;
static atomic_int g_stopping;

/*
 * git processes at once: a clone's pack-objects can take a core and a good deal of memory, so
 * requests beyond this many wait (up to SLOT_WAIT_MS, then 503 with Retry-After).
 */
#define SLOT_WAIT_MS 30000
static pthread_mutex_t g_slot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_slot_cond = PTHREAD_COND_INITIALIZER;
static unsigned g_slots_used, g_slots_max;

static bool slot_take(void)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += SLOT_WAIT_MS / 1000;
	pthread_mutex_lock(&g_slot_lock);
	while (g_slots_used >= g_slots_max) {
		if (pthread_cond_timedwait(&g_slot_cond, &g_slot_lock, &until) == ETIMEDOUT)
			break;
	}
	bool ok = g_slots_used < g_slots_max;
	if (ok)
		g_slots_used++;
	pthread_mutex_unlock(&g_slot_lock);
	return ok;
}

static void slot_give(void)
{
	pthread_mutex_lock(&g_slot_lock);
	g_slots_used--;
	pthread_cond_signal(&g_slot_cond);
	pthread_mutex_unlock(&g_slot_lock);
}

/* ---- repository management --------------------------------------------------------------- */

static void add_urls(struct http_request *req, json_t *repo)
{
	const char *host = http_header(req, "Host");
	const char *name = json_string_value(json_object_get(repo, "name"));
	if (!name)
		return;
	char *path = st_xasprintf("/git/%s.git", name);
	json_object_set_new(repo, "path", json_string(path));
	if (host) {
		char *url = st_xasprintf("http://%s%s", host, path);
		json_object_set_new(repo, "cloneUrl", json_string(url));
		free(url);
	}
	free(path);
}

static int reply_store_error(struct http_request *req, int r, struct st_error *err)
{
	if (r == -ENOENT)
		return http_reply_error(req, 404, "not_found", st_error_msg(err), NULL);
	st_log(ST_LOG_ERROR, "git: %s", st_error_msg(err));
	return http_reply_error(req, 500, "internal", st_error_msg(err), NULL);
}

static int h_list(struct http_request *req, void *ctx)
{
	(void)ctx;
	json_t *rows = NULL;
	cleanup_error struct st_error *err = NULL;
	int r = git_repo_list(g_git, &rows, &err);
	if (r < 0)
		return reply_store_error(req, r, err);
	size_t i;
	json_t *v;
	json_array_foreach(rows, i, v) add_urls(req, v);
	return http_reply_json(req, 200, json_pack("{s:o}", "repositories", rows));
}

static int h_create(struct http_request *req, void *ctx)
{
	(void)ctx;
	json_t *body = http_body_json(req);
	if (!body)
		return 0;
	static const char *const fields[] = {"name", "description", NULL};
	const char *name = NULL, *desc = NULL;
	int ret = 0;
	json_t *repo = NULL;
	cleanup_error struct st_error *err = NULL;
	if (!api_known_fields(req, body, NULL, fields) ||
	    !api_get_string(req, body, "name", true, 100, &name) ||
	    !api_get_string(req, body, "description", false, 4096, &desc))
		goto out;
	if (!git_repo_name_valid(name)) {
		ret = http_reply_bad_field(
		    req, "name",
		    "'%s' is not a repository name: use 1-100 characters of letters, digits, '.', "
		    "'_' and '-', starting with a letter or digit, without '..' and not ending in "
		    "'.git' or '.lock' (the URL adds '.git')",
		    name);
		goto out;
	}
	int r = git_repo_create(g_git, name, desc, req->principal, &repo, &err);
	if (r == -EEXIST) {
		char *msg = st_xasprintf("a repository named '%s' already exists", name);
		ret = http_reply_error(req, 409, "conflict", msg, NULL);
		free(msg);
		goto out;
	}
	if (r < 0) {
		ret = reply_store_error(req, r, err);
		goto out;
	}
	add_urls(req, repo);
	char *loc = st_xasprintf("/api/v1/git/repos/%s", name);
	http_reply_header(req, "Location", loc);
	free(loc);
	ret = http_reply_json(req, 201, repo);
out:
	json_decref(body);
	return ret;
}

static int h_get(struct http_request *req, void *ctx)
{
	(void)ctx;
	const char *name = http_param(req, "name");
	json_t *repo = NULL;
	cleanup_error struct st_error *err = NULL;
	int r = git_repo_get(g_git, name, &repo, &err);
	if (r < 0)
		return reply_store_error(req, r, err);
	json_t *branches = NULL;
	cleanup_free char *head = NULL;
	r = git_repo_branches(g_git, name, &branches, &head, &err);
	if (r < 0) {
		json_decref(repo);
		return reply_store_error(req, r, err);
	}
	json_object_set_new(repo, "branches", branches);
	json_object_set_new(repo, "defaultBranch", head ? json_string(head) : json_null());
	add_urls(req, repo);
	return http_reply_json(req, 200, repo);
}

static int h_delete(struct http_request *req, void *ctx)
{
	(void)ctx;
	cleanup_error struct st_error *err = NULL;
	int r = git_repo_delete(g_git, http_param(req, "name"), &err);
	if (r < 0)
		return reply_store_error(req, r, err);
	return http_reply_bytes(req, 204, NULL, "", 0);
}

/* ---- git http-backend as a CGI program --------------------------------------------------- */

/*
 * One run of git http-backend. Its answer is a CGI header block (Status, Content-Type, cache
 * headers) and a body. A fetch streams the body from a thread of its own once the headers are
 * in (the connection's thread sends what the stream queues only after the handler returns);
 * a push collects it, because the client may hear it only once the new state is stored.
 */
struct cgi {
	pid_t pid;
	int out, errfd; /* git's stdout and stderr */
	int64_t deadline;
	int status;
	char *content_type;
	struct st_buf head; /* the CGI header block, until the blank line */
	bool head_done;
	struct st_buf body; /* what came after the headers and is not yet sent */
	struct st_buf err; /* git's stderr (the tail) */
	struct http_stream *stream; /* fetch, once streaming */
	bool client_gone;
	/* for the streaming thread */
	struct git_serve *serve;
	char *name;
	char *suffix;
};

/* Parse the CGI header block: Status and Content-Type are ours, the rest is passed on. */
static void cgi_headers(struct http_request *req, struct cgi *c)
{
	c->status = 200;
	char *save = NULL;
	for (char *line = strtok_r(c->head.data, "\r\n", &save); line;
	     line = strtok_r(NULL, "\r\n", &save)) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		*colon = '\0';
		const char *v = colon + 1;
		while (*v == ' ')
			v++;
		if (strcasecmp(line, "Status") == 0)
			c->status = (int)strtol(v, NULL, 10);
		else if (strcasecmp(line, "Content-Type") == 0)
			c->content_type = st_xstrdup(v);
		else if (strcasecmp(line, "Content-Length") != 0)
			http_reply_header(req, line, v);
	}
	if (c->status < 200 || c->status > 599)
		c->status = 502;
}

static int cgi_body(struct cgi *c, const char *data, size_t n)
{
	if (n == 0)
		return 0;
	if (c->stream)
		return http_stream_write(c->stream, data, n);
	return st_buf_append(&c->body, data, n) < 0 ? -EFBIG : 0;
}

static int cgi_stdout(struct http_request *req, struct cgi *c, const char *data, size_t n)
{
	if (c->head_done)
		return cgi_body(c, data, n);
	if (st_buf_append(&c->head, data, n) < 0)
		return -EFBIG;
	char *end = NULL;
	size_t skip = 0;
	char *a = memmem(c->head.data, c->head.len, "\r\n\r\n", 4);
	char *b = memmem(c->head.data, c->head.len, "\n\n", 2);
	if (a && (!b || a < b)) {
		end = a;
		skip = 4;
	} else if (b) {
		end = b;
		skip = 2;
	}
	if (!end)
		return 0;
	size_t hlen = (size_t)(end - c->head.data);
	size_t rest = c->head.len - hlen - skip;
	cleanup_free char *tail = rest ? st_xmalloc(rest) : NULL;
	if (rest)
		memcpy(tail, end + skip, rest);
	c->head.data[hlen] = '\0';
	c->head.len = hlen;
	c->head_done = true;
	cgi_headers(req, c);
	return cgi_body(c, tail, rest);
}

/* Only what git's protocol negotiation header may carry ("version=2", ":"-separated). */
static bool protocol_ok(const char *v)
{
	if (!v || strlen(v) > 256)
		return false;
	for (const char *p = v; *p; p++)
		if (!(isalnum((unsigned char)*p) || strchr("=:._-", *p)))
			return false;
	return true;
}

/* Start git http-backend for one request in the repository root. */
static int cgi_start(struct http_request *req, const char *root, const char *path_info,
                     struct cgi *c, struct st_error **err)
{
	const struct git_options *o = git_server_options(g_git);
	char *envp[32];
	size_t ne = 0;
#define ENV(...) (envp[ne++] = st_xasprintf(__VA_ARGS__))
	ENV("GIT_PROJECT_ROOT=%s", root);
	ENV("GIT_HTTP_EXPORT_ALL=1");
	ENV("PATH_INFO=%s", path_info);
	ENV("REQUEST_METHOD=%s", req->method);
	const char *svc = http_query(req, "service");
	bool svc_ok =
	    svc && (strcmp(svc, "git-upload-pack") == 0 || strcmp(svc, "git-receive-pack") == 0);
	ENV("QUERY_STRING=%s%s", svc_ok ? "service=" : "", svc_ok ? svc : "");
	const char *ct = http_header(req, "Content-Type");
	if (ct)
		ENV("CONTENT_TYPE=%s", ct);
	if (req->body_fd >= 0)
		ENV("CONTENT_LENGTH=%llu", (unsigned long long)req->body_file_len);
	const char *ce = http_header(req, "Content-Encoding");
	if (ce && (strcmp(ce, "gzip") == 0 || strcmp(ce, "x-gzip") == 0))
		ENV("HTTP_CONTENT_ENCODING=%s", ce);
	const char *gp = http_header(req, "Git-Protocol");
	if (protocol_ok(gp))
		ENV("GIT_PROTOCOL=%s", gp);
	ENV("REMOTE_USER=%s", req->principal ? req->principal : "api");
	ENV("REMOTE_ADDR=%s", req->client_addr ? req->client_addr : "");
	ENV("PATH=/usr/bin:/bin");
	ENV("HOME=%s", root);
	ENV("GIT_CONFIG_NOSYSTEM=1");
	ENV("GIT_CONFIG_GLOBAL=/dev/null");
	ENV("GIT_TERMINAL_PROMPT=0");
	ENV("LANG=C");
	/* Whatever a repository's config says: no hooks, objects checked on the way in. */
	ENV("GIT_CONFIG_COUNT=4");
	ENV("GIT_CONFIG_KEY_0=core.hooksPath");
	ENV("GIT_CONFIG_VALUE_0=/dev/null");
	ENV("GIT_CONFIG_KEY_1=receive.fsckObjects");
	ENV("GIT_CONFIG_VALUE_1=true");
	ENV("GIT_CONFIG_KEY_2=safe.directory");
	ENV("GIT_CONFIG_VALUE_2=*");
	/* a gzip-encoded push inflates past the HTTP cap: git enforces it on the pack itself */
	ENV("GIT_CONFIG_KEY_3=receive.maxInputSize");
	ENV("GIT_CONFIG_VALUE_3=%llu", (unsigned long long)o->max_push_bytes);
#undef ENV
	envp[ne] = NULL;

	int out[2] = {-1, -1}, errp[2] = {-1, -1};
	int r = 0;
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		r = st_error_make(err, errno, "pipe");
		goto done;
	}
	if (req->body_fd >= 0 && lseek(req->body_fd, 0, SEEK_SET) < 0) {
		r = st_error_make(err, errno, "cannot rewind the request body");
		goto done;
	}
	pid_t pid = fork();
	if (pid < 0) {
		r = st_error_make(err, errno, "fork");
		goto done;
	}
	if (pid == 0) {
		/* The child owns its copy of the body's descriptor: the request may end first. */
		int in = req->body_fd >= 0 ? req->body_fd : open("/dev/null", O_RDONLY);
		if (in < 0 || dup2(in, 0) < 0 || dup2(out[1], 1) < 0 || dup2(errp[1], 2) < 0)
			_exit(127);
		if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
			_exit(127);
		setpgid(0, 0);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		char name[] = "git-http-backend";
		char *argv[] = {name, NULL};
		execve(o->http_backend, argv, envp);
		_exit(127);
	}
	c->pid = pid;
	c->out = out[0];
	c->errfd = errp[0];
	out[0] = errp[0] = -1;
	c->deadline = st_now_ms() + BACKEND_DEADLINE_MS;
done:
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	for (size_t i = 0; i < ne; i++)
		free(envp[i]);
	return r;
}

/* Move git's output along until it ends (or, with until_head, until the headers are in).
   req is NULL on the streaming thread. */
static int cgi_pump(struct http_request *req, struct cgi *c, bool until_head, struct st_error **err)
{
	while (c->out >= 0 || c->errfd >= 0) {
		if (until_head && c->head_done)
			return 0;
		struct pollfd p[2] = {{.fd = c->out, .events = POLLIN},
		                      {.fd = c->errfd, .events = POLLIN}};
		int64_t left = c->deadline - st_now_ms();
		if (left <= 0)
			return st_error_make(err, ETIMEDOUT, "git took longer than %d minutes",
			                     BACKEND_DEADLINE_MS / 60000);
		int n = poll(p, 2, left > 1000 ? 1000 : (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return st_error_make(err, errno, "poll");
		if (n == 0 && (c->stream ? http_stream_client_gone(c->stream)
		                         : req && http_request_client_gone(req))) {
			c->client_gone = true;
			return -EPIPE;
		}
		char buf[65536];
		if (p[1].revents) {
			ssize_t k = read(c->errfd, buf, sizeof(buf));
			if (k <= 0) {
				close(c->errfd);
				c->errfd = -1;
			} else if (!st_buf_append_trunc(&c->err, buf, (size_t)k)) {
				st_buf_reset(&c->err);
			}
		}
		if (p[0].revents) {
			ssize_t k = read(c->out, buf, sizeof(buf));
			if (k <= 0) {
				close(c->out);
				c->out = -1;
			} else {
				int w = cgi_stdout(req, c, buf, (size_t)k);
				if (w == -EPIPE) {
					c->client_gone = true;
					return -EPIPE;
				}
				if (w < 0)
					return st_error_make(err, -w, "git's answer is too large");
			}
		}
	}
	return 0;
}

/* Reap git (killing it first when failed); its exit status, or 127 when it could not run. */
static int cgi_finish(struct cgi *c, bool failed)
{
	if (c->pid <= 0)
		return -1;
	if (failed) {
		kill(-c->pid, SIGKILL);
		kill(c->pid, SIGKILL);
	}
	int status = 0;
	while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR) {
	}
	c->pid = -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void cgi_release(struct cgi *c)
{
	if (c->pid > 0)
		(void)cgi_finish(c, true);
	if (c->out >= 0)
		close(c->out);
	if (c->errfd >= 0)
		close(c->errfd);
	free(c->content_type);
	st_buf_release(&c->head);
	st_buf_release(&c->body);
	st_buf_release(&c->err);
	git_serve_end(c->serve);
	free(c->name);
	free(c->suffix);
	free(c);
	slot_give();
	atomic_fetch_sub(&g_active, 1);
}

static void cgi_log_failure(struct cgi *c, const char *what)
{
	st_log(ST_LOG_ERROR, "git: %s on '%s': %s%s%s", c->suffix, c->name, what,
	       c->err.len ? "; git says: " : "", c->err.len ? c->err.data : "");
}

/* The streaming thread of a fetch: the rest of git's answer to the client. */
static void cgi_stream_main(struct http_stream *s, void *ctx)
{
	struct cgi *c = ctx;
	c->stream = s;
	int r = 0;
	if (c->body.len)
		r = http_stream_write(s, c->body.data, c->body.len);
	st_buf_reset(&c->body);
	cleanup_error struct st_error *err = NULL;
	if (r == 0)
		r = cgi_pump(NULL, c, false, &err);
	int status = cgi_finish(c, r < 0);
	if (r < 0 && !c->client_gone)
		cgi_log_failure(c, st_error_msg(err));
	else if (r == 0 && status != 0)
		cgi_log_failure(c, "git http-backend failed part-way");
	c->stream = NULL; /* closed by the caller of this function */
	cgi_release(c);
}

/* "/git/{repo}/..." names the repository as "name.git" (or plain "name"). */
static char *repo_name(struct http_request *req)
{
	const char *r = http_param(req, "repo");
	if (!r)
		return NULL;
	char *n = st_xstrdup(r);
	size_t len = strlen(n);
	if (len > 4 && strcmp(n + len - 4, ".git") == 0)
		n[len - 4] = '\0';
	if (!git_repo_name_valid(n)) {
		free(n);
		return NULL;
	}
	return n;
}

static int serve(struct http_request *req, const char *suffix, bool push)
{
	cleanup_free char *name = repo_name(req);
	if (!name)
		return http_reply_error(req, 404, "not_found",
		                        "no such repository: the URL is /git/<name>.git (list them "
		                        "with GET /api/v1/git/repos)",
		                        NULL);
	if (atomic_load(&g_stopping))
		return api_reply_busy(req, 503, 1, "shutting_down", "the server is shutting down");
	atomic_fetch_add(&g_active, 1);
	if (!slot_take()) {
		atomic_fetch_sub(&g_active, 1);
		char msg[160];
		snprintf(msg, sizeof(msg),
		         "%u git requests are running on this server; retry in a few seconds",
		         g_slots_max);
		return api_reply_busy(req, 503, 5, "busy", msg);
	}
	struct git_serve *s = NULL;
	cleanup_error struct st_error *err = NULL;
	int r = git_serve_begin(g_git, name, push, &s, &err);
	if (r < 0) {
		slot_give();
		atomic_fetch_sub(&g_active, 1);
	}
	if (r == -ENOENT) {
		char *msg = st_xasprintf("no repository named '%s': create it with POST "
		                         "/api/v1/git/repos {\"name\": \"%s\"}",
		                         name, name);
		r = http_reply_error(req, 404, "not_found", msg, NULL);
		free(msg);
		return r;
	}
	if (r == -EBUSY || r == -EAGAIN)
		return api_reply_busy(req, 503, 2, "busy", st_error_msg(err));
	if (r < 0) {
		st_log(ST_LOG_ERROR, "git: %s", st_error_msg(err));
		return http_reply_error(req, 500, "internal", st_error_msg(err), NULL);
	}
	struct cgi *c = st_xcalloc(1, sizeof(*c));
	c->pid = -1;
	c->out = c->errfd = -1;
	c->serve = s;
	c->name = st_xstrdup(name);
	c->suffix = st_xstrdup(suffix);
	st_buf_init(&c->head, 64 * 1024);
	st_buf_init(&c->err, 4096);
	st_buf_init(&c->body, PUSH_REPLY_MAX);
	cleanup_free char *path_info = st_xasprintf("/%s.git/%s", name, suffix);
	r = cgi_start(req, git_serve_root(s), path_info, c, &err);
	if (r == 0)
		r = cgi_pump(req, c, !push, &err);
	int ret = 0;
	if (r == 0 && !push && c->head_done) {
		/* a fetch: the rest streams from a thread of its own, which releases c */
		const char *type = c->content_type ? c->content_type : "application/octet-stream";
		if (http_reply_stream_thread(req, (unsigned)c->status, type, cgi_stream_main, c) <
		    0)
			cgi_release(c);
		return 0;
	}
	int status = cgi_finish(c, r < 0);
	if (r < 0 && c->client_gone) {
		/* nothing to answer */
	} else if (r < 0 || !c->head_done) {
		const char *why = r < 0 ? st_error_msg(err) : "git http-backend gave no answer";
		cgi_log_failure(c, why);
		ret = http_reply_error(req, 502, "git_failed", why, NULL);
	} else if (push && status == 0 && c->status == 200) {
		/* The client hears git's answer only once the new state is stored. */
		if (git_serve_commit(s, &err) < 0) {
			st_log(ST_LOG_ERROR, "git: %s", st_error_msg(err));
			char *msg =
			    st_xasprintf("the push was received but could not be stored, so "
			                 "nothing changed: %s; push again",
			                 st_error_msg(err));
			ret = http_reply_error(req, 503, "storage_failed", msg, NULL);
			free(msg);
		} else {
			st_log(ST_LOG_INFO, "git: push to '%s' by '%s': generation %lld", name,
			       req->principal ? req->principal : "?",
			       (long long)git_serve_generation(s));
			ret = http_reply_bytes(req, 200, c->content_type,
			                       c->body.data ? c->body.data : "", c->body.len);
		}
	} else {
		if (status != 0)
			cgi_log_failure(c, "git http-backend failed");
		ret = http_reply_bytes(req, (unsigned)c->status,
		                       c->content_type ? c->content_type : "text/plain",
		                       c->body.data ? c->body.data : "", c->body.len);
	}
	cgi_release(c);
	return ret;
}

static int h_info_refs(struct http_request *req, void *ctx)
{
	(void)ctx;
	const char *svc = http_query(req, "service");
	if (!svc || (strcmp(svc, "git-upload-pack") != 0 && strcmp(svc, "git-receive-pack") != 0))
		return http_reply_bad_field(
		    req, "service",
		    "this server speaks git's smart HTTP protocol only: ?service=git-upload-pack "
		    "or "
		    "?service=git-receive-pack (a git client sends it; the dumb protocol is not "
		    "served)");
	/* the advertisement for a push needs nothing stored: it is a read */
	return serve(req, "info/refs", false);
}

static int h_upload_pack(struct http_request *req, void *ctx)
{
	(void)ctx;
	return serve(req, "git-upload-pack", false);
}

static int h_receive_pack(struct http_request *req, void *ctx)
{
	(void)ctx;
	return serve(req, "git-receive-pack", true);
}

/* ---- registration ------------------------------------------------------------------------ */

static enum app_health health(void *ctx, char **detail)
{
	(void)ctx;
	(void)detail;
	return g_git ? APP_HEALTH_OK : APP_HEALTH_DOWN;
}

static void on_shutdown(void *ctx, int64_t deadline_ms)
{
	(void)ctx;
	atomic_store(&g_stopping, 1);
	while (atomic_load(&g_active) > 0 && st_now_ms() < deadline_ms)
		usleep(50 * 1000);
	int left = atomic_load(&g_active);
	if (left > 0) {
		/* their threads still use the server: it ends with the process */
		st_log(ST_LOG_WARN, "git: %d request(s) still running at shutdown", left);
		return;
	}
	git_server_close(g_git);
	g_git = NULL;
	blob_close(g_blob);
	g_blob = NULL;
}

int api_register_git(struct http_server *srv, struct app *app, struct st_error **err)
{
	if (!app->store)
		return st_error_make(err, EINVAL, "the git server needs the state store");
	const struct stockade_config *cfg = app->config;
	if (!cfg)
		return st_error_make(err, EINVAL, "the git server needs a configuration");
	int r = blob_open_config(&cfg->rr.git_blob, &g_blob, err);
	if (r < 0)
		return st_error_wrap(err, "git repository storage");
	cleanup_free char *cache = config_data_path(cfg, "git");
	struct git_options o = {.store = app->store,
	                        .blob = g_blob,
	                        .cache_dir = cache,
	                        .max_push_bytes = cfg->rr.git_server.max_push_bytes};
	const char *backend = getenv("STOCKADE_GIT_HTTP_BACKEND");
	if (backend && *backend)
		o.http_backend = backend;
	r = git_server_open(&o, &g_git, err);
	if (r < 0) {
		blob_close(g_blob);
		g_blob = NULL;
		return r;
	}
	uint64_t push_cap = o.max_push_bytes ? o.max_push_bytes : 512u << 20;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	g_slots_max = (unsigned)(cpus > 2 ? 4 * cpus : 8);
	uint64_t want = 0;
	const char *mr = getenv("STOCKADE_GIT_MAX_REQUESTS");
	if (mr && *mr) {
		if (st_parse_u64(mr, &want) < 0 || want == 0 || want > 4096)
			return st_error_make(
			    err, EINVAL,
			    "STOCKADE_GIT_MAX_REQUESTS must be a number from 1 to 4096, "
			    "not '%s'",
			    mr);
		g_slots_max = (unsigned)want;
	}
	const unsigned auth = HTTP_AUTH_API_TOKEN | HTTP_AUTH_BASIC_OK;
	const struct http_route_spec routes[] = {
	    {"GET", "/api/v1/git/repos", h_list, app, HTTP_AUTH_API_TOKEN, "git", 0, NULL},
	    {"POST", "/api/v1/git/repos", h_create, app, HTTP_AUTH_API_TOKEN, "git", 0, NULL},
	    {"GET", "/api/v1/git/repos/{name}", h_get, app, HTTP_AUTH_API_TOKEN, "git", 0, NULL},
	    {"DELETE", "/api/v1/git/repos/{name}", h_delete, app, HTTP_AUTH_API_TOKEN, "git", 0,
	     NULL},
	    {"GET", "/git/{repo}/info/refs", h_info_refs, app, auth, "git", 0, "/git/info/refs"},
	    {"POST", "/git/{repo}/git-upload-pack", h_upload_pack, app, auth | HTTP_ROUTE_BODY_FILE,
	     "git", 64u << 20, "/git/git-upload-pack"},
	    {"POST", "/git/{repo}/git-receive-pack", h_receive_pack, app,
	     auth | HTTP_ROUTE_BODY_FILE, "git", (size_t)push_cap, "/git/git-receive-pack"},
	};
	for (size_t i = 0; i < ST_ARRAY_SIZE(routes); i++)
		if (http_route_ex(srv, &routes[i]) < 0)
			return st_error_make(err, EINVAL, "cannot register '%s'",
			                     routes[i].pattern);
	app_add_health_check(app, "git-server", health, NULL);
	app_on_shutdown(app, "git-server", on_shutdown, NULL);
	return 0;
}
