/*
 * crypto.c - primitives, encodings and AES-256-GCM (buffers and chunked streams) over OpenSSL.
 *
 * Stream states (struct crypto_stream):
 *   seal: OPEN --update*--> OPEN --final--> DONE   (header emitted at creation)
 *   open: HEADER (collecting 16 bytes) -> CHUNKS (collecting length|ct|tag) -> DONE when the
 *         chunk with the last flag authenticates; any failure -> FAILED, which is sticky.
 * Invariants: a sealing stream buffers at most chunk_size plaintext bytes and emits a chunk
 * only when it holds a full chunk and more data arrives (so the final chunk is always the one
 * emitted by final(), possibly empty); an opening stream never hands unauthenticated bytes to
 * its sink, and counts chunks so reordering or dropping changes the nonce and fails the tag.
 */
#include "crypto/crypto.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

/* ---- primitives --------------------------------------------------------------------------- */

int crypto_random_bytes(void *buf, size_t n)
{
	if (n == 0)
		return 0;
	if (n > INT_MAX || RAND_bytes(buf, (int)n) != 1)
		return -EIO;
	return 0;
}

char *crypto_random_hex(size_t n)
{
	uint8_t *b = st_xmalloc(n ? n : 1);
	if (crypto_random_bytes(b, n) < 0)
		abort(); /* no entropy: nothing sensible to continue with */
	char *hex = crypto_hex_encode(b, n);
	crypto_wipe(b, n);
	free(b);
	return hex;
}

void crypto_sha256(const void *data, size_t n, uint8_t out[CRYPTO_SHA256_BYTES])
{
	SHA256(data, n, out);
}

void crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
                        uint8_t out[CRYPTO_SHA256_BYTES])
{
	unsigned int len = CRYPTO_SHA256_BYTES;
	static const uint8_t empty[1];
	if (keylen == 0)
		key = empty;
	if (HMAC(EVP_sha256(), key, (int)keylen, data, n, out, &len) == NULL)
		abort();
}

bool crypto_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

bool crypto_str_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return false;
	size_t la = strlen(a), lb = strlen(b);
	/* compare hashes so the time depends on lengths only, never on where they differ */
	uint8_t ha[32], hb[32];
	crypto_sha256(a, la, ha);
	crypto_sha256(b, lb, hb);
	return CRYPTO_memcmp(ha, hb, 32) == 0 && la == lb;
}

void crypto_wipe(void *p, size_t n)
{
	if (p && n)
		OPENSSL_cleanse(p, n);
}

void crypto_free_secret(char *s)
{
	if (s) {
		crypto_wipe(s, strlen(s));
		free(s);
	}
}

/* ---- encodings ---------------------------------------------------------------------------- */

char *crypto_hex_encode(const void *data, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *p = data;
	char *out = st_xmalloc(2 * n + 1);
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int crypto_hex_decode(const char *hex, size_t len, uint8_t **out, size_t *outlen)
{
	if (len % 2)
		return -EINVAL;
	uint8_t *b = st_xmalloc(len / 2 + 1);
	for (size_t i = 0; i < len / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(b);
			return -EINVAL;
		}
		b[i] = (uint8_t)(hi << 4 | lo);
	}
	b[len / 2] = 0;
	*out = b;
	if (outlen)
		*outlen = len / 2;
	return 0;
}

