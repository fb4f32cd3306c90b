/*
 * crypto.h - the cryptography every Stockade component shares, built on OpenSSL (libcrypto);
 * nothing here is hand-rolled beyond the JWS/JWT framing.
 *
 *  - random bytes, SHA-256, HMAC-SHA256, constant-time comparison
 *  - hex, base64 and base64url encoding
 *  - AES-256-GCM with a 32-byte key, for buffers (crypto_seal / crypto_open) and for streams of
 *    any size in authenticated chunks (struct crypto_stream), used for snapshots
 *  - ES256 keypairs (P-256): generate, load, check that the halves match
 *  - JWT (JWS compact): sign and verify HS256 / ES256 / RS256, and verify against a JWKS
 *
 * Buffer format (crypto_seal), version 1:
 *     0x01 | nonce (12 random bytes) | ciphertext (same length as plaintext) | tag (16)
 * The optional AAD is authenticated, not stored.
 *
 * Stream format (crypto_stream), version 2; chunk_size is the plaintext size of every chunk but
 * the last (which may be shorter, even empty):
 *     header:  "STKS" | 0x02 | chunk_size (u32 big-endian) | nonce prefix (7 random bytes)
 *     chunk i: ciphertext length (u32 BE) | ciphertext | tag (16)
 *     nonce of chunk i = prefix(7) | i (u32 BE) | last (0x00, or 0x01 for the final chunk)
 *     AAD of every chunk = the 16-byte header
 * A stream is valid only if exactly one chunk carries last=1 and it is the final one: a
 * truncated stream (final chunk missing), chunks reordered, dropped or appended, or a header
 * altered, fails to open. Plaintext from a stream is only trustworthy once crypto_stream_final
 * returned 0 - callers writing it somewhere must treat it as provisional until then.
 *
 * Verification returns -EACCES (bad signature, expired, wrong audience...) or -EINVAL
 * (malformed input) and says why in err; callers answer 401 for either.
 */
#ifndef STOCKADE_CRYPTO_H
#define STOCKADE_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/common.h"

#define CRYPTO_KEY_BYTES 32
#define CRYPTO_NONCE_BYTES 12
#define CRYPTO_TAG_BYTES 16
#define CRYPTO_SHA256_BYTES 32
#define CRYPTO_SEAL_VERSION 1
/* crypto_seal output is exactly plaintext + CRYPTO_SEAL_OVERHEAD bytes. */
#define CRYPTO_SEAL_OVERHEAD (1 + CRYPTO_NONCE_BYTES + CRYPTO_TAG_BYTES)
#define CRYPTO_STREAM_VERSION 2
#define CRYPTO_STREAM_HEADER_BYTES 16
#define CRYPTO_STREAM_DEFAULT_CHUNK (64 * 1024)
#define CRYPTO_STREAM_MAX_CHUNK (16 * 1024 * 1024)

/* ---- primitives --------------------------------------------------------------------------- */

/* Cryptographically secure random bytes (OpenSSL RAND_bytes). 0 or -EIO. */
int crypto_random_bytes(void *buf, size_t n);
/* n random bytes as 2n lowercase hex characters (heap). */
char *crypto_random_hex(size_t n);

void crypto_sha256(const void *data, size_t n, uint8_t out[CRYPTO_SHA256_BYTES]);
void crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
                        uint8_t out[CRYPTO_SHA256_BYTES]);

/* Constant-time equality of two n-byte buffers (CRYPTO_memcmp). */
bool crypto_equal(const void *a, const void *b, size_t n);
/* Constant-time string equality: time depends only on the lengths, not on the content.
 * NULL equals nothing. */
bool crypto_str_equal(const char *a, const char *b);
/* Overwrite memory in a way the compiler cannot elide (OPENSSL_cleanse). */
void crypto_wipe(void *p, size_t n);
/* Wipe a string's bytes then free it. */
void crypto_free_secret(char *s);

