/*
 * httpload.c - a small closed-loop HTTP load generator for the benchmarks: C connections, each
 * a libcurl easy handle kept alive across requests and driven by one curl multi handle; every
 * connection sends its next request as soon as the previous reply arrived. It records each
 * request's latency and prints one JSON line:
 *   {"requests":N,"ok":K,"errors":E,"seconds":S,"rps":R,"p50_ms":..,"p90_ms":..,"p99_ms":..,
 *    "max_ms":..,"mean_ms":..,"connections":C}
 * A reply counts as ok when its status is 200 and, with -e, its body contains the string.
 *
 * usage: httpload -u URL [-m METHOD] [-d BODY] [-H HEADER]... [-n REQUESTS] [-c CONNECTIONS]
 *                 [-w WARMUP] [-e EXPECT] [-p PAUSE_MS]
 * -p: each connection waits PAUSE_MS after a reply before its next request (an interactive
 * client that reads each result); rps then counts the pauses too.
 * Loopback only by intent: the benchmarks point it at a server they started themselves.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct conn {
	CURL *easy;
	char *body;
	size_t len, cap;
	double t0;
	double resume_at; /* with -p: when this connection sends its next request */
	int active;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
	struct conn *c = ud;
	size_t k = sz * n;
	if (c->len + k + 1 > c->cap) {
		size_t nc = (c->cap ? c->cap * 2 : 4096);
		while (nc < c->len + k + 1)
			nc *= 2;
		char *nb = realloc(c->body, nc);
		if (!nb)
			return 0;
		c->body = nb;
		c->cap = nc;
	}
	memcpy(c->body + c->len, p, k);
	c->len += k;
	c->body[c->len] = '\0';
	return k;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i];
}

int main(int argc, char **argv)
{
	const char *url = NULL, *method = "GET", *data = NULL, *expect = NULL;
	struct curl_slist *hdrs = NULL;
	long total = 1000, nconn = 1, warmup = 0;
	double pause_ms = 0;
	int opt;
	while ((opt = getopt(argc, argv, "u:m:d:H:n:c:w:e:p:")) != -1) {
		switch (opt) {
		case 'u':
			url = optarg;
			break;
		case 'm':
			method = optarg;
			break;
		case 'd':
			data = optarg;
			break;
		case 'H':
			hdrs = curl_slist_append(hdrs, optarg);
			break;
		case 'n':
			total = strtol(optarg, NULL, 10);
			break;
		case 'c':
			nconn = strtol(optarg, NULL, 10);
			break;
		case 'w':
			warmup = strtol(optarg, NULL, 10);
			break;
		case 'e':
			expect = optarg;
			break;
		case 'p':
			pause_ms = strtod(optarg, NULL);
			break;
		default:
			fprintf(stderr, "usage: httpload -u URL [-m METHOD] [-d BODY] [-H HEADER]... "
			                "[-n N] [-c CONNS] [-w WARMUP] [-e EXPECT] [-p PAUSE_MS]\n");
			return 2;
		}
	}
	if (!url || total <= 0 || nconn <= 0) {
		fprintf(stderr, "httpload: -u URL is required; -n and -c must be positive\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	hdrs = curl_slist_append(hdrs, "Expect:");
	CURLM *multi = curl_multi_init();
	struct conn *conns = calloc((size_t)nconn, sizeof(*conns));
	double *lat = calloc((size_t)total, sizeof(double));
	if (!conns || !lat)
		return 1;
	long started = 0, done = 0, ok = 0, errors = 0, measured = 0;
	long all = total + warmup;
	double t_start = 0;
	for (long i = 0; i < nconn; i++) {
		CURL *e = curl_easy_init();
		conns[i].easy = e;
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, &conns[i]);
		curl_easy_setopt(e, CURLOPT_PRIVATE, &conns[i]);
		curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
		curl_easy_setopt(e, CURLOPT_TIMEOUT, 120L);
		if (data) {
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, data);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(data));
		}
	}
	if (warmup == 0)
		t_start = now_ms();
	for (long i = 0; i < nconn && started < all; i++) {
		conns[i].len = 0;
		conns[i].t0 = now_ms();
		curl_multi_add_handle(multi, conns[i].easy);
		conns[i].active = 1;
		started++;
	}
	int running = 1;
	while (done < all) {
		curl_multi_perform(multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			struct conn *c;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
			long status = 0;
			curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
			double t = now_ms() - c->t0;
			int good = m->data.result == CURLE_OK && status == 200 &&
			           (!expect || (c->body && strstr(c->body, expect)));
			if (done >= warmup) {
				if (measured < total)
					lat[measured++] = t;
				if (good)
					ok++;
				else {
					errors++;
					if (errors <= 3)
						fprintf(stderr, "httpload: status %ld: %.300s\n", status,
						        c->body ? c->body : "");
				}
			}
			done++;
			if (done == warmup)
				t_start = now_ms();
			curl_multi_remove_handle(multi, m->easy_handle);
			c->active = 0;
			if (pause_ms > 0) {
				c->resume_at = now_ms() + pause_ms;
			} else if (started < all) {
				c->len = 0;
				c->t0 = now_ms();
				curl_multi_add_handle(multi, c->easy);
				c->active = 1;
				started++;
			}
		}
		int wait_ms = 100;
		for (long i = 0; pause_ms > 0 && i < nconn; i++) {
			struct conn *c = &conns[i];
			if (c->active || started >= all)
				continue;
			double left_ms = c->resume_at - now_ms();
			if (left_ms <= 0) {
				c->len = 0;
				c->t0 = now_ms();
				curl_multi_add_handle(multi, c->easy);
				c->active = 1;
				started++;
			} else if (left_ms < wait_ms) {
				wait_ms = (int)left_ms + 1;
			}
		}
		if (done < all)
			curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
	}
	double secs = (now_ms() - t_start) / 1000.0;
	qsort(lat, (size_t)measured, sizeof(double), cmp_double);
	double sum = 0;
	for (long i = 0; i < measured; i++)
		sum += lat[i];
	printf("{\"requests\":%ld,\"ok\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"rps\":%.1f,"
	       "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f,"
	       "\"connections\":%ld}\n",
	       measured, ok, errors, secs, secs > 0 ? (double)measured / secs : 0,
	       pct(lat, (size_t)measured, 0.50), pct(lat, (size_t)measured, 0.90),
	       pct(lat, (size_t)measured, 0.99), measured ? lat[measured - 1] : 0,
	       measured ? sum / (double)measured : 0, nconn);
	for (long i = 0; i < nconn; i++) {
		curl_easy_cleanup(conns[i].easy);
		free(conns[i].body);
	}
	curl_multi_cleanup(multi);
	curl_slist_free_all(hdrs);
	free(conns);
	free(lat);
	curl_global_cleanup();
	return errors ? 1 : 0;
}
