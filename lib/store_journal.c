/*
 * store_journal.c - the store's journal: the block builder the writer puts
 * journaled entries into (blocks go into the caller's write batch), a
 * replica's block, and the journal's reads (iterator, one entry, the history
 * chain before a seq, the first retained seq) and upkeep (trim, the walk of
 * store_check). store.h is the contract, store_int.h what this file shares
 * with store.c (writes) and store_read.c (reads). The keys kept here, as
 * docs/store-format.md has them:
 *
 *   key                     value
 *   'J' u64be first seq     journal block (entry.h, docs/entry-format.md):
 *                           the entries first seq .. first seq + count - 1
 *   'H' u64be first seq     u64le: the history chain before the block at
 *                           that seq (docs/entry-format.md, "History chain")
 *
 * Invariants kept here:
 * - Nothing here writes to RocksDB on the commit path: a block goes into the
 *   write batch the caller gives, which holds the items and the new position
 *   as well (store.c writes it, in one piece), so after a crash the journal
 *   and the data it describes never disagree.
 * - A block's key is the seq of its first entry, and the writer gives seqs
 *   in order with no gap (store.c), so the next block's key is the seq after
 *   the last entry of the one before it.
 * - A 'J' block is never kept without its 'H': both go into one batch, and
 *   trim deletes both ranges in one batch.
 * - Trim drops whole blocks only, never the one that holds upto + 1: the
 *   journal stays first retained .. position with no gap, and may begin
 *   inside a commit.
 */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* 'J' u64be seq: the key of the block whose first entry is seq. */
static int key_journal(struct buf *k, uint64_t seq)
{
	buf_reset(k);
	if (buf_append_u8(k, 'J') || buf_append_u64be(k, seq))
		return US_ENOMEM;
	return 0;
}

/* ---- the journal, as the writer builds it ----
 *
 * Journaled entries go into an open block (s->jb), put into the batch as one
 * 'J' value once it reaches jb.target, and at the end of the batch: one
 * RocksDB key for many entries. A refused commit takes its entries back out:
 * store__journal_mark at its start, store__journal_rollback on refusal. A
 * block put into the batch in between left the batch with the commit's save
 * point; the entries of the commits before the mark that it held are put
 * back from a copy taken just before that put. */

/* 'H' + u64be first_seq -> u64le: the history chain before the journal block
 * at first_seq (docs/store-format.md), written and trimmed with the block. */
static void put_chain_start(rocksdb_writebatch_t *b, uint64_t first_seq, uint64_t chain)
{
	uint8_t k[9], v[8];

	k[0] = 'H';
	buf_put_u64be(k + 1, first_seq);
	buf_put_u64le(v, chain);
	rocksdb_writebatch_put(b, (char *)k, sizeof(k), (char *)v, sizeof(v));
}

/* A block and the chain before it go into the same batch: a block is never
 * kept without its 'H' (store_chain_before, store_check look for it). */
int store__journal_put_block(struct store *s, rocksdb_writebatch_t *b, uint64_t first_seq,
			     const uint8_t *block, size_t len, uint64_t chain_before,
			     struct us_err *err)
{
	if (key_journal(&s->key, first_seq))
		return err_set(err, US_ENOMEM, "out of memory");
	rocksdb_writebatch_put(b, (char *)s->key.p, s->key.len, (const char *)block, len);
	put_chain_start(b, first_seq, chain_before);
	return 0;
}

void store__journal_init(struct journal_builder *jb, size_t target_bytes)
{
	buf_init(&jb->buf);
	buf_init(&jb->saved);
	jb->target = target_bytes;
}

void store__journal_release(struct journal_builder *jb)
{
	buf_release(&jb->buf);
	buf_release(&jb->saved);
}

void store__journal_start(struct store *s, uint64_t chain)
{
	store__journal_drop(s);
	s->jb.chain = chain;
}

void store__journal_drop(struct store *s)
{
	buf_reset(&s->jb.buf);
	s->jb.is_open = false;
}

uint64_t store__journal_chain(const struct store *s)
{
	return s->jb.chain;
}

void store__journal_mark_end(struct store *s)
{
	entry_block_mark_end(&s->jb.w);
}

