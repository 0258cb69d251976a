/*
 * repl_pull.h - the sending end of Replication.Pull: a primary's journal to
 * a site that follows it (a site rejoined after its namespace was promoted
 * on the archiver). The other sending end, Push, is the site's (repl_send.h);
 * the receiving end of Pull is repl_follow.h. A switchover ends a pull with
 * a Handover (repl_pull_hand_over).
 *
 * A pull (one call) goes: opened -> PullHello checked (namespace held and
 * primary here, the node the namespace is bound to, the primary's
 * generation, a position not beyond the primary's and on its history) ->
 * attached to its namespace (a pull already attached there is ended: the
 * newest wins) -> its thread ("us-pull") sends Entries frames from the
 * site's position on, built from the journal as a site's link builds them,
 * keeping at most US_STREAM_WINDOW_BYTES / _FRAMES sent but not yet durable
 * at the site, and a Heartbeat when idle; Progress acks come back. The
 * thread sleeps until repl_pull_notify (after each commit group), an ack, or
 * the heartbeat interval. Namespaces are found through the daemon's Store
 * service hooks (store_service.h); nothing here calls into a daemon.
 */
#ifndef US_REPL_PULL_H
#define US_REPL_PULL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "rpc.h"
#include "store_service.h"
#include "us_limits.h"

struct repl_pull;

struct repl_pull_ops {
	/* The namespaces (borrowed; outlive the server). */
	const struct store_service_ops *store_ops;
	/* An event for the daemon's log (enum log_level, one line of
	 * key=value fields). May be NULL. */
	event_fn on_event;
	void *arg;
};

/* What a namespace's attached pull says. */
struct repl_pull_status {
	bool is_connected;
	char node_id[US_NODE_ID_MAX_LEN + 1];
	char addr[US_ADDR_MAX_LEN + 1];   /* where the site serves, as it said */
	char peer[US_ADDR_MAX_LEN + 16];
	uint64_t applied_seq;   /* the site's last Progress */
	uint64_t durable_seq;
	uint64_t sent_seq;      /* the last seq sent */
};

/* ops is copied. */
int repl_pull_new(struct repl_pull **out, const struct repl_pull_ops *ops, struct us_err *err);
/* Every pull must have ended (repl_pull_end_all, then the server stopped).
 * NULL: a no-op. */
void repl_pull_free(struct repl_pull *r);
/* Fills out (room for max) with Replication.Pull; r must outlive the server.
 * Returns how many, 0 if max is too small. */
size_t repl_pull_methods(struct repl_pull *r, struct rpc_bidi_method *out, size_t max);
/* New journal entries in ns: wakes its pull. Any thread, must not block. */
void repl_pull_notify(struct repl_pull *r, const char *ns);
/* Waits until ns's pull reports seq durable at the site: 0; US_EUNAVAIL
 * once no pull is attached (or it ended); US_ETIMEOUT at deadline_ms
 * (clock_mono_ms). *st: the pull as last seen. Any thread but a worker. */
int repl_pull_wait_durable(struct repl_pull *r, const char *ns, uint64_t seq,
			   uint64_t deadline_ms, struct repl_pull_status *st);
/* ns's attached pull, if any (is_connected false otherwise). */
void repl_pull_status(struct repl_pull *r, const char *ns, struct repl_pull_status *st);
/* Switchover: tells ns's attached pull that its site is the primary now
 * (a Handover frame), then ends the call OK. US_EUNAVAIL when none is
 * attached. A pull from the site a store was handed over to (role standby,
 * store_primary at the store's generation) that comes later, at the
 * handover's position, gets the same at its Hello. */
int repl_pull_hand_over(struct repl_pull *r, const char *ns, uint64_t generation,
			uint64_t first_seq);
/* Ends ns's pull (UNAVAILABLE, why), or every pull when ns is NULL. */
void repl_pull_end(struct repl_pull *r, const char *ns, const char *why);

#endif
