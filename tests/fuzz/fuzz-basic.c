/*
 * fuzz-basic.c - libFuzzer target: any bytes as the value of an Authorization header decoded
 * as Basic credentials (what the git routes accept), and as a git repository name from a URL.
 * Decoding must never crash or read out of bounds; a password it returns is what follows the
 * first ':' of the decoded credentials and holds no NUL byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "git/git.h"
#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	char *pw = http_basic_decode(s);
	if (pw) {
		/* re-encode what the decoder saw and compare */
		const char *b64 = s + 6;
		while (*b64 == ' ')
			b64++;
		size_t n = strlen(b64);
		while (n > 0 && b64[n - 1] == ' ')
			n--;
		unsigned char *raw = malloc(n / 4 * 3 + 1);
		if (!raw)
			abort();
		int len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
		if (len < 0)
			abort();
		const char *colon = memchr(raw, ':', (size_t)len);
		if (!colon || strncmp(colon + 1, pw, strlen(pw)) != 0)
			abort();
		free(raw);
		free(pw);
	}
	(void)git_repo_name_valid(s);
	free(s);
	return 0;
}
