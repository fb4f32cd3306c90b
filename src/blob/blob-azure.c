/*
 * blob-azure.c - the Azure Blob Storage backend (block blobs, Shared Key auth).
 *
 * Settings come from a connection string (DefaultEndpointsProtocol, AccountName, AccountKey,
 * BlobEndpoint, EndpointSuffix, or UseDevelopmentStorage=true for Azurite) and/or explicit
 * fields, which win. Requests are signed with HMAC-SHA256 (OpenSSL) over the Shared Key string
 * to sign: verb, the standard headers, the canonicalised x-ms-* headers and the canonicalised
 * resource ("/<account><encoded path>" plus the sorted query parameters).
 *
 * Uploads: up to part_size one Put Blob (atomic). Larger objects and streams: Put Block for
 * each part, then Put Block List, which is the commit: until it succeeds the blob (or its
 * previous version) is unchanged, and uncommitted blocks are discarded by the service after a
 * week. Block ids carry a random per-upload nonce so two writers of the same key never mix
 * their blocks.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <time.h>

#include "blob/blob-internal.h"

#define AZ_VERSION "2021-08-06"
#define AZ_MAX_BLOCKS 50000
#define AZURITE_ACCOUNT "devstoreaccount1"
#define AZURITE_KEY                                                                             \
	"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMG" \
	"w=="

/* ---- configuration ------------------------------------------------------------------------ */

static char *cs_get(const char *cs, const char *name)
{
	size_t nl = strlen(name);
	const char *p = cs;
	while (p && *p) {
		while (*p == ';' || *p == ' ')
			p++;
		const char *semi = strchr(p, ';');
		size_t len = semi ? (size_t)(semi - p) : strlen(p);
		if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == '=')
			return strndup(p + nl + 1, len - nl - 1);
		p = semi;
	}
	return NULL;
}

