/*
 * sorter.c - an external merge sort (sorter.h).
 *
 * In memory the records live in one arena, each as a u32 length then its
 * bytes (the run file's layout too), indexed by their offsets; the arena
 * and the index together stay under mem_bytes. A run is the index sorted
 * (qsort_r) and the records written in that order, appended to the one
 * temporary file: run i is the byte range runs[i]. The merge keeps one
 * reader a run, each with a buffer holding at least its current record, and
 * a binary heap of the readers by current record.
 */
#include "sorter.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "us_limits.h"

/* A record in memory: where it is in the arena, its length and, for a
 * byte-order sort (cmp NULL), its first 16 bytes as two big-endian words
 * (zero-padded), which decide most comparisons without touching the arena
 * (a cache miss each). */
struct ref {
	uint64_t prefix[2];
	size_t off;
	size_t len;
};

struct run {
	uint64_t off, end;          /* byte range in the file */
};

struct reader {
	uint64_t off, end;          /* still to read from the file */
	uint8_t *p;                 /* buffer */
	size_t cap, start, len;     /* bytes [start, start+len) of p are read, unused */
	const uint8_t *rec;         /* the current record (in p) */
	size_t rec_len;
};

struct sorter {
	sorter_cmp_fn cmp;
	void *arg;
	size_t mem_bytes;
	char tmp_dir[US_DIR_MAX_LEN + 1];
	struct buf arena;
	struct ref *index;          /* the records in the arena */
	size_t n, cap;
	size_t next;                /* in-memory reading: the next index */
	int fd;                     /* the temporary file, -1 until a run */
	uint64_t file_len;
	struct run *runs;
	size_t n_runs;
	struct reader *readers;     /* the merge: one a run */
	size_t *heap;               /* reader numbers, the least record first */
	size_t n_heap;
	size_t last;                /* the reader the last record came from (SIZE_MAX: none) */
	bool is_finished;
};

int sorter_new(struct sorter **out, sorter_cmp_fn cmp, void *arg, size_t mem_bytes,
	       const char *tmp_dir, struct us_err *err)
{
	struct sorter *s;

	*out = NULL;
	if (mem_bytes < US_SORTER_MIN_MEM_BYTES)
		mem_bytes = US_SORTER_MIN_MEM_BYTES;
	if (strlen(tmp_dir) > US_DIR_MAX_LEN)
		return err_set(err, US_EINVAL, "temporary directory name too long: %s", tmp_dir);
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(err, US_ENOMEM, "out of memory");
	s->cmp = cmp;
	s->arg = arg;
	s->mem_bytes = mem_bytes;
	snprintf(s->tmp_dir, sizeof(s->tmp_dir), "%s", tmp_dir);
	buf_init(&s->arena);
	s->fd = -1;
	s->last = SIZE_MAX;
	*out = s;
	return 0;
}

void sorter_free(struct sorter *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	for (size_t i = 0; s->readers && i < s->n_runs; i++)
		free(s->readers[i].p);
	free(s->readers);
	free(s->heap);
	free(s->runs);
	free(s->index);
	buf_release(&s->arena);
	free(s);
}

size_t sorter_runs(const struct sorter *s)
{
	return s->n_runs;
}

static int memcmp_len(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = al && bl ? memcmp(a, b, al < bl ? al : bl) : 0;

	return c ? c : (al > bl) - (al < bl);
}

static int cmp_records(const struct sorter *s, const uint8_t *a, size_t al, const uint8_t *b,
		       size_t bl)
{
	return s->cmp ? s->cmp(s->arg, a, al, b, bl) : memcmp_len(a, al, b, bl);
}

static int cmp_index(const void *a, const void *b, void *arg)
{
	const struct sorter *s = arg;
	const struct ref *x = a, *y = b;
	const uint8_t *ra, *rb;

	if (!s->cmp) {
		if (x->prefix[0] != y->prefix[0])
			return x->prefix[0] < y->prefix[0] ? -1 : 1;
		if (x->prefix[1] != y->prefix[1])
			return x->prefix[1] < y->prefix[1] ? -1 : 1;
	}
	ra = s->arena.p + x->off;
	rb = s->arena.p + y->off;
	return cmp_records(s, ra + 4, x->len, rb + 4, y->len);
}

