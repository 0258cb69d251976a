/*
 * understudy.h - the C client library of understudy.
 *
 * What an application at a site links to commit and read items, and what the
 * `understudy` command line is built on. Every call is synchronous and talks
 * gRPC (package understudy.v1, include/understudy.proto) to a collector or an
 * archiver. A client is not thread-safe: use one per thread.
 *
 * Errors: every call that can fail returns 0 or a negative US_E* code and, when
 * err is not NULL, fills it with the code and a one-line message that names the
 * thing (namespace, file, id). A failed call changes nothing on the server
 * unless its message says otherwise (US_EUNAVAIL after a send: the outcome of a
 * commit is then unknown).
 *
 * Ownership: strings and byte arrays passed in are borrowed for the call only.
 * Everything returned through a pointer-to-pointer is new and freed with the
 * matching us_*_free function (or free() where it says so).
 */
#ifndef UNDERSTUDY_H
#define UNDERSTUDY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: each maps to one gRPC status (docs/architecture.md). */
enum {
	US_OK = 0,
	US_EINVAL = -1,      /* INVALID_ARGUMENT: a bad name, id, body or request */
	US_ENOTFOUND = -2,   /* NOT_FOUND: no such item, file or namespace */
	US_EEXIST = -3,      /* ALREADY_EXISTS: file already created */
	US_EPRECOND = -4,    /* FAILED_PRECONDITION: wrong namespace, wrong role */
	US_ETOOBIG = -5,     /* RESOURCE_EXHAUSTED: over a size limit */
	US_EUNAVAIL = -6,    /* UNAVAILABLE: server not reachable or not ready */
	US_ETIMEOUT = -7,    /* DEADLINE_EXCEEDED */
	US_EPERM = -8,       /* PERMISSION_DENIED */
	US_EUNAUTH = -9,     /* UNAUTHENTICATED */
	US_EIO = -10,        /* INTERNAL: disk or store failure */
	US_ECORRUPT = -11,   /* DATA_LOSS: a checksum or format check failed */
	US_ENOMEM = -12,     /* RESOURCE_EXHAUSTED: out of memory */
	US_ECANCELLED = -13, /* CANCELLED */
	US_EUNIMPL = -14,    /* UNIMPLEMENTED */
	US_ERANGE = -15,     /* OUT_OF_RANGE */
	US_ECONFIG = -16,    /* a bad configuration file or value */
	US_ENOSPC = -17,     /* RESOURCE_EXHAUSTED: the disk is under its reserve */
};

#define US_ERR_MSG_MAX 512

typedef struct us_err {
	int code;                  /* 0 or a US_E* code */
	char msg[US_ERR_MSG_MAX];  /* one line, lower case, no final period */
} us_err_t;

/* A static name for a US_E* code ("invalid argument", "not found"...). */
const char *us_strerror(int code);

/* Operation kinds of a commit. */
typedef enum us_op_kind {
	US_OP_WRITE = 1,       /* write item id with body */
	US_OP_DELETE = 2,      /* delete item id (absent: no error) */
	US_OP_CREATE_FILE = 3, /* create account/file; is_logged applies */
	US_OP_CLEAR_FILE = 4,  /* delete every item of one section */
	US_OP_DELETE_FILE = 5, /* delete the file, both sections */
	US_OP_SET_LOGGING = 6, /* file (or, with file NULL, account) logged flag */
} us_op_kind_t;

typedef struct us_op {
	us_op_kind_t kind;
	const char *account;
	const char *file;      /* NULL only for US_OP_SET_LOGGING on an account */
	int is_dict;           /* DICT section instead of DATA */
	const uint8_t *id;     /* WRITE, DELETE */
	size_t id_len;
	const uint8_t *body;   /* WRITE */
	size_t body_len;
	int is_logged;         /* CREATE_FILE, SET_LOGGING */
} us_op_t;

