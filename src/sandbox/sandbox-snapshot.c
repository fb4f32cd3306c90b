/*
 * sandbox-snapshot.c - workspace snapshots: a pax tar compressed with zstd (libarchive), sealed
 * with AES-256-GCM in authenticated chunks (crypto_stream, see crypto.h) under the agent
 * sandbox encryption key, stored in blob storage (or state_dir/snapshots without one).
 *
 * Save: the sandbox is paused by the caller; the archiver reads the workspace physically (never
 * following a symlink) into an unlinked temp file, which is sealed into a second one and
 * uploaded; the blob store's atomic put means a crash never leaves a half snapshot that looks
 * whole, and the stream format makes a truncated or altered object fail to open.
 *
 * Restore: download to a temp file, open (authenticate every chunk and the final marker) into
 * a plaintext temp file, and only then extract - so nothing of a tampered snapshot ever reaches
 * the workspace. Extraction refuses absolute paths, "..", and writing through symlinks, and
 * forces ownership to the sandbox user with no set-id bits.
 *
 * Keys: <first 16 hex of sha256(owner)>/<snapshot id> in the snapshots blob store (whose own
 * prefix, "snapshots/" by default, keeps them apart from other subsystems), or
 * state_dir/snapshots/<same> without one: another owner's id simply does not exist for a caller.
 *
 * Records: each snapshot has a row in the state store (sandbox-state.c) written before the
 * upload (saving -> ready), with the object's size and SHA-256; restore finds the object through
 * the row (owner checked there), registers as a reader so a concurrent delete waits, and checks
 * size and hash before decrypting. A snapshot from before the state store (no row at all) is
 * still restored from its owner-derived key.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "blob/blob.h"
#include "crypto/crypto.h"
#include "sandbox/sandbox-internal.h"

static char *owner_prefix(const char *owner)
{
	uint8_t h[CRYPTO_SHA256_BYTES];
	crypto_sha256(owner, strlen(owner), h);
	return crypto_hex_encode(h, 8);
}

static bool snap_id_valid(const char *id)
{
	if (!id || strlen(id) != 27 || strncmp(id, "snap-", 5) != 0)
		return false;
	for (const char *p = id + 5; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static int tmpfile_in(const char *dir, struct st_error **err)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return st_error_make(err, errno, "cannot create a temp file in '%s'", dir);
	return fd;
}

static int store_object(struct sandbox_mgr *m, const char *key, const char *pre, int sealed,
                        struct st_error **err);

static int archive_dir(const char *dir, int out_fd, struct st_error **err)
{
	struct archive *w = archive_write_new();
	struct archive *d = archive_read_disk_new();
	int r = 0;
	archive_write_set_format_pax_restricted(w);
	archive_write_add_filter_zstd(w);
	archive_read_disk_set_symlink_physical(d);
	archive_read_disk_set_standard_lookup(d);
	if (archive_write_open_fd(w, out_fd) != ARCHIVE_OK) {
		r = st_error_make(err, 0, "cannot start the archive: %s", archive_error_string(w));
		goto out;
	}
	if (archive_read_disk_open(d, dir) != ARCHIVE_OK) {
		r = st_error_make(err, 0, "cannot read '%s': %s", dir, archive_error_string(d));
		goto out;
	}
	char *buf = st_xmalloc(256 * 1024);
	for (;;) {
		struct archive_entry *e = archive_entry_new();
		int ar = archive_read_next_header2(d, e);
		if (ar == ARCHIVE_EOF) {
			archive_entry_free(e);
			break;
		}
		if (ar < ARCHIVE_WARN) {
			r = st_error_make(err, 0, "cannot archive the workspace: %s",
			                  archive_error_string(d));
			archive_entry_free(e);
			break;
		}
		archive_read_disk_descend(d);
		/* Paths relative to the workspace root. */
		const char *p = archive_entry_pathname(e);
		size_t dl = strlen(dir);
		if (p && !strncmp(p, dir, dl)) {
			const char *rel = p + dl;
			while (*rel == '/')
				rel++;
			if (!*rel) {
				archive_entry_free(e);
				continue; /* the root itself */
			}
			char *relc = st_xstrdup(rel);
			archive_entry_set_pathname(e, relc);
			free(relc);
		}
		if (archive_write_header(w, e) != ARCHIVE_OK) {
			r = st_error_make(err, 0, "cannot archive '%s': %s",
			                  archive_entry_pathname(e), archive_error_string(w));
			archive_entry_free(e);
			break;
		}
		if (archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0) {
			int fd =
			    open(archive_entry_sourcepath(e), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0) {
				ssize_t k;
				while ((k = read(fd, buf, 256 * 1024)) > 0)
					archive_write_data(w, buf, (size_t)k);
				close(fd);
			}
		}
		archive_entry_free(e);
	}
	free(buf);
	if (r == 0 && archive_write_close(w) != ARCHIVE_OK)
		r = st_error_make(err, 0, "cannot finish the archive: %s", archive_error_string(w));
