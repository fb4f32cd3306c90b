/*
 * sandbox.h - the agent sandbox: long-lived gVisor (or jail) sandboxes for AI agents.
 *
 * A manager (struct sandbox_mgr) owns every sandbox of this process: a warm pool, the limits
 * (max total, concurrent creates, per user), a sweeper that reaps idle and expired sandboxes,
 * and recovery of what a previous process left behind. Each sandbox runs stockade-agent as its
 * init; every operation (exec, files, preview ports) is a request to that agent over a unix
 * socket the manager owns (see agent/agent-proto.h).
 *
 * Ownership: every sandbox belongs to one principal (the API caller); operations by another
 * principal see -ENOENT, never "forbidden", so ids do not leak.
 *
 * Errors: -EAGAIN means a limit was hit (the API answers 429 with the message); -ENOENT unknown
 * sandbox/snapshot; -EINVAL bad request (message names the field); -EACCES refused (tampered
 * snapshot, bad token); others are internal failures.
 */
#ifndef STOCKADE_SANDBOX_H
#define STOCKADE_SANDBOX_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"

struct sandbox_mgr; /* opaque */

enum sandbox_runtime { SANDBOX_RUNTIME_GVISOR, SANDBOX_RUNTIME_JAIL };

struct sandbox_options {
	enum sandbox_runtime runtime;
	const char *runsc_path; /* NULL: "runsc" from PATH */
	const char *platform; /* "ptrace" (default), "kvm", "systrap" */
	const char *state_dir; /* required: workspaces, bundles, channels, local snapshots */
	const char *agent_path; /* NULL: stockade-agent beside /proc/self/exe */
	const char *rootfs; /* NULL: a minimal root built from the host's /usr, /bin, /lib* */

	uint64_t workspace_bytes; /* size of each workspace tmpfs */
	uint64_t memory_bytes;
	uint32_t pids;
	double cpus;
	uint64_t max_file_bytes; /* files API cap */

	uint64_t idle_timeout_ms;
	uint64_t lifetime_ms;
	uint64_t ready_timeout_ms;
	uint64_t exec_timeout_ms; /* default per-exec timeout */

	uint32_t prewarm_pool_size;
	uint32_t max_total_jobs;
	uint32_t max_concurrent_creates;
	uint32_t per_user_limit;

	/* Secrets: without the keypair sandboxes are not served (tokens cannot be made or
	 * checked); without the key snapshots are refused. */
	const char *jwt_private_key_pem;
	const char *jwt_public_key_pem;
	const char *token_issuer; /* NULL: "stockade-agent-sandbox" */
	uint32_t token_ttl_s; /* 0: 900 */
	const uint8_t *encryption_key; /* 32 bytes or NULL */

	/* Snapshot storage: a blob store (struct blob_store *) when set, else state_dir/snapshots. */
	void *blob;
	/* The state store (struct store *, namespace agent_executor) holding the sandbox and
	 * snapshot records; NULL: a private SQLite file, state_dir/state.db. Not owned. */
	void *store;

	/* Egress proxy policy. */
	const char *const *allowed_domains; /* NULL-terminated suffixes; NULL/empty: none */
	const char *const *backend_domain_suffixes;
	const char *const *blocked_cidrs; /* NULL: the default list (private, loopback, ...) */
	/* proxy.egressEnabled: false: no sandbox gets egress (a create asking for it is refused). */
	bool egress_disabled;
};

void sandbox_options_init(struct sandbox_options *o);

int sandbox_mgr_open(const struct sandbox_options *o, struct sandbox_mgr **out,
                     struct st_error **err);
/* Stops the sweeper and pool; destroys pool sandboxes; owned sandboxes keep running (they are
 * re-adopted by the next process). */
void sandbox_mgr_free(struct sandbox_mgr *m);
/* Destroy every sandbox (tests, shutdown with cleanup). */
void sandbox_mgr_destroy_all(struct sandbox_mgr *m);
/* Is the runtime usable? Fills *err with the fix when not. */
int sandbox_runtime_probe(const struct sandbox_options *o, struct st_error **err);

struct sandbox_create_opts {
	const char *owner; /* required */
	const char *from_snapshot; /* snapshot id or NULL */
	json_t *env; /* object of string -> string, or NULL */
	bool allow_egress;
	const char *const *allowed_domains; /* per-sandbox narrowing (NULL: the service list) */
	uint64_t idle_timeout_ms; /* 0: the service default (never above it) */
	uint64_t lifetime_ms;
};

/* On success *out is the sandbox's JSON description including "token". */
int sandbox_create(struct sandbox_mgr *m, const struct sandbox_create_opts *o, json_t **out,
                   struct st_error **err);
int sandbox_get(struct sandbox_mgr *m, const char *owner, const char *id, json_t **out,
                struct st_error **err);
