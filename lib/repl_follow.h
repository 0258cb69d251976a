/*
 * repl_follow.h - the receiving end of Replication.Pull: a site whose
 * namespace was promoted elsewhere rejoins (rejoin.h: export, rewind) and
 * then follows the primary as its standby. The sending end is repl_pull.h.
 *
 * One thread ("us-follow") owns it: while the store is fenced it runs
 * rejoin_run (retrying with backoff: the primary may be down); once the
 * store is rejoining or standby it pulls from the primary (the address the
 * fence recorded): PullHello{position, chain} -> Entries frames applied with
 * store_apply_entries, synced, and answered with Progress{applied, durable}
 * -> Heartbeats tell the primary's last seq. A rejoining store that reaches
 * the primary's last seq is caught up: role standby (store_caught_up). A
 * Handover frame (a switchover) makes it the primary: store_promote, and
 * the pull ends (the daemon's links then stream to the old primary). On
 * any failure it reconnects with backoff (100 ms doubling to 5 s) from where
 * the store stands. A primary store (after a switchover) is left alone.
 */
#ifndef US_REPL_FOLLOW_H
#define US_REPL_FOLLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "event.h"
#include "rejoin.h"
#include "store.h"
#include "us_limits.h"

struct repl_follower;

struct repl_follower_opts {
	struct store *store;       /* borrowed */
	const char *ns;            /* copied */
	const char *export_dir;    /* copied: where rejoin writes the export */
	uint64_t heartbeat_ms;     /* the primary is told to beat at least this often */
	const char *addr;          /* copied: HOST:PORT this node serves on (for a switchover) */
	event_fn on_event;         /* may be NULL */
	/* Called (on the follower's thread) once this node took the primary's
	 * role over (a switchover). May be NULL. */
	void (*on_took_over)(void *arg);
	/* Called (on the follower's thread) with the seq the store is at after
	 * each rewind and applied frame: all of it the primary's, which holds
	 * it durably. May be NULL. */
	void (*on_applied)(void *arg, uint64_t seq);
	void *arg;
};

struct repl_follower_status {
	bool is_connected;
	char primary[US_ADDR_MAX_LEN + 1];
	uint64_t master_seq;       /* the primary's last seq, as last told */
	int64_t heard_ms;          /* wall clock of the primary's last frame; 0: never */
	struct rejoin_result rejoin; /* the last rejoin that rewound the store (is_rewound) */
	int last_rc;               /* the last failure (0: none since the last success) */
	char last_error[US_ERR_MSG_MAX];
};

int repl_follower_new(struct repl_follower **out, const struct repl_follower_opts *o,
		      struct us_err *err);
/* Tries at once (the CLI's rejoin): ends the backoff wait. Any thread. */
void repl_follower_kick(struct repl_follower *f);
/* Waits up to timeout_ms until the store is no longer fenced, or a rejoin
 * attempt failed after this call (its error). 0 when rewound (or already). */
int repl_follower_wait_rejoined(struct repl_follower *f, uint64_t timeout_ms, struct us_err *err);
void repl_follower_status(struct repl_follower *f, struct repl_follower_status *st);
/* Stops the thread (ending the pull) and frees; NULL: a no-op. */
void repl_follower_free(struct repl_follower *f);

#endif
