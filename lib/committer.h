/*
 * committer.h - group commit: one writer thread per store ("us-writer").
 *
 * Any thread submits a commit; the writer takes everything queued (up to
 * US_GROUP_MAX_COMMITS / US_GROUP_MAX_BYTES), writes it with one
 * store_commit_group (one fsync for the whole group) and then calls each
 * commit's done callback, on the writer thread, in submission order. So N
 * concurrent clients share one sync, and no submitter ever blocks.
 */
#ifndef US_COMMITTER_H
#define US_COMMITTER_H

#include "store.h"

struct committer;

/* Called once per submitted commit after its outcome is durable (or refused):
 * c->rc, c->err, c->first_seq, c->last_seq are set. Runs on the writer thread:
 * must not block. */
typedef void (*committer_done_fn)(struct store_commit *c, void *arg);

/* Starts the writer thread for s (borrowed; must outlive the committer). */
int committer_new(struct committer **out, struct store *s, struct us_err *err);
/* Called on the writer thread after each group that journaled anything, with
 * the new last seq, before the group's done callbacks. Set before the first
 * submit; must not block. */
typedef void (*committer_written_fn)(void *arg, uint64_t last_seq);
void committer_on_written(struct committer *cm, committer_written_fn fn, void *arg);

/* Queues c (borrowed until done runs). bytes is the commit's payload size,
 * used to bound a group. After committer_free has begun, done runs at once
 * with US_EUNAVAIL. */
void committer_submit(struct committer *cm, struct store_commit *c, size_t bytes,
		      committer_done_fn done, void *arg);
/* Writes what is queued, stops the thread and frees; NULL is a no-op. */
void committer_free(struct committer *cm);

#endif