/* ---- encodings ---------------------------------------------------------------------------- */

/* Lowercase hex (heap, NUL-terminated). */
char *crypto_hex_encode(const void *data, size_t n);
/* Decode exactly `len` hex characters (either case) into a heap buffer of len/2 bytes.
 * -EINVAL on odd length or a non-hex character. */
int crypto_hex_decode(const char *hex, size_t len, uint8_t **out, size_t *outlen);
/* Standard base64 with padding / base64url without padding (heap, NUL-terminated). */
char *crypto_base64_encode(const void *data, size_t n);
char *crypto_base64url_encode(const void *data, size_t n);
/* Decode; base64 accepts missing padding; base64url rejects '+', '/' and '='.
 * Whitespace is not accepted. Output is NUL-terminated (not counted in outlen). */
int crypto_base64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen);
int crypto_base64url_decode(const char *s, size_t len, uint8_t **out, size_t *outlen);

/* ---- AES-256-GCM, buffers ----------------------------------------------------------------- */

/* Encrypt pt into a heap buffer of n + CRYPTO_SEAL_OVERHEAD bytes (format above). */
int crypto_seal(const uint8_t key[CRYPTO_KEY_BYTES], const void *aad, size_t aadlen, const void *pt,
                size_t n, uint8_t **out, size_t *outlen, struct st_error **err);
/* Decrypt and authenticate; -EACCES when the tag, key, AAD or version do not match,
 * -EINVAL when the input is too short. */
int crypto_open(const uint8_t key[CRYPTO_KEY_BYTES], const void *aad, size_t aadlen, const void *ct,
                size_t n, uint8_t **out, size_t *outlen, struct st_error **err);

/* ---- AES-256-GCM, streams ----------------------------------------------------------------- */

/* Output goes to a sink: return 0, or a negative errno to abort the stream. */
typedef int (*crypto_sink_fn)(void *ctx, const void *data, size_t n);

struct crypto_stream; /* opaque */

/* Sealing stream: update() with plaintext, final() emits the last chunk. chunk_size 0 means
 * CRYPTO_STREAM_DEFAULT_CHUNK; at most CRYPTO_STREAM_MAX_CHUNK. The header is emitted at once. */
int crypto_stream_seal_new(const uint8_t key[CRYPTO_KEY_BYTES], size_t chunk_size,
                           crypto_sink_fn sink, void *ctx, struct crypto_stream **out,
                           struct st_error **err);
/* Opening stream: update() with ciphertext in pieces of any size, plaintext goes to the sink
 * chunk by chunk after each chunk authenticates; final() fails (-EACCES) when the final chunk
 * never came (truncation). Data after the final chunk fails at once. */
int crypto_stream_open_new(const uint8_t key[CRYPTO_KEY_BYTES], crypto_sink_fn sink, void *ctx,
                           struct crypto_stream **out, struct st_error **err);
int crypto_stream_update(struct crypto_stream *s, const void *data, size_t n,
                         struct st_error **err);
int crypto_stream_final(struct crypto_stream *s, struct st_error **err);
void crypto_stream_free(struct crypto_stream *s);

/* Convenience over file descriptors (read to EOF, write all). */
int crypto_stream_seal_fd(const uint8_t key[CRYPTO_KEY_BYTES], int in_fd, int out_fd,
                          size_t chunk_size, struct st_error **err);
int crypto_stream_open_fd(const uint8_t key[CRYPTO_KEY_BYTES], int in_fd, int out_fd,
                          struct st_error **err);

/* ---- keys --------------------------------------------------------------------------------- */

enum crypto_alg { CRYPTO_ALG_NONE, CRYPTO_ALG_HS256, CRYPTO_ALG_ES256, CRYPTO_ALG_RS256 };
const char *crypto_alg_name(enum crypto_alg a); /* "HS256"... */

struct crypto_key; /* opaque: an HMAC secret, or an EC P-256 / RSA public or private key */

