/*
 * blob.c - the front end of blob storage: option validation and defaults, key and metadata
 * rules shared by every backend, the store prefix, how an upload is cut into parts (S3 and
 * Azure), and dispatch to the backend.
 *
 * Lifecycle: blob_open() validates and copies everything it is given into a struct blob_store,
 * which is never modified afterwards (so several threads may use it); blob_close() frees it.
 * Backends see full keys (prefix included) that have already passed blob_key_check().
 */
#include <fcntl.h>
#include <pthread.h>
#include <time.h>

#include <curl/curl.h>

#include "blob/blob-internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *blob_provider_name(enum blob_provider p)
{
	switch (p) {
	case BLOB_PROVIDER_FS: return "fs";
	case BLOB_PROVIDER_S3: return "s3";
	case BLOB_PROVIDER_AZURE: return "azure";
	case BLOB_PROVIDER_GCS: return "gcs";
	case BLOB_PROVIDER_NONE:
	default: return "none";
	}
}

int blob_provider_parse(const char *name, enum blob_provider *out)
{
	if (name == NULL)
		return -EINVAL;
	if (strcmp(name, "fs") == 0 || strcmp(name, "filesystem") == 0)
		*out = BLOB_PROVIDER_FS;
	else if (strcmp(name, "s3") == 0)
		*out = BLOB_PROVIDER_S3;
	else if (strcmp(name, "azure") == 0)
		*out = BLOB_PROVIDER_AZURE;
	else if (strcmp(name, "gcs") == 0)
		*out = BLOB_PROVIDER_GCS;
	else
		return -EINVAL;
	return 0;
}

enum blob_provider blob_store_provider(const struct blob_store *store)
{
	return store->provider;
}

int blob__fail(struct st_error **err, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err && *err == NULL) {
		st_error_make(err, 0, "%s", msg);
		if (*err)
			(*err)->code = code;
	}
	return -code;
}

/* ---- keys and metadata ---------------------------------------------------------------- */

int blob_key_check(const char *key, struct st_error **err)
{
	if (key == NULL || key[0] == '\0')
		return blob__fail(err, EINVAL, "invalid blob key: it is empty");
	size_t n = strlen(key);
	if (n > BLOB_KEY_MAX)
		return blob__fail(err, EINVAL, "invalid blob key: %zu bytes, at most %d allowed", n,
		                  BLOB_KEY_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c < 0x20 || c == 0x7f)
			return blob__fail(err, EINVAL,
			                  "invalid blob key '%.64s': control character at byte %zu",
			                  key, i);
	}
	if (key[0] == '/')
		return blob__fail(err, EINVAL, "invalid blob key '%.64s': it starts with '/'", key);
	const char *seg = key;
	for (;;) {
		const char *slash = strchr(seg, '/');
		size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
		if (len == 0)
			return blob__fail(err, EINVAL,
			                  "invalid blob key '%.64s': empty path segment ('//' or "
			                  "trailing '/')",
			                  key);
		if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return blob__fail(err, EINVAL,
			                  "invalid blob key '%.64s': '.' and '..' segments are not "
			                  "allowed",
			                  key);
		if (len > 255)
			return blob__fail(err, EINVAL,
			                  "invalid blob key '%.64s': a path segment is longer than "
			                  "255 bytes",
			                  key);
		if (!slash)
			break;
		seg = slash + 1;
	}
	return 0;
}

