/*
 * snapshots.h - a daemon's open snapshots (Store.OpenSnapshot): their ids,
 * the namespace and store each reads, idle expiry and a bound per namespace.
 * Both daemons keep one table; lib/store_service.c serves it.
 *
 * A snapshot lives until it is released, until it has been idle (no read
 * using it) for the table's ttl, until its store closes (the archiver
 * replaces a namespace's store with a full copy, or puts it aside), or
 * until the table is freed at shutdown. An ended snapshot is remembered for
 * a while (its id and why it ended) so that a late read is told what
 * happened: NOT_FOUND for one released or expired, FAILED_PRECONDITION for
 * one whose store was replaced under it.
 *
 * Threads: every call is safe from any thread (one mutex); a thread of the
 * table's own ("us-snapreap") ends idle snapshots on time.
 */
#ifndef US_SNAPSHOTS_H
#define US_SNAPSHOTS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

struct snapshots;

/* A new table whose snapshots end after ttl_ms idle, at most max_per_ns open
 * in one namespace; starts its reaper thread. */
int snapshots_new(struct snapshots **out, uint64_t ttl_ms, uint32_t max_per_ns,
		  struct us_err *err);
/* Ends every snapshot (their stores must still be open, and no read use
 * one) and stops the reaper; NULL is a no-op. */
void snapshots_free(struct snapshots *t);

struct snapshot_info {
	uint64_t id;                 /* 1 .. 2^53 - 1 (exact in JSON), unique in the table */
	struct store_position pos;   /* the state it shows: after this commit */
	uint64_t ttl_ms;
};

/* Opens a snapshot of store s, namespace ns's (borrowed while the snapshot
 * lives: call snapshots_end_store before closing it). US_ETOOBIG
 * (RESOURCE_EXHAUSTED) when ns has max_per_ns open already. */
int snapshots_open(struct snapshots *t, const char *ns, struct store *s,
		   struct snapshot_info *out, struct us_err *err);

/* A read at snapshot id of namespace ns, whose store is s now: *snap is the
 * snapshot to read at, which stays alive (and does not expire) until
 * snapshots_done(t, id). US_ENOTFOUND for an unknown, released or expired
 * id (or one of another namespace), US_EPRECOND for one whose store was
 * replaced; the message says which. */
int snapshots_use(struct snapshots *t, const char *ns, uint64_t id, const struct store *s,
		  const struct store_snap **snap, struct us_err *err);
void snapshots_done(struct snapshots *t, uint64_t id);

/* Ends snapshot id of ns now (a read still using it finishes first). */
int snapshots_release(struct snapshots *t, const char *ns, uint64_t id, struct us_err *err);

/* Store s is about to close: its snapshots end, and a later read at one is
 * refused with US_EPRECOND and why ("the store was replaced by a full
 * copy"). No read may be using one (the caller has waited out its
 * readers). */
void snapshots_end_store(struct snapshots *t, const struct store *s, const char *why);

/* How many snapshots of ns are open. */
size_t snapshots_count(struct snapshots *t, const char *ns);

#endif
