/*
 * store_int.h - inside the store module (lib/store.c: open, commits, applies;
 * lib/store_journal.c: the journal; lib/store_read.c: reads and snapshots):
 * the struct, the key tags and the helpers its files share. Nothing outside
 * the module includes it; store.h is the contract. Internal names carry the
 * store__ prefix.
 */
#ifndef US_STORE_INT_H
#define US_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <rocksdb/c.h>

#include "store.h"
#include "us_limits.h"

#define STORE_MAGIC "USST"
#define STORE_VERSION 3
#define FLAG_LOGGED 0x01

#define KEY_FORMAT "Mformat"
#define KEY_POS "Mpos"
#define KEY_GEN "Mgen"
#define KEY_GEN_BYTES (sizeof(KEY_GEN) - 1 + 8) /* KEY_GEN, then the generation (u64be) */
#define KEY_NODE "Mnode"
#define KEY_SITE "Msite"
#define KEY_ROLE "Mrole"  /* one byte, enum ns_role: set by a role change (promote) */
#define KEY_PRIMARY "Mprimary" /* fenced: u64le generation, u64le first seq, HOST:PORT */
#define KEY_EXPORT "Mexport"   /* the last rewind's export: u64le entries, its path */
/* The position record: generation, seq, time_ms, chain (u64le each). */
#define POS_BYTES 32

/* One catalog row: an account (file_len 0) or a file. */
struct cat_row {
	char key[US_ACCOUNT_MAX_LEN + 1 + US_FILE_MAX_LEN + 1]; /* account 0x00 file */
	size_t key_len;
	bool is_logged;
};

/* Rows sorted by key (memcmp, then length): lookups bsearch, inserts memmove.
 * Files are created rarely; a site has thousands at most. */
struct catalog {
	struct cat_row *rows;
	size_t n, cap;
};

/* The journal block the writer is filling (store_journal.c, whose
 * store__journal_ calls are the only ones to touch it). */
struct journal_builder {
	struct buf buf;
	struct entry_block_writer w;
	bool is_open;
	uint64_t first_seq;
	size_t target;             /* put the block once it is this large */
	uint64_t chain;            /* the history chain after the last entry added */
	uint64_t chain_start;      /* ... before the open block's first entry */
	uint64_t mark_chain, mark_chain_start;
	/* store__journal_mark's snapshot, to take a refused commit's entries back out */
	size_t mark_len;           /* 0: no block was open */
	uint32_t mark_count;
	uint64_t mark_first_seq;
	bool is_flushed_since_mark;
	struct buf saved;          /* buf[0 .. mark_len), once a flush happened */
};

struct store {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_block_based_table_options_t *table_opts;
	rocksdb_cache_t *cache;               /* own, or NULL when shared */
	rocksdb_readoptions_t *read_opts;
	rocksdb_writeoptions_t *write_opts;   /* sync = 1 */
	rocksdb_writeoptions_t *write_opts_nosync;
	/* store_load_entries: no WAL (an image is loaded into a store that is
	 * discarded unless whole); store_set_position flushes it first */
	rocksdb_writeoptions_t *write_opts_nowal;
	bool is_load_unflushed;
	_Atomic int role;                     /* enum ns_role */
	pthread_mutex_t role_lock;            /* one role change at a time (promote, fence) */
	/* fenced: where the primary that superseded this node is (pos_lock) */
	struct store_primary_info primary;
	/* store_hold_commits: commits refused with this message (pos_lock);
	 * "" when not held */
	char hold[US_ERR_MSG_MAX];
	bool is_read_only;
	size_t max_body;
	char *dir;                            /* as opened (owned) */
	struct disk_dir dir_id;               /* to notice it gone or replaced */
	const struct disk_reserve *reserve;   /* borrowed; NULL: no space check */
	/* A RocksDB write or sync failed on the WAL (take_write_err), or the
	 * directory went: the instance is not written to again. Set by any
	 * writer. */
	atomic_bool is_failed;
	char node_id[33];                     /* 'M' "node", read at open */
	/* 'M' "site": the node id of the site whose history this replica holds
	 * ("" before the first); read at open, written by store_bind_site (one
	 * writer: the caller serializes, as it does applies). */
	char site_id[US_NODE_ID_MAX_LEN + 1];

	pthread_mutex_t pos_lock;             /* guards pos: written by the writer, read by all */
	struct store_position pos;

	/* Writer thread only. */
	struct catalog cat;
	struct catalog cat_saved;
	struct buf key;
	struct journal_builder jb;
};

/* A snapshot (store.h): store_read.c makes them, store.c's full-copy
 * iterator reads through one. */
struct store_snap {
	struct store *s;                 /* borrowed: the snapshot ends before it closes */
	const rocksdb_snapshot_t *snap;
	rocksdb_readoptions_t *ro;       /* reads at snap */
	struct store_position pos;       /* as read at snap */
};

/* Turns RocksDB's *errptr into err (US_EIO, US_EUNAVAIL for a lock,
 * US_ENOSPC, US_ECORRUPT) and frees it; 0 when it is NULL. Only the store
 * module touches errptr. */
int store__take_rocks_err(char **errptr, struct us_err *err, const char *what);

