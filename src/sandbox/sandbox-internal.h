/*
 * sandbox-internal.h - shared between the files of src/sandbox/: the sandbox record, the agent
 * protocol client and the runtime backends.
 */
#ifndef STOCKADE_SANDBOX_INTERNAL_H
#define STOCKADE_SANDBOX_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/agent-proto.h"
#include "common/common.h"
#include "sandbox/sandbox.h"

struct sandbox_records;

#define SANDBOX_ID_LEN 24 /* "sb-" + 20 hex + NUL fits in 24 */

/*
 * Lifecycle: STARTING (runtime booting, agent not yet answering) -> READY (answering; in the
 * pool when owner is NULL, else claimed) <-> PAUSED -> DEAD (destroyed or lost; the record is
 * freed when the last reference goes).
 */
enum sandbox_state { SB_STARTING, SB_READY, SB_PAUSED, SB_DEAD };

struct sandbox {
	char id[SANDBOX_ID_LEN];
	char *owner; /* NULL while in the warm pool */
	enum sandbox_state state;
	int refs; /* manager list + in-flight operations */
	int active_ops; /* running commands / open streams: counted as activity */
	int64_t created_wall_s;
	int64_t created_ms, claimed_ms, last_active_ms; /* st_now_ms clock */
	uint64_t idle_timeout_ms, lifetime_ms;
	json_t *env; /* the create request's env, applied to every exec */
	bool allow_egress;
	char **allowed_domains; /* NULL-terminated or NULL: the service list */
	char *from_snapshot;
	char *dir; /* state_dir/sb/<id> */
	char *sock; /* dir/chan/agent.sock */
	int egress_fd; /* listening egress socket (dir/chan/egress.sock) or -1 */
	pthread_t egress_thread;
	bool egress_running;
	void *egress_mgr; /* struct sandbox_mgr *, for the egress threads */
	int64_t stored_active_ms; /* last_active_ms as last written to the state store */
	struct sandbox *next;
};

struct sandbox_mgr {
	struct sandbox_options o; /* strings below are owned copies */
	const struct sandbox_runtime_ops *rt; /* o.runtime's backend */
	char *state_dir, *runsc, *platform, *agent_path, *runsc_root, *rootfs;
	char *compat_path; /* stockade-compat.so beside the agent, NULL when missing */
	char *priv_pem, *pub_pem, *issuer;
	uint8_t key[32];
	bool has_key;
	void *sign_key, *verify_key; /* struct crypto_key * */
	char **allowed_domains, **backend_suffixes, **blocked_cidrs;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct sandbox *list;
	unsigned creating; /* creates in flight (pool refills included) */
	bool stopping;
	pthread_t sweeper;
	bool sweeper_running;
	struct sandbox_records *st; /* the records in the state store (sandbox-state.c) */
};

/* ---- agent protocol client (sandbox-agentproto.c) ----------------------------------------- */

int sandbox__agent_connect(const char *sock, int *fd, struct st_error **err);
int sandbox__frame_write(int fd, char type, const void *data, size_t n);
/* 1 frame, 0 EOF, <0 error. buf must hold AGENT_FRAME_MAX + 1 bytes. */
int sandbox__frame_read(int fd, char *type, char *buf, uint32_t *len);
/* "key=value\0" request builder. */
void sandbox__kv_add(struct st_buf *b, const char *key, const char *value);
const char *sandbox__kv_get(const char *data, uint32_t len, const char *key);
/* Send a request and read the first reply: 0 on AGENT_F_OK (payload left in buf/len), else a
 * negative code with the agent's message in err. */
int sandbox__agent_call(int fd, const struct st_buf *req, char *buf, uint32_t *len,
                        struct st_error **err);
/* The reply half of sandbox__agent_call, for a request sent in several frames; refused is the
 * message when the agent's refusal carries none. */
int sandbox__agent_reply(int fd, char *buf, uint32_t *len, const char *refused,
                         struct st_error **err);
/* Whether id is prefix followed by exactly n_hex lowercase hex digits (sandbox and snapshot
 * ids: they become file and object names, so nothing else may pass). */
bool sandbox__is_hex_id(const char *id, const char *prefix, size_t n_hex);
/* Connect and ping until the agent answers or deadline_ms (st_now_ms clock) passes. */
int sandbox__agent_wait_ready(const char *sock, int64_t deadline_ms, struct st_error **err);

/* ---- runtimes ---------------------------------------------------------------------------- */

