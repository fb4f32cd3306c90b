/*
 * test-crypto.c - every crypto helper, with the negative cases that matter: tampering,
 * truncation, wrong keys, algorithm confusion, expiry, audience, malformed input; and
 * interoperability with tokens made by an independent JOSE implementation.
 */
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "crypto/crypto.h"
#include "unit.h"

/* produced once by the `jose` npm package (independent implementation); exp = 2100-01-01 */
static const char JOSE_ES256_JWKS[] =
    "{\"keys\": [{\"kty\": \"EC\", \"x\": \"CbBFkRE6qxpRh-GYE-K_drvxbVuUNkmy6tmI_quwuH4\", \"y\": "
    "\"lpvzexXq7pjvgd4DrM4qwBmGOmPqOhQLSq0eMsjzTks\", \"crv\": \"P-256\", \"kid\": \"es256-1\", "
    "\"alg\": \"ES256\", \"use\": \"sig\"}, {\"kty\": \"RSA\", \"n\": "
    "\"v9RBEAO0qhv3cFnpveWEJaeGFL6d66NIp_"
    "A35hfueqqau0DVqn1Li9hpWW7vDbu5PbX9P8KDXptIQxxXYBQx9y4yOMCrG0U4cL6Drmwt4nxpFXnSLF5ZUNAIcaGejSB-"
    "akpm7NzfaaEbvvvjrZ8Ru2onjw4TN1zTG8RmMAUMkonFnBbIvrThtEMM07h3CBfbBbav9xaN9BZN5gA0I3zhcQDdiSoD5T"
    "iDaTkl7eOAdYDiB63NVVtHYYDa8nbrxaxGcd-"
    "vKk8rWPhOvtNPes6ShxYcNtgEl4mYoHWzq5NXVlSiMZcEeHZRZ6toKO965QhRxl_1IdZHmI9eidrZmyxcHQ\", \"e\": "
    "\"AQAB\", \"kid\": \"rs256-1\", \"alg\": \"RS256\", \"use\": \"sig\"}, {\"kty\": \"oct\", "
    "\"k\": \"c2VjcmV0\", \"kid\": \"hmac\"}]}";
static const char JOSE_ES256_TOKEN[] =
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVzMjU2LTEiLCJ0eXAiOiJKV1QifQ."
    "eyJzdWIiOiJ1c2VyLTEiLCJzY29wZSI6InN0b2NrYWRlOmV4ZWN1dGUiLCJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcG"
    "xlIiwiYXVkIjoiaHR0cHM6Ly9zdG9ja2FkZS5leGFtcGxlL21jcCIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjo0MTAyNDQ0"
    "ODAwfQ.4kOsSDXYcX_C7eaa7OY55Zj1UnRRI8tKyd2trML30mz1LdZA3hpWVKV5RpHov1e_afOxJySM2HinU-Hgwi3bzg";