int blob__az_open(struct blob_store *s, const struct blob_options *o, struct st_error **err)
{
	const char *cs = o->azure.connection_string ? o->azure.connection_string : "";
	cleanup_free char *dev = cs_get(cs, "UseDevelopmentStorage");
	cleanup_free char *proto = cs_get(cs, "DefaultEndpointsProtocol");
	cleanup_free char *account = cs_get(cs, "AccountName");
	cleanup_free char *key = cs_get(cs, "AccountKey");
	cleanup_free char *endpoint = cs_get(cs, "BlobEndpoint");
	cleanup_free char *suffix = cs_get(cs, "EndpointSuffix");
	if (*cs && !dev && !account && !endpoint)
		return blob__fail(err, EINVAL,
		                  "invalid azure connection string: no AccountName or BlobEndpoint "
		                  "(expected 'DefaultEndpointsProtocol=https;AccountName=..;"
		                  "AccountKey=..;EndpointSuffix=core.windows.net')");
	if (dev && strcasecmp(dev, "true") == 0) {
		if (!account)
			account = st_xstrdup(AZURITE_ACCOUNT);
		if (!key)
			key = st_xstrdup(AZURITE_KEY);
		if (!endpoint)
			endpoint = st_xstrdup("http://127.0.0.1:10000/" AZURITE_ACCOUNT);
	}
	if (o->azure.account && *o->azure.account) {
		free(account);
		account = st_xstrdup(o->azure.account);
	}
	if (o->azure.account_key && *o->azure.account_key) {
		free(key);
		key = st_xstrdup(o->azure.account_key);
	}
	if (o->azure.endpoint && *o->azure.endpoint) {
		free(endpoint);
		endpoint = st_xstrdup(o->azure.endpoint);
	}
	if (account == NULL || *account == '\0')
		return blob__fail(err, EINVAL,
		                  "azure blob storage needs an account name (AccountName in the "
		                  "connection string, or account)");
	for (const char *p = account; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			return blob__fail(
			    err, EINVAL,
			    "invalid azure account name '%s': lowercase letters and digits "
			    "only",
			    account);
	if (key == NULL || *key == '\0')
		return blob__fail(err, EINVAL,
		                  "azure blob storage needs an account key (AccountKey in the "
		                  "connection string, or accountKey)");
	size_t kl = strlen(key);
	if (kl % 4 != 0 || kl / 4 * 3 > sizeof(s->az_key))
		return blob__fail(
		    err, EINVAL,
		    "invalid azure account key: it must be the base64 key shown in the "
		    "portal");
	int dl = EVP_DecodeBlock(s->az_key, (const unsigned char *)key, (int)kl);
	if (dl < 0)
		return blob__fail(err, EINVAL,
		                  "invalid azure account key: it is not valid base64 (copy it from "
		                  "the portal's Access keys page)");
	if (kl >= 1 && key[kl - 1] == '=')
		dl--;
	if (kl >= 2 && key[kl - 2] == '=')
		dl--;
	s->az_key_len = (size_t)dl;
	explicit_bzero(key, kl);

	const char *c = o->azure.container;
	if (c == NULL || *c == '\0')
		return blob__fail(err, EINVAL, "azure blob storage needs a container name");
	size_t cl = strlen(c);
	bool bad = cl < 3 || cl > 63 || c[0] == '-' || c[cl - 1] == '-';
	for (size_t i = 0; i < cl && !bad; i++)
		bad = !((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= '0' && c[i] <= '9') ||
		        (c[i] == '-' && c[i + 1] != '-'));
	if (bad)
		return blob__fail(err, EINVAL,
		                  "invalid azure container name '%s': 3 to 63 lowercase letters, "
		                  "digits and single '-'",
		                  c);
	s->az_container = st_xstrdup(c);
	s->az_account = steal_pointer(&account);

	if (endpoint == NULL)
		endpoint = st_xasprintf("%s://%s.blob.%s", proto ? proto : "https", s->az_account,
		                        suffix ? suffix : "core.windows.net");
	size_t el = strlen(endpoint);
	while (el > 0 && endpoint[el - 1] == '/')
		endpoint[--el] = '\0';
	if (!st_str_has_prefix(endpoint, "http://") && !st_str_has_prefix(endpoint, "https://"))
		return blob__fail(
		    err, EINVAL,
		    "invalid azure endpoint '%s': it must start with http:// or https://",
		    endpoint);
	const char *host = strstr(endpoint, "://") + 3;
	const char *path = strchr(host, '/');
	s->az_resource_base = st_xasprintf("/%s%s", s->az_account, path ? path : "");
	s->az_base = steal_pointer(&endpoint);
	return 0;
}

/* ---- signing ------------------------------------------------------------------------------ */

struct az_query {
	const char *name;
	const char *value; /* decoded */
};

static int az_query_cmp(const void *a, const void *b)
{
	return strcmp(((const struct az_query *)a)->name, ((const struct az_query *)b)->name);
}

static int hdr_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Build the request: URL, and a header list with x-ms-date, x-ms-version, the caller's x-ms-*
 * headers, Content-Type and the Authorization header. path is the encoded path after the
 * container ("" for container-level requests, else "/<encoded key>").
 */
static struct curl_slist *az_prepare(const struct blob_store *s, const char *method,
                                     const char *path, struct az_query *q, size_t nq, char **xms,
                                     size_t nxms, const char *content_type, size_t content_length,
                                     char **url_out)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);

	/* x-ms-* headers: lowercase names, sorted, "name:value". */
	size_t nh = nxms + 2;
	char **hs = st_xcalloc(nh, sizeof(char *));
	hs[0] = st_xasprintf("x-ms-date:%s", date);
	hs[1] = st_xstrdup("x-ms-version:" AZ_VERSION);
	for (size_t i = 0; i < nxms; i++)
		hs[2 + i] = st_xstrdup(xms[i]);
	qsort(hs, nh, sizeof(char *), hdr_cmp);
	if (nq > 0)
		qsort(q, nq, sizeof(*q), az_query_cmp);

	struct st_buf sts;
	st_buf_init(&sts, 64 * 1024);
	char cl[32] = "";
	if (content_length > 0)
		snprintf(cl, sizeof(cl), "%zu", content_length);
	st_buf_appendf(&sts, "%s\n\n\n%s\n\n%s\n\n\n\n\n\n\n", method, cl,
	               content_type ? content_type : "");
	for (size_t i = 0; i < nh; i++)
		st_buf_appendf(&sts, "%s\n", hs[i]);
	st_buf_appendf(&sts, "%s/%s%s", s->az_resource_base, s->az_container, path);
	for (size_t i = 0; i < nq; i++)
		st_buf_appendf(&sts, "\n%s:%s", q[i].name, q[i].value);

	unsigned char mac[32];
	unsigned int maclen = 0;
	HMAC(EVP_sha256(), s->az_key, (int)s->az_key_len, (const unsigned char *)sts.data, sts.len,
	     mac, &maclen);
	st_buf_release(&sts);
	char sig[64];
	EVP_EncodeBlock((unsigned char *)sig, mac, (int)maclen);

	struct curl_slist *h = NULL;
	for (size_t i = 0; i < nh; i++) {
		char *colon = strchr(hs[i], ':');
		cleanup_free char *line =
		    st_xasprintf("%.*s: %s", (int)(colon - hs[i]), hs[i], colon + 1);
		h = curl_slist_append(h, line);
		free(hs[i]);
	}
	free(hs);
	if (content_type) {
		cleanup_free char *ct = st_xasprintf("Content-Type: %s", content_type);
		h = curl_slist_append(h, ct);
	}
	cleanup_free char *auth =
	    st_xasprintf("Authorization: SharedKey %s:%s", s->az_account, sig);
	h = curl_slist_append(h, auth);
	h = curl_slist_append(h, "Expect:");

	struct st_buf url;
	st_buf_init(&url, 64 * 1024);
	st_buf_appendf(&url, "%s/%s%s", s->az_base, s->az_container, path);
	for (size_t i = 0; i < nq; i++) {
		cleanup_free char *ev = blob__uri_encode(q[i].value, false);
		st_buf_appendf(&url, "%c%s=%s", i == 0 ? '?' : '&', q[i].name, ev);
	}
	*url_out = st_buf_steal(&url);
	return h;
}

