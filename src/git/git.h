/*
 * git.h - the git server: repositories served over git's smart-HTTP protocol, kept in the blob
 * store.
 *
 * A repository is a row in the state store (name, generation, size, a push lease) and, from
 * its first push on, one object in the blob store: "<name>/<generation>.tar.zst", an archive of
 * the bare repository's HEAD, packed-refs, refs/ and objects/ (nothing else: configuration and
 * hooks are never taken from storage). Each server process keeps a working copy of the bare
 * repositories it serves under a cache directory and brings it up to the store's generation
 * before it answers; git itself (`git http-backend`, Debian's git) speaks the protocol.
 *
 * A push runs under a lease in the state store, so pushes to one repository are serialised
 * across every replica; it is answered only after the new generation is in the blob store and
 * the row points at it. A push that cannot be stored fails (the client sees an HTTP error) and
 * changes nothing.
 */
#ifndef STOCKADE_GIT_H
#define STOCKADE_GIT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "common/common.h"

struct store;
struct blob_store;
struct git_server; /* opaque */

struct git_options {
	struct store *store; /* required; the component migrates its table */
	struct blob_store *blob; /* required */
	const char *cache_dir; /* working copies; created when missing */
	const char *http_backend; /* NULL: /usr/lib/git-core/git-http-backend */
	uint64_t max_push_bytes; /* 0: 512 MiB */
	unsigned lease_wait_ms; /* how long a push waits for another push; 0: 20000 */
};

int git_server_open(const struct git_options *opts, struct git_server **out, struct st_error **err);
void git_server_close(struct git_server *g);
const struct git_options *git_server_options(const struct git_server *g);

/* 1-100 characters of [A-Za-z0-9._-], starting with a letter or digit, not ending in ".git"
   or ".lock", no "..". */
bool git_repo_name_valid(const char *name);

/* {name, description, generation, sizeBytes, createdAt, updatedAt, createdBy} */
int git_repo_create(struct git_server *g, const char *name, const char *description,
                    const char *created_by, json_t **out, struct st_error **err); /* -EEXIST */
int git_repo_get(struct git_server *g, const char *name, json_t **out,
                 struct st_error **err); /* -ENOENT */
int git_repo_list(struct git_server *g, json_t **out, struct st_error **err);
/* The branches as stored: [{name, commit}] sorted by name, and HEAD's branch ("main"). */
int git_repo_branches(struct git_server *g, const char *name, json_t **branches,
                      char **default_branch, struct st_error **err);
int git_repo_delete(struct git_server *g, const char *name, struct st_error **err);

/* ---- serving one smart-HTTP request ------------------------------------------------------ */

enum git_service { GIT_UPLOAD_PACK, GIT_RECEIVE_PACK };

/*
 * A request is served in three steps: git_serve_begin() takes the repository (for a push, its
 * lease first) and brings the working copy up to date;
 * the caller runs git in git_serve_path(); git_serve_end() releases it, after storing a new
 * generation when `changed` (a push that git accepted). -ENOENT: no such repository; -EBUSY:
 * another push held the lease for the whole wait.
 */
struct git_serve;
int git_serve_begin(struct git_server *g, const char *name, bool push, struct git_serve **out,
                    struct st_error **err);
/* The directory the repositories' working copies live in (GIT_PROJECT_ROOT) and the
   repository's path below it ("<name>.git"). */
const char *git_serve_root(const struct git_serve *s);
/* Store the pushed state (push only): archive, upload, move the row to the new generation.
   Returns 0 when stored or when nothing changed. */
int git_serve_commit(struct git_serve *s, struct st_error **err);
/* The generation the working copy is at (after a commit: the new one). */
int64_t git_serve_generation(const struct git_serve *s);
/* Release; a push that was not committed is rolled back (the working copy is discarded and
   rebuilt from storage on the next request). */
void git_serve_end(struct git_serve *s);

#endif
