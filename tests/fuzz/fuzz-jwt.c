/*
 * fuzz-jwt.c - libFuzzer target: any bytes as a bearer token against an ES256 key, an HS256
 * key and a JWKS. Verification must never crash, leak or accept (there is no valid signature
 * to find by chance).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct crypto_key *es, *hs;
static struct crypto_jwks *jwks;

static void setup(void)
{
	char *priv = NULL, *pub = NULL;
	if (crypto_es256_generate(&priv, &pub, NULL) < 0 ||
	    crypto_key_from_pem(pub, strlen(pub), &es, NULL) < 0 ||
	    crypto_key_hmac("fuzz-secret", 11, &hs, NULL) < 0)
		abort();
	static const char doc[] =
	    "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k\",\"x\":"
	    "\"CbBFkRE6qxpRh-GYE-K_drvxbVuUNkmy6tmI_quwuH4\",\"y\":"
	    "\"lpvzexXq7pjvgd4DrM4qwBmGOmPqOhQLSq0eMsjzTks\"}]}";
	if (crypto_jwks_parse(doc, sizeof(doc) - 1, &jwks, NULL) < 0)
		abort();
	free(priv);
	free(pub);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (es == NULL)
		setup();
	char *tok = malloc(size + 1);
	memcpy(tok, data, size);
	tok[size] = '\0';
	struct crypto_jwt_verify_opts o = {.audience = "a", .issuer = "i", .leeway_s = 60};
	json_t *claims = NULL;
	struct st_error *err = NULL;
	if (crypto_jwt_verify(tok, es, &o, &claims, &err) == 0 ||
	    crypto_jwt_verify(tok, hs, &o, &claims, NULL) == 0 ||
	    crypto_jwt_verify_jwks(tok, jwks, &o, &claims, NULL) == 0)
		abort(); /* a forged token was accepted */
	st_error_free(err);
	json_t *h = NULL, *c = NULL;
	if (crypto_jwt_decode_unverified(tok, &h, &c, NULL) == 0) {
		json_decref(h);
		json_decref(c);
	}
	/* the JWKS parser on the same bytes */
	struct crypto_jwks *j = NULL;
	if (crypto_jwks_parse(tok, size, &j, NULL) == 0)
		crypto_jwks_free(j);
	free(tok);
	return 0;
}
