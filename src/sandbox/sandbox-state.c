/*
 * sandbox-state.c - the agent sandbox's records in the state store and recovery from them.
 *
 * The store (namespace `agent_executor`, component `agent_sandbox`; Postgres on its own schema
 * or the shared SQLite file) is the source of truth for which sandboxes and snapshots exist:
 *
 *   sandboxes  one row per sandbox this service booted, written *before* anything exists on the
 *              host (a pool boot inserts it with state `pool` and no owner); the claim fills in
 *              owner, timeouts, limits, env (sealed with the encryption key when there is one),
 *              network policy and the snapshot it came from. state: pool -> running <-> paused
 *              -> destroyed | expired | lost | failed (ended_at set; pool rows are deleted
 *              instead, they are of no interest once gone). last_active_at is flushed by the
 *              sweeper every few seconds, not on every request.
 *   snapshots  one row per snapshot: saving -> ready -> deleting -> (row deleted). The row is
 *              written before the upload starts, so an object in blob storage without a row
 *              cannot appear (a crash mid-save leaves a `saving` row recovery resolves).
 *
 * `node` (hostname + state directory) scopes rows to the process that owns the host resources,
 * so several replicas can share one database: recovery touches only its own rows.
 *
 * Recovery at start (before the sweeper runs, single-threaded): every open row of this node is
 * either re-adopted (owned, runtime running and agent answering, or paused) or marked lost and
 * its host resources removed (runsc container, processes left in its cgroups, mounts under its
 * directory, the directory). Then the host is swept for what has no open row: directories under
 * sb/ (a legacy meta.json record is imported first), containers in our runsc root. Snapshot rows
 * stuck in `saving` become `ready` when their object is whole, else are dropped; `deleting` rows
 * are finished. Cgroups are only ever removed by sandbox id we own: /sys/fs/cgroup/.../stockade
 * is shared by every Stockade on the host.
 *
 * Snapshot readers: a restore registers itself (in memory, under st->mu, together with the row
 * lookup) until its download is complete; a delete marks the row `deleting` under the same
 * mutex and waits for the readers of that id before removing the object, so a restore either
 * completes from a whole object or never starts (404).
 */
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>

#include "blob/blob.h"
#include "crypto/crypto.h"
#include "sandbox/sandbox-internal.h"
#include "store/store.h"

static const struct store_migration sandbox_migrations[] = {
    {1, "create-sandboxes",
     "CREATE TABLE {ns}sandboxes (id TEXT PRIMARY KEY, node TEXT NOT NULL, owner TEXT, "
     "state TEXT NOT NULL, runtime TEXT NOT NULL, created_at BIGINT NOT NULL, "
     "claimed_at BIGINT, last_active_at BIGINT NOT NULL, expires_at BIGINT, "
     "idle_timeout_ms BIGINT NOT NULL, lifetime_ms BIGINT NOT NULL, "
     "memory_bytes BIGINT NOT NULL, cpu_millis BIGINT NOT NULL, pids BIGINT NOT NULL, "
     "workspace_bytes BIGINT NOT NULL, allow_egress BIGINT NOT NULL DEFAULT 0, "
     "allowed_domains TEXT, env TEXT, env_sealed BIGINT NOT NULL DEFAULT 0, "
     "from_snapshot TEXT, ended_at BIGINT, end_reason TEXT);"
     "CREATE INDEX {ns}sandboxes_by_node ON {ns}sandboxes (node, ended_at);"
     "CREATE INDEX {ns}sandboxes_by_owner ON {ns}sandboxes (owner, ended_at)",
     NULL, NULL},
    {2, "create-snapshots",
     "CREATE TABLE {ns}snapshots (id TEXT PRIMARY KEY, owner TEXT NOT NULL, sandbox_id TEXT, "
     "node TEXT NOT NULL, state TEXT NOT NULL, storage TEXT NOT NULL, blob_key TEXT NOT NULL, "
     "size_bytes BIGINT NOT NULL DEFAULT 0, sha256 TEXT, cipher TEXT NOT NULL, "
     "created_at BIGINT NOT NULL);"
     "CREATE INDEX {ns}snapshots_by_owner ON {ns}snapshots (owner, created_at);"
     "CREATE INDEX {ns}snapshots_by_sandbox ON {ns}snapshots (sandbox_id)",
     NULL, NULL},
};
STORE_DECLARE_MIGRATIONS("agent_executor", "agent_sandbox", sandbox_migrations)

/* The sealed-object format (crypto_stream v2, AES-256-GCM chunks) named in snapshot rows. */
#define SNAP_CIPHER "aes-256-gcm-stream-v2"
/* Ended sandbox rows are kept this long for inspection, then pruned at start. */
#define ENDED_KEEP_MS (30LL * 24 * 3600 * 1000)
#define FLUSH_EVERY_MS 2000
#define DELETE_WAIT_MS 120000

struct snap_reader {
	char id[32];
	int n;
	struct snap_reader *next;
};

struct sandbox_records {
	struct store *store;
	bool owned;
	char *node;
	pthread_mutex_t mu; /* readers, and the deleting transition of snapshot rows */
	pthread_cond_t cv;
	struct snap_reader *readers;
	int64_t last_flush_ms;
};

/* ---- clocks ---------------------------------------------------------------------------------- */

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* st_now_ms() (monotonic) to wall milliseconds and back. */
static int64_t to_wall(int64_t mono)
{
	return wall_ms() - (st_now_ms() - mono);
}

static int64_t to_mono(int64_t wall)
{
	return st_now_ms() - (wall_ms() - wall);
}

static struct store *S(struct sandbox_mgr *m)
{
	return m->st->store;
}

/* ---- open / close ------------------------------------------------------------------------------ */

