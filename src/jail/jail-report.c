/*
 * jail-report.c - the jail report: status names, JSON form, release.
 */
#include "jail/jail-internal.h"

const char *jail_status_name(enum jail_status s)
{
	switch (s) {
	case JAIL_OK: return "ok";
	case JAIL_ERROR: return "error";
	case JAIL_SIGNALED: return "signaled";
	case JAIL_TIMEOUT: return "timeout";
	case JAIL_MEMORY_LIMIT: return "memory_limit";
	case JAIL_OUTPUT_LIMIT: return "output_limit";
	case JAIL_SANDBOX_VIOLATION: return "sandbox_violation";
	case JAIL_SETUP_ERROR: return "setup_error";
	default: return "unknown";
	}
}

static const struct {
	unsigned bit;
	const char *name;
} hit_names[] = {
    {JAIL_HIT_MEMORY, "memory"}, {JAIL_HIT_PIDS, "pids"},     {JAIL_HIT_WALL, "wall"},
    {JAIL_HIT_CPU, "cpu"},       {JAIL_HIT_OUTPUT, "output"}, {JAIL_HIT_FSIZE, "fsize"},
};

/* Captured output is arbitrary bytes: valid UTF-8 goes through as is, anything else is
   replaced byte by byte with U+FFFD so the JSON stays valid. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0) {
		len = 2;
		cp = c & 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3;
		cp = c & 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[k] & 0x3f);
	}
	static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static json_t *output_string(const char *p, size_t n)
{
	json_t *s = json_stringn(p, n);
	if (s)
		return s;
	struct st_buf b;
	st_buf_init(&b, n * 3 + 16);
	const unsigned char *u = (const unsigned char *)p;
	for (size_t i = 0; i < n;) {
		size_t len = utf8_seq_len(u + i, n - i);
		if (len) {
			st_buf_append(&b, p + i, len);
			i += len;
		} else {
			st_buf_append(&b, "\xef\xbf\xbd", 3);
			i++;
		}
	}
	s = json_stringn(b.data ? b.data : "", b.len);
	st_buf_release(&b);
	return s ? s : json_string("");
}

json_t *jail_report_to_json(const struct jail_report *r)
{
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string(jail_status_name(r->status)));
	bool exited = r->status == JAIL_OK || r->status == JAIL_ERROR;
	json_object_set_new(o, "exitCode", exited ? json_integer(r->exit_code) : json_null());
	json_object_set_new(o, "signal", r->signal ? json_integer(r->signal) : json_null());
	json_object_set_new(o, "wallMs", json_integer(r->wall_ms));
	json_object_set_new(o, "cpuMs", json_integer(r->cpu_ms));
	json_object_set_new(o, "maxRssKb", json_integer(r->max_rss_kb));
	json_t *hits = json_array();
	for (size_t i = 0; i < ST_ARRAY_SIZE(hit_names); i++)
		if (r->limits_hit & hit_names[i].bit)
			json_array_append_new(hits, json_string(hit_names[i].name));
	json_object_set_new(o, "limitsHit", hits);
	if (r->status == JAIL_SANDBOX_VIOLATION) {
		json_t *v = json_object();
		json_object_set_new(v, "syscall",
		                    r->violation_syscall ? json_string(r->violation_syscall)
		                                         : json_null());
		json_object_set_new(o, "violation", v);
	}
	if (r->setup_step || r->setup_error) {
		json_t *s = json_object();
		json_object_set_new(s, "step", json_string(r->setup_step ? r->setup_step : ""));
		json_object_set_new(s, "message",
		                    json_string(r->setup_error ? r->setup_error : ""));
		json_object_set_new(o, "setupError", s);
	}
	if (r->out)
		json_object_set_new(o, "stdout", output_string(r->out, r->out_len));
	if (r->err)
		json_object_set_new(o, "stderr", output_string(r->err, r->err_len));
	json_object_set_new(o, "stdoutTruncated", json_boolean(r->out_truncated));
	json_object_set_new(o, "stderrTruncated", json_boolean(r->err_truncated));
	json_t *w = json_array();
	for (size_t i = 0; i < r->n_warnings; i++)
		json_array_append_new(w, json_string(r->warnings[i]));
	json_object_set_new(o, "warnings", w);
	return o;
}

void jail_report_release(struct jail_report *r)
{
	if (r == NULL)
		return;
	free(r->violation_syscall);
	free(r->setup_step);
	free(r->setup_error);
	free(r->out);
	free(r->err);
	for (size_t i = 0; i < r->n_warnings; i++)
		free(r->warnings[i]);
	free(r->warnings);
	memset(r, 0, sizeof(*r));
}
