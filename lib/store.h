/*
 * store.h - one namespace's database on RocksDB: accounts, files (DATA and DICT
 * sections), items, the journal and the (generation, seq) position, all in one
 * RocksDB database so that an operation, its journal entry and the new
 * position are written in one atomic batch. Key layout: docs/store-format.md.
 *
 * Threads: store_commit_group is called by one writer thread at a time (the
 * committer); every read call is safe from any thread, concurrently with it.
 * The module is three files: lib/store.c (open, writes), lib/store_journal.c
 * (the journal: its blocks, reads and trim) and lib/store_read.c (reads,
 * snapshots), sharing lib/store_int.h.
 * Invariant: the journal holds seq first_retained..position.seq with no gap;
 * a commit's entries get a contiguous range, and the last carries the END flag.
 */
#ifndef US_STORE_H
#define US_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "entry.h"
#include "disk.h"
#include "err.h"
#include "role.h"
#include "us_limits.h"

struct store;
struct store_iter;
struct store_position;

/* A block cache several stores share (the archiver's namespaces): one memory
 * budget however many namespaces. RocksDB's background threads are process-
 * wide already (its default Env). */
struct store_cache;
struct store_cache *store_cache_new(size_t bytes);
/* After every store using it is closed; NULL is a no-op. */
void store_cache_free(struct store_cache *c);

struct store_opts {
	bool is_read_only;          /* open for reading; no lock taken, no writes */
	size_t max_body;            /* 0: US_BODY_MAX_BYTES */
	size_t block_cache_bytes;   /* own cache size when cache is NULL; 0: 64 MiB */
	struct store_cache *cache;  /* shared cache (borrowed), or NULL for an own one */
	size_t journal_block_bytes; /* 0: US_JOURNAL_BLOCK_BYTES (tests set it small) */
	/* Free space every write keeps (disk.h), borrowed for the store's life;
	 * NULL: none. Whatever it is, a write or a sync is refused (US_EIO) once
	 * the store's directory is gone, replaced or read-only: nothing is
	 * acknowledged that may not be durable. */
	const struct disk_reserve *reserve;
	/* The namespace's role on this node (role.h): ROLE_PRIMARY (0: a site)
	 * takes commits (store_commit_group), ROLE_STANDBY and ROLE_REJOINING
	 * apply a primary's stream and images (store_apply_entries,
	 * store_load_entries); each refuses the other with US_EPRECOND. */
	enum ns_role role;
};

/* Opens (creating when missing, unless read-only) the store in dir and returns
 * a new handle. US_EUNAVAIL when another process holds it, US_ECORRUPT when dir
 * holds something that is not an understudy store of a known version. */
int store_open(struct store **out, const char *dir, const struct store_opts *opts,
	       struct us_err *err);
/* Closes and frees; NULL is a no-op. No call may be in flight. */
void store_close(struct store *s);

/* The namespace's role on this node. Any thread. */
enum ns_role store_role(const struct store *s);
/* Moves the role along one of role.h's transitions (asserted: any other is a
 * bug of the caller, which handles "already in that role" itself). In
 * memory only: a change that must outlive a restart is one of the calls
 * below, which write it with what goes with it. A store opens in the role
 * it last wrote, or else in store_opts.role. */
void store_set_role(struct store *s, enum ns_role to);
/* Promote: a standby becomes the namespace's primary. Its generation goes
 * up by one and the history gets (generation, position.seq + 1), with the
 * role, in one synced batch, before any commit of the new generation can
 * be taken; the primary it followed, if any, is forgotten. US_EPRECOND
 * unless a standby. *out (may be NULL): the new position. */
int store_promote(struct store *s, struct store_position *out, struct us_err *err);
/* Where the primary that superseded this node is: its address, its
 * generation and that generation's first seq, which is where this node's
 * history forked from the namespace's (its commits from there on are its
 * own, never shipped). */
struct store_primary_info {
	char addr[US_ADDR_MAX_LEN + 1];  /* HOST:PORT */
	uint64_t generation;
	uint64_t first_seq;
};
/* Fence: a primary learned it was superseded. The role and where the
 * primary is are written in one synced batch; from then on a commit is
 * refused (US_EPRECOND) with a message naming the primary. Fencing a fenced
 * store changes nothing; any other role is US_EPRECOND. */
int store_fence(struct store *s, const struct store_primary_info *primary, struct us_err *err);
/* Switchover, the primary's side. store_hold_commits refuses every commit
 * from now on (US_EPRECOND, why as the message) while the role stays
 * primary; store_release_commits ends it. store_hand_over: a primary hands
 * the role to the node at to (its generation, to.generation = this one's +
 * 1, begins at to.first_seq = position + 1): the new generation, its
 * history record, role standby and where the primary is now, in one synced
 * batch (the hold ends). US_EPRECOND unless primary, US_EINVAL for a to
 * that does not continue this node's position. */