int sandbox__state_open(struct sandbox_mgr *m, struct st_error **err)
{
	struct sandbox_records *st = st_xcalloc(1, sizeof(*st));
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->cv, NULL);
	m->st = st;
	char host[256] = "localhost";
	if (gethostname(host, sizeof(host) - 1) < 0)
		st_strlcpy(host, "localhost", sizeof(host));
	st->node = st_xasprintf("%s:%s", host, m->state_dir);
	int r;
	if (m->o.store) {
		st->store = m->o.store;
	} else {
		/* No service store handed in (tests, embedded use): a private SQLite file beside
		 * the workspaces, same schema. */
		cleanup_free char *db = st_xasprintf("%s/state.db", m->state_dir);
		if ((r = store_open_sqlite(db, "agent_executor", &st->store, err)) < 0)
			return st_error_wrap(err, "cannot open the sandbox state store");
		st->owned = true;
	}
	if ((r = store_migrate(st->store, "agent_sandbox", sandbox_migrations,
	                       ST_ARRAY_SIZE(sandbox_migrations), NULL, err)) < 0)
		return st_error_wrap(err, "cannot migrate the sandbox state store");
	return 0;
}

void sandbox__state_close(struct sandbox_mgr *m)
{
	struct sandbox_records *st = m->st;
	if (!st)
		return;
	if (st->owned)
		store_free(st->store);
	while (st->readers) {
		struct snap_reader *r = st->readers;
		st->readers = r->next;
		free(r);
	}
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->cv);
	free(st->node);
	free(st);
	m->st = NULL;
}

/* ---- sandbox rows ------------------------------------------------------------------------------ */

static const char *runtime_name(struct sandbox_mgr *m)
{
	return m->o.runtime == SANDBOX_RUNTIME_JAIL ? "jail" : "gvisor";
}

int sandbox__state_boot(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err)
{
	int64_t now = wall_ms();
	struct store_value p[] = {
	    store_text(sb->id),
	    store_text(m->st->node),
	    store_text(runtime_name(m)),
	    store_int(now),
	    store_int(now),
	    store_int((int64_t)sb->idle_timeout_ms),
	    store_int((int64_t)sb->lifetime_ms),
	    store_int((int64_t)m->o.memory_bytes),
	    store_int((int64_t)(m->o.cpus * 1000.0)),
	    store_int((int64_t)m->o.pids),
	    store_int((int64_t)m->o.workspace_bytes),
	};
	int r =
	    store_exec(S(m),
	               "INSERT INTO {ns}sandboxes (id, node, owner, state, runtime, created_at, "
	               "last_active_at, idle_timeout_ms, lifetime_ms, memory_bytes, cpu_millis, "
	               "pids, workspace_bytes) VALUES (?, ?, NULL, 'pool', ?, ?, ?, ?, ?, ?, ?, "
	               "?, ?)",
	               p, ST_ARRAY_SIZE(p), NULL, err);
	if (r < 0)
		return st_error_wrap(err, "cannot record sandbox '%s' in the state store", sb->id);
	return 0;
}

/* env as stored: JSON, sealed under the encryption key (AAD: the sandbox id) when there is one,
 * so secrets handed to a sandbox do not sit in the database in the clear. Heap or NULL. */
static char *env_encode(struct sandbox_mgr *m, const char *id, json_t *env, bool *sealed)
{
	*sealed = false;
	if (!env || !json_object_size(env))
		return NULL;
	cleanup_free char *text = json_dumps(env, JSON_COMPACT);
	if (!text)
		return NULL;
	if (!m->has_key)
		return steal_pointer(&text);
	uint8_t *ct = NULL;
	size_t n = 0;
	if (crypto_seal(m->key, id, strlen(id), text, strlen(text), &ct, &n, NULL) < 0)
		return NULL;
	char *b64 = crypto_base64_encode(ct, n);
	free(ct);
	*sealed = true;
	return b64;
}

static json_t *env_decode(struct sandbox_mgr *m, const char *id, const char *text, bool sealed)
{
	if (!text || !*text)
		return NULL;
	if (!sealed)
		return json_loads(text, 0, NULL);
	if (!m->has_key)
		return NULL;
	uint8_t *ct = NULL, *pt = NULL;
	size_t n = 0, pn = 0;
	json_t *j = NULL;
	if (crypto_base64_decode(text, strlen(text), &ct, &n) == 0 &&
	    crypto_open(m->key, id, strlen(id), ct, n, &pt, &pn, NULL) == 0)
		j = json_loadb((const char *)pt, pn, 0, NULL);
	free(ct);
	free(pt);
	return j;
}

int sandbox__state_claim(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err)
{
	pthread_mutex_lock(&m->lock);
	cleanup_free char *owner = st_xstrdup(sb->owner);
	int64_t claimed = to_wall(sb->claimed_ms), active = to_wall(sb->last_active_ms);
	int64_t idle = (int64_t)sb->idle_timeout_ms, life = (int64_t)sb->lifetime_ms;
	bool egress = sb->allow_egress;
	json_t *env = sb->env ? json_incref(sb->env) : NULL;
	json_t *dom = NULL;
	if (sb->allowed_domains) {
		dom = json_array();
		for (size_t i = 0; sb->allowed_domains[i]; i++)
			json_array_append_new(dom, json_string(sb->allowed_domains[i]));
	}
	cleanup_free char *snap = sb->from_snapshot ? st_xstrdup(sb->from_snapshot) : NULL;
	sb->stored_active_ms = sb->last_active_ms;
	pthread_mutex_unlock(&m->lock);
	bool sealed = false;
	cleanup_free char *envs = env_encode(m, sb->id, env, &sealed);
	cleanup_free char *doms = dom ? json_dumps(dom, JSON_COMPACT) : NULL;
	json_decref(env);
	json_decref(dom);
	struct store_value p[] = {
	    store_text(owner), store_int(claimed), store_int(active), store_int(claimed + life),
	    store_int(idle),   store_int(life),    store_int(egress), store_text(doms),
	    store_text(envs),  store_int(sealed),  store_text(snap),  store_text(sb->id),
	};
	int64_t changes = 0;
	int r = store_exec(S(m),
	                   "UPDATE {ns}sandboxes SET owner = ?, state = 'running', claimed_at = ?, "
	                   "last_active_at = ?, expires_at = ?, idle_timeout_ms = ?, lifetime_ms = "
	                   "?, allow_egress = ?, allowed_domains = ?, env = ?, env_sealed = ?, "
	                   "from_snapshot = ? WHERE id = ? AND ended_at IS NULL",
	                   p, ST_ARRAY_SIZE(p), &changes, err);
	if (r == 0 && changes != 1)
		r = st_error_make(err, 0, "the state store has no open record of sandbox '%s'",
		                  sb->id);
	if (r < 0)
		return st_error_wrap(err, "cannot record the claim of sandbox '%s'", sb->id);
	return 0;
}

