/*
 * config-yaml.c - stockade.yaml into struct stockade_config, with libyaml's document loader.
 *
 * What this file decides: types (a number where a number belongs, a mapping where a mapping
 * belongs), legacy keys (errors listing old -> new), unknown keys (warnings with a "did you
 * mean"), duplicate keys (errors: YAML would silently keep one). Cross-field rules live in
 * config-validate.c. Aliases are followed by node index (libyaml shares nodes, it does not
 * copy them), so an alias bomb costs nothing; merge keys (`<<: *base`) are honoured.
 * Every problem names its key path; parsing continues after a problem so that `config check`
 * reports everything at once.
 */
#include "config/config-internal.h"

#include <ctype.h>
#include <math.h>
#include <yaml.h>

struct yctx {
	yaml_document_t *doc;
	struct config_problems *pr;
	struct stockade_config *cfg;
	struct config__pending *pend;
};

typedef yaml_node_t ynode;

static ynode *N(struct yctx *c, int i)
{
	return yaml_document_get_node(c->doc, i);
}

static bool is_null(const ynode *n)
{
	if (n == NULL)
		return true;
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *v = (const char *)n->data.scalar.value;
	return *v == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static const char *sval(const ynode *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static const char *kind(const ynode *n)
{
	if (n == NULL || is_null(n))
		return "null";
	switch (n->type) {
	case YAML_MAPPING_NODE: return "a mapping";
	case YAML_SEQUENCE_NODE: return "a list";
	case YAML_SCALAR_NODE: return "a scalar";
	case YAML_NO_NODE:
	default: return "nothing";
	}
}

static char *join(const char *path, const char *key)
{
	return *path ? st_xasprintf("%s.%s", path, key) : st_xstrdup(key);
}

/* How deep merge keys (`<<`) may nest, and how many mappings the merges of one mapping may
   reach in all. An alias can name the mapping that holds it (a cycle), and lists of aliases
   can fan out exponentially: both are refused before anything is read (merges_ok). */
#define MERGE_MAX_DEPTH 8
#define MERGE_MAX_VISITS 4096

/* Call fn for each mapping the merge keys (`<<`) of map name, in order (one alias, or each of
   a list); stop at the first non-NULL return and return it. */
typedef void *(*merge_fn)(struct yctx *c, ynode *merged, void *arg);
static void *each_merge(struct yctx *c, ynode *map, merge_fn fn, void *arg)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		const char *k = sval(N(c, p->key));
		if (k == NULL || strcmp(k, "<<") != 0)
			continue;
		ynode *v = N(c, p->value);
		void *r = NULL;
		if (v && v->type == YAML_SEQUENCE_NODE) {
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     r == NULL && it < v->data.sequence.items.top; it++)
				r = fn(c, N(c, *it), arg);
		} else if (v) {
			r = fn(c, v, arg);
		}
		if (r)
			return r;
	}
	return NULL;
}

struct mget_arg {
	const char *key;
	int depth;
};
static ynode *mget_(struct yctx *c, ynode *map, const char *key, int depth);
static void *mget_merged(struct yctx *c, ynode *merged, void *arg)
{
	const struct mget_arg *a = arg;
	return mget_(c, merged, a->key, a->depth + 1);
}

/* Look a key up in a mapping, then in its merge keys (`<<`). */
static ynode *mget(struct yctx *c, ynode *map, const char *key)
{
	return mget_(c, map, key, 0);
}

static ynode *mget_(struct yctx *c, ynode *map, const char *key, int depth)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE || depth > MERGE_MAX_DEPTH)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		const char *k = sval(N(c, p->key));
		if (k && strcmp(k, key) == 0)
			return N(c, p->value);
	}
	struct mget_arg a = {key, depth};
	return each_merge(c, map, mget_merged, &a);
}

/* Are the merges reachable from map bounded (no cycle, at most MERGE_MAX_DEPTH deep, at most
   *budget mappings visited)? */
struct merges_arg {
	int depth;
	unsigned *budget;
};
static bool merges_ok(struct yctx *c, ynode *map, int depth, unsigned *budget);
static void *merged_not_ok(struct yctx *c, ynode *merged, void *arg)
{
	const struct merges_arg *a = arg;
	return merges_ok(c, merged, a->depth + 1, a->budget) ? NULL : merged;
}

static bool merges_ok(struct yctx *c, ynode *map, int depth, unsigned *budget)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return true;
	if (depth > MERGE_MAX_DEPTH || *budget == 0)
		return false;
	(*budget)--;
	struct merges_arg a = {depth, budget};
	return each_merge(c, map, merged_not_ok, &a) == NULL;
}

/* Every mapping's merges are bounded; otherwise an error naming the line of the first that
   is not. */
static bool check_merges(struct yctx *c, const char *name)
{
	for (ynode *n = c->doc->nodes.start; n < c->doc->nodes.top; n++) {
		unsigned budget = MERGE_MAX_VISITS;
		if (n->type == YAML_MAPPING_NODE && !merges_ok(c, n, 0, &budget)) {
			config_problems_add(
			    c->pr, CONFIG_ERROR, "",
			    "'%s' line %zu: merge keys ('<<') refer back to the mapping "
			    "that holds them, nest more than %d deep or reach more than "
			    "%d mappings; write the keys out",
			    name, n->start_mark.line + 1, MERGE_MAX_DEPTH, MERGE_MAX_VISITS);
			return false;
		}
	}
	return true;
}

/* ---- duplicate keys and unknown keys ------------------------------------------------------ */

#define MAX_DEPTH 64

