/*
 * save.h - the save format: one consistent image of a store (a save, the
 * full copy that seeds an archiver, a rejoining site's export) as a stream
 * of bytes, and its one writer and one reader. The byte tables are in
 * docs/save-format.md; this comment repeats them.
 *
 * Conventions as docs/entry-format.md: u8, u16/u32/u64le little-endian,
 * varint LEB128, str = varint length + bytes. A save is a header, frames,
 * a trailer, and nothing after it:
 *
 * Header
 *   4   magic "USSV"
 *   1   version (1, SAVE_FORMAT_VERSION)
 *   1   kind: 1 save, 2 seed copy, 3 export (informational)
 *   4   header_len u32le: bytes of the header, magic to checksum included
 *       (SAVE_HEADER_MIN_BYTES .. US_SAVE_HEADER_MAX_BYTES)
 *   str namespace      a namespace name
 *   str scope_account  "" (the whole namespace) or an account name
 *   str scope_file     "" (the whole account) or a file name (needs an account)
 *   8   generation u64le  } the image is the state after seq: its position
 *   8   seq u64le         } (both <= US_SEQ_MAX)
 *   8   time_ms u64le     commit time of seq
 *   8   chain u64le       the history chain after seq (entry.h)
 *   str creator        node id of the writer (1..63)
 *   str site           "" or the node id of the site whose history it is
 *   8   created_ms u64le  wall clock when written
 *   4   u32le XXH32 of the header bytes before it, seed 0
 *
 * Frame (0 or more)
 *   1   tag 'F'
 *   4   raw_len u32le (24 .. US_SAVE_FRAME_MAX_RAW_BYTES)
 *   4   comp_len u32le (1 .. LZ4_compressBound(raw_len))
 *   ..  comp_len bytes: LZ4 raw block of one entry block ("USJB", entry.h)
 *       of exactly raw_len bytes, whose first_seq counts the save's entries
 *       from 1 (the entries of the frames before it + 1)
 *
 * Trailer
 *   1   tag 'T'
 *   8   entries u64le, 8 frames u64le, 8 files u64le
 *   ..  files x (str account, str file, u64le data_items, u64le dict_items),
 *       in the order the files were declared
 *   8   u64le: bytes of the save before the checksum (its offset)
 *   8   u64le XXH64 of every byte of the save before it, seed 0
 *
 * Entries, in this order: first the declarations: CREATE_FILE of every file
 * (flag: its logged flag; never a reset) and SET_LOGGING of an account whose
 * flag is off (file "", is_on 0); then WRITE of every item (DATA or DICT),
 * to declared files only. No other op, no file or account declared twice,
 * nothing out of the header's scope. Every entry is its own commit (END set)
 * with the header's time_ms: the image has no commits. Items are written in
 * the order given (a store's key order); the format does not look for an
 * id written twice.
 */
#ifndef US_SAVE_H
#define US_SAVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "entry.h"
#include "err.h"
#include "us_limits.h"

#define SAVE_MAGIC "USSV"
#define SAVE_FORMAT_VERSION 1
/* A header with every string empty: magic 4, version 1, kind 1, header_len
 * 4, three 1-byte empty strs, four u64, two 1-byte strs, created_ms 8, the
 * checksum 4. The creator must not be empty, so a real header is longer. */
#define SAVE_HEADER_MIN_BYTES 59
#define SAVE_FRAME_HEADER_BYTES 9 /* tag, raw_len, comp_len */
#define SAVE_TAG_FRAME 'F'
#define SAVE_TAG_TRAILER 'T'

enum save_kind {
	SAVE_KIND_SAVE = 1,   /* `understudy save`, the archiver's on-line archive */
	SAVE_KIND_SEED = 2,   /* the full copy that seeds an archiver */
	SAVE_KIND_EXPORT = 3, /* a rejoining site's export */
};

/* The header's fields. Names are NUL-terminated here (names never hold a
 * NUL: the writer and the reader check them with names.h). */
struct save_header {
	uint8_t kind;                                 /* enum save_kind */
	char ns[US_NAMESPACE_MAX_LEN + 1];
	char scope_account[US_ACCOUNT_MAX_LEN + 1];  /* "": the whole namespace */
	char scope_file[US_FILE_MAX_LEN + 1];        /* "": the whole account */
	uint64_t generation;
	uint64_t seq;         /* the image is the state after this seq */
	uint64_t time_ms;     /* commit time of seq; every entry carries it */
	uint64_t chain;       /* history chain after seq (opaque here) */
	char creator[US_NODE_ID_MAX_LEN + 1];        /* node id of the writer */
	char site[US_NODE_ID_MAX_LEN + 1];           /* "": not told */
	uint64_t created_ms;  /* wall clock when written */
};

/* What a whole save held: filled by save_writer_finish, and by the reader
 * once it has read and checked the trailer. */
struct save_summary {
	uint64_t entries;     /* declarations and items */
	uint64_t items;       /* WRITE entries */
	uint64_t files;       /* CREATE_FILE entries */
	uint64_t frames;
	uint64_t bytes;       /* the whole save, checksum included */
	uint64_t xxh64;       /* the trailer's checksum */
};

/* Where a writer's bytes go: all len bytes, or an error (US_EIO, US_ENOSPC,
 * US_EUNAVAIL...) with err filled; the writer passes its code on. */
typedef int (*save_sink_fn)(void *arg, const uint8_t *p, size_t len, struct us_err *err);

