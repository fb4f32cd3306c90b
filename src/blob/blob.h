/*
 * blob.h - Stockade's blob (object) storage: the one public header of src/blob/.
 *
 * One interface, four backends:
 *   fs     a directory on local disk (the default): atomic writes via temp file + fsync +
 *          rename + fsync of the directory; every path resolved beneath the root; user metadata
 *          in a sidecar file.
 *   s3     Amazon S3 and S3-compatible stores, SigV4 through libcurl (CURLOPT_AWS_SIGV4),
 *          path-style or virtual-hosted addressing, custom endpoints, multipart upload above
 *          the part size.
 *   azure  Azure Blob Storage with Shared Key auth; connection strings (including Azurite's
 *          development format) or account + key; block blobs (Put Block + Put Block List) above
 *          the part size.
 *   gcs    Google Cloud Storage through its S3-interoperable XML API (HMAC keys): the s3
 *          backend with GCS defaults (endpoint https://storage.googleapis.com, region "auto").
 *
 * Keys are '/'-separated object names: 1..1024 bytes, no NUL or control characters, no leading
 * '/', no empty, "." or ".." segments (the same rule on every backend, so a key that works on
 * S3 also works on the filesystem). An optional store-wide prefix (blob_options.prefix, e.g.
 * "git/" or "snapshots/") is prepended to every key and stripped from listed keys, so several
 * subsystems can share one bucket.
 *
 * Atomicity: a reader never sees a partially written object. A put either replaces the object
 * completely or leaves the previous version (or absence) in place, including when the writer
 * crashes mid-upload.
 *
 * Faults: idempotent requests (GET, HEAD, DELETE, whole-object PUT, each part of a multipart
 * upload) are retried with exponential backoff on connection errors, timeouts, 5xx and 429;
 * after the last attempt the error names the operation, the key and the server's Code/Message.
 *
 * Threads: a struct blob_store is immutable after blob_open and may be used from several threads
 * at once (each request uses its own curl handle).
 *
 * Every function returns 0 or a negative errno-style code and fills *err (see common.h).
 * Missing objects are -ENOENT; objects larger than a caller's cap are -EFBIG.
 */
#ifndef STOCKADE_BLOB_H
#define STOCKADE_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"

#define BLOB_KEY_MAX 1024
#define BLOB_META_MAX 32 /* user metadata pairs per object */
#define BLOB_META_KEY_MAX 128 /* [a-z_][a-z0-9_]*: portable across S3 and Azure */
#define BLOB_META_TOTAL_MAX 2048 /* bytes of names + values (S3 allows 2 KiB) */
#define BLOB_PART_SIZE_DEFAULT (8u * 1024 * 1024)

enum blob_provider {
	BLOB_PROVIDER_NONE = 0,
	BLOB_PROVIDER_FS,
	BLOB_PROVIDER_S3,
	BLOB_PROVIDER_AZURE,
	BLOB_PROVIDER_GCS,
};

/*
 * How to reach a store. All strings are borrowed and copied by blob_open; NULL or "" means
 * "not set". Zero numeric fields take the defaults noted.
 */
struct blob_options {
	enum blob_provider provider;
	const char *prefix; /* prepended to every key, e.g. "git/"; NULL: none */

	struct {
		const char *path; /* root directory; created (0700) if missing */
	} fs;

	/* Used by BLOB_PROVIDER_S3 and (with GCS defaults) BLOB_PROVIDER_GCS. */
	struct {
		const char *bucket;
		const char *region; /* default "us-east-1" (GCS: "auto") */
		const char *access_key_id; /* GCS: the HMAC access id */
		const char *secret_access_key; /* GCS: the HMAC secret */
		const char *session_token; /* optional (STS) */
		const char *endpoint; /* e.g. "http://127.0.0.1:4568"; default AWS (GCS: Google) */
		bool force_path_style; /* endpoint/bucket/key instead of bucket.endpoint/key;
		                          always used for IP-address and localhost endpoints */
	} s3;

	struct {
		/* Either a connection string
		 * ("DefaultEndpointsProtocol=http;AccountName=..;AccountKey=..;BlobEndpoint=..;")
		 * or account + account_key (+ endpoint). Explicit fields override the string. */
		const char *connection_string;
		const char *account;
		const char *account_key; /* base64, as Azure shows it */
		const char *container;
		const char *endpoint; /* default https://<account>.blob.core.windows.net */
	} azure;

	unsigned max_attempts; /* per idempotent request, including the first; default 4 */
	unsigned backoff_ms; /* first retry delay, doubled each time (with jitter); default 200 */
	long connect_timeout_ms; /* default 5000 */
	long request_timeout_ms; /* whole request incl. body transfer; default 300000 */
	long
	    low_speed_timeout_s; /* abort a transfer slower than 1 KiB/s for this long; default 30 */
	size_t part_size; /* multipart / block size; default 8 MiB; S3 minimum 5 MiB */
	unsigned list_page_size; /* objects per list request (1..1000); default 1000 */
	const char *ca_file; /* extra CA bundle for https endpoints; NULL: system default */
};

/* A user metadata pair (x-amz-meta-<name>, x-ms-meta-<name>, sidecar on fs). */
struct blob_meta {
	const char *name; /* [a-z_][a-z0-9_]*, 1..BLOB_META_KEY_MAX (Azure: C# identifiers) */
	const char *value; /* printable ASCII (0x20..0x7e) */
};

