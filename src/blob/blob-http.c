/*
 * blob-http.c - the HTTP layer the S3 and Azure backends share: one libcurl easy handle per
 * request (so a store can be used from any thread), timeouts, bounded retries with exponential
 * backoff for idempotent requests, response headers the backends need (ETag, Content-Length,
 * Last-Modified, user metadata, x-ms-error-code), capped response bodies, what a GET/HEAD
 * answer means for blob_info, and the small XML and date helpers for the few responses we read
 * (listing pages, multipart upload ids, errors).
 *
 * Retry rule: a request marked `retry` is repeated after connection failures, timeouts, resets,
 * HTTP 5xx and 429, as long as no response body byte has been handed to a file-descriptor sink
 * (a buffer sink is simply reset). Everything else is returned on the first attempt.
 */
#include <time.h>

#include "blob/blob-internal.h"

#define RESP_BODY_MAX (16u * 1024 * 1024) /* list pages are ~300 KiB; errors ~1 KiB */

struct xfer {
	CURL *h;
	const struct blob__http_req *req;
	struct blob__http_resp *resp;
	size_t sent;
	bool sink_overflow;
};

static size_t read_cb(char *dst, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t room = size * nmemb, left = x->req->body_len - x->sent;
	size_t n = left < room ? left : room;
	if (n)
		memcpy(dst, (const char *)x->req->body + x->sent, n);
	x->sent += n;
	return n;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	long code = 0;
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
	struct blob__sink *sink = x->req->sink;
	if (code >= 200 && code < 300 && sink) {
		if (sink->buf) {
			if (st_buf_append(sink->buf, data, n) < 0) {
				x->sink_overflow = true;
				return 0;
			}
		} else {
			ssize_t w = st_write_all(sink->fd, data, n);
			if (w < 0) {
				sink->failed_write = true;
				sink->write_errno = (int)-w;
				return 0;
			}
		}
		sink->written += n;
		return n;
	}
	/* Error bodies are only for messages: keep what fits, drop the rest. */
	st_buf_append_trunc(&x->resp->body, data, n);
	return n;
}

static bool hdr_is(const char *line, size_t len, const char *name, const char **value, size_t *vlen)
{
	size_t nl = strlen(name);
	if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return false;
	const char *v = line + nl + 1;
	const char *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	*value = v;
	*vlen = (size_t)(end - v);
	return true;
}

static size_t header_cb(char *line, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	struct blob__http_resp *r = x->resp;
	size_t len = size * nmemb;
	const char *v;
	size_t vl;
	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		/* A new response (after 100-continue or a retry): forget earlier headers. */
		blob_info_release(&r->meta_info);
		free(r->etag);
		r->etag = NULL;
		free(r->ms_error_code);
		r->ms_error_code = NULL;
		r->has_content_length = false;
		return len;
	}
	if (hdr_is(line, len, "etag", &v, &vl)) {
		if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
			v++;
			vl -= 2;
		}
		free(r->etag);
		r->etag = strndup(v, vl);
	} else if (hdr_is(line, len, "content-length", &v, &vl)) {
		char tmp[32];
		if (vl < sizeof(tmp)) {
			memcpy(tmp, v, vl);
			tmp[vl] = '\0';
			uint64_t n;
			if (st_parse_u64(tmp, &n) == 0) {
				r->content_length = n;
				r->has_content_length = true;
				/* Refuse an object over the caller's cap before downloading it. */
				long code = 0;
				curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
				struct blob__sink *sink = x->req->sink;
				if (code >= 200 && code < 300 && sink && sink->buf &&
				    n > sink->buf->max && strcmp(x->req->method, "HEAD") != 0) {
					x->sink_overflow = true;
					return 0;
				}
			}
		}
	} else if (hdr_is(line, len, "last-modified", &v, &vl)) {
		char tmp[64];
		if (vl < sizeof(tmp)) {
			memcpy(tmp, v, vl);
			tmp[vl] = '\0';
			r->mtime = blob__parse_time(tmp);
		}
	} else if (hdr_is(line, len, "x-ms-error-code", &v, &vl)) {
		free(r->ms_error_code);
		r->ms_error_code = strndup(v, vl);
	} else if (r->meta_prefix && len > strlen(r->meta_prefix) &&
	           strncasecmp(line, r->meta_prefix, strlen(r->meta_prefix)) == 0) {
		const char *colon = memchr(line, ':', len);
		if (colon) {
			size_t pl = strlen(r->meta_prefix);
			const char *name = line + pl;
			size_t nlen = (size_t)(colon - name);
			cleanup_free char *hname = strndup(line, (size_t)(colon - line));
			if (hname && hdr_is(line, len, hname, &v, &vl) && nlen > 0)
				blob__info_add_meta(&r->meta_info, name, nlen, v, vl);
		}
	}
	return len;
}