/* HMAC secret for HS256 (copied). */
int crypto_key_hmac(const void *secret, size_t n, struct crypto_key **out, struct st_error **err);
/* PEM: "PRIVATE KEY" / "EC PRIVATE KEY" / "PUBLIC KEY" / "RSA PUBLIC KEY". EC keys must be on
 * P-256 (ES256); RSA keys at least 2048 bits. */
int crypto_key_from_pem(const char *pem, size_t len, struct crypto_key **out,
                        struct st_error **err);
/* A JWK object (kty EC crv P-256 x y, or kty RSA n e). */
int crypto_key_from_jwk(json_t *jwk, struct crypto_key **out, struct st_error **err);
void crypto_key_free(struct crypto_key *k);
enum crypto_alg crypto_key_alg(const struct crypto_key *k); /* what the key is for */
bool crypto_key_is_private(const struct crypto_key *k);
/* Public JWK of an EC/RSA key (for publishing a JWKS); NULL for HMAC keys. */
json_t *crypto_key_to_public_jwk(const struct crypto_key *k, const char *kid);

/* Generate an ES256 (P-256) keypair as PEM (PKCS#8 private, SPKI public). */
int crypto_es256_generate(char **private_pem, char **public_pem, struct st_error **err);
/* Both PEMs parse, both are EC P-256, and the public key is the private key's half. Messages
 * say which condition failed. */
int crypto_es256_check_pair(const char *private_pem, const char *public_pem, struct st_error **err);

/* ---- JWT ---------------------------------------------------------------------------------- */

/*
 * Sign `claims` (not modified) with the key's algorithm (HS256 for HMAC keys, ES256 for EC
 * private keys, RS256 for RSA private keys). kid may be NULL. Token is heap-allocated.
 */
int crypto_jwt_sign(const struct crypto_key *key, const char *kid, json_t *claims, char **token,
                    struct st_error **err);

struct crypto_jwt_verify_opts {
	const char *audience; /* required match of `aud` (string or array) when non-NULL */
	const char *issuer; /* required match of `iss` when non-NULL */
	int64_t now; /* seconds since the epoch; 0 = current time */
	int64_t leeway_s; /* clock skew for exp/nbf/iat; default 0, 60 is usual */
	bool require_exp; /* reject tokens without `exp` */
};

/*
 * Verify a compact JWS: the header's alg must equal the key's algorithm exactly (so `none`,
 * HS256 presented to an EC/RSA key - key confusion - and any mismatch are rejected), the
 * signature must verify, `exp` (if present, or required) not passed, `nbf` reached, and
 * audience / issuer match when asked. On success *claims (if non-NULL) gets the payload.
 */
int crypto_jwt_verify(const char *token, const struct crypto_key *key,
                      const struct crypto_jwt_verify_opts *opts, json_t **claims,
                      struct st_error **err);

/* Decode header and payload without verifying (for logs/diagnostics only). */
int crypto_jwt_decode_unverified(const char *token, json_t **header, json_t **claims,
                                 struct st_error **err);

/* A JWKS document: keys by kid; RSA (RS256) and EC P-256 (ES256) keys are kept, others
 * (oct, other curves, "use":"enc") ignored. */
struct crypto_jwks; /* opaque */
int crypto_jwks_parse(const char *json, size_t len, struct crypto_jwks **out,
                      struct st_error **err);
void crypto_jwks_free(struct crypto_jwks *j);
size_t crypto_jwks_count(const struct crypto_jwks *j);
/* Verify against the key whose kid matches the token header's kid (when the token has no kid
 * and the set has exactly one usable key, that key). Only RS256 and ES256 are accepted. */
int crypto_jwt_verify_jwks(const char *token, const struct crypto_jwks *jwks,
                           const struct crypto_jwt_verify_opts *opts, json_t **claims,
                           struct st_error **err);

#endif
