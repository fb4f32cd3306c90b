/*
 * mcp-internal.h - shared by mcp-*.c: bearer-token checks (mcp-auth.c) and the tool set
 * (mcp-tools.c).
 */
#ifndef STOCKADE_MCP_INTERNAL_H
#define STOCKADE_MCP_INTERNAL_H

#include <pthread.h>

#include "api/api.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "mcp/mcp.h"

enum mcp__auth_mode {
	MCP_AUTH_OAUTH, /* JWTs verified against the authorization server's JWKS */
	MCP_AUTH_STATIC, /* one configured bearer token (development) */
	MCP_AUTH_NONE, /* mcp.allowUnauthenticated on a loopback listener (development) */
};

struct mcp__auth {
	enum mcp__auth_mode mode;
	char *static_token;
	char *jwks_file;
	char *jwks_url;
	uint32_t jwks_cache_s;
	char *issuer; /* required iss, or NULL */
	struct config_strv issuers; /* accepted iss values when issuer is NULL (may be empty) */
	char *audience; /* required aud */
	pthread_mutex_t lock; /* guards jwks and its timestamps */
	struct crypto_jwks *jwks;
	int64_t jwks_loaded_ms;
	int64_t jwks_tried_ms;
};

/* The identity a request proved. */
struct mcp__identity {
	char *principal;
	char *scopes; /* space-separated; "*" for every scope (static token, no auth) */
};
void mcp__identity_release(struct mcp__identity *id);

int mcp__auth_init(struct mcp__auth *a, const struct config_mcp *cfg, const char *audience,
                   bool allow_unauthenticated, struct st_error **err);
void mcp__auth_release(struct mcp__auth *a);
/* 0 and *id filled, or -EACCES with a message fit for WWW-Authenticate's error_description. */
int mcp__auth_check(struct mcp__auth *a, const char *bearer, struct mcp__identity *id,
                    struct st_error **err);
bool mcp__has_scope(const char *scopes, const char *scope);

/* Register the Stockade tools (execution, sandboxes) whose components this process runs. */
int mcp__register_tools(struct mcp_server *s, struct app *app, struct st_error **err);
/* The conformance suite's fixture tools (test_error_handling, ...): test builds only, behind
   STOCKADE_MCP_CONFORMANCE_TOOLS=1. */
int mcp__register_conformance_tools(struct mcp_server *s, struct st_error **err);

#endif
