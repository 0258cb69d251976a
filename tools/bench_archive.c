/*
 * bench_archive.c - understudy-bench's measures of the archive: snapshot
 * opening and saves, each beside the copy a user would make instead, in
 * the same run.
 *
 *   understudy-bench snapshot --addr HOST:PORT --ns NS [--count N] [--json]
 *       opens and releases N snapshots one after the other (Store.OpenSnapshot
 *       round trips, as a report sees them) and reports the open time:
 *       p50, p99, max, with the namespace's item count beside it.
 *   understudy-bench save --addr HOST:PORT --ns NS --store DIR [--rounds R]
 *       [--out-dir D] [--json]
 *       R rounds (default 3), each: a save of the namespace streamed to a
 *       file in D (default $TMPDIR), then the physical copy a user would try
 *       instead, `tar -C DIR -cf - . | lz4 -1 > file` of the store's
 *       directory, each followed by an fsync of its output; reports each
 *       one's MB/s of item data (ids and bodies, counted from the save) and
 *       the ratio, per round and over all (the median round).
 *   understudy-bench restore --save FILE --store DIR [--rounds R]
 *       [--out-dir D] [--json]
 *       first makes the tar|lz4 copy of DIR (the store the save was taken
 *       from: stop its daemon, or take it as it is), then R rounds, each:
 *       `understudy restore FILE --data-dir D/...` (the CLI beside this
 *       program), then `lz4 -d < copy | tar -x` into D, each followed by a
 *       sync; reports MB/s of item data and the ratio as save does.
 *
 * Both talk to a running daemon through the C client (include/understudy.h);
 * the tar runs through /bin/sh. Exit 1 with one line when something fails, 2
 * on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"
#include "save.h"
#include "understudy.h"

#define BENCH_SNAPSHOT_COUNT 1000
#define BENCH_SAVE_ROUNDS 3

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int fail(const char *fmt, const char *what)
{
	fprintf(stderr, "understudy-bench: ");
	fprintf(stderr, fmt, what);
	fputc('\n', stderr);
	return 1;
}

struct args {
	const char *addr, *ns, *store, *out_dir, *save;
	long count, rounds;
	int is_json;
};

static int parse(int argc, char **argv, struct args *a)
{
	a->addr = "127.0.0.1:7440";
	a->ns = "site-a";
	a->count = BENCH_SNAPSHOT_COUNT;
	a->rounds = BENCH_SAVE_ROUNDS;
	a->out_dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	for (int i = 2; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(argv[i], "--json") == 0) {
			a->is_json = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "understudy-bench: %s needs a value\n", argv[i]);
			return 2;
		}
		if (strcmp(argv[i], "--addr") == 0)
			a->addr = v;
		else if (strcmp(argv[i], "--ns") == 0)
			a->ns = v;
		else if (strcmp(argv[i], "--store") == 0)
			a->store = v;
		else if (strcmp(argv[i], "--out-dir") == 0)
			a->out_dir = v;
		else if (strcmp(argv[i], "--save") == 0)
			a->save = v;
		else if (strcmp(argv[i], "--count") == 0 && (a->count = atol(v)) > 0)
			;
		else if (strcmp(argv[i], "--rounds") == 0 && (a->rounds = atol(v)) > 0)
			;
		else {
			fprintf(stderr, "understudy-bench: bad option %s %s\n", argv[i], v);
			return 2;
		}
		i++;
	}
	return 0;
}

static uint64_t count_items(us_client_t *c, const char *ns)
{
	us_file_info_t *files;
	uint64_t n = 0;
	size_t nf;
	us_err_t err;

	if (us_list_files(c, ns, NULL, 0, &files, &nf, &err))
		return 0;
	for (size_t i = 0; i < nf; i++)
		n += files[i].data_items + files[i].dict_items;
	free(files);
	return n;
}

static int bench_snapshot(const struct args *a)
{
	us_client_t *c;
	int64_t *t;
	us_err_t err;
	uint64_t items;

	c = us_client_new(a->addr, NULL, &err);
	if (!c)
		return fail("%s", err.msg);
	t = calloc((size_t)a->count, sizeof(*t));
	if (!t) {
		us_client_free(c);
		return fail("%s", "out of memory");
	}
	items = count_items(c, a->ns);
	for (long i = 0; i < a->count; i++) {
		us_snapshot_t s;
		int64_t t0 = bench_now_ns();

		if (us_open_snapshot(c, a->ns, &s, &err)) {
			free(t);
			us_client_free(c);
			return fail("%s", err.msg);
		}
		t[i] = bench_now_ns() - t0;
		if (us_release_snapshot(c, a->ns, s.id, &err)) {
			free(t);
			us_client_free(c);
			return fail("%s", err.msg);
		}
	}
	qsort(t, (size_t)a->count, sizeof(*t), cmp_i64);
	{
		double p50 = (double)t[(a->count - 1) / 2] / 1e3;
		double p99 = (double)t[(a->count * 99 - 1) / 100] / 1e3;
		double max = (double)t[a->count - 1] / 1e3;

		if (a->is_json)
			bench_print_json(json_pack("{s:s,s:s,s:I,s:I,s:f,s:f,s:f}", "bench", "snapshot",
						   "namespace", a->ns, "items", (json_int_t)items,
						   "count", (json_int_t)a->count, "open_p50_us", p50,
						   "open_p99_us", p99, "open_max_us", max));
		else
			printf("snapshot open (OpenSnapshot round trip) in %s, %" PRIu64
			       " items, %ld opens: p50 %.0f us, p99 %.0f us, max %.0f us\n",
			       a->ns, items, a->count, p50, p99, max);
	}
	free(t);
	us_client_free(c);
	return 0;
}

/* ---- save ---- */

