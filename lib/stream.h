/*
 * stream.h - the replication stream's entry frames, both ends.
 *
 * A frame (protobuf Entries, include/understudy.proto) carries whole commits:
 * first_seq, count, raw_len and an LZ4 block (raw LZ4 format) of an entry
 * block (docs/entry-format.md). The sender builds it straight from the
 * journal; the receiver checks everything before anything is applied:
 * raw_len within bounds, LZ4 decodes to exactly raw_len bytes, the block's
 * magic, version and checksum, its first_seq and count equal to the frame's,
 * every entry decodes, and the last entry ends a commit.
 */
#ifndef US_STREAM_H
#define US_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "entry.h"
#include "err.h"
#include "store.h"

/* A decoded frame: entries borrow from raw. */
struct stream_frame {
	uint64_t first_seq;
	struct buf raw;          /* the decompressed block */
	struct entry *entries;
	size_t n;
	size_t cap;
};

void stream_frame_init(struct stream_frame *f);
void stream_frame_release(struct stream_frame *f);

/* Builds the Entries of journal seqs from .. (at least one whole commit, then
 * more whole commits while the raw block is under target_bytes) into block
 * (the LZ4 bytes, reset first). Fills *first_seq, *count and *raw_len.
 * US_ENOTFOUND when seq from is not retained (the receiver needs a full
 * copy); 0 with *count 0 when the journal ends before from. scratch is a
 * caller-owned buffer reused between calls. */
int stream_build_entries(struct store *s, uint64_t from, size_t target_bytes, struct buf *scratch,
			 struct buf *block, uint64_t *first_seq, uint32_t *count,
			 uint32_t *raw_len, struct us_err *err);

/* LZ4-compresses raw into out (reset first), the frame body's format. 0,
 * US_ETOOBIG (raw over 2 GiB), US_ENOMEM or US_EIO. */
int stream_compress(const struct buf *raw, struct buf *out, struct us_err *err);

/* Checks and decodes one frame's fields into f (reused between calls).
 * Every failure is US_ECORRUPT or US_ETOOBIG with a message naming the
 * frame's seq; nothing in f is valid then. */
int stream_decode_entries(uint64_t first_seq, uint32_t count, uint32_t raw_len,
			  const uint8_t *block, size_t block_len, struct stream_frame *f,
			  struct us_err *err);

#endif
