/*
 * fuzz-egress.c - libFuzzer target: any bytes as the head of a request to the egress proxy
 * (sandbox__egress_parse in src/sandbox/sandbox-proxy.c). A sandbox writes these bytes, so
 * it controls all of them. The parse must refuse or accept without reading out of bounds,
 * and what it accepts must be what the proxy can act on safely: a non-empty host without
 * spaces, credentials or slashes, a numeric port from 1 to 65535, an origin-form path, and
 * lengths that lie inside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/sandbox-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The proxy reads at most 16 KiB and keeps the bytes NUL-terminated; do the same. */
	if (size > 16383)
		return 0;
	char *head = malloc(size + 1);
	if (head == NULL)
		abort();
	memcpy(head, data, size);
	head[size] = '\0';
	struct sandbox_egress_req r;
	const char *msg = NULL;
	int rc = sandbox__egress_parse(head, size, &r, &msg);
	bool whole = memmem(head, size, "\r\n\r\n", 4) != NULL;
	if (rc == -EAGAIN && whole)
		abort(); /* a whole head reported as incomplete */
	if (rc == -EINVAL && (msg == NULL || *msg == '\0'))
		abort(); /* a refusal without a reason */
	if (rc == 0) {
		if (!whole || r.head_len > size || r.line_len + 4 > r.head_len)
			abort();
		size_t hl = strnlen(r.host, sizeof(r.host));
		if (hl == 0 || hl >= sizeof(r.host))
			abort();
		for (size_t i = 0; i < hl; i++)
			if ((unsigned char)r.host[i] <= ' ' || r.host[i] == '@' || r.host[i] == '/' ||
			    (unsigned char)r.host[i] >= 0x7f)
				abort();
		size_t pl = strnlen(r.port, sizeof(r.port));
		uint64_t port = 0;
		if (pl == 0 || pl >= sizeof(r.port) || strspn(r.port, "0123456789") != pl ||
		    r.port[0] == '0' || st_parse_u64(r.port, &port) < 0 || port > 65535)
			abort();
		if (r.path[0] != '/' || strnlen(r.path, sizeof(r.path)) >= sizeof(r.path))
			abort();
		size_t ml = strnlen(r.method, sizeof(r.method));
		if (ml == 0 || ml >= sizeof(r.method) || memcmp(head, r.method, ml) != 0)
			abort();
		if (r.connect != (strcmp(r.method, "CONNECT") == 0))
			abort();
	}
	free(head);
	return 0;
}
