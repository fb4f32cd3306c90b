/*
 * fuzz-blobxml.c - libFuzzer target: any bytes as the body of an S3 / GCS / Azure response.
 * Drives the same minimal XML reader the backends use (blob-internal.h) the way they use it:
 * the ListObjectsV2 walk (Contents: Key, Size, ETag, LastModified; IsTruncated,
 * NextContinuationToken), the Azure List Blobs walk (Blob: Name, Content-Length, Etag,
 * Last-Modified; NextMarker), the multipart UploadId, an error body (Code, Message) through
 * blob__http_fail, and the HTTP-date / ISO 8601 parser. A storage server is outside the trust
 * boundary: its replies must never crash the service.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blob/blob-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const char *b, const char *end, const char *elem, const char *const *fields,
                 size_t nfields)
{
	const char *pos = b, *in, *in_end;
	unsigned guard = 0;
	while (blob__xml_next(&pos, end, elem, &in, &in_end)) {
		if (in < b || in_end > end || in > in_end || pos > end)
			abort(); /* an element reported outside the body */
		for (size_t i = 0; i < nfields; i++) {
			char *v = blob__xml_text(in, in_end, fields[i]);
			if (v && i == 3)
				(void)blob__parse_time(v);
			free(v);
		}
		if (++guard > 100000)
			abort(); /* the walk does not advance */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The HTTP helper keeps bodies NUL-terminated (st_buf); mirror that. */
	struct blob__http_resp resp = {0};
	st_buf_init(&resp.body, size + 1);
	if (st_buf_append(&resp.body, data, size) < 0)
		abort();
	const char *b = resp.body.data ? resp.body.data : "";
	const char *end = b + resp.body.len;

	static const char *const s3[] = {"Key", "Size", "ETag", "LastModified"};
	static const char *const az[] = {"Name", "Content-Length", "Etag", "Last-Modified"};
	walk(b, end, "Contents", s3, 4);
	walk(b, end, "Blob", az, 4);
	static const char *const top[] = {"IsTruncated", "NextContinuationToken", "NextMarker",
	                                  "UploadId"};
	for (size_t i = 0; i < 4; i++)
		free(blob__xml_text(b, end, top[i]));

	/* error bodies: with and without the Azure header */
	static const long statuses[] = {400, 403, 404, 409, 500};
	for (size_t i = 0; i < 5; i++) {
		struct st_error *err = NULL;
		resp.status = statuses[i];
		resp.ms_error_code = (i & 1) ? (char *)"BlobNotFound" : NULL;
		if (blob__http_fail(&resp, "fuzz", &err) >= 0 || err == NULL)
			abort();
		st_error_free(err);
	}
	resp.ms_error_code = NULL;

	/* the date parser on the raw bytes as a C string */
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	(void)blob__parse_time(s);
	free(s);
	st_buf_release(&resp.body);
	return 0;
}