void sandbox__state_set(struct sandbox_mgr *m, const char *id, const char *state)
{
	struct store_value p[] = {store_text(state), store_text(id)};
	struct st_error *e = NULL;
	if (store_exec(S(m), "UPDATE {ns}sandboxes SET state = ? WHERE id = ? AND ended_at IS NULL",
	               p, 2, NULL, &e) < 0)
		st_log(ST_LOG_WARN, "sandbox '%s': cannot record state '%s': %s", id, state,
		       st_error_msg(e));
	st_error_free(e);
}

void sandbox__state_end(struct sandbox_mgr *m, const char *id, const char *why)
{
	const char *state = "destroyed";
	if (strstr(why, "TimeoutMs") || strstr(why, "LifetimeMs"))
		state = "expired";
	else if (strstr(why, "runtime") || strstr(why, "lost"))
		state = "lost";
	else if (strstr(why, "failed"))
		state = "failed";
	struct st_error *e = NULL;
	struct store_value d[] = {store_text(id)};
	/* A pool sandbox that never had an owner leaves no history. */
	int r = store_exec(S(m), "DELETE FROM {ns}sandboxes WHERE id = ? AND owner IS NULL", d, 1,
	                   NULL, &e);
	struct store_value p[] = {store_text(state), store_int(wall_ms()), store_text(why),
	                          store_text(id)};
	if (r == 0)
		r = store_exec(S(m),
		               "UPDATE {ns}sandboxes SET state = ?, ended_at = ?, end_reason = ? "
		               "WHERE id = ? AND ended_at IS NULL",
		               p, ST_ARRAY_SIZE(p), NULL, &e);
	if (r < 0)
		st_log(ST_LOG_WARN, "sandbox '%s': cannot record its end (%s): %s", id, why,
		       st_error_msg(e));
	st_error_free(e);
}

void sandbox__state_flush_activity(struct sandbox_mgr *m, bool force)
{
	int64_t now = st_now_ms();
	struct upd {
		char id[SANDBOX_ID_LEN];
		int64_t at;
	} *u = NULL;
	size_t n = 0, cap = 0;
	pthread_mutex_lock(&m->lock);
	if (!force && now - m->st->last_flush_ms < FLUSH_EVERY_MS) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	m->st->last_flush_ms = now;
	for (struct sandbox *s = m->list; s; s = s->next) {
		if (!s->owner || s->state == SB_DEAD || s->last_active_ms == s->stored_active_ms)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			u = realloc(u, cap * sizeof(*u));
			if (!u)
				abort();
		}
		st_strlcpy(u[n].id, s->id, sizeof(u[n].id));
		/* An active command keeps it busy right now. */
		u[n].at = to_wall(s->active_ops ? now : s->last_active_ms);
		s->stored_active_ms = s->last_active_ms;
		n++;
	}
	pthread_mutex_unlock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		struct store_value p[] = {store_int(u[i].at), store_text(u[i].id)};
		struct st_error *e = NULL;
		if (store_exec(S(m),
		               "UPDATE {ns}sandboxes SET last_active_at = ? WHERE id = ? AND "
		               "ended_at IS NULL",
		               p, 2, NULL, &e) < 0)
			st_log(ST_LOG_WARN, "sandbox '%s': cannot record activity: %s", u[i].id,
			       st_error_msg(e));
		st_error_free(e);
	}
	free(u);
}

int sandbox__state_owned(struct sandbox_mgr *m, const char *owner, const char *id,
                         struct st_error **err)
{
	struct store_value p[] = {store_text(id), store_text(owner)};
	int64_t v = 0;
	int r = store_query_int(S(m), "SELECT 1 FROM {ns}sandboxes WHERE id = ? AND owner = ?", p,
	                        2, &v, err);
	if (r == -ENOENT) {
		st_error_release(err);
		return st_error_make(err, ENOENT, "no sandbox '%s'", id);
	}
	return r;
}

/* ---- host cleanup -------------------------------------------------------------------------------- */

/* Undo the octal escapes of /proc/self/mountinfo (\040 for a space, ...), in place. */
static void unescape_mount(char *s)
{
	char *w = s;
	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*w++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
}

