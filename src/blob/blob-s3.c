/*
 * blob-s3.c - the S3 backend (and GCS through its S3-interoperable XML API).
 *
 * Requests are signed by libcurl (CURLOPT_AWS_SIGV4 "aws:amz:<region>:s3"). We send the real
 * SHA-256 of every body in x-amz-content-sha256 (bodies are at most one part, in memory), so the
 * signature also covers the payload, even over plain http. URLs are built already in canonical
 * form - path segments percent-encoded the way SigV4 canonicalises them, query parameters sorted
 * and encoded - because the signer uses the URL as given.
 *
 * Uploads: an object smaller than part_size is one PUT (atomic on the server). Larger ones and
 * streams use multipart upload: CreateMultipartUpload, UploadPart (each retried on its own,
 * from the in-memory part), CompleteMultipartUpload; on any failure AbortMultipartUpload, so no
 * object appears unless the complete succeeded. A complete that is retried after an ambiguous
 * failure and then reports NoSuchUpload is accepted if the object now exists with the expected
 * size (the first attempt committed it).
 */
#include <openssl/evp.h>

#include "blob/blob-internal.h"

#define S3_MAX_PARTS 10000
#define S3_MIN_PART (5u * 1024 * 1024)

static void sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + i * 2, 3, "%02x", md[i]);
}

static char *object_url(const struct blob_store *s, const char *key, const char *query)
{
	cleanup_free char *ek = blob__uri_encode(key, true);
	if (s->path_style)
		return st_xasprintf("%s/%s/%s%s%s", s->s3_base, s->bucket, ek, query ? "?" : "",
		                    query ? query : "");
	return st_xasprintf("%s/%s%s%s", s->s3_base, ek, query ? "?" : "", query ? query : "");
}

static char *bucket_url(const struct blob_store *s, const char *query)
{
	if (s->path_style)
		return st_xasprintf("%s/%s%s%s", s->s3_base, s->bucket, query ? "?" : "",
		                    query ? query : "");
	return st_xasprintf("%s/%s%s", s->s3_base, query ? "?" : "", query ? query : "");
}

/* Common headers: payload hash, session token, and the caller's extras. */
static struct curl_slist *base_headers(const struct blob_store *s, const void *body, size_t len)
{
	char hex[65];
	sha256_hex(body ? body : "", len, hex);
	struct curl_slist *h = NULL;
	char line[128];
	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", hex);
	h = curl_slist_append(h, line);
	if (s->session_token) {
		cleanup_free char *t = st_xasprintf("x-amz-security-token: %s", s->session_token);
		h = curl_slist_append(h, t);
	}
	/* No "Expect:" override here: curl 7.88's signer would sign the empty header it then
	 * leaves out, and the server would reject the signature. */
	return h;
}

static struct curl_slist *add_meta(struct curl_slist *h, const struct blob_meta *meta,
                                   size_t n_meta)
{
	for (size_t i = 0; i < n_meta; i++) {
		cleanup_free char *l = st_xasprintf("x-amz-meta-%s: %s", meta[i].name,
		                                    meta[i].value ? meta[i].value : "");
		h = curl_slist_append(h, l);
	}
	return h;
}

#define S3_ANY_STATUS (-1L) /* allowed_status: the caller judges the status */

/*
 * One signed, retried request: the common headers, Content-Type when given and the user
 * metadata. A non-2xx status other than allowed_status becomes an error naming what.
 */
static int s3_request(struct blob_store *s, const char *method, const char *url,
                      const char *content_type, const struct blob_meta *meta, size_t n_meta,
                      const void *body, size_t body_len, struct blob__sink *sink,
                      long allowed_status, const char *what, struct blob__http_resp *resp,
                      struct st_error **err)
{
	struct curl_slist *h = base_headers(s, body, body_len);
	if (content_type) {
		cleanup_free char *ct = st_xasprintf("Content-Type: %s", content_type);
		h = curl_slist_append(h, ct);
	}
	h = add_meta(h, meta, n_meta);
	struct blob__http_req req = {.method = method,
	                             .url = url,
	                             .headers = h,
	                             .body = body,
	                             .body_len = body_len,
	                             .sigv4 = true,
	                             .retry = true,
	                             .sink = sink,
	                             .what = what};
	int r = blob__http(s, &req, resp, err);
	curl_slist_free_all(h);
	if (r == 0 && allowed_status != S3_ANY_STATUS && resp->status != allowed_status &&
	    (resp->status < 200 || resp->status >= 300))
		r = blob__http_fail(resp, what, err);
	return r;
}

