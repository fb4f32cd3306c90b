/*
 * blob-internal.h - what the blob front end (blob.c), the HTTP helper (blob-http.c) and the
 * backends (blob-fs.c, blob-s3.c, blob-azure.c; GCS is the s3 backend with other defaults)
 * share. Not part of the public API.
 */
#ifndef STOCKADE_BLOB_INTERNAL_H
#define STOCKADE_BLOB_INTERNAL_H

#include <curl/curl.h>

#include "blob/blob.h"

/* Immutable after blob_open: safe to share between threads. */
struct blob_store {
	enum blob_provider provider;
	char *prefix; /* "" when none */

	/* fs */
	char *fs_root;
	int fs_rootfd; /* O_PATH|O_DIRECTORY */

	/* s3 / gcs */
	char *bucket;
	char *region;
	char *access_key_id;
	char *secret_access_key;
	char *session_token;
	char *s3_base; /* scheme://host[:port] (virtual-hosted: with the bucket) */
	bool path_style;
	bool s3_anonymous; /* no credentials: unsigned requests */
	char *sigv4; /* "aws:amz:<region>:s3" */

	/* azure */
	char *az_account;
	unsigned char az_key[128];
	size_t az_key_len;
	char *az_container;
	char *az_base; /* scheme://host[:port][/account for emulator-style endpoints] */
	char *az_resource_base; /* "/<account>" + path of az_base after the host */

	unsigned max_attempts;
	unsigned backoff_ms;
	long connect_timeout_ms;
	long request_timeout_ms;
	long low_speed_timeout_s;
	size_t part_size;
	unsigned list_page_size;
	char *ca_file;
};

/* Where a get writes: a capped buffer or an fd. */
struct blob__sink {
	struct st_buf *buf; /* non-NULL: collect here (its max is the cap -> -EFBIG) */
	int fd; /* otherwise: write here */
	uint64_t written;
	bool failed_write; /* the fd write failed (not retryable) */
	int write_errno;
};