static void find_duplicates(struct yctx *c, ynode *n, const char *path, uint8_t *seen, int depth)
{
	if (n == NULL)
		return;
	if (depth > MAX_DEPTH) {
		/* nothing in stockade.yaml is this deep; stop before the stack does */
		config_problems_add(c->pr, CONFIG_ERROR, path,
		                    "nested more than %d levels deep; this is not a stockade.yaml "
		                    "layout",
		                    MAX_DEPTH);
		return;
	}
	int idx = (int)(n - c->doc->nodes.start);
	if (seen[idx])
		return;
	seen[idx] = 1;
	if (n->type == YAML_SEQUENCE_NODE) {
		size_t i = 0;
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++, i++) {
			char *p = st_xasprintf("%s[%zu]", path, i);
			find_duplicates(c, N(c, *it), p, seen, depth + 1);
			free(p);
		}
		return;
	}
	if (n->type != YAML_MAPPING_NODE)
		return;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		ynode *kn = N(c, p->key);
		const char *k = sval(kn);
		if (k == NULL) {
			config_problems_add(c->pr, CONFIG_ERROR, path,
			                    "a key is %s; keys must be plain strings", kind(kn));
			continue;
		}
		for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
			const char *k2 = sval(N(c, q->key));
			if (k2 && strcmp(k, k2) == 0 && strcmp(k, "<<") != 0) {
				char *kp = join(path, k);
				config_problems_add(
				    c->pr, CONFIG_ERROR, kp,
				    "duplicate key (lines %zu and %zu); keep only one of them",
				    N(c, q->key)->start_mark.line + 1, kn->start_mark.line + 1);
				free(kp);
				break;
			}
		}
		char *kp = join(path, k);
		find_duplicates(c, N(c, p->value), kp, seen, depth + 1);
		free(kp);
	}
}

static size_t lev(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 40 || lb > 40)
		return 99;
	size_t d[41][41];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			size_t cost =
			    tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1])
			        ? 0
			        : 1;
			size_t m = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < m)
				m = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < m)
				m = d[i - 1][j - 1] + cost;
			d[i][j] = m;
		}
	return d[la][lb];
}

static void check_keys(struct yctx *c, ynode *map, const char *path, const char *const *known)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		const char *k = sval(N(c, p->key));
		if (k == NULL || strcmp(k, "<<") == 0)
			continue;
		bool ok = false;
		const char *best = NULL;
		size_t bestd = 3;
		for (const char *const *kk = known; *kk; kk++) {
			if (strcmp(*kk, k) == 0) {
				ok = true;
				break;
			}
			size_t d = lev(k, *kk);
			if (d < bestd) {
				bestd = d;
				best = *kk;
			}
		}
		if (ok)
			continue;
		char *kp = join(path, k);
		if (best)
			config_problems_add(c->pr, CONFIG_WARNING, kp,
			                    "unknown key (ignored); did you mean '%s'?", best);
		else
			config_problems_add(
			    c->pr, CONFIG_WARNING, kp,
			    "unknown key (ignored); see docs/configuration.md for the "
			    "keys of '%s'",
			    *path ? path : "the top level");
		free(kp);
	}
}

/* ---- typed readers ------------------------------------------------------------------------ */

/* The child mapping `key`, NULL when absent or null. A non-mapping is an error. */
static ynode *rd_map(struct yctx *c, ynode *map, const char *key, const char *path,
                     bool null_is_error)
{
	ynode *n = mget(c, map, key);
	if (n == NULL)
		return NULL;
	if (n->type == YAML_MAPPING_NODE)
		return n;
	if (is_null(n) && !null_is_error)
		return NULL;
	char *kp = join(path, key);
	config_problems_add(
	    c->pr, CONFIG_ERROR, kp,
	    "must be a mapping, but it is %s (line %zu); write it as '%s: {enabled: "
	    "true, ...}' or indent its keys below it",
	    kind(n), n->start_mark.line + 1, key);
	free(kp);
	return NULL;
}

static bool rd_scalar(struct yctx *c, ynode *map, const char *key, const char *path,
                      const char **out)
{
	ynode *n = mget(c, map, key);
	*out = NULL;
	if (n == NULL || is_null(n))
		return false;
	if (n->type != YAML_SCALAR_NODE) {
		char *kp = join(path, key);
		config_problems_add(c->pr, CONFIG_ERROR, kp, "must be a single value, not %s",
		                    kind(n));
		free(kp);
		return false;
	}
	*out = sval(n);
	return true;
}

static void rd_str(struct yctx *c, ynode *map, const char *key, const char *path, char **out)
{
	const char *v;
	if (rd_scalar(c, map, key, path, &v))
		config__set_str(out, *v ? v : NULL);
}

