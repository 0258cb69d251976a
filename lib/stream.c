/* stream.c - see stream.h. */
#include "stream.h"

#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "us_limits.h"

void stream_frame_init(struct stream_frame *f)
{
	memset(f, 0, sizeof(*f));
	buf_init(&f->raw);
}

void stream_frame_release(struct stream_frame *f)
{
	if (!f)
		return;
	buf_release(&f->raw);
	free(f->entries);
	stream_frame_init(f);
}

int stream_compress(const struct buf *raw, struct buf *out, struct us_err *err)
{
	int bound;

	buf_reset(out);
	if (raw->len > INT32_MAX)
		return err_set(err, US_ETOOBIG, "block of %zu bytes is too big to compress", raw->len);
	bound = LZ4_compressBound((int)raw->len);
	if (buf_reserve(out, (size_t)bound))
		return err_set(err, US_ENOMEM, "out of memory");
	bound = LZ4_compress_default((const char *)raw->p, (char *)out->p, (int)raw->len, bound);
	if (bound <= 0)
		return err_set(err, US_EIO, "cannot compress a block of %zu bytes", raw->len);
	out->len = (size_t)bound;
	return 0;
}

int stream_build_entries(struct store *s, uint64_t from, size_t target_bytes, struct buf *scratch,
			 struct buf *block, uint64_t *first_seq, uint32_t *count,
			 uint32_t *raw_len, struct us_err *err)
{
	struct store_journal_iter *it;
	struct entry_block_writer w;
	struct entry e;
	bool is_at_end = true;
	uint64_t seq, want = from;
	const uint8_t *ent;
	size_t ent_len;
	int rc;

	*count = 0;
	buf_reset(scratch);
	buf_reset(block);
	if ((rc = store_journal_iter_new(s, from, &it, err)))
		return rc;
	if ((rc = entry_block_begin(&w, scratch, from)))
		goto out_it;
	while ((rc = store_journal_iter_next(it, &seq, &e, &ent, &ent_len, err)) == 1) {

		if (seq != want) {
			rc = err_set(err, want == from ? US_ENOTFOUND : US_ECORRUPT,
				     "journal entry %llu is not retained (the journal %s at %llu)",
				     (unsigned long long)want, want == from ? "starts" : "jumps",
				     (unsigned long long)seq);
			goto out_it;
		}
		if ((rc = entry_block_add_raw(&w, ent, ent_len, err)))
			goto out_it;
		want++;
		is_at_end = e.is_commit_end;
		/* Whole commits only; stop once past the target at a commit's end. */
		if (is_at_end && scratch->len >= target_bytes)
			break;
	}
	if (rc < 0)
		goto out_it;
	rc = 0;
	if (w.count == 0)
		goto out_it; /* nothing at or after from yet */
	if (!is_at_end) {
		rc = err_set(err, US_ECORRUPT, "journal ends inside a commit at seq %llu",
			     (unsigned long long)(want - 1));
		goto out_it;
	}
	*count = w.count;
	if ((rc = entry_block_finish(&w, err)))
		goto out_it;
	if ((rc = stream_compress(scratch, block, err))) {
		err_wrap(err, "frame at seq %llu", (unsigned long long)from);
		goto out_it;
	}
	*first_seq = from;
	*raw_len = (uint32_t)scratch->len;
out_it:
	store_journal_iter_free(it);
	if (rc)
		*count = 0;
	return rc;
}

int stream_decode_entries(uint64_t first_seq, uint32_t count, uint32_t raw_len,
			  const uint8_t *block, size_t block_len, struct stream_frame *f,
			  struct us_err *err)
{
	struct entry_block_reader r;
	uint64_t seq;
	int got, rc;

	f->n = 0;
	if (count == 0 || count > US_BLOCK_MAX_ENTRIES)
		return err_set(err, US_ECORRUPT, "frame at seq %llu: bad entry count %u",
			       (unsigned long long)first_seq, count);
	if (raw_len > US_FRAME_MAX_RAW_BYTES || raw_len < ENTRY_BLOCK_HEADER_BYTES)
		return err_set(err, US_ETOOBIG, "frame at seq %llu: raw length %u out of bounds",
			       (unsigned long long)first_seq, raw_len);
	if (block_len > INT32_MAX)
		return err_set(err, US_ETOOBIG, "frame at seq %llu: block too big",
			       (unsigned long long)first_seq);
	buf_reset(&f->raw);
	if (buf_reserve(&f->raw, raw_len))
		return err_set(err, US_ENOMEM, "out of memory");
	got = LZ4_decompress_safe((const char *)block, (char *)f->raw.p, (int)block_len,
				  (int)raw_len);
	if (got != (int)raw_len)
		return err_set(err, US_ECORRUPT,
			       "frame at seq %llu: LZ4 block does not decode to %u bytes",
			       (unsigned long long)first_seq, raw_len);
	f->raw.len = raw_len;
	if ((rc = entry_block_open(&r, f->raw.p, f->raw.len, err))) {
		err_wrap(err, "frame at seq %llu", (unsigned long long)first_seq);
		return rc;
	}
	if (r.first_seq != first_seq || r.count != count)
		return err_set(err, US_ECORRUPT,
			       "frame says seq %llu count %u but its block says seq %llu count %u",
			       (unsigned long long)first_seq, count,
			       (unsigned long long)r.first_seq, r.count);
	if (f->cap < count) {
		struct entry *v = realloc(f->entries, count * sizeof(*v));

		if (!v)
			return err_set(err, US_ENOMEM, "out of memory");
		f->entries = v;
		f->cap = count;
	}
	while ((rc = entry_block_next(&r, &f->entries[f->n], &seq, err)) == 1)
		f->n++;
	if (rc < 0)
		return rc;
	if (f->n != count)
		return err_set(err, US_ECORRUPT, "frame at seq %llu: %zu entries, header says %u",
			       (unsigned long long)first_seq, f->n, count);
	if (!f->entries[f->n - 1].is_commit_end)
		return err_set(err, US_ECORRUPT, "frame at seq %llu ends inside a commit",
			       (unsigned long long)first_seq);
	f->first_seq = first_seq;
	return 0;
}