static int put_single(struct blob_store *s, const char *key, const void *data, size_t len,
                      const struct blob_meta *meta, size_t n_meta, struct st_error **err)
{
	cleanup_free char *url = object_url(s, key, NULL);
	struct blob__http_resp resp = {0};
	int r = s3_request(s, "PUT", url, "application/octet-stream", meta, n_meta, data, len, NULL,
	                   0, "PUT object", &resp, err);
	blob__http_resp_release(&resp);
	return r;
}

struct mpu {
	char *upload_id;
	char **etags;
	size_t n_parts, cap;
	uint64_t total;
};

static void mpu_release(struct mpu *m)
{
	for (size_t i = 0; i < m->n_parts; i++)
		free(m->etags[i]);
	free(m->etags);
	free(m->upload_id);
}

static int mpu_create(struct blob_store *s, const char *key, const struct blob_meta *meta,
                      size_t n_meta, struct mpu *m, struct st_error **err)
{
	cleanup_free char *url = object_url(s, key, "uploads=");
	/* Retrying a create at worst leaves an unused upload behind (lifecycle rules reap those),
	 * never a visible object. */
	struct blob__http_resp resp = {0};
	int r = s3_request(s, "POST", url, "application/octet-stream", meta, n_meta, NULL, 0, NULL,
	                   0, "CreateMultipartUpload", &resp, err);
	if (r == 0) {
		const char *b = resp.body.data ? resp.body.data : "";
		m->upload_id = blob__xml_text(b, b + resp.body.len, "UploadId");
		if (m->upload_id == NULL || *m->upload_id == '\0')
			r = blob__fail(err, EPROTO,
			               "CreateMultipartUpload: no UploadId in the response");
	}
	blob__http_resp_release(&resp);
	return r;
}

static int mpu_part(struct blob_store *s, const char *key, struct mpu *m, const void *data,
                    size_t len, struct st_error **err)
{
	if (m->n_parts >= S3_MAX_PARTS)
		return blob__fail(err, EFBIG,
		                  "object needs more than %d parts: raise the part size",
		                  S3_MAX_PARTS);
	cleanup_free char *eid = blob__uri_encode(m->upload_id, false);
	cleanup_free char *q = st_xasprintf("partNumber=%zu&uploadId=%s", m->n_parts + 1, eid);
	cleanup_free char *url = object_url(s, key, q);
	cleanup_free char *what = st_xasprintf("UploadPart %zu", m->n_parts + 1);
	struct blob__http_resp resp = {0};
	int r = s3_request(s, "PUT", url, NULL, NULL, 0, data, len, NULL, 0, what, &resp, err);
	if (r == 0 && resp.etag == NULL)
		r = blob__fail(err, EPROTO, "%s: no ETag in the response", what);
	if (r == 0) {
		if (m->n_parts == m->cap) {
			m->cap = m->cap ? m->cap * 2 : 16;
			m->etags = realloc(m->etags, m->cap * sizeof(*m->etags));
			if (m->etags == NULL)
				abort();
		}
		m->etags[m->n_parts++] = steal_pointer(&resp.etag);
		m->total += len;
	}
	blob__http_resp_release(&resp);
	return r;
}

static void mpu_abort(struct blob_store *s, const char *key, struct mpu *m)
{
	if (m->upload_id == NULL)
		return;
	cleanup_free char *eid = blob__uri_encode(m->upload_id, false);
	cleanup_free char *q = st_xasprintf("uploadId=%s", eid);
	cleanup_free char *url = object_url(s, key, q);
	struct blob__http_resp resp = {0};
	struct st_error *e = NULL;
	if (s3_request(s, "DELETE", url, NULL, NULL, 0, NULL, 0, NULL, S3_ANY_STATUS,
	               "AbortMultipartUpload", &resp, &e) < 0 ||
	    resp.status >= 300)
		st_log(ST_LOG_WARN,
		       "cannot abort multipart upload of '%s' (%s); a bucket lifecycle "
		       "rule for incomplete uploads will reclaim it",
		       key, e ? st_error_msg(e) : "server refused");
	st_error_free(e);
	blob__http_resp_release(&resp);
}

