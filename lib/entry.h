/*
 * entry.h - the compact entry encoding: one journaled operation, and blocks of
 * many for the stream. The byte tables are in docs/entry-format.md; this
 * comment repeats them.
 *
 * Entry (the unit; its seq is never inside it: the journal key or the block's
 * first_seq + index gives it):
 *   u8      op | 0x80 when it is the last entry of its commit (END)
 *   varint  time_ms   commit time, ms since the Unix epoch (same for a commit)
 *   then, by op:
 *   WRITE        str account, str file, u8 section, bytes id, bytes body
 *   DELETE       str account, str file, u8 section, bytes id
 *   CREATE_FILE  str account, str file, u8 is_logged (2: reset, below)
 *   CLEAR_FILE   str account, str file, u8 section
 *   DELETE_FILE  str account, str file
 *   SET_LOGGING  str account, str file (length 0: the account), u8 is_on
 *   HEARTBEAT, CANARY, VERIFY_MARK   varint value
 *   (str and bytes are varint length + bytes; section 0 DATA, 1 DICT)
 * A decoder consumes exactly its input: trailing bytes are an error.
 *
 * Block (several entries, seq first_seq .. first_seq+count-1; a frame of the
 * stream, and a journal value in the store):
 *   4  magic "USJB"
 *   1  version (1)
 *   8  first_seq, u64le (>= 1: seqs count from 1; the last seq fits in a u64)
 *   4  count, u32le (1 .. US_BLOCK_MAX_ENTRIES)
 *   .. count x (varint length, entry)
 *   4  u32le xxh32 of every byte before it, seed 0
 *
 * Decoded entries borrow their strings and bytes from the input buffer: they
 * are valid while it is.
 */
#ifndef US_ENTRY_H
#define US_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

enum entry_op {
	ENTRY_WRITE = 1,
	ENTRY_DELETE = 2,
	ENTRY_CREATE_FILE = 3,
	ENTRY_CLEAR_FILE = 4,
	ENTRY_DELETE_FILE = 5,
	ENTRY_SET_LOGGING = 6,
	ENTRY_HEARTBEAT = 7,
	ENTRY_CANARY = 8,
	ENTRY_VERIFY_MARK = 9,
};

#define ENTRY_OP_MAX ENTRY_VERIFY_MARK
#define ENTRY_FLAG_END 0x80

enum entry_section {
	SECTION_DATA = 0,
	SECTION_DICT = 1,
};

#define ENTRY_BLOCK_VERSION 1
#define ENTRY_BLOCK_MAGIC "USJB"
#define ENTRY_BLOCK_HEADER_BYTES 17 /* magic 4, version 1, first_seq 8, count 4 */

struct entry {
	uint8_t op;           /* enum entry_op */
	bool is_commit_end;   /* last entry of its commit */
	uint64_t time_ms;
	const char *account;  /* not NUL-terminated */
	size_t account_len;
	const char *file;     /* not NUL-terminated; length 0 allowed for SET_LOGGING */
	size_t file_len;
	uint8_t section;      /* enum entry_section */
	const uint8_t *id;
	size_t id_len;
	const uint8_t *body;
	size_t body_len;
	bool flag;            /* CREATE_FILE: is_logged; SET_LOGGING: is_on */
	/* CREATE_FILE only, encoded as is_logged 2, journaled by a site only when
	 * logging turns on: the file exists and is empty afterwards, whether or
	 * not the receiver had it (its copy may be stale, or it never saw the
	 * file, created unlogged), and stays stale until the SET_LOGGING marker
	 * that ends the re-ship. */
	bool is_reset;
	uint64_t value;       /* HEARTBEAT, CANARY, VERIFY_MARK */
};

/* Appends e's encoding to out. The fields are not checked against the name
 * rules (names.h does that before); a bad op or section is US_EINVAL. */
int entry_encode(const struct entry *e, struct buf *out, struct us_err *err);

/* Decodes exactly len bytes into e (which then borrows from p). Refuses an
 * unknown op, a section other than 0/1, a string or id over its SPEC bound, a
 * body over US_BODY_MAX_BYTES, a truncated field or trailing bytes with
 * US_ECORRUPT; p is not modified. */
int entry_decode(const uint8_t *p, size_t len, struct entry *e, struct us_err *err);

/* Block writer: begin, add entries, finish. out is appended to; the block
 * starts at the out->len seen by begin. */
struct entry_block_writer {
	struct buf *out;
	size_t start;     /* offset of the magic in out */
	size_t last;      /* offset of the last entry's first byte (its op) */
	uint32_t count;
};

/* 0, US_EINVAL for first_seq 0, US_ENOMEM (out unchanged). */
int entry_block_begin(struct entry_block_writer *w, struct buf *out, uint64_t first_seq);
/* Appends one entry; on failure (bad entry US_EINVAL, a full block US_ETOOBIG,
 * US_ENOMEM) out is as before the call and the block can still be finished. */
int entry_block_add(struct entry_block_writer *w, const struct entry *e, struct us_err *err);
/* Appends one entry already encoded (entry_encode's bytes, or a reader's
 * raw/raw_len), which the caller has checked: the journal's own entries.
 * Failures as entry_block_add. */
int entry_block_add_raw(struct entry_block_writer *w, const uint8_t *p, size_t len,
			struct us_err *err);
/* Marks the last entry added the END of its commit. No entry yet: a no-op. */
void entry_block_mark_end(struct entry_block_writer *w);
/* Writes count and the checksum. An empty block is US_EINVAL. On failure the
 * partial block is taken back out of out (out->len = w->start). */
int entry_block_finish(struct entry_block_writer *w, struct us_err *err);

/* Block reader: open checks magic, version, count bounds and the checksum
 * before anything is read; next then yields each entry with its seq. */
struct entry_block_reader {
	const uint8_t *p;      /* next entry */
	const uint8_t *end;    /* start of the checksum */
	uint64_t first_seq;
	uint32_t count;
	uint32_t index;        /* entries returned so far */
	const uint8_t *raw;    /* the last entry returned, encoded (borrowed) */
	size_t raw_len;
};

int entry_block_open(struct entry_block_reader *r, const uint8_t *p, size_t len,
		     struct us_err *err);
/* 1 and *e, *seq filled; 0 after the last entry (and only if the block was
 * consumed exactly); US_ECORRUPT on a bad entry, with a message such as
 * "entry 3 of block at seq 1042: body length 99999999 over the limit of
 * 16777216" (entries numbered from 1). */
int entry_block_next(struct entry_block_reader *r, struct entry *e, uint64_t *seq,
		     struct us_err *err);

/* The history chain (docs/entry-format.md, "History chain"): a u64 that
 * folds every journaled entry in seq order, so that two stores at one seq
 * with the same chain hold the same history up to it. chain(0) = 0;
 * chain(seq) = XXH64(entry bytes after the op byte, seed = chain(seq - 1) +
 * (op byte & 0x7F)): the END flag is left out (the site sets it once its
 * commit is complete), everything else of the entry is in. */
uint64_t entry_chain(uint64_t chain, const uint8_t *entry, size_t len);

/* Folds the entries of a block into *chain, those with seq <= upto_seq
 * (UINT64_MAX: all). The block was checked (entry_block_open) or built
 * here; a length that does not fit is still refused (US_ECORRUPT). */
int entry_block_chain(const uint8_t *block, size_t len, uint64_t upto_seq, uint64_t *chain,
		      struct us_err *err);

/* A static lower-case name of an op ("write", "create-file"), "?" if unknown. */
const char *entry_op_name(uint8_t op);

#endif
