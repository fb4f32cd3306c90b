/*
 * sandbox-snapshot.c - workspace snapshots: a pax tar compressed with zstd (src/tarball), sealed
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
#include "tarball/tarball.h"

static char *owner_prefix(const char *owner)
{
	uint8_t h[CRYPTO_SHA256_BYTES];
	crypto_sha256(owner, strlen(owner), h);
	return crypto_hex_encode(h, 8);
}

static bool snap_id_valid(const char *id)
{
	return sandbox__is_hex_id(id, "snap-", 22);
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

/* Entry names are checked here (relative, no ".." segment) because they are then prefixed
 * with the workspace path, which libarchive's own check would refuse; so are hardlink targets.
 * Ownership goes to the sandbox user, without set-id bits. */
static int extract_check(struct archive_entry *e, const char *p, struct st_error **err)
{
	if (!*p)
		return 0;
	if (p[0] == '/' || !strcmp(p, "..") || !strncmp(p, "../", 3) || strstr(p, "/../") ||
	    st_str_has_suffix(p, "/.."))
		return st_error_make(err, EINVAL, "snapshot entry '%s' escapes the workspace", p);
	const char *hl = archive_entry_hardlink(e);
	if (hl && (hl[0] == '/' || strstr(hl, ".."))) /* stricter than needed, on purpose */
		return st_error_make(err, EINVAL, "snapshot entry '%s' links outside", p);
	archive_entry_set_uid(e, AGENT_USER_UID);
	archive_entry_set_gid(e, AGENT_USER_GID);
	archive_entry_set_uname(e, NULL);
	archive_entry_set_gname(e, NULL);
	archive_entry_set_perm(e, archive_entry_perm(e) & 0777);
	return 1;
}

static int extract_into(int in_fd, const char *dir, struct st_error **err)
{
	const struct tarball_unpack_opts o = {
	    .flags = ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER |
	             ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT,
	    .check = extract_check,
	    .lenient = true,
	    .unreadable = "snapshot archive unreadable",
	    .damaged = "snapshot archive unreadable",
	    .verb = "restore",
	};
	cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* it must exist */
	if (dfd < 0)
		return st_error_make(err, errno, "cannot open '%s'", dir);
	return tarball_unpack(in_fd, dir, &o, err);
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
	const struct tarball_pack_opts ao = {
	    .owners = true, .lenient = true, .walk_error = "cannot archive the workspace"};
	if ((r = tarball_pack(ws_dir, plain, &ao, NULL, err)) < 0)
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