/* store__take_rocks_err for a write or a sync: one that failed on the WAL
 * also marks the store failed for good (store.c says why). */
int store__take_write_err(struct store *s, char **errptr, struct us_err *err, const char *what);
/* 0, or the refusal (US_EPRECOND read-only, US_EIO failed) of any write. */
int store__check_writable(struct store *s, struct us_err *err);

/* Turns off RocksDB's per-thread perf counters on the calling thread. */
void store__perf_off(void);

/* Shared by store.c and store_role.c. */
void store__encode_pos(uint8_t out[POS_BYTES], const struct store_position *p);
/* US_ENOSPC (is_space: below the reserve) or the directory's refusal. */
int store__check_disk(struct store *s, bool is_space, struct us_err *err);
int store__catalog_copy(struct catalog *dst, const struct catalog *src);
int store__catalog_load(struct store *s, struct us_err *err);
/* One op into b as role applies it (a standby: a primary's journaled op;
 * a primary: a commit's) at seq; *is_journaled: whether it ships. */
int store__apply_op(struct store *s, rocksdb_writebatch_t *b, const struct entry *e,
		    enum ns_role role, uint64_t seq, bool *is_journaled, struct us_err *err);

/* Keys (docs/store-format.md); each resets k first. US_ENOMEM. */
int store__key_file(struct buf *k, char tag, const char *account, size_t account_len,
		    const char *file, size_t file_len);
int store__key_section(struct buf *k, const char *account, size_t account_len,
		       const char *file, size_t file_len, uint8_t section);
/* The generation history's key of generation (KEY_GEN_BYTES bytes). */
void store__key_gen(uint8_t *out, uint64_t generation);
int store__key_item(struct buf *k, const struct entry *e);
/* The first key after every key that starts with prefix. */
int store__key_successor(struct buf *out, const uint8_t *prefix, size_t len);

/* 0, or US_ECORRUPT for a value that is not a position record. */
int store__decode_pos(const char *v, size_t len, struct store_position *p);

/* ---- the journal (store_journal.c) ----
 *
 * The writer builds the journal in s->jb (writer thread only). These calls
 * only put into the batch they are given, never write to RocksDB: the
 * caller's batch holds the items, the journal blocks and the new position
 * together. On failure they return a US_E* code with err filled. */

/* Sets up the builder embedded in a store: a block is put once it holds
 * target_bytes (or US_BLOCK_MAX_ENTRIES entries). _release frees its
 * buffers (after _init, or zeroed). */
void store__journal_init(struct journal_builder *jb, size_t target_bytes);
void store__journal_release(struct journal_builder *jb);
/* Starts a batch's journal: no block open, the history chain at chain (the
 * position's, the one before the batch's first entry). */
void store__journal_start(struct store *s, uint64_t chain);
/* Closes the open block without putting it anywhere: the batch it was for
 * has been written (the block went in by _flush) or dropped. */
void store__journal_drop(struct store *s);
/* Adds e as entry seq (the seq after the last one added) to the open block,
 * opening one at seq when none is; a block that is full goes into b first.
 * e is borrowed for the call (encoded into the block). */
int store__journal_put(struct store *s, rocksdb_writebatch_t *b, const struct entry *e,
		       uint64_t seq, struct us_err *err);
/* Marks the last entry added END: the commit's last (it is in the open
 * block, since a block is put only before an entry is added). */
void store__journal_mark_end(struct store *s);
/* A commit's save point, taken with its batch's: _rollback takes the
 * entries added since back out, with the batch rolled back to its own save
 * point (a block put in between leaves with it and is rebuilt open). */
void store__journal_mark(struct store *s);
void store__journal_rollback(struct store *s);
/* The history chain after the last entry added: the new position's. */
uint64_t store__journal_chain(const struct store *s);
/* Puts the open block, and the chain before it, into b and closes it;
 * nothing when no block is open. The batch's last journal call, before b
 * is written. */
int store__journal_flush(struct store *s, rocksdb_writebatch_t *b, struct us_err *err);

/* A replica's block, for an apply given its entries without one: _begin at
 * first_seq, _add each entry in seq order, _finish returns the block
 * (borrowed: the builder's buffer, until the next store__journal_ call).
 * Between batches only: it uses the writer's buffer. */
int store__journal_block_begin(struct store *s, uint64_t first_seq, struct us_err *err);
int store__journal_block_add(struct store *s, const struct entry *e, struct us_err *err);
int store__journal_block_finish(struct store *s, const uint8_t **block, size_t *len,
				struct us_err *err);
/* Puts block (len bytes, borrowed, stored as it is) into b as the journal
 * block at first_seq ('J'), with chain_before, the history chain before its
 * first entry ('H'). US_ENOMEM. */
int store__journal_put_block(struct store *s, rocksdb_writebatch_t *b, uint64_t first_seq,
			     const uint8_t *block, size_t len, uint64_t chain_before,
			     struct us_err *err);

/* store_check's journal walk: fills out's first_seq, last_seq, entries,
 * gaps, bad_records and chain_mismatches (zeroed by the caller), against
 * pos, the position read before. Fails only on a read error. */
int store__journal_check(struct store *s, const struct store_position *pos,
			 struct store_check *out, struct us_err *err);

#endif