static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *b64_encode(const void *data, size_t n, const char *alpha, bool pad)
{
	const uint8_t *p = data;
	char *out = st_xmalloc(4 * ((n + 2) / 3) + 1);
	size_t o = 0, i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		out[o++] = alpha[v >> 6 & 63];
		out[o++] = alpha[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		if (i + 1 < n)
			out[o++] = alpha[v >> 6 & 63];
		else if (pad)
			out[o++] = '=';
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return out;
}

char *crypto_base64_encode(const void *data, size_t n)
{
	return b64_encode(data, n, b64std, true);
}

char *crypto_base64url_encode(const void *data, size_t n)
{
	return b64_encode(data, n, b64url, false);
}

static int b64_decode(const char *s, size_t len, const char *alpha, bool allow_pad, uint8_t **out,
                      size_t *outlen)
{
	if (allow_pad) {
		/* at most two '=' and only at the end of a complete quantum */
		size_t npad = 0;
		while (len > 0 && s[len - 1] == '=' && npad < 2) {
			len--;
			npad++;
		}
		if (npad && (len + npad) % 4 != 0)
			return -EINVAL;
	}
	if (len % 4 == 1)
		return -EINVAL;
	uint8_t *b = st_xmalloc(len / 4 * 3 + 3);
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		const char *pos = s[i] ? strchr(alpha, s[i]) : NULL;
		if (pos == NULL) {
			free(b);
			return -EINVAL;
		}
		acc = acc << 6 | (uint32_t)(pos - alpha);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			b[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0) { /* non-canonical trailing bits */
		free(b);
		return -EINVAL;
	}
	b[o] = 0;
	*out = b;
	if (outlen)
		*outlen = o;
	return 0;
}

int crypto_base64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	return b64_decode(s, len, b64std, true, out, outlen);
}

int crypto_base64url_decode(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	return b64_decode(s, len, b64url, false, out, outlen);
}

/* ---- AES-256-GCM core --------------------------------------------------------------------- */

static int gcm_run(bool enc, const uint8_t key[32], const uint8_t nonce[12], const void *aad,
                   size_t aadlen, const void *in, size_t n, uint8_t *out, uint8_t tag[16])
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int len, rc = -EIO;
	if (c == NULL)
		return -ENOMEM;
	if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
	    EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1)
		goto out;
	if (aadlen && EVP_CipherUpdate(c, NULL, &len, aad, (int)aadlen) != 1)
		goto out;
	/* EVP takes int lengths: feed large buffers in pieces */
	const uint8_t *ip = in;
	uint8_t *op = out;
	size_t left = n;
	while (left > 0) {
		int piece = left > (1u << 30) ? (1 << 30) : (int)left;
		if (EVP_CipherUpdate(c, op, &len, ip, piece) != 1)
			goto out;
		ip += piece;
		op += len;
		left -= (size_t)piece;
	}
	if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1)
		goto out;
	if (EVP_CipherFinal_ex(c, op, &len) != 1) {
		rc = -EACCES;
		goto out;
	}
	if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
		goto out;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return rc;
}

int crypto_seal(const uint8_t key[CRYPTO_KEY_BYTES], const void *aad, size_t aadlen, const void *pt,
                size_t n, uint8_t **out, size_t *outlen, struct st_error **err)
{
	if (n > SIZE_MAX - CRYPTO_SEAL_OVERHEAD)
		return st_error_make(err, EFBIG, "cannot encrypt: input too large");
	uint8_t *b = st_xmalloc(n + CRYPTO_SEAL_OVERHEAD);
	b[0] = CRYPTO_SEAL_VERSION;
	if (crypto_random_bytes(b + 1, CRYPTO_NONCE_BYTES) < 0) {
		free(b);
		return st_error_make(err, EIO, "cannot encrypt: no random bytes");
	}
	int rc = gcm_run(true, key, b + 1, aad, aadlen, pt, n, b + 1 + CRYPTO_NONCE_BYTES,
	                 b + 1 + CRYPTO_NONCE_BYTES + n);
	if (rc < 0) {
		free(b);
		return st_error_make(err, -rc, "cannot encrypt with aes-256-gcm");
	}
	*out = b;
	*outlen = n + CRYPTO_SEAL_OVERHEAD;
	return 0;
}

