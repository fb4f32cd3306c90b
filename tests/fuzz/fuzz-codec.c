/*
 * fuzz-codec.c - libFuzzer target: the strict decoders every client-supplied number or encoded
 * blob goes through: hex, base64, base64url (crypto.h) and st_parse_i64/u64/size (common.h).
 * Each must either refuse or decode to something that encodes back to the same canonical text;
 * never crash, never read past `len`.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "crypto/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decoders take (ptr, len): hand them an exact-size heap copy so ASan sees any over-read. */
static char *exact_copy(const uint8_t *data, size_t size)
{
	char *p = malloc(size ? size : 1);
	if (!p)
		abort();
	if (size)
		memcpy(p, data, size);
	return p;
}

static void check_hex(const char *s, size_t n)
{
	uint8_t *out = NULL;
	size_t outlen = 0;
	if (crypto_hex_decode(s, n, &out, &outlen) < 0)
		return;
	if (outlen * 2 != n)
		abort();
	char *back = crypto_hex_encode(out, outlen);
	if (!back || strncasecmp(back, s, n) != 0)
		abort(); /* decoded bytes do not encode back to the input */
	free(back);
	free(out);
}

static void check_b64(const char *s, size_t n, bool url)
{
	uint8_t *out = NULL;
	size_t outlen = 0;
	int r = url ? crypto_base64url_decode(s, n, &out, &outlen)
	            : crypto_base64_decode(s, n, &out, &outlen);
	if (r < 0)
		return;
	if (outlen > n)
		abort();
	char *back = url ? crypto_base64url_encode(out, outlen) : crypto_base64_encode(out, outlen);
	if (!back)
		abort();
	/* re-decoding the canonical form gives the same bytes */
	uint8_t *again = NULL;
	size_t againlen = 0;
	r = url ? crypto_base64url_decode(back, strlen(back), &again, &againlen)
	        : crypto_base64_decode(back, strlen(back), &again, &againlen);
	if (r < 0 || againlen != outlen || (outlen && memcmp(again, out, outlen) != 0))
		abort();
	free(again);
	free(back);
	free(out);
}

static void check_numbers(const uint8_t *data, size_t size)
{
	/* The parsers take C strings: cut at the first NUL like a header or query value would. */
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	int64_t i = 0;
	uint64_t u = 0, z = 0;
	if (st_parse_i64(s, &i) == 0) {
		char back[32];
		snprintf(back, sizeof(back), "%lld", (long long)i);
		int64_t i2 = 0;
		if (st_parse_i64(back, &i2) < 0 || i2 != i)
			abort();
	}
	if (st_parse_u64(s, &u) == 0) {
		char back[32];
		snprintf(back, sizeof(back), "%llu", (unsigned long long)u);
		uint64_t u2 = 0;
		if (st_parse_u64(back, &u2) < 0 || u2 != u)
			abort();
	}
	(void)st_parse_size(s, &z);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = exact_copy(data, size);
	check_hex(s, size);
	check_b64(s, size, false);
	check_b64(s, size, true);
	free(s);
	check_numbers(data, size);
	return 0;
}
