/*
 * us_limits.h - every limit and default of understudy, named, in one place
 * (STYLE.md calls it lib/limits.h; named us_ so that it never shadows the
 * system <limits.h>, which gcc's own limits.h reaches with #include_next).
 *
 * The numbers are the SPEC's (../shared/SPEC.md, "Data model" and "Programs");
 * a module that needs a bound takes it from here, never from a literal.
 */
#ifndef US_US_LIMITS_H
#define US_US_LIMITS_H

#include <stdint.h>

/* Names: namespace [a-z0-9][a-z0-9_.-]{0,62}; account and file [A-Za-z0-9_.-]{1,64}. */
#define US_NAMESPACE_MAX_LEN 63
#define US_ACCOUNT_MAX_LEN 64
#define US_FILE_MAX_LEN 64

/* Node ids (a store's identity, sent in a Hello): 1-63 of [A-Za-z0-9_.-]. */
#define US_NODE_ID_MAX_LEN 63

/* Positions: a seq or a generation told by a peer above this cannot be real
 * (a site committing a million entries a second takes 290,000 years to reach
 * it) and is refused before it is stored or shown. */
#define US_SEQ_MAX (UINT64_MAX >> 1)
/* A heartbeat interval a site tells the archiver: at most one hour. */
#define US_HEARTBEAT_MAX_MS 3600000u

/* Item ids: 1-1024 bytes, no NUL, no mark bytes 0xFC-0xFF. */
#define US_ID_MAX_LEN 1024

/* Pick marks: attribute, value and subvalue separators inside item bodies. */
#define US_MARK_AM 0xFE
#define US_MARK_VM 0xFD
#define US_MARK_SVM 0xFC
#define US_MARK_LOWEST 0xFC /* every byte >= this is a mark */

/* Item bodies: 0-16 MiB; a deployment may configure a lower bound (max_body). */
#define US_BODY_MAX_BYTES (16u * 1024u * 1024u)

/* One commit: at most this many operations and this many bytes of ids and bodies. */
#define US_COMMIT_MAX_OPS 100000u
#define US_COMMIT_MAX_BYTES (64u * 1024u * 1024u)

/* gRPC messages: room for the largest commit plus its protobuf framing. */
#define US_RPC_MAX_MESSAGE_BYTES (US_COMMIT_MAX_BYTES + 1024u * 1024u)

/* Scan answers are streamed in chunks of about this size (at least one item each). */
#define US_SCAN_CHUNK_BYTES (256u * 1024u)
#define US_SCAN_CHUNK_ITEMS 1024u

/* Entry blocks (docs/entry-format.md): bound on entries per block before allocation. */
#define US_BLOCK_MAX_ENTRIES 1000000u
/* The journal is stored as blocks: the writer starts a new one once this large. */
#define US_JOURNAL_BLOCK_BYTES (256u * 1024u)

/* Replication frames: the sender fills a frame with whole commits up to this
 * many raw bytes; a receiver refuses a raw block over the max (one commit at
 * its largest plus framing). */
#define US_FRAME_TARGET_BYTES (256u * 1024u)
/* A daemon's data_dir (and the directories made in it: +16 for their
 * names). */
#define US_DIR_MAX_LEN 1024

/* Pick conversions (lib/pick_conv.h): steps in one conversion. */
#define US_PICK_CONV_MAX_STEPS 8
/* A dictionary item's heading kept, and the widest column. */
#define US_PICK_HEADING_MAX_LEN 200
#define US_PICK_WIDTH_MAX 1000
/* The longest query sentence taken. */
#define US_PICK_SENTENCE_MAX_LEN 8192
/* Output columns, sort keys and selections in one sentence. */
#define US_PICK_COLS_MAX 64
/* A query's sort keeps this many bytes of records in memory, then spills
 * sorted runs to a temporary file in the daemon's data_dir (lib/sorter.h). */
#define US_PICK_SORT_MEM_BYTES (64u * 1024u * 1024u)
/* A report's two scanning threads take items in batches of this many. */
#define US_PICK_SCAN_BATCH 256u
/* ... or fewer, once a batch holds this many bytes (at least one item). */
#define US_PICK_SCAN_BATCH_BYTES (1024u * 1024u)
/* Store.Query: answers of about this many bytes or rows each; reports
 * running at once in one daemon (each on its own thread, like saves). */
