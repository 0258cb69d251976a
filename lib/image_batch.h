/*
 * image_batch.h - entries of a store's image (a save, a full copy) copied out
 * of the reader that decoded them, gathered into batches for
 * store_load_entries: one RocksDB batch for many entries, whatever the
 * reader's buffers do meanwhile.
 */
#ifndef US_IMAGE_BATCH_H
#define US_IMAGE_BATCH_H

#include <stdbool.h>

#include "entry.h"
#include "err.h"
#include "store.h"

/* A batch holds at most this many entries, or about this many bytes (one
 * entry may pass it: a 16 MiB body goes alone). */
#define IMAGE_BATCH_ENTRIES 1000
#define IMAGE_BATCH_BYTES (8u * 1024u * 1024u)

struct image_batch;

/* NULL when out of memory. */
struct image_batch *image_batch_new(void);
void image_batch_free(struct image_batch *b); /* NULL: a no-op */
/* Copies e in. US_ENOMEM (the batch unchanged). The caller loads a full
 * batch before adding more. */
int image_batch_add(struct image_batch *b, const struct entry *e);
bool image_batch_is_full(const struct image_batch *b);
/* Loads the batch into s (store_load_entries) and empties it, whatever the
 * outcome. */
int image_batch_load(struct image_batch *b, struct store *s, struct us_err *err);

#endif
