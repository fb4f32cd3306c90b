/*
 * crypto-jwt.c - keys (HMAC secrets, EC P-256 and RSA through OpenSSL EVP), ES256 keypair
 * generation and checks, JWS compact signing/verification (HS256, ES256, RS256) and JWKS.
 *
 * Invariants:
 *  - a key has exactly one algorithm (struct crypto_key.alg) fixed when it is loaded; a token
 *    verifies only when its header's alg equals that algorithm, which is what defeats `alg:
 *    none` and the HS256-with-the-public-key confusion (an EC/RSA key never does HMAC);
 *  - ES256 signatures on the wire are raw r||s (64 bytes, RFC 7518 3.4); OpenSSL speaks DER,
 *    so we convert both ways and reject any other length;
 *  - claims checks (exp, nbf, iat, aud, iss) happen only after the signature verified.
 */
#include "crypto/crypto.h"

#include <math.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#define JWT_MAX_BYTES (64 * 1024)

struct crypto_key {
	enum crypto_alg alg;
	bool is_private;
	EVP_PKEY *pkey; /* EC or RSA */
	uint8_t *secret; /* HMAC */
	size_t secret_len;
};

const char *crypto_alg_name(enum crypto_alg a)
{
	switch (a) {
	case CRYPTO_ALG_HS256: return "HS256";
	case CRYPTO_ALG_ES256: return "ES256";
	case CRYPTO_ALG_RS256: return "RS256";
	case CRYPTO_ALG_NONE: return "none";
	default: return "none";
	}
}

static enum crypto_alg alg_from_name(const char *s)
{
	if (s == NULL)
		return CRYPTO_ALG_NONE;
	if (strcmp(s, "HS256") == 0)
		return CRYPTO_ALG_HS256;
	if (strcmp(s, "ES256") == 0)
		return CRYPTO_ALG_ES256;
	if (strcmp(s, "RS256") == 0)
		return CRYPTO_ALG_RS256;
	return CRYPTO_ALG_NONE;
}

/* The first OpenSSL error as text, for messages; clears the queue. */
static const char *ossl_reason(void)
{
	static __thread char buf[256];
	unsigned long e = ERR_peek_last_error();
	if (e == 0)
		return "unknown openssl error";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

int crypto_key_hmac(const void *secret, size_t n, struct crypto_key **out, struct st_error **err)
{
	if (n == 0)
		return st_error_make(err, EINVAL, "hmac secret is empty");
	struct crypto_key *k = st_xcalloc(1, sizeof(*k));
	k->alg = CRYPTO_ALG_HS256;
	k->is_private = true;
	k->secret = st_xmalloc(n);
	memcpy(k->secret, secret, n);
	k->secret_len = n;
	*out = k;
	return 0;
}

void crypto_key_free(struct crypto_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	if (k->secret) {
		crypto_wipe(k->secret, k->secret_len);
		free(k->secret);
	}
	free(k);
}

enum crypto_alg crypto_key_alg(const struct crypto_key *k)
{
	return k ? k->alg : CRYPTO_ALG_NONE;
}

bool crypto_key_is_private(const struct crypto_key *k)
{
	return k && k->is_private;
}

/* Classify an EVP key: EC must be P-256, RSA at least 2048 bits. */
static int classify(EVP_PKEY *pkey, enum crypto_alg *alg, struct st_error **err)
{
	if (EVP_PKEY_is_a(pkey, "EC")) {
		char group[64] = "";
		size_t gl = 0;
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
		                                   sizeof(group), &gl) != 1)
			return st_error_make(err, EINVAL, "ec key has no named curve");
		if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)
			return st_error_make(
			    err, EINVAL, "ec key is on curve '%s'; ES256 needs P-256 (prime256v1)",
			    group);
		*alg = CRYPTO_ALG_ES256;
		return 0;
	}
	if (EVP_PKEY_is_a(pkey, "RSA")) {
		if (EVP_PKEY_get_bits(pkey) < 2048)
			return st_error_make(err, EINVAL,
			                     "rsa key has %d bits; at least 2048 needed",
			                     EVP_PKEY_get_bits(pkey));
		*alg = CRYPTO_ALG_RS256;
		return 0;
	}
	return st_error_make(err, EINVAL, "key type '%s' is not supported (EC P-256 or RSA)",
	                     EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "?");
}