/*
 * What the manager needs from a runtime backend (sandbox-runsc.c, sandbox-jail.c). Sandboxes
 * are named by id only: a backend keeps its own record (runsc's root, the jail runtime's
 * records) so that a restarted process can ask about sandboxes it did not start.
 */
struct sandbox_runtime_ops {
	const char *name; /* "gvisor", "jail" */
	/* Is the runtime usable with these options? *err names the fix when not. */
	int (*probe)(const struct sandbox_options *o, struct st_error **err);
	/* Once per manager, before anything starts (the shared root filesystem). */
	int (*prepare)(struct sandbox_mgr *m, struct st_error **err);
	/* Start sb; its agent will listen on sb->sock. */
	int (*start)(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err);
	/* Kill everything of id and forget it; 0 when it is unknown. */
	int (*destroy)(struct sandbox_mgr *m, const char *id, struct st_error **err);
	int (*pause)(struct sandbox_mgr *m, const char *id, bool pause, struct st_error **err);
	/* "running", "paused", "stopped", "created" or NULL when unknown (heap). */
	char *(*state)(struct sandbox_mgr *m, const char *id);
	/* Ids of every sandbox the runtime knows (NULL-terminated, heap). */
	char **(*list)(struct sandbox_mgr *m);
};

extern const struct sandbox_runtime_ops sandbox__runtime_runsc;
extern const struct sandbox_runtime_ops sandbox__runtime_jail;
const struct sandbox_runtime_ops *sandbox__runtime_of(enum sandbox_runtime rt);

/* Build the per-sandbox bundle and start it; the agent will listen on sb->sock. */
int sandbox__runsc_start(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err);
int sandbox__runsc_destroy(struct sandbox_mgr *m, const char *id, struct st_error **err);
int sandbox__runsc_pause(struct sandbox_mgr *m, const char *id, bool pause, struct st_error **err);
/* "running", "paused", "stopped", "created" or NULL when runsc does not know it (heap). */
char *sandbox__runsc_state(struct sandbox_mgr *m, const char *id);
/* Ids of every container under our runsc root (NULL-terminated, heap). */
char **sandbox__runsc_list(struct sandbox_mgr *m);
int sandbox__runsc_probe(const char *runsc, const char *platform, struct st_error **err);
/* The minimal root filesystem (once per state dir). */
int sandbox__prepare_rootfs(struct sandbox_mgr *m, struct st_error **err);
/* Host entries the root filesystem mirrors (shared by both runtimes). */
extern const char *const sandbox__base_dirs[];
extern const size_t sandbox__n_base_dirs;
extern const char *const sandbox__etc_binds[];
extern const size_t sandbox__n_etc_binds;

/* The jail runtime: make a socket the service created in sb/<id>/chan usable by the agent
 * (root inside the sandbox is an unprivileged id outside). No-op for other runtimes. */
void sandbox__jail_chan_grant(struct sandbox_mgr *m, const char *path);

/* ---- workspace (sandbox.c) --------------------------------------------------------------- */

char *sandbox__workspace_path(const struct sandbox *sb);
/* A runtime failed to start a sandbox: add the end of its log (the last 400 bytes of the file
 * at log_path, trailing newlines dropped) to *err as context, after "<label>: " when label is
 * not NULL. Nothing when the log is missing, empty or over 1 MiB. */
void sandbox__error_wrap_log_tail(struct st_error **err, const char *log_path, const char *label);
/* The head of a request to the egress proxy (sandbox-proxy.c), which a sandbox writes: CONNECT
   host:port, or an absolute-form http:// request. */
struct sandbox_egress_req {
	char method[16];
	char host[256]; /* brackets of an IPv6 literal removed */
	char port[6]; /* digits, 1-65535 */
	bool connect;
	char path[2048]; /* origin form of a plain HTTP request ("/" for CONNECT) */
	size_t line_len; /* bytes of the request line, up to its CRLF */
	size_t head_len; /* bytes up to and including the blank line */
};
/* Parse head[0..len) (len bytes read so far, NUL-terminated by the caller): 0 when it holds
   a whole head; -EAGAIN when the blank line has not come yet; -EINVAL with *msg (static text
   for the 400 reply) when it is not a request the proxy serves. */
int sandbox__egress_parse(const char *head, size_t len, struct sandbox_egress_req *r,
                          const char **msg);
/* References for threads that outlive a request (egress connections). */
void sandbox__sb_ref(struct sandbox_mgr *m, struct sandbox *sb);
void sandbox__sb_unref(struct sandbox_mgr *m, struct sandbox *sb);

