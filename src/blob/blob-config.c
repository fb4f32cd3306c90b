/*
 * blob-config.c - from a resolved configuration destination (struct config_blob: rr.blobStorage
 * or its RR_GIT_S3_* / RR_SNAPSHOTS_S3_* / RR_DEFAULT_S3_* resolution, see config.h) to blob
 * options, for all four providers, so callers never map fields by hand.
 */
#include "blob/blob-internal.h"
#include "config/config.h"

int blob_options_from_config(struct blob_options *o, const struct config_blob *cb,
                             struct st_error **err)
{
	memset(o, 0, sizeof(*o));
	o->prefix = cb->prefix;
	const char *src = cb->source ? cb->source : "blob storage";
	switch (cb->provider) {
	case CONFIG_BLOB_FILESYSTEM:
		o->provider = BLOB_PROVIDER_FS;
		o->fs.path = cb->filesystem.path;
		return 0;
	case CONFIG_BLOB_S3:
		o->provider = BLOB_PROVIDER_S3;
		o->s3.bucket = cb->s3.bucket;
		o->s3.region = cb->s3.region;
		o->s3.access_key_id = cb->s3.access_key_id;
		o->s3.secret_access_key = cb->s3.secret_access_key;
		o->s3.session_token = cb->s3.session_token;
		o->s3.endpoint = cb->s3.endpoint;
		o->s3.force_path_style = cb->s3.force_path_style;
		return 0;
	case CONFIG_BLOB_GCS:
		o->provider = BLOB_PROVIDER_GCS;
		o->s3.bucket = cb->gcs.bucket;
		o->s3.access_key_id = cb->gcs.hmac_access_key;
		o->s3.secret_access_key = cb->gcs.hmac_secret;
		o->s3.endpoint = cb->gcs.endpoint;
		return 0;
	case CONFIG_BLOB_AZURE:
		o->provider = BLOB_PROVIDER_AZURE;
		o->azure.connection_string = cb->azure.connection_string;
		o->azure.account = cb->azure.account_name;
		o->azure.account_key = cb->azure.account_key;
		o->azure.container = cb->azure.container;
		o->azure.endpoint = cb->azure.endpoint;
		return 0;
	case CONFIG_BLOB_NONE:
	default:
		return blob__fail(err, EINVAL,
		                  "no blob storage configured (%s): set rr.blobStorage to one of "
		                  "s3, gcs, azure or filesystem",
		                  src);
	}
}

int blob_open_config(const struct config_blob *cb, struct blob_store **out, struct st_error **err)
{
	struct blob_options o;
	int r = blob_options_from_config(&o, cb, err);
	if (r == 0)
		r = blob_open(&o, out, err);
	if (r < 0 && cb->source)
		st_error_wrap(err, "blob storage from %s", cb->source);
	return r;
}