typedef struct us_client_opts {
	int timeout_ms;          /* per call; 0: 30 s */
	const char *token;       /* bearer token, or NULL */
	const char *tls_ca_file; /* PEM CA to verify the server with, or NULL */
	int is_prefer_standby;   /* several addresses: reads go to a standby when one has the
				  * namespace (reports), else to the primary */
} us_client_opts_t;

typedef struct us_client us_client_t;

/* Returns a new client for HOST:PORT (opts may be NULL), or NULL with err set.
 * No connection is made until the first call. Free with us_client_free.
 *
 * addr may list several nodes, HOST:PORT,HOST:PORT (a site and the
 * archiver; at most 8). Then the client follows the namespace's primary:
 * it asks each node's status, sends commits where the namespace's role is
 * primary, and asks again after a failure. A commit refused by a node that
 * is not the primary (FAILED_PRECONDITION: nothing was applied), or that
 * could not reach its node at all, is sent once more to the primary found
 * then; a commit whose answer was lost is never repeated: its error says
 * the outcome is unknown. Reads go to the primary (or a standby, with
 * is_prefer_standby), and once more elsewhere when their node is gone.
 * Admin calls (promote, adopt, saves, save --archive) go to the first
 * address that answers as an archiver; status to the first address. */
us_client_t *us_client_new(const char *addr, const us_client_opts_t *opts, us_err_t *err);
void us_client_free(us_client_t *c);

/* Commits ops atomically in namespace ns. On success *last_seq (may be NULL) is
 * the commit's last sequence number, or 0 when nothing in it is journaled
 * (only unlogged files). Durable on the site before it returns. */
int us_commit(us_client_t *c, const char *ns, const us_op_t *ops, size_t n_ops,
	      uint64_t *last_seq, us_err_t *err);

/* Reads one item. snapshot 0 reads the latest state. On success *body is a new
 * buffer (free()) of *body_len bytes (a 0-byte body gives a non-NULL buffer).
 * US_ENOTFOUND when the item is absent. */
int us_read(us_client_t *c, const char *ns, const char *account, const char *file,
	    int is_dict, const uint8_t *id, size_t id_len, uint64_t snapshot,
	    uint8_t **body, size_t *body_len, us_err_t *err);

/* Called once per item in id order; id and body are borrowed for the call.
 * A non-zero return stops the scan, and us_scan returns it. */
typedef int (*us_scan_fn)(void *arg, const uint8_t *id, size_t id_len,
			  const uint8_t *body, size_t body_len);

typedef struct us_scan_opts {
	int is_dict;
	uint64_t snapshot;       /* 0: latest */
	uint64_t limit;          /* 0: all */
	int is_keys_only;        /* bodies are not sent (body NULL, body_len 0) */
	const uint8_t *start_after; /* resume after this id, or NULL */
	size_t start_after_len;
} us_scan_opts_t;

int us_scan(us_client_t *c, const char *ns, const char *account, const char *file,
	    const us_scan_opts_t *opts, us_scan_fn fn, void *arg, us_err_t *err);

typedef struct us_file_info {
	char account[65];
	char file[65];
	int is_logged;         /* the file's own flag */
	int is_account_logged; /* the account's flag; the file ships only when both are on */
	uint64_t data_items;
	uint64_t dict_items;
	uint64_t stale_since_seq; /* archiver: logging turned off at this seq; 0 if not */
} us_file_info_t;

/* Lists files (of one account when account is not NULL), sorted by account then
 * file, at a snapshot (0: the latest state). *files is a new array of *n
 * entries, freed with free(). */
int us_list_files(us_client_t *c, const char *ns, const char *account, uint64_t snapshot,
		  us_file_info_t **files, size_t *n, us_err_t *err);
/* The same without the item counts (data_items and dict_items 0): the
 * files and their flags only, at the cost of a lookup, not of a scan. */
int us_list_file_names(us_client_t *c, const char *ns, const char *account, uint64_t snapshot,
		       us_file_info_t **files, size_t *n, us_err_t *err);

