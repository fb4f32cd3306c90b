/*
 * git-repo.c - repositories: rows in the state store, archives in the blob store, working
 * copies in the cache directory, and the locks that keep the three in step (see git.h).
 *
 * Locks: inside a process, one of 64 readers-writer locks chosen by the name's hash (git
 * serving a fetch or a push shares it; rebuilding a working copy from storage takes it alone); across
 * processes, a push lease in the repository's row (owner and expiry, taken with a conditional
 * UPDATE), so two replicas never push to one repository at once.
 */
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blob/blob.h"
#include "git/git.h"
#include "store/store.h"
#include "tarball/tarball.h"

#define STRIPES 64
#define LEASE_MS (30 * 60 * 1000) /* a push that outlives this loses its lease */
#define DEFAULT_BACKEND "/usr/lib/git-core/git-http-backend"

/* A readers-writer lock that any thread may release (a fetch takes it in the request's thread
   and its streaming thread lets it go), with waiting writers served before new readers. */
struct stripe {
	pthread_mutex_t m;
	pthread_cond_t cv;
	unsigned readers, writers_waiting;
	bool writer;
};

static void stripe_rdlock(struct stripe *l)
{
	pthread_mutex_lock(&l->m);
	while (l->writer || l->writers_waiting)
		pthread_cond_wait(&l->cv, &l->m);
	l->readers++;
	pthread_mutex_unlock(&l->m);
}

static void stripe_wrlock(struct stripe *l)
{
	pthread_mutex_lock(&l->m);
	l->writers_waiting++;
	while (l->writer || l->readers)
		pthread_cond_wait(&l->cv, &l->m);
	l->writers_waiting--;
	l->writer = true;
	pthread_mutex_unlock(&l->m);
}

static void stripe_unlock(struct stripe *l)
{
	pthread_mutex_lock(&l->m);
	if (l->writer)
		l->writer = false;
	else if (l->readers)
		l->readers--;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->m);
}

struct git_server {
	struct git_options o;
	char *cache_dir;
	char *owner_base; /* "<host>:<pid>:<random>" */
	atomic_ulong lease_seq;
	struct stripe stripes[STRIPES];
};

struct git_serve {
	struct git_server *g;
	char *name;
	bool push;
	bool committed;
	int64_t generation;
	char *lease; /* push: our lease owner string */
	char *refs_before; /* push: the refs as they were */
	size_t refs_before_len;
	struct stripe *lock;
};

static const struct store_migration git_migrations[] = {
    {.version = 1,
     .name = "create-git-repos",
     .sql = "CREATE TABLE IF NOT EXISTS {ns}git_repos ("
            " name TEXT PRIMARY KEY,"
            " description TEXT,"
            " generation BIGINT NOT NULL,"
            " size_bytes BIGINT NOT NULL,"
            " created_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL,"
            " created_by TEXT,"
            " lease_owner TEXT,"
            " lease_until BIGINT)"},
};

/* What a stored archive may contain, at the top of the bare repository. */
static const char *const kept_top[] = {"HEAD", "packed-refs", "shallow", "refs", "objects", NULL};