void store_hold_commits(struct store *s, const char *why);
void store_release_commits(struct store *s);
int store_hand_over(struct store *s, const struct store_primary_info *to, struct us_err *err);
/* *out: the primary that superseded this node, and that it follows once
 * rejoined (addr "" and 0s if none). */
void store_primary(struct store *s, struct store_primary_info *out);
/* The history: the first seq of generation (what a promote, a full copy or
 * the store's creation recorded); US_ENOTFOUND for one it does not hold. */
int store_generation_start(struct store *s, uint64_t generation, uint64_t *first_seq,
			   struct us_err *err);

/* One application commit. ops are entries (op, account, file, section, id,
 * body, flag) borrowed for the call; the store fills time_ms and END. */
struct store_commit {
	struct entry *ops;
	size_t n_ops;
	/* out */
	int rc;               /* 0 or the US_E* code of this commit's refusal */
	struct us_err err;
	uint64_t first_seq;   /* journaled range; both 0 when nothing was journaled */
	uint64_t last_seq;
};

/* Validates each commit in order against the store and the commits before it
 * in the group (a file created by commit 1 can be written by commit 2), then
 * writes every valid one, their journal entries and the new position in one
 * batch and syncs it. (A commit that turns logging on starts a second batch:
 * its re-ship reads the committed state, which must include the commits
 * before it.) A refused commit changes nothing and does not hold the
 * others back. Returns 0 (look at each rc) or a negative code when the batch
 * could not be written: then no commit in the group happened. */
int store_commit_group(struct store *s, struct store_commit **commits, size_t n,
		       uint64_t time_ms, struct us_err *err);

/* Replica apply (the archiver): entries first_seq .. first_seq + n - 1, as a
 * site journaled them, applied in one batch with their journal block and the
 * new position. block (block_len bytes) is the entry block the entries were
 * decoded from, checked (a stream frame's): it is stored as the journal
 * as it is; NULL builds one from the entries. Refused, changing nothing:
 * first_seq other than position + 1 (US_ERANGE, the message says gap or
 * overlap and both seqs), a last entry without END (US_EINVAL: a half commit
 * is never applied), an entry that breaks a name or size rule (US_EINVAL), a
 * block whose first seq or count is not the entries' (US_EINVAL). With
 * is_sync the batch is fsynced before the call returns; without, store_sync
 * makes it durable later. */
int store_apply_entries(struct store *s, uint64_t first_seq, struct entry *entries, size_t n,
			const uint8_t *block, size_t block_len, bool is_sync, struct us_err *err);

/* Makes every batch written so far durable (one fsync of the WAL) and returns
 * the seq that is now durable. */
int store_sync(struct store *s, uint64_t *durable_seq, struct us_err *err);

/* The position: generation and the last journaled seq, and the commit time of
 * that seq (ms since the epoch, 0 if none). */
struct store_position {
	uint64_t generation;
	uint64_t seq;
	uint64_t time_ms;
	uint64_t chain;       /* the history chain after seq (entry.h, entry_chain) */
};
void store_get_position(struct store *s, struct store_position *pos);

/* Rewind: a fenced node takes the namespace's primary's state and history,
 * in one synced batch: the image's entries (applied as a standby applies
 * them: WRITE, DELETE, CREATE_FILE, DELETE_FILE, SET_LOGGING, for exactly
 * what the two histories touched since they forked) on top of what it
 * holds, its journal dropped (its own tail was exported before; the
 * primary's history goes on from to.seq + 1), the position to, the history
 * record (to.generation, first_seq) and role rejoining; the primary it
 * follows stays recorded (store_primary) at its generation. US_EPRECOND unless fenced; a refused entry changes
 * nothing. */
struct store_rewind {
	struct store_position to;  /* the primary's position the image is at */
	uint64_t first_seq;        /* the first seq of to.generation */
	struct entry *image;
	size_t n_image;
	const char *export_path;   /* where the exported tail went ("" or NULL: none) */
	uint64_t exported;         /* its entries */
};
int store_rewind(struct store *s, const struct store_rewind *rw, struct us_err *err);
/* The last rewind's export, as store_rewind wrote it: path ("" when none)
 * and its entries. */
int store_rewound_export(struct store *s, char *path, size_t size, uint64_t *exported,
			 struct us_err *err);
/* Rebuild (a site whose store was lost, built again from a full copy of
 * its namespace's primary: `understudy rebuild`): the store, restored at
 * the primary's position, takes the identity of the site the namespace is
 * bound to (node_id, 32 hex digits), the primary's history record
 * (primary->generation, its first seq) and role rejoining with where the
 * primary is, in one synced batch: the collector opened on it follows the
 * primary. US_EINVAL for a bad id or a primary at another generation. */
