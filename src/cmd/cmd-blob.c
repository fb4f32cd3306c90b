/*
 * cmd-blob.c - `stockade blob`: put, get, list, stat and remove objects in a blob store, for
 * operators checking their storage settings and for tests. A thin layer over src/blob/.
 *
 * Exit codes: 0 success, 1 failure (including a missing object: 1 with "no such object"),
 * 2 usage error.
 */
#include <fcntl.h>
#include <getopt.h>

#include <jansson.h>

#include "blob/blob.h"
#include "common/common.h"
#include "config/config.h"

int cmd_blob(int argc, char **argv);

static void usage(FILE *f)
{
	fputs(
	    "usage: stockade blob [STORE OPTIONS] COMMAND [ARGS]\n"
	    "\n"
	    "commands:\n"
	    "  put KEY [FILE|-] [--meta NAME=VALUE]...   store FILE (or stdin) under KEY\n"
	    "  get KEY [FILE|-]                          write the object to FILE (or stdout)\n"
	    "  stat KEY                                  print size, etag, mtime, metadata (JSON)\n"
	    "  ls [PREFIX] [--json]                      list keys (with sizes) under PREFIX\n"
	    "  rm KEY...                                 delete objects (absent keys are fine)\n"
	    "  mb                                        create the bucket/container if missing\n"
	    "\n"
	    "store options (one provider):\n"
	    "  --fs DIR                     filesystem store rooted at DIR\n"
	    "  --s3-endpoint URL            S3 (or compatible) endpoint; with --bucket\n"
	    "  --s3                         S3 on AWS (endpoint from --region)\n"
	    "  --gcs                        Google Cloud Storage (S3-interoperable API, HMAC "
	    "keys)\n"
	    "  --bucket NAME --region REGION --path-style\n"
	    "                               credentials: AWS_ACCESS_KEY_ID, "
	    "AWS_SECRET_ACCESS_KEY,\n"
	    "                               AWS_SESSION_TOKEN\n"
	    "  --azure                      Azure Blob; connection string from\n"
	    "                               AZURE_STORAGE_CONNECTION_STRING or "
	    "--azure-connection-string\n"
	    "  --azure-connection-string S  --container NAME --azure-endpoint URL\n"
	    "  --env PREFIX                 S3 settings from PREFIX_* env vars falling back to\n"
	    "                               RR_DEFAULT_S3_* (e.g. --env RR_GIT_S3)\n"
	    "  --prefix P                   key prefix inside the store (e.g. git/)\n"
	    "  --part-size SIZE             multipart/block size (default 8M)\n"
	    "  --page-size N                list page size (default 1000)\n"
	    "  --attempts N                 attempts per idempotent request (default 4)\n"
	    "  --connect-timeout-ms MS      (default 5000)\n"
	    "  --timeout-ms MS              whole-request timeout (default 300000)\n"
	    "  --max-size SIZE              get: refuse objects larger than this\n",
	    f);
}

enum {
	OPT_FS = 1000,
	OPT_S3_ENDPOINT,
	OPT_S3,
	OPT_GCS,
	OPT_BUCKET,
	OPT_REGION,
	OPT_PATH_STYLE,
	OPT_AZURE,
	OPT_AZURE_CS,
	OPT_CONTAINER,
	OPT_AZURE_ENDPOINT,
	OPT_ENV,
	OPT_PREFIX,
	OPT_PART_SIZE,
	OPT_PAGE_SIZE,
	OPT_ATTEMPTS,
	OPT_CONNECT_TIMEOUT,
	OPT_TIMEOUT,
	OPT_META,
	OPT_JSON,
	OPT_MAX_SIZE,
	OPT_CONFIG,
	OPT_SUBSYSTEM,
};