/* Puts the open block into b and closes it. */
int store__journal_flush(struct store *s, rocksdb_writebatch_t *b, struct us_err *err)
{
	struct journal_builder *jb = &s->jb;
	int rc;

	if (!jb->is_open)
		return 0;
	if ((rc = entry_block_finish(&jb->w, err)))
		return rc;
	if ((rc = store__journal_put_block(s, b, jb->first_seq, jb->buf.p, jb->buf.len,
					   jb->chain_start, err)))
		return rc;
	buf_reset(&jb->buf);
	jb->is_open = false;
	return 0;
}

void store__journal_mark(struct store *s)
{
	struct journal_builder *jb = &s->jb;

	jb->mark_len = jb->is_open ? jb->buf.len : 0;
	jb->mark_count = jb->is_open ? jb->w.count : 0;
	jb->mark_first_seq = jb->first_seq;
	jb->is_flushed_since_mark = false;
	jb->mark_chain = jb->chain;
	jb->mark_chain_start = jb->chain_start;
}

void store__journal_rollback(struct store *s)
{
	struct journal_builder *jb = &s->jb;

	jb->chain = jb->mark_chain;
	jb->chain_start = jb->mark_chain_start;
	if (jb->mark_len == 0) {
		buf_reset(&jb->buf);
		jb->is_open = false;
		return;
	}
	if (jb->is_flushed_since_mark) {
		struct buf t = jb->buf;

		jb->buf = jb->saved;
		jb->saved = t;
	}
	jb->buf.len = jb->mark_len;
	jb->w = (struct entry_block_writer){.out = &jb->buf, .start = 0, .count = jb->mark_count};
	jb->first_seq = jb->mark_first_seq;
	jb->is_open = true;
}

/* The replica's block is built in the writer's buffer: the writer has no
 * block open between its batches, and applies and commits share one thread. */
int store__journal_block_begin(struct store *s, uint64_t first_seq, struct us_err *err)
{
	int rc;

	buf_reset(&s->jb.buf);
	if ((rc = entry_block_begin(&s->jb.w, &s->jb.buf, first_seq)))
		return err_set(err, rc, "cannot start a journal block at seq %llu",
			       (unsigned long long)first_seq);
	return 0;
}

int store__journal_block_add(struct store *s, const struct entry *e, struct us_err *err)
{
	return entry_block_add(&s->jb.w, e, err);
}

int store__journal_block_finish(struct store *s, const uint8_t **block, size_t *len,
				struct us_err *err)
{
	int rc = entry_block_finish(&s->jb.w, err);

	*block = s->jb.buf.p;
	*len = s->jb.buf.len;
	return rc;
}

/* Adds e, journaled at seq (the seq after the last one added), to the block. */
int store__journal_put(struct store *s, rocksdb_writebatch_t *b, const struct entry *e,
		       uint64_t seq, struct us_err *err)
{
	struct journal_builder *jb = &s->jb;
	int rc;

	if (jb->is_open && (jb->buf.len >= jb->target || jb->w.count >= US_BLOCK_MAX_ENTRIES)) {
		if (!jb->is_flushed_since_mark && jb->mark_len > 0) {
			buf_reset(&jb->saved);
			if (buf_append(&jb->saved, jb->buf.p, jb->mark_len))
				return err_set(err, US_ENOMEM, "out of memory");
		}
		jb->is_flushed_since_mark = true;
		if ((rc = store__journal_flush(s, b, err)))
			return rc;
	}
	if (!jb->is_open) {
		if ((rc = entry_block_begin(&jb->w, &jb->buf, seq)))
			return err_set(err, rc, "cannot start a journal block at seq %llu",
				       (unsigned long long)seq);
		jb->first_seq = seq;
		jb->is_open = true;
		jb->chain_start = jb->chain;
	}
	if ((rc = entry_block_add(&jb->w, e, err)))
		return rc;
	jb->chain = entry_chain(jb->chain, jb->buf.p + jb->w.last, jb->buf.len - jb->w.last);
	return 0;
}

/* ---- reading the journal ---- */

struct store_journal_iter {
	rocksdb_iterator_t *it;
	rocksdb_readoptions_t *ro;
	uint64_t from;
	struct entry_block_reader r;
	bool is_block_open;
};

static const char journal_lower[1] = {'J'};
static const char journal_upper[1] = {'J' + 1};

