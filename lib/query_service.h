/*
 * query_service.h - Store.Query on either daemon: a report sentence
 * (pick_query.h) run by pick_exec.h against one file of a namespace at one
 * snapshot, its rows streamed back (docs/reports.md).
 *
 * Each query runs on a thread of its own at a save's lower priority
 * (US_SAVE_NICE), one message ahead of the send, at most
 * US_QUERIES_RUNNING_MAX at once: the gRPC workers stay free for the
 * stream and the commits, and a RocksDB snapshot read takes no lock an
 * apply or a commit needs, so a report never stalls replication. The
 * namespace and the snapshot are held until the query ends.
 */
#ifndef US_QUERY_SERVICE_H
#define US_QUERY_SERVICE_H

#include <stddef.h>

#include "rpc.h"
#include "store_service.h"

struct query_service_ops {
	const struct store_service_ops *store; /* namespaces and snapshots */
	const char *tmp_dir;  /* where a large sort spills (the data_dir); borrowed */
};

/* Fills out (room for max) with Store.Query; ops must outlive the server.
 * Returns how many, 0 if max is too small. */
size_t query_service_methods(const struct query_service_ops *ops, struct rpc_method *out,
			     size_t max);

#endif