/* Where a reader's bytes come from: up to len bytes into p, *got of them (0
 * at the end of the save: the reader then asks no more), or an error with err
 * filled. A source fed as bytes arrive (the receiving end of a full copy)
 * returns SAVE_MORE when it has none yet but more will come: the reader then
 * returns SAVE_MORE too, and is called again once more has come. It may do
 * so only between a frame and the next (or the trailer): the feeder hands the
 * reader the header, each frame and the trailer whole, as a writer's sink
 * gets them. */
#define SAVE_MORE 2
typedef int (*save_source_fn)(void *arg, uint8_t *p, size_t len, size_t *got,
			      struct us_err *err);

struct save_writer;
struct save_reader;

/* Checks h (names by names.h, kind, seq and generation <= US_SEQ_MAX) and
 * writes the header to sink. 0 and *out (caller frees with
 * save_writer_free), US_EINVAL for a bad header, US_ENOMEM, or the sink's
 * error. sink and arg must outlive the writer. */
int save_writer_new(struct save_writer **out, const struct save_header *h, save_sink_fn sink,
		    void *arg, struct us_err *err);

/* Adds one entry (read only during the call: copied). The writer stores it
 * with END set and the header's time_ms, whatever e says. An entry out of
 * place (see the top of this file) is US_EINVAL and changes nothing; a
 * field over its bound too. A frame that fills up goes to the sink now: if
 * the sink fails, its error is returned and the writer is failed (every
 * later call refuses, US_EIO; free it). */
int save_writer_add(struct save_writer *w, const struct entry *e, struct us_err *err);

/* Writes the last frame and the trailer; fills *out when not NULL. The
 * writer takes nothing more afterwards (US_EINVAL). A save is whole only
 * when finish returned 0. */
int save_writer_finish(struct save_writer *w, struct save_summary *out, struct us_err *err);

/* NULL: a no-op. An unfinished save is left as it is (the sink's owner
 * removes or discards it). */
void save_writer_free(struct save_writer *w);

/* Reads and checks the header into *h: 0 and *out (caller frees with
 * save_reader_free). US_ECORRUPT for a file that is not a save, is
 * truncated or damaged; US_EUNIMPL for a format version other than 1; the
 * source's error; US_ENOMEM. Messages name the byte offset: "save format
 * version 7 at offset 4 is not supported (this program reads 1)". src and
 * arg must outlive the reader. */
int save_reader_new(struct save_reader **out, save_source_fn src, void *arg,
		    struct save_header *h, struct us_err *err);

/* The next entry: 1 and *e filled (it borrows from the reader: valid until
 * the next call or free), in the save's order, each checked as the writer
 * checks it; 0 at the end, returned only once the trailer was read and
 * checked (entry, frame and per-file item counts equal to what was read,
 * its offset, the XXH64 of the whole save, nothing after it).
 * US_ECORRUPT (truncated, damaged) naming the byte offset, as
 * "truncated save: frame at offset 1048593 wants 262153 bytes, only 1200
 * left", "damaged save: checksum mismatch at offset 91 (stored ..., computed
 * ...)"; the source's error; US_ENOMEM. After an error every call returns
 * it again. The whole-file checksum is checked only at the end: whoever
 * builds something from the entries keeps it aside until next returns 0. */
int save_reader_next(struct save_reader *r, struct entry *e, struct us_err *err);
/* (and SAVE_MORE, for a source that has no more bytes yet: nothing is lost,
 * call again; a source that runs dry inside a frame is US_ECORRUPT) */

/* The trailer's figures, once next has returned 0; NULL before. Borrowed
 * from r. */
const struct save_summary *save_reader_summary(const struct save_reader *r);

/* NULL: a no-op. */
void save_reader_free(struct save_reader *r);

/* Sinks and sources over stdio and memory. */

/* arg: a FILE * open for writing. A short write is US_ENOSPC (disk full) or
 * US_EIO, naming errno. The caller flushes, syncs and closes. */
int save_file_sink(void *arg, const uint8_t *p, size_t len, struct us_err *err);
/* arg: a FILE * open for reading. A read error is US_EIO. */
int save_file_source(void *arg, uint8_t *p, size_t len, size_t *got, struct us_err *err);
/* arg: a struct buf *, appended to. US_ENOMEM. */
int save_buf_sink(void *arg, const uint8_t *p, size_t len, struct us_err *err);

/* A save in memory (borrowed; it must outlive the reader). */
struct save_mem_source {
	const uint8_t *p;
	size_t len;
	size_t pos;
};
/* arg: a struct save_mem_source *. Never fails. */
int save_mem_source(void *arg, uint8_t *p, size_t len, size_t *got, struct us_err *err);

/* A save fed as it arrives (the receiving end of a full copy): pieces are
 * pushed (copied) as they come, whole (the header, a frame, the trailer:
 * what a writer's sink gets), and end says no more will come. As a source
 * it answers SAVE_MORE while empty and not ended. Bytes read are dropped.
 * Once the reader has read the trailer, the feeder refuses any more bytes
 * (the reader checks only those it already holds). */
struct save_queue {
	struct buf b;
	size_t pos;        /* first byte not read yet */
	bool is_ended;
};
void save_queue_init(struct save_queue *q);
void save_queue_release(struct save_queue *q);
int save_queue_push(struct save_queue *q, const uint8_t *p, size_t len, struct us_err *err);
void save_queue_end(struct save_queue *q);
/* arg: a struct save_queue *. */
int save_queue_source(void *arg, uint8_t *p, size_t len, size_t *got, struct us_err *err);

#endif