static int open_tmp(struct sorter *s, struct us_err *err)
{
	char path[US_DIR_MAX_LEN + 32];

	/* no name at all where the file system allows it */
	s->fd = open(s->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (s->fd >= 0)
		return 0;
	snprintf(path, sizeof(path), "%s/us-sort-XXXXXX", s->tmp_dir);
	s->fd = mkostemp(path, O_CLOEXEC);
	if (s->fd < 0)
		return err_set(err, US_EIO, "cannot make a temporary file in %s for a sort: %s",
			       s->tmp_dir, strerror(errno));
	/* gone when closed, or when the process dies */
	if (unlink(path) != 0) {
		int e = errno;

		close(s->fd);
		s->fd = -1;
		return err_set(err, US_EIO, "cannot unlink temporary file %s: %s", path, strerror(e));
	}
	return 0;
}

static int write_all(struct sorter *s, const uint8_t *p, size_t len, struct us_err *err)
{
	while (len > 0) {
		ssize_t n = pwrite(s->fd, p, len, (off_t)s->file_len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return err_set(err, US_EIO, "cannot write a sort's temporary file in %s: %s",
				       s->tmp_dir, n < 0 ? strerror(errno) : "no space written");
		p += n;
		len -= (size_t)n;
		s->file_len += (uint64_t)n;
	}
	return 0;
}

/* Sorts the records in memory and writes them out as one run. */
static int spill(struct sorter *s, struct us_err *err)
{
	struct run *runs;
	struct buf w;
	int rc = 0;

	if (s->n == 0)
		return 0;
	if (s->fd < 0 && (rc = open_tmp(s, err)))
		return rc;
	runs = realloc(s->runs, (s->n_runs + 1) * sizeof(*runs));
	if (!runs)
		return err_set(err, US_ENOMEM, "out of memory");
	s->runs = runs;
	qsort_r(s->index, s->n, sizeof(*s->index), cmp_index, s);
	runs[s->n_runs].off = s->file_len;
	buf_init(&w);
	for (size_t i = 0; i < s->n && !rc; i++) {
		const uint8_t *r = s->arena.p + s->index[i].off;
		size_t len = 4 + buf_get_u32le(r);

		if (w.len + len > US_SORTER_WRITE_BYTES && w.len) {
			rc = write_all(s, w.p, w.len, err);
			buf_reset(&w);
		}
		if (!rc && buf_append(&w, r, len))
			rc = err_set(err, US_ENOMEM, "out of memory");
	}
	if (!rc && w.len)
		rc = write_all(s, w.p, w.len, err);
	buf_release(&w);
	if (rc)
		return rc;
	runs[s->n_runs++].end = s->file_len;
	s->n = 0;
	buf_reset(&s->arena);
	return 0;
}

int sorter_add(struct sorter *s, const uint8_t *rec, size_t len, struct us_err *err)
{
	int rc;

	if (s->is_finished)
		return err_set(err, US_EINVAL, "record added to a sorter already read");
	if (len > US_SORTER_RECORD_MAX_BYTES)
		return err_set(err, US_ETOOBIG, "sort record of %zu bytes, over the limit of %u", len,
			       US_SORTER_RECORD_MAX_BYTES);
	if (s->n > 0 && s->arena.len + 4 + len + (s->n + 1) * sizeof(struct ref) > s->mem_bytes &&
	    (rc = spill(s, err)))
		return rc;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		struct ref *index = realloc(s->index, cap * sizeof(*index));

		if (!index)
			return err_set(err, US_ENOMEM, "out of memory");
		s->index = index;
		s->cap = cap;
	}
	s->index[s->n].off = s->arena.len;
	s->index[s->n].len = len;
	s->index[s->n].prefix[0] = s->index[s->n].prefix[1] = 0;
	for (size_t i = 0; i < 16; i++)
		s->index[s->n].prefix[i / 8] |= (uint64_t)(i < len ? rec[i] : 0) << (56 - 8 * (i % 8));
	if (buf_append_u32le(&s->arena, (uint32_t)len) || buf_append(&s->arena, rec, len))
		return err_set(err, US_ENOMEM, "out of memory");
	s->n++;
	return 0;
}

/* Makes the reader's next record current; 1, or 0 at the run's end. */
static int reader_advance(struct sorter *s, struct reader *r, struct us_err *err)
{
	size_t need = 4;

	for (;;) {
		if (r->len >= 4) {
			need = 4 + (size_t)buf_get_u32le(r->p + r->start);
			if (need - 4 > US_SORTER_RECORD_MAX_BYTES)
				return err_set(err, US_ECORRUPT,
					       "a sort's temporary file in %s holds a bad record",
					       s->tmp_dir);
		}
		if (r->len >= need && r->len >= 4)
			break;
		if (r->off >= r->end) {
			if (r->len == 0)
				return 0;
			return err_set(err, US_ECORRUPT,
				       "a sort's temporary file in %s ends inside a record",
				       s->tmp_dir);
		}
		if (r->start > 0) {
			memmove(r->p, r->p + r->start, r->len);
			r->start = 0;
		}
		if (need > r->cap) {
			uint8_t *p = realloc(r->p, need);

			if (!p)
				return err_set(err, US_ENOMEM, "out of memory");
			r->p = p;
			r->cap = need;
		}
		{
			size_t want = r->cap - r->len;
			ssize_t n;

			if (want > r->end - r->off)
				want = (size_t)(r->end - r->off);
			n = pread(s->fd, r->p + r->len, want, (off_t)r->off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return err_set(err, US_EIO,
					       "cannot read a sort's temporary file in %s: %s",
					       s->tmp_dir, n < 0 ? strerror(errno) : "short file");
			r->off += (uint64_t)n;
			r->len += (size_t)n;
		}
	}
	r->rec = r->p + r->start + 4;
	r->rec_len = need - 4;
	r->start += need;
	r->len -= need;
	return 1;
}

static int heap_less(struct sorter *s, size_t a, size_t b)
{
	const struct reader *ra = &s->readers[a], *rb = &s->readers[b];

	return cmp_records(s, ra->rec, ra->rec_len, rb->rec, rb->rec_len) < 0;
}

static void heap_down(struct sorter *s, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < s->n_heap && heap_less(s, s->heap[l], s->heap[m]))
			m = l;
		if (r < s->n_heap && heap_less(s, s->heap[r], s->heap[m]))
			m = r;
		if (m == i)
			return;
		size_t t = s->heap[i];
		s->heap[i] = s->heap[m];
		s->heap[m] = t;
		i = m;
	}
}