static int mpu_complete(struct blob_store *s, const char *key, struct mpu *m, struct st_error **err)
{
	struct st_buf body;
	st_buf_init(&body, 4u * 1024 * 1024); /* 10000 parts of ~80 bytes fit */
	st_buf_appendf(&body, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < m->n_parts; i++)
		st_buf_appendf(&body,
		               "<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>",
		               i + 1, m->etags[i]);
	st_buf_appendf(&body, "</CompleteMultipartUpload>");
	cleanup_free char *eid = blob__uri_encode(m->upload_id, false);
	cleanup_free char *q = st_xasprintf("uploadId=%s", eid);
	cleanup_free char *url = object_url(s, key, q);
	struct curl_slist *h = base_headers(s, body.data, body.len);
	h = curl_slist_append(h, "Content-Type: application/xml");
	int r = 0;
	for (unsigned attempt = 1;; attempt++) {
		struct blob__http_req req = {.method = "POST",
		                             .url = url,
		                             .headers = h,
		                             .body = body.data,
		                             .body_len = body.len,
		                             .sigv4 = true,
		                             .retry =
		                                 false, /* retried here, with the check below */
		                             .what = "CompleteMultipartUpload"};
		struct blob__http_resp resp = {0};
		struct st_error *e = NULL;
		r = blob__http(s, &req, &resp, &e);
		const char *b = resp.body.data ? resp.body.data : "";
		bool transient = r < 0 || resp.status >= 500 || resp.status == 429 ||
		                 /* S3 may answer 200 and report an error in the body */
		                 (resp.status == 200 && strstr(b, "<Error>") != NULL);
		if (r == 0 && resp.status == 404 && attempt > 1) {
			/* NoSuchUpload on a retry: did the first attempt commit? */
			struct blob_info info = {0};
			struct st_error *e2 = NULL;
			int r2 = blob__s3_get(s, key, NULL, &info, &e2);
			bool ok = r2 == 0 && info.size == m->total;
			blob_info_release(&info);
			st_error_free(e2);
			if (ok) {
				st_error_free(e);
				blob__http_resp_release(&resp);
				r = 0;
				break;
			}
		}
		if (!transient && r == 0 && resp.status >= 200 && resp.status < 300) {
			blob__http_resp_release(&resp);
			break;
		}
		if (!transient || attempt >= s->max_attempts) {
			if (r == 0)
				r = blob__http_fail(&resp, "CompleteMultipartUpload", err);
			else if (err && *err == NULL)
				*err = steal_pointer(&e);
			st_error_free(e);
			blob__http_resp_release(&resp);
			break;
		}
		st_error_free(e);
		blob__http_resp_release(&resp);
		blob__backoff(s, attempt);
	}
	curl_slist_free_all(h);
	st_buf_release(&body);
	return r;
}

int blob__s3_put(struct blob_store *s, const char *key, const void *data, size_t len, int fd,
                 const struct blob_meta *meta, size_t n_meta, struct st_error **err)
{
	size_t part = s->part_size;
	if (part < S3_MIN_PART && fd >= 0)
		part = S3_MIN_PART; /* the S3 minimum for all but the last part */
	cleanup_free char *buf = fd >= 0 ? st_xmalloc(part) : NULL;
	struct blob__parts p;
	int r = blob__parts_start(&p, data, len, fd, buf, part, err);
	if (r < 0)
		return r;
	if (p.single)
		return put_single(s, key, p.data, p.len, meta, n_meta, err);
	struct mpu m = {0};
	r = mpu_create(s, key, meta, n_meta, &m, err);
	if (r < 0) {
		mpu_release(&m);
		return r;
	}
	const char *chunk;
	size_t clen;
	while ((r = blob__parts_next(&p, &chunk, &clen, err)) > 0) {
		r = mpu_part(s, key, &m, chunk, clen, err);
		if (r < 0)
			break;
	}
	if (r == 0)
		r = mpu_complete(s, key, &m, err);
	if (r < 0)
		mpu_abort(s, key, &m);
	mpu_release(&m);
	return r;
}

int blob__s3_get(struct blob_store *s, const char *key, struct blob__sink *sink,
                 struct blob_info *info, struct st_error **err)
{
	cleanup_free char *url = object_url(s, key, NULL);
	const char *what = sink ? "GET object" : "HEAD object";
	struct blob__http_resp resp = {.meta_prefix = "x-amz-meta-"};
	int r = s3_request(s, sink ? "GET" : "HEAD", url, NULL, NULL, 0, NULL, 0, sink, 404, what,
	                   &resp, err);
	if (r == 0)
		r = blob__http_take_info(&resp, sink, what, info, err);
	blob__http_resp_release(&resp);
	return r;
}