bool git_repo_name_valid(const char *n)
{
	size_t len = n ? strlen(n) : 0;
	if (len == 0 || len > 100 || !isalnum((unsigned char)n[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(isalnum((unsigned char)n[i]) || n[i] == '_' || n[i] == '-' || n[i] == '.'))
			return false;
	return strstr(n, "..") == NULL && !st_str_has_suffix(n, ".git") &&
	       !st_str_has_suffix(n, ".lock");
}

const struct git_options *git_server_options(const struct git_server *g)
{
	return &g->o;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *repo_path(const struct git_server *g, const char *name, const char *suffix)
{
	return st_xasprintf("%s/%s%s", g->cache_dir, name, suffix);
}

static char *blob_key(const char *name, int64_t gen)
{
	return st_xasprintf("%s/%lld.tar.zst", name, (long long)gen);
}

static struct stripe *stripe(struct git_server *g, const char *name)
{
	uint32_t h = 2166136261u;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return &g->stripes[h % STRIPES];
}

/* ---- processes and files ----------------------------------------------------------------- */

/* Run git with argv (argv[0] "git"), no input, stderr captured for the error message. */
static int run_git(const char *const argv[], struct st_error **err)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return st_error_make(err, errno, "pipe");
	static const char *const env[] = {"PATH=/usr/bin:/bin",
	                                  "GIT_CONFIG_NOSYSTEM=1",
	                                  "GIT_CONFIG_GLOBAL=/dev/null",
	                                  "HOME=/nonexistent",
	                                  "LANG=C",
	                                  NULL};
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(pfd[0]);
		close(pfd[1]);
		return st_error_make(err, e, "fork");
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(pfd[1], 2) < 0)
			_exit(127);
		execve("/usr/bin/git", (char *const *)(uintptr_t)argv,
		       (char *const *)(uintptr_t)env);
		_exit(127);
	}
	close(pfd[1]);
	char buf[2048];
	size_t n = 0;
	for (;;) {
		ssize_t k = read(pfd[0], buf + n, sizeof(buf) - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
		if (n == sizeof(buf) - 1)
			n = 0; /* keep the tail */
	}
	buf[n] = '\0';
	close(pfd[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		buf[--n] = '\0';
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		return st_error_make(err, ENOENT, "cannot run /usr/bin/git (install Debian's git)");
	return st_error_make(err, 0, "git %s failed: %s", argv[1], n ? buf : "no message");
}

static int rm_entry(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(p) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(p) < 0 && errno != ENOENT ? -1 : 0;
}

static int rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

static int64_t read_gen(const struct git_server *g, const char *name)
{
	cleanup_free char *p = repo_path(g, name, ".gen");
	char buf[32] = "";
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	int64_t v = -1;
	if (n <= 0)
		return -1;
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	buf[n] = '\0';
	return st_parse_i64(buf, &v) == 0 ? v : -1;
}

static void forget_gen(const struct git_server *g, const char *name)
{
	cleanup_free char *p = repo_path(g, name, ".gen");
	if (unlink(p) < 0 && errno != ENOENT)
		st_log(ST_LOG_WARN, "git: cannot remove '%s': %s", p, strerror(errno));
}

static int write_gen(const struct git_server *g, const char *name, int64_t gen,
                     struct st_error **err)
{
	cleanup_free char *p = repo_path(g, name, ".gen");
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%lld\n", (long long)gen);
	return st_write_file_atomic(p, buf, (size_t)n, 0644, err);
}

/* A new bare repository at dir, configured by us (never from storage). */
static int init_bare(const char *dir, struct st_error **err)
{
	const char *const argv[] = {"git", "init", "--bare", "--quiet", "--initial-branch=main",
	                            dir,   NULL};
	int r = run_git(argv, err);
	if (r < 0)
		return r;
	static const char extra[] = "[receive]\n"
	                            "\tfsckObjects = true\n"
	                            "[core]\n"
	                            "\thooksPath = /dev/null\n"
	                            "[http]\n"
	                            "\treceivepack = true\n"
	                            "[uploadpack]\n"
	                            "\tallowFilter = true\n"
	                            "[gc]\n"
	                            "\tauto = 0\n";
	cleanup_free char *cfg = st_xasprintf("%s/config", dir);
	int fd = open(cfg, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return st_error_make(err, errno, "cannot open '%s'", cfg);
	ssize_t w = st_write_all(fd, extra, sizeof(extra) - 1);
	int e = errno;
	close(fd);
	if (w < 0)
		return st_error_make(err, e, "cannot write '%s'", cfg);
	return 0;
}

/* ---- archives ---------------------------------------------------------------------------- */

static bool kept(const char *rel)
{
	size_t n = strcspn(rel, "/");
	for (const char *const *k = kept_top; *k; k++)
		if (strlen(*k) == n && strncmp(rel, *k, n) == 0)
			return true;
	return false;
}

/* What a stored archive takes: directories and regular files under the kept names, but no lock
   files and no half-received packs. */
static bool archive_keeps(const char *rel, mode_t type)
{
	return kept(rel) && (type == AE_IFREG || type == AE_IFDIR) &&
	       !st_str_has_suffix(rel, ".lock") && !strstr(rel, "/incoming-");
}

/* Only directories and regular files under the kept names, nothing absolute, no "..". */
static int extract_check(struct archive_entry *e, const char *p, struct st_error **err)
{
	mode_t type = archive_entry_filetype(e);
	if (!*p || *p == '/' || strstr(p, "..") || !kept(p) ||
	    (type != AE_IFREG && type != AE_IFDIR) || archive_entry_hardlink(e))
		return st_error_make(err, 0,
		                     "the stored archive holds '%s', which a repository archive "
		                     "written by Stockade never does; refusing it",
		                     p);
	archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0444);
	return 1;
}

/* Unpack a stored archive into the bare repository at dir. */
static int extract_repo(int in_fd, const char *dir, struct st_error **err)
{
	const struct tarball_unpack_opts o = {
	    .flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
	             ARCHIVE_EXTRACT_PERM,
	    .check = extract_check,
	    .unreadable = "cannot read the stored archive",
	    .damaged = "the stored archive is damaged",
	    .verb = "unpack",
	};
	return tarball_unpack(in_fd, dir, &o, err);
}

/* An unnamed temporary file in the cache directory (same file system as the copies). */
static int cache_tmpfile(const struct git_server *g, struct st_error **err)
{
	int fd = open(g->cache_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return st_error_make(err, errno, "cannot make a temporary file in '%s'",
		                     g->cache_dir);
	return fd;
}

/* Bring the working copy of name to generation gen (caller holds the stripe exclusively). */
static int sync_copy(struct git_server *g, const char *name, int64_t gen, struct st_error **err)
{
	cleanup_free char *path = repo_path(g, name, ".git");
	struct stat st;
	if (read_gen(g, name) == gen && stat(path, &st) == 0)
		return 0;
	cleanup_free char *tmp = st_xasprintf("%s/.%s.XXXXXX", g->cache_dir, name);
	if (!mkdtemp(tmp))
		return st_error_make(err, errno, "cannot make a directory in '%s'", g->cache_dir);
	int r = init_bare(tmp, err);
	if (r == 0 && gen > 0) {
		cleanup_close int fd = cache_tmpfile(g, err);
		if (fd < 0) {
			r = fd;
		} else {
			cleanup_free char *key = blob_key(name, gen);
			r = blob_get_to_fd(g->o.blob, key, fd, NULL, err);
			if (r < 0)
				st_error_wrap(err, "cannot fetch repository '%s' (generation %lld)",
				              name, (long long)gen);
			else if (lseek(fd, 0, SEEK_SET) < 0)
				r = st_error_make(err, errno, "lseek");
			else
				r = extract_repo(fd, tmp, err);
		}
	}
	if (r == 0) {
		forget_gen(g, name);
		if (rm_rf(path) < 0)
			r = st_error_make(err, errno, "cannot remove the old copy '%s'", path);
		else if (rename(tmp, path) < 0)
			r = st_error_make(err, errno, "cannot move '%s' to '%s'", tmp, path);
		else
			r = write_gen(g, name, gen, err);
	}
	if (r < 0)
		(void)rm_rf(tmp);
	return r;
}

/* The refs of a bare repository as one comparable string (HEAD, packed-refs, refs/...). */
static void refs_walk(struct st_buf *b, const char *dir, const char *rel)
{
	cleanup_free char *full = rel ? st_xasprintf("%s/%s", dir, rel) : st_xstrdup(dir);
	struct dirent **list = NULL;
	int n = scandir(full, &list, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		const char *nm = list[i]->d_name;
		bool top = rel == NULL;
		if (strcmp(nm, ".") != 0 && strcmp(nm, "..") != 0 &&
		    (!top || strcmp(nm, "HEAD") == 0 || strcmp(nm, "packed-refs") == 0 ||
		     strcmp(nm, "refs") == 0)) {
			cleanup_free char *r2 =
			    rel ? st_xasprintf("%s/%s", rel, nm) : st_xstrdup(nm);
			cleanup_free char *p2 = st_xasprintf("%s/%s", dir, r2);
			struct stat st;
			if (lstat(p2, &st) == 0 && S_ISDIR(st.st_mode)) {
				refs_walk(b, dir, r2);
			} else if (lstat(p2, &st) == 0 && S_ISREG(st.st_mode)) {
				char *data = NULL;
				size_t len = 0;
				st_buf_append(b, r2, strlen(r2) + 1);
				if (st_read_file(p2, 64u << 20, &data, &len, NULL) == 0)
					st_buf_append(b, data, len);
				st_buf_append(b, "", 1);
				free(data);
			}
		}
		free(list[i]);
	}
	free(list);
}

static char *refs_state(const char *dir, size_t *len)
{
	struct st_buf b;
	st_buf_init(&b, 256u << 20);
	refs_walk(&b, dir, NULL);
	*len = b.len;
	return st_buf_steal(&b);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Loose refs under refs/heads of the bare repository at dir, into o (name -> commit). */
static void heads_walk(json_t *o, const char *dir, const char *rel)
{
	cleanup_free char *full = st_xasprintf("%s/%s", dir, rel);
	struct dirent **list = NULL;
	int n = scandir(full, &list, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		const char *nm = list[i]->d_name;
		if (nm[0] != '.') {
			cleanup_free char *r2 = st_xasprintf("%s/%s", rel, nm);
			cleanup_free char *p2 = st_xasprintf("%s/%s", dir, r2);
			struct stat st;
			char *data = NULL;
			size_t len = 0;
			if (lstat(p2, &st) == 0 && S_ISDIR(st.st_mode))
				heads_walk(o, dir, r2);
			else if (S_ISREG(st.st_mode) &&
			         st_read_file(p2, 256, &data, &len, NULL) == 0 && len >= 40)
				json_object_set_new(o, r2 + strlen("refs/heads/"),
				                    json_stringn(data, 40));
			free(data);
		}
		free(list[i]);
	}
	free(list);
}

int git_repo_branches(struct git_server *g, const char *name, json_t **branches,
                      char **default_branch, struct st_error **err)
{
	struct git_serve *s = NULL;
	int r = git_serve_begin(g, name, false, &s, err);
	if (r < 0)
		return r;
	cleanup_free char *dir = repo_path(g, name, ".git");
	json_t *o = json_object();
	/* packed-refs: "<sha> <ref>" lines; loose refs override them */
	cleanup_free char *packed_path = st_xasprintf("%s/packed-refs", dir);
	char *packed = NULL;
	size_t plen = 0;
	if (st_read_file(packed_path, 256u << 20, &packed, &plen, NULL) == 0) {
		char *save = NULL;
		for (char *line = strtok_r(packed, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save))
			if (strlen(line) > 41 && line[40] == ' ' &&
			    st_str_has_prefix(line + 41, "refs/heads/"))
				json_object_set_new(o, line + 41 + strlen("refs/heads/"),
				                    json_stringn(line, 40));
		free(packed);
	}
	heads_walk(o, dir, "refs/heads");
	cleanup_free char *head_path = st_xasprintf("%s/HEAD", dir);
	char *head = NULL;
	size_t hlen = 0;
	*default_branch = NULL;
	if (st_read_file(head_path, 4096, &head, &hlen, NULL) == 0 &&
	    st_str_has_prefix(head, "ref: refs/heads/")) {
		char *b = head + strlen("ref: refs/heads/");
		b[strcspn(b, "\r\n")] = '\0';
		*default_branch = st_xstrdup(b);
	}
	free(head);
	git_serve_end(s);
	size_t nk = json_object_size(o), i = 0;
	const char **names = st_xcalloc(nk ? nk : 1, sizeof(*names));
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) names[i++] = k;
	qsort(names, nk, sizeof(*names), cmp_str);
	json_t *arr = json_array();
	for (i = 0; i < nk; i++)
		json_array_append_new(arr, json_pack("{s:s,s:O}", "name", names[i], "commit",
		                                     json_object_get(o, names[i])));
	free(names);
	json_decref(o);
	*branches = arr;
	return 0;
}

/* ---- the server -------------------------------------------------------------------------- */

/* Release the push lease on repository name if owner still holds it. */
static int clear_lease(struct git_server *g, const char *name, const char *owner,
                       struct st_error **err)
{
	struct store_value p[] = {store_text(name), store_text(owner)};
	return store_exec(g->o.store,
	                  "UPDATE {ns}git_repos SET lease_owner = NULL, lease_until = NULL "
	                  "WHERE name = ? AND lease_owner = ?",
	                  p, 2, NULL, err);
}

/*
 * Push leases that an earlier run on this host left behind (it crashed mid-push): a lease
 * names "<host>:<pid>:<nonce>:<n>"; one of this host whose process is gone, or whose pid is
 * ours (a restarted container gets the same pid), is released now instead of blocking pushes
 * to that repository until it expires.
 */
static void release_dead_leases(struct git_server *g, const char *host)
{
	json_t *rows = NULL;
	struct st_error *err = NULL;
	if (store_query_json(g->o.store,
	                     "SELECT name, lease_owner FROM {ns}git_repos "
	                     "WHERE lease_owner IS NOT NULL",
	                     NULL, 0, &rows, &err) < 0) {
		st_log(ST_LOG_WARN, "git: cannot look for stale push leases: %s",
		       st_error_msg(err));
		st_error_free(err);
		return;
	}
	size_t i;
	json_t *row;
	size_t hl = strlen(host);
	json_array_foreach(rows, i, row)
	{
		const char *name = json_string_value(json_object_get(row, "name"));
		const char *owner = json_string_value(json_object_get(row, "lease_owner"));
		if (!name || !owner || strncmp(owner, host, hl) != 0 || owner[hl] != ':')
			continue;
		long pid = strtol(owner + hl + 1, NULL, 10);
		if (pid <= 0 || (pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH)))
			continue;
		if (clear_lease(g, name, owner, NULL) == 0)
			st_log(
			    ST_LOG_INFO,
			    "git: released the push lease on '%s' that an earlier run on this host "
			    "left",
			    name);
	}
	json_decref(rows);
}

int git_server_open(const struct git_options *opts, struct git_server **out, struct st_error **err)
{
	if (!opts->store || !opts->blob || !opts->cache_dir)
		return st_error_make(err, EINVAL,
		                     "the git server needs a state store, a blob store and a cache "
		                     "directory");
	const char *backend = opts->http_backend ? opts->http_backend : DEFAULT_BACKEND;
	if (access(backend, X_OK) < 0)
		return st_error_make(err, errno,
		                     "cannot run '%s', which serves git's protocol: install "
		                     "Debian's git package (scripts/deps.sh does)",
		                     backend);
	if (access("/usr/bin/git", X_OK) < 0)
		return st_error_make(err, errno, "cannot run /usr/bin/git: install Debian's git");
	int r = st_mkdir_p(opts->cache_dir, 0700, err);
	if (r < 0)
		return st_error_wrap(err, "git server cache");
	r = store_migrate(opts->store, "git_server", git_migrations, ST_ARRAY_SIZE(git_migrations),
	                  NULL, err);
	if (r < 0)
		return st_error_wrap(err, "cannot migrate the git repositories table");
	struct git_server *g = st_xcalloc(1, sizeof(*g));
	g->o = *opts;
	g->o.http_backend = backend;
	if (!g->o.max_push_bytes)
		g->o.max_push_bytes = 512u << 20;
	if (!g->o.lease_wait_ms)
		g->o.lease_wait_ms = 20000;
	g->cache_dir = st_xstrdup(opts->cache_dir);
	g->o.cache_dir = g->cache_dir;
	char host[256] = "host";
	(void)gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	/* unique per server instance, also across restarts that reuse a pid */
	uint64_t nonce = 0;
	if (getrandom(&nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
		nonce = (uint64_t)st_now_us();
	g->owner_base =
	    st_xasprintf("%s:%d:%016llx", host, (int)getpid(), (unsigned long long)nonce);
	for (size_t i = 0; i < STRIPES; i++) {
		pthread_mutex_init(&g->stripes[i].m, NULL);
		pthread_cond_init(&g->stripes[i].cv, NULL);
	}
	release_dead_leases(g, host);
	/* Working copies left by an earlier run are refreshed on use; half-made ones go now. */
	DIR *d = opendir(g->cache_dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] == '.' && strcmp(de->d_name, ".") != 0 &&
			    strcmp(de->d_name, "..") != 0) {
				cleanup_free char *p =
				    st_xasprintf("%s/%s", g->cache_dir, de->d_name);
				(void)rm_rf(p);
			}
		closedir(d);
	}
	*out = g;
	return 0;
}

void git_server_close(struct git_server *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < STRIPES; i++) {
		pthread_mutex_destroy(&g->stripes[i].m);
		pthread_cond_destroy(&g->stripes[i].cv);
	}
	free(g->cache_dir);
	free(g->owner_base);
	free(g);
}

/* A store error becomes the caller's (or is dropped when the caller has one already). */
static int pass_error(struct st_error **err, struct st_error *le, int r)
{
	if (le && err && !*err)
		*err = le;
	else
		st_error_free(le);
	return r;
}

static int not_found(struct st_error **err, struct st_error *le, const char *name)
{
	st_error_free(le);
	return st_error_make(err, -ENOENT, "no repository named '%s'", name);
}

static const char *const repo_cols =
    "name, description, generation, size_bytes AS \"sizeBytes\", created_at AS \"createdAt\", "
    "updated_at AS \"updatedAt\", created_by AS \"createdBy\"";

int git_repo_get(struct git_server *g, const char *name, json_t **out, struct st_error **err)
{
	cleanup_free char *sql =
	    st_xasprintf("SELECT %s FROM {ns}git_repos WHERE name = ?", repo_cols);
	struct store_value p[] = {store_text(name)};
	struct st_error *le = NULL;
	int r = store_query_one(g->o.store, sql, p, 1, out, &le);
	return r == -ENOENT ? not_found(err, le, name) : pass_error(err, le, r);
}

int git_repo_list(struct git_server *g, json_t **out, struct st_error **err)
{
	cleanup_free char *sql =
	    st_xasprintf("SELECT %s FROM {ns}git_repos ORDER BY name", repo_cols);
	return store_query_json(g->o.store, sql, NULL, 0, out, err);
}

int git_repo_create(struct git_server *g, const char *name, const char *description,
                    const char *created_by, json_t **out, struct st_error **err)
{
	if (!git_repo_name_valid(name))
		return st_error_make(err, EINVAL, "invalid repository name '%s'", name);
	int64_t now = wall_ms();
	struct store_value ins[] = {
	    store_text(name), description ? store_text(description) : store_null(), store_int(now),
	    store_int(now), created_by ? store_text(created_by) : store_null()};
	int64_t changes = 0;
	int r = store_exec(g->o.store,
	                   "INSERT INTO {ns}git_repos (name, description, generation, size_bytes, "
	                   "created_at, updated_at, created_by) VALUES (?, ?, 0, 0, ?, ?, ?) "
	                   "ON CONFLICT (name) DO NOTHING",
	                   ins, ST_ARRAY_SIZE(ins), &changes, err);
	if (r < 0)
		return st_error_wrap(err, "cannot create repository '%s'", name);
	if (changes == 0)
		return st_error_make(err, EEXIST, "a repository named '%s' already exists", name);
	/* A copy left from a deleted repository of the same name must not be served. */
	struct stripe *l = stripe(g, name);
	stripe_wrlock(l);
	forget_gen(g, name);
	stripe_unlock(l);
	return git_repo_get(g, name, out, err);
}

struct del_ctx {
	struct git_server *g;
	int failed;
};

static int del_one(const struct blob_entry *e, void *ud)
{
	struct del_ctx *c = ud;
	struct st_error *err = NULL;
	if (blob_delete(c->g->o.blob, e->key, &err) < 0 && st_error_msg(err)) {
		st_log(ST_LOG_WARN, "git: cannot delete '%s': %s", e->key, st_error_msg(err));
		c->failed++;
	}
	st_error_free(err);
	return 0;
}

int git_repo_delete(struct git_server *g, const char *name, struct st_error **err)
{
	struct store_value p[] = {store_text(name)};
	int64_t changes = 0;
	int r =
	    store_exec(g->o.store, "DELETE FROM {ns}git_repos WHERE name = ?", p, 1, &changes, err);
	if (r < 0)
		return st_error_wrap(err, "cannot delete repository '%s'", name);
	if (changes == 0)
		return st_error_make(err, ENOENT, "no repository named '%s'", name);
	struct stripe *l = stripe(g, name);
	stripe_wrlock(l);
	forget_gen(g, name);
	cleanup_free char *path = repo_path(g, name, ".git");
	(void)rm_rf(path);
	stripe_unlock(l);
	cleanup_free char *prefix = st_xasprintf("%s/", name);
	struct del_ctx c = {.g = g};
	struct st_error *lerr = NULL;
	if (blob_list(g->o.blob, prefix, del_one, &c, &lerr) < 0 || c.failed)
		st_log(ST_LOG_WARN,
		       "git: repository '%s' is deleted but some of its stored archives were not "
		       "(%s); they are unreferenced and can be removed by hand",
		       name, lerr ? st_error_msg(lerr) : "see above");
	st_error_free(lerr);
	return 0;
}

/* ---- serving ----------------------------------------------------------------------------- */

static int row_generation(struct git_server *g, const char *name, int64_t *gen,
                          struct st_error **err)
{
	struct store_value p[] = {store_text(name)};
	struct st_error *le = NULL;
	int r = store_query_int(g->o.store, "SELECT generation FROM {ns}git_repos WHERE name = ?",
	                        p, 1, gen, &le);
	return r == -ENOENT ? not_found(err, le, name) : pass_error(err, le, r);
}

static int take_lease(struct git_server *g, struct git_serve *s, struct st_error **err)
{
	cleanup_free char *lease =
	    st_xasprintf("%s:%lu", g->owner_base, (unsigned long)++g->lease_seq);
	int64_t give_up = st_now_ms() + g->o.lease_wait_ms;
	for (;;) {
		int64_t now = wall_ms();
		struct store_value p[] = {store_text(lease), store_int(now + LEASE_MS),
		                          store_text(s->name), store_int(now)};
		int64_t changes = 0;
		int r = store_exec(g->o.store,
		                   "UPDATE {ns}git_repos SET lease_owner = ?, lease_until = ? "
		                   "WHERE name = ? AND (lease_owner IS NULL OR lease_until < ?)",
		                   p, ST_ARRAY_SIZE(p), &changes, err);
		if (r < 0)
			return r;
		if (changes == 1) {
			s->lease = steal_pointer(&lease);
			return 0;
		}
		int64_t gen;
		r = row_generation(g, s->name, &gen, err);
		if (r < 0)
			return r;
		if (st_now_ms() >= give_up)
			return st_error_make(err, EBUSY,
			                     "another push to '%s' is still running; try again",
			                     s->name);
		usleep(100 * 1000);
	}
}

static void drop_lease(struct git_serve *s)
{
	if (!s->lease)
		return;
	struct st_error *err = NULL;
	if (clear_lease(s->g, s->name, s->lease, &err) < 0)
		st_log(ST_LOG_WARN, "git: cannot release the push lease on '%s': %s (it expires)",
		       s->name, st_error_msg(err));
	st_error_free(err);
	free(s->lease);
	s->lease = NULL;
}

int git_serve_begin(struct git_server *g, const char *name, bool push, struct git_serve **out,
                    struct st_error **err)
{
	struct git_serve *s = st_xcalloc(1, sizeof(*s));
	s->g = g;
	s->name = st_xstrdup(name);
	s->push = push;
	s->lock = stripe(g, name);
	int r = 0;
	/* A push first takes the repository's lease: one push at a time, across replicas. */
	if (push && (r = take_lease(g, s, err)) < 0)
		goto fail;
	/* Serving shares the lock (git itself copes with a fetch beside a push); only rebuilding
	   the working copy from storage takes it alone. */
	for (int tries = 0;; tries++) {
		r = row_generation(g, name, &s->generation, err);
		if (r < 0)
			goto fail;
		stripe_rdlock(s->lock);
		if (read_gen(g, name) == s->generation) {
			if (push) {
				cleanup_free char *path = repo_path(g, name, ".git");
				s->refs_before = refs_state(path, &s->refs_before_len);
			}
			*out = s;
			return 0;
		}
		stripe_unlock(s->lock);
		if (tries == 3) {
			r = st_error_make(err, EAGAIN, "repository '%s' keeps changing; try again",
			                  name);
			goto fail;
		}
		stripe_wrlock(s->lock);
		r = sync_copy(g, name, s->generation, err);
		stripe_unlock(s->lock);
		if (r < 0)
			goto fail;
	}
fail:
	drop_lease(s);
	free(s->name);
	free(s);
	return r;
}

int64_t git_serve_generation(const struct git_serve *s)
{
	return s->generation;
}

const char *git_serve_root(const struct git_serve *s)
{
	return s->g->cache_dir;
}

int git_serve_commit(struct git_serve *s, struct st_error **err)
{
	struct git_server *g = s->g;
	if (!s->push)
		return 0;
	cleanup_free char *path = repo_path(g, s->name, ".git");
	size_t after_len = 0;
	cleanup_free char *after = refs_state(path, &after_len);
	if (after_len == s->refs_before_len && memcmp(after, s->refs_before, after_len) == 0) {
		s->committed = true; /* nothing changed: nothing to store */
		return 0;
	}
	cleanup_close int fd = cache_tmpfile(g, err);
	if (fd < 0)
		return fd;
	uint64_t size = 0;
	const struct tarball_pack_opts ao = {.keep = archive_keeps};
	int r = tarball_pack(path, fd, &ao, &size, err);
	if (r < 0)
		return st_error_wrap(err, "cannot archive repository '%s'", s->name);
	if (lseek(fd, 0, SEEK_SET) < 0)
		return st_error_make(err, errno, "lseek");
	int64_t next = s->generation + 1;
	cleanup_free char *key = blob_key(s->name, next);
	r = blob_put_fd(g->o.blob, key, fd, NULL, 0, err);
	if (r < 0)
		return st_error_wrap(err, "cannot store repository '%s'", s->name);
	struct store_value p[] = {store_int(next),          store_int((int64_t)size),
	                          store_int(wall_ms()),     store_text(s->name),
	                          store_int(s->generation), store_text(s->lease)};
	int64_t changes = 0;
	r = store_exec(g->o.store,
	               "UPDATE {ns}git_repos SET generation = ?, size_bytes = ?, updated_at = ?, "
	               "lease_owner = NULL, lease_until = NULL "
	               "WHERE name = ? AND generation = ? AND lease_owner = ?",
	               p, ST_ARRAY_SIZE(p), &changes, err);
	if (r == 0 && changes != 1)
		r = st_error_make(err, 0,
		                  "repository '%s' was deleted or its push lease expired while the "
		                  "push ran",
		                  s->name);
	if (r < 0) {
		struct st_error *e2 = NULL;
		(void)blob_delete(g->o.blob, key, &e2);
		st_error_free(e2);
		return st_error_wrap(err, "cannot record the push to '%s'", s->name);
	}
	free(s->lease); /* released by the UPDATE */
	s->lease = NULL;
	s->committed = true;
	if (write_gen(g, s->name, next, err) < 0) {
		st_log(ST_LOG_WARN, "git: %s (the copy is refreshed on next use)",
		       st_error_msg(*err));
		forget_gen(g, s->name);
	}
	if (s->generation > 0) {
		cleanup_free char *old = blob_key(s->name, s->generation);
		struct st_error *e2 = NULL;
		if (blob_delete(g->o.blob, old, &e2) < 0)
			st_log(ST_LOG_WARN, "git: cannot delete the replaced archive '%s': %s", old,
			       st_error_msg(e2));
		st_error_free(e2);
	}
	s->generation = next;
	return 0;
}

void git_serve_end(struct git_serve *s)
{
	if (!s)
		return;
	if (s->push && !s->committed)
		forget_gen(s->g, s->name);
	stripe_unlock(s->lock);
	drop_lease(s);
	free(s->refs_before);
	free(s->name);
	free(s);
}
