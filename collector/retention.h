/*
 * retention.h - the collector's journal retention ("us-retention" thread).
 *
 * A journal entry may go once every configured archiver has it durably (or,
 * past journal_max entries behind the last seq, even if one has not: that
 * archiver then takes a full copy) AND it is older than journal_retention.
 * With no archiver configured, only the age counts. Checked every second.
 */
#ifndef US_RETENTION_H
#define US_RETENTION_H

#include <stdint.h>

#include "err.h"
#include "repl_send.h"
#include "store.h"

struct retention_opts {
	struct store *store;       /* borrowed */
	struct repl_sender **links;       /* borrowed: the archivers' acked seqs */
	size_t n_links;
	uint64_t retention_ms;     /* journal_retention */
	uint64_t journal_max;      /* entries */
	const char *ns;            /* for log lines */
};

struct retention;

int retention_new(struct retention **out, const struct retention_opts *opts, struct us_err *err);
/* Stops the thread and frees; NULL is a no-op. */
void retention_free(struct retention *r);

#endif