int blob__s3_delete(struct blob_store *s, const char *key, struct st_error **err)
{
	cleanup_free char *url = object_url(s, key, NULL);
	struct blob__http_resp resp = {0};
	int r = s3_request(s, "DELETE", url, NULL, NULL, 0, NULL, 0, NULL, 404, "DELETE object",
	                   &resp, err);
	blob__http_resp_release(&resp);
	return r;
}

const struct blob__list_format blob__s3_list_format = {.what = "ListObjectsV2",
                                                       .root = "ListBucketResult",
                                                       .item = "Contents",
                                                       .name = "Key",
                                                       .size = "Size",
                                                       .etag = "ETag",
                                                       .mtime = "LastModified"};

int blob__s3_list(struct blob_store *s, const char *prefix, blob_list_fn fn, void *ud,
                  struct st_error **err)
{
	cleanup_free char *token = NULL;
	cleanup_free char *eprefix = blob__uri_encode(prefix, false);
	for (unsigned page = 0;; page++) {
		/* Parameters in canonical (sorted) order, values encoded: the signer uses them as is. */
		cleanup_free char *etoken = token ? blob__uri_encode(token, false) : NULL;
		cleanup_free char *q = st_xasprintf(
		    "%s%s%slist-type=2&max-keys=%u&prefix=%s", etoken ? "continuation-token=" : "",
		    etoken ? etoken : "", etoken ? "&" : "", s->list_page_size, eprefix);
		cleanup_free char *url = bucket_url(s, q);
		struct blob__http_resp resp = {0};
		int r = s3_request(s, "GET", url, NULL, NULL, 0, NULL, 0, NULL, 0, "ListObjectsV2",
		                   &resp, err);
		if (r == 0)
			r = blob__list_page(&blob__s3_list_format, &resp, fn, ud, err);
		if (r != 0) {
			blob__http_resp_release(&resp);
			return r;
		}
		const char *b = resp.body.data ? resp.body.data : "";
		const char *end = b + resp.body.len;
		cleanup_free char *trunc = blob__xml_text(b, end, "IsTruncated");
		free(token);
		token = blob__xml_text(b, end, "NextContinuationToken");
		blob__http_resp_release(&resp);
		if (trunc == NULL || strcmp(trunc, "true") != 0)
			return 0;
		if (token == NULL || *token == '\0')
			return blob__fail(err, EPROTO,
			                  "ListObjectsV2: truncated result without a "
			                  "NextContinuationToken");
		if (page > 1000000)
			return blob__fail(err, ELOOP, "ListObjectsV2: too many pages");
	}
}

int blob__s3_create_bucket(struct blob_store *s, struct st_error **err)
{
	cleanup_free char *url = bucket_url(s, NULL);
	cleanup_free char *body = NULL;
	if (strcmp(s->region, "us-east-1") != 0 && strcmp(s->region, "auto") != 0)
		body = st_xasprintf("<CreateBucketConfiguration><LocationConstraint>%s</"
		                    "LocationConstraint></CreateBucketConfiguration>",
		                    s->region);
	struct blob__http_resp resp = {0};
	int r = s3_request(s, "PUT", url, NULL, NULL, 0, body, body ? strlen(body) : 0, NULL, 409,
	                   "CreateBucket", &resp, err);
	if (r == 0 && resp.status == 409) {
		/* Exists: fine if it is ours (some servers say BucketAlreadyExists even then), which
		 * a one-key listing with our credentials tells (HeadBucket is not on every clone). */
		struct blob__http_resp hr = {0};
		cleanup_free char *lurl = bucket_url(s, "list-type=2&max-keys=1&prefix=");
		if (s3_request(s, "GET", lurl, NULL, NULL, 0, NULL, 0, NULL, 0, "ListObjectsV2",
		               &hr, NULL) < 0)
			r = blob__http_fail(&resp, "CreateBucket", err);
		blob__http_resp_release(&hr);
	}
	blob__http_resp_release(&resp);
	if (r < 0)
		st_error_wrap(err, "cannot create bucket '%s'", s->bucket);
	return r;
}