/* A snapshot of namespace ns: reads given its id (us_read, us_scan,
 * us_list_files) see the state after commit (generation, seq), however long
 * they run. It ends when released, after ttl_ms without a read, or when the
 * server stops; then reads at it fail (US_ENOTFOUND; US_EPRECOND when an
 * archiver's copy was replaced under it). US_ETOOBIG when the namespace has
 * the most open snapshots the server allows. */
typedef struct us_snapshot {
	uint64_t id;
	uint64_t generation;
	uint64_t seq;
	uint64_t time_ms;   /* commit time of seq, ms since the epoch; 0: no commit yet */
	uint64_t ttl_ms;
} us_snapshot_t;

/* Store.Query (docs/reports.md): a Pick LIST, SORT, COUNT or SELECT
 * sentence run against one file of account in namespace ns at one
 * snapshot (opts->snapshot, or one taken for the query), with the file's
 * dictionary. The head comes once, first; then the rows in order. Every
 * pointer is borrowed for the callback. A non-zero return from a callback
 * stops the query and us_query returns it. US_EINVAL (naming the word) for
 * a sentence that does not parse or an attribute the dictionary does not
 * define; US_ENOTFOUND for a file that does not exist. */
typedef struct us_bytes {
	const uint8_t *p;
	size_t len;
} us_bytes_t;

typedef struct us_query_column {
	const char *name;            /* the dictionary item; "@ID" for the id column */
	const us_bytes_t *heading;   /* its lines */
	size_t n_heading;
	uint32_t width;
	char justify;                /* 'L', 'R' or 'T' */
	int is_total;
	int is_break;
} us_query_column_t;

typedef struct us_query_head {
	const char *verb;            /* LIST, SORT, COUNT or SELECT */
	const char *file;
	uint64_t generation, seq;    /* the state the query reads: after this commit */
	uint64_t time_ms;            /* commit time of seq */
	const us_query_column_t *columns; /* none for COUNT and SELECT */
	size_t n_columns;
	int is_hdr_supp;             /* HDR-SUPP: no page heading */
	int is_col_hdr_supp;         /* COL-HDR-SUPP: no column headings */
} us_query_head_t;

typedef enum us_row_kind {
	US_ROW_ITEM = 1,    /* an item */
	US_ROW_BREAK = 2,   /* a BREAK-ON group ended: "***" in its column, subtotals */
	US_ROW_TOTAL = 3,   /* the grand totals, last */
	US_ROW_MISSING = 4, /* an id the sentence named is not on file (no cells) */
} us_row_kind_t;

/* A column's values in a row, converted for display; a value's subvalues
 * are separated by a subvalue mark (0xFC). */
typedef struct us_query_cell {
	const us_bytes_t *values;
	size_t n_values;
} us_query_cell_t;

typedef struct us_query_row {
	int kind;                    /* us_row_kind_t */
	const uint8_t *id;           /* as stored; empty for BREAK and TOTAL */
	size_t id_len;
	const us_query_cell_t *cells; /* one a column (none for SELECT and MISSING) */
	size_t n_cells;
} us_query_row_t;

typedef struct us_query_sink {
	int (*on_head)(void *arg, const us_query_head_t *head);
	int (*on_row)(void *arg, const us_query_row_t *row);
	void *arg;
} us_query_sink_t;

typedef struct us_queried {
	uint64_t count;     /* items listed, counted or selected */
	uint64_t missing;   /* ids named but not on file */
} us_queried_t;

int us_query(us_client_t *c, const char *ns, const char *account, const char *sentence,
	     uint64_t snapshot, const us_query_sink_t *sink, us_queried_t *out, us_err_t *err);

/* Admin.Save: a consistent save of namespace ns (of one account, or one
 * file, when given; NULL: all) at snapshot (0: one taken for the save),
 * streamed to fn as the bytes of a save file (docs/save-format.md), in
 * order; items is how many items the bytes so far hold. A non-zero return
 * from fn stops the save and us_save returns it. The save is whole only when
 * us_save returned 0: *out then says what it holds. */
