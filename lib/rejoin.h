/*
 * rejoin.h - a fenced site takes its namespace's primary's history back:
 * the export of its own tail and the rewind (docs/failover.md, "Rejoin").
 * Following the primary afterwards is repl_follow.h's.
 *
 * rejoin_run, on a store in role fenced (store_fence said where the primary
 * is and where the histories forked, first_seq):
 * 1. Export: the site's journal from the fork on (its own commits, which the
 *    primary never got) is written whole to an export file (save format,
 *    kind 3) in export_dir, synced and renamed into place before anything
 *    else changes: nothing is dropped that is not in the file.
 * 2. What the divergence touched: the items and files the exported tail
 *    touched, and those the primary's journal touched from the fork to a
 *    snapshot of it (Admin.ReadJournal), whose first frame must continue
 *    this site's history before the fork (one history, never merged).
 * 3. The rewind: the primary's state of exactly those, read at the
 *    snapshot (Store.Read, Scan, ListFiles), written with the snapshot's
 *    position and generation in one synced batch (store_rewind): role
 *    rejoining. Nothing else moves: not a full copy.
 * Safe to run again after a crash at any point: before the batch the store
 * is still fenced and the export is written again the same; after it, the
 * store is rejoining and this returns at once.
 */
#ifndef US_REJOIN_H
#define US_REJOIN_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "event.h"
#include "store.h"

struct rejoin_opts {
	struct store *store;      /* borrowed */
	const char *ns;
	const char *export_dir;   /* where the export goes (created) */
	event_fn on_event;        /* may be NULL */
	void *arg;
};

struct rejoin_result {
	bool is_rewound;          /* false: nothing to do (not fenced) */
	char export_path[1200];   /* "" when the site had no own tail */
	uint64_t exported;        /* entries in the export */
	uint64_t fork_seq;        /* the first seq of the primary's generation */
	struct store_position to; /* where the store is now: the primary's snapshot */
	uint64_t keys;            /* items and files moved */
	uint64_t bytes;           /* bytes read from the primary (journal frames, bodies) */
};

int rejoin_run(const struct rejoin_opts *o, struct rejoin_result *res, struct us_err *err);

#endif