static const char JOSE_RS256_TOKEN[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzMjU2LTEiLCJ0eXAiOiJKV1QifQ."
    "eyJzdWIiOiJ1c2VyLTEiLCJzY29wZSI6InN0b2NrYWRlOmV4ZWN1dGUiLCJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcG"
    "xlIiwiYXVkIjoiaHR0cHM6Ly9zdG9ja2FkZS5leGFtcGxlL21jcCIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjo0MTAyNDQ0"
    "ODAwfQ.XNv4PxXwTv12vBVNsdLad_lFIRqTrrhlaSAQBLJ1npHRG774euH_Cox7H99lcdp2-"
    "r6hbxwUfKW9v2TgclAUIrdhhdBLD89tF3ZuU7Hcy1rPapc-"
    "yWLF7HJKfmvBL2Ic9cTCx7w4T1hTONlAB61tT41fuQIgqdrUkWRwWH28452_mLoI9Twyn9_"
    "B9vXoalO6PpM0qvSjamjiwvps1LgaaXpfm8kxBr5WVZdRjvgvkIdA9Ro-uQWJg-"
    "osTygNZPnwabJRbCeXWyFPJjwW1QjpriSRjJsGngQalLmNvuxgrlK3hB6cpIOlBEZBPD-"
    "Tx6HnoiNiLKXXWwT2qmCRW5g5_A";
static const char JOSE_ES256_PEM[] =
    "-----BEGIN PUBLIC "
    "KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAECbBFkRE6qxpRh+GYE+K/drvxbVuU\nNkmy6tmI/quwuH6Wm/"
    "N7FerumO+B3gOszirAGYY6Y+o6FAtKrR4yyPNOSw==\n-----END PUBLIC KEY-----";
static const char JOSE_RS256_PEM[] =
    "-----BEGIN PUBLIC "
    "KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAv9RBEAO0qhv3cFnpveWE\nJaeGFL6d66NIp/"
    "A35hfueqqau0DVqn1Li9hpWW7vDbu5PbX9P8KDXptIQxxXYBQx\n9y4yOMCrG0U4cL6Drmwt4nxpFXnSLF5ZUNAIcaGejS"
    "B+"
    "akpm7NzfaaEbvvvjrZ8R\nu2onjw4TN1zTG8RmMAUMkonFnBbIvrThtEMM07h3CBfbBbav9xaN9BZN5gA0I3zh\ncQDdiS"
    "oD5TiDaTkl7eOAdYDiB63NVVtHYYDa8nbrxaxGcd+"
    "vKk8rWPhOvtNPes6S\nhxYcNtgEl4mYoHWzq5NXVlSiMZcEeHZRZ6toKO965QhRxl/"
    "1IdZHmI9eidrZmyxc\nHQIDAQAB\n-----END PUBLIC KEY-----";
static const char JOSE_HS256_TOKEN[] =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1IiwiZXhwIjo0MTAyNDQ0ODAwfQ."
    "WSFczO4D8brhjBbN7kYpazOJS2nZeVUMQBIhru_dKVg";

static const uint8_t KEY[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

TEST(hex_roundtrip_and_rejects)
{
	uint8_t in[5] = {0x00, 0x7f, 0x80, 0xab, 0xff};
	char *h = crypto_hex_encode(in, 5);
	CHECK_STREQ(h, "007f80abff");
	uint8_t *out = NULL;
	size_t n = 0;
	CHECK(crypto_hex_decode("007F80ABff", 10, &out, &n) == 0);
	CHECK_EQ_INT(n, 5);
	CHECK(memcmp(in, out, 5) == 0);
	free(out);
	free(h);
	CHECK(crypto_hex_decode("abc", 3, &out, &n) == -EINVAL);
	CHECK(crypto_hex_decode("zz", 2, &out, &n) == -EINVAL);
	char *r = crypto_random_hex(32);
	CHECK_EQ_INT(strlen(r), 64);
	free(r);
}

TEST(base64_vectors)
{
	static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	static const char *url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	for (size_t i = 0; i < 7; i++) {
		char *e = crypto_base64_encode(plain[i], strlen(plain[i]));
		CHECK_STREQ(e, std[i]);
		free(e);
		e = crypto_base64url_encode(plain[i], strlen(plain[i]));
		CHECK_STREQ(e, url[i]);
		free(e);
		uint8_t *d = NULL;
		size_t n = 0;
		CHECK(crypto_base64_decode(std[i], strlen(std[i]), &d, &n) == 0);
		CHECK_EQ_INT(n, strlen(plain[i]));
		CHECK(memcmp(d, plain[i], n) == 0);
		free(d);
		CHECK(crypto_base64url_decode(url[i], strlen(url[i]), &d, &n) == 0);
		CHECK(memcmp(d, plain[i], n) == 0);
		free(d);
	}
	uint8_t bin[3] = {0xfb, 0xff, 0xfe};
	char *s = crypto_base64_encode(bin, 3), *u = crypto_base64url_encode(bin, 3);
	CHECK_STREQ(s, "+//+");
	CHECK_STREQ(u, "-__-");
	free(s);
	free(u);
	uint8_t *d = NULL;
	size_t n;
	CHECK(crypto_base64url_decode("+//+", 4, &d, &n) == -EINVAL); /* wrong alphabet */
	CHECK(crypto_base64url_decode("Zg==", 4, &d, &n) == -EINVAL); /* no padding in url */
	CHECK(crypto_base64_decode("Zm9v YmFy", 9, &d, &n) == -EINVAL); /* whitespace */
	CHECK(crypto_base64_decode("Zh==", 4, &d, &n) == -EINVAL); /* non-canonical bits */
	CHECK(crypto_base64_decode("Z", 1, &d, &n) == -EINVAL);
	CHECK(crypto_base64_decode("Zg=", 3, &d, &n) == -EINVAL);
}

TEST(sha256_hmac_vectors)
{
	uint8_t h[32];
	crypto_sha256("abc", 3, h);
	char *x = crypto_hex_encode(h, 32);
	CHECK_STREQ(x, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	free(x);
	/* RFC 4231 test case 2 */
	crypto_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, h);
	x = crypto_hex_encode(h, 32);
	CHECK_STREQ(x, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	free(x);
}

TEST(constant_time_compare)
{
	CHECK(crypto_equal("abcd", "abcd", 4));
	CHECK(!crypto_equal("abcd", "abce", 4));
	CHECK(crypto_str_equal("token", "token"));
	CHECK(!crypto_str_equal("token", "token2"));
	CHECK(!crypto_str_equal("token", "tokem"));
	CHECK(!crypto_str_equal(NULL, "x"));
	CHECK(!crypto_str_equal("x", NULL));
	CHECK(crypto_str_equal("", ""));
}

TEST(seal_open_roundtrip_and_tamper)
{
	const char *msg = "snapshot bytes";
	uint8_t *ct = NULL, *pt = NULL;
	size_t ctl = 0, ptl = 0;
	struct st_error *err = NULL;
	CHECK(crypto_seal(KEY, "aad", 3, msg, strlen(msg), &ct, &ctl, &err) == 0);
	CHECK_EQ_INT(ctl, strlen(msg) + CRYPTO_SEAL_OVERHEAD);
	CHECK_EQ_INT(ct[0], CRYPTO_SEAL_VERSION);
	CHECK(crypto_open(KEY, "aad", 3, ct, ctl, &pt, &ptl, &err) == 0);
	CHECK_EQ_INT(ptl, strlen(msg));
	CHECK(memcmp(pt, msg, ptl) == 0);
	free(pt);
	/* two seals of the same plaintext differ (random nonce) */
	uint8_t *ct2 = NULL;
	size_t ct2l = 0;
	CHECK(crypto_seal(KEY, "aad", 3, msg, strlen(msg), &ct2, &ct2l, &err) == 0);
	CHECK(memcmp(ct, ct2, ctl) != 0);
	free(ct2);
	/* wrong aad, wrong key, flipped bits anywhere, version, truncation */
	CHECK(crypto_open(KEY, "aaX", 3, ct, ctl, &pt, &ptl, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "authentication failed");
	st_error_release(&err);
	uint8_t key2[32];
	memcpy(key2, KEY, 32);
	key2[31] ^= 1;
	CHECK(crypto_open(key2, "aad", 3, ct, ctl, &pt, &ptl, NULL) == -EACCES);
	for (size_t i = 1; i < ctl; i++) {
		ct[i] ^= 0x01;
		CHECK(crypto_open(KEY, "aad", 3, ct, ctl, &pt, &ptl, NULL) == -EACCES);
		ct[i] ^= 0x01;
	}
	ct[0] = 9;
	CHECK(crypto_open(KEY, "aad", 3, ct, ctl, &pt, &ptl, NULL) == -EACCES);
	ct[0] = CRYPTO_SEAL_VERSION;
	CHECK(crypto_open(KEY, "aad", 3, ct, ctl - 1, &pt, &ptl, NULL) == -EACCES);
	CHECK(crypto_open(KEY, "aad", 3, ct, 10, &pt, &ptl, NULL) == -EINVAL);
	free(ct);
	/* empty plaintext works */
	CHECK(crypto_seal(KEY, NULL, 0, "", 0, &ct, &ctl, NULL) == 0);
	CHECK(crypto_open(KEY, NULL, 0, ct, ctl, &pt, &ptl, NULL) == 0);
	CHECK_EQ_INT(ptl, 0);
	free(pt);
	free(ct);
}

/* ---- streams ---- */

struct membuf {
	uint8_t *d;
	size_t n;
};

static int mem_sink(void *ctx, const void *data, size_t n)
{
	struct membuf *b = ctx;
	b->d = realloc(b->d, b->n + n + 1);
	memcpy(b->d + b->n, data, n);
	b->n += n;
	return 0;
}

static void seal_mem(const uint8_t *pt, size_t n, size_t chunk, struct membuf *out)
{
	struct crypto_stream *s = NULL;
	CHECK(crypto_stream_seal_new(KEY, chunk, mem_sink, out, &s, NULL) == 0);
	/* feed in odd-sized pieces */
	size_t off = 0, piece = 1;
	while (off < n) {
		size_t t = n - off < piece ? n - off : piece;
		CHECK(crypto_stream_update(s, pt + off, t, NULL) == 0);
		off += t;
		piece = piece * 3 + 1;
	}
	CHECK(crypto_stream_final(s, NULL) == 0);
	crypto_stream_free(s);
}

/* 0 on success; the plaintext in out */
static int open_mem(const uint8_t *ct, size_t n, size_t piece, struct membuf *out,
                    struct st_error **err)
{
	struct crypto_stream *s = NULL;
	CHECK(crypto_stream_open_new(KEY, mem_sink, out, &s, err) == 0);
	int rc = 0;
	for (size_t off = 0; off < n && rc == 0; off += piece)
		rc = crypto_stream_update(s, ct + off, n - off < piece ? n - off : piece, err);
	if (rc == 0)
		rc = crypto_stream_final(s, err);
	crypto_stream_free(s);
	return rc;
}

TEST(stream_roundtrip_sizes)
{
	static const size_t sizes[] = {0, 1, 15, 16, 17, 48, 53, 1000};
	uint8_t pt[1000];
	for (size_t i = 0; i < sizeof(pt); i++)
		pt[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < ST_ARRAY_SIZE(sizes); i++) {
		struct membuf ct = {0}, back = {0};
		seal_mem(pt, sizes[i], 16, &ct);
		for (size_t piece = 1; piece < 40; piece += 13) {
			back.n = 0;
			CHECK(open_mem(ct.d, ct.n, piece, &back, NULL) == 0);
			CHECK_EQ_INT(back.n, sizes[i]);
			CHECK(sizes[i] == 0 || memcmp(back.d, pt, sizes[i]) == 0);
		}
		free(ct.d);
		free(back.d);
	}
}

TEST(stream_detects_truncation_reorder_and_tamper)
{
	uint8_t pt[64];
	memset(pt, 'x', sizeof(pt));
	struct membuf ct = {0}, back = {0};
	seal_mem(pt, 40, 16, &ct); /* chunks: 16, 16, 8(final) */
	size_t rec = 4 + 16 + 16; /* a full record */
	CHECK_EQ_INT(ct.n, CRYPTO_STREAM_HEADER_BYTES + 2 * rec + 4 + 8 + 16);
	struct st_error *err = NULL;

	/* truncation: drop the final chunk -> final() fails */
	CHECK(open_mem(ct.d, CRYPTO_STREAM_HEADER_BYTES + 2 * rec, 7, &back, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "truncated");
	st_error_release(&err);
	/* truncation inside a record */
	back.n = 0;
	CHECK(open_mem(ct.d, ct.n - 3, 7, &back, NULL) == -EACCES);

	/* reorder: swap the two full chunks */
	uint8_t *sw = malloc(ct.n);
	memcpy(sw, ct.d, ct.n);
	memcpy(sw + CRYPTO_STREAM_HEADER_BYTES, ct.d + CRYPTO_STREAM_HEADER_BYTES + rec, rec);
	memcpy(sw + CRYPTO_STREAM_HEADER_BYTES + rec, ct.d + CRYPTO_STREAM_HEADER_BYTES, rec);
	back.n = 0;
	CHECK(open_mem(sw, ct.n, 5, &back, NULL) == -EACCES);
	/* drop a middle chunk */
	size_t dl = ct.n - rec;
	memcpy(sw, ct.d, CRYPTO_STREAM_HEADER_BYTES + rec);
	memcpy(sw + CRYPTO_STREAM_HEADER_BYTES + rec, ct.d + CRYPTO_STREAM_HEADER_BYTES + 2 * rec,
	       ct.n - CRYPTO_STREAM_HEADER_BYTES - 2 * rec);
	back.n = 0;
	CHECK(open_mem(sw, dl, 5, &back, NULL) == -EACCES);
	free(sw);

	/* data appended after the final chunk */
	uint8_t *ap = malloc(ct.n + 1);
	memcpy(ap, ct.d, ct.n);
	ap[ct.n] = 0;
	back.n = 0;
	CHECK(open_mem(ap, ct.n + 1, 100, &back, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "after the final chunk");
	st_error_release(&err);
	free(ap);

	/* every single-bit flip fails somewhere (header, lengths, ciphertext, tags) */
	for (size_t i = 0; i < ct.n; i++) {
		ct.d[i] ^= 0x10;
		back.n = 0;
		CHECK(open_mem(ct.d, ct.n, 11, &back, NULL) < 0);
		ct.d[i] ^= 0x10;
	}
	back.n = 0;
	CHECK(open_mem(ct.d, ct.n, 11, &back, NULL) == 0);
	free(ct.d);
	free(back.d);

	/* a chunk-aligned plaintext ends in a full-size final chunk */
	struct membuf c2 = {0}, b2 = {0};
	seal_mem(pt, 32, 16, &c2);
	CHECK(open_mem(c2.d, c2.n, 3, &b2, NULL) == 0);
	CHECK_EQ_INT(b2.n, 32);
	CHECK(open_mem(c2.d, CRYPTO_STREAM_HEADER_BYTES + rec, 3, &b2, NULL) == -EACCES);
	free(c2.d);
	free(b2.d);
}

TEST(stream_fd_wrong_key_and_bad_chunk_size)
{
	char in[] = "/tmp/st-crypto-in-XXXXXX", mid[] = "/tmp/st-crypto-mid-XXXXXX",
	     out[] = "/tmp/st-crypto-out-XXXXXX";
	int fi = mkstemp(in), fm = mkstemp(mid), fo = mkstemp(out);
	CHECK(fi >= 0 && fm >= 0 && fo >= 0);
	unlink(in);
	unlink(mid);
	unlink(out);
	static uint8_t big[300000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i ^ (i >> 8));
	CHECK(write(fi, big, sizeof(big)) == (ssize_t)sizeof(big));
	lseek(fi, 0, SEEK_SET);
	CHECK(crypto_stream_seal_fd(KEY, fi, fm, 0, NULL) == 0);
	lseek(fm, 0, SEEK_SET);
	CHECK(crypto_stream_open_fd(KEY, fm, fo, NULL) == 0);
	CHECK_EQ_INT(lseek(fo, 0, SEEK_END), sizeof(big));
	static uint8_t back[300000];
	CHECK(pread(fo, back, sizeof(back), 0) == (ssize_t)sizeof(back));
	CHECK(memcmp(back, big, sizeof(big)) == 0);
	uint8_t k2[32] = {0};
	lseek(fm, 0, SEEK_SET);
	struct st_error *err = NULL;
	CHECK(crypto_stream_open_fd(k2, fm, fo, &err) == -EACCES);
	st_error_free(err);
	struct crypto_stream *s = NULL;
	struct membuf m = {0};
	err = NULL;
	CHECK(crypto_stream_seal_new(KEY, CRYPTO_STREAM_MAX_CHUNK + 1, mem_sink, &m, &s, &err) < 0);
	st_error_free(err);
	close(fi);
	close(fm);
	close(fo);
}

/* ---- keys and JWT ---- */

static struct crypto_key *load_pem(const char *pem)
{
	struct crypto_key *k = NULL;
	struct st_error *err = NULL;
	if (crypto_key_from_pem(pem, strlen(pem), &k, &err) < 0) {
		fprintf(stderr, "%s\n", st_error_msg(err));
		CHECK(0);
	}
	return k;
}

static char *pem_of(EVP_PKEY *pk, bool priv)
{
	BIO *b = BIO_new(BIO_s_mem());
	if (priv)
		PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
	else
		PEM_write_bio_PUBKEY(b, pk);
	char *d = NULL;
	long n = BIO_get_mem_data(b, &d);
	char *s = strndup(d, (size_t)n);
	BIO_free(b);
	return s;
}

TEST(es256_generate_and_check_pair)
{
	char *priv = NULL, *pub = NULL, *priv2 = NULL, *pub2 = NULL;
	struct st_error *err = NULL;
	CHECK(crypto_es256_generate(&priv, &pub, &err) == 0);
	CHECK_CONTAINS(priv, "-----BEGIN PRIVATE KEY-----");
	CHECK_CONTAINS(pub, "-----BEGIN PUBLIC KEY-----");
	CHECK(crypto_es256_check_pair(priv, pub, &err) == 0);
	CHECK(crypto_es256_generate(&priv2, &pub2, &err) == 0);
	CHECK(crypto_es256_check_pair(priv, pub2, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "not the half");
	st_error_release(&err);
	CHECK(crypto_es256_check_pair(pub, priv, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "swap");
	st_error_release(&err);
	/* a passphrase-protected key is refused with the fix, never prompted for */
	EVP_PKEY *ek = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	BIO *eb = BIO_new(BIO_s_mem());
	unsigned char pw[] = "pw";
	PEM_write_bio_PrivateKey(eb, ek, EVP_aes_256_cbc(), pw, 2, NULL, NULL);
	char *ed = NULL;
	long el = BIO_get_mem_data(eb, &ed);
	char *encpem = strndup(ed, (size_t)el);
	CHECK(crypto_es256_check_pair(encpem, pub, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "passphrase-protected");
	st_error_release(&err);
	free(encpem);
	BIO_free(eb);
	EVP_PKEY_free(ek);
	CHECK(crypto_es256_check_pair("nonsense", pub, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "not PEM");
	st_error_release(&err);
	/* P-384 is not ES256 */
	EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	char *p384priv = pem_of(p384, true), *p384pub = pem_of(p384, false);
	CHECK(crypto_es256_check_pair(p384priv, p384pub, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "P-256");
	st_error_release(&err);
	/* RSA is not ES256 */
	CHECK(crypto_es256_check_pair(priv, JOSE_RS256_PEM, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "RSA");
	st_error_release(&err);
	EVP_PKEY_free(p384);
	free(p384priv);
	free(p384pub);
	free(priv);
	free(pub);
	free(priv2);
	free(pub2);
}

static json_t *claims_now(int64_t exp_in)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I}", "sub", "sb_1", "aud", "stockade-sandbox",
	                 "iss", "stockade", "iat", (json_int_t)st_wall_s(), "exp",
	                 (json_int_t)(st_wall_s() + exp_in));
}

TEST(jwt_es256_sign_verify_and_claims)
{
	char *priv = NULL, *pub = NULL, *tok = NULL;
	CHECK(crypto_es256_generate(&priv, &pub, NULL) == 0);
	struct crypto_key *kpriv = load_pem(priv), *kpub = load_pem(pub);
	CHECK(crypto_key_is_private(kpriv));
	CHECK(!crypto_key_is_private(kpub));
	CHECK_EQ_INT(crypto_key_alg(kpub), CRYPTO_ALG_ES256);
	json_t *c = claims_now(60);
	struct st_error *err = NULL;
	CHECK(crypto_jwt_sign(kpriv, "k1", c, &tok, &err) == 0);
	CHECK(crypto_jwt_sign(kpub, NULL, c, &tok, &err) < 0); /* public keys cannot sign */
	st_error_release(&err);
	struct crypto_jwt_verify_opts o = {
	    .audience = "stockade-sandbox", .issuer = "stockade", .require_exp = true};
	json_t *out = NULL;
	CHECK(crypto_jwt_verify(tok, kpub, &o, &out, &err) == 0);
	CHECK_STREQ(json_string_value(json_object_get(out, "sub")), "sb_1");
	json_decref(out);
	/* the private key verifies too (it holds the public half) */
	CHECK(crypto_jwt_verify(tok, kpriv, &o, NULL, NULL) == 0);

	/* wrong audience / issuer */
	struct crypto_jwt_verify_opts o2 = o;
	o2.audience = "other";
	CHECK(crypto_jwt_verify(tok, kpub, &o2, NULL, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "audience");
	st_error_release(&err);
	o2 = o;
	o2.issuer = "evil";
	CHECK(crypto_jwt_verify(tok, kpub, &o2, NULL, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "issuer");
	st_error_release(&err);
	/* expired: now past exp; leeway tolerates a little */
	o2 = o;
	o2.now = st_wall_s() + 61;
	CHECK(crypto_jwt_verify(tok, kpub, &o2, NULL, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "expired");
	st_error_release(&err);
	o2.leeway_s = 30;
	CHECK(crypto_jwt_verify(tok, kpub, &o2, NULL, NULL) == 0);
	/* a different keypair does not verify it */
	char *priv2 = NULL, *pub2 = NULL;
	CHECK(crypto_es256_generate(&priv2, &pub2, NULL) == 0);
	struct crypto_key *kpub2 = load_pem(pub2);
	CHECK(crypto_jwt_verify(tok, kpub2, &o, NULL, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "signature");
	st_error_release(&err);

	/* tampered payload */
	json_t *c2 = json_deep_copy(c);
	json_object_set_new(c2, "sub", json_string("sb_2"));
	char *p2 = json_dumps(c2, JSON_COMPACT), *p2b = crypto_base64url_encode(p2, strlen(p2));
	const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
	char *forged = st_xasprintf("%.*s.%s%s", (int)(d1 - tok), tok, p2b, d2);
	CHECK(crypto_jwt_verify(forged, kpub, &o, NULL, NULL) == -EACCES);
	/* signature of the wrong length */
	char *shortsig = st_xasprintf("%.*s.AAAA", (int)(d2 - tok), tok);
	CHECK(crypto_jwt_verify(shortsig, kpub, &o, NULL, NULL) == -EACCES);
	free(shortsig);
	free(forged);
	free(p2);
	free(p2b);
	json_decref(c2);

	/* nbf in the future; missing exp when required */
	json_t *c3 = claims_now(600);
	json_object_set_new(c3, "nbf", json_integer(st_wall_s() + 300));
	char *t3 = NULL;
	CHECK(crypto_jwt_sign(kpriv, NULL, c3, &t3, NULL) == 0);
	CHECK(crypto_jwt_verify(t3, kpub, &o, NULL, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "not valid yet");
	st_error_release(&err);
	json_object_del(c3, "nbf");
	json_object_del(c3, "exp");
	free(t3);
	CHECK(crypto_jwt_sign(kpriv, NULL, c3, &t3, NULL) == 0);
	CHECK(crypto_jwt_verify(t3, kpub, &o, NULL, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "no expiry");
	st_error_release(&err);
	free(t3);
	json_decref(c3);

	json_decref(c);
	free(tok);
	crypto_key_free(kpriv);
	crypto_key_free(kpub);
	crypto_key_free(kpub2);
	free(priv);
	free(pub);
	free(priv2);
	free(pub2);
}

static char *forge(const char *header, const char *payload, const char *sig)
{
	char *h = crypto_base64url_encode(header, strlen(header));
	char *p = crypto_base64url_encode(payload, strlen(payload));
	char *t = st_xasprintf("%s.%s.%s", h, p, sig);
	free(h);
	free(p);
	return t;
}

TEST(jwt_rejects_alg_none_and_key_confusion)
{
	char *priv = NULL, *pub = NULL;
	CHECK(crypto_es256_generate(&priv, &pub, NULL) == 0);
	struct crypto_key *kpub = load_pem(pub);
	struct st_error *err = NULL;
	/* alg none, with and without a signature part */
	char *t = forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"sub\":\"x\"}", "");
	CHECK(crypto_jwt_verify(t, kpub, NULL, NULL, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "'none'");
	st_error_release(&err);
	free(t);
	t = forge("{\"alg\":\"None\"}", "{\"sub\":\"x\"}", "");
	CHECK(crypto_jwt_verify(t, kpub, NULL, NULL, NULL) == -EACCES);
	free(t);
	/* HS256 "signed" with the public key PEM as the HMAC secret (key confusion) */
	struct crypto_key *hk = NULL;
	CHECK(crypto_key_hmac(pub, strlen(pub), &hk, NULL) == 0);
	json_t *c = claims_now(60);
	CHECK(crypto_jwt_sign(hk, NULL, c, &t, NULL) == 0);
	CHECK(crypto_jwt_verify(t, kpub, NULL, NULL, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "does not match");
	st_error_release(&err);
	/* and an HS256 verifier refuses an ES256 token */
	struct crypto_key *kpriv = load_pem(priv);
	char *es = NULL;
	CHECK(crypto_jwt_sign(kpriv, NULL, c, &es, NULL) == 0);
	CHECK(crypto_jwt_verify(es, hk, NULL, NULL, NULL) == -EACCES);
	/* crit headers are refused */
	char *cr = forge("{\"alg\":\"ES256\",\"crit\":[\"x\"]}", "{}", "AAAA");
	CHECK(crypto_jwt_verify(cr, kpub, NULL, NULL, NULL) == -EACCES);
	free(cr);
	free(es);
	free(t);
	json_decref(c);
	crypto_key_free(hk);
	crypto_key_free(kpriv);
	crypto_key_free(kpub);
	free(priv);
	free(pub);
}

TEST(jwt_malformed)
{
	struct crypto_key *hk = NULL;
	CHECK(crypto_key_hmac("secret", 6, &hk, NULL) == 0);
	static const char *bad[] = {
	    "", "abc", "a.b", "a.b.c.d", "!!!.e30.AAAA", "e30.!!!.AAAA", "bm90IGpzb24.e30.AAAA"};
	for (size_t i = 0; i < ST_ARRAY_SIZE(bad); i++) {
		struct st_error *err = NULL;
		CHECK(crypto_jwt_verify(bad[i], hk, NULL, NULL, &err) < 0);
		CHECK(err != NULL);
		st_error_free(err);
	}
	CHECK(crypto_jwt_verify(NULL, hk, NULL, NULL, NULL) < 0);
	char *huge = malloc(70000);
	memset(huge, 'a', 69999);
	huge[69999] = 0;
	CHECK(crypto_jwt_verify(huge, hk, NULL, NULL, NULL) == -EINVAL);
	free(huge);
	struct crypto_key *empty = NULL;
	CHECK(crypto_key_hmac("", 0, &empty, NULL) == -EINVAL);
	CHECK(empty == NULL);
	crypto_key_free(hk);
}

TEST(jwt_hs256_roundtrip_and_jose_interop)
{
	const char *secret = "a-shared-secret-of-32-characters!!";
	struct crypto_key *hk = NULL, *wrong = NULL;
	CHECK(crypto_key_hmac(secret, strlen(secret), &hk, NULL) == 0);
	CHECK(crypto_key_hmac("other", 5, &wrong, NULL) == 0);
	json_t *out = NULL;
	CHECK(crypto_jwt_verify(JOSE_HS256_TOKEN, hk, NULL, &out, NULL) == 0);
	CHECK_STREQ(json_string_value(json_object_get(out, "sub")), "u");
	json_decref(out);
	CHECK(crypto_jwt_verify(JOSE_HS256_TOKEN, wrong, NULL, NULL, NULL) == -EACCES);
	json_t *c = claims_now(60);
	char *t = NULL;
	CHECK(crypto_jwt_sign(hk, "kid-1", c, &t, NULL) == 0);
	CHECK(crypto_jwt_verify(t, hk, NULL, NULL, NULL) == 0);
	json_t *h = NULL;
	CHECK(crypto_jwt_decode_unverified(t, &h, NULL, NULL) == 0);
	CHECK_STREQ(json_string_value(json_object_get(h, "alg")), "HS256");
	CHECK_STREQ(json_string_value(json_object_get(h, "kid")), "kid-1");
	json_decref(h);
	free(t);
	json_decref(c);
	crypto_key_free(hk);
	crypto_key_free(wrong);
}

TEST(jose_es256_rs256_tokens_verify_with_pem_and_jwks)
{
	struct crypto_jwt_verify_opts o = {.audience = "https://stockade.example/mcp",
	                                   .issuer = "https://issuer.example"};
	struct crypto_key *es = load_pem(JOSE_ES256_PEM), *rs = load_pem(JOSE_RS256_PEM);
	CHECK_EQ_INT(crypto_key_alg(rs), CRYPTO_ALG_RS256);
	CHECK(crypto_jwt_verify(JOSE_ES256_TOKEN, es, &o, NULL, NULL) == 0);
	CHECK(crypto_jwt_verify(JOSE_RS256_TOKEN, rs, &o, NULL, NULL) == 0);
	CHECK(crypto_jwt_verify(JOSE_RS256_TOKEN, es, &o, NULL, NULL) == -EACCES);

	struct crypto_jwks *j = NULL;
	struct st_error *err = NULL;
	CHECK(crypto_jwks_parse(JOSE_ES256_JWKS, strlen(JOSE_ES256_JWKS), &j, &err) == 0);
	CHECK_EQ_INT(crypto_jwks_count(j), 2); /* the oct key is ignored */
	json_t *claims = NULL;
	CHECK(crypto_jwt_verify_jwks(JOSE_ES256_TOKEN, j, &o, &claims, NULL) == 0);
	CHECK_STREQ(json_string_value(json_object_get(claims, "scope")), "stockade:execute");
	json_decref(claims);
	CHECK(crypto_jwt_verify_jwks(JOSE_RS256_TOKEN, j, &o, NULL, NULL) == 0);
	struct crypto_jwt_verify_opts bad = o;
	bad.audience = "https://elsewhere/mcp";
	CHECK(crypto_jwt_verify_jwks(JOSE_RS256_TOKEN, j, &bad, NULL, NULL) == -EACCES);
	/* an HS256 token naming the oct kid is refused: the JWKS holds no HMAC keys */
	char *t = forge("{\"alg\":\"HS256\",\"kid\":\"hmac\"}", "{}", "AAAA");
	CHECK(crypto_jwt_verify_jwks(t, j, NULL, NULL, &err) == -EACCES);
	CHECK_CONTAINS(st_error_msg(err), "no key with kid");
	st_error_release(&err);
	free(t);
	/* HS256 token naming the EC kid: algorithm mismatch */
	t = forge("{\"alg\":\"HS256\",\"kid\":\"es256-1\"}", "{}", "AAAA");
	CHECK(crypto_jwt_verify_jwks(t, j, NULL, NULL, NULL) == -EACCES);
	free(t);
	crypto_jwks_free(j);
	CHECK(crypto_jwks_parse("{}", 2, &j, &err) < 0);
	st_error_release(&err);
	CHECK(crypto_jwks_parse("nope", 4, &j, &err) < 0);
	st_error_release(&err);
	crypto_key_free(es);
	crypto_key_free(rs);
}

TEST(jwk_export_import_roundtrip)
{
	char *priv = NULL, *pub = NULL, *t = NULL;
	CHECK(crypto_es256_generate(&priv, &pub, NULL) == 0);
	struct crypto_key *k = load_pem(priv);
	json_t *jwk = crypto_key_to_public_jwk(k, "sandbox-1");
	CHECK_STREQ(json_string_value(json_object_get(jwk, "crv")), "P-256");
	CHECK(json_object_get(jwk, "d") == NULL);
	json_t *doc = json_pack("{s:[O]}", "keys", jwk);
	char *s = json_dumps(doc, 0);
	struct crypto_jwks *j = NULL;
	CHECK(crypto_jwks_parse(s, strlen(s), &j, NULL) == 0);
	json_t *c = claims_now(60);
	CHECK(crypto_jwt_sign(k, "sandbox-1", c, &t, NULL) == 0);
	CHECK(crypto_jwt_verify_jwks(t, j, NULL, NULL, NULL) == 0);
	/* RSA keys round-trip too */
	struct crypto_key *rs = load_pem(JOSE_RS256_PEM);
	json_t *rj = crypto_key_to_public_jwk(rs, NULL);
	struct crypto_key *rs2 = NULL;
	CHECK(crypto_key_from_jwk(rj, &rs2, NULL) == 0);
	CHECK(crypto_jwt_verify(JOSE_RS256_TOKEN, rs2, NULL, NULL, NULL) == 0);
	/* bad JWKs */
	json_t *bad =
	    json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-384", "x", "AA", "y", "AA");
	struct st_error *err = NULL;
	CHECK(crypto_key_from_jwk(bad, &rs2, &err) < 0);
	st_error_release(&err);
	json_decref(bad);
	json_decref(rj);
	crypto_key_free(rs);
	crypto_key_free(rs2);
	free(t);
	json_decref(c);
	crypto_jwks_free(j);
	free(s);
	json_decref(doc);
	json_decref(jwk);
	crypto_key_free(k);
	free(priv);
	free(pub);
}

TEST(rs256_sign_with_generated_key)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	CHECK(pk != NULL);
	char *privpem = pem_of(pk, true), *pubpem = pem_of(pk, false);
	struct crypto_key *priv = load_pem(privpem), *pub = load_pem(pubpem);
	json_t *c = claims_now(60);
	char *t = NULL;
	CHECK(crypto_jwt_sign(priv, "r1", c, &t, NULL) == 0);
	CHECK(crypto_jwt_verify(t, pub, NULL, NULL, NULL) == 0);
	/* small RSA keys are refused */
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	char *smallpem = pem_of(small, false);
	struct crypto_key *sk = NULL;
	struct st_error *err = NULL;
	CHECK(crypto_key_from_pem(smallpem, strlen(smallpem), &sk, &err) < 0);
	CHECK_CONTAINS(st_error_msg(err), "2048");
	st_error_free(err);
	EVP_PKEY_free(small);
	free(smallpem);
	free(t);
	json_decref(c);
	crypto_key_free(priv);
	crypto_key_free(pub);
	free(privpem);
	free(pubpem);
	EVP_PKEY_free(pk);
}