static EVP_PKEY *decode_pem(const char *pem, size_t len, int selection)
{
	EVP_PKEY *pkey = NULL;
	OSSL_DECODER_CTX *dc =
	    OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, NULL, selection, NULL, NULL);
	if (dc == NULL)
		return NULL;
	/* never prompt on a terminal for a passphrase: an empty one simply fails */
	OSSL_DECODER_CTX_set_passphrase(dc, (const unsigned char *)"", 0);
	const unsigned char *p = (const unsigned char *)pem;
	size_t left = len;
	if (OSSL_DECODER_from_data(dc, &p, &left) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	OSSL_DECODER_CTX_free(dc);
	ERR_clear_error();
	return pkey;
}

int crypto_key_from_pem(const char *pem, size_t len, struct crypto_key **out, struct st_error **err)
{
	if (pem == NULL || len == 0)
		return st_error_make(err, EINVAL, "key is empty");
	if (memmem(pem, len, "-----BEGIN", 10) == NULL)
		return st_error_make(
		    err, EINVAL,
		    "key is not PEM (no '-----BEGIN' line); expected a PEM file as "
		    "written by 'stockade keys generate' or 'openssl genpkey'");
	if (memmem(pem, len, "ENCRYPTED", 9) != NULL)
		return st_error_make(
		    err, EINVAL,
		    "key is passphrase-protected, which is not supported; write an "
		    "unencrypted copy with 'openssl pkey -in key.pem -out plain.pem' "
		    "and protect the file (mode 0600, a Secret) instead");
	bool priv = true;
	EVP_PKEY *pkey = decode_pem(pem, len, EVP_PKEY_KEYPAIR);
	if (pkey == NULL) {
		priv = false;
		pkey = decode_pem(pem, len, EVP_PKEY_PUBLIC_KEY);
	}
	if (pkey == NULL)
		return st_error_make(err, EINVAL, "cannot parse PEM key: %s", ossl_reason());
	enum crypto_alg alg;
	int rc = classify(pkey, &alg, err);
	if (rc < 0) {
		EVP_PKEY_free(pkey);
		return rc;
	}
	struct crypto_key *k = st_xcalloc(1, sizeof(*k));
	k->alg = alg;
	k->is_private = priv;
	k->pkey = pkey;
	*out = k;
	return 0;
}

static int b64url_field(json_t *o, const char *name, uint8_t **out, size_t *outlen,
                        struct st_error **err)
{
	const char *s = json_string_value(json_object_get(o, name));
	if (s == NULL)
		return st_error_make(err, EINVAL, "jwk has no '%s'", name);
	if (crypto_base64url_decode(s, strlen(s), out, outlen) < 0)
		return st_error_make(err, EINVAL, "jwk '%s' is not base64url", name);
	return 0;
}

static int pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **out,
                         struct st_error **err)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	int rc = 0;
	*out = NULL;
	if (params == NULL || pc == NULL || EVP_PKEY_fromdata_init(pc) != 1 ||
	    EVP_PKEY_fromdata(pc, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
		rc = st_error_make(err, EINVAL, "jwk is not a valid %s public key: %s", type,
		                   ossl_reason());
	EVP_PKEY_CTX_free(pc);
	OSSL_PARAM_free(params);
	return rc;
}

int crypto_key_from_jwk(json_t *jwk, struct crypto_key **out, struct st_error **err)
{
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	EVP_PKEY *pkey = NULL;
	enum crypto_alg alg;
	int rc;
	if (!json_is_object(jwk) || kty == NULL)
		return st_error_make(err, EINVAL, "jwk has no 'kty'");
	if (strcmp(kty, "EC") == 0) {
		const char *crv = json_string_value(json_object_get(jwk, "crv"));
		if (crv == NULL || strcmp(crv, "P-256") != 0)
			return st_error_make(err, EINVAL, "ec jwk curve '%s' is not P-256",
			                     crv ? crv : "");
		uint8_t *x = NULL, *y = NULL;
		size_t xl = 0, yl = 0;
		rc = b64url_field(jwk, "x", &x, &xl, err);
		if (rc == 0)
			rc = b64url_field(jwk, "y", &y, &yl, err);
		if (rc == 0 && (xl != 32 || yl != 32))
			rc = st_error_make(err, EINVAL, "ec jwk coordinates must be 32 bytes each");
		if (rc == 0) {
			uint8_t point[65];
			point[0] = 0x04;
			memcpy(point + 1, x, 32);
			memcpy(point + 33, y, 32);
			OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
			OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
			                                "prime256v1", 0);
			OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
			                                 sizeof(point));
			rc = pkey_fromdata("EC", bld, &pkey, err);
			OSSL_PARAM_BLD_free(bld);
		}
		free(x);
		free(y);
		if (rc < 0)
			return rc;
	} else if (strcmp(kty, "RSA") == 0) {
		uint8_t *n = NULL, *e = NULL;
		size_t nl = 0, el = 0;
		rc = b64url_field(jwk, "n", &n, &nl, err);
		if (rc == 0)
			rc = b64url_field(jwk, "e", &e, &el, err);
		if (rc == 0) {
			BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
			OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
			OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn);
			OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be);
			rc = pkey_fromdata("RSA", bld, &pkey, err);
			OSSL_PARAM_BLD_free(bld);
			BN_free(bn);
			BN_free(be);
		}
		free(n);
		free(e);
		if (rc < 0)
			return rc;
	} else {
		return st_error_make(err, EINVAL, "jwk key type '%s' is not supported", kty);
	}
	rc = classify(pkey, &alg, err);
	if (rc < 0) {
		EVP_PKEY_free(pkey);
		return rc;
	}
	struct crypto_key *k = st_xcalloc(1, sizeof(*k));
	k->alg = alg;
	k->pkey = pkey;
	*out = k;
	return 0;
}

