/*
 * fuzz-agent.c - libFuzzer target: any bytes as a client connection to stockade-agent, the
 * in-sandbox server (src/agent/agent.c). The agent is a self-contained program with static
 * functions, so this file includes it whole (its main renamed) and feeds the bytes to its
 * connection handler over a socketpair. The workspace is a temp directory holding a file, a
 * subdirectory and a symlink to a directory outside it; the oracle is the agent's confinement
 * invariant: whatever the request, nothing outside the workspace is read (its marker never
 * appears in a reply) or changed (the outside directory keeps exactly its one file).
 *
 * Operations that start processes or open TCP connections (exec, connect) are skipped: they
 * are not parsers, and running them per input would be slow and noisy.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int stockade_agent_main(int argc, char **argv);
#define main stockade_agent_main
#include "agent/agent.c"
#undef main

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT (64 * 1024)
#define SECRET "outside-secret-7f3c2a"

static char g_base[64];
static char g_ws[128], g_out[128];
static unsigned g_runs;

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	remove(p);
	return 0;
}

static void cleanup(void)
{
	if (g_base[0])
		nftw(g_base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
}

static void make_workspace(void)
{
	char p[256];
	if (g_root_fd >= 0)
		close(g_root_fd);
	nftw(g_ws, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(g_ws, 0755) < 0)
		abort();
	snprintf(p, sizeof(p), "%s/file.txt", g_ws);
	put_file(p, "hello\n");
	snprintf(p, sizeof(p), "%s/dir", g_ws);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/dir/inner.txt", g_ws);
	put_file(p, "inner\n");
	snprintf(p, sizeof(p), "%s/out", g_ws);
	if (symlink(g_out, p) < 0)
		abort();
	snprintf(p, sizeof(p), "%s/secret.lnk", g_ws);
	char target[256];
	snprintf(target, sizeof(target), "%s/secret.txt", g_out);
	if (symlink(target, p) < 0)
		abort();
	g_root_fd = open(g_ws, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g_root_fd < 0)
		abort();
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(g_base, sizeof(g_base), "%s/fuzz-agent-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(g_base))
		abort();
	atexit(cleanup);
	snprintf(g_ws, sizeof(g_ws), "%s/ws", g_base);
	snprintf(g_out, sizeof(g_out), "%s/outside", g_base);
	if (mkdir(g_out, 0755) < 0)
		abort();
	char p[256];
	snprintf(p, sizeof(p), "%s/secret.txt", g_out);
	put_file(p, SECRET "\n");
	g_drop_user = false;
	make_workspace();
}

/* Only the file operations: peek at the first frame's op the way handle() will. */
static bool op_allowed(const uint8_t *data, size_t size)
{
	if (size < AGENT_HDR_LEN || data[0] != AGENT_F_REQ)
		return true; /* refused before any op runs */
	uint32_t n = ((uint32_t)data[1] << 24) | ((uint32_t)data[2] << 16) |
	             ((uint32_t)data[3] << 8) | data[4];
	if (n > size - AGENT_HDR_LEN)
		return true; /* truncated: refused */
	char *copy = malloc(n + 1);
	if (!copy)
		abort();
	memcpy(copy, data + AGENT_HDR_LEN, n);
	copy[n] = '\0';
	struct req q = {.data = copy, .len = n};
	const char *op = req_get(&q, "op");
	bool ok = !op || (strcmp(op, "exec") != 0 && strcmp(op, "connect") != 0);
	free(copy);
	return ok;
}

/* Does the workspace itself hold the marker, in a name or in a file? libFuzzer learns the
   marker from the memmem below and an input can write it into the workspace, for a later
   input's reply (a listing, a read) to show legitimately. */
static bool g_ws_holds;
static int holds_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)f;
	if (strstr(p + strlen(g_ws), SECRET))
		g_ws_holds = true;
	if (flag == FTW_F && S_ISREG(st->st_mode) && st->st_size <= 8 * FUZZ_MAX_INPUT) {
		static char buf[8 * FUZZ_MAX_INPUT];
		FILE *fp = fopen(p, "re");
		if (fp) {
			size_t n = fread(buf, 1, sizeof(buf), fp);
			fclose(fp);
			if (memmem(buf, n, SECRET, strlen(SECRET)))
				g_ws_holds = true;
		}
	}
	return g_ws_holds ? 1 : 0;
}
static bool workspace_holds_marker(void)
{
	g_ws_holds = false;
	nftw(g_ws, holds_cb, 16, FTW_PHYS);
	return g_ws_holds;
}

static void check_outside(void)
{
	DIR *d = opendir(g_out);
	if (!d)
		abort();
	struct dirent *e;
	unsigned n = 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	if (n != 1)
		abort(); /* something was created in or deleted from outside the workspace */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!g_base[0])
		setup();
	if (size > FUZZ_MAX_INPUT || !op_allowed(data, size))
		return 0;
	if (++g_runs % 256 == 0)
		make_workspace(); /* keep writes and deletes from piling up */
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	int big = 4 * FUZZ_MAX_INPUT;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (size && write_full(sv[1], data, size) < 0)
		abort();
	shutdown(sv[1], SHUT_WR);
	/* A reply bigger than the socket buffer would block: the agent side never waits. */
	set_nonblock(sv[0]);
	static char frame[AGENT_FRAME_MAX + 1]; /* the handler's frame buffer, as the agent gives it */
	handle(sv[0], frame);
	close(sv[0]);
	/* Read every reply byte and look for the outside file's content. */
	static char reply[8 * FUZZ_MAX_INPUT + 1];
	size_t got = 0;
	ssize_t r;
	while (got < sizeof(reply) - 1 &&
	       (r = read(sv[1], reply + got, sizeof(reply) - 1 - got)) > 0)
		got += (size_t)r;
	reply[got] = '\0';
	/* (an input that itself holds the marker may get it echoed in an error message, and an
	   earlier input may have put it in the workspace) */
	if (memmem(reply, got, SECRET, strlen(SECRET)) &&
	    !memmem(data, size, SECRET, strlen(SECRET)) && !workspace_holds_marker())
		abort(); /* a file outside the workspace was read */
	close(sv[1]);
	check_outside();
	return 0;
}