/* A read options with the journal's bounds (both ends: seek_for_prev). */
static rocksdb_readoptions_t *journal_readoptions(void)
{
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();

	rocksdb_readoptions_set_iterate_lower_bound(ro, journal_lower, 1);
	rocksdb_readoptions_set_iterate_upper_bound(ro, journal_upper, 1);
	return ro;
}

int store_journal_iter_new(struct store *s, uint64_t from, struct store_journal_iter **out,
			   struct us_err *err)
{
	struct store_journal_iter *it = calloc(1, sizeof(*it));
	uint8_t k[9];

	if (!it)
		return err_set(err, US_ENOMEM, "out of memory");
	store__perf_off();
	it->ro = journal_readoptions();
	it->it = rocksdb_create_iterator(s->db, it->ro);
	it->from = from;
	k[0] = 'J';
	buf_put_u64be(k + 1, from);
	/* The block holding from starts at or before it; none: from is older
	 * than the journal, which then starts at its first block. */
	rocksdb_iter_seek_for_prev(it->it, (char *)k, sizeof(k));
	if (!rocksdb_iter_valid(it->it))
		rocksdb_iter_seek(it->it, (char *)k, sizeof(k));
	*out = it;
	return 0;
}

/* Opens the block under the iterator, which must be valid. */
static int journal_open_block(struct store_journal_iter *it, struct us_err *err)
{
	size_t klen, vlen;
	const char *k = rocksdb_iter_key(it->it, &klen);
	const char *v;
	uint64_t key_seq;
	int rc;

	if (klen != 9 || k[0] != 'J')
		return err_set(err, US_ECORRUPT, "bad journal key of %zu bytes", klen);
	key_seq = buf_get_u64be((const uint8_t *)k + 1);
	v = rocksdb_iter_value(it->it, &vlen);
	if ((rc = entry_block_open(&it->r, (const uint8_t *)v, vlen, err))) {
		err_wrap(err, "journal block at seq %llu", (unsigned long long)key_seq);
		return rc;
	}
	if (it->r.first_seq != key_seq)
		return err_set(err, US_ECORRUPT, "journal block at seq %llu says it starts at %llu",
			       (unsigned long long)key_seq, (unsigned long long)it->r.first_seq);
	it->is_block_open = true;
	return 0;
}

int store_journal_iter_next(struct store_journal_iter *it, uint64_t *seq, struct entry *e,
			    const uint8_t **raw, size_t *raw_len, struct us_err *err)
{
	char *errptr = NULL;
	int rc;

	for (;;) {
		if (it->is_block_open) {
			rc = entry_block_next(&it->r, e, seq, err);
			if (rc < 0) {
				err_wrap(err, "journal");
				return rc;
			}
			if (rc == 1) {
				if (*seq < it->from)
					continue;
				if (raw) {
					*raw = it->r.raw;
					*raw_len = it->r.raw_len;
				}
				return 1;
			}
			it->is_block_open = false;
			rocksdb_iter_next(it->it);
		}
		if (!rocksdb_iter_valid(it->it)) {
			rocksdb_iter_get_error(it->it, &errptr);
			return store__take_rocks_err(&errptr, err, "cannot read journal");
		}
		if ((rc = journal_open_block(it, err)))
			return rc;
	}
}

void store_journal_iter_free(struct store_journal_iter *it)
{
	if (!it)
		return;
	rocksdb_iter_destroy(it->it);
	rocksdb_readoptions_destroy(it->ro);
	free(it);
}

int store_journal_get(struct store *s, uint64_t seq, struct buf *raw, struct entry *e,
		      struct us_err *err)
{
	struct store_journal_iter *it;
	const uint8_t *p;
	uint64_t got;
	size_t len;
	int rc;

	if ((rc = store_journal_iter_new(s, seq, &it, err)))
		return rc;
	rc = store_journal_iter_next(it, &got, e, &p, &len, err);
	if (rc == 1 && got != seq)
		rc = 0;
	if (rc == 0)
		rc = err_set(err, US_ENOTFOUND, "journal entry %llu is not retained",
			     (unsigned long long)seq);
	if (rc == 1) {
		buf_reset(raw);
		rc = buf_append(raw, p, len) ? err_set(err, US_ENOMEM, "out of memory")
					      : entry_decode(raw->p, raw->len, e, err);
	}
	store_journal_iter_free(it);
	return rc;
}

