/* blob-azure.c - Azure Blob Storage backend (placeholder until implemented). */
#include "blob/blob-internal.h"

int blob__az_open(struct blob_store *s, const struct blob_options *o, struct st_error **err)
{
	return blob__fail(err, ENOTSUP, "azure blob storage is not implemented yet");
}
int blob__az_put(struct blob_store *s, const char *key, const void *data, size_t len, int fd,
                 const struct blob_meta *meta, size_t n_meta, struct st_error **err)
{
	return -ENOTSUP;
}
int blob__az_get(struct blob_store *s, const char *key, struct blob__sink *sink,
                 struct blob_info *info, struct st_error **err)
{
	return -ENOTSUP;
}
int blob__az_delete(struct blob_store *s, const char *key, struct st_error **err)
{
	return -ENOTSUP;
}
int blob__az_list(struct blob_store *s, const char *prefix, blob_list_fn fn, void *ud,
                  struct st_error **err)
{
	return -ENOTSUP;
}
int blob__az_create_container(struct blob_store *s, struct st_error **err)
{
	return -ENOTSUP;
}