/* ---- snapshots (sandbox-snapshot.c) ------------------------------------------------------ */

/* Archive dir into a sealed blob recorded in the state store; *snap_id is new (heap). */
int sandbox__snapshot_save(struct sandbox_mgr *m, const char *owner, const char *sandbox_id,
                           const char *ws_dir, char **snap_id, uint64_t *bytes, char sha256[65],
                           struct st_error **err);
/* Verify and extract snapshot into ws_dir (which must be empty). */
int sandbox__snapshot_restore(struct sandbox_mgr *m, const char *owner, const char *snap_id,
                              const char *ws_dir, struct st_error **err);

/* ---- records in the state store and recovery (sandbox-state.c) ---------------------------- */

/* Open (or adopt m->o.store) and migrate the agent_sandbox tables. */
int sandbox__state_open(struct sandbox_mgr *m, struct st_error **err);
void sandbox__state_close(struct sandbox_mgr *m);
/* A new sandbox's row (state pool, no owner), written before anything exists on the host. */
int sandbox__state_boot(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err);
/* The claim: owner, timeouts, env, network policy, snapshot; state running. */
int sandbox__state_claim(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err);
/* running / paused (failures are logged). */
void sandbox__state_set(struct sandbox_mgr *m, const char *id, const char *state);
/* The end: destroyed / expired / lost / failed from `why` (pool rows are deleted). */
void sandbox__state_end(struct sandbox_mgr *m, const char *id, const char *why);
/* Write changed last-activity times (the sweeper; at most every 2 s). */
void sandbox__state_flush_activity(struct sandbox_mgr *m, bool force);
/* 0 when owner has (or had) sandbox id, else -ENOENT. */
int sandbox__state_owned(struct sandbox_mgr *m, const char *owner, const char *id,
                         struct st_error **err);
/* Re-adopt or clean up what a previous process left (at open, before the sweeper). */
void sandbox__recover(struct sandbox_mgr *m);
/* Remove what the host may still hold for a sandbox id: mounts under dir (may be NULL) and
 * its cgroups (processes left in them are killed). */
void sandbox__host_cleanup(const char *id, const char *dir);

/* One snapshot record as the snapshot code needs it. */
struct sandbox_snaprec {
	char *key; /* blob key (or path under state_dir/snapshots) */
	bool local;
	uint64_t size;
	char sha256[65]; /* of the sealed object */
	int64_t created_at; /* wall ms */
	bool reading; /* a reader is registered (sandbox__snaprec_close releases it) */
};
/* Record a snapshot about to be uploaded (state saving; hashes sealed_fd by pread). */
int sandbox__snaprec_begin(struct sandbox_mgr *m, const char *owner, const char *sandbox_id,
                           const char *snap_id, const char *key, int sealed_fd,
                           struct sandbox_snaprec *rec, struct st_error **err);
/* stored: the upload completed (ready); else the row is dropped. */
int sandbox__snaprec_finish(struct sandbox_mgr *m, const char *snap_id, bool stored,
                            struct st_error **err);
/* 1: found and a reader registered; 0: no record of that id at all (legacy); <0 -ENOENT... */
int sandbox__snaprec_open(struct sandbox_mgr *m, const char *owner, const char *snap_id,
                          struct sandbox_snaprec *rec, struct st_error **err);
void sandbox__snaprec_close(struct sandbox_mgr *m, const char *snap_id,
                            struct sandbox_snaprec *rec);
int sandbox__sha256_fd(int fd, char out[65]);

/* Record helpers of sandbox.c used by recovery. */
struct sandbox *sandbox__sb_new(struct sandbox_mgr *m, const char *id);
void sandbox__sb_free(struct sandbox *sb);
void sandbox__sb_teardown(struct sandbox_mgr *m, struct sandbox *sb);

/* ---- tokens and egress (sandbox-proxy.c) ------------------------------------------------- */

int sandbox__token_make(struct sandbox_mgr *m, const char *id, char **token, int64_t *exp,
                        struct st_error **err);
int sandbox__token_verify(struct sandbox_mgr *m, const char *id, const char *token,
                          struct st_error **err);
int sandbox__keys_load(struct sandbox_mgr *m, struct st_error **err);
void sandbox__keys_release(struct sandbox_mgr *m);
/* Start/stop the per-sandbox egress listener (dir/chan/egress.sock). */
int sandbox__egress_start(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err);
void sandbox__egress_stop(struct sandbox *sb);

#endif
