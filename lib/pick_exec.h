/*
 * pick_exec.h - runs a parsed query sentence (pick_query.h) against one
 * file of a store at one snapshot, and hands its result over row by row
 * (issue 14, docs/reports.md, "Results"):
 *
 *   - the attribute names are looked up in the file's DICT section at the
 *     same snapshot (pick_dict.h); @ID is implicit; a LIST or SORT that
 *     names no column shows the dictionary items named 1, 2, 3... as far as
 *     they go (Advanced Pick's default output), else the id alone;
 *   - the items come from the explicit ids (in the order given; one not on
 *     file is a MISSING row) or from a scan of the file in id order; the
 *     selections (pick_eval.h) keep some;
 *   - SORT, and any sentence with BY, sorts them (sorter.h: in bounded
 *     memory, spilling to a temporary file): by each BY attribute's values
 *     after its correlative, value by value, then by id; an L or T
 *     attribute as bytes (numbers too, as Pick sorts text), an R one with
 *     empty values first, then numbers by value, then other text shorter
 *     first (unlike a selection, which compares two numbers as numbers
 *     whatever the justification); BY-DSND reversed; SORT with no BY by
 *     id alone;
 *   - each kept item becomes an ITEM row: per column, its values and
 *     subvalues each through the correlative then the output conversion;
 *   - BREAK-ON: when a break column's value changes from one row to the
 *     next (outer breaks first), a BREAK row for the group that ended, from
 *     the innermost level out, with `***` in the break column and each
 *     TOTAL column's sum over the group; after the last row the same for
 *     every level, then a TOTAL row with the grand sums (and `***` in the
 *     first column when it is not a TOTAL one) when any column is TOTAL.
 *     A sum adds every value that is a number, after the correlative, then
 *     shows through the output conversion (MD2 sums cents, shows 12.34).
 *   - COUNT gives no rows, only the count; SELECT gives rows with the ids
 *     alone (no columns).
 *
 * Reading: COUNT and sorted queries read the file with two threads, one
 * upward from the first id, one downward from the last, until they meet
 * (each sorting its own items; the two sorted streams are merged). The
 * second thread runs at the query thread's priority.
 *
 * Memory: one item, or one batch of at most US_PICK_SCAN_BATCH items and
 * about US_PICK_SCAN_BATCH_BYTES a reading thread, and one sort run, at a
 * time, whatever the file's size. A thread that fails stops the other.
 */
#ifndef US_PICK_EXEC_H
#define US_PICK_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "pick_dict.h"
#include "pick_query.h"
#include "store.h"

/* A column of the result: the id column first unless ID-SUPP. */
struct pick_column {
	struct pick_attr attr;
	bool is_total;
	bool is_break;
};

enum pick_row_kind {
	PICK_ROW_ITEM = 1,   /* an item */
	PICK_ROW_BREAK,      /* a group ended: subtotals */
	PICK_ROW_TOTAL,      /* the grand totals, last */
	PICK_ROW_MISSING,    /* an explicit id not on file (id set, no cells) */
};

struct pick_sink {
	/* The columns, once, before any row (borrowed for the call). */
	int (*on_columns)(void *arg, const struct pick_column *cols, size_t n);
	/* A row: cells[i] is column i's, its values separated by value marks
	 * and their subvalues by subvalue marks, converted for display
	 * (borrowed for the call; n is 0 for MISSING and for SELECT's rows).
	 * id: the item's id as stored (empty for BREAK and TOTAL). A non-zero
	 * return stops the query and is returned. */
	int (*on_row)(void *arg, uint8_t kind, const uint8_t *id, size_t id_len,
		      const struct buf *cells, size_t n);
	void *arg;
};

struct pick_exec_opts {
	const char *tmp_dir;         /* where a large sort spills (required when sorting) */
	size_t sort_mem_bytes;       /* 0: US_PICK_SORT_MEM_BYTES */
	bool is_one_thread;          /* COUNT and sorts read with one thread, not two */
	/* Optional: polled between items; true ends the query with US_ECANCELLED. */
	bool (*is_cancelled)(void *arg);
	void *cancel_arg;
};

struct pick_exec_stats {
	uint64_t items;              /* listed, counted or selected */
	uint64_t scanned;            /* items read */
	uint64_t missing;            /* explicit ids not on file */
	size_t sort_runs;            /* runs the sort spilled (0: in memory) */
};

/* Runs q against account's file q->file in store s at at (required: the
 * one state the whole query reads). US_ENOTFOUND for a file that does not
 * exist; US_EINVAL naming the word for an attribute not in the dictionary
 * or a dictionary item that does not define one; a sink's non-zero return. */
int pick_exec_run(struct store *s, const struct store_snap *at, const char *account,
		  const struct pick_query *q, const struct pick_exec_opts *opts,
		  const struct pick_sink *sink, struct pick_exec_stats *stats,
		  struct us_err *err);

#endif