void blob__http_resp_release(struct blob__http_resp *r)
{
	st_buf_release(&r->body);
	free(r->etag);
	free(r->ms_error_code);
	blob_info_release(&r->meta_info);
	memset(r, 0, sizeof(*r));
}

static bool curl_retryable(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_COULDNT_RESOLVE_HOST: return true;
	default: return false;
	}
}

/* "Code: Message" from an S3/Azure error body (or the x-ms-error-code header), heap string. */
static char *error_detail(const struct blob__http_resp *r)
{
	const char *b = r->body.data ? r->body.data : "";
	const char *end = b + r->body.len;
	cleanup_free char *code = blob__xml_text(b, end, "Code");
	cleanup_free char *msg = blob__xml_text(b, end, "Message");
	if (code == NULL && r->ms_error_code)
		code = st_xstrdup(r->ms_error_code);
	if (msg) {
		/* Azure puts a RequestId/Time on extra lines: keep the first line. */
		char *nl = strchr(msg, '\n');
		if (nl)
			*nl = '\0';
	}
	if (code && msg)
		return st_xasprintf("%s: %s", code, msg);
	if (code)
		return st_xstrdup(code);
	return st_xstrdup("no error details in the response");
}

int blob__http_fail(const struct blob__http_resp *r, const char *what, struct st_error **err)
{
	cleanup_free char *d = error_detail(r);
	int code = EIO;
	if (r->status == 404)
		code = ENOENT;
	else if (r->status == 401 || r->status == 403)
		code = EACCES;
	else if (r->status == 412 || r->status == 409)
		code = EEXIST;
	st_error_make(err, 0, "%s: HTTP %ld (%s)", what, r->status, d);
	if (err && *err)
		(*err)->code = code;
	return -code;
}

int blob__http_take_info(struct blob__http_resp *resp, const struct blob__sink *sink,
                         const char *what, struct blob_info *info, struct st_error **err)
{
	if (resp->status == 404)
		return blob__fail(err, ENOENT, "no such object");
	int r = 0;
	info->size = sink ? sink->written : resp->content_length;
	if (sink && resp->has_content_length && resp->content_length != sink->written)
		r = blob__fail(err, EPROTO, "%s: got %llu of %llu bytes (truncated response)", what,
		               (unsigned long long)sink->written,
		               (unsigned long long)resp->content_length);
	info->etag = steal_pointer(&resp->etag);
	info->mtime = resp->mtime;
	info->meta = steal_pointer(&resp->meta_info.meta);
	info->n_meta = resp->meta_info.n_meta;
	resp->meta_info.n_meta = 0;
	return r;
}

int blob__http(const struct blob_store *s, const struct blob__http_req *req,
               struct blob__http_resp *resp, struct st_error **err)
{
	unsigned attempts = req->retry ? s->max_attempts : 1;
	char errbuf[CURL_ERROR_SIZE];
	CURLcode last_cc = CURLE_OK;
	cleanup_free char *userpwd = NULL;
	bool sign = req->sigv4 && !s->s3_anonymous;
	if (sign)
		userpwd = st_xasprintf("%s:%s", s->access_key_id, s->secret_access_key);
	const char *meta_prefix = resp->meta_prefix;

