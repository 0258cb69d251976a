/*
 * collector.h - the collector daemon's state and its services.
 *
 * One state struct (struct collector, defined in main.c's comment terms):
 * written at start-up by the main thread before any other thread exists, then
 * read-only, except what each field's comment says.
 */
#ifndef US_COLLECTOR_H
#define US_COLLECTOR_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "committer.h"
#include "guard.h"
#include "repl_follow.h"
#include "repl_send.h"
#include "retention.h"
#include "config.h"
#include "us_limits.h"
#include "rpc.h"
#include "disk.h"
#include "store.h"
#include "query_service.h"
#include "save_service.h"
#include "store_service.h"

/* Settings, filled from the config schema in main.c. */
struct collector_config {
	char ns[US_NAMESPACE_MAX_LEN + 1];
	char listen[US_ADDR_MAX_LEN + 1];
	char data_dir[US_DIR_MAX_LEN];
	uint64_t max_body;
	uint64_t rpc_threads;
	int log_level;           /* enum log_level */
	int is_syslog;
	struct config_list archivers;  /* archiver addresses: one link each */
	uint64_t heartbeat_ms;
	int commit_mode;               /* 0 async, 1 sync */
	uint64_t max_lag_ms;
	uint64_t sync_timeout_ms;
	int sync_fallback;             /* enum guard_fallback */
	uint64_t journal_retention_ms;
	uint64_t journal_max;
	char disk_reserve_text[64];    /* disk_reserve as written */
	struct disk_reserve reserve;   /* parsed from it at start */
	uint64_t snapshot_ttl_ms;
	uint64_t max_snapshots;
	uint64_t save_max_rate;         /* bytes a second per save; 0: no bound */
	int rejoin_mode;                /* 0 auto, 1 manual */
};

struct collector {
	struct collector_config cfg;
	struct store *store;          /* thread-safe reads; writes only via committer */
	struct committer *committer;  /* the one writer of store */
	struct rpc_server *rpc;
	struct guard *guard;          /* the loss bound: admission and sync answers */
	struct retention *retention;  /* journal trimming */
	struct repl_sender **links;   /* one per archiver; set before the server starts */
	struct repl_sender_ops sender_ops; /* the links' hooks */
	size_t n_links;
	struct store_service_ops store_ops; /* the Store service's view of this collector */
	struct snapshots *snapshots;  /* open snapshots of the store (their own lock) */
	struct save_service_ops save_ops; /* Admin.Save's view: streamed saves only */
	struct query_service_ops query_ops; /* Store.Query's view */
	/* Rejoin and follow the primary once fenced (follow_lock: started
	 * once, by start-up or by the first link told of the fence) */
	pthread_mutex_t follow_lock;
	struct repl_follower *follower;
	bool is_stopping;             /* follow_lock: shutting down, no new follower */
	char export_dir[US_DIR_MAX_LEN + 16]; /* DATA_DIR/exports */
};

/* Starts the follower unless it runs (role fenced, rejoining or standby).
 * Any thread. */
int collector_start_follower(struct collector *col, struct us_err *err);

/* The Admin service's method table (collector/admin_service.c); arg of every
 * method is the struct collector. */
size_t admin_service_methods(struct collector *col, struct rpc_method *out, size_t max);

#endif
