/*
 * journal_service.h - Admin.ReadJournal on either daemon: a namespace's
 * retained journal from a seq, streamed as the replication stream's Entries
 * frames (lib/stream.h), each with the history chain before it. Namespaces
 * are found through the daemon's Store service hooks (store_service.h).
 */
#ifndef US_JOURNAL_SERVICE_H
#define US_JOURNAL_SERVICE_H

#include <stddef.h>

#include "rpc.h"
#include "store_service.h"

/* Fills out (room for max) with the methods; ops is borrowed and must
 * outlive the server. Returns how many, 0 if max is too small. */
size_t journal_service_methods(const struct store_service_ops *ops, struct rpc_method *out,
			       size_t max);

#endif
