/*
 * bench_apply.c - `understudy-bench apply`: the archiver's apply path alone.
 * It builds the frames a site's link would send from a store's journal
 * (--from DATA_DIR), then decodes and applies them into a fresh standby
 * store twice: one sync at the end, and a sync after each frame, as the
 * archiver's syncer would. The options are in tools/bench.c's usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"
#include "disk.h"
#include "store.h"
#include "stream.h"
#include "understudy.h"
#include "us_limits.h"


/* One frame as the collector's link sends it. */
struct built_frame {
	uint64_t first_seq;
	uint32_t count;
	uint32_t raw_len;
	uint8_t *block;     /* LZ4, owned */
	size_t block_len;
};

struct apply_pass {
	double seconds;      /* decode + apply + sync */
	double decode_s, apply_s, sync_s;
	uint64_t syncs;
};

/* Builds the frames of the store in dir, from its first journal seq (which
 * must be 1: a fresh store takes seq 1 first). Returns 0, or 1 with one
 * line printed. */
static int build_frames(const struct bench_opts *o, struct built_frame **out, size_t *n_out,
			uint64_t *last_seq)
{
	struct store_opts sopts = { .is_read_only = true };
	struct built_frame *v = NULL;
	size_t n = 0, cap = 0;
	struct buf scratch, block;
	struct store *s = NULL;
	struct us_err err;
	uint64_t from = 0;
	int status = 1;

	buf_init(&scratch);
	buf_init(&block);
	err_clear(&err);
	if (store_open(&s, o->from, &sopts, &err) != 0) {
		fprintf(stderr, "understudy-bench: %s\n", err.msg);
		goto out;
	}
	if (store_journal_first(s, &from, &err) != 0) {
		fprintf(stderr, "understudy-bench: cannot read the journal of %s: %s\n", o->from,
			err.msg);
		goto out;
	}
	if (from == 0) {
		fprintf(stderr, "understudy-bench: the journal of %s is empty\n", o->from);
		goto out;
	}
	if (from != 1) {
		fprintf(stderr, "understudy-bench: the journal of %s starts at seq %" PRIu64
			", not 1: a fresh store cannot take it\n", o->from, from);
		goto out;
	}
	while (o->frames == 0 || n < (size_t)o->frames) {
		uint64_t first;
		uint32_t count, raw_len;

		if (stream_build_entries(s, from, US_FRAME_TARGET_BYTES, &scratch, &block, &first,
					 &count, &raw_len, &err) != 0) {
			fprintf(stderr, "understudy-bench: cannot build the frame at seq %" PRIu64
				" of %s: %s\n", from, o->from, err.msg);
			goto out;
		}
		if (count == 0)
			break;
		if (n == cap) {
			size_t c = cap ? cap * 2 : 256;
			struct built_frame *p = realloc(v, c * sizeof(*p));

			if (!p)
				goto out_oom;
			v = p;
			cap = c;
		}
		v[n].block = malloc(block.len ? block.len : 1);
		if (!v[n].block)
			goto out_oom;
		memcpy(v[n].block, block.p, block.len);
		v[n].block_len = block.len;
		v[n].first_seq = first;
		v[n].count = count;
		v[n].raw_len = raw_len;
		n++;
		from = first + count;
	}
	*last_seq = from - 1;
	*out = v;
	*n_out = n;
	v = NULL;
	n = 0;
	status = 0;
	goto out;
out_oom:
	fprintf(stderr, "understudy-bench: out of memory for the frames of %s (try --frames)\n",
		o->from);
out:
	for (size_t i = 0; i < n; i++)
		free(v[i].block);
	free(v);
	store_close(s);
	buf_release(&scratch);
	buf_release(&block);
	return status;
}

/* Decodes and applies every frame into a fresh store under o->tmp_dir,
 * syncing after each frame or once at the end; only that is timed. Returns
 * 0, or 1 with one line printed. The store is removed afterwards. */
