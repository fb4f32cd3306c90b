/*
 * fuzz-stream.c - libFuzzer target: any bytes as an encrypted snapshot stream and as a sealed
 * buffer. Opening must fail cleanly (never crash, never hand out data as authenticated).
 */
#include <stdint.h>
#include <stdlib.h>

#include "crypto/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink(void *ctx, const void *d, size_t n)
{
	(void)ctx;
	(void)d;
	(void)n;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[32] = {7};
	struct crypto_stream *s = NULL;
	if (crypto_stream_open_new(key, sink, NULL, &s, NULL) < 0)
		abort();
	/* feed in two pieces to exercise record reassembly */
	size_t half = size / 2;
	if (crypto_stream_update(s, data, half, NULL) == 0 &&
	    crypto_stream_update(s, data + half, size - half, NULL) == 0 &&
	    crypto_stream_final(s, NULL) == 0)
		abort(); /* random bytes authenticated */
	crypto_stream_free(s);
	uint8_t *out = NULL;
	size_t outlen = 0;
	if (crypto_open(key, NULL, 0, data, size, &out, &outlen, NULL) == 0)
		abort();
	return 0;
}
