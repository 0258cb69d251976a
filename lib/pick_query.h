/*
 * pick_query.h - a Pick query sentence parsed (issue 14, docs/reports.md):
 *
 *   VERB [DICT] FILE [ids] [clauses]
 *
 *   VERB      LIST, SORT, COUNT or SELECT (any case)
 *   ids       quoted item ids ("C1" 'C2' \C3\), before any clause
 *   WITH / WITHOUT attr [op value...]   a selection; several values are
 *             alternatives ("CA" "NY"); no op and no value: the attribute
 *             is not empty. op: = # < > <= >= LIKE, or EQ NE LT GT LE GE
 *             (and NOT for #). Selections join with AND (the default) or OR.
 *   BY attr, BY-DSND attr               sort keys, in order
 *   TOTAL attr, BREAK-ON attr           output columns with a total, with
 *                                       a break line when it changes
 *   ID-SUPP, HDR-SUPP, COL-HDR-SUPP     no id column, no page heading, no
 *                                       column headings
 *   attr                                an output column
 *
 * Attribute names are checked against the file's dictionary later, when
 * the query runs; this only parses. A sentence that does not parse is
 * refused (US_EINVAL) naming the word and its position (1-based, in
 * characters): "unexpected 'FROM' at position 12: ...".
 */
#ifndef US_PICK_QUERY_H
#define US_PICK_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "us_limits.h"

enum pick_verb { PICK_LIST = 1, PICK_SORT, PICK_COUNT, PICK_SELECT };

enum pick_op {
	PICK_OP_PRESENT = 0, /* no op: not empty */
	PICK_OP_EQ,
	PICK_OP_NE,
	PICK_OP_LT,
	PICK_OP_GT,
	PICK_OP_LE,
	PICK_OP_GE,
	PICK_OP_LIKE,
};

struct pick_cond {
	char *attr;
	uint8_t op;          /* enum pick_op */
	char **values;       /* alternatives (any matches) */
	size_t n_values;
	bool is_without;     /* WITHOUT: the selection negated */
	bool is_or;          /* joined to the one before with OR (else AND) */
};

struct pick_sort {
	char *attr;
	bool is_desc;
};

struct pick_col {
	char *attr;
	bool is_total;
	bool is_break;
};

struct pick_query {
	uint8_t verb;        /* enum pick_verb */
	bool is_dict;        /* the file's DICT section */
	char *file;
	char **ids;
	size_t n_ids;
	struct pick_cond *conds;
	size_t n_conds;
	struct pick_sort *sorts;
	size_t n_sorts;
	struct pick_col *cols;
	size_t n_cols;
	bool is_id_supp, is_hdr_supp, is_col_hdr_supp;
};

/* Parses sentence (NUL-terminated, at most US_PICK_SENTENCE_MAX_LEN bytes)
 * into *q (release it with pick_query_release, also after a failure). */
int pick_query_parse(const char *sentence, struct pick_query *q, struct us_err *err);
void pick_query_release(struct pick_query *q);

#endif