static int apply_pass(const struct bench_opts *o, const struct built_frame *frames,
		      size_t n_frames, uint64_t last_seq, bool is_sync_each, struct apply_pass *p)
{
	char dir[PATH_MAX];
	struct stream_frame f;
	struct store *s = NULL;
	struct us_err err;
	uint64_t durable = 0;
	int64_t t0, t1, ta, tb;
	int status = 1;

	memset(p, 0, sizeof(*p));
	stream_frame_init(&f);
	err_clear(&err);
	if (snprintf(dir, sizeof(dir), "%s/understudy-bench-apply-XXXXXX", o->tmp_dir) >=
	    (int)sizeof(dir)) {
		fprintf(stderr, "understudy-bench: --tmp-dir %s is too long\n", o->tmp_dir);
		return 1;
	}
	if (!mkdtemp(dir)) {
		fprintf(stderr, "understudy-bench: cannot make a directory in %s: %s\n", o->tmp_dir,
			strerror(errno));
		return 1;
	}
	if (store_open(&s, dir, &(struct store_opts){.role = ROLE_STANDBY}, &err) != 0) {
		fprintf(stderr, "understudy-bench: %s\n", err.msg);
		goto out_rm;
	}
	t0 = bench_now_ns();
	for (size_t i = 0; i < n_frames; i++) {
		const struct built_frame *b = &frames[i];

		ta = bench_now_ns();
		if (stream_decode_entries(b->first_seq, b->count, b->raw_len, b->block, b->block_len,
					  &f, &err) != 0) {
			fprintf(stderr, "understudy-bench: %s\n", err.msg);
			goto out;
		}
		tb = bench_now_ns();
		p->decode_s += (double)(tb - ta) / 1e9;
		if (store_apply_entries(s, f.first_seq, f.entries, f.n, f.raw.p, f.raw.len, false,
					&err) != 0) {
			fprintf(stderr, "understudy-bench: cannot apply the frame at seq %" PRIu64
				": %s\n", b->first_seq, err.msg);
			goto out;
		}
		ta = bench_now_ns();
		p->apply_s += (double)(ta - tb) / 1e9;
		if (is_sync_each) {
			if (store_sync(s, &durable, &err) != 0) {
				fprintf(stderr, "understudy-bench: %s\n", err.msg);
				goto out;
			}
			p->syncs++;
			p->sync_s += (double)(bench_now_ns() - ta) / 1e9;
		}
	}
	ta = bench_now_ns();
	if (store_sync(s, &durable, &err) != 0) {
		fprintf(stderr, "understudy-bench: %s\n", err.msg);
		goto out;
	}
	p->syncs++;
	t1 = bench_now_ns();
	p->sync_s += (double)(t1 - ta) / 1e9;
	p->seconds = (double)(t1 - t0) / 1e9;
	if (durable != last_seq) {
		fprintf(stderr, "understudy-bench: the fresh store is durable up to seq %" PRIu64
			", not %" PRIu64 "\n", durable, last_seq);
		goto out;
	}
	status = 0;
out:
	store_close(s);
out_rm:
	stream_frame_release(&f);
	if (disk_rmtree(dir) != 0 && status == 0) {
		fprintf(stderr, "understudy-bench: cannot remove %s: %s\n", dir, strerror(errno));
		status = 1;
	}
	return status;
}

static json_t *pass_json(const struct apply_pass *p, uint64_t entries, uint64_t raw_bytes)
{
	double s = p->seconds > 0 ? p->seconds : 1e-9;

	return json_pack("{s:f, s:f, s:f, s:f, s:I, s:f, s:f}", "seconds", p->seconds,
			 "decode_s", p->decode_s, "apply_s", p->apply_s, "sync_s", p->sync_s,
			 "syncs", (json_int_t)p->syncs, "entries_per_s", (double)entries / s,
			 "mb_per_s", (double)raw_bytes / 1e6 / s);
}

int bench_apply(const struct bench_opts *o)
{
	struct built_frame *frames = NULL;
	struct apply_pass once, each;
	size_t n_frames = 0;
	uint64_t last_seq = 0, entries = 0, raw_bytes = 0, lz4_bytes = 0;
	int64_t t0;
	double build_s;
	int status = 1;

	t0 = bench_now_ns();
	if (build_frames(o, &frames, &n_frames, &last_seq) != 0)
		return 1;
	build_s = (double)(bench_now_ns() - t0) / 1e9;
	for (size_t i = 0; i < n_frames; i++) {
		entries += frames[i].count;
		raw_bytes += frames[i].raw_len;
		lz4_bytes += frames[i].block_len;
	}
	if (apply_pass(o, frames, n_frames, last_seq, false, &once) != 0 ||
	    apply_pass(o, frames, n_frames, last_seq, true, &each) != 0)
		goto out;
	if (o->is_json) {
		json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f}",
				      "from", o->from, "frames", (json_int_t)n_frames,
				      "entries", (json_int_t)entries, "first_seq", (json_int_t)1,
				      "last_seq", (json_int_t)last_seq,
				      "raw_bytes", (json_int_t)raw_bytes,
				      "lz4_bytes", (json_int_t)lz4_bytes, "build_s", build_s,
				      "entries_per_s", (double)entries / once.seconds,
				      "mb_per_s", (double)raw_bytes / 1e6 / once.seconds,
				      "entries_per_s_sync_each", (double)entries / each.seconds,
				      "mb_per_s_sync_each", (double)raw_bytes / 1e6 / each.seconds);

		if (j) {
			json_object_set_new(j, "sync_once", pass_json(&once, entries, raw_bytes));
			json_object_set_new(j, "sync_each_frame", pass_json(&each, entries, raw_bytes));
		}
		bench_print_json(j);
	} else {
		printf("from              %s\n", o->from);
		printf("frames            %zu (built in %.3f s)\n", n_frames, build_s);
		printf("entries           %" PRIu64 " (seq 1..%" PRIu64 ")\n", entries, last_seq);
		printf("raw / lz4         %.1f / %.1f MB\n", (double)raw_bytes / 1e6,
		       (double)lz4_bytes / 1e6);
		printf("sync at the end   %.3f s: %.1f entries/s, %.1f MB/s (decode %.3f s, "
		       "apply %.3f s, sync %.3f s)\n", once.seconds, (double)entries / once.seconds,
		       (double)raw_bytes / 1e6 / once.seconds, once.decode_s, once.apply_s,
		       once.sync_s);
		printf("sync each frame   %.3f s: %.1f entries/s, %.1f MB/s (decode %.3f s, "
		       "apply %.3f s, sync %.3f s)\n", each.seconds, (double)entries / each.seconds,
		       (double)raw_bytes / 1e6 / each.seconds, each.decode_s, each.apply_s,
		       each.sync_s);
	}
	fflush(stdout);
	status = 0;
out:
	for (size_t i = 0; i < n_frames; i++)
		free(frames[i].block);
	free(frames);
	return status;
}

