/*
 * pick_conv.h - Pick output conversions, as a dictionary's attribute 7
 * (Advanced Pick / D3) or 3 (U2, OpenQM) names them, for reports (issue 14,
 * docs/reports.md). A conversion turns one stored value (the text between
 * marks) into what a report shows. Several, separated by a value mark
 * (0xFD) or by `]` as typed, apply in order.
 *
 *   D[n][s]     a date, stored as days since 31 Dec 1967 (day 0, negative
 *               before it): no separator "31 DEC 1967" (n year digits, 0-4,
 *               default 4); a separator s (one of / - . space) gives
 *               MM s DD s YY..YY, e.g. D2/ "12/31/67", D4- "12-31-1967"
 *   MT, MTS     a time, stored as seconds after midnight: "HH:MM",
 *               "HH:MM:SS" (24 hours); MTH, MTHS on 12 hours, "01:30PM"
 *   MDn[m][,][$][-]  masked decimal, also MR (right) and ML (left): the
 *               stored integer divided by 10^m (m defaults to n) shown with
 *               n decimals, rounded half away from zero; `,` groups the
 *               thousands, `$` puts a dollar sign first, `-` puts a minus
 *               after the number instead of before it
 *   MCU, MCL    upper and lower case (ASCII)
 *   Tm,n / Tn   text extraction: n characters from column m (1-based);
 *               Tn: the first n
 * A value that a numeric conversion cannot read (not an integer) is shown
 * as it is, as Pick does; an empty value stays empty. A conversion this
 * code does not know is refused when it is parsed (pick_conv_parse), with
 * its text, never shown as a blank.
 */
#ifndef US_PICK_CONV_H
#define US_PICK_CONV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "us_limits.h"

#define PICK_AM 0xFE  /* attribute mark */
#define PICK_VM 0xFD  /* value mark */
#define PICK_SVM 0xFC /* subvalue mark */

enum pick_conv_kind {
	PICK_CONV_DATE = 1,
	PICK_CONV_TIME,
	PICK_CONV_DECIMAL,
	PICK_CONV_UPPER,
	PICK_CONV_LOWER,
	PICK_CONV_TEXT,
};

struct pick_conv_step {
	uint8_t kind;          /* enum pick_conv_kind */
	/* date */
	uint8_t year_digits;   /* 0..4 */
	char sep;              /* 0: "DD MON YYYY"; else MM sep DD sep YY */
	/* time */
	bool is_seconds;
	bool is_12h;
	/* decimal */
	uint8_t decimals;      /* n */
	uint8_t scale;         /* m */
	bool is_grouped;       /* , */
	bool is_dollar;        /* $ */
	bool is_trailing_minus; /* - */
	char justify;          /* 'L' (ML), 'R' (MR, MD): a hint for the column */
	/* text */
	uint32_t from;         /* 1-based */
	uint32_t len;
};

/* A parsed conversion: its steps, in order. */
struct pick_conv {
	struct pick_conv_step steps[US_PICK_CONV_MAX_STEPS];
	size_t n;
};

/* Parses text (len bytes; steps separated by a value mark or `]`) into
 * *out. An empty text is no conversion (n 0). US_EINVAL for a conversion
 * it does not know or one out of bounds, the message quoting it:
 * "unknown conversion 'MX9'". */
int pick_conv_parse(const char *text, size_t len, struct pick_conv *out, struct us_err *err);

/* Appends value (len bytes, one value: no marks) converted by c to out. */
int pick_conv_apply(const struct pick_conv *c, const uint8_t *value, size_t len, struct buf *out);

#endif
