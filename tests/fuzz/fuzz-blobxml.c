/*
 * fuzz-blobxml.c - libFuzzer target: any bytes as the body of an S3 / GCS / Azure response.
 * Drives the code the backends use (blob-internal.h): the listing-page parser with the
 * ListObjectsV2 format (Contents: Key, Size, ETag, LastModified) and the Azure List Blobs one
 * (Blob: Name, Content-Length, Etag, Last-Modified), the continuation fields (IsTruncated,
 * NextContinuationToken, NextMarker), the multipart UploadId, an error body (Code, Message) through
 * blob__http_fail, and the HTTP-date / ISO 8601 parser. A storage server is outside the trust
 * boundary: its replies must never crash the service.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blob/blob-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks each entry the parser hands on; counts them so a walk that does not advance shows. */
static int on_entry(const struct blob_entry *e, void *ud)
{
	unsigned *n = ud;
	if (e->key == NULL || ++*n > 100000)
		abort();
	return 0;
}

/* The listing formats the backends use, as they declare them. */
static const struct blob__list_format *const formats[] = {&blob__s3_list_format,
                                                          &blob__az_list_format};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The HTTP helper keeps bodies NUL-terminated (st_buf); mirror that. */
	struct blob__http_resp resp = {0};
	st_buf_init(&resp.body, size + 1);
	if (st_buf_append(&resp.body, data, size) < 0)
		abort();
	const char *b = resp.body.data ? resp.body.data : "";
	const char *end = b + resp.body.len;

	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		struct st_error *err = NULL;
		unsigned n = 0;
		int r = blob__list_page(formats[i], &resp, on_entry, &n, &err);
		if ((r < 0) != (err != NULL))
			abort(); /* a failure without its message, or a message without a failure */
		st_error_free(err);
	}
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
