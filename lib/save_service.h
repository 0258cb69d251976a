/*
 * save_service.h - Admin.Save on either daemon: a consistent save of a
 * namespace (or of one account or file of it) at a snapshot, streamed back
 * as a save file (lib/save.h, docs/save-format.md). It finds namespaces and
 * snapshots through the daemon's Store service hooks (store_service.h).
 */
#ifndef US_SAVE_SERVICE_H
#define US_SAVE_SERVICE_H

#include <stddef.h>

#include "rpc.h"
#include "store_service.h"

/* Fills out (room for max) with the methods; ops is borrowed and must
 * outlive the server. Returns how many, 0 if max is too small. */
size_t save_service_methods(const struct store_service_ops *ops, struct rpc_method *out,
			    size_t max);

#endif