int store_follow(struct store *s, const char *node_id, const struct store_primary_info *primary,
		 struct us_err *err);
/* A rejoining node has caught up with its primary: role standby, written
 * (synced). A standby already: nothing. Any other role is US_EPRECOND. */
int store_caught_up(struct store *s, struct us_err *err);

/* A snapshot: the store as it was after one commit, for reads that must see
 * one state however long they run and however fast writes go on (a RocksDB
 * snapshot: no copy, the same cost at any size). Its position is the one of
 * the state it shows. It keeps RocksDB from dropping what it sees, so the
 * disk holds the writes since as well: end it when done. Every snapshot of a
 * store is freed before store_close; any thread may use one, several at once.
 * Reads take one as `at`; NULL reads the latest state. */
struct store_snap;
int store_snap_new(struct store *s, struct store_snap **out, struct us_err *err);
void store_snap_free(struct store_snap *snap);   /* NULL: a no-op */
/* Borrowed for the snapshot's life. */
const struct store_position *store_snap_position(const struct store_snap *snap);

/* Reads one item into body (reset first). US_ENOTFOUND for an absent item,
 * and for a file that does not exist (the message says which). */
int store_get(struct store *s, const struct store_snap *at, const char *account, const char *file,
	      uint8_t section, const uint8_t *id, size_t id_len, struct buf *body,
	      struct us_err *err);

/* Iterates a section's items in id byte order, after start_after when given.
 * US_ENOTFOUND when the file does not exist. The iterator reads one
 * consistent state: at's, or an implicit snapshot taken here (at NULL); at
 * outlives the iterator. */
int store_iter_new(struct store *s, const struct store_snap *at, const char *account,
		   const char *file, uint8_t section, const uint8_t *start_after,
		   size_t start_after_len, struct store_iter **out, struct us_err *err);
/* The same, from the last id down to the first: what a report's second
 * scanning thread reads (pick_exec.c). */
int store_iter_new_reverse(struct store *s, const struct store_snap *at, const char *account,
			   const char *file, uint8_t section, struct store_iter **out,
			   struct us_err *err);
/* 1 with id and body borrowed until the next call; 0 at the end; <0 error. */
int store_iter_next(struct store_iter *it, const uint8_t **id, size_t *id_len,
		    const uint8_t **body, size_t *body_len, struct us_err *err);
void store_iter_free(struct store_iter *it);

struct store_file_info {
	char account[65];
	char file[65];
	bool is_logged;
	bool is_account_logged;
	uint64_t data_items;
	uint64_t dict_items;
	uint64_t stale_since_seq;   /* replica: logging turned off at this seq (file or account); 0 */
};

/* Whether file account/file exists at `at` (file NULL: whether the account
 * has any file), without counting anything: one point read or one seek. */
int store_has_files(struct store *s, const struct store_snap *at, const char *account,
		    const char *file, bool *is_found, struct us_err *err);

/* Every file (of account, when not NULL) sorted by account then file, with item
 * counts, all read at one point (at's, or now's). *files is a new array
 * (free()) of *n. */
int store_list_files(struct store *s, const struct store_snap *at, const char *account,
		     struct store_file_info **files, size_t *n, struct us_err *err);
/* The same without the item counts (0s): a lookup of the files and their
 * flags, not a scan of their items. */
int store_list_file_names(struct store *s, const struct store_snap *at, const char *account,
			  struct store_file_info **files, size_t *n, struct us_err *err);

/* Reads journal entry seq: its encoded bytes into raw (reset first) and e
 * decoded from them (borrowing from raw). US_ENOTFOUND if not retained. */
int store_journal_get(struct store *s, uint64_t seq, struct buf *raw, struct entry *e,
		      struct us_err *err);

/* Iterates journal entries from seq from (the first retained one when from
 * is older). 1 with *seq, *e decoded and, when raw is not NULL, *raw and
 * *raw_len its encoded bytes (entry_block_add_raw takes them), all borrowed
 * until the next call; 0 at the end; < 0 on a read error or a journal block
 * that does not decode (US_ECORRUPT). The iterator reads one consistent state
 * (an implicit snapshot at creation): make a new one to see newer seqs. */
struct store_journal_iter;
int store_journal_iter_new(struct store *s, uint64_t from, struct store_journal_iter **out,
			   struct us_err *err);
int store_journal_iter_next(struct store_journal_iter *it, uint64_t *seq, struct entry *e,
			    const uint8_t **raw, size_t *raw_len, struct us_err *err);
