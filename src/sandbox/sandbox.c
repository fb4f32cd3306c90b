/*
 * sandbox.c - the agent sandbox manager: lifecycle, warm pool, limits, sweeper, recovery, and
 * the operations that go through a sandbox's agent (exec, files, ports).
 *
 * Lifecycle of one sandbox (struct sandbox, see sandbox-internal.h):
 *   new record (STARTING, counted in m->creating) -> workspace tmpfs mounted, runtime started,
 *   agent answers -> READY. With no owner it sits in the warm pool; sandbox_create claims a pool
 *   sandbox (sets owner, env, timeouts) or, when the pool is empty, boots one itself.
 *   READY <-> PAUSED through the runtime (runsc pause/resume, or the jail runtime's cgroup
 *   freezer). Destroy, idle/lifetime expiry (the sweeper) or a failed boot -> DEAD: removed from the list, runtime deleted, workspace unmounted, directory
 *   removed. The struct is freed when its last reference (an in-flight operation) drops.
 *
 * Invariants: m->lock guards the list, every field of every sandbox except the immutable ones
 * (id, dir, sock) and the counters. No runtime command or agent request runs under the lock.
 * Every sandbox has a row in the state store (sandbox-state.c) from before its boot touches the
 * host until its teardown is done; the claim is recorded before create returns. At open,
 * recovery re-adopts from those rows a sandbox whose runtime still runs and whose agent
 * answers, and deletes anything else (runtime, cgroups, mounts, directory), marking it lost.
 * Snapshots live in blob storage, never under sb/, so cleaning a lost sandbox never loses one.
 *
 * Limits: maxTotalJobs bounds claimed sandboxes; the pool fills only into the room left;
 * maxConcurrentCreates bounds boots in flight (pool refills included); perUserSandboxLimit
 * bounds one owner's sandboxes. A limit hit is -EAGAIN with a message naming the setting.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "sandbox/sandbox-internal.h"

void sandbox_options_init(struct sandbox_options *o)
{
	memset(o, 0, sizeof(*o));
	o->runtime = SANDBOX_RUNTIME_GVISOR;
	o->platform = "ptrace";
	o->workspace_bytes = 1024ull << 20;
	o->memory_bytes = 1024ull << 20;
	o->pids = 512;
	o->cpus = 1.0;
	o->max_file_bytes = 100ull << 20;
	o->idle_timeout_ms = 600000;
	o->lifetime_ms = 9000000;
	o->ready_timeout_ms = 30000;
	o->exec_timeout_ms = 300000;
	o->prewarm_pool_size = 5;
	o->max_total_jobs = 50;
	o->max_concurrent_creates = 3;
	o->per_user_limit = 5;
	o->token_ttl_s = 900;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static char **strv_dup(const char *const *v)
{
	if (!v)
		return NULL;
	size_t n = 0;
	while (v[n])
		n++;
	char **r = st_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		r[i] = st_xstrdup(v[i]);
	return r;
}

static void strv_free(char **v)
{
	if (!v)
		return;
	for (size_t i = 0; v[i]; i++)
		free(v[i]);
	free(v);
}

/* Remove a tree without following symlinks (the workspace is untrusted content). */
static void rm_tree_at(int parent, const char *name)
{
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		unlinkat(parent, name, 0);
		return;
	}
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (de->d_type == DT_DIR)
			rm_tree_at(dirfd(d), de->d_name);
		else
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
	unlinkat(parent, name, AT_REMOVEDIR);
}

static void rm_tree(const char *path)
{
	rm_tree_at(AT_FDCWD, path);
}

char *sandbox__workspace_path(const struct sandbox *sb)
{
	return st_xasprintf("%s/ws", sb->dir);
}

void sandbox__error_wrap_log_tail(struct st_error **err, const char *log_path, const char *label)
{
	cleanup_free char *log = NULL;
	size_t len = 0;
	if (st_read_file(log_path, 1 << 20, &log, &len, NULL) < 0 || len == 0)
		return;
	while (len && log[len - 1] == '\n')
		log[--len] = '\0';
	const char *tail = len > 400 ? log + len - 400 : log;
	st_error_wrap(err, "%s%s%s", label ? label : "", label ? ": " : "", tail);
}

static void new_id(char out[SANDBOX_ID_LEN])
{
	uint8_t b[10];
	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		abort();
	int n = snprintf(out, SANDBOX_ID_LEN, "sb-");
	for (size_t i = 0; i < sizeof(b); i++)
		n += snprintf(out + n, SANDBOX_ID_LEN - (size_t)n, "%02x", b[i]);
}