static void umount_under(const char *dir)
{
	cleanup_fclose FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	size_t dl = strlen(dir);
	char **pts = NULL;
	size_t n = 0;
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		/* id parent major:minor root mountpoint ... */
		char *save = NULL, *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (!tok)
			continue;
		unescape_mount(tok);
		if (strncmp(tok, dir, dl) != 0 || (tok[dl] != '/' && tok[dl] != '\0'))
			continue;
		pts = realloc(pts, (n + 1) * sizeof(char *));
		if (!pts)
			abort();
		pts[n++] = st_xstrdup(tok);
	}
	free(line);
	/* Later mounts sit on top of earlier ones: unmount in reverse. */
	while (n) {
		char *p = pts[--n];
		if (umount2(p, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
			st_log(ST_LOG_WARN, "cannot unmount '%s': %s", p, strerror(errno));
		free(p);
	}
	free(pts);
}

/* Kill whatever is left in a cgroup directory (and its children), then remove it. */
static void cgroup_remove(const char *path)
{
	cleanup_closedir DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_type == DT_DIR && strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			cleanup_free char *sub = st_xasprintf("%s/%s", path, de->d_name);
			cgroup_remove(sub);
		}
	for (int tries = 0; tries < 50; tries++) {
		cleanup_free char *procs = st_xasprintf("%s/cgroup.procs", path);
		cleanup_free char *data = NULL;
		size_t len = 0;
		bool any = false;
		if (st_read_file(procs, 1 << 20, &data, &len, NULL) == 0) {
			char *save = NULL;
			for (char *l = strtok_r(data, "\n", &save); l;
			     l = strtok_r(NULL, "\n", &save)) {
				int64_t pid = 0;
				if (st_parse_i64(l, &pid) == 0 && pid > 1) {
					kill((pid_t)pid, SIGKILL);
					any = true;
				}
			}
		}
		if (rmdir(path) == 0 || errno == ENOENT)
			return;
		if (!any && errno != EBUSY)
			break;
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	st_log(ST_LOG_WARN, "cannot remove cgroup '%s': %s", path, strerror(errno));
}

void sandbox__host_cleanup(const char *id, const char *dir)
{
	if (dir)
		umount_under(dir);
	/* cgroupsPath /stockade/<id> (bundle_spec): one directory per v1 controller, or one in
	 * the v2 unified hierarchy. */
	cleanup_free char *v2 = st_xasprintf("/sys/fs/cgroup/stockade/%s", id);
	cgroup_remove(v2);
	cleanup_closedir DIR *d = opendir("/sys/fs/cgroup");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !strcmp(de->d_name, "stockade"))
			continue;
		cleanup_free char *p =
		    st_xasprintf("/sys/fs/cgroup/%s/stockade/%s", de->d_name, id);
		struct stat sbuf;
		if (lstat(p, &sbuf) == 0 && S_ISDIR(sbuf.st_mode))
			cgroup_remove(p);
	}
}

/* The runtime's own view of a sandbox (the only runtime calls recovery makes). */
static char *rt_state(struct sandbox_mgr *m, const char *id)
{
	return m->rt->state(m, id);
}

static char **rt_list(struct sandbox_mgr *m)
{
	return m->rt->list(m);
}

static void rt_destroy(struct sandbox_mgr *m, const char *id)
{
	m->rt->destroy(m, id, NULL);
}

/* ---- recovery -------------------------------------------------------------------------------------- */

/* One open sandbox record, from a row or a legacy meta.json. */
struct rec {
	char *id, *owner, *state, *env, *domains, *from_snapshot;
	int64_t created_at, claimed_at, last_active_at, idle_ms, lifetime_ms;
	bool egress, env_sealed;
};

static char *jdup(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? st_xstrdup(s) : NULL;
}

static void rec_release(struct rec *r)
{
	free(r->id);
	free(r->owner);
	free(r->state);
	free(r->env);
	free(r->domains);
	free(r->from_snapshot);
}

static void rec_from_row(struct rec *r, json_t *row)
{
	memset(r, 0, sizeof(*r));
	r->id = jdup(row, "id");
	r->owner = jdup(row, "owner");
	r->state = jdup(row, "state");
	r->env = jdup(row, "env");
	r->domains = jdup(row, "allowed_domains");
	r->from_snapshot = jdup(row, "from_snapshot");
	r->created_at = json_integer_value(json_object_get(row, "created_at"));
	r->claimed_at = json_integer_value(json_object_get(row, "claimed_at"));
	r->last_active_at = json_integer_value(json_object_get(row, "last_active_at"));
	r->idle_ms = json_integer_value(json_object_get(row, "idle_timeout_ms"));
	r->lifetime_ms = json_integer_value(json_object_get(row, "lifetime_ms"));
	r->egress = json_integer_value(json_object_get(row, "allow_egress")) != 0;
	r->env_sealed = json_integer_value(json_object_get(row, "env_sealed")) != 0;
	if (!r->claimed_at)
		r->claimed_at = r->created_at;
}

/* Records written by releases before the state store: sb/<id>/meta.json. */
static bool rec_from_meta(struct rec *r, const char *id, const char *dir)
{
	cleanup_free char *p = st_xasprintf("%s/meta.json", dir);
	json_t *meta = json_load_file(p, 0, NULL);
	const char *owner = meta ? json_string_value(json_object_get(meta, "owner")) : NULL;
	if (!owner) {
		json_decref(meta);
		return false;
	}
	memset(r, 0, sizeof(*r));
	r->id = st_xstrdup(id);
	r->owner = st_xstrdup(owner);
	r->state = st_xstrdup("running");
	r->created_at = json_integer_value(json_object_get(meta, "createdWallS")) * 1000;
	r->claimed_at = r->created_at;
	r->last_active_at = wall_ms();
	r->lifetime_ms = json_integer_value(json_object_get(meta, "lifetimeMs"));
	r->idle_ms = json_integer_value(json_object_get(meta, "idleTimeoutMs"));
	r->egress = json_is_true(json_object_get(meta, "allowEgress"));
	json_t *env = json_object_get(meta, "env");
	r->env = json_is_object(env) ? json_dumps(env, JSON_COMPACT) : NULL;
	r->from_snapshot = jdup(meta, "fromSnapshot");
	json_decref(meta);
	return true;
}

/* Import a legacy record as a row so that from here on the store knows it. */
static int rec_insert(struct sandbox_mgr *m, const struct rec *r, struct st_error **err)
{
	struct store_value p[] = {
	    store_text(r->id),
	    store_text(m->st->node),
	    store_text(r->owner),
	    store_text(runtime_name(m)),
	    store_int(r->created_at),
	    store_int(r->claimed_at),
	    store_int(r->last_active_at),
	    store_int(r->claimed_at + r->lifetime_ms),
	    store_int(r->idle_ms),
	    store_int(r->lifetime_ms),
	    store_int((int64_t)m->o.memory_bytes),
	    store_int((int64_t)(m->o.cpus * 1000.0)),
	    store_int((int64_t)m->o.pids),
	    store_int((int64_t)m->o.workspace_bytes),
	    store_int(r->egress),
	    store_text(r->env),
	    store_text(r->from_snapshot),
	};
	return store_exec(
	    S(m),
	    "INSERT INTO {ns}sandboxes (id, node, owner, state, runtime, created_at, "
	    "claimed_at, last_active_at, expires_at, idle_timeout_ms, lifetime_ms, "
	    "memory_bytes, cpu_millis, pids, workspace_bytes, allow_egress, env, "
	    "env_sealed, from_snapshot) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, "
	    "?, ?, ?, ?, ?, ?, ?, 0, ?)",
	    p, ST_ARRAY_SIZE(p), NULL, err);
}

