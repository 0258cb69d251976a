/*
 * repl_recv.h - the receiving end of the replication stream
 * (Replication.Push): a primary's journal into a standby's copy of its
 * namespace. Today the archiver serves it for every site; the daemon keeps
 * its namespaces (opening, swapping, adopting their stores) and hands this
 * module its hooks (struct repl_recv_ops), so that nothing here calls into a
 * daemon. The sending end is repl_send.h.
 *
 * A push (one call) goes: opened -> Hello checked (namespace allowed,
 * protocol, generation, one history: the site this copy is bound to, its
 * chain, not behind this copy) -> attached to its namespace (a push already
 * attached there is ended: the newest connection wins) -> Welcome{applied,
 * durable} -> Entries frames, each checked whole (stream_decode_entries) and
 * applied in one batch without fsync (store_apply_entries), one frame in
 * flight -> the syncer thread ("us-syncer") fsyncs what was applied (one
 * fsync for every frame of every namespace applied meanwhile) and pushes
 * Progress{applied, durable} back. A full copy (SeedBegin, the pieces of a
 * save file, SeedEnd) is built aside and handed to the daemon to swap in
 * whole. A refused frame ends the call with its precise status; nothing of
 * it was applied.
 *
 * Locks: ns.apply_lock (serializes applies to one store, across pushes), then
 * ns.lock (attachment, link fields), then a push's own lock (is_finished).
 * The syncer takes ns.lock then the push's lock. A push is freed by its
 * on_end, after it has detached, so a pointer read under ns.lock is valid
 * while ns.lock is held.
 */
#ifndef US_REPL_RECV_H
#define US_REPL_RECV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"
#include "event.h"
#include "store.h"
#include "us_limits.h"

struct repl_push;

/* One namespace as the receiving end sees it: its store and the state of
 * the stream into it. The daemon owns it (creates, opens and swaps the
 * store, under the locks below); the receiver reads and writes the link
 * fields. */
struct repl_ns {
	char name[US_NAMESPACE_MAX_LEN + 1];
	struct store *store;        /* NULL while unavailable */
	pthread_mutex_t apply_lock; /* one apply at a time into store */
	pthread_mutex_t lock;       /* guards the fields below */
	struct repl_push *push;     /* the attached Push stream, or NULL */
	unsigned readers;           /* handlers using store outside apply_lock */
	bool is_swapping;           /* a full copy replaces store: readers wait out */
	pthread_cond_t readers_cond;/* signalled when readers drops to 0 */
	bool is_dirty;              /* applied but not yet synced */
	bool is_sync_failing;       /* the syncer's last sync failed (syncer only) */
	bool is_connected;          /* a Push stream is attached (written by its handler) */
	uint64_t durable_seq;       /* synced here */
	uint64_t master_seq;        /* last seq the site reported (Hello, Heartbeat) */
	int64_t behind_since_ms;    /* since when master_seq has been ahead of applied; 0 */
	int64_t heartbeat_ms;       /* when the site last spoke, ms since the epoch; 0 never */
	uint64_t silence_ms;        /* connected no more when silent this long; 0: never */
	/* Refusals of this site's pushes since its last applied frame (push
	 * handlers): the first of an outage, or one of another code, is a WARN,
	 * the repeats are DEBUG, and the next applied frame logs one INFO. */
	uint64_t refusals;
	int refusal_code;
	char refusal[US_ERR_MSG_MAX]; /* the last refusal's message */
	char refused_node[US_NODE_ID_MAX_LEN + 1]; /* the node it refused */
	int64_t refused_since_ms;
};

/* Initializes ns (zeroed, named, its locks ready); destroy frees the locks. */
void repl_ns_init(struct repl_ns *ns, const char *name);
void repl_ns_destroy(struct repl_ns *ns);
/* Takes a reference on ns->store for use outside apply_lock (a read, a
 * sync, a save); US_EUNAVAIL while a full copy is being swapped in or the
 * store is unavailable. */
int repl_ns_acquire(struct repl_ns *ns, struct us_err *err);
void repl_ns_release(struct repl_ns *ns);

/* The daemon's hooks. Each may be called from any gRPC worker or the
 * syncer. */
struct repl_recv_ops {
	/* Finds namespace name, creating it when is_create: US_ENOTFOUND for an
	 * unknown one (is_create false), US_EPERM for one the daemon does not
	 * accept. The namespace lives until the receiver is freed. */
	int (*get_ns)(void *arg, const char *name, bool is_create, struct repl_ns **out,
		      struct us_err *err);
	/* The i-th namespace (0, 1, ... in order of creation), NULL past the last. */
	struct repl_ns *(*ns_at)(void *arg, size_t i);
	/* Opens ns's store again: unavailable, or failed after a write error.
	 * Caller holds ns->apply_lock. */
	int (*reopen)(void *arg, struct repl_ns *ns, struct us_err *err);
	/* The directory of ns's store with prefix put before its name (a full
	 * copy is built in ".seed-...", swapped from ".ready-"). */
	void (*ns_dir)(void *arg, const char *name, const char *prefix, char *out, size_t size);
	/* Replaces ns's store with the complete copy in its ".ready-"
	 * directory. Caller holds ns->apply_lock. */
	int (*swap_store)(void *arg, struct repl_ns *ns, struct us_err *err);
	/* An event for the daemon's log: level (enum log_level) and one line
	 * of key=value fields. May be NULL. */
	event_fn on_event;
	void *arg;
	/* What the Welcome says this node is ("archiver"). */
	const char *node_name;
	/* How a full copy's store is opened (role standby; cache, reserve...). */
	struct store_opts seed_opts;
};

struct repl_recv;

/* Starts the syncer thread; ops is copied. */
int repl_recv_new(struct repl_recv **out, const struct repl_recv_ops *ops, struct us_err *err);
/* Stops the syncer after a last round (what was applied is synced) and
 * frees; every push must have ended (the server stopped). NULL: a no-op. */
void repl_recv_free(struct repl_recv *r);
/* Fills out (room for max) with Replication.Push; r must outlive the
 * server. Returns how many, 0 if max is too small. */
size_t repl_recv_methods(struct repl_recv *r, struct rpc_bidi_method *out, size_t max);
/* Ends ns's attached push, if any, with UNAVAILABLE and why: a frame of it
 * still in flight is refused as replaced, never applied. */
void repl_recv_end_ns(struct repl_ns *ns, const char *why);
/* Ends every attached push ("the archiver is stopping"): streams never end
 * by themselves, and the server waits for its calls. */
void repl_recv_end_all(struct repl_recv *r);

#endif
