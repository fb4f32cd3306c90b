/*
 * http-router.c - route patterns and matching.
 *
 * A pattern is a list of '/'-separated segments: literals, {name} parameters, and an optional
 * final "*" that matches the rest of the path (possibly empty). Matching is a linear scan
 * (tens of routes): among the routes whose segments match, a literal-only route beats one with
 * parameters, which beats a prefix route; among equals, more literal segments win, then the
 * route registered first. Parameters are percent-decoded per segment, so "%2F" inside an {id}
 * stays inside that parameter.
 */
#include <ctype.h>

#include "http/http-internal.h"

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int http__percent_decode(const char *in, size_t len, char **out)
{
	return http__percent_decode_ex(in, len, false, out);
}

int http__percent_decode_ex(const char *in, size_t len, bool plus_space, char **out)
{
	char *r = st_xmalloc(len + 1);
	size_t j = 0;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '%' && i + 2 < len) {
			int hi = hexval((unsigned char)in[i + 1]),
			    lo = hexval((unsigned char)in[i + 2]);
			if (hi >= 0 && lo >= 0) {
				r[j++] = (char)(hi * 16 + lo);
				i += 2;
				continue;
			}
		}
		r[j++] = (plus_space && in[i] == '+') ? ' ' : in[i];
	}
	r[j] = '\0';
	if (strlen(r) != j) {
		/* "%00" would truncate the value silently: refuse it */
		free(r);
		return -EINVAL;
	}
	*out = r;
	return 0;
}

int http__route_parse(struct http__route *r, struct st_error **err)
{
	const char *p = r->pattern;
	if (p[0] != '/')
		return st_error_make(err, EINVAL, "route pattern '%s' must start with '/'", p);
	p++;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 1 && p[0] == '*') {
			if (slash && slash[1] != '\0')
				return st_error_make(
				    err, EINVAL, "route pattern '%s': '*' must be the last segment",
				    r->pattern);
			r->prefix = true;
			break;
		}
		if (r->nsegs >= HTTP__MAX_SEGMENTS)
			return st_error_make(err, E2BIG, "route pattern '%s' has too many segments",
			                     r->pattern);
		char *seg = strndup(p, n);
		if (!seg)
			return st_error_make(err, ENOMEM, "out of memory");
		if (seg[0] == '{') {
			if (n < 3 || seg[n - 1] != '}')
				return st_error_make(
				    err, EINVAL, "route pattern '%s': bad parameter segment '%s'",
				    r->pattern, seg);
		} else {
			r->literals++;
		}
		r->segs[r->nsegs++] = seg;
		if (!slash)
			break;
		p = slash + 1;
		if (*p == '\0') {
			/* trailing slash: an empty literal segment */
			if (r->nsegs >= HTTP__MAX_SEGMENTS)
				return st_error_make(err, E2BIG, "route pattern '%s' too long",
				                     r->pattern);
			r->segs[r->nsegs++] = st_xstrdup("");
			r->literals++;
		}
	}
	return 0;
}

void http__route_free(struct http__route *r)
{
	for (size_t i = 0; i < r->nsegs; i++)
		free(r->segs[i]);
	free(r->method);
	free(r->pattern);
	free(r->name);
	free(r->scope);
}

struct split {
	const char *start[HTTP__MAX_SEGMENTS + 1];
	size_t len[HTTP__MAX_SEGMENTS + 1];
	size_t n;
	bool overflow;
};

static void split_path(const char *path, struct split *s)
{
	s->n = 0;
	s->overflow = false;
	const char *p = path;
	if (*p == '/')
		p++;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (s->n >= ST_ARRAY_SIZE(s->start)) {
			s->overflow = true;
			return;
		}
		s->start[s->n] = p;
		s->len[s->n] = n;
		s->n++;
		if (!slash)
			return;
		p = slash + 1;
	}
}

/* rank: higher is better. 0 = no match */
static unsigned route_rank(const struct http__route *r, const struct split *s)
{
	if (s->overflow && !r->prefix)
		return 0;
	if (r->prefix) {
		/* a prefix route "/a/ *" matches "/a", "/a/", "/a/b/c" */
		if (s->n < r->nsegs)
			return 0;
	} else if (s->n != r->nsegs) {
		return 0;
	}
	for (size_t i = 0; i < r->nsegs; i++) {
		const char *seg = r->segs[i];
		if (seg[0] == '{') {
			if (s->len[i] == 0)
				return 0;
			continue;
		}
		if (strlen(seg) != s->len[i] || memcmp(seg, s->start[i], s->len[i]) != 0)
			return 0;
	}
	unsigned kind = r->prefix ? 1 : (r->literals == r->nsegs ? 3 : 2);
	return kind * 1000 + r->literals + 1;
}

static bool method_matches(const struct http__route *r, const char *method)
{
	if (strcmp(r->method, "*") == 0 || strcmp(r->method, method) == 0)
		return true;
	return strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0;
}

struct http__route *http__route_match(struct http_server *srv, struct http__conn *c,
                                      const char *method, const char *path, char *allow,
                                      size_t allow_size)
{
	struct split s;
	split_path(path, &s);
	struct http__route *best = NULL;
	unsigned best_rank = 0;
	bool other_method = false;
	allow[0] = '\0';
	size_t alen = 0;
	for (size_t i = 0; i < srv->nroutes; i++) {
		struct http__route *r = &srv->routes[i];
		unsigned rank = route_rank(r, &s);
		if (rank == 0)
			continue;
		if (!method_matches(r, method)) {
			other_method = true;
			if (!strstr(allow, r->method)) {
				int w = snprintf(allow + alen, allow_size - alen, "%s%s",
				                 alen ? ", " : "", r->method);
				if (w > 0 && (size_t)w < allow_size - alen)
					alen += (size_t)w;
			}
			continue;
		}
		if (rank > best_rank) {
			best = r;
			best_rank = rank;
		}
	}
	if (!best) {
		if (!other_method)
			allow[0] = '\0';
		return NULL;
	}
	/* extract params */
	c->nparams = 0;
	for (size_t i = 0; i < best->nsegs && c->nparams < HTTP__MAX_PARAMS; i++) {
		if (best->segs[i][0] != '{')
			continue;
		char *val = NULL;
		if (http__percent_decode(s.start[i], s.len[i], &val) < 0)
			return NULL;
		const char *nm = best->segs[i] + 1;
		c->param_names[c->nparams] = strndup(nm, strlen(nm) - 1);
		c->param_values[c->nparams] = val;
		c->nparams++;
	}
	if (best->prefix && c->nparams < HTTP__MAX_PARAMS) {
		const char *rest = "";
		if (s.n > best->nsegs)
			rest = s.start[best->nsegs];
		else if (s.overflow)
			rest = "";
		/* for an overflowing split, find the rest by walking the path */
		if (s.overflow) {
			const char *p = path + (path[0] == '/');
			for (size_t k = 0; k < best->nsegs && p; k++) {
				p = strchr(p, '/');
				if (p)
					p++;
			}
			rest = p ? p : "";
		}
		c->param_names[c->nparams] = st_xstrdup("*");
		c->param_values[c->nparams] = st_xstrdup(rest);
		c->nparams++;
	}
	return best;
}