int sorter_finish(struct sorter *s, struct us_err *err)
{
	size_t per_run;
	int rc;

	if (s->is_finished)
		return 0;
	s->is_finished = true;
	if (s->n_runs == 0) {
		if (s->n > 1)
			qsort_r(s->index, s->n, sizeof(*s->index), cmp_index, s);
		return 0;
	}
	if ((rc = spill(s, err)))
		return rc;
	buf_release(&s->arena);
	free(s->index);
	s->index = NULL;
	s->cap = 0;
	per_run = s->mem_bytes / s->n_runs;
	if (per_run < US_SORTER_MIN_READ_BYTES)
		per_run = US_SORTER_MIN_READ_BYTES;
	if (per_run > US_SORTER_MAX_READ_BYTES)
		per_run = US_SORTER_MAX_READ_BYTES;
	s->readers = calloc(s->n_runs, sizeof(*s->readers));
	s->heap = calloc(s->n_runs, sizeof(*s->heap));
	if (!s->readers || !s->heap)
		return err_set(err, US_ENOMEM, "out of memory");
	for (size_t i = 0; i < s->n_runs; i++) {
		struct reader *r = &s->readers[i];

		r->off = s->runs[i].off;
		r->end = s->runs[i].end;
		r->p = malloc(per_run);
		if (!r->p)
			return err_set(err, US_ENOMEM, "out of memory");
		r->cap = per_run;
		if ((rc = reader_advance(s, r, err)) < 0)
			return rc;
		if (rc == 1)
			s->heap[s->n_heap++] = i;
	}
	for (size_t i = s->n_heap / 2; i-- > 0;)
		heap_down(s, i);
	return 0;
}

int sorter_next(struct sorter *s, const uint8_t **rec, size_t *len, struct us_err *err)
{
	int rc;

	if (!s->is_finished)
		return err_set(err, US_EINVAL, "sorter read before sorter_finish");
	if (s->n_runs == 0) {
		const uint8_t *r;

		if (s->next >= s->n)
			return 0;
		r = s->arena.p + s->index[s->next++].off;
		*rec = r + 4;
		*len = buf_get_u32le(r);
		return 1;
	}
	/* the record handed out last is no longer borrowed: move its reader on */
	if (s->last != SIZE_MAX) {
		rc = reader_advance(s, &s->readers[s->last], err);
		if (rc < 0)
			return rc;
		if (rc == 0)
			s->heap[0] = s->heap[--s->n_heap];
		if (s->n_heap)
			heap_down(s, 0);
		s->last = SIZE_MAX;
	}
	if (s->n_heap == 0)
		return 0;
	s->last = s->heap[0];
	*rec = s->readers[s->last].rec;
	*len = s->readers[s->last].rec_len;
	return 1;
}
