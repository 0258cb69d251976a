/* disk.c - see disk.h. */
#include "disk.h"

#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "config.h"

/* One term of a disk_reserve value: "N%" or a size. */
static int parse_term(const char *s, size_t len, struct disk_reserve *r, struct us_err *err)
{
	char t[64];
	struct us_err serr;

	while (len && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof(t))
		return err_set(err, US_EINVAL, "bad disk reserve term '%.*s' (want a size like "
			       "512MiB or a percentage like 5%%)", (int)(len < 40 ? len : 40), s);
	memcpy(t, s, len);
	t[len] = '\0';
	if (t[len - 1] == '%') {
		unsigned long v = 0;
		size_t i;

		for (i = 0; i + 1 < len; i++) {
			if (t[i] < '0' || t[i] > '9' || v > 100)
				break;
			v = v * 10 + (unsigned long)(t[i] - '0');
		}
		if (i == 0 || i + 1 != len || v > 100 || r->has_pct)
			return err_set(err, US_EINVAL,
				       "bad disk reserve term '%s' (want one percentage, 0%%..100%%)",
				       t);
		r->has_pct = true;
		r->pct = (unsigned)v;
		return 0;
	}
	if (r->has_bytes || config_parse_size(t, &r->bytes, &serr))
		return err_set(err, US_EINVAL,
			       "bad disk reserve term '%s' (want one size like 512MiB, and/or a "
			       "percentage like 5%%)",
			       t);
	r->has_bytes = true;
	return 0;
}

int disk_parse_reserve(const char *s, struct disk_reserve *r, struct us_err *err)
{
	struct disk_reserve out = {0};
	const char *comma = strchr(s, ',');
	int rc;

	if (comma && strchr(comma + 1, ','))
		return err_set(err, US_EINVAL, "bad disk reserve '%s' (want at most two terms)", s);
	if ((rc = parse_term(s, comma ? (size_t)(comma - s) : strlen(s), &out, err)))
		return rc;
	if (comma && (rc = parse_term(comma + 1, strlen(comma + 1), &out, err)))
		return rc;
	*r = out;
	return 0;
}

uint64_t disk_reserve_bytes(const struct disk_reserve *r, uint64_t total_bytes)
{
	uint64_t pct = total_bytes / 100 * r->pct + total_bytes % 100 * r->pct / 100;

	if (r->has_bytes && r->has_pct)
		return r->bytes < pct ? r->bytes : pct;
	return r->has_bytes ? r->bytes : r->has_pct ? pct : 0;
}

int disk_dir_remember(const char *dir, struct disk_dir *id, struct us_err *err)
{
	struct stat st;

	if (stat(dir, &st) != 0)
		return err_set(err, US_EIO, "cannot stat data dir %s: %s", dir, strerror(errno));
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	return 0;
}

static double mib(uint64_t bytes)
{
	return (double)bytes / (1024.0 * 1024.0);
}

int disk_check_space(const char *dir, const struct disk_reserve *r, struct us_err *err)
{
	struct statvfs vfs;
	uint64_t total, avail, reserve;

	if (statvfs(dir, &vfs) != 0)
		return err_set(err, US_EIO, "cannot read the disk space of %s: %s", dir,
			       strerror(errno));
	if (vfs.f_flag & ST_RDONLY)
		return err_set(err, US_EIO, "data dir %s is on a read-only filesystem", dir);
	if (!r)
		return 0;
	total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	reserve = disk_reserve_bytes(r, total);
	if (avail < reserve)
		return err_set(err, US_ENOSPC,
			       "disk full: %s has %.1f MiB free, under the reserve of %.1f MiB "
			       "(disk_reserve)",
			       dir, mib(avail), mib(reserve));
	return 0;
}

int disk_check(const char *dir, const struct disk_dir *id, const struct disk_reserve *r,
	       struct us_err *err)
{
	struct stat st;

	if (stat(dir, &st) != 0)
		return err_set(err, US_EIO,
			       "data dir %s is gone (%s): nothing more is acknowledged until the "
			       "daemon is restarted on a sound data dir",
			       dir, strerror(errno));
	if (st.st_dev != id->dev || st.st_ino != id->ino)
		return err_set(err, US_EIO,
			       "data dir %s was replaced while running: nothing more is "
			       "acknowledged until the daemon is restarted",
			       dir);
	return disk_check_space(dir, r, err);
}

/* errno of a failed probe: a full disk is US_ENOSPC (the daemon starts and
 * serves reads), anything else US_EIO. */
static int probe_err(const char *dir, struct us_err *err)
{
	int e = errno;

	if (e == ENOSPC || e == EDQUOT)
		return err_set(err, US_ENOSPC, "data dir %s is full: %s", dir, strerror(e));
	return err_set(err, US_EIO, "data dir %s is not writable: %s", dir, strerror(e));
}

int disk_probe_writable(const char *dir, struct us_err *err)
{
	char path[1200];
	int fd, rc = 0;

	if ((size_t)snprintf(path, sizeof(path), "%s/.probe-%ld", dir, (long)getpid()) >=
	    sizeof(path))
		return err_set(err, US_EIO, "data dir path %s is too long", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return probe_err(dir, err);
	if (write(fd, "u", 1) != 1 || fsync(fd) != 0)
		rc = probe_err(dir, err);
	if (close(fd) != 0 && rc == 0)
		rc = probe_err(dir, err);
	if (unlink(path) != 0 && rc == 0)
		rc = err_set(err, US_EIO, "cannot remove %s: %s", path, strerror(errno));
	return rc;
}

int disk_mkdir_p(const char *dir, struct us_err *err)
{
	char path[4096];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(path))
		return err_set(err, US_EINVAL, "bad data directory '%s'", dir);
	memcpy(path, dir, len + 1);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) && errno != EEXIST)
			return err_set(err, errno == ENOSPC ? US_ENOSPC : US_EIO,
				       "cannot create %s: %s", path, strerror(errno));
		*p = '/';
	}
	if (mkdir(path, 0755) && errno != EEXIST)
		return err_set(err, errno == ENOSPC ? US_ENOSPC : US_EIO, "cannot create %s: %s",
			       path, strerror(errno));
	return 0;
}

int disk_sync_path(const char *path, bool is_dir, struct us_err *err)
{
	int fd = open(path, (is_dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
	int rc = 0, saved;

	if (fd < 0)
		return err_set(err, US_EIO, "cannot open %s: %s", path, strerror(errno));
	if (fsync(fd) != 0) {
		saved = errno;
		rc = err_set(err, saved == ENOSPC ? US_ENOSPC : US_EIO, "cannot sync %s: %s", path,
			     strerror(saved));
		close(fd);
		errno = saved;
		return rc;
	}
	if (close(fd) != 0)
		rc = err_set(err, US_EIO, "cannot close %s: %s", path, strerror(errno));
	return rc;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int disk_rmtree(const char *dir)
{
	int rc = nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);

	return rc && errno != ENOENT ? US_EIO : 0;
}
