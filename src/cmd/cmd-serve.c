/*
 * cmd-serve.c - `stockade serve`: load the configuration, open the state store, start the
 * enabled components behind one HTTP listener, and stop gracefully on SIGTERM / SIGINT.
 *
 * Exit codes: 0 stopped by a signal after a clean shutdown, 1 could not start (bad config,
 * jail unavailable for js-executor, port in use ...), 2 usage error.
 */
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include "api/api.h"
#include "config/config.h"
#include "http/http.h"
#include "store/store.h"

int cmd_serve(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: stockade serve [--listen HOST:PORT] [--data-dir DIR] [--config FILE]\n"
	    "                      [--role ROLE] [--shutdown-grace-ms MS]\n"
	    "\n"
	    "Runs the enabled components behind one HTTP listener.\n"
	    "\n"
	    "  --listen HOST:PORT     address to listen on (default 127.0.0.1:8080; port 0 "
	    "picks one)\n"
	    "  --data-dir DIR         state, blobs and development secrets (default ./data)\n"
	    "  --config FILE          stockade.yaml; without it the embedded default runs "
	    "(SQLite,\n"
	    "                         filesystem blobs, development secrets under "
	    "DIR/secrets)\n"
	    "  --role ROLE            code-executor | js-executor | agent-sandbox | mcp | "
	    "git-server |\n"
	    "                         all (default: every component the configuration "
	    "enables)\n"
	    "  --shutdown-grace-ms MS time in-flight work gets after SIGTERM (default 30000)\n"
	    "\n"
	    "API authentication: tokens from the configuration (apiTokens, stored hashed), the\n"
	    "STOCKADE_API_TOKEN environment variable, or HS256 JWTs signed with jwtSecret. In the\n"
	    "embedded default with none configured, a token is generated into the data dir and\n"
	    "its path printed at start.\n"
	    "\n"
	    "Exit status: 0 after a clean shutdown, 1 when the service cannot start, 2 on "
	    "usage errors.\n");
}