int crypto_open(const uint8_t key[CRYPTO_KEY_BYTES], const void *aad, size_t aadlen, const void *ct,
                size_t n, uint8_t **out, size_t *outlen, struct st_error **err)
{
	const uint8_t *c = ct;
	if (n < CRYPTO_SEAL_OVERHEAD) {
		st_error_make(err, 0,
		              "cannot decrypt: %zu bytes is shorter than the %d-byte envelope", n,
		              CRYPTO_SEAL_OVERHEAD);
		return -EINVAL;
	}
	if (c[0] != CRYPTO_SEAL_VERSION) {
		st_error_make(err, 0, "cannot decrypt: unknown envelope version %u", c[0]);
		return -EACCES;
	}
	size_t m = n - CRYPTO_SEAL_OVERHEAD;
	uint8_t *b = st_xmalloc(m + 1);
	uint8_t tag[16];
	memcpy(tag, c + 1 + CRYPTO_NONCE_BYTES + m, 16);
	int rc = gcm_run(false, key, c + 1, aad, aadlen, c + 1 + CRYPTO_NONCE_BYTES, m, b, tag);
	if (rc < 0) {
		crypto_wipe(b, m);
		free(b);
		st_error_make(err, 0,
		              "cannot decrypt: authentication failed (wrong key, or the data was "
		              "altered)");
		return rc == -EACCES ? -EACCES : rc;
	}
	b[m] = 0;
	*out = b;
	*outlen = m;
	return 0;
}

/* ---- streams ------------------------------------------------------------------------------ */

enum stream_state { S_HEADER, S_CHUNKS, S_DONE, S_FAILED };

struct crypto_stream {
	bool sealing;
	enum stream_state state;
	uint8_t key[32];
	uint8_t header[CRYPTO_STREAM_HEADER_BYTES];
	size_t chunk_size;
	uint32_t index;
	crypto_sink_fn sink;
	void *ctx;
	/* sealing: pending plaintext (<= chunk_size); opening: pending ciphertext record */
	uint8_t *buf;
	size_t len;
	size_t cap;
	uint8_t *work; /* output scratch: chunk_size + 20 bytes sealing; opening, grown to the
	                  largest record seen (a header may declare 16 MiB chunks for 10 bytes) */
	size_t work_cap;
};

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void chunk_nonce(const struct crypto_stream *s, bool last, uint8_t nonce[12])
{
	memcpy(nonce, s->header + 9, 7);
	put_u32(nonce + 7, s->index);
	nonce[11] = last ? 1 : 0;
}

static struct crypto_stream *stream_new(const uint8_t key[32], size_t chunk_size,
                                        crypto_sink_fn sink, void *ctx)
{
	struct crypto_stream *s = st_xcalloc(1, sizeof(*s));
	memcpy(s->key, key, 32);
	s->chunk_size = chunk_size;
	s->sink = sink;
	s->ctx = ctx;
	return s;
}

int crypto_stream_seal_new(const uint8_t key[CRYPTO_KEY_BYTES], size_t chunk_size,
                           crypto_sink_fn sink, void *ctx, struct crypto_stream **out,
                           struct st_error **err)
{
	if (chunk_size == 0)
		chunk_size = CRYPTO_STREAM_DEFAULT_CHUNK;
	if (chunk_size > CRYPTO_STREAM_MAX_CHUNK)
		return st_error_make(err, EINVAL, "chunk size %zu is above the maximum %d",
		                     chunk_size, CRYPTO_STREAM_MAX_CHUNK);
	struct crypto_stream *s = stream_new(key, chunk_size, sink, ctx);
	s->sealing = true;
	s->state = S_CHUNKS;
	memcpy(s->header, "STKS", 4);
	s->header[4] = CRYPTO_STREAM_VERSION;
	put_u32(s->header + 5, (uint32_t)chunk_size);
	if (crypto_random_bytes(s->header + 9, 7) < 0) {
		crypto_stream_free(s);
		return st_error_make(err, EIO, "cannot encrypt: no random bytes");
	}
	s->cap = chunk_size;
	s->buf = st_xmalloc(chunk_size);
	s->work_cap = chunk_size + 20;
	s->work = st_xmalloc(s->work_cap);
	int rc = sink(ctx, s->header, sizeof(s->header));
	if (rc < 0) {
		crypto_stream_free(s);
		return st_error_make(err, -rc, "cannot write encrypted stream header");
	}
	*out = s;
	return 0;
}

int crypto_stream_open_new(const uint8_t key[CRYPTO_KEY_BYTES], crypto_sink_fn sink, void *ctx,
                           struct crypto_stream **out, struct st_error **err)
{
	struct crypto_stream *s = stream_new(key, 0, sink, ctx);
	s->state = S_HEADER;
	s->cap = CRYPTO_STREAM_HEADER_BYTES;
	s->buf = st_xmalloc(s->cap);
	*out = s;
	return 0;
}

