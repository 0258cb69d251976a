/*
 * sorter.h - sorts records (opaque byte strings) of any total size in
 * bounded memory: a report's SORT ... BY (issue 14, docs/reports.md).
 *
 * Records are kept in memory until they take more than mem_bytes; then
 * they are sorted and written out as one run to a temporary file (made in
 * tmp_dir and unlinked at once, so that nothing is left behind, even after
 * a crash), and so on. Reading them back merges the runs (or sorts the
 * records in memory if none was written). Memory stays within about
 * mem_bytes plus a read buffer of at least US_SORTER_MIN_READ_BYTES per run.
 *
 * Run file format (private to one sorter, never kept): records one after
 * the other, each a u32 little-endian length then its bytes.
 */
#ifndef US_SORTER_H
#define US_SORTER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct sorter;

/* <0, 0, >0: record a before b. Equal records come out in any order. */
typedef int (*sorter_cmp_fn)(void *arg, const uint8_t *a, size_t a_len, const uint8_t *b,
			     size_t b_len);

/* A new sorter; tmp_dir (borrowed until sorter_new returns; copied) is
 * where runs go when the records outgrow mem_bytes (at least 64 KiB). cmp
 * NULL sorts by the records' bytes (memcmp, a proper prefix first), faster:
 * each record's first 16 bytes are kept beside its place in memory and
 * decide most comparisons. */
int sorter_new(struct sorter **out, sorter_cmp_fn cmp, void *arg, size_t mem_bytes,
	       const char *tmp_dir, struct us_err *err);
/* Adds a copy of rec (len bytes, at most US_SORTER_RECORD_MAX_BYTES). May
 * write a run: US_EIO naming the temporary file's directory on a failure. */
int sorter_add(struct sorter *s, const uint8_t *rec, size_t len, struct us_err *err);
/* No more records: sorts what is in memory and prepares the merge. */
int sorter_finish(struct sorter *s, struct us_err *err);
/* After sorter_finish: 1 with the next record (borrowed until the next
 * call), 0 at the end, <0 on an error. */
int sorter_next(struct sorter *s, const uint8_t **rec, size_t *len, struct us_err *err);
/* How many runs went to the temporary file (0: it all fit in memory). */
size_t sorter_runs(const struct sorter *s);
/* Closes the temporary file; NULL: a no-op. */
void sorter_free(struct sorter *s);

#endif