int blob__meta_check(const struct blob_meta *meta, size_t n_meta, struct st_error **err)
{
	if (n_meta > BLOB_META_MAX)
		return blob__fail(err, EINVAL, "too many metadata entries: %zu, at most %d", n_meta,
		                  BLOB_META_MAX);
	size_t total = 0;
	for (size_t i = 0; i < n_meta; i++) {
		const char *k = meta[i].name, *v = meta[i].value ? meta[i].value : "";
		size_t kl = k ? strlen(k) : 0;
		if (kl == 0 || kl > BLOB_META_KEY_MAX)
			return blob__fail(err, EINVAL,
			                  "invalid metadata name '%s': 1 to %d characters needed",
			                  k ? k : "", BLOB_META_KEY_MAX);
		/* Azure requires C# identifiers; S3 and the sidecar accept them too. */
		bool ok = (k[0] >= 'a' && k[0] <= 'z') || k[0] == '_';
		for (size_t j = 0; j < kl && ok; j++) {
			char c = k[j];
			ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
		}
		if (!ok)
			return blob__fail(
			    err, EINVAL,
			    "invalid metadata name '%s': use lowercase letters, digits and "
			    "'_', starting with a letter (names must work on S3 and Azure)",
			    k);
		for (size_t j = 0; v[j]; j++) {
			unsigned char c = (unsigned char)v[j];
			if (c < 0x20 || c > 0x7e)
				return blob__fail(
				    err, EINVAL,
				    "invalid value of metadata '%s': printable ASCII only "
				    "(byte %zu)",
				    k, j);
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(meta[j].name, k) == 0)
				return blob__fail(err, EINVAL, "metadata '%s' given twice", k);
		total += kl + strlen(v);
	}
	if (total > BLOB_META_TOTAL_MAX)
		return blob__fail(err, EINVAL, "metadata too large: %zu bytes, at most %d", total,
		                  BLOB_META_TOTAL_MAX);
	return 0;
}

