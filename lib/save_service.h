/*
 * save_service.h - Admin.Save on either daemon: a consistent save of a
 * namespace (or of one account or file of it) at a snapshot, streamed back
 * as a save file (lib/save.h, docs/save-format.md). It finds namespaces and
 * snapshots through the daemon's Store service hooks (store_service.h).
 */
#ifndef US_SAVE_SERVICE_H
#define US_SAVE_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "rpc.h"
#include "save.h"
#include "store_service.h"

/* A whole save of namespace ns's store s at at (NULL: now), scope account
 * and file (NULL or "": all), written to sink, synchronously: what the
 * archiver's on-line archive runs on its own thread. out (may be NULL) says
 * what it holds, *pos (may be NULL) its position. A scope that does not
 * exist at that point is US_ENOTFOUND, and nothing is written. */
int save_service_write(struct store *s, const struct store_snap *at, const char *ns,
		       const char *account, const char *file, save_sink_fn sink, void *arg,
		       struct save_summary *out, struct store_position *pos, struct us_err *err);


/* A save to keep in the on-line archive (Admin.Save with archive set). */
struct keep_request {
	char ns[US_NAMESPACE_MAX_LEN + 1];
	char account[US_ACCOUNT_MAX_LEN + 1];  /* "": the whole namespace */
	char file[US_FILE_MAX_LEN + 1];        /* "": the whole account */
	uint64_t snapshot;                     /* 0: a snapshot taken for it */
};

/* A save the archive keeps. */
struct kept_save {
	char name[256];                        /* in save_dir/NS/ */
	char path[1500];
	char account[US_ACCOUNT_MAX_LEN + 1];
	char file[US_FILE_MAX_LEN + 1];
	struct store_position pos;
	uint64_t created_ms;
	struct save_summary summary;
};

typedef void (*keep_done_fn)(void *ctx, int rc, const struct us_err *err,
			     const struct kept_save *ks);

struct save_service_ops {
	const struct store_service_ops *store; /* namespaces and snapshots */
	/* Optional (the archiver): keeps the save req asks for, then calls
	 * done(ctx, 0, NULL, kept) or done(ctx, code, err, NULL), later, from
	 * any thread. NULL: a daemon that keeps no saves. */
	void (*keep)(void *arg, const struct keep_request *req, keep_done_fn done, void *ctx);
	void *arg;
	uint64_t max_rate;  /* bytes a second a streamed save sends at most (0: no bound) */
};

/* Fills out (room for max) with the methods; ops is borrowed and must
 * outlive the server. Returns how many, 0 if max is too small. */
size_t save_service_methods(const struct save_service_ops *ops, struct rpc_method *out,
			    size_t max);

#endif