int store_chain_before(struct store *s, uint64_t next_seq, uint64_t *chain, struct us_err *err)
{
	struct store_position pos;
	const rocksdb_snapshot_t *snap;
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	char *errptr = NULL, *hv;
	uint8_t k[9];
	uint64_t first = 0;
	size_t len;
	int rc = 0;

	store_get_position(s, &pos);
	if (next_seq == pos.seq + 1) {
		*chain = pos.chain;
		return 0;
	}
	if (next_seq <= 1) {
		*chain = 0;
		return 0;
	}
	if (next_seq > pos.seq + 1)
		return err_set(err, US_ERANGE, "seq %llu is past the last seq %llu",
			       (unsigned long long)next_seq - 1, (unsigned long long)pos.seq);
	/* The block that holds next_seq begins at or before it; the chain before
	 * it is kept beside it; fold its entries up to next_seq - 1. Both are
	 * read at one snapshot: a trim between the two reads must not make a
	 * block seem to have no chain. */
	snap = rocksdb_create_snapshot(s->db);
	ro = journal_readoptions();
	rocksdb_readoptions_set_snapshot(ro, snap);
	it = rocksdb_create_iterator(s->db, ro);
	k[0] = 'J';
	buf_put_u64be(k + 1, next_seq);
	rocksdb_iter_seek_for_prev(it, (char *)k, sizeof(k));
	if (rocksdb_iter_valid(it)) {
		size_t klen, vlen;
		const char *key = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);

		if (klen == 9 && key[0] == 'J') {
			first = buf_get_u64be((const uint8_t *)key + 1);
			k[0] = 'H';
			buf_put_u64be(k + 1, first);
			hv = rocksdb_get(s->db, ro, (char *)k, sizeof(k), &len, &errptr);
			if (!errptr && hv && len == 8) {
				*chain = buf_get_u64le((uint8_t *)hv);
				rc = entry_block_chain((const uint8_t *)v, vlen, next_seq - 1, chain,
						       err);
			} else if (!errptr) {
				first = 0; /* no chain kept for it */
			}
			rocksdb_free(hv);
		}
	}
	if (!errptr)
		rocksdb_iter_get_error(it, &errptr);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	rocksdb_release_snapshot(s->db, snap);
	if (rc) {
		rocksdb_free(errptr); /* the first failure is the one told */
		return rc;
	}
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read the history chain")))
		return rc;
	if (first == 0)
		return err_set(err, US_ENOTFOUND, "the history before seq %llu is not retained",
			       (unsigned long long)next_seq);
	return 0;
}

int store_journal_first(struct store *s, uint64_t *seq, struct us_err *err)
{
	rocksdb_readoptions_t *ro = journal_readoptions();
	rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, ro);
	char *errptr = NULL;
	int rc = 0;

	*seq = 0;
	rocksdb_iter_seek_to_first(it);
	if (rocksdb_iter_valid(it)) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);

		if (klen != 9)
			rc = err_set(err, US_ECORRUPT, "bad journal key of %zu bytes", klen);
		else
			*seq = buf_get_u64be((const uint8_t *)k + 1);
	} else {
		rocksdb_iter_get_error(it, &errptr);
		rc = store__take_rocks_err(&errptr, err, "cannot read journal");
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	return rc;
}

/* ---- upkeep ---- */