static const struct option long_opts[] = {
    {"help", no_argument, NULL, 'h'},
    {"fs", required_argument, NULL, OPT_FS},
    {"s3-endpoint", required_argument, NULL, OPT_S3_ENDPOINT},
    {"s3", no_argument, NULL, OPT_S3},
    {"gcs", no_argument, NULL, OPT_GCS},
    {"bucket", required_argument, NULL, OPT_BUCKET},
    {"region", required_argument, NULL, OPT_REGION},
    {"path-style", no_argument, NULL, OPT_PATH_STYLE},
    {"azure", no_argument, NULL, OPT_AZURE},
    {"azure-connection-string", required_argument, NULL, OPT_AZURE_CS},
    {"container", required_argument, NULL, OPT_CONTAINER},
    {"azure-endpoint", required_argument, NULL, OPT_AZURE_ENDPOINT},
    {"env", required_argument, NULL, OPT_ENV},
    {"prefix", required_argument, NULL, OPT_PREFIX},
    {"part-size", required_argument, NULL, OPT_PART_SIZE},
    {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
    {"attempts", required_argument, NULL, OPT_ATTEMPTS},
    {"connect-timeout-ms", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
    {"meta", required_argument, NULL, OPT_META},
    {"json", no_argument, NULL, OPT_JSON},
    {"max-size", required_argument, NULL, OPT_MAX_SIZE},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"subsystem", required_argument, NULL, OPT_SUBSYSTEM},
    {NULL, 0, NULL, 0},
};

static int fail(const char *fmt, const char *arg)
{
	fprintf(stderr, "stockade blob: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return 2;
}

static int print_entry(const struct blob_entry *e, void *ud)
{
	bool json = *(bool *)ud;
	if (json) {
		json_t *o =
		    json_pack("{s:s, s:I, s:s?, s:I}", "key", e->key, "size", (json_int_t)e->size,
		              "etag", e->etag, "mtime", (json_int_t)e->mtime);
		char *t = json_dumps(o, JSON_COMPACT);
		printf("%s\n", t);
		free(t);
		json_decref(o);
	} else {
		printf("%s\t%llu\n", e->key, (unsigned long long)e->size);
	}
	return ferror(stdout) ? -EIO : 0;
}

static json_t *info_json(const char *key, const struct blob_info *info)
{
	json_t *meta = json_object();
	for (size_t i = 0; i < info->n_meta; i++)
		json_object_set_new(meta, info->meta[i].name, json_string(info->meta[i].value));
	return json_pack("{s:s, s:I, s:s?, s:I, s:o}", "key", key, "size", (json_int_t)info->size,
	                 "etag", info->etag, "mtime", (json_int_t)info->mtime, "meta", meta);
}

int cmd_blob(int argc, char **argv)
{
	struct blob_options o = {.provider = BLOB_PROVIDER_NONE};
	const char *env_prefix = NULL;
	const char *config_path = NULL;
	const char *subsystem = "git";
	struct blob_meta meta[BLOB_META_MAX];
	size_t n_meta = 0;
	bool json = false;
	uint64_t max_size = 1ull << 30;
	int c;

	optind = 1;
	char *pos[64];
	int npos = 0;
	/* Options may come before or after the subcommand and its arguments. */
	while (optind < argc) {
		c = getopt_long(argc, argv, "+h", long_opts, NULL);
		if (c == -1) {
			if (optind >= argc)
				break;
			if (npos >= (int)ST_ARRAY_SIZE(pos))
				return fail("too many arguments%s", "");
			pos[npos++] = argv[optind++];
			continue;
		}
		uint64_t v;
		switch (c) {
		case 'h': usage(stdout); return 0;
		case OPT_FS:
			o.provider = BLOB_PROVIDER_FS;
			o.fs.path = optarg;
			break;
		case OPT_S3_ENDPOINT:
			if (o.provider != BLOB_PROVIDER_GCS)
				o.provider = BLOB_PROVIDER_S3;
			o.s3.endpoint = optarg;
			break;
		case OPT_S3: o.provider = BLOB_PROVIDER_S3; break;
		case OPT_GCS: o.provider = BLOB_PROVIDER_GCS; break;
		case OPT_BUCKET: o.s3.bucket = optarg; break;
		case OPT_REGION: o.s3.region = optarg; break;
		case OPT_PATH_STYLE: o.s3.force_path_style = true; break;
		case OPT_AZURE: o.provider = BLOB_PROVIDER_AZURE; break;
		case OPT_AZURE_CS:
			o.provider = BLOB_PROVIDER_AZURE;
			o.azure.connection_string = optarg;
			break;
		case OPT_CONTAINER: o.azure.container = optarg; break;
		case OPT_AZURE_ENDPOINT: o.azure.endpoint = optarg; break;
		case OPT_ENV: env_prefix = optarg; break;
		case OPT_PREFIX: o.prefix = optarg; break;
		case OPT_PART_SIZE:
			if (st_parse_size(optarg, &v) < 0 || v == 0 || v > (1ull << 32))
				return fail("invalid --part-size '%s': use a size such as 8M",
				            optarg);
			o.part_size = (size_t)v;
			break;
		case OPT_PAGE_SIZE:
			if (st_parse_u64(optarg, &v) < 0 || v == 0 || v > 1000)
				return fail("invalid --page-size '%s': use 1 to 1000", optarg);
			o.list_page_size = (unsigned)v;
			break;
		case OPT_ATTEMPTS:
			if (st_parse_u64(optarg, &v) < 0 || v == 0 || v > 20)
				return fail("invalid --attempts '%s': use 1 to 20", optarg);
			o.max_attempts = (unsigned)v;
			break;
		case OPT_CONNECT_TIMEOUT:
			if (st_parse_u64(optarg, &v) < 0 || v == 0 || v > 3600000)
				return fail("invalid --connect-timeout-ms '%s'", optarg);
			o.connect_timeout_ms = (long)v;
			break;
		case OPT_TIMEOUT:
			if (st_parse_u64(optarg, &v) < 0 || v == 0 || v > 86400000)
				return fail("invalid --timeout-ms '%s'", optarg);
			o.request_timeout_ms = (long)v;
			break;
		case OPT_META: {
			char *eq = strchr(optarg, '=');
			if (eq == NULL)
				return fail("invalid --meta '%s': use NAME=VALUE", optarg);
			if (n_meta >= BLOB_META_MAX)
				return fail("too many --meta options (at most %s)", "32");
			*eq = '\0';
			meta[n_meta].name = optarg;
			meta[n_meta].value = eq + 1;
			n_meta++;
			break;
		}
		case OPT_JSON: json = true; break;
		case OPT_CONFIG: config_path = optarg; break;
		case OPT_SUBSYSTEM:
			if (strcmp(optarg, "git") != 0 && strcmp(optarg, "snapshots") != 0)
				return fail("invalid --subsystem '%s': use git or snapshots",
				            optarg);
			subsystem = optarg;
			break;
		case OPT_MAX_SIZE:
			if (st_parse_size(optarg, &v) < 0)
				return fail("invalid --max-size '%s': use a size such as 64M",
				            optarg);
			max_size = v;
			break;
		default: fprintf(stderr, "stockade blob: see 'stockade blob --help'\n"); return 2;
		}
	}
	if (npos == 0) {
		usage(stderr);
		return 2;
	}
	const char *sub = pos[0];

	cleanup_error struct st_error *err = NULL;
	if (env_prefix) {
		int r = blob_options_from_env(&o, env_prefix, "RR_DEFAULT_S3", &err);
		if (r < 0) {
			fprintf(stderr, "stockade blob: %s\n", st_error_msg(err));
			return 2;
		}
		if (r == 0)
			return fail("no bucket in %s_BUCKET or RR_DEFAULT_S3_BUCKET", env_prefix);
	}
	if (o.provider == BLOB_PROVIDER_S3 || o.provider == BLOB_PROVIDER_GCS) {
		if (o.s3.access_key_id == NULL)
			o.s3.access_key_id = getenv("AWS_ACCESS_KEY_ID");
		if (o.s3.secret_access_key == NULL)
			o.s3.secret_access_key = getenv("AWS_SECRET_ACCESS_KEY");
		if (o.s3.session_token == NULL)
			o.s3.session_token = getenv("AWS_SESSION_TOKEN");
	}
	if (o.provider == BLOB_PROVIDER_AZURE && o.azure.connection_string == NULL)
		o.azure.connection_string = getenv("AZURE_STORAGE_CONNECTION_STRING");
	if (o.provider == BLOB_PROVIDER_NONE && config_path == NULL)
		return fail("no store given: use --fs DIR, --s3-endpoint URL --bucket B, --gcs, "
		            "--azure, --env PREFIX or --config FILE%s",
		            "");

	struct blob_store *store = NULL;
	if (config_path) {
		struct stockade_config cfg;
		struct config_problems probs;
		config_problems_init(&probs);
		int r = config_load(config_path, &cfg, &probs, &err);
		if (r < 0) {
			if (r == -EINVAL)
				config_problems_print(&probs, stderr);
			else
				fprintf(stderr, "stockade blob: %s\n", st_error_msg(err));
			config_problems_release(&probs);
			return 1;
		}
		config_problems_release(&probs);
		const struct config_blob *cb =
		    strcmp(subsystem, "snapshots") == 0 ? &cfg.rr.snapshots_blob : &cfg.rr.git_blob;
		/* The store comes from the config; tuning flags given here still apply. */
		struct blob_options co;
		r = blob_options_from_config(&co, cb, &err);
		if (r == 0) {
			co.max_attempts = o.max_attempts;
			co.connect_timeout_ms = o.connect_timeout_ms;
			co.request_timeout_ms = o.request_timeout_ms;
			co.part_size = o.part_size;
			co.list_page_size = o.list_page_size;
			if (o.prefix)
				co.prefix = o.prefix;
			r = blob_open(&co, &store, &err);
		}
		config_release(&cfg);
		if (r < 0) {
			fprintf(stderr, "stockade blob: %s\n", st_error_msg(err));
			return 1;
		}
	} else if (blob_open(&o, &store, &err) < 0) {
		fprintf(stderr, "stockade blob: %s\n", st_error_msg(err));
		return 1;
	}
	int rc = 0, r = 0;
	if (strcmp(sub, "put") == 0) {
		if (npos < 2 || npos > 3) {
			blob_close(store);
			return fail("usage: stockade blob put KEY [FILE|-]%s", "");
		}
		if (npos == 3 && strcmp(pos[2], "-") != 0)
			r = blob_put_file(store, pos[1], pos[2], meta, n_meta, &err);
		else
			r = blob_put_fd(store, pos[1], STDIN_FILENO, meta, n_meta, &err);
	} else if (strcmp(sub, "get") == 0) {
		if (npos < 2 || npos > 3) {
			blob_close(store);
			return fail("usage: stockade blob get KEY [FILE|-]%s", "");
		}
		if (npos == 3 && strcmp(pos[2], "-") != 0) {
			/* Write next to the target and rename, so a failed get leaves no partial file. */
			cleanup_free char *tmp = st_xasprintf("%s.part-%d", pos[2], (int)getpid());
			int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (fd < 0) {
				r = st_error_make(&err, errno, "cannot create '%s'", tmp);
			} else {
				r = blob_get_to_fd(store, pos[1], fd, NULL, &err);
				if (close(fd) < 0 && r == 0)
					r = st_error_make(&err, errno, "cannot write '%s'", tmp);
				if (r == 0 && rename(tmp, pos[2]) < 0)
					r = st_error_make(&err, errno, "cannot rename to '%s'",
					                  pos[2]);
				if (r < 0)
					unlink(tmp);
			}
		} else if (max_size < (1ull << 30)) {
			char *data = NULL;
			size_t len = 0;
			r = blob_get(store, pos[1], (size_t)max_size, &data, &len, NULL, &err);
			if (r == 0 && st_write_all(STDOUT_FILENO, data, len) < 0)
				r = st_error_make(&err, errno, "cannot write to stdout");
			free(data);
		} else {
			r = blob_get_to_fd(store, pos[1], STDOUT_FILENO, NULL, &err);
		}
	} else if (strcmp(sub, "stat") == 0) {
		if (npos != 2) {
			blob_close(store);
			return fail("usage: stockade blob stat KEY%s", "");
		}
		struct blob_info info = {0};
		r = blob_stat(store, pos[1], &info, &err);
		if (r == 0) {
			json_t *j = info_json(pos[1], &info);
			char *t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
			printf("%s\n", t);
			free(t);
			json_decref(j);
		}
		blob_info_release(&info);
	} else if (strcmp(sub, "ls") == 0) {
		if (npos > 2) {
			blob_close(store);
			return fail("usage: stockade blob ls [PREFIX]%s", "");
		}
		r = blob_list(store, npos == 2 ? pos[1] : "", print_entry, &json, &err);
	} else if (strcmp(sub, "rm") == 0) {
		if (npos < 2) {
			blob_close(store);
			return fail("usage: stockade blob rm KEY...%s", "");
		}
		for (int i = 1; i < npos && r == 0; i++)
			r = blob_delete(store, pos[i], &err);
	} else if (strcmp(sub, "mb") == 0) {
		r = blob_create_bucket(store, &err);
	} else {
		blob_close(store);
		fprintf(stderr, "stockade blob: unknown command '%s'\n", sub);
		usage(stderr);
		return 2;
	}
	if (r < 0) {
		fprintf(stderr, "stockade blob: %s\n", st_error_msg(err));
		rc = r == -EINVAL ? 2 : 1;
	}
	blob_close(store);
	if (fflush(stdout) != 0 && rc == 0)
		rc = 1;
	return rc;
}