struct blob_info_meta {
	char *name;
	char *value;
};

/* What blob_stat / blob_get report about an object. Owned; free with blob_info_release. */
struct blob_info {
	uint64_t size;
	char *etag; /* quotes stripped; NULL when the backend has none */
	int64_t mtime; /* seconds since the epoch; 0 if unknown */
	struct blob_info_meta *meta; /* user metadata, names lowercase */
	size_t n_meta;
};

void blob_info_release(struct blob_info *info);
/* The value of metadata `name` in info, or NULL. */
const char *blob_info_meta(const struct blob_info *info, const char *name);

/* One listed object; valid only during the callback. */
struct blob_entry {
	const char *key; /* without the store prefix */
	uint64_t size;
	const char *etag; /* may be NULL */
	int64_t mtime; /* 0 if unknown */
};

/* Return 0 to continue, non-zero to stop the listing (blob_list then returns that value). */
typedef int (*blob_list_fn)(const struct blob_entry *entry, void *userdata);

struct blob_store; /* opaque */

/* ---- lifecycle ------------------------------------------------------------------------- */

/* Validate options, copy them and (fs) create the root. No network traffic. */
int blob_open(const struct blob_options *opts, struct blob_store **out, struct st_error **err);
void blob_close(struct blob_store *store);
enum blob_provider blob_store_provider(const struct blob_store *store);

const char *blob_provider_name(enum blob_provider p); /* "fs", "s3", "azure", "gcs", "none" */
/* "fs"/"filesystem", "s3", "azure", "gcs" -> provider; -EINVAL otherwise. */
int blob_provider_parse(const char *name, enum blob_provider *out);

/*
 * Fill opts from environment variables <prefix>_BUCKET, _REGION, _ACCESS_KEY_ID,
 * _SECRET_ACCESS_KEY, _SESSION_TOKEN, _ENDPOINT, _FORCE_PATH_STYLE ("true"/"1"), each falling
 * back to <fallback>_<same> (e.g. prefix "RR_GIT_S3", fallback "RR_DEFAULT_S3"; fallback may be
 * NULL). Sets provider to S3 when a bucket is found and returns 1; returns 0 (opts untouched)
 * when neither names a bucket. String fields point into the environment.
 */
int blob_options_from_env(struct blob_options *opts, const char *prefix, const char *fallback,
                          struct st_error **err);

/*
 * From a resolved configuration destination (config.h: cfg.rr.git_blob, cfg.rr.snapshots_blob
 * or cfg.rr.blob_storage), any provider. Strings are borrowed from cb (blob_open copies them).
 */
struct config_blob;
int blob_options_from_config(struct blob_options *opts, const struct config_blob *cb,
                             struct st_error **err);
/* blob_options_from_config + blob_open; the message names where the settings came from. */
int blob_open_config(const struct config_blob *cb, struct blob_store **out, struct st_error **err);

/* 0 when key is acceptable (see the key rule above), else -EINVAL with a message. */
int blob_key_check(const char *key, struct st_error **err);

/*
 * Create the bucket (S3/GCS) or container (Azure) if it does not exist; nothing on fs.
 * For development and tests (Azurite, s3rver); production buckets are provisioned outside.
 */
int blob_create_bucket(struct blob_store *store, struct st_error **err);

/* ---- objects --------------------------------------------------------------------------- */

/* Store data[0..len) under key, replacing any previous object, with optional metadata. */
int blob_put(struct blob_store *store, const char *key, const void *data, size_t len,
             const struct blob_meta *meta, size_t n_meta, struct st_error **err);
/*
 * Stream fd (read to EOF from its current offset) into key. Any size: above part_size the
 * object is uploaded in parts (S3 multipart, Azure block list) and committed at the end, so an
 * interrupted upload leaves no object. Works with pipes; a regular file is not buffered whole.
 */
int blob_put_fd(struct blob_store *store, const char *key, int fd, const struct blob_meta *meta,
                size_t n_meta, struct st_error **err);
int blob_put_file(struct blob_store *store, const char *key, const char *path,
                  const struct blob_meta *meta, size_t n_meta, struct st_error **err);

/*
 * Read key into a NUL-terminated heap buffer (*data, *len); -EFBIG when larger than max.
 * info (may be NULL) receives size, etag and metadata.
 */
int blob_get(struct blob_store *store, const char *key, size_t max, char **data, size_t *len,
             struct blob_info *info, struct st_error **err);
/* Stream key into fd (written at its current offset). info may be NULL. */
int blob_get_to_fd(struct blob_store *store, const char *key, int fd, struct blob_info *info,
                   struct st_error **err);

/* Size, etag, mtime and metadata of key; -ENOENT when absent. */
int blob_stat(struct blob_store *store, const char *key, struct blob_info *info,
              struct st_error **err);

/* Remove key. Removing an absent key succeeds (all backends), so retries are harmless. */
int blob_delete(struct blob_store *store, const char *key, struct st_error **err);

/*
 * Call fn for every object whose key starts with prefix (NULL or "": all), in ascending byte
 * order of key, following pagination (S3 continuation tokens, Azure markers) transparently.
 */
int blob_list(struct blob_store *store, const char *prefix, blob_list_fn fn, void *userdata,
              struct st_error **err);

#endif