static bool strv_has(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], s))
			return true;
	return false;
}

static void strv_push(char ***v, size_t *n, const char *s)
{
	*v = realloc(*v, (*n + 2) * sizeof(char *));
	if (!*v)
		abort();
	(*v)[(*n)++] = st_xstrdup(s);
	(*v)[*n] = NULL;
}

/* Try to re-adopt one owned record; true when it joined m->list. */
static bool adopt(struct sandbox_mgr *m, const struct rec *r)
{
	cleanup_free char *state = rt_state(m, r->id);
	struct sandbox *sb = sandbox__sb_new(m, r->id);
	bool alive = false;
	if (state && !strcmp(state, "running"))
		alive = sandbox__agent_wait_ready(sb->sock, st_now_ms() + 2000, NULL) == 0;
	else if (state && !strcmp(state, "paused"))
		alive = true;
	if (!alive) {
		sandbox__sb_free(sb);
		return false;
	}
	sb->owner = st_xstrdup(r->owner);
	sb->state = !strcmp(state, "paused") ? SB_PAUSED : SB_READY;
	sb->created_wall_s = r->created_at / 1000;
	sb->created_ms = to_mono(r->created_at);
	sb->claimed_ms = to_mono(r->claimed_at);
	sb->lifetime_ms = (uint64_t)r->lifetime_ms;
	sb->idle_timeout_ms = (uint64_t)r->idle_ms;
	sb->allow_egress = r->egress;
	sb->env = env_decode(m, r->id, r->env, r->env_sealed);
	if (r->env && !sb->env)
		st_log(ST_LOG_WARN,
		       "sandbox '%s': its recorded env cannot be read (encryption key changed?); "
		       "commands run without it",
		       r->id);
	json_t *dom = r->domains ? json_loads(r->domains, 0, NULL) : NULL;
	if (json_is_array(dom)) {
		sb->allowed_domains = st_xcalloc(json_array_size(dom) + 1, sizeof(char *));
		for (size_t i = 0; i < json_array_size(dom); i++) {
			const char *d = json_string_value(json_array_get(dom, i));
			sb->allowed_domains[i] = st_xstrdup(d ? d : "");
		}
	}
	json_decref(dom);
	sb->from_snapshot = r->from_snapshot ? st_xstrdup(r->from_snapshot) : NULL;
	/* The service's own downtime is not the user's idleness: the idle clock restarts. */
	sb->last_active_ms = st_now_ms();
	sb->stored_active_ms = 0;
	struct st_error *e = NULL;
	if (sb->allow_egress && sandbox__egress_start(m, sb, &e) < 0)
		st_log(ST_LOG_WARN, "sandbox '%s': %s", sb->id, st_error_msg(e));
	st_error_free(e);
	pthread_mutex_lock(&m->lock);
	sb->next = m->list;
	m->list = sb;
	pthread_mutex_unlock(&m->lock);
	if (strcmp(r->state, sb->state == SB_PAUSED ? "paused" : "running") != 0)
		sandbox__state_set(m, r->id, sb->state == SB_PAUSED ? "paused" : "running");
	st_log(ST_LOG_INFO, "sandbox '%s' re-adopted after restart (%s)", r->id, state);
	return true;
}

static void cleanup_one(struct sandbox_mgr *m, const char *id)
{
	struct sandbox *sb = sandbox__sb_new(m, id);
	sandbox__sb_teardown(m, sb);
	sandbox__sb_free(sb);
}

static void recover_snapshots(struct sandbox_mgr *m);