typedef int (*us_save_fn)(void *arg, const uint8_t *data, size_t len, uint64_t items);

typedef struct us_saved {
	uint64_t generation;
	uint64_t seq;        /* the state after this commit */
	uint64_t time_ms;    /* commit time of seq */
	uint64_t items;
	uint64_t files;
	uint64_t bytes;      /* the whole save file */
	uint64_t xxh64;      /* its checksum */
	char path[1500];     /* is_archive: where the archiver keeps it */
	/* us_list_saves */
	char name[256];
	char account[65];    /* scope: "" the whole namespace */
	char file[65];
	uint64_t created_ms;
} us_saved_t;

typedef struct us_save_opts {
	const char *account;  /* NULL: the whole namespace */
	const char *file;     /* NULL: the whole account */
	uint64_t snapshot;    /* 0: one taken for the save */
	int is_archive;       /* the archiver keeps it (fn gets no bytes) */
} us_save_opts_t;

int us_save(us_client_t *c, const char *ns, const us_save_opts_t *opts, us_save_fn fn,
	    void *arg, us_saved_t *out, us_err_t *err);

/* Admin.ListSaves (archiver): ns's kept saves, oldest first; *saves is a new
 * array of *n (free()). */
int us_list_saves(us_client_t *c, const char *ns, us_saved_t **saves, size_t *n,
		  us_err_t *err);

/* Admin.ReadJournal: ns's retained journal from seq from to its end (the
 * frame that reaches the position when the call began is the last; it may
 * hold later commits too), frame by frame as the stream carries it: fn
 * gets each frame's first seq, count, raw length, its LZ4 block (borrowed
 * for the call; lib/stream.h decodes it) and the history chain before it. A
 * non-zero return from fn stops the read and us_read_journal returns it.
 * US_ERANGE when from is not retained there. */
typedef int (*us_journal_fn)(void *arg, uint64_t first_seq, uint32_t count, uint32_t raw_len,
			     const uint8_t *block, size_t block_len, uint64_t prev_chain);

int us_read_journal(us_client_t *c, const char *ns, uint64_t from, us_journal_fn fn, void *arg,
		    us_err_t *err);

int us_open_snapshot(us_client_t *c, const char *ns, us_snapshot_t *out, us_err_t *err);
int us_release_snapshot(us_client_t *c, const char *ns, uint64_t id, us_err_t *err);

typedef struct us_archiver_link {
	char addr[256];
	int is_connected;
	uint64_t acked_seq;
	uint64_t lag_entries;
} us_archiver_link_t;

typedef struct us_ns_status {
	char ns[64];
	char role[16];            /* primary, standby, fenced, rejoining */
	uint64_t generation;
	uint64_t applied_seq;
	uint64_t durable_seq;
	uint64_t master_seq;
	uint64_t lag_entries;
	uint64_t lag_ms;
	int is_connected;
	int64_t heartbeat_age_ms; /* -1: never */
	uint64_t refusals;        /* pushes refused since the last applied frame */
	char refusal[US_ERR_MSG_MAX]; /* the last refusal's message; "" when none */
	uint64_t snapshots;       /* open snapshots of the namespace */
	uint64_t saves;           /* the on-line archive: saves kept, */
	uint64_t save_bytes;      /* their bytes, */
	uint64_t oldest_save_seq; /* the oldest whole one's seq (0: none), */
	uint64_t journal_first_seq; /* the copy's first retained journal seq */
	int is_site_following;    /* primary here: its rejoined site pulls from it */
	uint64_t site_durable_seq; /* ... and has this durably */
	uint64_t generation_first_seq; /* the first seq of its generation */
} us_ns_status_t;