#define US_QUERY_CHUNK_BYTES (256u * 1024u)
#define US_QUERY_CHUNK_ROWS 1024u
#define US_QUERIES_RUNNING_MAX 8

/* lib/sorter.h: the least memory a sorter takes, the largest record, the
 * writes of a run, and the read buffer a run gets in the merge. */
#define US_SORTER_MIN_MEM_BYTES (64u * 1024u)
#define US_SORTER_RECORD_MAX_BYTES (64u * 1024u * 1024u)
#define US_SORTER_WRITE_BYTES (256u * 1024u)
#define US_SORTER_MIN_READ_BYTES (64u * 1024u)
#define US_SORTER_MAX_READ_BYTES (1024u * 1024u)

/* Room for a daemon's unary and server-streaming gRPC methods. */
#define US_RPC_METHODS_MAX 32

/* A rejoin's rewind (lib/rejoin.h) holds what the divergence touched, read
 * from the primary, in memory and writes it in one batch: over this many
 * bytes of names, ids and bodies it is refused (rebuild from a save). */
#define US_REWIND_MAX_BYTES (512u * 1024u * 1024u)
/* Admin.Rejoin waits this long for the rewind before it answers a timeout
 * (the rejoin goes on by itself). */
#define US_REJOIN_WAIT_MS 30000u
/* A switchover waits this long (by default) for the site to have every
 * commit durably, then gives up and the archiver stays primary. */
#define US_SWITCHOVER_WAIT_MS 30000u
/* The longest wait a switchover may be given (--wait). */
#define US_SWITCHOVER_WAIT_MAX_MS 600000u
/* What a client adds to a call's deadline for a wait the server bounds
 * itself (a switchover, a rejoin): the answer's way back. */
#define US_CLIENT_WAIT_MARGIN_MS 10000u
#define US_FRAME_MAX_RAW_BYTES (US_COMMIT_MAX_BYTES + 8u * 1024u * 1024u)
/* Saves, full copies and exports (docs/save-format.md): the writer fills a
 * frame's entry block until it reaches the target, so a frame holds less
 * than the target plus one entry, and one entry is at most a 16 MiB body
 * plus its names, id and lengths (under 2 KiB): a reader refuses a raw block
 * over the max, and a header over its max, before allocating for it. */
#define US_SAVE_FRAME_TARGET_BYTES (256u * 1024u)
#define US_SAVE_FRAME_MAX_RAW_BYTES (US_SAVE_FRAME_TARGET_BYTES + US_BODY_MAX_BYTES + 64u * 1024u)
#define US_SAVE_HEADER_MAX_BYTES 1024u
/* The sender keeps at most this many compressed bytes sent but not yet
 * durable on the archiver (bounds both ends' memory). */
#define US_STREAM_WINDOW_BYTES (8u * 1024u * 1024u)
#define US_STREAM_WINDOW_FRAMES 64u
/* A stream's peer that sends nothing for this many of the site's heartbeat
 * intervals, and at least US_SILENCE_MIN_MS, is taken for hung: the site
 * dials a new connection, the archiver reports the site not connected. */
#define US_SILENCE_HEARTBEATS 5u
#define US_SILENCE_MIN_MS 1000u

/* That limit for a heartbeat interval of heartbeat_ms; 0 (not told): none. */
static inline uint64_t us_silence_ms(uint64_t heartbeat_ms)
{
	uint64_t ms = heartbeat_ms * US_SILENCE_HEARTBEATS;

	return heartbeat_ms == 0 ? 0 : ms < US_SILENCE_MIN_MS ? US_SILENCE_MIN_MS : ms;
}

/* A site's link to an archiver: the Welcome must come within this; after a
 * failed session the link waits (+-20 % jitter) from _MIN doubling to _MAX,
 * started over only by real progress (lib/repl_send.c). */
#define US_LINK_WELCOME_TIMEOUT_MS 10000
#define US_LINK_BACKOFF_MIN_MS 100
#define US_LINK_BACKOFF_MAX_MS 5000

/* RocksDB's info log level that writes nothing: one above its HEADER_LEVEL
 * (5) (lib/store.c says why). */
#define US_ROCKSDB_LOG_LEVEL_NONE 6

/* The replication protocol a Hello names: 3 since a full copy is a save file
 * (2 carried the history chain, 1 did not); a site or an archiver of another
 * is refused, not misjudged. */