static char **meta_headers(const struct blob_meta *meta, size_t n_meta, size_t extra)
{
	char **x = st_xcalloc(n_meta + extra + 1, sizeof(char *));
	for (size_t i = 0; i < n_meta; i++)
		x[i] = st_xasprintf("x-ms-meta-%s:%s", meta[i].name,
		                    meta[i].value ? meta[i].value : "");
	return x;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* One signed request; non-2xx statuses other than allowed_status become errors. */
static int az_request(struct blob_store *s, const char *method, const char *path,
                      struct az_query *q, size_t nq, char **xms, size_t nxms,
                      const char *content_type, const void *body, size_t body_len,
                      struct blob__sink *sink, long allowed_status, const char *what,
                      struct blob__http_resp *resp, struct st_error **err)
{
	cleanup_free char *url = NULL;
	struct curl_slist *h =
	    az_prepare(s, method, path, q, nq, xms, nxms, content_type, body_len, &url);
	struct blob__http_req req = {.method = method,
	                             .url = url,
	                             .headers = h,
	                             .body = body,
	                             .body_len = body_len,
	                             .retry = true,
	                             .sink = sink,
	                             .what = what};
	int r = blob__http(s, &req, resp, err);
	curl_slist_free_all(h);
	if (r == 0 && resp->status != allowed_status && (resp->status < 200 || resp->status >= 300))
		r = blob__http_fail(resp, what, err);
	return r;
}

/* ---- operations --------------------------------------------------------------------------- */

int blob__az_put(struct blob_store *s, const char *key, const void *data, size_t len, int fd,
                 const struct blob_meta *meta, size_t n_meta, struct st_error **err)
{
	cleanup_free char *ek = blob__uri_encode(key, true);
	cleanup_free char *path = st_xasprintf("/%s", ek);
	size_t part = s->part_size;
	cleanup_free char *buf = fd >= 0 ? st_xmalloc(part) : NULL;
	struct blob__parts p;
	int r = blob__parts_start(&p, data, len, fd, buf, part, err);
	if (r < 0)
		return r;
	if (p.single) {
		char **x = meta_headers(meta, n_meta, 1);
		x[n_meta] = st_xstrdup("x-ms-blob-type:BlockBlob");
		struct blob__http_resp resp = {0};
		r = az_request(s, "PUT", path, NULL, 0, x, n_meta + 1, "application/octet-stream",
		               p.data, p.len, NULL, 0, "Put Blob", &resp, err);
		free_strv(x, n_meta + 1);
		blob__http_resp_release(&resp);
		return r;
	}

	unsigned char nonce[8];
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return blob__fail(err, EIO, "cannot generate a block id nonce");
	char **ids = NULL;
	size_t n_ids = 0, cap = 0;
	const char *chunk;
	size_t clen;
	while ((r = blob__parts_next(&p, &chunk, &clen, err)) > 0) {
		if (n_ids >= AZ_MAX_BLOCKS) {
			r = blob__fail(err, EFBIG,
			               "object needs more than %d blocks: raise the part size",
			               AZ_MAX_BLOCKS);
			break;
		}
		char raw[48];
		snprintf(raw, sizeof(raw), "stk-%02x%02x%02x%02x%02x%02x%02x%02x-%06zu", nonce[0],
		         nonce[1], nonce[2], nonce[3], nonce[4], nonce[5], nonce[6], nonce[7],
		         n_ids);
		char id[72];
		EVP_EncodeBlock((unsigned char *)id, (const unsigned char *)raw, (int)strlen(raw));
		if (n_ids == cap) {
			cap = cap ? cap * 2 : 16;
			ids = realloc(ids, cap * sizeof(char *));
			if (ids == NULL)
				abort();
		}
		ids[n_ids++] = st_xstrdup(id);
		struct az_query q[2] = {{"comp", "block"}, {"blockid", id}};
		cleanup_free char *what = st_xasprintf("Put Block %zu", n_ids);
		struct blob__http_resp resp = {0};
		r = az_request(s, "PUT", path, q, 2, NULL, 0, "application/octet-stream", chunk,
		               clen, NULL, 0, what, &resp, err);
		blob__http_resp_release(&resp);
		if (r < 0)
			break;
	}
	if (r == 0) {
		struct st_buf body;
		st_buf_init(&body, 8u * 1024 * 1024);
		st_buf_appendf(&body, "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
		for (size_t i = 0; i < n_ids; i++)
			st_buf_appendf(&body, "<Latest>%s</Latest>", ids[i]);
		st_buf_appendf(&body, "</BlockList>");
		char **x = meta_headers(meta, n_meta, 1);
		x[n_meta] = st_xstrdup("x-ms-blob-content-type:application/octet-stream");
		struct az_query q[1] = {{"comp", "blocklist"}};
		struct blob__http_resp resp = {0};
		/* Re-committing the same block list is idempotent, so retrying is safe. */
		r = az_request(s, "PUT", path, q, 1, x, n_meta + 1, "application/xml", body.data,
		               body.len, NULL, 0, "Put Block List", &resp, err);
		blob__http_resp_release(&resp);
		free_strv(x, n_meta + 1);
		st_buf_release(&body);
	}
	free_strv(ids, n_ids);
	return r;
}

int blob__az_get(struct blob_store *s, const char *key, struct blob__sink *sink,
                 struct blob_info *info, struct st_error **err)
{
	cleanup_free char *ek = blob__uri_encode(key, true);
	cleanup_free char *path = st_xasprintf("/%s", ek);
	struct blob__http_resp resp = {.meta_prefix = "x-ms-meta-"};
	const char *what = sink ? "Get Blob" : "Get Blob Properties";
	int r = az_request(s, sink ? "GET" : "HEAD", path, NULL, 0, NULL, 0, NULL, NULL, 0, sink,
	                   404, what, &resp, err);
	if (r == 0)
		r = blob__http_take_info(&resp, sink, what, info, err);
	blob__http_resp_release(&resp);
	return r;
}

int blob__az_delete(struct blob_store *s, const char *key, struct st_error **err)
{
	cleanup_free char *ek = blob__uri_encode(key, true);
	cleanup_free char *path = st_xasprintf("/%s", ek);
	struct blob__http_resp resp = {0};
	int r = az_request(s, "DELETE", path, NULL, 0, NULL, 0, NULL, NULL, 0, NULL, 404,
	                   "Delete Blob", &resp, err);
	blob__http_resp_release(&resp);
	return r;
}

const struct blob__list_format blob__az_list_format = {.what = "List Blobs",
                                                       .root = "EnumerationResults",
                                                       .item = "Blob",
                                                       .name = "Name",
                                                       .size = "Content-Length",
                                                       .etag = "Etag",
                                                       .mtime = "Last-Modified"};

int blob__az_list(struct blob_store *s, const char *prefix, blob_list_fn fn, void *ud,
                  struct st_error **err)
{
	cleanup_free char *marker = NULL;
	char maxres[16];
	snprintf(maxres, sizeof(maxres), "%u", s->list_page_size);
	for (unsigned page = 0;; page++) {
		struct az_query q[5];
		size_t nq = 0;
		q[nq++] = (struct az_query){"restype", "container"};
		q[nq++] = (struct az_query){"comp", "list"};
		q[nq++] = (struct az_query){"maxresults", maxres};
		if (*prefix)
			q[nq++] = (struct az_query){"prefix", prefix};
		if (marker && *marker)
			q[nq++] = (struct az_query){"marker", marker};
		struct blob__http_resp resp = {0};
		int r = az_request(s, "GET", "", q, nq, NULL, 0, NULL, NULL, 0, NULL, 0,
		                   "List Blobs", &resp, err);
		if (r == 0)
			r = blob__list_page(&blob__az_list_format, &resp, fn, ud, err);
		if (r != 0) {
			blob__http_resp_release(&resp);
			return r;
		}
		const char *b = resp.body.data ? resp.body.data : "";
		free(marker);
		marker = blob__xml_text(b, b + resp.body.len, "NextMarker");
		blob__http_resp_release(&resp);
		if (marker == NULL || *marker == '\0')
			return 0;
		if (page > 1000000)
			return blob__fail(err, ELOOP, "List Blobs: too many pages");
	}
}

int blob__az_create_container(struct blob_store *s, struct st_error **err)
{
	struct az_query q[1] = {{"restype", "container"}};
	struct blob__http_resp resp = {0};
	int r = az_request(s, "PUT", "", q, 1, NULL, 0, NULL, NULL, 0, NULL, 409,
	                   "Create Container", &resp, err);
	blob__http_resp_release(&resp);
	if (r < 0)
		st_error_wrap(err, "cannot create container '%s'", s->az_container);
	return r;
}