struct sink {
	FILE *f;
};

static int to_file(void *arg, const uint8_t *data, size_t len, uint64_t items)
{
	struct sink *s = arg;

	(void)items;
	return fwrite(data, 1, len, s->f) == len ? 0 : US_EIO;
}

/* Item data (ids and bodies) in the save at path. */
static int item_bytes(const char *path, uint64_t *bytes)
{
	struct save_reader *r;
	struct save_header h;
	struct us_err err;
	struct entry e;
	FILE *f = fopen(path, "rb");
	int rc;

	*bytes = 0;
	if (!f)
		return -1;
	if (save_reader_new(&r, save_file_source, f, &h, &err)) {
		fclose(f);
		return -1;
	}
	while ((rc = save_reader_next(r, &e, &err)) == 1)
		if (e.op == ENTRY_WRITE)
			*bytes += e.id_len + e.body_len;
	save_reader_free(r);
	fclose(f);
	return rc;
}

/* One interleaved round: ours against the copy, both in MB/s of item data;
 * returns copy / ours (how many times faster ours was). */
static double round_ratio(const struct args *a, long r, const char *ours, const char *copy,
			  double ours_s, double copy_s, uint64_t bytes)
{
	double ratio = copy_s / ours_s;

	if (!a->is_json)
		printf("round %ld: %s %.2f s (%.1f MB/s), %s %.2f s (%.1f MB/s), %s/tar %.2fx\n",
		       r + 1, ours, ours_s, (double)bytes / 1e6 / ours_s, copy, copy_s,
		       (double)bytes / 1e6 / copy_s, ours, ratio);
	return ratio;
}

/* The last round's output goes, and what is dirty reaches the disk, before
 * a clock starts: neither side pays for the other's leftovers. */
static void clear_output(const char *path)
{
	unlink(path);
	sync();
}

static int timed_save(us_client_t *c, const struct args *a, const char *path, double *secs)
{
	struct sink s;
	us_saved_t saved;
	us_err_t err;
	int64_t t0 = bench_now_ns();
	int rc;

	s.f = fopen(path, "wb");
	if (!s.f)
		return fail("cannot create %s", path);
	rc = us_save(c, a->ns, NULL, to_file, &s, &saved, &err);
	if (rc == 0 && (fflush(s.f) != 0 || fsync(fileno(s.f)) != 0))
		rc = US_EIO;
	if (fclose(s.f) != 0)
		rc = US_EIO;
	*secs = (double)(bench_now_ns() - t0) / 1e9;
	return rc ? fail("save failed: %s", rc == US_EIO ? "cannot write" : err.msg) : 0;
}