	for (unsigned attempt = 1;; attempt++) {
		blob__http_resp_release(resp);
		resp->meta_prefix = meta_prefix;
		st_buf_init(&resp->body, req->sink ? 64 * 1024 : RESP_BODY_MAX);
		if (req->sink && req->sink->buf)
			st_buf_reset(req->sink->buf);

		CURL *h = curl_easy_init();
		if (h == NULL)
			return blob__fail(err, ENOMEM, "%s: cannot create an HTTP handle",
			                  req->what);
		struct xfer x = {.h = h, .req = req, .resp = resp};
		errbuf[0] = '\0';
		curl_easy_setopt(h, CURLOPT_URL, req->url);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_USERAGENT, "stockade/" ST_VERSION);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, s->request_timeout_ms);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, s->low_speed_timeout_s);
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
		if (s->ca_file)
			curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
		if (req->headers)
			curl_easy_setopt(h, CURLOPT_HTTPHEADER, req->headers);
		if (sign) {
			curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s->sigv4);
			curl_easy_setopt(h, CURLOPT_USERPWD, userpwd);
		}
		if (strcmp(req->method, "HEAD") == 0) {
			curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		} else if (strcmp(req->method, "PUT") == 0) {
			curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
			curl_easy_setopt(h, CURLOPT_READDATA, &x);
			curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len);
		} else if (strcmp(req->method, "POST") == 0) {
			curl_easy_setopt(h, CURLOPT_POST, 1L);
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		} else if (strcmp(req->method, "GET") != 0) {
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
		}
		CURLcode cc = curl_easy_perform(h);
		long status = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_cleanup(h);
		resp->status = status;
		last_cc = cc;

		if (cc == CURLE_WRITE_ERROR && x.sink_overflow)
			return blob__fail(err, EFBIG,
			                  "%s: object is larger than the %zu bytes allowed",
			                  req->what, req->sink->buf->max);
		if (cc == CURLE_WRITE_ERROR && req->sink && req->sink->failed_write)
			return st_error_make(err, req->sink->write_errno,
			                     "%s: cannot write the output", req->what);
		bool transient = (cc != CURLE_OK && curl_retryable(cc)) ||
		                 (cc == CURLE_OK && (status >= 500 || status == 429));
		bool delivered = req->sink && req->sink->buf == NULL && req->sink->written > 0;
		if (cc == CURLE_OK && !transient)
			return 0;
		if (!transient || attempt >= attempts || delivered) {
			if (cc != CURLE_OK)
				return blob__fail(err,
				                  cc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : EIO,
				                  "%s: %s (after %u attempt%s)", req->what,
				                  errbuf[0] ? errbuf : curl_easy_strerror(cc),
				                  attempt, attempt == 1 ? "" : "s");
			cleanup_free char *d = error_detail(resp);
			return st_error_make(err, 0, "%s: HTTP %ld (%s) after %u attempt%s",
			                     req->what, status, d, attempt,
			                     attempt == 1 ? "" : "s");
		}
		st_log(ST_LOG_DEBUG, "%s: attempt %u failed (%s, HTTP %ld), retrying", req->what,
		       attempt, cc ? curl_easy_strerror(cc) : "server error", status);
		blob__backoff(s, attempt);
	}
	(void)last_cc;
}