static int seal_chunk(struct crypto_stream *s, bool last, struct st_error **err)
{
	uint8_t nonce[12];
	if (s->index == UINT32_MAX) {
		s->state = S_FAILED;
		return st_error_make(err, EFBIG, "cannot encrypt: stream has too many chunks");
	}
	chunk_nonce(s, last, nonce);
	put_u32(s->work, (uint32_t)s->len);
	int rc = gcm_run(true, s->key, nonce, s->header, sizeof(s->header), s->buf, s->len,
	                 s->work + 4, s->work + 4 + s->len);
	if (rc < 0) {
		s->state = S_FAILED;
		return st_error_make(err, -rc, "cannot encrypt stream chunk");
	}
	rc = s->sink(s->ctx, s->work, s->len + 20);
	if (rc < 0) {
		s->state = S_FAILED;
		return st_error_make(err, -rc, "cannot write encrypted stream chunk");
	}
	s->index++;
	s->len = 0;
	return 0;
}

static int open_record(struct crypto_stream *s, struct st_error **err)
{
	/* buf holds len(4) | ct | tag; try as a middle chunk, then as the last one */
	uint32_t n = get_u32(s->buf);
	uint8_t nonce[12];
	bool last = n < s->chunk_size;
	if (s->work_cap < (size_t)n + 20) { /* empty: wiped after every record */
		free(s->work);
		s->work_cap = (size_t)n + 20;
		s->work = st_xmalloc(s->work_cap);
	}
	/* a short chunk can only be the last one; a full-size chunk is a middle chunk or, when
	 * the plaintext is a multiple of the chunk size, the last one: try both nonces */
	for (int attempt = 0; attempt < 2; attempt++) {
		chunk_nonce(s, last, nonce);
		int rc = gcm_run(false, s->key, nonce, s->header, sizeof(s->header), s->buf + 4, n,
		                 s->work, s->buf + 4 + n);
		if (rc == 0)
			goto ok;
		if (last)
			break;
		last = true;
	}
	s->state = S_FAILED;
	st_error_make(err, 0,
	              "cannot decrypt stream chunk %u: authentication failed (wrong key, or the "
	              "data was altered, reordered or truncated)",
	              s->index);
	return -EACCES;
ok:;
	int rc = n ? s->sink(s->ctx, s->work, n) : 0;
	crypto_wipe(s->work, n);
	if (rc < 0) {
		s->state = S_FAILED;
		return st_error_make(err, -rc, "cannot write decrypted stream data");
	}
	s->index++;
	s->len = 0;
	if (last)
		s->state = S_DONE;
	return 0;
}

