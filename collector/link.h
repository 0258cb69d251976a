/*
 * link.h - the collector's stream to one archiver (Replication.Push).
 *
 * One thread per archiver ("us-link-N") owns the connection: it says Hello,
 * learns where the archiver stands, then sends entry frames built from the
 * journal (whole commits, LZ4) while acks come back, keeping at most
 * US_STREAM_WINDOW_BYTES / _FRAMES sent but not yet durable there. It sleeps
 * in the gRPC wait and is woken by the committer after each group. On any
 * failure it reconnects with backoff (100 ms doubling to 5 s) and resumes
 * where the archiver stands, so nothing it acknowledged is sent again.
 *
 * Link states (enum link_state), transitions:
 *   IDLE -> CONNECTING -> STREAMING -> IDLE (failure; after backoff, CONNECTING)
 *   any -> STOPPED (link_free)
 */
#ifndef US_LINK_H
#define US_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

struct link;

struct link_opts {
	const char *addr;           /* archiver HOST:PORT (copied) */
	const char *ns;             /* the site's namespace (copied) */
	struct store *store;        /* borrowed: journal source */
	uint64_t heartbeat_ms;      /* send a heartbeat when idle this long */
	int index;                  /* for the thread name */
	/* Called (on the link thread) when the archiver reports a new durable seq. */
	void (*on_acked)(void *arg, uint64_t durable_seq);
	void *on_acked_arg;
};

struct link_status {
	char addr[256];
	bool is_connected;
	uint64_t acked_seq;     /* durable on the archiver */
	uint64_t applied_seq;   /* applied there (maybe not yet synced) */
};

/* Starts the link's thread; returns a new link. */
int link_new(struct link **out, const struct link_opts *opts, struct us_err *err);
/* Wakes the link: new journal entries up to last_seq exist. Any thread. */
void link_notify(struct link *l, uint64_t last_seq);
void link_get_status(struct link *l, struct link_status *st);
/* Stops the thread (closing the stream) and frees; NULL is a no-op. */
void link_free(struct link *l);

#endif
