/*
 * fuzz_stream.c - stream_decode_entries (lib/stream.h), the archiver's check
 * of a replication frame's Entries before anything is applied.
 *
 * Input: a header that stands for the Entries' other fields, then the block.
 *   u8      mode: bit 0 clear: the rest is the LZ4 block, decoded as is;
 *           bit 0 set: the rest is an entry block in clear, whose checksum
 *           (last 4 bytes) the target sets and which it compresses with
 *           stream_compress, raw_len its length: the fuzzer then reaches the
 *           checks after LZ4 and the checksum
 *   u64le   first_seq
 *   u32le   count
 *   u32le   raw_len (mode bit 0 clear)
 *   ..      the block
 * A frame taken has count entries from first_seq, borrowed from its raw
 * block, the last one ending a commit, each encoding back to itself.
 */
#include <xxhash.h>

#include "fuzz.h"
#include "stream.h"

#define HEADER_BYTES 17
#define MODE_CLEAR 0x01

static void decode(uint64_t first_seq, uint32_t count, uint32_t raw_len, const uint8_t *block,
		   size_t block_len)
{
	struct stream_frame f;
	struct us_err err;
	int rc;

	stream_frame_init(&f);
	err_clear(&err);
	rc = stream_decode_entries(first_seq, count, raw_len, block, block_len, &f, &err);
	if (rc) {
		fuzz_check_refusal(rc, &err);
		FUZZ_CHECK(rc == US_ECORRUPT || rc == US_ETOOBIG);
		goto out;
	}
	FUZZ_CHECK(f.first_seq == first_seq && f.n == count && f.raw.len == raw_len);
	FUZZ_CHECK(f.entries[f.n - 1].is_commit_end);
	for (size_t i = 0; i < f.n; i++)
		fuzz_check_entry(&f.entries[i], f.raw.p, f.raw.p + f.raw.len);
out:
	stream_frame_release(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *rest = data + HEADER_BYTES;
	size_t rest_len = size - HEADER_BYTES;
	struct buf lz4, raw;
	struct us_err err;
	uint64_t first_seq;
	uint32_t count, raw_len;

	if (size < HEADER_BYTES)
		return 0;
	first_seq = buf_get_u64le(data + 1);
	count = buf_get_u32le(data + 9);
	raw_len = buf_get_u32le(data + 13);
	if (!(data[0] & MODE_CLEAR)) {
		decode(first_seq, count, raw_len, rest, rest_len);
		return 0;
	}

	buf_init(&raw);
	buf_init(&lz4);
	FUZZ_CHECK(buf_append(&raw, rest, rest_len) == 0);
	if (raw.len >= 4)
		buf_put_u32le(raw.p + raw.len - 4, XXH32(raw.p, raw.len - 4, 0));
	FUZZ_CHECK(stream_compress(&raw, &lz4, &err) == 0);
	decode(first_seq, count, (uint32_t)raw.len, lz4.p, lz4.len);
	buf_release(&lz4);
	buf_release(&raw);
	return 0;
}
