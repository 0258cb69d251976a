/*
 * archiver.h - the archiver daemon's state: its settings and its namespaces.
 *
 * Lock order: archiver.ns_lock, then a namespace's lock. Neither is held
 * across I/O other than opening a store.
 */
#ifndef US_ARCHIVER_H
#define US_ARCHIVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "rpc.h"
#include "committer.h"
#include "repl_pull.h"
#include "repl_recv.h"
#include "query_service.h"
#include "save_service.h"
#include "store.h"
#include "store_service.h"
#include "us_limits.h"

#define ARCHIVER_MAX_NAMESPACES 1024

/* [namespace NAME] sections: when any is given, only these are accepted. */
struct ns_config {
	char name[US_NAMESPACE_MAX_LEN + 1];
};

struct archiver_config {
	char listen[US_ADDR_MAX_LEN + 1];
	char data_dir[1024];
	uint64_t rpc_threads;
	uint64_t max_body;
	uint64_t block_cache_bytes;
	int log_level;
	int is_syslog;
	char disk_reserve_text[64];     /* disk_reserve as written */
	struct disk_reserve reserve;    /* parsed from it at start */
	uint64_t snapshot_ttl_ms;
	uint64_t max_snapshots;
	char save_dir[1024];            /* "": DATA_DIR/saves */
	uint64_t journal_retention_ms;  /* the archived journal's least reach */
	uint64_t save_every_ms;         /* 0: no scheduled saves */
	uint64_t save_max_rate;         /* bytes a second per save; 0: no bound */
	uint64_t keep_saves;
	struct ns_config *namespaces;   /* the sections, owned */
	size_t n_namespaces;
};

/* A namespace on the archiver: what the stream's receiving end sees, and
 * what only the archiver holds. a->ns[] points at r. */
struct archiver_ns {
	struct repl_ns r;            /* first */
	/* Its group commit while it is primary here (promoted), else NULL; set
	 * under r.lock, freed at exit after the server stopped. */
	struct committer *committer;
	struct archiver *a;          /* its archiver (set at creation) */
};

static inline struct archiver_ns *archiver_ns_of(struct repl_ns *ns)
{
	return (struct archiver_ns *)ns;
}

struct archiver {
	struct archiver_config cfg;
	pthread_mutex_t ns_lock;    /* guards ns[] and n_ns (entries never move or go) */
	struct repl_ns *ns[ARCHIVER_MAX_NAMESPACES];
	size_t n_ns;
	struct rpc_server *rpc;
	struct store_service_ops store_ops;
	struct store_cache *cache;  /* one block cache for every namespace's store */
	struct snapshots *snapshots; /* open snapshots of every namespace (own lock) */
	struct save_service_ops save_ops;
	struct query_service_ops query_ops; /* Store.Query's view */
	struct archive *archive;    /* the on-line archive (archive.c; own lock) */

	/* The receiving end of the sites' streams (lib/repl_recv.c), with
	 * its syncer; its hooks are replication.c's. */
	struct repl_recv *recv;
	struct repl_recv_ops recv_ops;
	/* The sending end of Pull (lib/repl_pull.c): a rejoined site follows a
	 * namespace promoted here. */
	struct repl_pull *pull;
};

/* A group commit for ns's store st (promoted here), which wakes the
 * namespace's pull after each group. */
int archiver_committer_new(struct archiver *a, struct repl_ns *ns, struct store *st,
			   struct committer **out, struct us_err *err);

/* Finds namespace name, opening (and creating, when is_create) its store.
 * US_ENOTFOUND for an unknown one (is_create false), US_EPERM for one the
 * config does not list. The ns lives until archiver_close_namespaces. */
int archiver_get_ns(struct archiver *a, const char *name, bool is_create, struct repl_ns **out,
		    struct us_err *err);
/* Opens the store of ns again: one unavailable (ns->store NULL) since it did
 * not open at start or after a full copy, or one that failed a write
 * (store_is_failed), once the data dir has its reserve free again. Caller
 * holds ns->apply_lock. */
int archiver_ns_reopen(struct archiver *a, struct repl_ns *ns, struct us_err *err);
/* Directory names of a namespace's store and of a full copy being received. */
void archiver_ns_dir(const struct archiver *a, const char *name, const char *prefix, char *out,
		     size_t size);
