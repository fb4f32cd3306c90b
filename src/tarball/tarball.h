/*
 * tarball.h - a directory as a pax tar compressed with zstd on an fd, and back (libarchive):
 * the one public header of src/tarball/.
 *
 * Git stores bare repositories this way and the agent sandbox its workspace snapshots; they
 * share the set-up, the walk and the copy loops here and pass their own rules as parameters.
 * Its own folder, not src/common/: common is the base every subsystem and the build-time
 * seccomp generator include, while this needs libarchive and serves two subsystems.
 *
 * Packing reads the tree physically (a symlink is archived as one, a file is opened with
 * O_NOFOLLOW); names are relative to the root, which is not an entry itself. Unpacking puts
 * each accepted name, and a hardlink's target, under dir; an absolute name or target, or one
 * with a ".." component, fails the whole unpack whatever the check callback said (each
 * caller's check refuses them first, in its own words).
 */
#ifndef STOCKADE_TARBALL_H
#define STOCKADE_TARBALL_H

#include "../common/common.h"

struct archive_entry;

struct tarball_pack_opts {
	/* Whether to archive an entry (its path under the root, AE_IFREG, AE_IFDIR...); a
	 * directory left out is not walked. NULL: everything. */
	bool (*keep)(const char *rel, mode_t type);
	bool owners; /* owners as on disk with their names; false: 0:0 without names */
	/* A warning from the walk and a file that cannot be opened are passed over (a live
	 * tree); false: either fails. */
	bool lenient;
	const char *walk_error; /* "<walk_error>: <reason>"; NULL: "cannot read '<dir>'" */
};

/* Archive dir into out_fd; *size (if non-NULL) gets out_fd's offset after it. */
int tarball_pack(const char *dir, int out_fd, const struct tarball_pack_opts *o, uint64_t *size,
                 struct st_error **err);

struct tarball_unpack_opts {
	int flags; /* ARCHIVE_EXTRACT_* for the disk writer */
	/* Sees every entry with its stored name ("" for none) before the name goes under dir;
	 * may adjust it (owner, mode). Returns 1 to write it, 0 to pass over it, or a negative
	 * code with *err set to refuse the archive. */
	int (*check)(struct archive_entry *e, const char *name, struct st_error **err);
	/* A header read with a warning is accepted, a failed data copy or entry finish is not
	 * reported; false: each fails. */
	bool lenient;
	/* "<unreadable>: <reason>" (cannot open), "<damaged>: <reason>" (cannot read an entry),
	 * "cannot <verb> '<name>': <reason>" (cannot write one). */
	const char *unreadable, *damaged, *verb;
};

int tarball_unpack(int in_fd, const char *dir, const struct tarball_unpack_opts *o,
                   struct st_error **err);

#endif
