/*
 * store_service.h - the Store gRPC service (Commit, Read, Scan, ListFiles,
 * OpenSnapshot, ReleaseSnapshot) on any daemon that holds stores: the
 * collector (one namespace, writable) and the archiver (many, read-only
 * until promoted).
 */
#ifndef US_STORE_SERVICE_H
#define US_STORE_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "committer.h"
#include "rpc.h"
#include "snapshots.h"
#include "store.h"

/* What a handler holds while it uses a namespace. */
struct ns_handle {
	struct store *store;         /* borrowed until release */
	struct committer *committer; /* set for a write */
	void *priv;                  /* the daemon's own */
};

struct store_service_ops {
	/* Fills h for namespace ns (a valid name), or refuses: US_ENOTFOUND for a
	 * namespace the daemon does not know, US_EPRECOND for one it does not serve
	 * that way (a write to a read-only standby, say), with a message that says
	 * what to do. Called on gRPC worker threads: must not block for long. */
	int (*acquire)(void *arg, const char *ns, bool is_write, struct ns_handle *h,
		       struct us_err *err);
	/* Gives h back (may be NULL: nothing to give back). */
	void (*release)(void *arg, struct ns_handle *h);
	/* Optional: may the commit be written now? go(ctx, 0, NULL) writes it,
	 * go(ctx, code, err) refuses it; at once or later, from any thread. */
	void (*admit)(void *arg, struct ns_handle *h,
		      void (*go)(void *ctx, int rc, const struct us_err *err), void *ctx);
	/* Optional: the commit is durable here, journaled up to last_seq (0: not
	 * journaled); reply(ctx, 0, NULL) sends the answer, reply(ctx, code, err)
	 * an error instead; at once or later, from any thread. */
	void (*await_ack)(void *arg, struct ns_handle *h, uint64_t last_seq,
			  void (*reply)(void *ctx, int rc, const struct us_err *err), void *ctx);
	void *arg;
	/* The daemon's snapshots (borrowed, outlives the server); NULL: reads
	 * at a snapshot are refused as not served. */
	struct snapshots *snapshots;
};

/* For the daemon's other services on the same stores (Admin.Save): ns's
 * handle through ops, the name checked first (US_EINVAL), and back; a
 * snapshot of it to read at (id 0: none, *at NULL), held until
 * store_service_done_snapshot. */
int store_service_acquire(const struct store_service_ops *ops, const char *ns, bool is_write,
			  struct ns_handle *h, struct us_err *err);
void store_service_release(const struct store_service_ops *ops, struct ns_handle *h);
int store_service_use_snapshot(const struct store_service_ops *ops, const char *ns, uint64_t id,
			       const struct ns_handle *h, const struct store_snap **at,
			       struct us_err *err);
void store_service_done_snapshot(const struct store_service_ops *ops, uint64_t id,
				 const struct store_snap *at);

/* Fills out (room for max) with the service's methods; ops is borrowed and
 * must outlive the server. Returns how many, 0 if max is too small. */
size_t store_service_methods(const struct store_service_ops *ops, struct rpc_method *out,
			     size_t max);

#endif
