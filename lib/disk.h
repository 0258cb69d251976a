/*
 * disk.h - the data dir's disk: the space reserve, and the checks that keep a
 * daemon from acknowledging what is not durable (a data dir deleted, replaced
 * or turned read-only under a running daemon).
 *
 * disk_reserve (config) is one or two terms separated by a comma: a size
 * ("512MiB") and/or a percentage of the filesystem ("5%"); with both, the
 * smaller applies; "0" is no reserve. The default is "1GiB, 5%". Below the
 * reserve a daemon refuses new writes with US_ENOSPC (RESOURCE_EXHAUSTED,
 * "disk full ...") and keeps serving reads; the writes resume by themselves
 * once space returns.
 */
#ifndef US_DISK_H
#define US_DISK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define DISK_RESERVE_DEFAULT "1GiB, 5%"

struct disk_reserve {
	bool has_bytes;
	uint64_t bytes;
	bool has_pct;
	unsigned pct;       /* 0..100 */
};

/* Parses a disk_reserve value into r. 0 or US_EINVAL naming the term. */
int disk_parse_reserve(const char *s, struct disk_reserve *r, struct us_err *err);
/* The reserve, in bytes, of a filesystem of total_bytes. */
uint64_t disk_reserve_bytes(const struct disk_reserve *r, uint64_t total_bytes);

/* The identity of a directory, taken when a daemon opens it, so that one
 * deleted or replaced while it runs is noticed. */
struct disk_dir {
	dev_t dev;
	ino_t ino;
};

/* Fills id for dir. 0 or US_EIO. */
int disk_dir_remember(const char *dir, struct disk_dir *id, struct us_err *err);

/* Before a write that will be acknowledged: dir is still the directory
 * remembered in id (US_EIO "data dir X is gone" or "was replaced"), its
 * filesystem is writable (US_EIO "... is read-only"), and, when r is not
 * NULL, at least the reserve is free (US_ENOSPC "disk full: X has N MiB free,
 * under the reserve of M MiB"). One stat and one statvfs. */
int disk_check(const char *dir, const struct disk_dir *id, const struct disk_reserve *r,
	       struct us_err *err);

/* fsync of path, a file or (is_dir) a directory, so that what was written
 * to it, or renamed in it, survives a power loss. 0, or US_ENOSPC / US_EIO
 * naming path; errno stays the failing call's (for callers without err). */
int disk_sync_path(const char *path, bool is_dir, struct us_err *err);

/* Creates dir and its parents as needed (mode 0755). 0, US_EINVAL (an empty
 * or too long path), US_EIO naming the part that could not be made. */
int disk_mkdir_p(const char *dir, struct us_err *err);
/* Removes a directory tree (a copy abandoned or replaced): 0 (also when it
 * is absent) or US_EIO. */
int disk_rmtree(const char *dir);

/* The filesystem of dir is writable and, when r is not NULL, has the reserve
 * free: 0, US_EIO (read-only) or US_ENOSPC, as disk_check. */
int disk_check_space(const char *dir, const struct disk_reserve *r, struct us_err *err);

/* At start: dir (which exists) takes a file: creates, writes, fsyncs and
 * removes one. 0, US_ENOSPC when the disk is full (a daemon starts anyway and
 * serves reads), or US_EIO "data dir X is not writable: why" (read-only,
 * permissions: a daemon refuses to start). */
int disk_probe_writable(const char *dir, struct us_err *err);

#endif
