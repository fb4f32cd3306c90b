/*
 * cmd-keys.c - `stockade keys generate`: the agent sandbox secrets, made with OpenSSL:
 * an ES256 (P-256) keypair in PEM, a 64-hex encryption key without a trailing newline and a
 * random API secret, all written 0600; optionally the Kubernetes Secret that carries them.
 *
 * Exit codes: 0 written, 1 failure (existing files are never overwritten without --force),
 * 2 usage.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"
#include "crypto/crypto.h"

int cmd_keys(int argc, char **argv);

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: stockade keys generate [--out DIR] [--k8s-secret NAME [--namespace NS]]\n"
	        "                              [--force]\n\n"
	        "Writes into DIR (default: the current directory), each file mode 0600:\n"
	        "  private_key.pem     ES256 (EC P-256) private key, PKCS#8 PEM\n"
	        "  public_key.pem      its public half, SPKI PEM\n"
	        "  encryption_key.txt  64 hex characters, no trailing newline\n"
	        "  api_secret.txt      64 hex characters, no trailing newline\n"
	        "With --k8s-secret NAME it also writes DIR/NAME.yaml and prints it: a Secret with\n"
	        "the data keys jwt-public-key, jwt-private-key, encryption-key and api-secret\n"
	        "(base64), for rr.agentSandbox.externalSecret.name: NAME.\n"
	        "--force overwrites existing files.\n"
	        "exit codes: 0 ok, 1 failure, 2 usage\n");
}

static bool valid_k8s_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '.'))
			return false;
	return true;
}

static int write_secret_file(const char *dir, const char *name, const char *data, bool force,
                             char **written)
{
	char *path = st_xasprintf("%s/%s", dir, name);
	struct stat st;
	struct st_error *err = NULL;
	int rc = 0;
	if (!force && lstat(path, &st) == 0) {
		fprintf(stderr,
		        "stockade keys: '%s' already exists; refusing to overwrite a key (use "
		        "--force, or --out another directory)\n",
		        path);
		rc = -EEXIST;
	} else if (st_write_file_atomic(path, data, strlen(data), 0600, &err) < 0) {
		fprintf(stderr, "stockade keys: %s\n", st_error_msg(err));
		st_error_free(err);
		rc = -EIO;
	}
	if (rc == 0)
		*written = path;
	else
		free(path);
	return rc;
}

int cmd_keys(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "generate") != 0) {
		fprintf(stderr, "stockade keys: unknown subcommand '%s' (generate)\n", argv[1]);
		return 2;
	}
	const char *out = ".", *secret = NULL, *ns = NULL;
	bool force = false;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--force") == 0) {
			force = true;
		} else if ((strcmp(a, "--out") == 0 || strcmp(a, "--k8s-secret") == 0 ||
		            strcmp(a, "--namespace") == 0) &&
		           i + 1 < argc) {
			const char *v = argv[++i];
			if (strcmp(a, "--out") == 0)
				out = v;
			else if (strcmp(a, "--k8s-secret") == 0)
				secret = v;
			else
				ns = v;
		} else {
			fprintf(stderr, "stockade keys: unknown or incomplete option '%s'\n", a);
			return 2;
		}
	}
	if (ns && !secret) {
		fprintf(stderr, "stockade keys: --namespace needs --k8s-secret NAME\n");
		return 2;
	}
	if (secret && !valid_k8s_name(secret)) {
		fprintf(stderr,
		        "stockade keys: '%s' is not a valid Kubernetes name (lowercase letters, "
		        "digits, '-' and '.')\n",
		        secret);
		return 2;
	}
	if (ns && !valid_k8s_name(ns)) {
		fprintf(stderr, "stockade keys: '%s' is not a valid Kubernetes namespace\n", ns);
		return 2;
	}
	struct st_error *err = NULL;
	if (st_mkdir_p(out, 0700, &err) < 0) {
		fprintf(stderr, "stockade keys: %s\n", st_error_msg(err));
		st_error_free(err);
		return 1;
	}
	char *priv = NULL, *pub = NULL;
	if (crypto_es256_generate(&priv, &pub, &err) < 0) {
		fprintf(stderr, "stockade keys: %s\n", st_error_msg(err));
		st_error_free(err);
		return 1;
	}
	char *enc = crypto_random_hex(32);
	char *api = crypto_random_hex(32);
	char *paths[5] = {0};
	int rc = 0;
	/* check all targets first so a refusal never leaves a half-written set */
	const char *names[] = {"private_key.pem", "public_key.pem", "encryption_key.txt",
	                       "api_secret.txt"};
	char *yaml_name = secret ? st_xasprintf("%s.yaml", secret) : NULL;
	if (!force) {
		for (size_t i = 0; i < 5; i++) {
			const char *n = i < 4 ? names[i] : yaml_name;
			if (n == NULL)
				continue;
			char *p = st_xasprintf("%s/%s", out, n);
			struct stat st;
			if (lstat(p, &st) == 0) {
				fprintf(
				    stderr,
				    "stockade keys: '%s' already exists; refusing to overwrite a "
				    "key (use --force, or --out another directory)\n",
				    p);
				rc = -EEXIST;
			}
			free(p);
		}
	}
	const char *data[] = {priv, pub, enc, api};
	for (size_t i = 0; rc == 0 && i < 4; i++)
		rc = write_secret_file(out, names[i], data[i], force, &paths[i]);
	char *yaml = NULL;
	if (rc == 0 && secret) {
		char *b_pub = crypto_base64_encode(pub, strlen(pub));
		char *b_priv = crypto_base64_encode(priv, strlen(priv));
		char *b_enc = crypto_base64_encode(enc, strlen(enc));
		char *b_api = crypto_base64_encode(api, strlen(api));
		yaml = st_xasprintf("apiVersion: v1\n"
		                    "kind: Secret\n"
		                    "metadata:\n"
		                    "  name: %s\n"
		                    "  namespace: %s\n"
		                    "type: Opaque\n"
		                    "data:\n"
		                    "  jwt-public-key: %s\n"
		                    "  jwt-private-key: %s\n"
		                    "  encryption-key: %s\n"
		                    "  api-secret: %s\n",
		                    secret, ns ? ns : "default", b_pub, b_priv, b_enc, b_api);
		crypto_free_secret(b_pub);
		crypto_free_secret(b_priv);
		crypto_free_secret(b_enc);
		crypto_free_secret(b_api);
		rc = write_secret_file(out, yaml_name, yaml, force, &paths[4]);
	}
	if (rc == 0) {
		if (yaml)
			fputs(yaml, stdout);
		fprintf(yaml ? stderr : stdout,
		        "wrote %s, %s, %s, %s%s%s (mode 0600)\n"
		        "use them with:\n"
		        "  rr:\n    agentSandbox:\n"
		        "      jwtPrivateKeyFile: %s\n      jwtPublicKeyFile: %s\n"
		        "      encryptionKeyFile: %s\n      apiSecretFile: %s\n",
		        paths[0], paths[1], paths[2], paths[3], paths[4] ? ", " : "",
		        paths[4] ? paths[4] : "", paths[0], paths[1], paths[2], paths[3]);
		if (yaml)
			fprintf(stderr,
			        "or apply %s and set rr.agentSandbox.externalSecret.name: %s\n",
			        paths[4], secret);
	}
	crypto_free_secret(yaml);
	crypto_free_secret(priv);
	free(pub);
	crypto_free_secret(enc);
	crypto_free_secret(api);
	free(yaml_name);
	for (size_t i = 0; i < 5; i++)
		free(paths[i]);
	return rc == 0 ? 0 : 1;
}