/* An error with a message of our own (no strerror suffix) that returns -code. */
int blob__fail(struct st_error **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Metadata helpers (blob.c). */
int blob__meta_check(const struct blob_meta *meta, size_t n_meta, struct st_error **err);
void blob__info_add_meta(struct blob_info *info, const char *name, size_t name_len,
                         const char *value, size_t value_len);
char *blob__full_key(const struct blob_store *s, const char *key);
/* Sleep before attempt n (1-based retry count) with exponential backoff and jitter. */
void blob__backoff(const struct blob_store *s, unsigned retry);

/*
 * The parts of an upload (blob.c), in order: slices of at most part bytes of data, or, when
 * fd >= 0, reads of up to part bytes from fd into buf (part bytes, the caller's).
 * blob__parts_start reads the first part of a stream, so that single tells whether the whole
 * object fits one part: it is then data/len, for one plain PUT (atomic on the server).
 */
struct blob__parts {
	const char *data; /* the object, or the part last read from fd (in buf) */
	size_t len;
	bool single; /* the whole object is data/len */
	/* the walk's own state */
	int fd;
	char *buf;
	size_t part, off;
};
int blob__parts_start(struct blob__parts *p, const void *data, size_t len, int fd, char *buf,
                      size_t part, struct st_error **err);
/* The next part in [*chunk, *chunk + *chunk_len): 1, or 0 after the last, or a negative code. */
int blob__parts_next(struct blob__parts *p, const char **chunk, size_t *chunk_len,
                     struct st_error **err);

/* ---- HTTP (blob-http.c) ---------------------------------------------------------------- */

struct blob__http_req {
	const char *method; /* GET HEAD PUT POST DELETE */
	const char *url;
	struct curl_slist *headers; /* borrowed */
	const void *body; /* request body (may be NULL with body_len 0) */
	size_t body_len;
	bool sigv4; /* sign with the store's S3 credentials */
	bool retry; /* idempotent: retry on transient failures */
	struct blob__sink *sink; /* 2xx response body goes here; NULL: into resp.body (capped) */
	const char *what; /* for messages: "put 'key'" */
};

struct blob__http_resp {
	long status;
	struct st_buf body; /* non-2xx bodies and small 2xx bodies (XML), capped */
	uint64_t content_length;
	bool has_content_length;
	char *etag;
	int64_t mtime;
	char *ms_error_code; /* x-ms-error-code */
	struct blob_info meta_info; /* x-amz-meta-* / x-ms-meta-* collected here */
	const char *meta_prefix; /* "x-amz-meta-" or "x-ms-meta-" */
};

void blob__http_resp_release(struct blob__http_resp *r);
/*
 * Perform the request with retries. Returns 0 when a response arrived (any status; the caller
 * inspects resp->status), or a negative code with *err set when the transfer failed after all
 * attempts (or a 5xx/429 persisted: then status is set too and 0 is NOT returned).
 */
int blob__http(const struct blob_store *s, const struct blob__http_req *req,
               struct blob__http_resp *resp, struct st_error **err);
/* Turn a non-2xx response into an error naming what failed and the server's Code/Message;
 * returns -ENOENT (404), -EACCES (401/403), -EEXIST (409/412) or -EIO. */
int blob__http_fail(const struct blob__http_resp *r, const char *what, struct st_error **err);
/*
 * The answer to a GET or HEAD of an object whose status is 2xx or 404: 404 is -ENOENT "no such
 * object"; otherwise info gets the size (what the sink received, or Content-Length for a HEAD),
 * ETag, Last-Modified and user metadata (moved out of resp), and a body shorter than its
 * Content-Length is an error naming what.
 */
int blob__http_take_info(struct blob__http_resp *resp, const struct blob__sink *sink,
                         const char *what, struct blob_info *info, struct st_error **err);
/* Percent-encode for a URL path (keep '/' when keep_slash) or query value. Heap string. */
char *blob__uri_encode(const char *s, bool keep_slash);

/* Minimal XML: the decoded text of the first <tag>...</tag> within [p, end), or NULL. */
char *blob__xml_text(const char *p, const char *end, const char *tag);
/* Find the next element <tag ...>...</tag> from *pos; sets [*inner, *inner_end) and advances. */
bool blob__xml_next(const char **pos, const char *end, const char *tag, const char **inner,
                    const char **inner_end);
/* HTTP date (RFC 1123) or ISO 8601 -> epoch seconds; 0 when unparsable. */
int64_t blob__parse_time(const char *s);

/* How a listing page names its parts (S3 ListObjectsV2, Azure List Blobs). */
struct blob__list_format {
	const char *what; /* the operation, for messages: "ListObjectsV2" */
	const char *root; /* the element that makes the body a listing: "ListBucketResult" */
	const char *item; /* one object: "Contents" */
	const char *name, *size, *etag, *mtime; /* its children: "Key", "Size", ... */
};
/*
 * Call fn for each object of one listing page in resp->body, in order; returns the first
 * non-zero value fn returns, 0, or -EPROTO when the body is not a listing or an object has no
 * valid name or size. The continuation token is the caller's to read.
 */
int blob__list_page(const struct blob__list_format *f, const struct blob__http_resp *resp,
                    blob_list_fn fn, void *ud, struct st_error **err);
/* The backends' listing formats (blob-s3.c: ListObjectsV2; blob-azure.c: List Blobs). */
extern const struct blob__list_format blob__s3_list_format, blob__az_list_format;

/* ---- backends ---------------------------------------------------------------------------- */

int blob__fs_open(struct blob_store *s, struct st_error **err);
int blob__fs_put(struct blob_store *s, const char *key, const void *data, size_t len, int fd,
                 const struct blob_meta *meta, size_t n_meta, struct st_error **err);
int blob__fs_get(struct blob_store *s, const char *key, struct blob__sink *sink,
                 struct blob_info *info, struct st_error **err);
int blob__fs_delete(struct blob_store *s, const char *key, struct st_error **err);
int blob__fs_list(struct blob_store *s, const char *prefix, blob_list_fn fn, void *ud,
                  struct st_error **err);

/* data/len used when fd < 0; otherwise fd is read to EOF. */
int blob__s3_put(struct blob_store *s, const char *key, const void *data, size_t len, int fd,
                 const struct blob_meta *meta, size_t n_meta, struct st_error **err);
/* sink NULL: HEAD only. */
int blob__s3_get(struct blob_store *s, const char *key, struct blob__sink *sink,
                 struct blob_info *info, struct st_error **err);
int blob__s3_delete(struct blob_store *s, const char *key, struct st_error **err);
int blob__s3_list(struct blob_store *s, const char *prefix, blob_list_fn fn, void *ud,
                  struct st_error **err);
int blob__s3_create_bucket(struct blob_store *s, struct st_error **err);

int blob__az_open(struct blob_store *s, const struct blob_options *o, struct st_error **err);
int blob__az_put(struct blob_store *s, const char *key, const void *data, size_t len, int fd,
                 const struct blob_meta *meta, size_t n_meta, struct st_error **err);
int blob__az_get(struct blob_store *s, const char *key, struct blob__sink *sink,
                 struct blob_info *info, struct st_error **err);
int blob__az_delete(struct blob_store *s, const char *key, struct st_error **err);
int blob__az_list(struct blob_store *s, const char *prefix, blob_list_fn fn, void *ud,
                  struct st_error **err);
int blob__az_create_container(struct blob_store *s, struct st_error **err);

#endif
