/*
 * pick_dict.h - a file's dictionary items, as reports read them (issue 14,
 * docs/reports.md): what an attribute name in a sentence means. An item of
 * the file's DICT section is one of:
 *
 *   Advanced Pick / D3 attribute-defining item (attribute 1 "A" or "S"):
 *     2 attribute number (0: the item id), 3 heading ("" : the item's
 *     name), 7 output conversion, 8 correlative (applied to the stored
 *     value before selection and sorting), 9 justification L, R or T,
 *     10 width
 *   U2 / OpenQM D-type item (attribute 1 "D", maybe followed by a
 *     description): 2 field number, 3 conversion, 4 heading, 5 format
 *     "10L" (width, then L, R or T), 6 S (single-valued) or M (multi)
 *
 * and the implicit @ID (the item id: attribute 0, heading "@ID", width 10,
 * left). Any other item type (an I-descriptor, a phrase, an X item) and a
 * conversion pick_conv does not know are refused naming the item, never
 * read as blanks.
 */
#ifndef US_PICK_DICT_H
#define US_PICK_DICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "pick_conv.h"
#include "us_limits.h"

struct pick_attr {
	char name[US_ID_MAX_LEN + 1];          /* the dictionary item's id */
	uint32_t field;                        /* attribute number; 0: the item id */
	char heading[US_PICK_HEADING_MAX_LEN + 1];
	struct pick_conv conv;                 /* output conversion */
	struct pick_conv correlative;          /* applied before selecting, sorting */
	char justify;                          /* 'L', 'R' or 'T' */
	uint32_t width;                        /* column width, 1.. */
	bool is_multi;                         /* may hold several values */
};

/* Reads dictionary item id (id_len bytes) whose body (len bytes, attributes
 * separated by attribute marks) defines an attribute into *out. US_EINVAL
 * naming the item for one that defines none, or badly: "dictionary item
 * BALANCE: unknown conversion 'MX9'". */
int pick_dict_parse(const uint8_t *id, size_t id_len, const uint8_t *body, size_t len,
		    struct pick_attr *out, struct us_err *err);

/* The implicit @ID. */
void pick_dict_id(struct pick_attr *out);

#endif
