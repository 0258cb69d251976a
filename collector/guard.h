/*
 * guard.h - the collector's loss bound: when a commit may be written and when
 * its answer may go, given what the archivers have durably.
 *
 *   commit = async: a commit is admitted at once while the oldest update no
 *     archiver has durably is younger than max_lag; otherwise it waits (up to
 *     sync_timeout) for the archivers to catch up, then fails UNAVAILABLE.
 *     So the unshipped window never grows past max_lag (0: no bound).
 *   commit = sync: a written commit's answer waits until an archiver has it
 *     durably. After sync_timeout without that: fallback block keeps waiting
 *     (and warns once), fallback async answers everything waiting and runs as
 *     async until an archiver has caught up again (warns, shown in status).
 *
 * One thread ("us-guard") releases waiting commits on acks and deadlines; the
 * continuations it calls must not block.
 */
#ifndef US_GUARD_H
#define US_GUARD_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

enum guard_mode {
	GUARD_LOCAL = 0, /* no archiver configured: answers are never held */
	GUARD_ASYNC = 1,
	GUARD_SYNC = 2,
};

enum guard_fallback {
	GUARD_FALLBACK_BLOCK = 0,
	GUARD_FALLBACK_ASYNC = 1,
};

struct guard_opts {
	enum guard_mode mode;
	uint64_t max_lag_ms;       /* async; 0: no bound */
	uint64_t timeout_ms;       /* sync_timeout */
	enum guard_fallback fallback;
	struct store *store;       /* borrowed: positions and journal times */
	const char *ns;            /* for log lines (copied) */
};

struct guard;

/* Continuations: rc 0 to go on, or the refusal. */
typedef void (*guard_admit_fn)(void *ctx, int rc, const struct us_err *err);
typedef void (*guard_done_fn)(void *ctx, int rc, const struct us_err *err);

int guard_new(struct guard **out, const struct guard_opts *opts, struct us_err *err);
/* Admission of a commit (async max_lag): go runs at once, on the caller's
 * thread, or later on the guard thread. */
void guard_admit(struct guard *g, guard_admit_fn go, void *ctx);
/* A commit journaled up to last_seq is durable here: done runs when its
 * answer may go (at once unless sync mode holds it). */
void guard_await(struct guard *g, uint64_t last_seq, guard_done_fn done, void *ctx);
/* An archiver has everything up to durable_seq durably. Any thread. */
void guard_acked(struct guard *g, uint64_t durable_seq);
/* "local", "async", "sync" or "sync (fallen back to async)"; static. */
const char *guard_mode_name(struct guard *g);
/* From now on nothing waits longer than grace_ms: what still waits then is
 * answered UNAVAILABLE (durable here, not acknowledged by an archiver). */
void guard_stop_waiting_after(struct guard *g, uint64_t grace_ms);
/* Answers everything still waiting (UNAVAILABLE), stops the thread, frees. */
void guard_free(struct guard *g);

#endif