int store_journal_trim(struct store *s, uint64_t upto, struct us_err *err)
{
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	uint8_t lo[9], hi[9];
	char *errptr = NULL;
	bool is_found = false;
	int rc;

	if ((rc = store__check_writable(s, err)))
		return rc;
	if (upto == 0 || upto == UINT64_MAX)
		return 0;
	/* Everything before the block that holds upto + 1 goes. */
	lo[0] = hi[0] = 'J';
	buf_put_u64be(lo + 1, 0);
	buf_put_u64be(hi + 1, upto + 1);
	ro = journal_readoptions();
	it = rocksdb_create_iterator(s->db, ro);
	rocksdb_iter_seek_for_prev(it, (char *)hi, sizeof(hi));
	if (rocksdb_iter_valid(it)) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);

		if (klen == 9 && k[0] == 'J') {
			memcpy(hi, k, 9);
			/* Only when a block lies before it: an idle store, trimmed
			 * already, must not get a range tombstone every period. */
			rocksdb_iter_prev(it);
			if (rocksdb_iter_valid(it)) {
				k = rocksdb_iter_key(it, &klen);
				is_found = klen == 9 && k[0] == 'J';
			}
		}
	}
	rocksdb_iter_get_error(it, &errptr);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read journal")) || !is_found)
		return rc;
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	rocksdb_writebatch_delete_range(b, (char *)lo, sizeof(lo), (char *)hi, sizeof(hi));
	lo[0] = hi[0] = 'H'; /* the blocks' chains go with them */
	rocksdb_writebatch_delete_range(b, (char *)lo, sizeof(lo), (char *)hi, sizeof(hi));
	rocksdb_write(s->db, s->write_opts_nosync, b, &errptr);
	rocksdb_writebatch_destroy(b);
	return store__take_write_err(s, &errptr, err, "cannot trim journal");
}

/* store_check's journal walk: counts what it finds in out's journal fields
 * (zeroed by the caller); each block's 'H' is checked against what the
 * blocks before it fold to, and the end against pos (read before). */
int store__journal_check(struct store *s, const struct store_position *pos,
			 struct store_check *out, struct us_err *err)
{
	rocksdb_iterator_t *it;
	char *errptr = NULL;
	uint64_t prev = 0;
	bool is_last_end = true;
	bool is_first = true;      /* no block seen yet */
	bool is_prev_known = false; /* prev is the last seq of the block before */
	bool is_chain_known = false; /* chain is the history chain after prev */
	uint64_t chain = 0;
	int rc;

	it = rocksdb_create_iterator(s->db, s->read_opts);
	for (rocksdb_iter_seek(it, "J", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);
		struct entry_block_reader r;
		struct entry e;
		uint64_t seq, key_seq;

		if (klen < 1 || k[0] != 'J')
			break;
		if (klen != 9 || entry_block_open(&r, (const uint8_t *)v, vlen, NULL)) {
			/* counted once: where it ends is unknown, so the next
			 * block is not also taken for a gap */
			out->bad_records++;
			if (klen == 9) { /* a key without a seq leaves first_seq to the next */
				if (is_first)
					out->first_seq = buf_get_u64be((const uint8_t *)k + 1);
				is_first = false;
			}
			is_prev_known = false;
			continue;
		}
		key_seq = buf_get_u64be((const uint8_t *)k + 1);
		if (r.first_seq != key_seq)
			out->bad_records++;
		if (is_first)
			out->first_seq = key_seq;
		else if (is_prev_known && key_seq != prev + 1)
			out->gaps++;
		is_first = false;
		is_prev_known = true;
		/* the chain kept before the block is the one its predecessors fold to */
		{
			uint8_t hk[9];
			size_t hlen;
			char *hv;

			hk[0] = 'H';
			buf_put_u64be(hk + 1, key_seq);
			hv = rocksdb_get(s->db, s->read_opts, (char *)hk, sizeof(hk), &hlen, &errptr);
			if (errptr) {
				rocksdb_free(errptr);
				errptr = NULL;
				hv = NULL;
			}
			if (!hv || hlen != 8)
				out->chain_mismatches++;
			else if (is_chain_known && buf_get_u64le((uint8_t *)hv) != chain)
				out->chain_mismatches++;
			else
				chain = buf_get_u64le((uint8_t *)hv);
			is_chain_known = hv && hlen == 8;
			rocksdb_free(hv);
		}
		while ((rc = entry_block_next(&r, &e, &seq, NULL)) == 1) {
			out->entries++;
			is_last_end = e.is_commit_end;
			chain = entry_chain(chain, r.raw, r.raw_len);
		}
		if (rc < 0)
			out->bad_records++;
		prev = out->last_seq = key_seq + r.count - 1;
	}
	rocksdb_iter_get_error(it, &errptr);
	rocksdb_iter_destroy(it);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read journal")))
		return rc;
	if (!is_last_end)
		out->bad_records++; /* the last commit has no END: a half commit */
	if (is_chain_known && out->last_seq == pos->seq && chain != pos->chain)
		out->chain_mismatches++; /* the journal does not fold to the position's */
	return 0;
}