out:
	archive_read_free(d);
	archive_write_free(w);
	return r;
}

static int extract_into(int in_fd, const char *dir, struct st_error **err)
{
	struct archive *a = archive_read_new();
	struct archive *w = archive_write_disk_new();
	archive_read_support_format_tar(a);
	archive_read_support_filter_zstd(a);
	archive_write_disk_set_options(
	    w, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER |
	           ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT);
	int r = 0;
	cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return st_error_make(err, errno, "cannot open '%s'", dir);
	cleanup_close int saved = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (archive_read_open_fd(a, in_fd, 256 * 1024) != ARCHIVE_OK) {
		r = st_error_make(err, 0, "snapshot archive unreadable: %s",
		                  archive_error_string(a));
		goto out;
	}
	for (;;) {
		struct archive_entry *e;
		int ar = archive_read_next_header(a, &e);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar < ARCHIVE_WARN) {
			r = st_error_make(err, 0, "snapshot archive unreadable: %s",
			                  archive_error_string(a));
			break;
		}
		const char *pp = archive_entry_pathname(e);
		if (!pp || !*pp)
			continue;
		/* Entry names are checked here (relative, no ".." segment) because they are then
		 * prefixed with the workspace path, which libarchive's own check would refuse. */
		cleanup_free char *p = st_xstrdup(pp);
		if (p[0] == '/' || !strcmp(p, "..") || !strncmp(p, "../", 3) || strstr(p, "/../") ||
		    st_str_has_suffix(p, "/..")) {
			r = st_error_make(err, EINVAL, "snapshot entry '%s' escapes the workspace",
			                  p);
			break;
		}
		cleanup_free char *full = st_xasprintf("%s/%s", dir, p);
		archive_entry_set_pathname(e, full);
		/* Hardlink targets must stay inside too. */
		const char *hl = archive_entry_hardlink(e);
		if (hl) {
			if (hl[0] == '/' ||
			    strstr(hl, "..")) { /* stricter than needed, on purpose */
				r = st_error_make(err, EINVAL, "snapshot entry '%s' links outside",
				                  p);
				break;
			}
			cleanup_free char *hfull = st_xasprintf("%s/%s", dir, hl);
			archive_entry_set_hardlink(e, hfull);
		}
		archive_entry_set_uid(e, AGENT_USER_UID);
		archive_entry_set_gid(e, AGENT_USER_GID);
		archive_entry_set_uname(e, NULL);
		archive_entry_set_gname(e, NULL);
		archive_entry_set_perm(e, archive_entry_perm(e) & 0777);
		if (archive_write_header(w, e) < ARCHIVE_WARN) {
			r = st_error_make(err, 0, "cannot restore '%s': %s", p,
			                  archive_error_string(w));
			break;
		}
		const void *buf;
		size_t size;
		la_int64_t off;
		while ((ar = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK)
			if (archive_write_data_block(w, buf, size, off) < ARCHIVE_WARN)
				break;
		archive_write_finish_entry(w);
	}
out:
	archive_read_free(a);
	archive_write_free(w);
	(void)saved;
	return r;
}