typedef struct us_status {
	char node[16];            /* "collector" or "archiver" */
	/* collector */
	char ns[64];
	char role[16];
	char commit_mode[48];     /* "local", "async", "sync" or "sync (fallen back to async)" */
	uint64_t generation;
	uint64_t last_seq;
	uint64_t journal_first_seq; /* first journal seq still retained; 0: none */
	uint64_t snapshots;       /* open snapshots of the namespace */
	char primary[256];        /* fenced: the primary that superseded it ("" none) */
	uint64_t primary_generation;
	uint64_t fork_seq;        /* fenced: where its history forked from the primary's */
	uint64_t divergent_entries; /* fenced: its own entries from fork_seq on */
	/* rejoining or standby: following the primary (Replication.Pull) */
	int is_following;         /* connected to it now */
	uint64_t master_seq;      /* the primary's last seq, as last told */
	uint64_t lag_entries;
	char export_path[1200];   /* the last rejoin's export ("" none) */
	uint64_t exported;        /* entries in it */
	char follow_error[US_ERR_MSG_MAX]; /* the last rejoin or pull failure ("" none) */
	us_archiver_link_t *archivers;
	size_t n_archivers;
	/* archiver */
	us_ns_status_t *namespaces;
	size_t n_namespaces;
} us_status_t;

/* *st is new; free with us_status_free. */
int us_status(us_client_t *c, us_status_t **st, us_err_t *err);
void us_status_free(us_status_t *st);

/* Admin.Adopt on an archiver: ns's copy, bound to a site that is no more, is
 * put aside (kept in kept_in) and the next site to connect starts a new copy. */
typedef struct us_adopted {
	char previous_site[64];   /* the node id the old copy was bound to; "" none */
	uint64_t previous_seq;
	char kept_in[1200];
} us_adopted_t;

int us_adopt(us_client_t *c, const char *ns, us_adopted_t *out, us_err_t *err);

/* Admin.Promote on an archiver: ns's copy becomes the namespace's primary
 * there (generation + 1). force: also while its site is connected (the site
 * is fenced). Promoting a primary changes nothing (was_primary set). */
typedef struct us_promoted {
	uint64_t generation;      /* the namespace's generation there now */
	uint64_t first_seq;       /* the first seq of that generation */
	int was_primary;          /* nothing changed */
	int fenced_site;          /* a connected site was cut off */
} us_promoted_t;

int us_promote(us_client_t *c, const char *ns, int force, us_promoted_t *out, us_err_t *err);

/* Admin.Rejoin (collector, the first address): a fenced site exports its own
 * tail, rewinds to its primary's state and follows it; waits for the rewind.
 * ns may be NULL (the collector's). A site that rejoined already:
 * was_rejoined, nothing changed. */
typedef struct us_rejoined {
	int was_rejoined;
	char role[16];            /* rejoining or standby */
	char primary[256];
	uint64_t generation;
	uint64_t seq;             /* where the rewind put the store */
	uint64_t fork_seq;
	char export_path[1200];   /* "" when the site had no own tail */
	uint64_t exported;
	uint64_t keys;            /* items and files moved */
	uint64_t bytes;           /* bytes read from the primary */
} us_rejoined_t;

int us_rejoin(us_client_t *c, const char *ns, us_rejoined_t *out, us_err_t *err);

/* Admin.Switchover (the archiver): hand namespace ns, promoted there, back
 * to the rejoined site that follows it. Commits there are refused meanwhile
 * (a client with both addresses waits for the site and commits there); the
 * site must have every commit durably within timeout_ms (0: 30 s), else
 * nothing changes and the archiver stays primary (US_ETIMEOUT). Handed over
 * already: was_switched, nothing changed. */
typedef struct us_switched {
	int was_switched;
	char site[64];            /* the site's node id */
	char site_addr[256];      /* where it serves */
	uint64_t generation;      /* the site's generation as primary */
	uint64_t first_seq;
	uint64_t pause_ms;        /* commits refused at the archiver meanwhile */
} us_switched_t;

int us_switchover(us_client_t *c, const char *ns, uint64_t timeout_ms, us_switched_t *out,
		  us_err_t *err);

#ifdef __cplusplus
}
#endif

#endif