static char *bn_param_b64url(EVP_PKEY *pkey, const char *name, int pad)
{
	BIGNUM *bn = NULL;
	if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1)
		return NULL;
	int len = pad ? pad : BN_num_bytes(bn);
	uint8_t *b = st_xmalloc((size_t)len + 1);
	BN_bn2binpad(bn, b, len);
	char *s = crypto_base64url_encode(b, (size_t)len);
	free(b);
	BN_free(bn);
	return s;
}

json_t *crypto_key_to_public_jwk(const struct crypto_key *k, const char *kid)
{
	if (k == NULL || k->pkey == NULL)
		return NULL;
	json_t *j = json_object();
	if (k->alg == CRYPTO_ALG_ES256) {
		char *x = bn_param_b64url(k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32);
		char *y = bn_param_b64url(k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
		if (x == NULL || y == NULL) {
			free(x);
			free(y);
			json_decref(j);
			return NULL;
		}
		json_object_set_new(j, "kty", json_string("EC"));
		json_object_set_new(j, "crv", json_string("P-256"));
		json_object_set_new(j, "x", json_string(x));
		json_object_set_new(j, "y", json_string(y));
		free(x);
		free(y);
	} else {
		char *n = bn_param_b64url(k->pkey, OSSL_PKEY_PARAM_RSA_N, 0);
		char *e = bn_param_b64url(k->pkey, OSSL_PKEY_PARAM_RSA_E, 0);
		if (n == NULL || e == NULL) {
			free(n);
			free(e);
			json_decref(j);
			return NULL;
		}
		json_object_set_new(j, "kty", json_string("RSA"));
		json_object_set_new(j, "n", json_string(n));
		json_object_set_new(j, "e", json_string(e));
		free(n);
		free(e);
	}
	json_object_set_new(j, "alg", json_string(crypto_alg_name(k->alg)));
	json_object_set_new(j, "use", json_string("sig"));
	if (kid)
		json_object_set_new(j, "kid", json_string(kid));
	return j;
}

/* ---- ES256 keypairs ----------------------------------------------------------------------- */

static char *bio_to_string(BIO *b)
{
	char *data = NULL;
	long n = BIO_get_mem_data(b, &data);
	char *s = st_xmalloc((size_t)n + 1);
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	return s;
}

int crypto_es256_generate(char **private_pem, char **public_pem, struct st_error **err)
{
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (pkey == NULL)
		return st_error_make(err, EIO, "cannot generate P-256 key: %s", ossl_reason());
	BIO *bpriv = BIO_new(BIO_s_mem()), *bpub = BIO_new(BIO_s_mem());
	int rc = 0;
	if (bpriv == NULL || bpub == NULL ||
	    PEM_write_bio_PrivateKey(bpriv, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
	    PEM_write_bio_PUBKEY(bpub, pkey) != 1) {
		rc = st_error_make(err, EIO, "cannot write PEM: %s", ossl_reason());
	} else {
		*private_pem = bio_to_string(bpriv);
		*public_pem = bio_to_string(bpub);
	}
	BIO_free(bpriv);
	BIO_free(bpub);
	EVP_PKEY_free(pkey);
	return rc;
}

int crypto_es256_check_pair(const char *private_pem, const char *public_pem, struct st_error **err)
{
	struct crypto_key *priv = NULL, *pub = NULL;
	int rc = crypto_key_from_pem(private_pem, strlen(private_pem), &priv, err);
	if (rc < 0)
		return st_error_wrap(err, "private key");
	rc = crypto_key_from_pem(public_pem, strlen(public_pem), &pub, err);
	if (rc < 0) {
		crypto_key_free(priv);
		return st_error_wrap(err, "public key");
	}
	if (!priv->is_private)
		rc = st_error_make(err, EINVAL,
		                   "the private key is a public key (did you swap the two files?)");
	else if (pub->is_private)
		rc = st_error_make(err, EINVAL,
		                   "the public key holds a private key; give the public half "
		                   "('openssl pkey -in private_key.pem -pubout')");
	else if (priv->alg != CRYPTO_ALG_ES256)
		rc =
		    st_error_make(err, EINVAL, "the private key is %s, not an EC P-256 (ES256) key",
		                  priv->alg == CRYPTO_ALG_RS256 ? "RSA" : "not EC");
	else if (pub->alg != CRYPTO_ALG_ES256)
		rc = st_error_make(err, EINVAL, "the public key is %s, not an EC P-256 (ES256) key",
		                   pub->alg == CRYPTO_ALG_RS256 ? "RSA" : "not EC");
	else if (EVP_PKEY_eq(priv->pkey, pub->pkey) != 1)
		rc = st_error_make(err, EINVAL,
		                   "the public key is not the half of the private key; derive it "
		                   "with 'openssl pkey -in private_key.pem -pubout'");
	ERR_clear_error();
	crypto_key_free(priv);
	crypto_key_free(pub);
	return rc;
}

/* ---- signatures --------------------------------------------------------------------------- */

static int evp_sign(EVP_PKEY *pkey, const void *data, size_t n, uint8_t **sig, size_t *siglen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int rc = -EIO;
	size_t len = 0;
	if (md == NULL)
		return -ENOMEM;
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	    EVP_DigestSign(md, NULL, &len, data, n) == 1) {
		*sig = st_xmalloc(len);
		if (EVP_DigestSign(md, *sig, &len, data, n) == 1) {
			*siglen = len;
			rc = 0;
		} else {
			free(*sig);
			*sig = NULL;
		}
	}
	EVP_MD_CTX_free(md);
	return rc;
}

static bool evp_verify(EVP_PKEY *pkey, const void *data, size_t n, const uint8_t *sig,
                       size_t siglen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	          EVP_DigestVerify(md, sig, siglen, data, n) == 1;
	EVP_MD_CTX_free(md);
	ERR_clear_error();
	return ok;
}

/* DER ECDSA-Sig-Value -> raw r||s (32+32). */
static int der_to_raw(const uint8_t *der, size_t len, uint8_t raw[64])
{
	const unsigned char *p = der;
	ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)len);
	if (s == NULL)
		return -EIO;
	const BIGNUM *r, *sv;
	ECDSA_SIG_get0(s, &r, &sv);
	int ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(sv, raw + 32, 32) == 32;
	ECDSA_SIG_free(s);
	return ok ? 0 : -EIO;
}