/* Replaces ns's store with the complete copy in its ".ready-" directory.
 * Caller holds ns->apply_lock; waits for readers to finish. */
int archiver_swap_store(struct archiver *a, struct repl_ns *ns, struct us_err *err);
/* Switchover (switchover.c): ns, primary here, is handed back to the site
 * that follows it (its pull): commits held, the site caught up (at most
 * timeout_ms, 0: US_SWITCHOVER_WAIT_MS; else nothing changed), the role
 * handed over durably, the site told. Handed over already: was_switched. */
struct archiver_switched {
	bool was_switched;
	char site[US_NODE_ID_MAX_LEN + 1];
	char site_addr[US_ADDR_MAX_LEN + 1];
	uint64_t generation;
	uint64_t first_seq;
	uint64_t pause_ms;
};
int archiver_switchover(struct archiver *a, struct repl_ns *ns, uint64_t timeout_ms,
			struct archiver_switched *out, struct us_err *err);
/* Promote: ns's copy becomes the namespace's primary here (store_promote),
 * with a group commit of its own; refused (US_EPRECOND) while its site is
 * connected unless is_force, which ends the site's stream (fenced_site). A
 * primary already is answered with was_primary and changes nothing. */
struct archiver_promoted {
	uint64_t generation;
	uint64_t first_seq;
	bool was_primary;
	bool fenced_site;
};
int archiver_promote(struct archiver *a, struct repl_ns *ns, bool is_force,
		     struct archiver_promoted *out, struct us_err *err);
/* Adopt: ns's copy (bound to a site that no longer is) is moved aside, kept
 * on disk and no longer served; a fresh, unbound store takes its place, and
 * the next site to connect is bound to it. The attached push is ended. */
struct archiver_adopted {
	char previous_site[US_NODE_ID_MAX_LEN + 1];
	uint64_t previous_seq;
	char kept_in[1200];
};
int archiver_adopt(struct archiver *a, struct repl_ns *ns, struct archiver_adopted *out,
		   struct us_err *err);

/* Opens every namespace found under data_dir (at start-up), first finishing a
 * swap that a crash interrupted and removing abandoned copies. */
int archiver_open_namespaces(struct archiver *a, struct us_err *err);
void archiver_close_namespaces(struct archiver *a);

/* The on-line archive (archive.c): starts its saver thread (us-saver) on
 * save_dir, after removing what a crash left there; stop gives up the save
 * running and refuses the queued ones (UNAVAILABLE), before the server stops
 * (requests that come later are refused the same way); free frees it, once
 * the server has stopped.
 * keep queues a save (the Admin.Save hook, save_service.h); list reads what
 * ns's saves are, oldest first (*out: free()). */
int archive_start(struct archiver *a, struct us_err *err);
void archive_stop(struct archiver *a);
/* After the server stopped (no call can reach the archive): frees it. */
void archive_free(struct archiver *a);
void archive_keep(void *arg, const struct keep_request *req, keep_done_fn done, void *ctx);
/* A namespace appeared: its schedule starts now. */
void archive_wake(struct archiver *a);
/* ns's archive as of the last trimming round (US_ENOTFOUND before one). */
struct archive_status {
	uint64_t saves;              /* kept saves (every scope) */
	uint64_t save_bytes;         /* their bytes on disk */
	uint64_t oldest_save_seq;    /* of the oldest whole save; 0: none */
	uint64_t journal_first_seq;  /* first journal seq the copy retains; 0: none */
};
int archive_get_status(struct archiver *a, const char *ns, struct archive_status *out);
int archive_list(struct archiver *a, const char *ns, struct kept_save **out, size_t *n,
		 struct us_err *err);

/* Services (archiver/admin_service.c); arg of every method is the archiver. */
size_t archiver_admin_methods(struct archiver *a, struct rpc_method *out, size_t max);
/* The receiving end of the sites' streams (archiver/replication.c): hands
 * lib/repl_recv.c the namespaces and starts its syncer. */
int archiver_replication_start(struct archiver *a, struct us_err *err);

#endif