/* Returns the token file path we used (heap) or NULL. */
static char *ensure_token_file(const char *data_dir, char **token_out, struct st_error **err)
{
	char *path = st_xasprintf("%s/api-token", data_dir);
	char *data = NULL;
	size_t len = 0;
	if (st_read_file(path, 4096, &data, &len, NULL) == 0) {
		while (len &&
		       (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
			data[--len] = '\0';
		if (len >= 16) {
			*token_out = data;
			return path;
		}
		free(data);
	}
	unsigned char rnd[24];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || st_read_all(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
		if (fd >= 0)
			close(fd);
		st_error_make(err, errno, "cannot read random bytes for the API token");
		free(path);
		return NULL;
	}
	close(fd);
	static const char hex[] = "0123456789abcdef";
	char tok[64] = "stk_";
	size_t j = 4;
	for (size_t i = 0; i < sizeof(rnd); i++) {
		tok[j++] = hex[rnd[i] >> 4];
		tok[j++] = hex[rnd[i] & 15];
	}
	tok[j] = '\0';
	if (st_write_file_atomic(path, tok, j, 0600, err) < 0) {
		free(path);
		return NULL;
	}
	*token_out = st_xstrdup(tok);
	return path;
}

static int open_store(struct stockade_config *cfg, struct store **out, struct st_error **err)
{
	/* store_open_config honours postgresql.schema exactly as `stockade migrate --config`. */
	int r = store_open_config(cfg, "stockade", out, err);
	if (r < 0)
		return st_error_wrap(err, "cannot open the state store");
	/* Data migrations are registered before the gate, so it sees every one of them. */
	if (store_register_builtin_data_migrations(*out, err) < 0)
		return st_error_wrap(err, "cannot register data migrations");
	r = store_check_upgrade_gate(*out, NULL, 0, err);
	if (r < 0)
		return r;
	if (store_data_migrations_start(*out, err) < 0)
		return st_error_wrap(err, "cannot start data migrations");
	return 0;
}

static unsigned components_from_config(const struct stockade_config *cfg)
{
	unsigned c = 0;
	if (cfg->code_executor.enabled)
		c |= APP_CODE_EXECUTOR;
	if (cfg->rr.js_executor.enabled)
		c |= APP_JS_EXECUTOR;
	if (cfg->rr.agent_sandbox.enabled)
		c |= APP_AGENT_SANDBOX;
	if (cfg->mcp.enabled)
		c |= APP_MCP;
	if (cfg->rr.git_server.enabled)
		c |= APP_GIT_SERVER;
	return c;
}

int cmd_serve(int argc, char **argv)
{
	const char *listen_arg = NULL, *data_dir = NULL, *config_path = NULL, *role = NULL;
	uint64_t grace_ms = 30000;
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"data-dir", required_argument, NULL, 'd'},
	    {"config", required_argument, NULL, 'c'},
	    {"role", required_argument, NULL, 'r'},
	    {"shutdown-grace-ms", required_argument, NULL, 'g'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "l:d:c:r:g:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'l': listen_arg = optarg; break;
		case 'd': data_dir = optarg; break;
		case 'c': config_path = optarg; break;
		case 'r': role = optarg; break;
		case 'g':
			if (st_parse_u64(optarg, &grace_ms) < 0) {
				fprintf(stderr,
				        "stockade serve: --shutdown-grace-ms must be a number of "
				        "milliseconds\n");
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "stockade serve: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	unsigned role_bits = 0;
	if (role && strcmp(role, "all") != 0) {
		role_bits = app_role_parse(role);
		if (!role_bits) {
			fprintf(
			    stderr,
			    "stockade serve: unknown role '%s': use code-executor, js-executor, "
			    "agent-sandbox, mcp, git-server or all\n",
			    role);
			return 2;
		}
	}

	/* Block the stop signals before any thread exists, so only sigwait() below sees them. */
	sigset_t stopset;
	sigemptyset(&stopset);
	sigaddset(&stopset, SIGTERM);
	sigaddset(&stopset, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stopset, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = 1;
	struct st_error *err = NULL;
	struct stockade_config cfg;
	struct config_problems probs;
	config_problems_init(&probs);
	struct app app;
	app_init(&app);
	struct http_server *srv = NULL;
	char *token_path = NULL, *gen_token = NULL;
	bool cfg_loaded = false;

	if (config_load(config_path, &cfg, &probs, &err) < 0) {
		config_problems_print(&probs, stderr);
		if (err)
			fprintf(stderr, "stockade serve: %s\n", st_error_msg(err));
		fprintf(stderr, "stockade serve: configuration is invalid: nothing started\n");
		goto out;
	}
	cfg_loaded = true;
	/* logLevel (or STOCKADE_LOG_LEVEL): the service's own lines and its zygotes'. */
	static const enum st_log_level levels[] = {
	    [CONFIG_LOG_DEBUG] = ST_LOG_DEBUG,
	    [CONFIG_LOG_INFO] = ST_LOG_INFO,
	    [CONFIG_LOG_WARN] = ST_LOG_WARN,
	    [CONFIG_LOG_ERROR] = ST_LOG_ERROR,
	};
	if ((size_t)cfg.log_level < ST_ARRAY_SIZE(levels))
		st_log_set_level(levels[cfg.log_level]);
	for (size_t i = 0; i < probs.n; i++)
		st_log(ST_LOG_WARN, "config: %s: %s", probs.items[i].key_path,
		       probs.items[i].message);
	/* The chart runs the MCP server alone on port 4010. */
	char mcp_listen[300];
	if (!listen_arg && role && strcmp(role, "mcp") == 0 && cfg.listen &&
	    strcmp(cfg.listen, "127.0.0.1:8080") == 0) {
		snprintf(mcp_listen, sizeof(mcp_listen), "%s:4010",
		         cfg.listen_host ? cfg.listen_host : "127.0.0.1");
		listen_arg = mcp_listen;
	}
	/* Derived paths (SQLite file, blob and sandbox dirs) follow --data-dir. */
	if ((listen_arg || data_dir) &&
	    config_apply_overrides(&cfg, listen_arg, data_dir, &err) < 0) {
		fprintf(stderr, "stockade serve: %s\n", st_error_msg(err));
		goto out;
	}
	if (st_mkdir_p(cfg.data_dir, 0700, &err) < 0) {
		fprintf(stderr, "stockade serve: %s\n", st_error_msg(err));
		goto out;
	}
	app.data_dir = st_xstrdup(cfg.data_dir);
	app.config = &cfg;
	if (cfg.dev_mode) {
		if (config_ensure_dev_secrets(&cfg, &err) < 0) {
			fprintf(stderr, "stockade serve: %s\n", st_error_msg(err));
			goto out;
		}
		/* The embedded default's MCP endpoint takes the development API token as its static
		 * token; when that token came from STOCKADE_API_TOKEN no file was generated, so
		 * hand it over here. */
		const char *envt = getenv("STOCKADE_API_TOKEN");
		if (cfg.mcp.enabled && !cfg.mcp.static_token && !cfg.mcp.jwks_file &&
		    !cfg.mcp.jwks_url && envt && strlen(envt) >= 16)
			cfg.mcp.static_token = st_xstrdup(envt);
	}

	/* HTTP server */
	struct http_server_options ho;
	http_server_options_init(&ho);
	if (cfg.http.max_body_bytes)
		ho.max_body_bytes = cfg.http.max_body_bytes;
	if (cfg.http.connection_limit)
		ho.max_connections = cfg.http.connection_limit;
	if (cfg.http.request_timeout_ms)
		ho.idle_timeout_s = (cfg.http.request_timeout_ms + 999) / 1000;
	ho.threads = cfg.http.threads;
	if (http_server_new(cfg.listen, &ho, &srv, &err) < 0) {
		fprintf(stderr, "stockade serve: %s\n", st_error_msg(err));
		goto out;
	}
	app.http = srv;

	/* API auth */
	const char *env_tok = getenv("STOCKADE_API_TOKEN");
	if (env_tok && *env_tok && http_auth_add_token(srv, "env", env_tok, "*", &err) < 0) {
		fprintf(stderr, "stockade serve: STOCKADE_API_TOKEN: %s\n", st_error_msg(err));
		goto out;
	}
	for (size_t i = 0; i < cfg.n_api_tokens; i++) {
		char hex[80] = "sha256:";
		for (int k = 0; k < 32; k++)
			snprintf(hex + 7 + 2 * k, 3, "%02x", cfg.api_token_hashes[i][k]);
		char name[32];
		snprintf(name, sizeof(name), "token-%zu", i + 1);
		if (http_auth_add_token(srv, name, hex, "*", &err) < 0) {
			fprintf(stderr, "stockade serve: %s\n", st_error_msg(err));
			goto out;
		}
	}
	/* rr.agentSandbox.apiSecret: the backend's credential for calling the sandbox API
	   (service to service), limited to the sandbox scopes. */
	const struct config_agent_sandbox *as = &cfg.rr.agent_sandbox;
	if (as->enabled && as->api_secret && *as->api_secret &&
	    http_auth_add_token(srv, "agent-sandbox-service", as->api_secret,
	                        "sandbox:read sandbox:write", &err) < 0) {
		fprintf(stderr, "stockade serve: rr.agentSandbox.apiSecret: %s\n",
		        st_error_msg(err));
		goto out;
	}
	if (cfg.jwt_secret && *cfg.jwt_secret)
		http_auth_set_jwt_secret(srv, cfg.jwt_secret, strlen(cfg.jwt_secret));
	if (cfg.dev_mode) {
		char *p = config_data_path(&cfg, "secrets/api-token");
		if (access(p, R_OK) == 0 && cfg.n_api_tokens > 0) {
			token_path = p;
		} else {
			free(p);
			if (!(env_tok && *env_tok) && cfg.n_api_tokens == 0) {
				token_path = ensure_token_file(cfg.data_dir, &gen_token, &err);
				if (!token_path) {
					fprintf(stderr, "stockade serve: %s\n", st_error_msg(err));
					goto out;
				}
				http_auth_add_token(srv, "dev", gen_token, "*", NULL);
			}
		}
	} else if (http_auth_is_empty(srv)) {
		fprintf(stderr,
		        "stockade serve: no API credentials configured: set apiTokens or jwtSecret "
		        "in %s, or STOCKADE_API_TOKEN\n",
		        config_path);
		goto out;
	}

	/* state store */
	if (open_store(&cfg, &app.store, &err) < 0) {
		fprintf(stderr, "stockade serve: %s\n", st_error_msg(err));
		goto out;
	}

	/* components */
	app.unsandboxed = cfg.code_executor.mode == CONFIG_MODE_UNSANDBOXED;
	if (role_bits) {
		app.components = role_bits;
	} else {
		unsigned want = components_from_config(&cfg);
		for (unsigned bit = 1; bit <= APP_GIT_SERVER; bit <<= 1) {
			if (!(want & bit))
				continue;
			if (!api_component_built((enum app_component)bit)) {
				st_log(ST_LOG_WARN,
				       "component '%s' is enabled but not part of this build",
				       app_component_name((enum app_component)bit));
				continue;
			}
			app.components |= bit;
		}
	}
	if (api_register_all(srv, &app, &err) < 0) {
		fprintf(stderr, "stockade serve: %s\n", st_error_msg(err));
		goto out;
	}
	if (http_server_start(srv, &err) < 0) {
		fprintf(stderr, "stockade serve: %s\n", st_error_msg(err));
		goto out;
	}

	struct st_buf names;
	st_buf_init(&names, 256);
	for (unsigned bit = 1; bit <= APP_GIT_SERVER; bit <<= 1)
		if (app.components & bit)
			st_buf_appendf(&names, "%s%s", names.len ? "," : "",
			               app_component_name((enum app_component)bit));
	st_log(ST_LOG_INFO, "listening on http://%s (components: %s; state: %s)",
	       http_server_address(srv), names.len ? names.data : "ops only",
	       store_backend_name(app.store));
	st_buf_release(&names);
	if (cfg.dev_mode)
		st_log(ST_LOG_WARN,
		       "running the embedded default: development secrets under "
		       "'%s/secrets'; use --config for production",
		       cfg.data_dir);
	if (token_path)
		st_log(ST_LOG_INFO, "API token: '%s' (send 'Authorization: Bearer <token>')",
		       token_path);
	if (app.unsandboxed && (app.components & APP_CODE_EXECUTOR))
		st_log(ST_LOG_WARN, "UNSANDBOXED code-executor: results say sandboxed:false");

	int sig = 0;
	sigwait(&stopset, &sig);
	st_log(ST_LOG_INFO, "received %s: stopping (grace %llu ms)",
	       sig == SIGTERM ? "SIGTERM" : "SIGINT", (unsigned long long)grace_ms);
	app_shutdown(&app, (unsigned)grace_ms);
	st_log(ST_LOG_INFO, "stopped");
	rc = 0;
out:
	if (srv) {
		http_server_stop(srv, 0);
		http_server_free(srv);
		app.http = NULL;
	}
	if (!app.stopping && (app.pool_exec || app.pool_fn))
		app_shutdown(&app, 1000);
	if (app.store)
		store_free(app.store);
	app_release(&app);
	if (cfg_loaded)
		config_release(&cfg);
	config_problems_release(&probs);
	st_error_free(err);
	free(token_path);
	free(gen_token);
	return rc;
}
