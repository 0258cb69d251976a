/*
 * fuzz_block.c - the entry block reader (lib/entry.h): entry_block_open, then
 * entry_block_next to the end, as the archiver reads a frame's block and every
 * reader of the journal reads its blocks.
 *
 * Each input is read twice: as it is, and with its last 4 bytes set to the
 * right checksum, so that the fuzzer gets past the checksum to the entries.
 * A block read to its end is written again by the block writer (begin,
 * add_raw each entry, finish), and that block must read back to the same
 * entries: reader and writer agree.
 */
#include <xxhash.h>

#include "fuzz.h"

#define CHECKSUM_BYTES 4

/* Reads the block at p; returns how many entries it yielded when it was read
 * to its end, else 0. The entries' raw bytes are appended to raws, each after
 * its length (a u32le), when raws is not NULL. */
static uint32_t read_block(const uint8_t *p, size_t len, struct buf *raws)
{
	struct entry_block_reader r;
	struct us_err err;
	struct entry e;
	uint64_t seq;
	uint32_t n = 0;
	int rc;

	err_clear(&err);
	rc = entry_block_open(&r, p, len, &err);
	if (rc) {
		fuzz_check_refusal(rc, &err);
		return 0;
	}
	FUZZ_CHECK(r.first_seq >= 1 && r.count >= 1 && r.count <= US_BLOCK_MAX_ENTRIES);
	FUZZ_CHECK(r.first_seq + (r.count - 1) >= r.first_seq);
	while ((rc = entry_block_next(&r, &e, &seq, &err)) == 1) {
		FUZZ_CHECK(n < r.count);
		FUZZ_CHECK(seq == r.first_seq + n);
		FUZZ_CHECK(r.raw >= p + ENTRY_BLOCK_HEADER_BYTES);
		FUZZ_CHECK(fuzz_is_inside(r.raw, r.raw_len, p, p + len - CHECKSUM_BYTES));
		fuzz_check_entry(&e, r.raw, r.raw + r.raw_len);
		if (raws) {
			FUZZ_CHECK(buf_append_u32le(raws, (uint32_t)r.raw_len) == 0);
			FUZZ_CHECK(buf_append(raws, r.raw, r.raw_len) == 0);
		}
		n++;
	}
	if (rc) {
		fuzz_check_refusal(rc, &err);
		FUZZ_CHECK(rc == US_ECORRUPT);
		return 0;
	}
	FUZZ_CHECK(n == r.count);
	return n;
}

/* Writes the entries of raws (read_block's) as a block from first_seq and
 * reads it back: the same entries, byte for byte. */
static void rewrite_block(uint64_t first_seq, uint32_t count, const struct buf *raws)
{
	struct entry_block_writer w;
	struct buf block, again;
	struct us_err err;
	size_t at = 0;

	buf_init(&block);
	buf_init(&again);
	FUZZ_CHECK(entry_block_begin(&w, &block, first_seq) == 0);
	for (uint32_t i = 0; i < count; i++) {
		uint32_t n = buf_get_u32le(raws->p + at);

		FUZZ_CHECK(entry_block_add_raw(&w, raws->p + at + 4, n, &err) == 0);
		at += 4 + (size_t)n;
	}
	FUZZ_CHECK(entry_block_finish(&w, &err) == 0);
	FUZZ_CHECK(read_block(block.p, block.len, &again) == count);
	FUZZ_CHECK(fuzz_same_bytes(again.p, again.len, raws->p, raws->len));
	buf_release(&again);
	buf_release(&block);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf raws;
	uint8_t *fixed;
	uint32_t n;

	read_block(data, size, NULL);
	if (size < ENTRY_BLOCK_HEADER_BYTES + CHECKSUM_BYTES)
		return 0;

	/* exactly size bytes, so that ASan sees a read past the block */
	fixed = malloc(size);
	FUZZ_CHECK(fixed);
	memcpy(fixed, data, size);
	buf_put_u32le(fixed + size - CHECKSUM_BYTES, XXH32(fixed, size - CHECKSUM_BYTES, 0));
	buf_init(&raws);
	n = read_block(fixed, size, &raws);
	if (n)
		rewrite_block(buf_get_u64le(fixed + 5), n, &raws);
	buf_release(&raws);
	free(fixed);
	return 0;
}