void sandbox__recover(struct sandbox_mgr *m)
{
	char **done = NULL; /* ids handled (adopted or cleaned) */
	size_t ndone = 0;
	char **adopted = NULL;
	size_t nad = 0;
	struct st_error *e = NULL;
	json_t *rows = NULL;
	struct store_value p[] = {store_text(m->st->node)};
	if (store_query_json(S(m),
	                     "SELECT * FROM {ns}sandboxes WHERE node = ? AND ended_at IS NULL "
	                     "ORDER BY created_at",
	                     p, 1, &rows, &e) < 0) {
		/* Without the records nothing can be re-adopted safely, but the host must not
		 * leak either: everything on it is cleaned below. */
		st_log(ST_LOG_ERROR, "sandbox recovery: cannot read the state store: %s",
		       st_error_msg(e));
		st_error_release(&e);
	}
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		struct rec r;
		rec_from_row(&r, row);
		if (!r.id) {
			rec_release(&r);
			continue;
		}
		strv_push(&done, &ndone, r.id);
		if (r.owner && adopt(m, &r)) {
			strv_push(&adopted, &nad, r.id);
		} else {
			if (r.owner)
				st_log(ST_LOG_WARN,
				       "sandbox '%s' lost (runtime gone or agent not answering): "
				       "cleaning up",
				       r.id);
			else
				st_log(
				    ST_LOG_INFO,
				    "sandbox '%s' was a warm-pool sandbox of a previous process: "
				    "cleaning up",
				    r.id);
			cleanup_one(m, r.id);
			sandbox__state_end(m, r.id, "lost: not running after a service restart");
		}
		rec_release(&r);
	}
	json_decref(rows);

	/* Directories without an open row: a legacy record is imported and adopted, anything
	 * else (a crash between the row's end and the directory's removal) is removed. */
	cleanup_free char *sbdir = st_xasprintf("%s/sb", m->state_dir);
	DIR *d = opendir(sbdir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, "sb-", 3) != 0 || strv_has(done, ndone, de->d_name))
			continue;
		strv_push(&done, &ndone, de->d_name);
		cleanup_free char *dir = st_xasprintf("%s/%s", sbdir, de->d_name);
		struct rec r;
		if (rec_from_meta(&r, de->d_name, dir)) {
			if (rec_insert(m, &r, &e) < 0) {
				st_log(ST_LOG_WARN, "sandbox '%s': cannot import its record: %s",
				       r.id, st_error_msg(e));
				st_error_release(&e);
			} else if (adopt(m, &r)) {
				strv_push(&adopted, &nad, r.id);
				cleanup_free char *mp = st_xasprintf("%s/meta.json", dir);
				unlink(mp);
				rec_release(&r);
				continue;
			} else {
				sandbox__state_end(m, r.id,
				                   "lost: not running after a service restart");
			}
			rec_release(&r);
		}
		st_log(ST_LOG_WARN, "sandbox directory '%s' has no live record: cleaning up",
		       de->d_name);
		cleanup_one(m, de->d_name);
	}
	if (d)
		closedir(d);

	/* Containers runsc still knows about without a live record. */
	char **ids = rt_list(m);
	for (size_t k = 0; ids[k]; k++) {
		if (strv_has(adopted, nad, ids[k]))
			continue;
		st_log(ST_LOG_WARN, "runsc container '%s' has no live sandbox record: deleting",
		       ids[k]);
		rt_destroy(m, ids[k]);
		sandbox__host_cleanup(ids[k], NULL);
	}
	for (size_t k = 0; ids[k]; k++)
		free(ids[k]);
	free(ids);
	for (size_t k = 0; k < ndone; k++)
		free(done[k]);
	free(done);
	for (size_t k = 0; k < nad; k++)
		free(adopted[k]);
	free(adopted);

	struct store_value q[] = {store_int(wall_ms() - ENDED_KEEP_MS)};
	if (store_exec(S(m),
	               "DELETE FROM {ns}sandboxes WHERE ended_at IS NOT NULL AND ended_at < ?", q,
	               1, NULL, &e) < 0)
		st_error_release(&e);
	recover_snapshots(m);
}

/* ---- snapshot rows --------------------------------------------------------------------------------- */

static int sha256_fd(int fd, char out[65])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c)
		return -ENOMEM;
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	char *buf = st_xmalloc(256 * 1024);
	ssize_t k;
	off_t off = 0;
	while ((k = pread(fd, buf, 256 * 1024, off)) > 0) {
		EVP_DigestUpdate(c, buf, (size_t)k);
		off += k;
	}
	free(buf);
	uint8_t h[32];
	unsigned hn = 0;
	EVP_DigestFinal_ex(c, h, &hn);
	EVP_MD_CTX_free(c);
	if (k < 0)
		return -errno;
	for (size_t i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
	return 0;
}

int sandbox__snaprec_begin(struct sandbox_mgr *m, const char *owner, const char *sandbox_id,
                           const char *snap_id, const char *key, int sealed_fd,
                           struct sandbox_snaprec *rec, struct st_error **err)
{
	memset(rec, 0, sizeof(*rec));
	struct stat sbuf;
	if (fstat(sealed_fd, &sbuf) < 0)
		return st_error_make(err, errno, "fstat");
	if (sha256_fd(sealed_fd, rec->sha256) < 0)
		return st_error_make(err, errno, "cannot hash the sealed snapshot");
	rec->size = (uint64_t)sbuf.st_size;
	rec->created_at = wall_ms();
	struct store_value p[] = {
	    store_text(snap_id),
	    store_text(owner),
	    store_text(sandbox_id),
	    store_text(m->st->node),
	    store_text(m->o.blob ? "blob" : "local"),
	    store_text(key),
	    store_int((int64_t)rec->size),
	    store_text(rec->sha256),
	    store_text(SNAP_CIPHER),
	    store_int(rec->created_at),
	};
	int r =
	    store_exec(S(m),
	               "INSERT INTO {ns}snapshots (id, owner, sandbox_id, node, state, storage, "
	               "blob_key, size_bytes, sha256, cipher, created_at) VALUES (?, ?, ?, ?, "
	               "'saving', ?, ?, ?, ?, ?, ?)",
	               p, ST_ARRAY_SIZE(p), NULL, err);
	if (r < 0)
		return st_error_wrap(err, "cannot record snapshot '%s' in the state store",
		                     snap_id);
	return 0;
}

int sandbox__snaprec_finish(struct sandbox_mgr *m, const char *snap_id, bool stored,
                            struct st_error **err)
{
	struct store_value p[] = {store_text(snap_id)};
	if (!stored) {
		struct st_error *e = NULL;
		store_exec(S(m), "DELETE FROM {ns}snapshots WHERE id = ?", p, 1, NULL, &e);
		st_error_free(e);
		return 0;
	}
	int r = store_exec(S(m), "UPDATE {ns}snapshots SET state = 'ready' WHERE id = ?", p, 1,
	                   NULL, err);
	if (r < 0)
		return st_error_wrap(err, "cannot record snapshot '%s' as stored", snap_id);
	return 0;
}

static struct snap_reader **reader_find(struct sandbox_records *st, const char *id)
{
	struct snap_reader **p = &st->readers;
	while (*p && strcmp((*p)->id, id) != 0)
		p = &(*p)->next;
	return p;
}

/* Look up the caller's snapshot; 1 when found ready (*rec filled, a reader registered), 0 when
 * no row with that id exists at all (a snapshot from before the state store), <0 (-ENOENT for
 * another owner's, a deleting one, or one still being saved). */