int sandbox__snapshot_save(struct sandbox_mgr *m, const char *owner, const char *sandbox_id,
                           const char *ws_dir, char **snap_id, uint64_t *bytes, char sha256[65],
                           struct st_error **err)
{
	if (!m->has_key)
		return st_error_make(
		    err, EACCES,
		    "snapshots need rr.agentSandbox.encryptionKey (64 hex characters; "
		    "stockade keys generate)");
	cleanup_free char *tmpdir = st_xasprintf("%s/tmp", m->state_dir);
	int r = st_mkdir_p(tmpdir, 0700, err);
	if (r < 0)
		return r;
	cleanup_close int plain = tmpfile_in(tmpdir, err);
	if (plain < 0)
		return plain;
	if ((r = archive_dir(ws_dir, plain, err)) < 0)
		return r;
	cleanup_close int sealed = tmpfile_in(tmpdir, err);
	if (sealed < 0)
		return sealed;
	if (lseek(plain, 0, SEEK_SET) < 0)
		return st_error_make(err, errno, "lseek");
	if ((r = crypto_stream_seal_fd(m->key, plain, sealed, 0, err)) < 0)
		return st_error_wrap(err, "cannot seal the snapshot");
	struct stat st;
	if (fstat(sealed, &st) < 0)
		return st_error_make(err, errno, "fstat");
	if (lseek(sealed, 0, SEEK_SET) < 0)
		return st_error_make(err, errno, "lseek");
	uint8_t rnd[11];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return st_error_make(err, EIO, "getrandom");
	cleanup_free char *hex = crypto_hex_encode(rnd, sizeof(rnd));
	cleanup_free char *id = st_xasprintf("snap-%s", hex);
	cleanup_free char *pre = owner_prefix(owner);
	cleanup_free char *key = st_xasprintf("%s/%s", pre, id);
	struct sandbox_snaprec rec;
	if ((r = sandbox__snaprec_begin(m, owner, sandbox_id, id, key, sealed, &rec, err)) < 0)
		return r;
	r = store_object(m, key, pre, sealed, err);
	struct st_error *e2 = NULL;
	int f = sandbox__snaprec_finish(m, id, r == 0, &e2);
	if (r == 0 && f < 0) {
		/* Not recorded as stored: the object goes too, or it would be invisible. */
		r = f;
		*err = e2;
		e2 = NULL;
		sandbox__snaprec_finish(m, id, false, NULL);
		if (m->o.blob)
			blob_delete(m->o.blob, key, NULL);
	}
	st_error_free(e2);
	if (r < 0)
		return st_error_wrap(err, "cannot store the snapshot");
	*snap_id = steal_pointer(&id);
	*bytes = (uint64_t)st.st_size;
	memcpy(sha256, rec.sha256, 65);
	st_log(ST_LOG_INFO, "snapshot '%s' of sandbox '%s' stored (%llu bytes)", *snap_id,
	       sandbox_id, (unsigned long long)st.st_size);
	return 0;
}

static int store_object(struct sandbox_mgr *m, const char *key, const char *pre, int sealed,
                        struct st_error **err)
{
	int r = 0;
	if (m->o.blob) {
		r = blob_put_fd(m->o.blob, key, sealed, NULL, 0, err);
	} else {
		cleanup_free char *path = st_xasprintf("%s/snapshots/%s", m->state_dir, key);
		cleanup_free char *dir = st_xasprintf("%s/snapshots/%s", m->state_dir, pre);
		if ((r = st_mkdir_p(dir, 0700, err)) < 0)
			return r;
		cleanup_free char *part = st_xasprintf("%s.part", path);
		cleanup_close int out = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (out < 0)
			return st_error_make(err, errno, "cannot create '%s'", part);
		char *buf = st_xmalloc(256 * 1024);
		ssize_t k;
		while (r == 0 && (k = st_read_all(sealed, buf, 256 * 1024)) > 0)
			if (st_write_all(out, buf, (size_t)k) < 0)
				r = st_error_make(err, errno, "cannot write '%s'", part);
		free(buf);
		if (r == 0 && fsync(out) < 0)
			r = st_error_make(err, errno, "fsync '%s'", part);
		if (r == 0 && rename(part, path) < 0)
			r = st_error_make(err, errno, "cannot rename '%s'", part);
		if (r < 0)
			unlink(part);
	}
	return r;
}

/*
 * Get the sealed object into a private fd (a temp copy from blob storage, or the local file,
 * which an open fd keeps whole even if it is deleted meanwhile) and, when the record has them,
 * check its size and hash. rec NULL: a snapshot from before the state store.
 */