int crypto_stream_update(struct crypto_stream *s, const void *data, size_t n, struct st_error **err)
{
	const uint8_t *p = data;
	if (s->state == S_FAILED)
		return st_error_make(err, EIO, "stream already failed");
	if (s->sealing) {
		if (s->state == S_DONE)
			return st_error_make(err, EINVAL, "stream already finished");
		while (n > 0) {
			if (s->len == s->chunk_size) {
				int rc = seal_chunk(s, false, err);
				if (rc < 0)
					return rc;
			}
			size_t take = s->chunk_size - s->len;
			if (take > n)
				take = n;
			memcpy(s->buf + s->len, p, take);
			s->len += take;
			p += take;
			n -= take;
		}
		return 0;
	}
	while (n > 0) {
		if (s->state == S_DONE) {
			s->state = S_FAILED;
			st_error_make(err, 0, "cannot decrypt stream: data after the final chunk");
			return -EACCES;
		}
		size_t want;
		if (s->state == S_HEADER)
			want = CRYPTO_STREAM_HEADER_BYTES;
		else if (s->len < 4)
			want = 4;
		else
			want = 4 + get_u32(s->buf) + 16;
		size_t take = want - s->len;
		if (take > n)
			take = n;
		/* The buffer grows with the bytes that came, doubling up to the record's size:
		   a header may declare 16 MiB chunks and a record 16 MiB for a few bytes of
		   input. It holds only ciphertext, so the old copy needs no wiping. */
		if (s->len + take > s->cap) {
			size_t nc = s->cap * 2 > want ? want : s->cap * 2;
			if (nc < s->len + take)
				nc = s->len + take;
			uint8_t *nb = st_xmalloc(nc);
			memcpy(nb, s->buf, s->len);
			free(s->buf);
			s->buf = nb;
			s->cap = nc;
		}
		memcpy(s->buf + s->len, p, take);
		s->len += take;
		p += take;
		n -= take;
		if (s->len < want)
			continue;
		if (s->state == S_HEADER) {
			memcpy(s->header, s->buf, sizeof(s->header));
			uint32_t cs = get_u32(s->header + 5);
			if (memcmp(s->header, "STKS", 4) != 0 ||
			    s->header[4] != CRYPTO_STREAM_VERSION || cs == 0 ||
			    cs > CRYPTO_STREAM_MAX_CHUNK) {
				s->state = S_FAILED;
				st_error_make(err, 0,
				              "cannot decrypt stream: not an encrypted stockade "
				              "stream (bad header)");
				return -EINVAL;
			}
			s->chunk_size = cs;
			s->len = 0;
			s->state = S_CHUNKS;
		} else if (want == 4) {
			uint32_t rl = get_u32(s->buf);
			if (rl > s->chunk_size) {
				s->state = S_FAILED;
				st_error_make(
				    err, 0,
				    "cannot decrypt stream chunk %u: length %u exceeds the "
				    "chunk size",
				    s->index, rl);
				return -EACCES;
			}
		} else {
			int rc = open_record(s, err);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

int crypto_stream_final(struct crypto_stream *s, struct st_error **err)
{
	if (s->state == S_FAILED)
		return st_error_make(err, EIO, "stream already failed");
	if (s->sealing) {
		if (s->state == S_DONE)
			return 0;
		int rc = seal_chunk(s, true, err);
		if (rc < 0)
			return rc;
		s->state = S_DONE;
		return 0;
	}
	if (s->state != S_DONE) {
		s->state = S_FAILED;
		st_error_make(err, 0,
		              "cannot decrypt stream: it ends before its final chunk (truncated)");
		return -EACCES;
	}
	return 0;
}

void crypto_stream_free(struct crypto_stream *s)
{
	if (s == NULL)
		return;
	crypto_wipe(s->key, sizeof(s->key));
	if (s->buf)
		crypto_wipe(s->buf, s->cap);
	free(s->buf);
	if (s->work)
		crypto_wipe(s->work, s->work_cap);
	free(s->work);
	free(s);
}

static int fd_sink(void *ctx, const void *data, size_t n)
{
	ssize_t w = st_write_all(*(int *)ctx, data, n);
	return w < 0 ? (int)w : 0;
}

static int stream_pump(struct crypto_stream *s, int in_fd, struct st_error **err)
{
	uint8_t buf[65536];
	for (;;) {
		ssize_t r = read(in_fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return st_error_make(err, errno, "cannot read stream input");
		if (r == 0)
			break;
		int rc = crypto_stream_update(s, buf, (size_t)r, err);
		if (rc < 0)
			return rc;
	}
	return crypto_stream_final(s, err);
}

int crypto_stream_seal_fd(const uint8_t key[CRYPTO_KEY_BYTES], int in_fd, int out_fd,
                          size_t chunk_size, struct st_error **err)
{
	struct crypto_stream *s = NULL;
	int rc = crypto_stream_seal_new(key, chunk_size, fd_sink, &out_fd, &s, err);
	if (rc < 0)
		return rc;
	rc = stream_pump(s, in_fd, err);
	crypto_stream_free(s);
	return rc;
}

int crypto_stream_open_fd(const uint8_t key[CRYPTO_KEY_BYTES], int in_fd, int out_fd,
                          struct st_error **err)
{
	struct crypto_stream *s = NULL;
	int rc = crypto_stream_open_new(key, fd_sink, &out_fd, &s, err);
	if (rc < 0)
		return rc;
	rc = stream_pump(s, in_fd, err);
	crypto_stream_free(s);
	return rc;
}