static int raw_to_der(const uint8_t raw[64], uint8_t **der, size_t *len)
{
	ECDSA_SIG *s = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(raw, 32, NULL), *sv = BN_bin2bn(raw + 32, 32, NULL);
	if (s == NULL || r == NULL || sv == NULL || ECDSA_SIG_set0(s, r, sv) != 1) {
		BN_free(r);
		BN_free(sv);
		ECDSA_SIG_free(s);
		return -ENOMEM;
	}
	unsigned char *out = NULL;
	int n = i2d_ECDSA_SIG(s, &out);
	ECDSA_SIG_free(s);
	if (n <= 0)
		return -EIO;
	*der = st_xmalloc((size_t)n);
	memcpy(*der, out, (size_t)n);
	OPENSSL_free(out);
	*len = (size_t)n;
	return 0;
}

int crypto_jwt_sign(const struct crypto_key *key, const char *kid, json_t *claims, char **token,
                    struct st_error **err)
{
	if (key == NULL || !json_is_object(claims))
		return st_error_make(err, EINVAL,
		                     "cannot sign jwt: no key or claims not an object");
	if (key->alg != CRYPTO_ALG_HS256 && !key->is_private)
		return st_error_make(err, EINVAL, "cannot sign jwt with a public key");
	json_t *hdr = json_pack("{s:s, s:s}", "alg", crypto_alg_name(key->alg), "typ", "JWT");
	if (kid)
		json_object_set_new(hdr, "kid", json_string(kid));
	char *h = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
	char *c = json_dumps(claims, JSON_COMPACT);
	json_decref(hdr);
	if (h == NULL || c == NULL) {
		free(h);
		free(c);
		return st_error_make(err, EINVAL, "cannot serialize jwt");
	}
	char *h64 = crypto_base64url_encode(h, strlen(h));
	char *c64 = crypto_base64url_encode(c, strlen(c));
	free(h);
	free(c);
	char *input = st_xasprintf("%s.%s", h64, c64);
	free(h64);
	free(c64);

