/*
 * test-store.c - state store cases on SQLite (see store-cases.h).
 */
#define STORE_CASE_PG 0
#include "store-cases.h"

/* Another process opens and closes the database while we hold it (`stockade migrate status`,
 * the sqlite3 shell). It must not think it is the last user and remove the WAL: our writes
 * after that would go to an unlinked file that no one else ever sees. The other process is the
 * sqlite3 shell, exec'd: a forked child would share this process's SQLite lock bookkeeping. */
static int64_t count_in_other_process(const char *path)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'SELECT count(*) FROM walcheck' 2>&1", path);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	char line[256] = "";
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	pclose(f);
	int64_t n = -1;
	line[strcspn(line, "\n")] = '\0';
	if (st_parse_i64(line, &n) < 0)
		fprintf(stderr, "sqlite3: %s\n", line);
	return n;
}

TEST(sqlite_other_process_never_drops_our_wal)
{
	if (system("command -v sqlite3 >/dev/null 2>&1") != 0)
		UNIT_SKIP("the sqlite3 shell is not installed");
	struct store_options o = test_options("walk", 0);
	struct store *s = NULL, *s2 = NULL;
	struct st_error *err = NULL;
	CHECK(store_open(&o, &s, &err) == 0);
	CHECK(store_exec(s, "CREATE TABLE walcheck (x BIGINT)", NULL, 0, NULL, &err) == 0);
	CHECK(store_exec(s, "INSERT INTO walcheck VALUES (1)", NULL, 0, NULL, &err) == 0);
	/* A second handle on the same file in this process, as `stockade serve` has (one per
	 * namespace): connecting must not release the first handle's locks. */
	struct store_options o2 = o;
	o2.ns = "second";
	CHECK(store_open(&o2, &s2, &err) == 0);
	CHECK_EQ_INT(count_in_other_process(o.sqlite_path), 1);
	CHECK(store_exec(s, "INSERT INTO walcheck VALUES (2)", NULL, 0, NULL, &err) == 0);
	CHECK_EQ_INT(count_in_other_process(o.sqlite_path), 2);
	store_free(s2);
	store_free(s);
}