int sandbox__snaprec_open(struct sandbox_mgr *m, const char *owner, const char *snap_id,
                          struct sandbox_snaprec *rec, struct st_error **err)
{
	memset(rec, 0, sizeof(*rec));
	struct sandbox_records *st = m->st;
	struct store_value p[] = {store_text(snap_id)};
	json_t *row = NULL;
	pthread_mutex_lock(&st->mu);
	int r = store_query_one(S(m),
	                        "SELECT owner, state, storage, blob_key, size_bytes, sha256 FROM "
	                        "{ns}snapshots WHERE id = ?",
	                        p, 1, &row, err);
	if (r == -ENOENT) {
		pthread_mutex_unlock(&st->mu);
		st_error_release(err);
		return 0;
	}
	if (r < 0) {
		pthread_mutex_unlock(&st->mu);
		return st_error_wrap(err, "cannot look up snapshot '%s'", snap_id);
	}
	const char *o = json_string_value(json_object_get(row, "owner"));
	const char *state = json_string_value(json_object_get(row, "state"));
	if (!o || strcmp(o, owner) != 0 || !state || strcmp(state, "ready") != 0) {
		pthread_mutex_unlock(&st->mu);
		json_decref(row);
		return st_error_make(err, ENOENT, "no snapshot '%s'", snap_id);
	}
	struct snap_reader **rp = reader_find(st, snap_id);
	if (!*rp) {
		*rp = st_xcalloc(1, sizeof(**rp));
		st_strlcpy((*rp)->id, snap_id, sizeof((*rp)->id));
	}
	(*rp)->n++;
	pthread_mutex_unlock(&st->mu);
	rec->local = !strcmp(json_string_value(json_object_get(row, "storage")) ?: "", "local");
	const char *key = json_string_value(json_object_get(row, "blob_key"));
	rec->key = key ? st_xstrdup(key) : NULL;
	rec->size = (uint64_t)json_integer_value(json_object_get(row, "size_bytes"));
	const char *sha = json_string_value(json_object_get(row, "sha256"));
	if (sha)
		st_strlcpy(rec->sha256, sha, sizeof(rec->sha256));
	rec->reading = true;
	json_decref(row);
	return 1;
}

void sandbox__snaprec_close(struct sandbox_mgr *m, const char *snap_id, struct sandbox_snaprec *rec)
{
	struct sandbox_records *st = m->st;
	if (rec->reading) {
		pthread_mutex_lock(&st->mu);
		struct snap_reader **rp = reader_find(st, snap_id);
		if (*rp && --(*rp)->n == 0) {
			struct snap_reader *x = *rp;
			*rp = x->next;
			free(x);
		}
		pthread_cond_broadcast(&st->cv);
		pthread_mutex_unlock(&st->mu);
		rec->reading = false;
	}
	free(rec->key);
	rec->key = NULL;
}

int sandbox__sha256_fd(int fd, char out[65])
{
	return sha256_fd(fd, out);
}

static json_t *snap_json(json_t *row)
{
	json_t *sid = json_object_get(row, "sandbox_id");
	return json_pack(
	    "{s:O,s:O,s:O,s:O,s:I,s:I}", "id", json_object_get(row, "id"), "sandboxId",
	    sid ? sid : json_null(), "sizeBytes", json_object_get(row, "size_bytes"), "sha256",
	    json_object_get(row, "sha256") ?: json_null(), "createdAt",
	    (json_int_t)(json_integer_value(json_object_get(row, "created_at")) / 1000),
	    "createdAtMs", json_integer_value(json_object_get(row, "created_at")));
}

int sandbox_snapshot_list(struct sandbox_mgr *m, const char *owner, const char *sandbox_id,
                          json_t **out, struct st_error **err)
{
	*out = NULL;
	if (!owner)
		return st_error_make(err, EINVAL, "snapshot listing needs an owner");
	int r;
	json_t *rows = NULL;
	struct store_value p[] = {store_text(owner), store_text(sandbox_id)};
	r = store_query_json(
	    S(m),
	    sandbox_id ? "SELECT id, sandbox_id, size_bytes, sha256, created_at FROM "
	                 "{ns}snapshots WHERE owner = ? AND state = 'ready' AND sandbox_id "
	                 "= ? ORDER BY created_at DESC, id LIMIT 10000"
	               : "SELECT id, sandbox_id, size_bytes, sha256, created_at FROM "
	                 "{ns}snapshots WHERE owner = ? AND state = 'ready' ORDER BY "
	                 "created_at DESC, id LIMIT 10000",
	    p, sandbox_id ? 2 : 1, &rows, err);
	if (r < 0)
		return st_error_wrap(err, "cannot list snapshots");
	/* A sandbox the owner never had is 404 (ended rows are pruned after a while, so one
	 * with snapshots of the owner counts as had). */
	if (sandbox_id && json_array_size(rows) == 0 &&
	    (r = sandbox__state_owned(m, owner, sandbox_id, err)) < 0) {
		json_decref(rows);
		return r;
	}
	json_t *a = json_array();
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) json_array_append_new(a, snap_json(row));
	json_decref(rows);
	*out = a;
	return 0;
}

int sandbox_snapshot_get(struct sandbox_mgr *m, const char *owner, const char *snap_id,
                         json_t **out, struct st_error **err)
{
	json_t *row = NULL;
	struct store_value p[] = {store_text(snap_id ? snap_id : ""), store_text(owner)};
	int r = store_query_one(S(m),
	                        "SELECT id, sandbox_id, size_bytes, sha256, created_at FROM "
	                        "{ns}snapshots WHERE id = ? AND owner = ? AND state = 'ready'",
	                        p, 2, &row, err);
	if (r == -ENOENT) {
		st_error_release(err);
		return st_error_make(err, ENOENT, "no snapshot '%s'", snap_id ? snap_id : "");
	}
	if (r < 0)
		return r;
	*out = snap_json(row);
	json_decref(row);
	return 0;
}

static int object_delete(struct sandbox_mgr *m, bool local, const char *key, struct st_error **err)
{
	if (!local) {
		if (!m->o.blob)
			return st_error_make(err, 0,
			                     "snapshot is in blob storage but no blob store is "
			                     "configured");
		return blob_delete(m->o.blob, key, err);
	}
	cleanup_free char *path = st_xasprintf("%s/snapshots/%s", m->state_dir, key);
	if (unlink(path) < 0 && errno != ENOENT)
		return st_error_make(err, errno, "cannot remove '%s'", path);
	return 0;
}

