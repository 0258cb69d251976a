/*
 * repl_send.h - the sending end of the replication stream (Replication.Push):
 * a primary's journal to one standby. Today a collector runs one per
 * archiver; the daemon hands it its hooks (struct repl_sender_ops) and
 * nothing here calls into a daemon. The receiving end is repl_recv.h.
 *
 * One thread per standby ("us-link-N") owns the connection: it says Hello,
 * learns where the standby stands, then sends entry frames built from the
 * journal (whole commits, LZ4) while acks come back, keeping at most
 * US_STREAM_WINDOW_BYTES / _FRAMES sent but not yet durable there; a standby
 * too far behind for the journal gets a full copy (a save file in pieces).
 * It sleeps in the gRPC wait and is woken by repl_sender_notify after each
 * commit group. On any failure it reconnects with backoff (100 ms doubling
 * to 5 s) and resumes where the standby stands, so nothing it acknowledged
 * is sent again.
 *
 * Link states (enum link_state), transitions:
 *   IDLE -> CONNECTING -> STREAMING -> IDLE (failure; after backoff, CONNECTING)
 *   any -> STOPPED (repl_sender_free)
 */
#ifndef US_REPL_SEND_H
#define US_REPL_SEND_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "event.h"
#include "store.h"
#include "us_limits.h"

struct repl_sender;

/* The daemon's hooks. */
struct repl_sender_ops {
	/* Called (on the sender's thread) when the standby reports a new
	 * durable seq. May be NULL. */
	void (*on_acked)(void *arg, uint64_t durable_seq);
	/* Called (on the sender's thread) when the standby says this node was
	 * superseded: the namespace's primary is at primary (HOST:PORT), at
	 * generation, from first_seq. May be NULL. */
	void (*on_fenced)(void *arg, uint64_t generation, uint64_t first_seq,
			  const char *primary);
	/* An event for the daemon's log: level (enum log_level) and one line
	 * of key=value fields. May be NULL. */
	event_fn on_event;
	void *arg;
};

struct repl_sender_opts {
	const char *addr;           /* archiver HOST:PORT (copied) */
	const char *ns;             /* the site's namespace (copied) */
	struct store *store;        /* borrowed: journal source */
	uint64_t heartbeat_ms;      /* send a heartbeat when idle this long */
	int index;                  /* for the thread name */
	const struct repl_sender_ops *ops; /* borrowed for the sender's life */
};

struct repl_sender_status {
	char addr[US_ADDR_MAX_LEN + 1];
	bool is_connected;
	uint64_t acked_seq;     /* durable on the archiver */
	uint64_t applied_seq;   /* applied there (maybe not yet synced) */
};

/* Starts the link's thread; returns a new link. */
int repl_sender_new(struct repl_sender **out, const struct repl_sender_opts *opts, struct us_err *err);
/* Wakes the link: new journal entries up to last_seq exist. Any thread. */
void repl_sender_notify(struct repl_sender *l, uint64_t last_seq);
void repl_sender_status(struct repl_sender *l, struct repl_sender_status *st);
/* Stops the thread (closing the stream) and frees; NULL is a no-op. */
void repl_sender_free(struct repl_sender *l);

#endif