#define US_PROTOCOL_VERSION 3

/* An archiver gives a store's readers this long to finish before it swaps
 * the store (a full copy, adopt); then the swap is given up. */
#define US_SWAP_READERS_WAIT_MS 5000

/* Snapshots (lib/snapshots.h): how many ended ones a daemon remembers, to
 * tell a late read why its snapshot is gone; the most a namespace may hold
 * open (max_snapshots' bound; its default is 64). */
#define US_SNAPSHOTS_ENDED_KEPT 1024u
#define US_SNAPSHOTS_MAX_PER_NS 4096u

/* The archiver trims each namespace's archived journal this often. */
#define US_ARCHIVE_TRIM_PERIOD_MS 10000u

/* Admin.Save streams a save in messages of about this many bytes. */
#define US_SAVE_CHUNK_BYTES (256u * 1024u)
/* A HOST:PORT address. */
#define US_ADDR_MAX_LEN 255
/* A client's addresses (HOST:PORT,HOST:PORT...), and how long it waits
 * for each node's status when it looks for a namespace's primary. */
#define US_CLIENT_MAX_NODES 8
/* A commit refused by a node that is not the primary is sent again to the
 * primary; while none is (a switchover's moment), the client asks again
 * after 2, 4, 8, 16 ms, then every POLL ms, for up to WAIT ms. */
#define US_CLIENT_FAILOVER_WAIT_MS 5000u
#define US_CLIENT_FAILOVER_POLL_MS 32u
#define US_CLIENT_PROBE_TIMEOUT_MS 2000
/* Saves one daemon streams at once (each on its own thread); more are
 * refused with RESOURCE_EXHAUSTED. */
#define US_SAVES_RUNNING_MAX 4
/* The nice value of a save's threads (streamed or kept in the archive): a
 * save takes the CPU that the stream's apply and the commits leave. */
#define US_SAVE_NICE 10
/* A store's level-0 files past which RocksDB slows writes, then stops them
 * until compaction catches up (RocksDB's defaults). A load (restore, full
 * copy) lifts both and compacts nothing while it runs; at its end, one that
 * left US_STORE_L0_STOP files or more is compacted before it is whole. */
#define US_STORE_L0_SLOWDOWN 20
#define US_STORE_L0_STOP 36
/* A paced save (save_max_rate) sleeps at most this long at a time. */
#define US_PACE_SLICE_MS 100u
/* A store's image (a save, a full copy) reads its files ahead this far. */
#define US_IMAGE_READAHEAD_BYTES (2u * 1024u * 1024u)

/* wire_check: how deep messages may nest. */
#define US_WIRE_MAX_DEPTH 32

/* Group commit: at most this many queued commits are written in one synced batch. */
#define US_GROUP_MAX_COMMITS 4096u
#define US_GROUP_MAX_BYTES (64u * 1024u * 1024u)

/* Embedded defaults of the programs. */
#define US_DEFAULT_ARCHIVER_ADDR "127.0.0.1:7440"
#define US_DEFAULT_COLLECTOR_ADDR "127.0.0.1:7441"
#define US_DEFAULT_NAMESPACE "site-a"
#define US_DEFAULT_COLLECTOR_DATA_DIR "./understudy-data/collector"
#define US_DEFAULT_ARCHIVER_DATA_DIR "./understudy-data/archiver"
#define US_DEFAULT_RPC_THREADS 2

/* Client side: how long a CLI call waits for an answer. */
#define US_DEFAULT_CALL_TIMEOUT_MS 30000

/* Config files: longest line and longest string value. */
#define US_CONFIG_MAX_VALUE_LEN 1024

/* Incidents (lib/incidents.h): the text kept with one, the largest record
 * and log read, how many a daemon keeps in memory and lists at most. */
#define US_INCIDENT_TEXT_MAX_LEN 255
#define US_INCIDENT_RECORD_MAX_BYTES 4096u
#define US_INCIDENT_LOG_MAX_BYTES (64ull * 1024u * 1024u)
#define US_INCIDENTS_KEPT 10000u
#define US_INCIDENTS_LISTED 1000u
/* alert_command runs waiting at most (lib/alert.h); beyond, dropped. */
#define US_ALERT_QUEUE 256u

#endif