static int object_size(struct sandbox_mgr *m, bool local, const char *key, uint64_t *size)
{
	if (!local) {
		if (!m->o.blob)
			return -ENOENT;
		struct blob_info bi = {0};
		int r = blob_stat(m->o.blob, key, &bi, NULL);
		*size = bi.size;
		blob_info_release(&bi);
		return r;
	}
	cleanup_free char *path = st_xasprintf("%s/snapshots/%s", m->state_dir, key);
	struct stat sbuf;
	if (stat(path, &sbuf) < 0)
		return -errno;
	*size = (uint64_t)sbuf.st_size;
	return 0;
}

static int finish_delete(struct sandbox_mgr *m, const char *id, bool local, const char *key,
                         struct st_error **err)
{
	int r = object_delete(m, local, key, err);
	if (r < 0)
		return st_error_wrap(err, "cannot delete the object of snapshot '%s'", id);
	struct store_value p[] = {store_text(id)};
	return store_exec(S(m), "DELETE FROM {ns}snapshots WHERE id = ?", p, 1, NULL, err);
}

int sandbox_snapshot_delete(struct sandbox_mgr *m, const char *owner, const char *snap_id,
                            struct st_error **err)
{
	struct sandbox_records *st = m->st;
	if (!owner || !snap_id)
		return st_error_make(err, ENOENT, "no snapshot '%s'", snap_id ? snap_id : "");
	json_t *row = NULL;
	struct store_value p[] = {store_text(snap_id), store_text(owner)};
	pthread_mutex_lock(&st->mu);
	int r =
	    store_query_one(S(m),
	                    "SELECT storage, blob_key FROM {ns}snapshots WHERE id = ? AND owner "
	                    "= ? AND state = 'ready'",
	                    p, 2, &row, err);
	if (r == -ENOENT) {
		pthread_mutex_unlock(&st->mu);
		st_error_release(err);
		return st_error_make(err, ENOENT, "no snapshot '%s'", snap_id);
	}
	if (r < 0) {
		pthread_mutex_unlock(&st->mu);
		return r;
	}
	/* From here new restores see it as gone; the ones already downloading finish first. */
	struct store_value u[] = {store_text(st->node), store_text(snap_id)};
	int64_t changes = 0;
	r = store_exec(
	    S(m),
	    "UPDATE {ns}snapshots SET state = 'deleting', node = ? WHERE id = ? AND state "
	    "= 'ready'",
	    u, 2, &changes, err);
	if (r == 0 && changes != 1)
		r = st_error_make(err, ENOENT, "no snapshot '%s'", snap_id);
	int64_t deadline = st_now_ms() + DELETE_WAIT_MS;
	while (r == 0 && *reader_find(st, snap_id) && st_now_ms() < deadline) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&st->cv, &st->mu, &ts);
	}
	if (r == 0 && *reader_find(st, snap_id)) {
		struct store_value b[] = {store_text(snap_id)};
		store_exec(S(m), "UPDATE {ns}snapshots SET state = 'ready' WHERE id = ?", b, 1,
		           NULL, NULL);
		r = st_error_make(err, EBUSY,
		                  "snapshot '%s' is being restored; retry the delete when the "
		                  "restore has finished",
		                  snap_id);
	}
	pthread_mutex_unlock(&st->mu);
	if (r == 0) {
		const char *storage = json_string_value(json_object_get(row, "storage"));
		r = finish_delete(m, snap_id, storage && !strcmp(storage, "local"),
		                  json_string_value(json_object_get(row, "blob_key")), err);
		if (r == 0)
			st_log(ST_LOG_INFO, "snapshot '%s' deleted by its owner", snap_id);
	}
	json_decref(row);
	return r;
}

static void recover_snapshots(struct sandbox_mgr *m)
{
	json_t *rows = NULL;
	struct st_error *e = NULL;
	struct store_value p[] = {store_text(m->st->node)};
	if (store_query_json(S(m),
	                     "SELECT id, state, storage, blob_key, size_bytes FROM {ns}snapshots "
	                     "WHERE node = ? AND state IN ('saving', 'deleting')",
	                     p, 1, &rows, &e) < 0) {
		st_log(ST_LOG_WARN, "snapshot recovery: %s", st_error_msg(e));
		st_error_free(e);
		return;
	}
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		const char *id = json_string_value(json_object_get(row, "id"));
		const char *state = json_string_value(json_object_get(row, "state"));
		const char *storage = json_string_value(json_object_get(row, "storage"));
		const char *key = json_string_value(json_object_get(row, "blob_key"));
		if (!id || !state || !key)
			continue;
		bool local = storage && !strcmp(storage, "local");
		struct store_value q[] = {store_text(id)};
		if (!strcmp(state, "deleting")) {
			if (finish_delete(m, id, local, key, &e) < 0)
				st_log(ST_LOG_WARN, "snapshot '%s': %s", id, st_error_msg(e));
			else
				st_log(ST_LOG_INFO, "snapshot '%s': interrupted delete finished",
				       id);
			st_error_release(&e);
			continue;
		}
		/* saving: the object is whole if it exists with the recorded size (blob writes are
		 * atomic), and then nothing is lost; otherwise the save never completed. */
		uint64_t size = 0;
		int64_t want = json_integer_value(json_object_get(row, "size_bytes"));
		if (object_size(m, local, key, &size) == 0 && (int64_t)size == want) {
			store_exec(S(m), "UPDATE {ns}snapshots SET state = 'ready' WHERE id = ?", q,
			           1, NULL, NULL);
			st_log(ST_LOG_INFO, "snapshot '%s': stored before the restart, now listed",
			       id);
		} else {
			object_delete(m, local, key, NULL);
			store_exec(S(m), "DELETE FROM {ns}snapshots WHERE id = ?", q, 1, NULL,
			           NULL);
			st_log(ST_LOG_WARN, "snapshot '%s': its save did not complete; dropped",
			       id);
		}
	}
	json_decref(rows);
}
