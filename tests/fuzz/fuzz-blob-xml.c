/*
 * fuzz-blob-xml.c - libFuzzer target: any bytes as an S3 or Azure response body (what a hostile
 * or broken storage server can send). The minimal XML reader the blob backends use must never
 * crash, read out of bounds or leak, whatever the nesting, entities or truncation.
 */
#include <stdint.h>
#include <stdlib.h>

#include "blob/blob-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The backends always hold a NUL-terminated copy (st_buf); do the same. */
	char *b = malloc(size + 1);
	if (b == NULL)
		return 0;
	memcpy(b, data, size);
	b[size] = '\0';
	const char *end = b + size;
	static const char *const tags[] = {"Contents",   "Blob", "Key",
	                                   "Name",       "Size", "NextContinuationToken",
	                                   "NextMarker", "Code", "Message"};
	for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		char *t = blob__xml_text(b, end, tags[i]);
		free(t);
	}
	const char *pos = b, *in, *in_end;
	int n = 0;
	while (n++ < 10000 && blob__xml_next(&pos, end, "Contents", &in, &in_end)) {
		char *k = blob__xml_text(in, in_end, "Key");
		free(k);
	}
	(void)blob__parse_time(b);
	free(b);
	return 0;
}