static int timed_tar(const struct args *a, const char *path, double *secs)
{
	char cmd[4096];
	int64_t t0 = bench_now_ns();

	snprintf(cmd, sizeof(cmd), "tar -C '%s' -cf - . | lz4 -1 -q > '%s' && sync '%s'", a->store,
		 path, path);
	if (system(cmd) != 0)
		return fail("%s failed", "tar | lz4");
	*secs = (double)(bench_now_ns() - t0) / 1e9;
	return 0;
}


static int bench_save(const struct args *a)
{
	char save_path[1200], tar_path[1200];
	double *save_s, *tar_s, *ratio;
	us_client_t *c;
	us_err_t err;
	uint64_t bytes = 0;
	int rc = 1;

	if (!a->store)
		return fail("%s", "save needs --store DIR (the namespace's store directory)");
	c = us_client_new(a->addr, NULL, &err);
	if (!c)
		return fail("%s", err.msg);
	save_s = calloc((size_t)a->rounds, sizeof(double));
	tar_s = calloc((size_t)a->rounds, sizeof(double));
	ratio = calloc((size_t)a->rounds, sizeof(double));
	snprintf(save_path, sizeof(save_path), "%s/bench-%ld.save", a->out_dir, (long)getpid());
	snprintf(tar_path, sizeof(tar_path), "%s/bench-%ld.tar.lz4", a->out_dir, (long)getpid());
	if (!save_s || !tar_s || !ratio)
		goto out;
	/* interleaved: save, tar, save, tar ... */
	for (long r = 0; r < a->rounds; r++) {
		clear_output(save_path);
		if (timed_save(c, a, save_path, &save_s[r]))
			goto out;
		clear_output(tar_path);
		if (timed_tar(a, tar_path, &tar_s[r]))
			goto out;
		if (r == 0 && item_bytes(save_path, &bytes) != 0) {
			fail("cannot read back %s", save_path);
			goto out;
		}
		ratio[r] = round_ratio(a, r, "save", "tar|lz4", save_s[r], tar_s[r], bytes);
	}
	{
		double ms = bench_median(save_s, a->rounds), mt = bench_median(tar_s, a->rounds);
		double mr = bench_median(ratio, a->rounds);

		if (a->is_json)
			bench_print_json(json_pack("{s:s,s:s,s:I,s:I,s:f,s:f,s:f}", "bench", "save",
						   "namespace", a->ns, "item_bytes", (json_int_t)bytes,
						   "rounds", (json_int_t)a->rounds, "save_mb_s",
						   (double)bytes / 1e6 / ms, "tar_lz4_mb_s",
						   (double)bytes / 1e6 / mt, "ratio", mr));
		else
			printf("median of %ld rounds, %.1f MB of item data: save %.1f MB/s, tar|lz4 "
			       "%.1f MB/s, save/tar %.2fx (median of the per-round ratios)\n",
			       a->rounds, (double)bytes / 1e6, (double)bytes / 1e6 / ms,
			       (double)bytes / 1e6 / mt, mr);
	}
	rc = 0;
out:
	unlink(save_path);
	unlink(tar_path);
	free(save_s);
	free(tar_s);
	free(ratio);
	us_client_free(c);
	return rc;
}

/* ---- restore ---- */

static int run_timed(const char *cmd, double *secs)
{
	int64_t t0 = bench_now_ns();

	if (system(cmd) != 0)
		return fail("failed: %s", cmd);
	*secs = (double)(bench_now_ns() - t0) / 1e9;
	return 0;
}