json_t *sandbox_list(struct sandbox_mgr *m, const char *owner);
int sandbox_destroy(struct sandbox_mgr *m, const char *owner, const char *id,
                    struct st_error **err);
int sandbox_pause(struct sandbox_mgr *m, const char *owner, const char *id, struct st_error **err);
int sandbox_resume(struct sandbox_mgr *m, const char *owner, const char *id, struct st_error **err);

/* Token check for the preview proxy: 0 when `token` is a valid token for sandbox `id`. */
int sandbox_token_check(struct sandbox_mgr *m, const char *id, const char *token,
                        struct st_error **err);

/* ---- exec -------------------------------------------------------------------------------- */

struct sandbox_exec_req {
	const char *cmd;
	const char *const *args; /* NULL-terminated or NULL */
	const char *cwd; /* relative to the workspace; NULL: the workspace */
	json_t *env; /* object or NULL */
	const void *stdin_data;
	size_t stdin_len;
	uint64_t timeout_ms; /* 0: service default */
	bool background; /* start and return (dev servers) */
};

struct sandbox_exec_result {
	int exit_code;
	int signal;
	bool timed_out;
	int64_t wall_ms;
	int pid;
};

/* Chunk callback: stream 1 = stdout, 2 = stderr. Return <0 to abort (kills the command). */
typedef int (*sandbox_output_fn)(void *ctx, int stream, const void *data, size_t n);

int sandbox_exec(struct sandbox_mgr *m, const char *owner, const char *id,
                 const struct sandbox_exec_req *r, sandbox_output_fn out, void *ctx,
                 struct sandbox_exec_result *res, struct st_error **err);

/* ---- files ------------------------------------------------------------------------------- */

/* Data callback for reads: return <0 to abort. */
typedef int (*sandbox_data_fn)(void *ctx, const void *data, size_t n);

int sandbox_file_read(struct sandbox_mgr *m, const char *owner, const char *id, const char *path,
                      sandbox_data_fn fn, void *ctx, uint64_t *size, struct st_error **err);
/* Writes the content of fd (read to EOF) to path, atomically. */
int sandbox_file_write_fd(struct sandbox_mgr *m, const char *owner, const char *id,
                          const char *path, int fd, uint64_t *written, struct st_error **err);
int sandbox_file_write(struct sandbox_mgr *m, const char *owner, const char *id, const char *path,
                       const void *data, size_t n, struct st_error **err);
int sandbox_file_delete(struct sandbox_mgr *m, const char *owner, const char *id, const char *path,
                        bool recursive, struct st_error **err);
int sandbox_file_mkdir(struct sandbox_mgr *m, const char *owner, const char *id, const char *path,
                       struct st_error **err);
/* [{name, type: file|dir|symlink|other, size, mode, mtime}] */
int sandbox_file_list(struct sandbox_mgr *m, const char *owner, const char *id, const char *path,
                      json_t **out, struct st_error **err);

/* ---- snapshots --------------------------------------------------------------------------- */

/* Archive (zstd tar), seal (AES-256-GCM) and store the workspace; *out {id, sizeBytes, ...}. */
int sandbox_snapshot(struct sandbox_mgr *m, const char *owner, const char *id, json_t **out,
                     struct st_error **err);

/* The owner's snapshots, newest first: [{id, sandboxId, sizeBytes, sha256, createdAt,
 * createdAtMs}]; sandbox_id (may be NULL) narrows to one sandbox of the owner (-ENOENT when the
 * owner never had it). */
int sandbox_snapshot_list(struct sandbox_mgr *m, const char *owner, const char *sandbox_id,
                          json_t **out, struct st_error **err);
int sandbox_snapshot_get(struct sandbox_mgr *m, const char *owner, const char *snap_id,
                         json_t **out, struct st_error **err);
/* Remove the record and the object. A restore reading it finishes first (new ones get
 * -ENOENT); -EBUSY when that takes minutes. Another owner's snapshot: -ENOENT. */
int sandbox_snapshot_delete(struct sandbox_mgr *m, const char *owner, const char *snap_id,
                            struct st_error **err);

/* ---- preview ports ----------------------------------------------------------------------- */

/* A connected byte stream to `port` inside the sandbox (after the token was checked). The
 * caller owns the fd. Counts as activity until closed with sandbox_port_close. */
int sandbox_port_open(struct sandbox_mgr *m, const char *id, unsigned port, int *fd,
                      struct st_error **err);
void sandbox_port_close(struct sandbox_mgr *m, const char *id, int fd);

/* ---- runtime: jail ------------------------------------------------------------------------ */

/* `stockade sandbox-init`: the last start-up step of a `runtime: jail` sandbox, run by the
 * service as the init of the new namespaces (see sandbox-jail.c). Builds the root, drops what
 * the agent does not need, loads the seccomp policy and execs the agent; returns only on
 * failure (the reason on stderr, which is the sandbox's agent.log). */
int sandbox_jail_init_main(int argc, char **argv);

#endif
