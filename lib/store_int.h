/*
 * store_int.h - inside the store module (lib/store.c: open, commits, applies,
 * the journal; lib/store_read.c: reads and snapshots): the struct, the key
 * tags and the helpers both files use. Nothing outside the module includes
 * it; store.h is the contract. Internal names carry the store__ prefix.
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
#define KEY_NODE "Mnode"
#define KEY_SITE "Msite"
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

/* The journal block the writer is filling (see jb_add). */
struct journal_builder {
	struct buf buf;
	struct entry_block_writer w;
	bool is_open;
	uint64_t first_seq;
	size_t target;             /* put the block once it is this large */
	uint64_t chain;            /* the history chain after the last entry added */
	uint64_t chain_start;      /* ... before the open block's first entry */
	uint64_t mark_chain, mark_chain_start;
	/* jb_mark's snapshot, to take a refused commit's entries back out */
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

/* Turns off RocksDB's per-thread perf counters on the calling thread. */
void store__perf_off(void);

/* Keys (docs/store-format.md); each resets k first. US_ENOMEM. */
int store__key_file(struct buf *k, char tag, const char *account, size_t account_len,
		    const char *file, size_t file_len);
int store__key_section(struct buf *k, const char *account, size_t account_len,
		       const char *file, size_t file_len, uint8_t section);
int store__key_item(struct buf *k, const struct entry *e);
/* The first key after every key that starts with prefix. */
int store__key_successor(struct buf *out, const uint8_t *prefix, size_t len);

/* 0, or US_ECORRUPT for a value that is not a position record. */
int store__decode_pos(const char *v, size_t len, struct store_position *p);

#endif