static int bench_restore(const struct args *a, const char *self)
{
	char cli[1200], copy[1200], dir[1200], cmd[8192];
	const char *slash = strrchr(self, '/');
	double *rs, *ts, *ratio;
	uint64_t bytes = 0;
	double secs;
	int rc = 1;

	if (!a->save || !a->store)
		return fail("%s", "restore needs --save FILE and --store DIR (the store it was taken from)");
	snprintf(cli, sizeof(cli), "%.*sunderstudy", slash ? (int)(slash - self + 1) : 0, self);
	if (item_bytes(a->save, &bytes) != 0)
		return fail("cannot read %s as a save", a->save);
	snprintf(copy, sizeof(copy), "%s/bench-%ld.tar.lz4", a->out_dir, (long)getpid());
	snprintf(dir, sizeof(dir), "%s/bench-%ld.restored", a->out_dir, (long)getpid());
	rs = calloc((size_t)a->rounds, sizeof(double));
	ts = calloc((size_t)a->rounds, sizeof(double));
	ratio = calloc((size_t)a->rounds, sizeof(double));
	if (!rs || !ts || !ratio)
		goto out;
	snprintf(cmd, sizeof(cmd), "tar -C '%s' -cf - . | lz4 -1 -q > '%s'", a->store, copy);
	if (run_timed(cmd, &secs))
		goto out;
	for (long r = 0; r < a->rounds; r++) {
		/* the last round's output goes (and reaches the disk) before the
		 * clock starts, for both sides alike */
		snprintf(cmd, sizeof(cmd), "rm -rf '%s' && sync", dir);
		if (run_timed(cmd, &secs))
			goto out;
		snprintf(cmd, sizeof(cmd), "'%s' restore '%s' --data-dir '%s' > /dev/null", cli,
			 a->save, dir);
		if (run_timed(cmd, &rs[r]))
			goto out;
		snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir '%s' && sync", dir, dir);
		if (run_timed(cmd, &secs))
			goto out;
		snprintf(cmd, sizeof(cmd), "lz4 -d -q < '%s' | tar -C '%s' -xf - && sync -f '%s'",
			 copy, dir, dir);
		if (run_timed(cmd, &ts[r]))
			goto out;
		ratio[r] = round_ratio(a, r, "restore", "lz4 -d|tar", rs[r], ts[r], bytes);
	}
	{
		double mr = bench_median(rs, a->rounds), mt = bench_median(ts, a->rounds);

		if (a->is_json)
			bench_print_json(json_pack("{s:s,s:I,s:I,s:f,s:f,s:f}", "bench", "restore",
						   "item_bytes", (json_int_t)bytes, "rounds",
						   (json_int_t)a->rounds, "restore_mb_s",
						   (double)bytes / 1e6 / mr, "tar_lz4_mb_s",
						   (double)bytes / 1e6 / mt, "ratio",
						   bench_median(ratio, a->rounds)));
		else
			printf("median of %ld rounds, %.1f MB of item data: restore %.1f MB/s, "
			       "lz4 -d|tar %.1f MB/s, restore/tar %.2fx (median of the per-round "
			       "ratios)\n",
			       a->rounds, (double)bytes / 1e6, (double)bytes / 1e6 / mr,
			       (double)bytes / 1e6 / mt, bench_median(ratio, a->rounds));
	}
	rc = 0;
out:
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir, copy);
	if (system(cmd) != 0)
		fprintf(stderr, "understudy-bench: cannot remove %s\n", dir);
	free(rs);
	free(ts);
	free(ratio);
	return rc;
}

int bench_archive_main(int argc, char **argv)
{
	struct args a = {0};
	int rc = parse(argc, argv, &a);

	if (rc)
		return rc;
	if (strcmp(argv[1], "snapshot") == 0)
		return bench_snapshot(&a);
	if (strcmp(argv[1], "restore") == 0) {
		char self[1024];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

		if (n <= 0)
			return fail("%s", "cannot find this program's directory");
		self[n] = '\0';
		return bench_restore(&a, self);
	}
	return bench_save(&a);
}