char *blob__uri_encode(const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = st_xmalloc(n * 3 + 1), *o = out;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

/* ---- minimal XML -------------------------------------------------------------------------- */

/*
 * These responses are machine-generated, namespace-free in the parts we read, and contain no
 * CDATA or comments where we look; we still decode every entity form and refuse to guess: an
 * element we cannot find is reported as missing rather than half-read.
 */
static char *xml_decode(const char *p, const char *end)
{
	char *out = st_xmalloc((size_t)(end - p) + 1), *o = out;
	while (p < end) {
		if (*p != '&') {
			*o++ = *p++;
			continue;
		}
		const char *semi = memchr(p, ';', (size_t)(end - p));
		if (semi == NULL || semi - p > 10) {
			*o++ = *p++;
			continue;
		}
		size_t el = (size_t)(semi - p - 1);
		const char *e = p + 1;
		if (el == 3 && memcmp(e, "amp", 3) == 0)
			*o++ = '&';
		else if (el == 2 && memcmp(e, "lt", 2) == 0)
			*o++ = '<';
		else if (el == 2 && memcmp(e, "gt", 2) == 0)
			*o++ = '>';
		else if (el == 4 && memcmp(e, "quot", 4) == 0)
			*o++ = '"';
		else if (el == 4 && memcmp(e, "apos", 4) == 0)
			*o++ = '\'';
		else if (el >= 2 && e[0] == '#') {
			unsigned long cp = 0;
			bool hexa = (e[1] == 'x' || e[1] == 'X');
			for (const char *q = e + (hexa ? 2 : 1); q < semi; q++) {
				int d;
				if (*q >= '0' && *q <= '9')
					d = *q - '0';
				else if (hexa && *q >= 'a' && *q <= 'f')
					d = *q - 'a' + 10;
				else if (hexa && *q >= 'A' && *q <= 'F')
					d = *q - 'A' + 10;
				else {
					cp = 0x110000;
					break;
				}
				cp = cp * (hexa ? 16 : 10) + (unsigned long)d;
				if (cp > 0x10ffff)
					break;
			}
			if (cp == 0 || cp > 0x10ffff) {
				*o++ = '?';
			} else if (cp < 0x80) {
				*o++ = (char)cp;
			} else if (cp < 0x800) {
				*o++ = (char)(0xc0 | (cp >> 6));
				*o++ = (char)(0x80 | (cp & 0x3f));
			} else if (cp < 0x10000) {
				*o++ = (char)(0xe0 | (cp >> 12));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
				*o++ = (char)(0x80 | (cp & 0x3f));
			} else {
				*o++ = (char)(0xf0 | (cp >> 18));
				*o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
				*o++ = (char)(0x80 | (cp & 0x3f));
			}
		} else {
			/* Unknown entity: keep it verbatim. */
			memcpy(o, p, (size_t)(semi - p + 1));
			o += semi - p + 1;
		}
		p = semi + 1;
	}
	*o = '\0';
	return out;
}

/* Find "<tag" followed by '>', '/', or whitespace at or after p. */
static const char *find_open(const char *p, const char *end, const char *tag, bool *selfclose,
                             const char **content)
{
	size_t tl = strlen(tag);
	while (p < end) {
		const char *lt = memchr(p, '<', (size_t)(end - p));
		if (lt == NULL || (size_t)(end - lt) < tl + 2)
			return NULL;
		if (memcmp(lt + 1, tag, tl) == 0) {
			char c = lt[1 + tl];
			if (c == '>' || c == '/' || c == ' ' || c == '\t' || c == '\r' ||
			    c == '\n') {
				const char *gt = memchr(lt, '>', (size_t)(end - lt));
				if (gt == NULL)
					return NULL;
				*selfclose = gt[-1] == '/';
				*content = gt + 1;
				return lt;
			}
		}
		p = lt + 1;
	}
	return NULL;
}

bool blob__xml_next(const char **pos, const char *end, const char *tag, const char **inner,
                    const char **inner_end)
{
	bool selfclose = false;
	const char *content;
	const char *open = find_open(*pos, end, tag, &selfclose, &content);
	if (open == NULL)
		return false;
	if (selfclose) {
		*inner = *inner_end = content;
		*pos = content;
		return true;
	}
	char closing[160];
	int cl = snprintf(closing, sizeof(closing), "</%s>", tag);
	if (cl < 0 || (size_t)cl >= sizeof(closing))
		return false;
	const char *close = memmem(content, (size_t)(end - content), closing, (size_t)cl);
	if (close == NULL)
		return false;
	*inner = content;
	*inner_end = close;
	*pos = close + cl;
	return true;
}

char *blob__xml_text(const char *p, const char *end, const char *tag)
{
	const char *in, *in_end;
	if (!blob__xml_next(&p, end, tag, &in, &in_end))
		return NULL;
	return xml_decode(in, in_end);
}

int blob__list_page(const struct blob__list_format *f, const struct blob__http_resp *resp,
                    blob_list_fn fn, void *ud, struct st_error **err)
{
	const char *b = resp->body.data ? resp->body.data : "";
	const char *end = b + resp->body.len;
	if (strstr(b, f->root) == NULL)
		return blob__fail(err, EPROTO, "%s: the response is not %s %s", f->what,
		                  strchr("AEIOU", f->root[0]) ? "an" : "a", f->root);
	const char *pos = b, *in, *in_end;
	int r = 0;
	while (r == 0 && blob__xml_next(&pos, end, f->item, &in, &in_end)) {
		cleanup_free char *name = blob__xml_text(in, in_end, f->name);
		cleanup_free char *size = blob__xml_text(in, in_end, f->size);
		cleanup_free char *etag = blob__xml_text(in, in_end, f->etag);
		cleanup_free char *lm = blob__xml_text(in, in_end, f->mtime);
		uint64_t sz = 0;
		if (name == NULL || size == NULL || st_parse_u64(size, &sz) < 0)
			return blob__fail(err, EPROTO, "%s: an entry without a valid %s or %s",
			                  f->what, f->name, f->size);
		if (etag) {
			size_t el = strlen(etag);
			if (el >= 2 && etag[0] == '"' && etag[el - 1] == '"') {
				memmove(etag, etag + 1, el - 2);
				etag[el - 2] = '\0';
			}
		}
		struct blob_entry e = {
		    .key = name, .size = sz, .etag = etag, .mtime = lm ? blob__parse_time(lm) : 0};
		r = fn(&e, ud);
	}
	return r;
}

int64_t blob__parse_time(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S", &tm);
	if (end == NULL) {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	}
	if (end == NULL)
		return 0;
	return (int64_t)timegm(&tm);
}