void blob__info_add_meta(struct blob_info *info, const char *name, size_t name_len,
                         const char *value, size_t value_len)
{
	if (info->n_meta >= BLOB_META_MAX * 2)
		return; /* a hostile server cannot make us allocate without bound */
	struct blob_info_meta *m = realloc(info->meta, (info->n_meta + 1) * sizeof(*m));
	if (m == NULL)
		abort();
	info->meta = m;
	char *n = st_xmalloc(name_len + 1);
	for (size_t i = 0; i < name_len; i++)
		n[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
	n[name_len] = '\0';
	char *v = st_xmalloc(value_len + 1);
	memcpy(v, value, value_len);
	v[value_len] = '\0';
	m[info->n_meta].name = n;
	m[info->n_meta].value = v;
	info->n_meta++;
}

void blob_info_release(struct blob_info *info)
{
	if (info == NULL)
		return;
	for (size_t i = 0; i < info->n_meta; i++) {
		free(info->meta[i].name);
		free(info->meta[i].value);
	}
	free(info->meta);
	free(info->etag);
	memset(info, 0, sizeof(*info));
}

const char *blob_info_meta(const struct blob_info *info, const char *name)
{
	for (size_t i = 0; i < info->n_meta; i++)
		if (strcmp(info->meta[i].name, name) == 0)
			return info->meta[i].value;
	return NULL;
}

char *blob__full_key(const struct blob_store *s, const char *key)
{
	return st_xasprintf("%s%s", s->prefix, key);
}

void blob__backoff(const struct blob_store *s, unsigned retry)
{
	uint64_t ms = s->backoff_ms;
	for (unsigned i = 1; i < retry && ms < 10000; i++)
		ms *= 2;
	if (ms > 10000)
		ms = 10000;
	/* Up to 25% jitter so replicas retrying the same outage do not move in lockstep. */
	ms += (uint64_t)(st_now_us() % (ms / 4 + 1));
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
	                      .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- uploads ---------------------------------------------------------------------------- */

int blob__parts_start(struct blob__parts *p, const void *data, size_t len, int fd, char *buf,
                      size_t part, struct st_error **err)
{
	*p = (struct blob__parts){.data = data, .len = len, .fd = fd, .buf = buf, .part = part};
	if (fd < 0) {
		p->single = len <= part;
		return 0;
	}
	ssize_t n = st_read_all(fd, buf, part);
	if (n < 0)
		return st_error_make(err, (int)-n, "cannot read the input");
	p->data = buf;
	p->len = (size_t)n;
	p->single = p->len < part;
	return 0;
}

int blob__parts_next(struct blob__parts *p, const char **chunk, size_t *chunk_len,
                     struct st_error **err)
{
	if (p->fd >= 0 && p->off > 0) {
		/* The part in buf has been handed out: read the next one over it. */
		ssize_t n = st_read_all(p->fd, p->buf, p->part);
		if (n < 0)
			return st_error_make(err, (int)-n, "cannot read the input");
		p->len = (size_t)n;
		p->off = 0;
	}
	if (p->off >= p->len)
		return 0;
	*chunk = p->data + p->off;
	*chunk_len = p->len - p->off < p->part ? p->len - p->off : p->part;
	p->off += *chunk_len;
	return 1;
}

/* ---- options ---------------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	return (s && *s) ? st_xstrdup(s) : NULL;
}

static const char *env2(const char *prefix, const char *fallback, const char *name)
{
	char var[256];
	const char *v = NULL;
	if (prefix) {
		snprintf(var, sizeof(var), "%s_%s", prefix, name);
		v = getenv(var);
	}
	if ((v == NULL || *v == '\0') && fallback) {
		snprintf(var, sizeof(var), "%s_%s", fallback, name);
		v = getenv(var);
	}
	return (v && *v) ? v : NULL;
}

int blob_options_from_env(struct blob_options *opts, const char *prefix, const char *fallback,
                          struct st_error **err)
{
	const char *bucket = env2(prefix, fallback, "BUCKET");
	if (bucket == NULL)
		return 0;
	opts->provider = BLOB_PROVIDER_S3;
	opts->s3.bucket = bucket;
	opts->s3.region = env2(prefix, fallback, "REGION");
	opts->s3.access_key_id = env2(prefix, fallback, "ACCESS_KEY_ID");
	opts->s3.secret_access_key = env2(prefix, fallback, "SECRET_ACCESS_KEY");
	opts->s3.session_token = env2(prefix, fallback, "SESSION_TOKEN");
	opts->s3.endpoint = env2(prefix, fallback, "ENDPOINT");
	const char *fps = env2(prefix, fallback, "FORCE_PATH_STYLE");
	if (fps) {
		if (strcmp(fps, "true") == 0 || strcmp(fps, "1") == 0)
			opts->s3.force_path_style = true;
		else if (strcmp(fps, "false") == 0 || strcmp(fps, "0") == 0)
			opts->s3.force_path_style = false;
		else
			return blob__fail(err, EINVAL,
			                  "invalid %s_FORCE_PATH_STYLE '%s': use true or false",
			                  prefix, fps);
	}
	return 1;
}

static bool host_is_local(const char *hostport)
{
	if (st_str_has_prefix(hostport, "localhost") || st_str_has_prefix(hostport, "["))
		return true;
	/* dotted quad: digits and dots up to ':' or end */
	int dots = 0;
	const char *p = hostport;
	for (; *p && *p != ':' && *p != '/'; p++) {
		if (*p == '.')
			dots++;
		else if (*p < '0' || *p > '9')
			return false;
	}
	return dots == 3;
}

/* Split "scheme://host[:port][/path]" and check the scheme. */
static int check_endpoint(const char *ep, const char *what, struct st_error **err)
{
	if (!st_str_has_prefix(ep, "http://") && !st_str_has_prefix(ep, "https://"))
		return blob__fail(
		    err, EINVAL, "invalid %s endpoint '%s': it must start with http:// or https://",
		    what, ep);
	const char *host = strstr(ep, "://") + 3;
	if (*host == '\0' || *host == '/')
		return blob__fail(err, EINVAL, "invalid %s endpoint '%s': no host", what, ep);
	return 0;
}

static int s3_setup(struct blob_store *s, const struct blob_options *o, bool gcs,
                    struct st_error **err)
{
	const char *name = gcs ? "gcs" : "s3";
	if (o->s3.bucket == NULL || *o->s3.bucket == '\0')
		return blob__fail(err, EINVAL, "%s blob storage needs a bucket name", name);
	const char *b = o->s3.bucket;
	size_t bl = strlen(b);
	if (bl < 3 || bl > 63)
		return blob__fail(err, EINVAL,
		                  "invalid bucket name '%s': 3 to 63 characters are needed", b);
	for (size_t i = 0; i < bl; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '-' ||
		      b[i] == '.' || b[i] == '_'))
			return blob__fail(
			    err, EINVAL,
			    "invalid bucket name '%s': use lowercase letters, digits, "
			    "'-' and '.'",
			    b);
	bool have_id = o->s3.access_key_id && *o->s3.access_key_id;
	bool have_secret = o->s3.secret_access_key && *o->s3.secret_access_key;
	if (have_id != have_secret)
		return blob__fail(
		    err, EINVAL,
		    "%s blob storage has %s but no %s: give both (%s) or neither "
		    "(anonymous requests)",
		    name, have_id ? "an access key id" : "a secret access key",
		    have_id ? "secret access key" : "access key id",
		    gcs ? "GCS HMAC keys from Cloud Storage > Settings > Interoperability"
		        : "accessKeyId/secretAccessKey, or AWS_ACCESS_KEY_ID/"
		          "AWS_SECRET_ACCESS_KEY");
	if (!have_id) {
		/* Anonymous: requests go unsigned (public buckets, or a proxy that signs). */
		s->s3_anonymous = true;
	}
	if (have_id && strchr(o->s3.access_key_id, ':'))
		return blob__fail(err, EINVAL, "invalid access key id: it contains ':'");
	s->bucket = st_xstrdup(b);
	s->access_key_id = dup_or_null(o->s3.access_key_id);
	s->secret_access_key = dup_or_null(o->s3.secret_access_key);
	s->session_token = dup_or_null(o->s3.session_token);
	const char *region =
	    o->s3.region && *o->s3.region ? o->s3.region : (gcs ? "auto" : "us-east-1");
	for (const char *p = region; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return blob__fail(err, EINVAL, "invalid region '%s'", region);
	s->region = st_xstrdup(region);
	s->sigv4 = st_xasprintf("aws:amz:%s:s3", region);

	char *ep;
	if (o->s3.endpoint && *o->s3.endpoint) {
		int r = check_endpoint(o->s3.endpoint, name, err);
		if (r < 0)
			return r;
		ep = st_xstrdup(o->s3.endpoint);
	} else if (gcs) {
		ep = st_xstrdup("https://storage.googleapis.com");
	} else if (strcmp(region, "us-east-1") == 0) {
		ep = st_xstrdup("https://s3.amazonaws.com");
	} else {
		ep = st_xasprintf("https://s3.%s.amazonaws.com", region);
	}
	size_t el = strlen(ep);
	while (el > 0 && ep[el - 1] == '/')
		ep[--el] = '\0';
	const char *host = strstr(ep, "://") + 3;
	/* Virtual-hosted addressing needs a DNS name that can take the bucket as a label; dotted
	 * bucket names break TLS wildcard certificates, and IPs/localhost cannot take labels. */
	s->path_style = o->s3.force_path_style || host_is_local(host) || strchr(b, '.') != NULL ||
	                strchr(host, '/') != NULL;
	if (s->path_style) {
		s->s3_base = ep;
	} else {
		size_t scheme_len = (size_t)(host - ep);
		s->s3_base = st_xasprintf("%.*s%s.%s", (int)scheme_len, ep, b, host);
		free(ep);
	}
	return 0;
}

int blob_open(const struct blob_options *o, struct blob_store **out, struct st_error **err)
{
	pthread_once(&curl_once, curl_init_once);
	struct blob_store *s = st_xcalloc(1, sizeof(*s));
	s->fs_rootfd = -1;
	s->provider = o->provider;
	s->max_attempts = o->max_attempts ? o->max_attempts : 4;
	if (s->max_attempts > 20)
		s->max_attempts = 20;
	s->backoff_ms = o->backoff_ms ? o->backoff_ms : 200;
	s->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
	s->request_timeout_ms = o->request_timeout_ms > 0 ? o->request_timeout_ms : 300000;
	s->low_speed_timeout_s = o->low_speed_timeout_s > 0 ? o->low_speed_timeout_s : 30;
	s->part_size = o->part_size ? o->part_size : BLOB_PART_SIZE_DEFAULT;
	s->ca_file = dup_or_null(o->ca_file);
	s->list_page_size = o->list_page_size ? o->list_page_size : 1000;
	if (s->list_page_size > 1000)
		s->list_page_size = 1000;
	int r = 0;

	const char *prefix = o->prefix ? o->prefix : "";
	if (*prefix) {
		/* The prefix must itself be a valid key start: "git/" or "git" (a '/' is added). */
		cleanup_free char *probe = st_xasprintf("%sx", prefix);
		if (prefix[strlen(prefix) - 1] != '/') {
			free(probe);
			probe = st_xasprintf("%s/x", prefix);
		}
		r = blob_key_check(probe, err);
		if (r < 0) {
			st_error_wrap(err, "invalid blob storage prefix '%s'", prefix);
			goto fail;
		}
		probe[strlen(probe) - 1] = '\0';
		s->prefix = steal_pointer(&probe);
	} else {
		s->prefix = st_xstrdup("");
	}

	switch (o->provider) {
	case BLOB_PROVIDER_FS:
		if (o->fs.path == NULL || *o->fs.path == '\0') {
			r = blob__fail(
			    err, EINVAL,
			    "filesystem blob storage needs a path (blobStorage.filesystem."
			    "path)");
			goto fail;
		}
		s->fs_root = st_xstrdup(o->fs.path);
		r = blob__fs_open(s, err);
		break;
	case BLOB_PROVIDER_S3: r = s3_setup(s, o, false, err); break;
	case BLOB_PROVIDER_GCS: r = s3_setup(s, o, true, err); break;
	case BLOB_PROVIDER_AZURE: r = blob__az_open(s, o, err); break;
	case BLOB_PROVIDER_NONE:
	default:
		r = blob__fail(err, EINVAL,
		               "no blob storage provider configured: choose one of filesystem, s3, "
		               "azure, gcs");
		break;
	}
	if (r < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	blob_close(s);
	return r;
}

void blob_close(struct blob_store *s)
{
	if (s == NULL)
		return;
	if (s->fs_rootfd >= 0)
		close(s->fs_rootfd);
	free(s->prefix);
	free(s->fs_root);
	free(s->bucket);
	free(s->region);
	free(s->access_key_id);
	if (s->secret_access_key) {
		explicit_bzero(s->secret_access_key, strlen(s->secret_access_key));
		free(s->secret_access_key);
	}
	free(s->session_token);
	free(s->s3_base);
	free(s->sigv4);
	free(s->az_account);
	explicit_bzero(s->az_key, sizeof(s->az_key));
	free(s->az_container);
	free(s->az_base);
	free(s->az_resource_base);
	free(s->ca_file);
	free(s);
}

/* ---- dispatch --------------------------------------------------------------------------- */

static int put_common(struct blob_store *s, const char *key, const void *data, size_t len, int fd,
                      const struct blob_meta *meta, size_t n_meta, struct st_error **err)
{
	int r = blob_key_check(key, err);
	if (r < 0)
		return r;
	r = blob__meta_check(meta, n_meta, err);
	if (r < 0)
		return r;
	cleanup_free char *full = blob__full_key(s, key);
	switch (s->provider) {
	case BLOB_PROVIDER_FS: r = blob__fs_put(s, full, data, len, fd, meta, n_meta, err); break;
	case BLOB_PROVIDER_S3:
	case BLOB_PROVIDER_GCS: r = blob__s3_put(s, full, data, len, fd, meta, n_meta, err); break;
	case BLOB_PROVIDER_AZURE:
		r = blob__az_put(s, full, data, len, fd, meta, n_meta, err);
		break;
	case BLOB_PROVIDER_NONE:
	default: r = blob__fail(err, EINVAL, "no blob storage provider");
	}
	if (r < 0)
		st_error_wrap(err, "cannot put blob '%s'", key);
	return r;
}

int blob_put(struct blob_store *s, const char *key, const void *data, size_t len,
             const struct blob_meta *meta, size_t n_meta, struct st_error **err)
{
	return put_common(s, key, data ? data : "", len, -1, meta, n_meta, err);
}

int blob_put_fd(struct blob_store *s, const char *key, int fd, const struct blob_meta *meta,
                size_t n_meta, struct st_error **err)
{
	if (fd < 0)
		return blob__fail(err, EBADF, "cannot put blob '%s': bad file descriptor", key);
	return put_common(s, key, NULL, 0, fd, meta, n_meta, err);
}

int blob_put_file(struct blob_store *s, const char *key, const char *path,
                  const struct blob_meta *meta, size_t n_meta, struct st_error **err)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return st_error_make(err, errno, "cannot put blob '%s': cannot open '%s'", key,
		                     path);
	return blob_put_fd(s, key, fd, meta, n_meta, err);
}

static int get_common(struct blob_store *s, const char *key, struct blob__sink *sink,
                      struct blob_info *info, const char *verb, struct st_error **err)
{
	int r = blob_key_check(key, err);
	if (r < 0)
		return r;
	cleanup_free char *full = blob__full_key(s, key);
	struct blob_info local = {0};
	struct blob_info *inf = info ? info : &local;
	memset(inf, 0, sizeof(*inf));
	switch (s->provider) {
	case BLOB_PROVIDER_FS: r = blob__fs_get(s, full, sink, inf, err); break;
	case BLOB_PROVIDER_S3:
	case BLOB_PROVIDER_GCS: r = blob__s3_get(s, full, sink, inf, err); break;
	case BLOB_PROVIDER_AZURE: r = blob__az_get(s, full, sink, inf, err); break;
	case BLOB_PROVIDER_NONE:
	default: r = blob__fail(err, EINVAL, "no blob storage provider");
	}
	if (r < 0 || info == NULL)
		blob_info_release(inf);
	if (r < 0)
		st_error_wrap(err, "cannot %s blob '%s'", verb, key);
	return r;
}

int blob_get(struct blob_store *s, const char *key, size_t max, char **data, size_t *len,
             struct blob_info *info, struct st_error **err)
{
	struct st_buf buf;
	st_buf_init(&buf, max);
	struct blob__sink sink = {.buf = &buf, .fd = -1};
	int r = get_common(s, key, &sink, info, "get", err);
	if (r < 0) {
		st_buf_release(&buf);
		return r;
	}
	*len = buf.len;
	*data = buf.data ? st_buf_steal(&buf) : st_xstrdup("");
	return 0;
}

int blob_get_to_fd(struct blob_store *s, const char *key, int fd, struct blob_info *info,
                   struct st_error **err)
{
	struct blob__sink sink = {.buf = NULL, .fd = fd};
	return get_common(s, key, &sink, info, "get", err);
}

int blob_stat(struct blob_store *s, const char *key, struct blob_info *info, struct st_error **err)
{
	return get_common(s, key, NULL, info, "stat", err);
}

int blob_delete(struct blob_store *s, const char *key, struct st_error **err)
{
	int r = blob_key_check(key, err);
	if (r < 0)
		return r;
	cleanup_free char *full = blob__full_key(s, key);
	switch (s->provider) {
	case BLOB_PROVIDER_FS: r = blob__fs_delete(s, full, err); break;
	case BLOB_PROVIDER_S3:
	case BLOB_PROVIDER_GCS: r = blob__s3_delete(s, full, err); break;
	case BLOB_PROVIDER_AZURE: r = blob__az_delete(s, full, err); break;
	case BLOB_PROVIDER_NONE:
	default: r = blob__fail(err, EINVAL, "no blob storage provider");
	}
	if (r < 0)
		st_error_wrap(err, "cannot delete blob '%s'", key);
	return r;
}

struct strip_ctx {
	size_t skip;
	blob_list_fn fn;
	void *ud;
};

static int strip_cb(const struct blob_entry *e, void *ud)
{
	struct strip_ctx *c = ud;
	if (strlen(e->key) < c->skip)
		return 0;
	struct blob_entry e2 = *e;
	e2.key = e->key + c->skip;
	return c->fn(&e2, c->ud);
}

int blob_list(struct blob_store *s, const char *prefix, blob_list_fn fn, void *userdata,
              struct st_error **err)
{
	if (prefix == NULL)
		prefix = "";
	if (strlen(prefix) > BLOB_KEY_MAX)
		return blob__fail(err, EINVAL, "list prefix longer than %d bytes", BLOB_KEY_MAX);
	cleanup_free char *full = blob__full_key(s, prefix);
	struct strip_ctx c = {.skip = strlen(s->prefix), .fn = fn, .ud = userdata};
	int r;
	switch (s->provider) {
	case BLOB_PROVIDER_FS: r = blob__fs_list(s, full, strip_cb, &c, err); break;
	case BLOB_PROVIDER_S3:
	case BLOB_PROVIDER_GCS: r = blob__s3_list(s, full, strip_cb, &c, err); break;
	case BLOB_PROVIDER_AZURE: r = blob__az_list(s, full, strip_cb, &c, err); break;
	case BLOB_PROVIDER_NONE:
	default: r = blob__fail(err, EINVAL, "no blob storage provider");
	}
	if (r < 0)
		st_error_wrap(err, "cannot list blobs under '%s'", prefix);
	return r;
}

int blob_create_bucket(struct blob_store *s, struct st_error **err)
{
	switch (s->provider) {
	case BLOB_PROVIDER_S3:
	case BLOB_PROVIDER_GCS: return blob__s3_create_bucket(s, err);
	case BLOB_PROVIDER_AZURE: return blob__az_create_container(s, err);
	case BLOB_PROVIDER_FS:
	case BLOB_PROVIDER_NONE:
	default: return 0;
	}
}