static int fetch_object(struct sandbox_mgr *m, const char *owner, const char *snap_id,
                        const struct sandbox_snaprec *rec, const char *tmpdir, int *out,
                        struct st_error **err)
{
	cleanup_free char *pre = owner_prefix(owner);
	cleanup_free char *legacy = st_xasprintf("%s/%s", pre, snap_id);
	const char *key = rec && rec->key ? rec->key : legacy;
	bool local = rec ? rec->local : !m->o.blob;
	cleanup_close int sealed = -1;
	int r = 0;
	if (!local) {
		if (!m->o.blob)
			return st_error_make(
			    err, 0,
			    "snapshot '%s' is in blob storage, but no snapshot blob "
			    "store is configured",
			    snap_id);
		sealed = tmpfile_in(tmpdir, err);
		if (sealed < 0)
			return sealed;
		r = blob_get_to_fd(m->o.blob, key, sealed, NULL, err);
		if (r == -ENOENT) {
			st_error_release(err);
			return st_error_make(err, ENOENT, "no snapshot '%s'", snap_id);
		}
		if (r < 0)
			return r;
		if (lseek(sealed, 0, SEEK_SET) < 0)
			return st_error_make(err, errno, "lseek");
	} else {
		cleanup_free char *path = st_xasprintf("%s/snapshots/%s", m->state_dir, key);
		sealed = open(path, O_RDONLY | O_CLOEXEC);
		if (sealed < 0)
			return st_error_make(err, errno == ENOENT ? ENOENT : errno,
			                     "no snapshot '%s'", snap_id);
	}
	if (rec && rec->sha256[0]) {
		struct stat sb;
		char sha[65] = "";
		if (fstat(sealed, &sb) < 0)
			return st_error_make(err, errno, "fstat");
		if ((r = sandbox__sha256_fd(sealed, sha)) < 0)
			return st_error_make(err, -r, "cannot hash snapshot '%s'", snap_id);
		if ((uint64_t)sb.st_size != rec->size || strcmp(sha, rec->sha256) != 0)
			return st_error_make(
			    err, EACCES,
			    "snapshot '%s' failed its integrity check (tampered, truncated or "
			    "sealed with another key): the stored object is %llu bytes with "
			    "SHA-256 %.12s..., the record says %llu bytes, %.12s...",
			    snap_id, (unsigned long long)sb.st_size, sha,
			    (unsigned long long)rec->size, rec->sha256);
	}
	*out = steal_fd(&sealed);
	return 0;
}

int sandbox__snapshot_restore(struct sandbox_mgr *m, const char *owner, const char *snap_id,
                              const char *ws_dir, struct st_error **err)
{
	if (!snap_id_valid(snap_id))
		return st_error_make(err, ENOENT, "no snapshot '%s'", snap_id ? snap_id : "");
	if (!m->has_key)
		return st_error_make(err, EACCES, "snapshots need rr.agentSandbox.encryptionKey");
	cleanup_free char *tmpdir = st_xasprintf("%s/tmp", m->state_dir);
	int r = st_mkdir_p(tmpdir, 0700, err);
	if (r < 0)
		return r;
	struct sandbox_snaprec rec;
	int found = sandbox__snaprec_open(m, owner, snap_id, &rec, err);
	if (found < 0)
		return found;
	cleanup_close int sealed = -1;
	r = fetch_object(m, owner, snap_id, found ? &rec : NULL, tmpdir, &sealed, err);
	sandbox__snaprec_close(m, snap_id, &rec);
	if (r < 0)
		return r;
	cleanup_close int plain = tmpfile_in(tmpdir, err);
	if (plain < 0)
		return plain;
	struct st_error *e = NULL;
	r = crypto_stream_open_fd(m->key, sealed, plain, &e);
	if (r < 0) {
		r = st_error_make(
		    err, EACCES,
		    "snapshot '%s' failed its integrity check (tampered, truncated or "
		    "sealed with another key): %s",
		    snap_id, st_error_msg(e));
		st_error_free(e);
		return r;
	}
	if (lseek(plain, 0, SEEK_SET) < 0)
		return st_error_make(err, errno, "lseek");
	if ((r = extract_into(plain, ws_dir, err)) < 0)
		return st_error_wrap(err, "cannot restore snapshot '%s'", snap_id);
	return 0;
}
