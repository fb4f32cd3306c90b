/*
 * replay-main.c - a main() for the fuzz targets without libFuzzer: feeds every file named on
 * the command line (directories: each regular file in them, in name order) to
 * LLVMFuzzerTestOneInput once. Built with gcc and the ASan library by tests/e2e/fuzz-replay.sh
 * so the seed corpora and saved crash reproducers run in every normal test run.
 *
 * Exit status: 0 when every input ran (a finding aborts through the sanitizer instead), 2 on
 * usage or I/O errors. Prints "replayed N inputs" at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long g_count;

static int run_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "replay: cannot open '%s': %s\n", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0; /* not a regular file: nothing to replay */
	}
	size_t n = (size_t)st.st_size;
	/* exact size (no slack) so ASan catches a one-byte over-read, as under libFuzzer */
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf) {
		close(fd);
		return -1;
	}
	size_t off = 0;
	while (off < n) {
		ssize_t r = read(fd, buf + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "replay: cannot read '%s'\n", path);
			free(buf);
			close(fd);
			return -1;
		}
		off += (size_t)r;
	}
	close(fd);
	if (getenv("REPLAY_VERBOSE"))
		fprintf(stderr, "replay: %s\n", path);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	g_count++;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "replay: cannot open directory '%s': %s\n", dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof(*names));
			if (!nn)
				abort();
			names = nn;
		}
		names[n] = strdup(e->d_name);
		if (!names[n])
			abort();
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);
	int ret = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(dir) + strlen(names[i]) + 2;
		char *p = malloc(len);
		if (!p)
			abort();
		snprintf(p, len, "%s/%s", dir, names[i]);
		if (run_file(p) < 0)
			ret = -1;
		free(p);
		free(names[i]);
	}
	free(names);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr,
		        "usage: %s FILE-OR-DIR...\n"
		        "Runs each input once through the fuzz target it is linked with.\n",
		        argv[0]);
		return 2;
	}
	int ret = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: '%s': %s\n", argv[i], strerror(errno));
			ret = 2;
			continue;
		}
		if ((S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i])) < 0)
			ret = 2;
	}
	printf("replayed %lu inputs\n", g_count);
	return ret;
}