	uint8_t mac[32], raw[64];
	const uint8_t *sig = NULL;
	size_t siglen = 0;
	uint8_t *der = NULL;
	int rc = 0;
	if (key->alg == CRYPTO_ALG_HS256) {
		crypto_hmac_sha256(key->secret, key->secret_len, input, strlen(input), mac);
		sig = mac;
		siglen = 32;
	} else if (evp_sign(key->pkey, input, strlen(input), &der, &siglen) < 0) {
		rc = st_error_make(err, EIO, "cannot sign jwt: %s", ossl_reason());
	} else if (key->alg == CRYPTO_ALG_ES256) {
		if (der_to_raw(der, siglen, raw) < 0)
			rc = st_error_make(err, EIO, "cannot convert ecdsa signature");
		sig = raw;
		siglen = 64;
	} else {
		sig = der; /* RS256: PKCS#1 v1.5 signature bytes as they are */
	}
	if (rc == 0) {
		char *s64 = crypto_base64url_encode(sig, siglen);
		*token = st_xasprintf("%s.%s", input, s64);
		free(s64);
	}
	free(der);
	free(input);
	return rc;
}

static json_t *decode_part(const char *s, size_t len)
{
	uint8_t *b = NULL;
	size_t n = 0;
	if (crypto_base64url_decode(s, len, &b, &n) < 0)
		return NULL;
	json_t *j = json_loadb((const char *)b, n, JSON_REJECT_DUPLICATES, NULL);
	free(b);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

struct jwt_parts {
	const char *h, *p, *s;
	size_t hl, pl, sl;
};

static int split_token(const char *token, struct jwt_parts *t, struct st_error **err)
{
	if (token == NULL || *token == '\0')
		return st_error_make(err, EINVAL, "token is empty");
	size_t len = strnlen(token, JWT_MAX_BYTES + 1);
	if (len > JWT_MAX_BYTES)
		return st_error_make(err, EINVAL, "token is longer than %d bytes", JWT_MAX_BYTES);
	const char *d1 = strchr(token, '.');
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	if (d1 == NULL || d2 == NULL || strchr(d2 + 1, '.') != NULL)
		return st_error_make(err, EINVAL,
		                     "token is not a compact jws (three dot-separated "
		                     "parts)");
	t->h = token;
	t->hl = (size_t)(d1 - token);
	t->p = d1 + 1;
	t->pl = (size_t)(d2 - d1 - 1);
	t->s = d2 + 1;
	t->sl = strlen(d2 + 1);
	return 0;
}

int crypto_jwt_decode_unverified(const char *token, json_t **header, json_t **claims,
                                 struct st_error **err)
{
	struct jwt_parts t;
	int rc = split_token(token, &t, err);
	if (rc < 0)
		return rc;
	json_t *h = decode_part(t.h, t.hl);
	json_t *c = decode_part(t.p, t.pl);
	if (h == NULL || c == NULL) {
		json_decref(h);
		json_decref(c);
		return st_error_make(err, EINVAL, "token header or payload is not base64url json");
	}
	if (header)
		*header = h;
	else
		json_decref(h);
	if (claims)
		*claims = c;
	else
		json_decref(c);
	return 0;
}

static bool numeric_claim(json_t *c, const char *name, double *out, bool *bad)
{
	json_t *v = json_object_get(c, name);
	if (v == NULL)
		return false;
	if (!json_is_number(v) || !isfinite(json_number_value(v))) {
		*bad = true;
		return false;
	}
	*out = json_number_value(v);
	return true;
}

static bool audience_matches(json_t *aud, const char *want)
{
	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	if (json_is_array(aud)) {
		size_t i;
		json_t *v;
		json_array_foreach(aud, i, v)
		{
			if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
				return true;
		}
	}
	return false;
}

int crypto_jwt_verify(const char *token, const struct crypto_key *key,
                      const struct crypto_jwt_verify_opts *opts, json_t **claims,
                      struct st_error **err)
{
	static const struct crypto_jwt_verify_opts none;
	struct jwt_parts t;
	int rc;
	if (opts == NULL)
		opts = &none;
	if (key == NULL)
		return st_error_make(err, EINVAL, "no key to verify the token with");
	rc = split_token(token, &t, err);
	if (rc < 0)
		return rc;
	json_t *hdr = decode_part(t.h, t.hl);
	if (hdr == NULL)
		return st_error_make(err, EINVAL, "token header is not base64url json");
	const char *alg = json_string_value(json_object_get(hdr, "alg"));
	enum crypto_alg a = alg_from_name(alg);
	bool crit = json_object_get(hdr, "crit") != NULL;
	char algbuf[32];
	st_strlcpy(algbuf, alg ? alg : "(missing)", sizeof(algbuf));
	json_decref(hdr);
	if (a == CRYPTO_ALG_NONE) {
		st_error_make(err, 0, "token algorithm '%s' is not accepted", algbuf);
		return -EACCES;
	}
	if (a != key->alg) {
		st_error_make(err, 0, "token algorithm '%s' does not match the key's %s", algbuf,
		              crypto_alg_name(key->alg));
		return -EACCES;
	}
	if (crit) {
		st_error_make(err, 0, "token has critical header parameters we do not understand");
		return -EACCES;
	}
	uint8_t *sig = NULL;
	size_t siglen = 0;
	if (t.sl == 0 || crypto_base64url_decode(t.s, t.sl, &sig, &siglen) < 0) {
		free(sig);
		st_error_make(err, 0, "token signature is missing or not base64url");
		return -EACCES;
	}
	size_t inlen = (size_t)(t.s - 1 - token);
	bool ok = false;
	if (a == CRYPTO_ALG_HS256) {
		uint8_t mac[32];
		crypto_hmac_sha256(key->secret, key->secret_len, token, inlen, mac);
		ok = siglen == 32 && crypto_equal(mac, sig, 32);
	} else if (a == CRYPTO_ALG_ES256) {
		uint8_t *der = NULL;
		size_t derlen = 0;
		ok = siglen == 64 && raw_to_der(sig, &der, &derlen) == 0 &&
		     evp_verify(key->pkey, token, inlen, der, derlen);
		free(der);
	} else {
		ok = evp_verify(key->pkey, token, inlen, sig, siglen);
	}
	free(sig);
	if (!ok) {
		st_error_make(err, 0, "token signature is invalid");
		return -EACCES;
	}

	json_t *c = decode_part(t.p, t.pl);
	if (c == NULL)
		return st_error_make(err, EINVAL, "token payload is not a base64url json object");
	double now = opts->now ? (double)opts->now : (double)st_wall_s();
	double leeway = (double)(opts->leeway_s > 0 ? opts->leeway_s : 0);
	double exp = 0, nbf = 0, iat = 0;
	bool bad = false;
	bool has_exp = numeric_claim(c, "exp", &exp, &bad);
	bool has_nbf = numeric_claim(c, "nbf", &nbf, &bad);
	bool has_iat = numeric_claim(c, "iat", &iat, &bad);
	rc = -EACCES;
	if (bad)
		st_error_make(err, 0, "token exp/nbf/iat is not a number");
	else if (!has_exp && opts->require_exp)
		st_error_make(err, 0, "token has no expiry (exp)");
	else if (has_exp && now >= exp + leeway)
		st_error_make(err, 0, "token expired %.0f seconds ago", now - exp);
	else if (has_nbf && now + leeway < nbf)
		st_error_make(err, 0, "token is not valid yet (nbf in %.0f seconds)", nbf - now);
	else if (has_iat && now + leeway < iat)
		st_error_make(err, 0, "token was issued in the future (iat)");
	else if (opts->audience && !audience_matches(json_object_get(c, "aud"), opts->audience))
		st_error_make(err, 0, "token audience does not include '%s'", opts->audience);
	else if (opts->issuer &&
	         (!json_is_string(json_object_get(c, "iss")) ||
	          strcmp(json_string_value(json_object_get(c, "iss")), opts->issuer) != 0))
		st_error_make(err, 0, "token issuer is not '%s'", opts->issuer);
	else
		rc = 0;
	if (rc == 0 && claims)
		*claims = c;
	else
		json_decref(c);
	return rc;
}

/* ---- JWKS --------------------------------------------------------------------------------- */

struct jwks_entry {
	char *kid; /* may be NULL */
	struct crypto_key *key;
};

struct crypto_jwks {
	struct jwks_entry *keys;
	size_t n;
};

int crypto_jwks_parse(const char *json, size_t len, struct crypto_jwks **out, struct st_error **err)
{
	json_error_t je;
	json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (doc == NULL)
		return st_error_make(err, EINVAL, "jwks is not json: %s (line %d)", je.text,
		                     je.line);
	json_t *keys = json_object_get(doc, "keys");
	if (!json_is_array(keys)) {
		json_decref(doc);
		return st_error_make(err, EINVAL, "jwks has no 'keys' array");
	}
	struct crypto_jwks *j = st_xcalloc(1, sizeof(*j));
	j->keys = st_xcalloc(json_array_size(keys) + 1, sizeof(*j->keys));
	size_t i;
	json_t *k;
	json_array_foreach(keys, i, k)
	{
		const char *use = json_string_value(json_object_get(k, "use"));
		const char *alg = json_string_value(json_object_get(k, "alg"));
		if (use && strcmp(use, "sig") != 0)
			continue;
		struct crypto_key *key = NULL;
		struct st_error *e = NULL;
		if (crypto_key_from_jwk(k, &key, &e) < 0) {
			st_error_free(e); /* keys we cannot use are skipped, as RFC 7517 5 says */
			continue;
		}
		if (alg && alg_from_name(alg) != key->alg) {
			crypto_key_free(key);
			continue;
		}
		const char *kid = json_string_value(json_object_get(k, "kid"));
		j->keys[j->n].kid = kid ? st_xstrdup(kid) : NULL;
		j->keys[j->n].key = key;
		j->n++;
	}
	json_decref(doc);
	*out = j;
	return 0;
}

void crypto_jwks_free(struct crypto_jwks *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; i < j->n; i++) {
		free(j->keys[i].kid);
		crypto_key_free(j->keys[i].key);
	}
	free(j->keys);
	free(j);
}