bool sandbox__is_hex_id(const char *id, const char *prefix, size_t n_hex)
{
	size_t pl = strlen(prefix);
	if (!id || strlen(id) != pl + n_hex || strncmp(id, prefix, pl) != 0)
		return false;
	for (const char *p = id + pl; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static bool id_is_valid(const char *id)
{
	return sandbox__is_hex_id(id, "sb-", 20);
}

static struct sandbox *sb_new(struct sandbox_mgr *m, const char *id)
{
	struct sandbox *sb = st_xcalloc(1, sizeof(*sb));
	if (id)
		st_strlcpy(sb->id, id, sizeof(sb->id));
	else
		new_id(sb->id);
	sb->dir = st_xasprintf("%s/sb/%s", m->state_dir, sb->id);
	sb->sock = st_xasprintf("%s/chan/%s", sb->dir, AGENT_SOCK_NAME);
	sb->egress_fd = -1;
	sb->refs = 1;
	sb->created_ms = sb->last_active_ms = st_now_ms();
	sb->created_wall_s = st_wall_s();
	sb->idle_timeout_ms = m->o.idle_timeout_ms;
	sb->lifetime_ms = m->o.lifetime_ms;
	return sb;
}

static void sb_free(struct sandbox *sb)
{
	free(sb->owner);
	json_decref(sb->env);
	strv_free(sb->allowed_domains);
	free(sb->from_snapshot);
	free(sb->dir);
	free(sb->sock);
	free(sb);
}

/* Caller holds m->lock. */
static void sb_unref_locked(struct sandbox *sb)
{
	if (--sb->refs == 0)
		sb_free(sb);
}

static void sb_unref(struct sandbox_mgr *m, struct sandbox *sb)
{
	pthread_mutex_lock(&m->lock);
	sb_unref_locked(sb);
	pthread_mutex_unlock(&m->lock);
}

void sandbox__sb_ref(struct sandbox_mgr *m, struct sandbox *sb)
{
	pthread_mutex_lock(&m->lock);
	sb->refs++;
	pthread_mutex_unlock(&m->lock);
}

void sandbox__sb_unref(struct sandbox_mgr *m, struct sandbox *sb)
{
	sb_unref(m, sb);
}

static void list_remove_locked(struct sandbox_mgr *m, struct sandbox *sb)
{
	for (struct sandbox **p = &m->list; *p; p = &(*p)->next)
		if (*p == sb) {
			*p = sb->next;
			sb->next = NULL;
			return;
		}
}

static json_t *sb_json_locked(struct sandbox_mgr *m, struct sandbox *sb)
{
	static const char *const names[] = {"starting", "running", "paused", "dead"};
	int64_t now = st_now_ms();
	int64_t base = sb->claimed_ms ? sb->claimed_ms : sb->created_ms;
	int64_t expires =
	    sb->created_wall_s + (int64_t)(sb->lifetime_ms / 1000) + (base - sb->created_ms) / 1000;
	json_t *j = json_pack(
	    "{s:s,s:s,s:I,s:I,s:I,s:I,s:b,s:s}", "id", sb->id, "state", names[sb->state],
	    "createdAt", (json_int_t)sb->created_wall_s, "expiresAt", (json_int_t)expires,
	    "idleTimeoutMs", (json_int_t)sb->idle_timeout_ms, "idleMs",
	    (json_int_t)(sb->active_ops ? 0 : now - sb->last_active_ms), "allowEgress",
	    sb->allow_egress, "runtime", m->o.runtime == SANDBOX_RUNTIME_JAIL ? "jail" : "gvisor");
	if (sb->from_snapshot)
		json_object_set_new(j, "fromSnapshot", json_string(sb->from_snapshot));
	return j;
}

/* ---- boot and teardown ------------------------------------------------------------------- */

static int workspace_mount(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err)
{
	cleanup_free char *ws = sandbox__workspace_path(sb);
	int r = st_mkdir_p(ws, 0755, err);
	if (r < 0)
		return r;
	char opts[128];
	snprintf(opts, sizeof(opts), "size=%llu,uid=%d,gid=%d,mode=0755,nr_inodes=262144",
	         (unsigned long long)m->o.workspace_bytes, AGENT_USER_UID, AGENT_USER_GID);
	/* A tmpfs per workspace bounds its size without loop devices or quotas; it lives as long
	 * as the sandbox and the host can archive it for snapshots (with the sandbox paused). */
	if (mount("stockade-ws", ws, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
		static bool warned;
		if (!warned) {
			st_log(
			    ST_LOG_WARN,
			    "cannot mount a tmpfs workspace (%s): workspaces are not size-limited; "
			    "run the service as root (or with CAP_SYS_ADMIN) for workspace limits",
			    strerror(errno));
			warned = true;
		}
		if (chown(ws, AGENT_USER_UID, AGENT_USER_GID) < 0)
			return st_error_make(err, errno, "cannot chown '%s'", ws);
	}
	return 0;
}

static void workspace_umount(struct sandbox *sb)
{
	cleanup_free char *ws = sandbox__workspace_path(sb);
	if (umount2(ws, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		st_log(ST_LOG_WARN, "cannot unmount '%s': %s", ws, strerror(errno));
}

/* Tear down everything a sandbox holds on the host. Safe on partial boots. */
static void sb_teardown(struct sandbox_mgr *m, struct sandbox *sb)
{
	sandbox__egress_stop(sb);
	struct st_error *e = NULL;
	if (m->rt->destroy(m, sb->id, &e) < 0)
		st_log(ST_LOG_WARN, "sandbox '%s': %s", sb->id, st_error_msg(e));
	st_error_free(e);
	workspace_umount(sb);
	sandbox__host_cleanup(sb->id, sb->dir);
	rm_tree(sb->dir);
}

struct sandbox *sandbox__sb_new(struct sandbox_mgr *m, const char *id)
{
	return sb_new(m, id);
}

void sandbox__sb_free(struct sandbox *sb)
{
	sb_free(sb);
}

void sandbox__sb_teardown(struct sandbox_mgr *m, struct sandbox *sb)
{
	sb_teardown(m, sb);
}

static int sb_boot(struct sandbox_mgr *m, struct sandbox *sb, struct st_error **err)
{
	int64_t start = st_now_ms();
	cleanup_free char *chan = st_xasprintf("%s/chan", sb->dir);
	int r = st_mkdir_p(chan, 0755, err);
	if (r < 0)
		return r;
	if ((r = workspace_mount(m, sb, err)) < 0)
		return r;
	if ((r = m->rt->start(m, sb, err)) < 0)
		return st_error_wrap(err, "cannot start sandbox '%s'", sb->id);
	r = sandbox__agent_wait_ready(sb->sock, start + (int64_t)m->o.ready_timeout_ms, err);
	if (r < 0)
		return st_error_wrap(err, "sandbox '%s'", sb->id);
	return 0;
}

/* Boot a sandbox outside the lock; it joins the list as STARTING so limits see it. */
static int sb_create_booted(struct sandbox_mgr *m, struct sandbox **out, struct st_error **err)
{
	struct sandbox *sb = sb_new(m, NULL);
	sb->state = SB_STARTING;
	sb->refs = 2; /* the list, and us */
	pthread_mutex_lock(&m->lock);
	sb->next = m->list;
	m->list = sb;
	pthread_mutex_unlock(&m->lock);
	/* The record comes first: whatever the boot leaves on the host, recovery finds it. */
	int r = sandbox__state_boot(m, sb, err);
	bool recorded = r == 0;
	if (r == 0)
		r = sb_boot(m, sb, err);
	pthread_mutex_lock(&m->lock);
	m->creating--;
	if (r < 0 || m->stopping) {
		sb->state = SB_DEAD;
		list_remove_locked(m, sb);
		sb_unref_locked(sb);
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		sb_teardown(m, sb);
		if (recorded)
			sandbox__state_end(m, sb->id, "boot failed");
		sb_unref(m, sb);
		if (r >= 0)
			r = st_error_make(err, ESHUTDOWN, "the sandbox service is stopping");
		return r;
	}
	sb->state = SB_READY;
	sb->last_active_ms = st_now_ms();
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	*out = sb;
	return 0;
}

/* Remove from the list (if still there) and tear down. */
static void sb_kill(struct sandbox_mgr *m, struct sandbox *sb, const char *why)
{
	pthread_mutex_lock(&m->lock);
	if (sb->state == SB_DEAD) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	sb->state = SB_DEAD;
	list_remove_locked(m, sb);
	sb->refs++; /* keep it while tearing down */
	sb_unref_locked(sb); /* the list's reference */
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	st_log(ST_LOG_INFO, "sandbox '%s' destroyed (%s)", sb->id, why);
	sb_teardown(m, sb);
	sandbox__state_end(m, sb->id, why);
	sb_unref(m, sb);
}

/* ---- counting (m->lock held) --------------------------------------------------------------- */

static void count_locked(struct sandbox_mgr *m, const char *owner, unsigned *owned, unsigned *pool,
                         unsigned *mine)
{
	*owned = *pool = 0;
	if (mine)
		*mine = 0;
	for (struct sandbox *s = m->list; s; s = s->next) {
		if (s->state == SB_DEAD)
			continue;
		if (s->owner) {
			(*owned)++;
			if (mine && owner && !strcmp(s->owner, owner))
				(*mine)++;
		} else {
			(*pool)++;
		}
	}
}

/* ---- sweeper and pool ------------------------------------------------------------------------ */

static void *sweeper_main(void *arg)
{
	struct sandbox_mgr *m = arg;
	pthread_mutex_lock(&m->lock);
	while (!m->stopping) {
		/* Reap what expired. */
		int64_t now = st_now_ms();
		struct sandbox *victim = NULL;
		const char *why = NULL;
		for (struct sandbox *s = m->list; s; s = s->next) {
			if (!s->owner || s->state == SB_DEAD || s->state == SB_STARTING)
				continue;
			int64_t since = s->claimed_ms ? s->claimed_ms : s->created_ms;
			if (s->lifetime_ms && now - since > (int64_t)s->lifetime_ms) {
				victim = s;
				why = "sandboxGlobalLifetimeMs reached";
				break;
			}
			/* A paused sandbox is idle by definition; a running command is activity. */
			if (s->idle_timeout_ms && s->active_ops == 0 &&
			    now - s->last_active_ms > (int64_t)s->idle_timeout_ms) {
				victim = s;
				why = "sandboxIdleTimeoutMs reached";
				break;
			}
		}
		if (victim) {
			victim->refs++;
			pthread_mutex_unlock(&m->lock);
			sb_kill(m, victim, why);
			sb_unref(m, victim);
			pthread_mutex_lock(&m->lock);
			continue;
		}
		/* Refill the pool into the room the limits leave. */
		unsigned owned, pool;
		count_locked(m, NULL, &owned, &pool, NULL);
		unsigned starting = 0;
		for (struct sandbox *s = m->list; s; s = s->next)
			if (!s->owner && s->state == SB_STARTING)
				starting++;
		(void)starting;
		if (pool < m->o.prewarm_pool_size && owned + pool < m->o.max_total_jobs &&
		    m->creating < m->o.max_concurrent_creates) {
			m->creating++;
			pthread_mutex_unlock(&m->lock);
			struct sandbox *sb = NULL;
			struct st_error *e = NULL;
			if (sb_create_booted(m, &sb, &e) == 0) {
				sb_unref(m, sb);
			} else {
				st_log(ST_LOG_WARN, "warm pool: %s", st_error_msg(e));
				struct timespec ts = {1, 0};
				nanosleep(&ts, NULL); /* do not spin on a broken runtime */
			}
			st_error_free(e);
			pthread_mutex_lock(&m->lock);
			continue;
		}
		pthread_mutex_unlock(&m->lock);
		sandbox__state_flush_activity(m, false);
		pthread_mutex_lock(&m->lock);
		if (m->stopping)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&m->cond, &m->lock, &ts);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* ---- open / free ----------------------------------------------------------------------------- */

static char *agent_beside_self(void)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return st_xstrdup("stockade-agent");
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash)
		*slash = '\0';
	char *p = st_xasprintf("%s/stockade-agent", self);
	if (access(p, X_OK) == 0)
		return p;
	free(p);
	/* Unit tests live in <build>/tests/. */
	p = st_xasprintf("%s/../stockade-agent", self);
	return p;
}

/* stockade-compat.so in the agent's directory (see sandbox-runsc.c), or NULL. */
static char *compat_beside(const char *agent)
{
	const char *slash = strrchr(agent, '/');
	char *p = slash ? st_xasprintf("%.*s/stockade-compat.so", (int)(slash - agent), agent)
	                : st_xstrdup("stockade-compat.so");
	if (access(p, R_OK) == 0)
		return p;
	free(p);
	return NULL;
}

int sandbox_runtime_probe(const struct sandbox_options *o, struct st_error **err)
{
	return sandbox__runtime_of(o->runtime)->probe(o, err);
}

int sandbox_mgr_open(const struct sandbox_options *o, struct sandbox_mgr **out,
                     struct st_error **err)
{
	if (!o->state_dir)
		return st_error_make(err, EINVAL, "the agent sandbox needs a state directory");
	struct sandbox_mgr *m = st_xcalloc(1, sizeof(*m));
	m->o = *o;
	m->rt = sandbox__runtime_of(o->runtime);
	m->state_dir = realpath(o->state_dir, NULL);
	if (!m->state_dir) {
		int r = st_mkdir_p(o->state_dir, 0700, err);
		if (r < 0) {
			free(m);
			return r;
		}
		m->state_dir = realpath(o->state_dir, NULL);
	}
	m->runsc = st_xstrdup(o->runsc_path ? o->runsc_path : "runsc");
	m->platform = st_xstrdup(o->platform ? o->platform : "ptrace");
	m->agent_path = o->agent_path ? st_xstrdup(o->agent_path) : agent_beside_self();
	m->compat_path = compat_beside(m->agent_path);
	m->runsc_root = st_xasprintf("%s/runsc", m->state_dir);
	m->o.rootfs = o->rootfs ? (m->rootfs = st_xstrdup(o->rootfs)) : NULL;
	m->allowed_domains = strv_dup(o->allowed_domains);
	m->backend_suffixes = strv_dup(o->backend_domain_suffixes);
	m->blocked_cidrs = strv_dup(o->blocked_cidrs);
	m->issuer = st_xstrdup(o->token_issuer ? o->token_issuer : "stockade-agent-sandbox");
	m->priv_pem = o->jwt_private_key_pem ? st_xstrdup(o->jwt_private_key_pem) : NULL;
	m->pub_pem = o->jwt_public_key_pem ? st_xstrdup(o->jwt_public_key_pem) : NULL;
	if (o->encryption_key) {
		memcpy(m->key, o->encryption_key, 32);
		m->has_key = true;
	}
	m->o.allowed_domains = NULL;
	m->o.backend_domain_suffixes = NULL;
	m->o.blocked_cidrs = NULL;
	m->o.jwt_private_key_pem = m->o.jwt_public_key_pem = NULL;
	m->o.encryption_key = NULL;
	if (!m->o.token_ttl_s)
		m->o.token_ttl_s = 900;
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);

	int r;
	struct st_error *e = NULL;
	cleanup_free char *sbdir = st_xasprintf("%s/sb", m->state_dir);
	if (access(m->agent_path, X_OK) < 0) {
		r = st_error_make(err, errno,
		                  "the in-sandbox agent '%s' is missing (run `make build`)",
		                  m->agent_path);
		goto fail;
	}
	if ((r = st_mkdir_p(sbdir, 0700, err)) < 0 ||
	    (r = st_mkdir_p(m->runsc_root, 0700, err)) < 0)
		goto fail;
	if (strlen(sbdir) + 64 > 107) {
		r = st_error_make(
		    err, ENAMETOOLONG,
		    "state directory '%s' is too long for unix socket paths; choose a "
		    "shorter rr.agentSandbox.sandbox.workspaceDir",
		    m->state_dir);
		goto fail;
	}
	if ((r = m->rt->probe(&m->o, err)) < 0)
		goto fail;
	if ((r = sandbox__keys_load(m, &e)) < 0) {
		/* Not fatal here: the service starts, but no sandbox is served without the keypair. */
		st_log(ST_LOG_WARN, "agent sandbox: %s", st_error_msg(e));
		st_error_release(&e);
	}
	if ((r = m->rt->prepare(m, err)) < 0)
		goto fail;
	if ((r = sandbox__state_open(m, err)) < 0)
		goto fail;
	sandbox__recover(m);
	m->sweeper_running = pthread_create(&m->sweeper, NULL, sweeper_main, m) == 0;
	*out = m;
	return 0;
fail:
	sandbox_mgr_free(m);
	return r;
}

void sandbox_mgr_free(struct sandbox_mgr *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stopping = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (m->sweeper_running)
		pthread_join(m->sweeper, NULL);
	/* Pool sandboxes go; claimed ones stay for the next process to re-adopt. */
	for (;;) {
		pthread_mutex_lock(&m->lock);
		struct sandbox *victim = NULL;
		for (struct sandbox *s = m->list; s; s = s->next)
			if (!s->owner) {
				victim = s;
				break;
			}
		if (victim)
			victim->refs++;
		pthread_mutex_unlock(&m->lock);
		if (!victim)
			break;
		sb_kill(m, victim, "service stopping (warm pool)");
		sb_unref(m, victim);
	}
	if (m->st)
		sandbox__state_flush_activity(m, true);
	pthread_mutex_lock(&m->lock);
	while (m->list) {
		struct sandbox *s = m->list;
		m->list = s->next;
		sandbox__egress_stop(s);
		sb_unref_locked(s);
	}
	pthread_mutex_unlock(&m->lock);
	sandbox__state_close(m);
	sandbox__keys_release(m);
	free(m->state_dir);
	free(m->runsc);
	free(m->platform);
	free(m->agent_path);
	free(m->compat_path);
	free(m->runsc_root);
	free(m->rootfs);
	free(m->priv_pem);
	free(m->pub_pem);
	free(m->issuer);
	strv_free(m->allowed_domains);
	strv_free(m->backend_suffixes);
	strv_free(m->blocked_cidrs);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
}

void sandbox_mgr_destroy_all(struct sandbox_mgr *m)
{
	for (;;) {
		pthread_mutex_lock(&m->lock);
		struct sandbox *victim = m->list;
		while (victim && victim->state == SB_STARTING)
			victim = victim->next;
		if (victim)
			victim->refs++;
		bool starting = !victim && m->list;
		if (starting)
			pthread_cond_wait(&m->cond, &m->lock);
		pthread_mutex_unlock(&m->lock);
		if (!victim) {
			if (starting)
				continue;
			break;
		}
		sb_kill(m, victim, "destroy all");
		sb_unref(m, victim);
	}
}

/* ---- lookup -------------------------------------------------------------------------------- */

/* Find a claimed sandbox of owner (NULL owner: any claimed one) and take a reference. */
static int sb_get(struct sandbox_mgr *m, const char *owner, const char *id, bool need_ready,
                  struct sandbox **out, struct st_error **err)
{
	if (!id_is_valid(id))
		return st_error_make(err, ENOENT, "no sandbox '%s'", id ? id : "");
	pthread_mutex_lock(&m->lock);
	struct sandbox *sb = m->list;
	for (; sb; sb = sb->next)
		if (!strcmp(sb->id, id) && sb->owner && sb->state != SB_DEAD &&
		    (!owner || !strcmp(sb->owner, owner)))
			break;
	if (!sb) {
		pthread_mutex_unlock(&m->lock);
		return st_error_make(err, ENOENT, "no sandbox '%s'", id);
	}
	if (need_ready && sb->state == SB_PAUSED) {
		pthread_mutex_unlock(&m->lock);
		return st_error_make(err, EBUSY, "sandbox '%s' is paused; resume it first", id);
	}
	sb->refs++;
	sb->active_ops++;
	sb->last_active_ms = st_now_ms();
	pthread_mutex_unlock(&m->lock);
	*out = sb;
	return 0;
}

static void sb_put(struct sandbox_mgr *m, struct sandbox *sb)
{
	pthread_mutex_lock(&m->lock);
	sb->active_ops--;
	sb->last_active_ms = st_now_ms();
	sb_unref_locked(sb);
	pthread_mutex_unlock(&m->lock);
}

/*
 * Connect to a sandbox's agent. When that fails, ask the runtime: a sandbox whose runtime has
 * exited (its memory limit reached, a sentry crash) is cleaned up at once and reported as
 * gone (-ESRCH) instead of failing every later request the same way.
 */
static int sb_connect(struct sandbox_mgr *m, struct sandbox *sb, int *fd, struct st_error **err)
{
	int r = sandbox__agent_connect(sb->sock, fd, err);
	if (r == 0)
		return 0;
	cleanup_free char *state = m->rt->state(m, sb->id);
	if (state && (!strcmp(state, "running") || !strcmp(state, "paused")))
		return r;
	st_error_release(err);
	st_log(ST_LOG_WARN, "sandbox '%s' lost: its runtime is %s", sb->id, state ? state : "gone");
	sb_kill(m, sb, "runtime exited (memory limit reached or crash)");
	st_error_make(err, 0,
	              "sandbox '%s' stopped: its runtime exited (memory limit reached or a crash); "
	              "it has been cleaned up, create a new one",
	              sb->id);
	if (err && *err)
		(*err)->code = ESRCH;
	return -ESRCH;
}

/* A request to a sandbox's agent in progress: the sandbox held, the connection, the reply. */
struct agent_op {
	struct sandbox *sb;
	int fd;
	uint32_t n;
	char *buf; /* AGENT_FRAME_MAX + 1 bytes: the reply, then what follows it */
};

/* Let go of what o holds: the sandbox, the connection, the buffer (none once it ran). */
static void agent_op_end(struct sandbox_mgr *m, struct agent_op *o)
{
	if (o->sb)
		sb_put(m, o->sb);
	if (o->fd >= 0)
		close(o->fd);
	free(o->buf);
	*o = (struct agent_op){.fd = -1};
}

/*
 * Connect to the agent of o->sb, send q (released here) and read its reply into o->buf, or with
 * send_only return once it is sent (the agent of a write replies after the data). The caller
 * reads on, and ends with agent_op_end whatever this returned.
 */
static int agent_op_send(struct sandbox_mgr *m, struct agent_op *o, struct st_buf *q,
                         bool send_only, struct st_error **err)
{
	o->buf = st_xmalloc(AGENT_FRAME_MAX + 1);
	int r = sb_connect(m, o->sb, &o->fd, err);
	if (r == 0 && !send_only)
		r = sandbox__agent_call(o->fd, q, o->buf, &o->n, err);
	if (r == 0 && send_only &&
	    (r = sandbox__frame_write(o->fd, AGENT_F_REQ, q->data, q->len)) < 0)
		r = st_error_make(err, -r, "cannot send to the sandbox agent");
	st_buf_release(q);
	return r;
}

/* agent_op_send to the ready sandbox id of owner; on failure nothing is held. */
static int agent_op_start(struct sandbox_mgr *m, const char *owner, const char *id,
                          struct st_buf *q, bool send_only, struct agent_op *o,
                          struct st_error **err)
{
	*o = (struct agent_op){.fd = -1};
	int r = sb_get(m, owner, id, true, &o->sb, err);
	if (r == 0)
		r = agent_op_send(m, o, q, send_only, err);
	else
		st_buf_release(q);
	if (r < 0)
		agent_op_end(m, o);
	return r;
}

/* ---- create / get / list / destroy -------------------------------------------------------------- */

int sandbox_create(struct sandbox_mgr *m, const struct sandbox_create_opts *o, json_t **out,
                   struct st_error **err)
{
	if (!o->owner || !*o->owner)
		return st_error_make(err, EINVAL, "sandbox create needs an owner");
	if (o->allow_egress && m->o.egress_disabled)
		return st_error_make(
		    err, EINVAL,
		    "'network.allowEgress': egress is switched off for this service "
		    "(rr.agentSandbox.proxy.egressEnabled: false); create the sandbox "
		    "without it");
	if (!m->sign_key)
		return st_error_make(
		    err, EACCES,
		    "the agent sandbox has no JWT keypair: set "
		    "rr.agentSandbox.jwtPrivateKey and jwtPublicKey (stockade keys "
		    "generate); sandboxes are not served without it");
	pthread_mutex_lock(&m->lock);
	unsigned owned, pool, mine;
	count_locked(m, o->owner, &owned, &pool, &mine);
	if (m->o.per_user_limit && mine >= m->o.per_user_limit) {
		pthread_mutex_unlock(&m->lock);
		return st_error_make(err, EAGAIN,
		                     "you have %u sandboxes, the limit is %u "
		                     "(scaling.perUserSandboxLimit): destroy one first",
		                     mine, m->o.per_user_limit);
	}
	if (m->o.max_total_jobs && owned >= m->o.max_total_jobs) {
		pthread_mutex_unlock(&m->lock);
		return st_error_make(err, EAGAIN,
		                     "the service runs %u sandboxes, the limit is %u "
		                     "(scaling.maxTotalJobs): retry later",
		                     owned, m->o.max_total_jobs);
	}
	struct sandbox *sb = NULL;
	for (struct sandbox *s = m->list; s; s = s->next)
		if (!s->owner && s->state == SB_READY) {
			sb = s;
			break;
		}
	if (sb) {
		/* Claim: from here the sweeper and other claims see it as owned. */
		sb->owner = st_xstrdup(o->owner);
		sb->refs++;
		pthread_cond_broadcast(&m->cond); /* the pool refills */
		pthread_mutex_unlock(&m->lock);
	} else {
		if (m->creating >= m->o.max_concurrent_creates) {
			pthread_mutex_unlock(&m->lock);
			return st_error_make(
			    err, EAGAIN,
			    "%u sandboxes are being created, the limit is %u "
			    "(scaling.maxConcurrentCreates) and the warm pool is empty: "
			    "retry shortly",
			    m->creating, m->o.max_concurrent_creates);
		}
		m->creating++;
		pthread_mutex_unlock(&m->lock);
		int r = sb_create_booted(m, &sb, err);
		if (r < 0)
			return r;
		pthread_mutex_lock(&m->lock);
		sb->owner = st_xstrdup(o->owner);
		pthread_mutex_unlock(&m->lock);
	}

	pthread_mutex_lock(&m->lock);
	sb->claimed_ms = st_now_ms();
	sb->last_active_ms = sb->claimed_ms;
	if (o->idle_timeout_ms && o->idle_timeout_ms < sb->idle_timeout_ms)
		sb->idle_timeout_ms = o->idle_timeout_ms;
	if (o->lifetime_ms && o->lifetime_ms < sb->lifetime_ms)
		sb->lifetime_ms = o->lifetime_ms;
	sb->env = o->env ? json_deep_copy(o->env) : NULL;
	sb->allow_egress = o->allow_egress;
	sb->allowed_domains = strv_dup(o->allowed_domains);
	sb->from_snapshot = o->from_snapshot ? st_xstrdup(o->from_snapshot) : NULL;
	sb->active_ops++;
	pthread_mutex_unlock(&m->lock);

	int r = sandbox__state_claim(m, sb, err);
	if (r == 0 && o->from_snapshot) {
		cleanup_free char *ws = sandbox__workspace_path(sb);
		r = sandbox__snapshot_restore(m, o->owner, o->from_snapshot, ws, err);
	}
	if (r == 0 && o->allow_egress)
		r = sandbox__egress_start(m, sb, err);
	cleanup_free char *token = NULL;
	int64_t exp = 0;
	if (r == 0)
		r = sandbox__token_make(m, sb->id, &token, &exp, err);
	pthread_mutex_lock(&m->lock);
	sb->active_ops--;
	sb->last_active_ms = st_now_ms();
	pthread_mutex_unlock(&m->lock);
	if (r < 0) {
		sb_kill(m, sb, "create failed");
		sb_unref(m, sb);
		return r;
	}
	pthread_mutex_lock(&m->lock);
	json_t *j = sb_json_locked(m, sb);
	pthread_mutex_unlock(&m->lock);
	json_object_set_new(j, "token", json_string(token));
	json_object_set_new(j, "tokenExpiresAt", json_integer(exp));
	sb_unref(m, sb);
	*out = j;
	return 0;
}

int sandbox_get(struct sandbox_mgr *m, const char *owner, const char *id, json_t **out,
                struct st_error **err)
{
	struct sandbox *sb;
	int r = sb_get(m, owner, id, false, &sb, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	sb->active_ops--; /* a look is not activity */
	json_t *j = sb_json_locked(m, sb);
	sb_unref_locked(sb);
	pthread_mutex_unlock(&m->lock);
	*out = j;
	return 0;
}

json_t *sandbox_list(struct sandbox_mgr *m, const char *owner)
{
	json_t *a = json_array();
	pthread_mutex_lock(&m->lock);
	for (struct sandbox *s = m->list; s; s = s->next)
		if (s->owner && s->state != SB_DEAD && owner && !strcmp(s->owner, owner))
			json_array_append_new(a, sb_json_locked(m, s));
	pthread_mutex_unlock(&m->lock);
	return a;
}

int sandbox_destroy(struct sandbox_mgr *m, const char *owner, const char *id, struct st_error **err)
{
	struct sandbox *sb;
	int r = sb_get(m, owner, id, false, &sb, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	sb->active_ops--;
	pthread_mutex_unlock(&m->lock);
	sb_kill(m, sb, "deleted by its owner");
	sb_unref(m, sb);
	return 0;
}

static int sb_set_paused(struct sandbox_mgr *m, const char *owner, const char *id, bool pause,
                         struct st_error **err)
{
	struct sandbox *sb;
	int r = sb_get(m, owner, id, false, &sb, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	bool already = (sb->state == SB_PAUSED) == pause;
	pthread_mutex_unlock(&m->lock);
	if (!already)
		r = m->rt->pause(m, sb->id, pause, err);
	if (r == 0) {
		pthread_mutex_lock(&m->lock);
		if (sb->state != SB_DEAD)
			sb->state = pause ? SB_PAUSED : SB_READY;
		pthread_mutex_unlock(&m->lock);
		if (!already)
			sandbox__state_set(m, sb->id, pause ? "paused" : "running");
	}
	sb_put(m, sb);
	return r;
}

int sandbox_pause(struct sandbox_mgr *m, const char *owner, const char *id, struct st_error **err)
{
	return sb_set_paused(m, owner, id, true, err);
}

int sandbox_resume(struct sandbox_mgr *m, const char *owner, const char *id, struct st_error **err)
{
	return sb_set_paused(m, owner, id, false, err);
}

int sandbox_token_check(struct sandbox_mgr *m, const char *id, const char *token,
                        struct st_error **err)
{
	return sandbox__token_verify(m, id, token, err);
}

/* ---- exec ---------------------------------------------------------------------------------- */

static void add_env(struct st_buf *q, json_t *env)
{
	const char *k;
	json_t *v;
	json_object_foreach(env, k, v)
	{
		if (!json_is_string(v))
			continue;
		cleanup_free char *kv = st_xasprintf("%s=%s", k, json_string_value(v));
		sandbox__kv_add(q, "env", kv);
	}
}

int sandbox_exec(struct sandbox_mgr *m, const char *owner, const char *id,
                 const struct sandbox_exec_req *rq, sandbox_output_fn outfn, void *ctx,
                 struct sandbox_exec_result *res, struct st_error **err)
{
	if (!rq->cmd || !*rq->cmd)
		return st_error_make(err, EINVAL, "missing 'cmd'");
	struct agent_op call = {.fd = -1};
	int r = sb_get(m, owner, id, true, &call.sb, err);
	if (r < 0)
		return r;
	memset(res, 0, sizeof(*res));
	struct st_buf q;
	st_buf_init(&q, AGENT_FRAME_MAX);
	sandbox__kv_add(&q, "op", "exec");
	sandbox__kv_add(&q, "cmd", rq->cmd);
	for (size_t i = 0; rq->args && rq->args[i]; i++)
		sandbox__kv_add(&q, "arg", rq->args[i]);
	if (rq->cwd)
		sandbox__kv_add(&q, "cwd", rq->cwd);
	pthread_mutex_lock(&m->lock);
	json_t *senv = call.sb->env ? json_incref(call.sb->env) : NULL;
	pthread_mutex_unlock(&m->lock);
	if (senv)
		add_env(&q, senv);
	json_decref(senv);
	if (rq->env)
		add_env(&q, rq->env);
	char num[32];
	/* Background commands (dev servers) run until the sandbox ends unless the request
	 * asked for a timeout; foreground ones always have one. */
	uint64_t tmo = rq->timeout_ms ? rq->timeout_ms : rq->background ? 0 : m->o.exec_timeout_ms;
	snprintf(num, sizeof(num), "%llu", (unsigned long long)tmo);
	sandbox__kv_add(&q, "timeout_ms", num);
	if (rq->stdin_data)
		sandbox__kv_add(&q, "stdin", "1");
	if (rq->background)
		sandbox__kv_add(&q, "background", "1");
	if (q.len >= AGENT_FRAME_MAX) {
		st_buf_release(&q);
		agent_op_end(m, &call);
		return st_error_make(err, E2BIG,
		                     "command, arguments and environment are too large");
	}
	r = agent_op_send(m, &call, &q, false, err);
	if (r < 0)
		goto out;
	const char *pid = sandbox__kv_get(call.buf, call.n, "pid");
	int64_t pidv = 0;
	if (pid)
		st_parse_i64(pid, &pidv);
	res->pid = (int)pidv;
	if (rq->background)
		goto out;
	if (rq->stdin_data) {
		const char *p = rq->stdin_data;
		size_t left = rq->stdin_len;
		while (left && r == 0) {
			size_t c = left > 65536 ? 65536 : left;
			r = sandbox__frame_write(call.fd, AGENT_F_STDIN, p, c);
			p += c;
			left -= c;
		}
		if (r == 0)
			r = sandbox__frame_write(call.fd, AGENT_F_STDIN, "", 0);
		if (r < 0) {
			r = st_error_make(err, -r, "cannot send stdin to the command");
			goto out;
		}
	}
	for (;;) {
		char t;
		int fr = sandbox__frame_read(call.fd, &t, call.buf, &call.n);
		if (fr <= 0) {
			r = st_error_make(
			    err, fr < 0 ? -fr : EPIPE,
			    "the sandbox agent closed the connection before the command "
			    "finished");
			break;
		}
		if (t == AGENT_F_OUT || t == AGENT_F_ERRDATA) {
			if (outfn && outfn(ctx, t == AGENT_F_OUT ? 1 : 2, call.buf, call.n) < 0) {
				r = st_error_make(err, ECANCELED, "output consumer stopped");
				break; /* closing the connection kills the command */
			}
		} else if (t == AGENT_F_EXIT) {
			int64_t v;
			const char *s;
			if ((s = sandbox__kv_get(call.buf, call.n, "exit")) &&
			    st_parse_i64(s, &v) == 0)
				res->exit_code = (int)v;
			if ((s = sandbox__kv_get(call.buf, call.n, "signal")) &&
			    st_parse_i64(s, &v) == 0)
				res->signal = (int)v;
			if ((s = sandbox__kv_get(call.buf, call.n, "wall_ms")) &&
			    st_parse_i64(s, &v) == 0)
				res->wall_ms = v;
			s = sandbox__kv_get(call.buf, call.n, "timedout");
			res->timed_out = s && !strcmp(s, "1");
			break;
		}
	}
out:
	agent_op_end(m, &call);
	return r;
}

/* ---- files ---------------------------------------------------------------------------------- */

/* The request of a file operation: op on path. */
static struct st_buf *file_req(struct st_buf *q, const char *op, const char *path)
{
	st_buf_init(q, 8192);
	sandbox__kv_add(q, "op", op);
	sandbox__kv_add(q, "path", path ? path : "");
	return q;
}

int sandbox_file_read(struct sandbox_mgr *m, const char *owner, const char *id, const char *path,
                      sandbox_data_fn fn, void *ctx, uint64_t *size, struct st_error **err)
{
	struct st_buf q;
	struct agent_op call;
	int r = agent_op_start(m, owner, id, file_req(&q, "read", path), false, &call, err);
	if (r < 0)
		return r;
	const char *sz = sandbox__kv_get(call.buf, call.n, "size");
	uint64_t total = 0;
	if (sz)
		st_parse_u64(sz, &total);
	if (size)
		*size = total;
	if (m->o.max_file_bytes && total > m->o.max_file_bytes) {
		agent_op_end(m, &call);
		return st_error_make(err, EFBIG, "'%s' is %llu bytes, above the %llu byte limit",
		                     path, (unsigned long long)total,
		                     (unsigned long long)m->o.max_file_bytes);
	}
	for (;;) {
		char t;
		int fr = sandbox__frame_read(call.fd, &t, call.buf, &call.n);
		if (fr <= 0 || t != AGENT_F_DATA) {
			r = st_error_make(err, EPIPE, "the file transfer was cut short");
			break;
		}
		if (call.n == 0)
			break;
		if (fn(ctx, call.buf, call.n) < 0) {
			r = st_error_make(err, ECANCELED, "the reader stopped");
			break;
		}
	}
	agent_op_end(m, &call);
	return r;
}

struct fd_src {
	int fd;
	const char *data;
	size_t len, off;
};

static int file_write_src(struct sandbox_mgr *m, const char *owner, const char *id,
                          const char *path, struct fd_src *src, uint64_t *written,
                          struct st_error **err)
{
	struct st_buf q;
	struct agent_op call;
	/* The agent only replies after the data: send the request, then the stream. */
	int r = agent_op_start(m, owner, id, file_req(&q, "write", path), true, &call, err);
	uint64_t total = 0;
	while (r == 0) {
		ssize_t k;
		if (src->fd >= 0) {
			k = st_read_all(src->fd, call.buf, 256 * 1024);
			if (k < 0) {
				r = st_error_make(err, (int)-k, "cannot read the upload");
				break;
			}
		} else {
			k = (ssize_t)(src->len - src->off > 256 * 1024 ? 256 * 1024
			                                               : src->len - src->off);
			if (k)
				memcpy(call.buf, src->data + src->off, (size_t)k);
			src->off += (size_t)k;
		}
		total += (uint64_t)k;
		if (m->o.max_file_bytes && total > m->o.max_file_bytes) {
			r = st_error_make(err, EFBIG, "upload above the %llu byte limit",
			                  (unsigned long long)m->o.max_file_bytes);
			break; /* closing without the end frame makes the agent discard it */
		}
		int w = sandbox__frame_write(call.fd, AGENT_F_DATA, call.buf, (size_t)k);
		if (w < 0) {
			/* The agent may have refused early (bad path): read its reason below. */
			break;
		}
		if (k == 0)
			break;
	}
	if (r == 0)
		r = sandbox__agent_reply(call.fd, call.buf, &call.n, "write refused", err);
	if (written)
		*written = total;
	agent_op_end(m, &call);
	return r;
}

int sandbox_file_write_fd(struct sandbox_mgr *m, const char *owner, const char *id,
                          const char *path, int fd, uint64_t *written, struct st_error **err)
{
	struct fd_src s = {.fd = fd};
	return file_write_src(m, owner, id, path, &s, written, err);
}

int sandbox_file_write(struct sandbox_mgr *m, const char *owner, const char *id, const char *path,
                       const void *data, size_t n, struct st_error **err)
{
	struct fd_src s = {.fd = -1, .data = data, .len = n};
	return file_write_src(m, owner, id, path, &s, NULL, err);
}

static int simple_op(struct sandbox_mgr *m, const char *owner, const char *id, const char *op,
                     const char *path, const char *k2, const char *v2, struct st_error **err)
{
	struct st_buf q;
	struct agent_op call;
	sandbox__kv_add(file_req(&q, op, path), k2, v2);
	int r = agent_op_start(m, owner, id, &q, false, &call, err);
	if (r == 0)
		agent_op_end(m, &call);
	return r;
}

int sandbox_file_delete(struct sandbox_mgr *m, const char *owner, const char *id, const char *path,
                        bool recursive, struct st_error **err)
{
	return simple_op(m, owner, id, "delete", path, "recursive", recursive ? "1" : "0", err);
}

int sandbox_file_mkdir(struct sandbox_mgr *m, const char *owner, const char *id, const char *path,
                       struct st_error **err)
{
	return simple_op(m, owner, id, "mkdir", path, "parents", "1", err);
}

int sandbox_file_list(struct sandbox_mgr *m, const char *owner, const char *id, const char *path,
                      json_t **out, struct st_error **err)
{
	struct st_buf q;
	struct agent_op call;
	int r = agent_op_start(m, owner, id, file_req(&q, "list", path), false, &call, err);
	if (r < 0)
		return r;
	json_t *a = json_array();
	for (;;) {
		char t;
		int fr = sandbox__frame_read(call.fd, &t, call.buf, &call.n);
		if (fr <= 0) {
			r = st_error_make(err, EPIPE, "the listing was cut short");
			break;
		}
		if (t != AGENT_F_ENT)
			break;
		/* name\0type\0size\0mode\0mtime\0 */
		const char *f[5];
		uint32_t off = 0;
		size_t i;
		for (i = 0; i < 5 && off < call.n; i++) {
			f[i] = call.buf + off;
			off += (uint32_t)strnlen(call.buf + off, call.n - off) + 1;
		}
		if (i < 5)
			continue;
		uint64_t size = 0;
		int64_t mtime = 0;
		st_parse_u64(f[2], &size);
		st_parse_i64(f[4], &mtime);
		json_array_append_new(a, json_pack("{s:s,s:s,s:I,s:s,s:I}", "name", f[0], "type",
		                                   f[1], "size", (json_int_t)size, "mode", f[3],
		                                   "mtime", (json_int_t)mtime));
	}
	agent_op_end(m, &call);
	if (r < 0) {
		json_decref(a);
		return r;
	}
	*out = a;
	return 0;
}

/* ---- snapshots ------------------------------------------------------------------------------ */

int sandbox_snapshot(struct sandbox_mgr *m, const char *owner, const char *id, json_t **out,
                     struct st_error **err)
{
	struct sandbox *sb;
	int r = sb_get(m, owner, id, false, &sb, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	bool was_paused = sb->state == SB_PAUSED;
	pthread_mutex_unlock(&m->lock);
	/* Pause while archiving: the content is consistent and nothing inside can swap paths
	 * under the archiver (which never follows symlinks anyway). */
	if (!was_paused)
		r = m->rt->pause(m, sb->id, true, err);
	cleanup_free char *snap = NULL;
	uint64_t bytes = 0;
	char sha[65] = "";
	if (r == 0) {
		cleanup_free char *ws = sandbox__workspace_path(sb);
		r = sandbox__snapshot_save(m, owner, sb->id, ws, &snap, &bytes, sha, err);
		struct st_error *e2 = NULL;
		if (!was_paused && m->rt->pause(m, sb->id, false, &e2) < 0)
			st_log(ST_LOG_WARN, "sandbox '%s': cannot resume after snapshot: %s",
			       sb->id, st_error_msg(e2));
		st_error_free(e2);
	}
	sb_put(m, sb);
	if (r < 0)
		return r;
	*out = json_pack("{s:s,s:s,s:I,s:s,s:I}", "id", snap, "sandboxId", id, "sizeBytes",
	                 (json_int_t)bytes, "sha256", sha, "createdAt", (json_int_t)st_wall_s());
	return 0;
}

/* ---- ports ---------------------------------------------------------------------------------- */

int sandbox_port_open(struct sandbox_mgr *m, const char *id, unsigned port, int *fdp,
                      struct st_error **err)
{
	if (port == 0 || port > 65535)
		return st_error_make(err, EINVAL, "invalid port %u", port);
	struct st_buf q;
	st_buf_init(&q, 256);
	sandbox__kv_add(&q, "op", "connect");
	char num[16];
	snprintf(num, sizeof(num), "%u", port);
	sandbox__kv_add(&q, "port", num);
	struct agent_op call;
	int r = agent_op_start(m, NULL, id, &q, false, &call, err);
	if (r < 0)
		return r;
	/* The reference (and the activity count) stays until sandbox_port_close. */
	pthread_mutex_lock(&m->lock);
	sb_unref_locked(call.sb);
	pthread_mutex_unlock(&m->lock);
	free(call.buf);
	*fdp = call.fd;
	return 0;
}

void sandbox_port_close(struct sandbox_mgr *m, const char *id, int fd)
{
	if (fd >= 0)
		close(fd);
	pthread_mutex_lock(&m->lock);
	for (struct sandbox *s = m->list; s; s = s->next)
		if (!strcmp(s->id, id)) {
			if (s->active_ops > 0)
				s->active_ops--;
			s->last_active_ms = st_now_ms();
			break;
		}
	pthread_mutex_unlock(&m->lock);
}
