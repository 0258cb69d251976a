/*
 * pick_eval.h - a query's selections against one item, with Pick's
 * semantics (issue 14, docs/reports.md, "Selection"):
 *   - an attribute holds values (value marks) and subvalues (subvalue
 *     marks): a selection matches when any of them matches any of its
 *     values (WITHOUT: when none does);
 *   - a value is compared numerically when both sides are numbers, else
 *     as text: left-justified (byte order), or right-justified for an
 *     attribute justified R (the shorter padded with blanks on the left);
 *   - with = and #, a value may be a pattern: "ABC]" begins with ABC,
 *     "[ABC" ends with it, "[ABC]" holds it; LIKE takes "..." for any
 *     characters ("J...", "...son", "...an...");
 *   - AND binds closer than OR; the stored value goes through the
 *     attribute's correlative first.
 */
#ifndef US_PICK_EVAL_H
#define US_PICK_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pick_dict.h"
#include "pick_query.h"

struct pick_item {
	const uint8_t *id;
	size_t id_len;
	const uint8_t *body;
	size_t len;
};

/* Calls fn for each value of attribute a of the item (field 0: the id),
 * each subvalue on its own, after a's correlative; an absent attribute is
 * one empty value. A non-zero return from fn stops and is returned. */
typedef int (*pick_value_fn)(void *arg, const uint8_t *v, size_t len);
int pick_attr_values(const struct pick_attr *a, const struct pick_item *it, pick_value_fn fn,
		     void *arg);

/* Whether p (len bytes) is a number: [+-]digits[.digits] or [+-].digits;
 * its value in *out. */
bool pick_number(const uint8_t *p, size_t len, double *out);

/* <0, 0, >0: a against b, by Pick's rules (justify 'R': right-justified
 * text). */
int pick_compare(const uint8_t *a, size_t al, const uint8_t *b, size_t bl, char justify);

/* Whether the item passes every selection of q; attrs[i] is the attribute
 * q->conds[i] names. No selection: true. */
bool pick_select(const struct pick_query *q, const struct pick_attr *const *attrs,
		 const struct pick_item *it);

#endif