size_t crypto_jwks_count(const struct crypto_jwks *j)
{
	return j ? j->n : 0;
}

int crypto_jwt_verify_jwks(const char *token, const struct crypto_jwks *jwks,
                           const struct crypto_jwt_verify_opts *opts, json_t **claims,
                           struct st_error **err)
{
	json_t *hdr = NULL;
	struct jwt_parts t;
	int rc = split_token(token, &t, err);
	if (rc < 0)
		return rc;
	hdr = decode_part(t.h, t.hl);
	if (hdr == NULL)
		return st_error_make(err, EINVAL, "token header is not base64url json");
	const char *kid = json_string_value(json_object_get(hdr, "kid"));
	const struct crypto_key *key = NULL;
	if (jwks) {
		for (size_t i = 0; i < jwks->n && key == NULL; i++)
			if (kid ? (jwks->keys[i].kid && strcmp(jwks->keys[i].kid, kid) == 0)
			        : jwks->n == 1)
				key = jwks->keys[i].key;
	}
	if (key == NULL) {
		if (kid)
			st_error_make(err, 0, "no key with kid '%s' in the jwks", kid);
		else
			st_error_make(err, 0, "token has no kid and the jwks has %zu keys",
			              crypto_jwks_count(jwks));
		json_decref(hdr);
		return -EACCES;
	}
	json_decref(hdr);
	return crypto_jwt_verify(token, key, opts, claims, err);
}