void store_journal_iter_free(struct store_journal_iter *it);

/* The history chain after seq next_seq - 1 (0 for next_seq 1), from the
 * retained journal; the position's own chain for next_seq = position + 1.
 * US_ENOTFOUND when next_seq - 1 is neither retained nor the seq just
 * before the first retained block. */
int store_chain_before(struct store *s, uint64_t next_seq, uint64_t *chain, struct us_err *err);

/* The first journal seq still retained (0 when the journal is empty). */
int store_journal_first(struct store *s, uint64_t *seq, struct us_err *err);

/* Drops journal entries up to seq upto (retention), whole blocks at a time:
 * the block holding upto + 1 stays (the last block, when upto is at or past
 * the last seq), with whatever entries before it it holds, so the retained
 * journal may begin inside a commit. Writes nothing when no block lies before
 * that one. The position is not changed. */
int store_journal_trim(struct store *s, uint64_t upto, struct us_err *err);

/* An image of the store: one consistent state (at's, or a snapshot taken
 * here when at is NULL; at outlives the iterator) as entries, each marked a
 * whole commit, with pos the position that state is at. First the accounts
 * whose own logging flag is off (SET_LOGGING, file_len 0, off), then a
 * CREATE_FILE for every file with its own flag, then a WRITE for each item
 * (a file's DATA then its DICT), files in key order: what a save holds
 * (docs/save-format.md). With is_shipped_only, a full copy for a receiver
 * whose position is older than the retained journal: no accounts, and only
 * the files that ship (their flag and their account's both on), created
 * logged. Entries borrow from the iterator until the next call. next: 1, 0
 * at the end, < 0 on error. */
struct store_image_opts {
	const char *account;   /* only this account (NULL: every one); copied */
	const char *file;      /* with account: only this file */
	bool is_shipped_only;
};
struct store_image_iter;
int store_image_iter_new(struct store *s, const struct store_snap *at,
			 const struct store_image_opts *opts, struct store_image_iter **out,
			 struct store_position *pos, struct us_err *err);
int store_image_iter_next(struct store_image_iter *it, struct entry *e, struct us_err *err);
void store_image_iter_free(struct store_image_iter *it);

/* The receiving end of a full copy or of a save (restore), on a fresh
 * store: applies an image's entries (store_image_iter's, a save's: a
 * CREATE_FILE with the file's own logged flag, on or off; a SET_LOGGING of
 * an account, file_len 0, off; a WRITE to a file created before, DATA or
 * DICT) as a replica would, with no journal, no position change, no
 * fsync and no WAL (the store is thrown away unless loaded whole). The flags it writes are the ones a site's own commits write (never
 * stale: stale_since_seq 0), so the store equals its source in files, flags
 * and items. Any other entry (another op, a file reset, a file's
 * SET_LOGGING, an account turned on) is US_EINVAL; a write to a file not
 * created before is US_ENOTFOUND; a refused call changes nothing. Then
 * store_set_position flushes what was loaded into SST files, puts the copy at
 * pos (with the generation history) and syncs: the journal stays empty, the
 * next commit is pos.seq + 1. */
int store_load_entries(struct store *s, struct entry *entries, size_t n, struct us_err *err);
int store_set_position(struct store *s, const struct store_position *pos, struct us_err *err);

/* The store's node id: 32 hex digits, made at creation, stable for its life. */
const char *store_node_id(const struct store *s);

/* Whether the store takes no more writes since one failed on its WAL or its
 * directory went (disk.h): close and open it again to write. */
bool store_is_failed(struct store *s);

/* A replica's site: the node id of the site whose history it holds, "" until
 * bound. store_bind_site writes it (synced); a namespace has one history, so
 * the archiver binds at the first Hello and refuses any other node. */
const char *store_site_id(const struct store *s);
int store_bind_site(struct store *s, const char *node_id, struct us_err *err);

/* Integrity check for tools and tests: walks the whole journal and checks that
 * it is contiguous, ends at the position's seq, that every record decodes and
 * that every commit ends with an END entry. */
struct store_check {
	uint64_t first_seq;     /* first retained, 0 if the journal is empty */
	uint64_t last_seq;
	uint64_t entries;
	uint64_t gaps;          /* places where seq jumps */
	uint64_t bad_records;   /* journal blocks that do not decode, or a half commit at the end */
	uint64_t chain_mismatches; /* blocks whose kept history chain is missing or is not what
				    * the journal before them folds to; 1 more when the journal
				    * does not fold to the position's chain */
	uint64_t position_seq;  /* what the position says */
	uint64_t generation;
	uint64_t items;         /* items in all files */
	uint64_t files;
};
int store_check(struct store *s, struct store_check *out, struct us_err *err);

#endif