static bool parse_bool(const char *v, bool *out)
{
	static const char *t[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On"};
	static const char *f[] = {"false", "False", "FALSE", "no", "No", "off", "Off"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(t); i++) {
		if (strcmp(v, t[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcmp(v, f[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static void rd_bool(struct yctx *c, ynode *map, const char *key, const char *path, bool *out)
{
	const char *v;
	if (!rd_scalar(c, map, key, path, &v))
		return;
	if (!parse_bool(v, out)) {
		char *kp = join(path, key);
		config_problems_add(c->pr, CONFIG_ERROR, kp, "must be true or false, got '%s'", v);
		free(kp);
	}
}

static void rd_tri(struct yctx *c, ynode *map, const char *key, const char *path,
                   enum config_tristate *out)
{
	ynode *n = mget(c, map, key);
	if (n == NULL)
		return;
	if (is_null(n)) {
		*out = CONFIG_UNSET;
		return;
	}
	bool b = false;
	const char *v = sval(n);
	if (v && parse_bool(v, &b)) {
		*out = b ? CONFIG_TRUE : CONFIG_FALSE;
		return;
	}
	char *kp = join(path, key);
	config_problems_add(c->pr, CONFIG_ERROR, kp,
	                    "must be true, false or null (null follows rr.enabled), got '%s'",
	                    v ? v : kind(n));
	free(kp);
}

static void rd_u64(struct yctx *c, ynode *map, const char *key, const char *path, uint64_t min,
                   uint64_t max, uint64_t *out)
{
	const char *v;
	if (!rd_scalar(c, map, key, path, &v))
		return;
	uint64_t x;
	bool bytes = st_str_has_suffix(key, "Bytes");
	int rc = bytes ? st_parse_size(v, &x) : st_parse_u64(v, &x);
	char *kp = join(path, key);
	if (rc < 0)
		config_problems_add(c->pr, CONFIG_ERROR, kp, "must be a whole number%s, got '%s'",
		                    bytes ? " of bytes (suffixes k, M, G allowed)" : "", v);
	else if (x < min || x > max)
		config_problems_add(
		    c->pr, CONFIG_ERROR, kp, "must be between %llu and %llu, got %llu",
		    (unsigned long long)min, (unsigned long long)max, (unsigned long long)x);
	else
		*out = x;
	free(kp);
}

static void rd_u32(struct yctx *c, ynode *map, const char *key, const char *path, uint32_t min,
                   uint32_t max, uint32_t *out)
{
	uint64_t v = *out;
	rd_u64(c, map, key, path, min, max, &v);
	*out = (uint32_t)v;
}

static void rd_double(struct yctx *c, ynode *map, const char *key, const char *path, double min,
                      double max, double *out)
{
	const char *v;
	if (!rd_scalar(c, map, key, path, &v))
		return;
	char *end = NULL;
	errno = 0;
	double x = strtod(v, &end);
	char *kp = join(path, key);
	if (errno || end == v || *end || !isfinite(x))
		config_problems_add(c->pr, CONFIG_ERROR, kp, "must be a number, got '%s'", v);
	else if (x < min || x > max)
		config_problems_add(c->pr, CONFIG_ERROR, kp, "must be between %g and %g, got %g",
		                    min, max, x);
	else
		*out = x;
	free(kp);
}

/* A list of strings; a single string is split on commas (the chart writes
 * `backendDomainSuffixes: "example.com"`). */
static void rd_strv(struct yctx *c, ynode *map, const char *key, const char *path,
                    struct config_strv *out)
{
	ynode *n = mget(c, map, key);
	if (n == NULL)
		return;
	char *kp = join(path, key);
	if (is_null(n)) {
		config__strv_release(out);
	} else if (n->type == YAML_SCALAR_NODE) {
		config__strv_release(out);
		char *copy = st_xstrdup(sval(n)), *save = NULL;
		for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			while (isspace((unsigned char)*t))
				t++;
			size_t l = strlen(t);
			while (l && isspace((unsigned char)t[l - 1]))
				t[--l] = '\0';
			if (*t)
				config__strv_push(out, t);
		}
		free(copy);
	} else if (n->type == YAML_SEQUENCE_NODE) {
		config__strv_release(out);
		size_t i = 0;
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++, i++) {
			ynode *e = N(c, *it);
			if (e == NULL || e->type != YAML_SCALAR_NODE || is_null(e))
				config_problems_add(c->pr, CONFIG_ERROR, kp,
				                    "item %zu must be a string, not %s", i,
				                    kind(e));
			else
				config__strv_push(out, sval(e));
		}
	} else {
		config_problems_add(c->pr, CONFIG_ERROR, kp, "must be a list of strings, not %s",
		                    kind(n));
	}
	free(kp);
}

/* A secret given inline (`key`) or as a file (`keyFile`); both is an error. */
static void rd_secret(struct yctx *c, ynode *map, const char *key, const char *path, char **value,
                      char **file, char **origin)
{
	char *fkey = st_xasprintf("%sFile", key);
	const char *v = NULL, *f = NULL;
	rd_scalar(c, map, key, path, &v);
	rd_scalar(c, map, fkey, path, &f);
	if (v && f) {
		char *kp = join(path, key);
		config_problems_add(c->pr, CONFIG_ERROR, kp,
		                    "given both inline and as '%s'; keep one of them", fkey);
		free(kp);
	} else if (v && *v) {
		config__set_str(value, v);
		char *kp = join(path, key);
		free(*origin);
		*origin = st_xasprintf("'%s'", kp);
		free(kp);
	} else if (f && *f) {
		config__set_str(file, f);
	}
	free(fkey);
}

static bool rd_enum(struct yctx *c, ynode *map, const char *key, const char *path,
                    const char *const *names, int *out)
{
	const char *v;
	if (!rd_scalar(c, map, key, path, &v))
		return false;
	for (int i = 0; names[i]; i++)
		if (strcmp(names[i], v) == 0) {
			*out = i;
			return true;
		}
	struct st_buf b;
	st_buf_init(&b, 1024);
	for (int i = 0; names[i]; i++)
		st_buf_appendf(&b, "%s%s", i ? ", " : "", names[i]);
	char *kp = join(path, key);
	config_problems_add(c->pr, CONFIG_ERROR, kp, "must be one of %s, got '%s'", b.data, v);
	free(kp);
	st_buf_release(&b);
	return false;
}

/* ---- sections ----------------------------------------------------------------------------- */

static const char *const limits_keys[] = {"defaultTimeoutMs",
                                          "maxTimeoutMs",
                                          "defaultMemoryMb",
                                          "maxMemoryMb",
                                          "maxPids",
                                          "maxCodeBytes",
                                          "maxParamsBytes",
                                          "maxResultBytes",
                                          "maxOutputBytes",
                                          "tmpfsMb",
                                          "queueSize",
                                          "concurrency",
                                          NULL};

static void rd_limits(struct yctx *c, ynode *map, const char *path, struct config_exec_limits *l)
{
	ynode *m = rd_map(c, map, "limits", path, false);
	if (m == NULL)
		return;
	char *p = join(path, "limits");
	check_keys(c, m, p, limits_keys);
	rd_u32(c, m, "defaultTimeoutMs", p, 1, 3600000, &l->default_timeout_ms);
	rd_u32(c, m, "maxTimeoutMs", p, 1, 3600000, &l->max_timeout_ms);
	rd_u32(c, m, "defaultMemoryMb", p, 16, 65536, &l->default_memory_mb);
	rd_u32(c, m, "maxMemoryMb", p, 16, 65536, &l->max_memory_mb);
	rd_u32(c, m, "maxPids", p, 1, 65536, &l->max_pids);
	rd_u64(c, m, "maxCodeBytes", p, 1, 1ull << 30, &l->max_code_bytes);
	rd_u64(c, m, "maxParamsBytes", p, 1, 1ull << 30, &l->max_params_bytes);
	rd_u64(c, m, "maxResultBytes", p, 1, 1ull << 30, &l->max_result_bytes);
	rd_u64(c, m, "maxOutputBytes", p, 1, 1ull << 30, &l->max_output_bytes);
	uint64_t t = l->tmpfs_mb;
	rd_u64(c, m, "tmpfsMb", p, 1, 65536, &t);
	l->tmpfs_mb = t;
	rd_u32(c, m, "queueSize", p, 0, 100000, &l->queue_size);
	rd_u32(c, m, "concurrency", p, 0, 4096, &l->concurrency);
	free(p);
}

static const char *const pg_keys[] = {"host",     "port",         "db",          "user",
                                      "password", "passwordFile", "ssl_enabled", "sslmode",
                                      "url",      "schema",       NULL};

static void rd_pg(struct yctx *c, ynode *m, const char *path, struct config_postgres *pg)
{
	check_keys(c, m, path, pg_keys);
	pg->present = true;
	rd_str(c, m, "host", path, &pg->host);
	uint64_t port = pg->port;
	rd_u64(c, m, "port", path, 1, 65535, &port);
	pg->port = (uint16_t)port;
	rd_str(c, m, "db", path, &pg->db);
	rd_str(c, m, "user", path, &pg->user);
	char *pwfile = NULL, *origin = NULL;
	rd_secret(c, m, "password", path, &pg->password, &pwfile, &origin);
	if (pwfile) {
		char *text = NULL;
		size_t len = 0;
		struct st_error *e = NULL;
		char *near = config__path_near(c->cfg, pwfile);
		free(pwfile);
		pwfile = near;
		if (st_read_file(pwfile, 4096, &text, &len, &e) < 0) {
			char *kp = join(path, "passwordFile");
			config_problems_add(c->pr, CONFIG_ERROR, kp, "%s", st_error_msg(e));
			free(kp);
			st_error_free(e);
		} else {
			while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
				text[--len] = '\0';
			free(pg->password);
			pg->password = text;
		}
	}
	free(pwfile);
	free(origin);
	rd_bool(c, m, "ssl_enabled", path, &pg->ssl_enabled);
	static const char *const modes[] = {"disable",   "allow",     "prefer",      "require",
	                                    "no-verify", "verify-ca", "verify-full", NULL};
	int mode = -1;
	if (rd_enum(c, m, "sslmode", path, modes, &mode))
		config__set_str(&pg->sslmode, modes[mode]);
	rd_str(c, m, "url", path, &pg->url);
	rd_str(c, m, "schema", path, &pg->schema);
}

static const char *const s3_keys[] = {"bucket",
                                      "region",
                                      "accessKeyId",
                                      "secretAccessKey",
                                      "secretAccessKeyFile",
                                      "secretAccessKeySecretName",
                                      "secretAccessKeySecretKey",
                                      "sessionToken",
                                      "endpoint",
                                      "forcePathStyle",
                                      "prefix",
                                      NULL};
static const char *const gcs_keys[] = {"bucket",   "hmacAccessKey", "hmacSecret", "hmacSecretFile",
                                       "endpoint", "prefix",        NULL};
static const char *const azure_keys[] = {"connectionString",
                                         "connectionStringFile",
                                         "accountName",
                                         "accountKey",
                                         "accountKeyFile",
                                         "container",
                                         "endpoint",
                                         "prefix",
                                         NULL};
static const char *const fs_keys[] = {"path", "prefix", NULL};

/* Read `<key>` or `<key>File` into *out (secrets of the blob block). */
static void rd_blob_secret(struct yctx *c, ynode *m, const char *key, const char *path, char **out)
{
	char *file = NULL, *origin = NULL;
	rd_secret(c, m, key, path, out, &file, &origin);
	if (file) {
		char *text = NULL;
		size_t len = 0;
		struct st_error *e = NULL;
		char *near = config__path_near(c->cfg, file);
		free(file);
		file = near;
		if (st_read_file(file, 65536, &text, &len, &e) < 0) {
			char *kp = st_xasprintf("%s.%sFile", path, key);
			config_problems_add(c->pr, CONFIG_ERROR, kp, "%s", st_error_msg(e));
			free(kp);
			st_error_free(e);
		} else {
			while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
				text[--len] = '\0';
			free(*out);
			*out = text;
		}
	}
	free(file);
	free(origin);
}

static void rd_blob_storage(struct yctx *c, ynode *m, const char *path)
{
	struct config_rr *rr = &c->cfg->rr;
	struct config_blob *b = &rr->blob_storage;
	static const char *const providers[] = {"s3", "gcs", "azure", "filesystem", NULL};
	check_keys(c, m, path, providers);
	config__blob_release(b);
	b->source = st_xstrdup("rr.blobStorage");
	int count = 0;
	struct st_buf names;
	st_buf_init(&names, 256);
	for (int i = 0; providers[i]; i++) {
		ynode *n = mget(c, m, providers[i]);
		if (n == NULL || is_null(n))
			continue;
		count++;
		st_buf_appendf(&names, "%s%s", names.len ? ", " : "", providers[i]);
		ynode *pm = rd_map(c, m, providers[i], path, false);
		if (pm == NULL)
			continue;
		if (count > 1)
			continue; /* reported by validation; read only the first */
		char *p = join(path, providers[i]);
		rd_str(c, pm, "prefix", p, &b->prefix);
		if (strcmp(providers[i], "s3") == 0) {
			b->provider = CONFIG_BLOB_S3;
			check_keys(c, pm, p, s3_keys);
			rd_str(c, pm, "bucket", p, &b->s3.bucket);
			rd_str(c, pm, "region", p, &b->s3.region);
			rd_str(c, pm, "accessKeyId", p, &b->s3.access_key_id);
			rd_blob_secret(c, pm, "secretAccessKey", p, &b->s3.secret_access_key);
			rd_str(c, pm, "sessionToken", p, &b->s3.session_token);
			rd_str(c, pm, "endpoint", p, &b->s3.endpoint);
			b->s3.force_path_style = b->s3.endpoint != NULL;
			rd_bool(c, pm, "forcePathStyle", p, &b->s3.force_path_style);
			if (mget(c, pm, "secretAccessKeySecretName"))
				config_problems_add(c->pr, CONFIG_WARNING, p,
				                    "secretAccessKeySecretName/SecretKey are read "
				                    "by the Helm chart "
				                    "only; outside Kubernetes set secretAccessKey, "
				                    "secretAccessKeyFile "
				                    "or RR_DEFAULT_S3_SECRET_ACCESS_KEY");
		} else if (strcmp(providers[i], "gcs") == 0) {
			b->provider = CONFIG_BLOB_GCS;
			check_keys(c, pm, p, gcs_keys);
			rd_str(c, pm, "bucket", p, &b->gcs.bucket);
			rd_str(c, pm, "hmacAccessKey", p, &b->gcs.hmac_access_key);
			rd_blob_secret(c, pm, "hmacSecret", p, &b->gcs.hmac_secret);
			rd_str(c, pm, "endpoint", p, &b->gcs.endpoint);
		} else if (strcmp(providers[i], "azure") == 0) {
			b->provider = CONFIG_BLOB_AZURE;
			check_keys(c, pm, p, azure_keys);
			rd_blob_secret(c, pm, "connectionString", p, &b->azure.connection_string);
			rd_str(c, pm, "accountName", p, &b->azure.account_name);
			rd_blob_secret(c, pm, "accountKey", p, &b->azure.account_key);
			rd_str(c, pm, "container", p, &b->azure.container);
			rd_str(c, pm, "endpoint", p, &b->azure.endpoint);
		} else {
			b->provider = CONFIG_BLOB_FILESYSTEM;
			check_keys(c, pm, p, fs_keys);
			rd_str(c, pm, "path", p, &b->filesystem.path);
		}
		free(p);
	}
	rr->blob_storage_provider_count = count;
	if (count > 1)
		config_problems_add(
		    c->pr, CONFIG_ERROR, path,
		    "names %d providers (%s); configure exactly one of s3, gcs, azure, "
		    "filesystem",
		    count, names.data);
	st_buf_release(&names);
}

static const char *const as_keys[] = {"enabled",       "runtime",
                                      "platform",      "runscPath",
                                      "rootfs",        "externalSecret",
                                      "jwtPublicKey",  "jwtPublicKeyFile",
                                      "jwtPrivateKey", "jwtPrivateKeyFile",
                                      "encryptionKey", "encryptionKeyFile",
                                      "apiSecret",     "apiSecretFile",
                                      "postgres",      "proxy",
                                      "sandbox",       "scaling",
                                      "tokens",        "devicePlugin",
                                      "privileged",    NULL};

static void rd_agent_sandbox(struct yctx *c, ynode *m, const char *path)
{
	struct config_agent_sandbox *as = &c->cfg->rr.agent_sandbox;
	struct config__pending *pd = c->pend;
	check_keys(c, m, path, as_keys);
	rd_tri(c, m, "enabled", path, &as->enabled_setting);
	static const char *const runtimes[] = {"gvisor", "jail", NULL};
	static const char *const platforms[] = {"systrap", "ptrace", "kvm", NULL};
	int v;
	if (rd_enum(c, m, "runtime", path, runtimes, &v))
		as->runtime = (enum config_sandbox_runtime)v;
	if (rd_enum(c, m, "platform", path, platforms, &v))
		as->platform = (enum config_gvisor_platform)v;
	if (mget(c, m, "privileged")) {
		char *kp = join(path, "privileged");
		config_problems_add(
		    c->pr, CONFIG_ERROR, kp,
		    "the agent sandbox has no privileged mode: it runs under gVisor "
		    "with the published seccomp profile (deploy/seccomp/); remove "
		    "this key");
		free(kp);
	}
	rd_str(c, m, "runscPath", path, &as->runsc_path);
	rd_str(c, m, "rootfs", path, &as->rootfs);
	ynode *es = rd_map(c, m, "externalSecret", path, false);
	if (es) {
		char *p = join(path, "externalSecret");
		static const char *const k[] = {"name", "mountPath", NULL};
		check_keys(c, es, p, k);
		rd_str(c, es, "name", p, &as->external_secret_name);
		rd_str(c, es, "mountPath", p, &as->external_secret_mount_path);
		free(p);
	}
	rd_secret(c, m, "jwtPublicKey", path, &as->jwt_public_key_pem, &pd->as_jwt_public_key_file,
	          &pd->as_jwt_public_key_origin);
	rd_secret(c, m, "jwtPrivateKey", path, &as->jwt_private_key_pem,
	          &pd->as_jwt_private_key_file, &pd->as_jwt_private_key_origin);
	rd_secret(c, m, "encryptionKey", path, &as->encryption_key_hex, &pd->as_encryption_key_file,
	          &pd->as_encryption_key_origin);
	rd_secret(c, m, "apiSecret", path, &as->api_secret, &pd->as_api_secret_file,
	          &pd->as_api_secret_origin);

	ynode *pg = rd_map(c, m, "postgres", path, false);
	if (pg) {
		char *p = join(path, "postgres");
		rd_pg(c, pg, p, &pd->as_pg);
		pd->as_pg_given = true;
		free(p);
	}
	ynode *px = rd_map(c, m, "proxy", path, false);
	if (px) {
		char *p = join(path, "proxy");
		static const char *const k[] = {"backendDomainSuffixes", "allowedDomains",
		                                "blockedCidrs", "egressEnabled", NULL};
		check_keys(c, px, p, k);
		rd_strv(c, px, "backendDomainSuffixes", p, &as->proxy.backend_domain_suffixes);
		rd_strv(c, px, "allowedDomains", p, &as->proxy.allowed_domains);
		rd_strv(c, px, "blockedCidrs", p, &as->proxy.blocked_cidrs);
		rd_bool(c, px, "egressEnabled", p, &as->proxy.egress_enabled);
		free(p);
	}
	ynode *sb = rd_map(c, m, "sandbox", path, false);
	if (sb) {
		char *p = join(path, "sandbox");
		static const char *const k[] = {"sandboxIdleTimeoutMs",
		                                "sandboxGlobalLifetimeMs",
		                                "sandboxReadyTimeoutMs",
		                                "execTimeoutMs",
		                                "workspaceSizeMb",
		                                "memoryMb",
		                                "cpus",
		                                "pids",
		                                "maxFileBytes",
		                                "workspaceDir",
		                                NULL};
		check_keys(c, sb, p, k);
		rd_u64(c, sb, "sandboxIdleTimeoutMs", p, 1000, 7ull * 24 * 3600 * 1000,
		       &as->sandbox.idle_timeout_ms);
		rd_u64(c, sb, "sandboxGlobalLifetimeMs", p, 1000, 30ull * 24 * 3600 * 1000,
		       &as->sandbox.global_lifetime_ms);
		rd_u64(c, sb, "sandboxReadyTimeoutMs", p, 100, 600000,
		       &as->sandbox.ready_timeout_ms);
		rd_u64(c, sb, "execTimeoutMs", p, 100, 24ull * 3600 * 1000,
		       &as->sandbox.exec_timeout_ms);
		rd_u32(c, sb, "workspaceSizeMb", p, 16, 1024 * 1024,
		       &as->sandbox.workspace_size_mb);
		rd_u32(c, sb, "memoryMb", p, 64, 1024 * 1024, &as->sandbox.memory_mb);
		rd_double(c, sb, "cpus", p, 0.05, 1024, &as->sandbox.cpus);
		rd_u32(c, sb, "pids", p, 16, 1000000, &as->sandbox.pids);
		rd_u64(c, sb, "maxFileBytes", p, 1, 1ull << 40, &as->sandbox.max_file_bytes);
		rd_str(c, sb, "workspaceDir", p, &as->sandbox.workspace_dir);
		free(p);
	}
	ynode *sc = rd_map(c, m, "scaling", path, false);
	if (sc) {
		char *p = join(path, "scaling");
		static const char *const k[] = {"prewarmPoolSize", "maxTotalJobs",
		                                "maxConcurrentCreates", "perUserSandboxLimit",
		                                NULL};
		check_keys(c, sc, p, k);
		rd_u32(c, sc, "prewarmPoolSize", p, 0, 10000, &as->scaling.prewarm_pool_size);
		rd_u32(c, sc, "maxTotalJobs", p, 1, 100000, &as->scaling.max_total_jobs);
		rd_u32(c, sc, "maxConcurrentCreates", p, 1, 1000,
		       &as->scaling.max_concurrent_creates);
		rd_u32(c, sc, "perUserSandboxLimit", p, 1, 100000,
		       &as->scaling.per_user_sandbox_limit);
		free(p);
	}
	ynode *tk = rd_map(c, m, "tokens", path, false);
	if (tk) {
		char *p = join(path, "tokens");
		static const char *const k[] = {"ttlSeconds", "issuer", NULL};
		check_keys(c, tk, p, k);
		rd_u32(c, tk, "ttlSeconds", p, 10, 7 * 24 * 3600, &as->tokens.token_ttl_s);
		rd_str(c, tk, "issuer", p, &as->tokens.issuer);
		free(p);
	}
}

struct legacy {
	const char *old;
	const char *new_;
	const char *why;
};

static const struct legacy legacy_top[] = {
    {"r2", "rr", "the app-builder namespace is 'rr'"},
    {"jsExecutor", "rr.jsExecutor", "components moved under 'rr'"},
    {"r2Agent", "(removed)",
     "the r2 agent belongs to the host platform, not Stockade; agent sandboxes are "
     "configured under 'rr.agentSandbox'"},
    {"agentSandbox", "rr.agentSandbox", "components moved under 'rr'"},
    {"rrGitServer", "rr.gitServer", "components moved under 'rr' and renamed"},
    {"blobStorage", "rr.blobStorage", "blob storage moved under 'rr'"},
};

static const struct legacy legacy_rr[] = {
    {"r2Agent", "(removed)",
     "the r2 agent belongs to the host platform, not Stockade; agent sandboxes are "
     "configured under 'rr.agentSandbox'"},
    {"rrAgent", "(removed)",
     "the r2 agent belongs to the host platform, not Stockade; agent sandboxes are "
     "configured under 'rr.agentSandbox'"},
    {"rrGitServer", "rr.gitServer", "renamed"},
    {"rrBlobStorage", "rr.blobStorage", "renamed"},
    {"mcp", "mcp", "the MCP server is configured at the top level and is not under rr.enabled"},
};

static void check_legacy(struct yctx *c, ynode *map, const char *path, const struct legacy *list,
                         size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (mget(c, map, list[i].old) == NULL)
			continue;
		char *kp = join(path, list[i].old);
		config_problems_add(c->pr, CONFIG_ERROR, kp,
		                    "legacy key: %s -> %s (%s); the old layout is not accepted, "
		                    "nothing starts until it is moved",
		                    kp, list[i].new_, list[i].why);
		free(kp);
	}
}

static const char *const top_keys[] = {
    "listen", "dataDir", "logLevel", "apiTokens", "encryptionKey", "encryptionKeyFile", "jwtSecret",
    "jwtSecretFile", "postgresql", "config", "http", "codeExecutor", "rr", "mcp", "r2",
    "jsExecutor", "r2Agent", "agentSandbox", "rrGitServer", "blobStorage",
    /* the Helm chart's own settings (image, replicas...):
                                          accepted and ignored, so its values file checks */
    "deploy", NULL};

static void rd_backend(struct yctx *c, ynode *m, const char *path)
{
	struct stockade_config *cfg = c->cfg;
	rd_secret(c, m, "encryptionKey", path, &cfg->encryption_key, &c->pend->encryption_key_file,
	          &c->pend->encryption_key_origin);
	rd_secret(c, m, "jwtSecret", path, &cfg->jwt_secret, &c->pend->jwt_secret_file,
	          &c->pend->jwt_secret_origin);
	ynode *pg = rd_map(c, m, "postgresql", path, false);
	if (pg) {
		char *p = join(path, "postgresql");
		rd_pg(c, pg, p, &cfg->postgresql);
		free(p);
	}
}

static void rd_root(struct yctx *c, ynode *root)
{
	struct stockade_config *cfg = c->cfg;
	check_legacy(c, root, "", legacy_top, ST_ARRAY_SIZE(legacy_top));
	check_keys(c, root, "", top_keys);

	const char *v;
	if (rd_scalar(c, root, "listen", "", &v))
		config__set_str(&cfg->listen, v);
	rd_str(c, root, "dataDir", "", &cfg->data_dir);
	static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
	int lv;
	if (rd_enum(c, root, "logLevel", "", levels, &lv))
		cfg->log_level = (enum config_log_level)lv;
	rd_strv(c, root, "apiTokens", "", &c->pend->api_tokens);

	rd_backend(c, root, "");
	/* the chart nests the backend keys under `config:`; accept that layout too */
	ynode *chart = rd_map(c, root, "config", "", false);
	if (chart) {
		static const char *const k[] = {"encryptionKey", "encryptionKeyFile", "jwtSecret",
		                                "jwtSecretFile", "postgresql",        NULL};
		check_keys(c, chart, "config", k);
		static const char *const both[] = {"encryptionKey", "jwtSecret", "postgresql"};
		for (size_t i = 0; i < ST_ARRAY_SIZE(both); i++)
			if (mget(c, root, both[i]) && mget(c, chart, both[i])) {
				char *kp = join("config", both[i]);
				config_problems_add(
				    c->pr, CONFIG_ERROR, kp,
				    "set both here and at the top level ('%s'); keep "
				    "one of them",
				    both[i]);
				free(kp);
			}
		rd_backend(c, chart, "config");
	}

	ynode *h = rd_map(c, root, "http", "", false);
	if (h) {
		static const char *const k[] = {"maxBodyBytes",     "threads",   "connectionLimit",
		                                "requestTimeoutMs", "publicUrl", NULL};
		check_keys(c, h, "http", k);
		rd_u64(c, h, "maxBodyBytes", "http", 1024, 1ull << 34, &cfg->http.max_body_bytes);
		rd_u32(c, h, "threads", "http", 0, 1024, &cfg->http.threads);
		rd_u32(c, h, "connectionLimit", "http", 1, 1000000, &cfg->http.connection_limit);
		rd_u32(c, h, "requestTimeoutMs", "http", 100, 3600000,
		       &cfg->http.request_timeout_ms);
		rd_str(c, h, "publicUrl", "http", &cfg->http.public_url);
	}

	static const char *const modes[] = {"privileged", "seccomp", "unsandboxed", NULL};
	ynode *ce = rd_map(c, root, "codeExecutor", "", true);
	if (ce) {
		static const char *const k[] = {"enabled",       "mode",         "limits",
		                                "pythonModules", "jsModulesDir", NULL};
		check_keys(c, ce, "codeExecutor", k);
		rd_bool(c, ce, "enabled", "codeExecutor", &cfg->code_executor.enabled);
		int m;
		if (rd_enum(c, ce, "mode", "codeExecutor", modes, &m)) {
			cfg->code_executor.mode = (enum config_exec_mode)m;
			cfg->code_executor.mode_explicit = true;
		}
		rd_limits(c, ce, "codeExecutor", &cfg->code_executor.limits);
		rd_strv(c, ce, "pythonModules", "codeExecutor", &cfg->code_executor.python_modules);
		if (mget(c, ce, "jsModulesDir"))
			rd_str(c, ce, "jsModulesDir", "codeExecutor",
			       &cfg->code_executor.js_modules_dir);
	}

	ynode *rr = rd_map(c, root, "rr", "", true);
	if (rr) {
		static const char *const k[] = {"enabled",   "jsExecutor",  "agentSandbox",
		                                "gitServer", "blobStorage", "r2Agent",
		                                "rrAgent",   "rrGitServer", "rrBlobStorage",
		                                "mcp",       NULL};
		check_legacy(c, rr, "rr", legacy_rr, ST_ARRAY_SIZE(legacy_rr));
		check_keys(c, rr, "rr", k);
		rd_bool(c, rr, "enabled", "rr", &cfg->rr.enabled);
		ynode *js = rd_map(c, rr, "jsExecutor", "rr", true);
		if (js) {
			static const char *const jk[] = {
			    "enabled", "mode", "limits", "jsModulesDir", "maxFunctionVersions",
			    NULL};
			check_keys(c, js, "rr.jsExecutor", jk);
			rd_tri(c, js, "enabled", "rr.jsExecutor",
			       &cfg->rr.js_executor.enabled_setting);
			int m;
			if (rd_enum(c, js, "mode", "rr.jsExecutor", modes, &m)) {
				cfg->rr.js_executor.mode = (enum config_exec_mode)m;
				c->pend->js_mode_explicit = true;
			}
			rd_limits(c, js, "rr.jsExecutor", &cfg->rr.js_executor.limits);
			if (mget(c, js, "jsModulesDir")) {
				rd_str(c, js, "jsModulesDir", "rr.jsExecutor",
				       &cfg->rr.js_executor.js_modules_dir);
				c->pend->js_modules_dir_explicit = true;
			}
			rd_u32(c, js, "maxFunctionVersions", "rr.jsExecutor", 1, 10000,
			       &cfg->rr.js_executor.max_function_versions);
		}
		ynode *as = rd_map(c, rr, "agentSandbox", "rr", true);
		if (as)
			rd_agent_sandbox(c, as, "rr.agentSandbox");
		ynode *gs = rd_map(c, rr, "gitServer", "rr", true);
		if (gs) {
			static const char *const gk[] = {"enabled", "skipBlobStorageValidation",
			                                 "maxPushBytes", NULL};
			check_keys(c, gs, "rr.gitServer", gk);
			rd_tri(c, gs, "enabled", "rr.gitServer",
			       &cfg->rr.git_server.enabled_setting);
			rd_bool(c, gs, "skipBlobStorageValidation", "rr.gitServer",
			        &cfg->rr.git_server.skip_blob_storage_validation);
			rd_u64(c, gs, "maxPushBytes", "rr.gitServer", 1024, 1ull << 40,
			       &cfg->rr.git_server.max_push_bytes);
		}
		ynode *bs = rd_map(c, rr, "blobStorage", "rr", true);
		if (bs)
			rd_blob_storage(c, bs, "rr.blobStorage");
	}

	ynode *mcp = rd_map(c, root, "mcp", "", true);
	if (mcp) {
		static const char *const k[] = {
		    "enabled", "resource", "oauth", "staticToken", "allowUnauthenticated", NULL};
		check_keys(c, mcp, "mcp", k);
		rd_bool(c, mcp, "enabled", "mcp", &cfg->mcp.enabled);
		rd_str(c, mcp, "resource", "mcp", &cfg->mcp.resource);
		rd_str(c, mcp, "staticToken", "mcp", &cfg->mcp.static_token);
		rd_bool(c, mcp, "allowUnauthenticated", "mcp", &cfg->mcp.allow_unauthenticated);
		ynode *o = rd_map(c, mcp, "oauth", "mcp", false);
		if (o) {
			static const char *const ok[] = {"authorizationServers",
			                                 "issuer",
			                                 "audience",
			                                 "jwksFile",
			                                 "jwksUrl",
			                                 "jwksCacheSeconds",
			                                 "scopesSupported",
			                                 "requiredScopes",
			                                 NULL};
			check_keys(c, o, "mcp.oauth", ok);
			rd_strv(c, o, "authorizationServers", "mcp.oauth",
			        &cfg->mcp.authorization_servers);
			rd_str(c, o, "issuer", "mcp.oauth", &cfg->mcp.issuer);
			rd_str(c, o, "audience", "mcp.oauth", &cfg->mcp.audience);
			rd_str(c, o, "jwksFile", "mcp.oauth", &cfg->mcp.jwks_file);
			rd_str(c, o, "jwksUrl", "mcp.oauth", &cfg->mcp.jwks_url);
			rd_u32(c, o, "jwksCacheSeconds", "mcp.oauth", 0, 86400,
			       &cfg->mcp.jwks_cache_s);
			rd_strv(c, o, "scopesSupported", "mcp.oauth", &cfg->mcp.scopes_supported);
			rd_strv(c, o, "requiredScopes", "mcp.oauth", &cfg->mcp.required_scopes);
		}
	}
}

int config__parse_yaml(const char *yaml, size_t len, const char *name, struct stockade_config *cfg,
                       struct config__pending *pend, struct config_problems *pr)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&parser))
		abort();
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&parser, &doc)) {
		config_problems_add(
		    pr, CONFIG_ERROR, "", "'%s' is not valid YAML: %s at line %zu column %zu%s%s",
		    name, parser.problem ? parser.problem : "syntax error",
		    parser.problem_mark.line + 1, parser.problem_mark.column + 1,
		    parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		return -EINVAL;
	}
	/* a second document in the same file would be ignored silently: refuse it */
	yaml_document_t extra;
	int more = 0;
	if (yaml_parser_load(&parser, &extra)) {
		more = yaml_document_get_root_node(&extra) != NULL;
		yaml_document_delete(&extra);
	}
	yaml_parser_delete(&parser);

	struct yctx c = {.doc = &doc, .pr = pr, .cfg = cfg, .pend = pend};
	ynode *root = yaml_document_get_root_node(&doc);
	int rc = 0;
	if (more)
		config_problems_add(pr, CONFIG_ERROR, "",
		                    "'%s' holds more than one YAML document ('---'); keep one",
		                    name);
	if (root == NULL || is_null(root)) {
		/* an empty file is the chart defaults: everything under rr off */
	} else if (root->type != YAML_MAPPING_NODE) {
		config_problems_add(pr, CONFIG_ERROR, "",
		                    "'%s' must be a mapping of keys (listen, rr, mcp, ...), not %s",
		                    name, kind(root));
		rc = -EINVAL;
	} else {
		size_t nn = (size_t)(doc.nodes.top - doc.nodes.start);
		uint8_t *seen = st_xcalloc(nn + 1, 1);
		find_duplicates(&c, root, "", seen, 0);
		free(seen);
		if (check_merges(&c, name))
			rd_root(&c, root);
		else
			rc = -EINVAL;
	}
	yaml_document_delete(&doc);
	return rc;
}
