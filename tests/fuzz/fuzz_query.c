/*
 * fuzz_query.c - the report parsers (lib/pick_query.h, lib/pick_conv.h,
 * lib/pick_dict.h) and the selection (lib/pick_eval.h) on arbitrary bytes.
 *
 * The first byte picks what the rest is:
 *   0: a sentence: parsed; a sentence taken has a verb and a file, every
 *      selection a name, and runs against a fixed item;
 *   1: a conversion, a NUL, a value: parsed; one taken is applied;
 *   2: a dictionary item's id, a NUL, its body: parsed; one taken is
 *      applied to its own body as an item;
 *   3: a Store.Query answer's bytes, read as the client reads them
 *      (lib/query_wire.h): every row handed over points inside them;
 *   4: cells separated by NULs: written as a row, read back the same.
 * A refusal is a US_E* code with a one-line message; everything is freed.
 */
#include <stddef.h>

#include "fuzz.h"
#include "pick_conv.h"
#include "pick_dict.h"
#include "pick_eval.h"
#include "pick_exec.h"
#include "pick_query.h"
#include "query_wire.h"

static const char item_body[] = "Smith\xfe" "CA\xfe" "1500\xfe" "555-1\xfd" "555-2\xfc" "3";

static void run_sentence(const uint8_t *p, size_t len)
{
	char *s = malloc(len + 1);
	struct pick_query q;
	struct us_err err;
	int rc;

	FUZZ_CHECK(s != NULL);
	memcpy(s, p, len);
	s[len] = '\0';
	rc = pick_query_parse(s, &q, &err);
	if (rc) {
		fuzz_check_refusal(rc, &err);
	} else {
		struct pick_attr a;
		const struct pick_attr *attrs[64];
		struct pick_item it = {(const uint8_t *)"C1", 2, (const uint8_t *)item_body,
				       sizeof(item_body) - 1};

		FUZZ_CHECK(q.verb >= PICK_LIST && q.verb <= PICK_SELECT);
		FUZZ_CHECK(q.file && q.file[0]);
		pick_dict_id(&a);
		a.field = 1;
		for (size_t i = 0; i < q.n_conds; i++)
			FUZZ_CHECK(q.conds[i].attr && q.conds[i].attr[0] &&
				   q.conds[i].op <= PICK_OP_LIKE);
		if (q.n_conds <= 64) {
			for (size_t i = 0; i < q.n_conds; i++)
				attrs[i] = &a;
			(void)pick_select(&q, attrs, &it);
		}
	}
	pick_query_release(&q);
	free(s);
}

static void run_conversion(const uint8_t *p, size_t len)
{
	const uint8_t *nul = memchr(p, 0, len);
	size_t cl = nul ? (size_t)(nul - p) : len;
	struct pick_conv c;
	struct us_err err;
	struct buf out;
	int rc = pick_conv_parse((const char *)p, cl, &c, &err);

	if (rc) {
		fuzz_check_refusal(rc, &err);
		return;
	}
	FUZZ_CHECK(c.n <= US_PICK_CONV_MAX_STEPS);
	buf_init(&out);
	if (nul) {
		const uint8_t *v = nul + 1;
		size_t vl = len - cl - 1;

		FUZZ_CHECK(pick_conv_apply(&c, vl ? v : (const uint8_t *)"", vl, &out) == 0);
	}
	buf_release(&out);
}

static int count_value(void *arg, const uint8_t *v, size_t len)
{
	(void)v;
	(void)len;
	(*(size_t *)arg)++;
	return 0;
}

static void run_dict(const uint8_t *p, size_t len)
{
	const uint8_t *nul = memchr(p, 0, len);
	size_t il = nul ? (size_t)(nul - p) : len;
	const uint8_t *body = nul ? nul + 1 : p + len;
	size_t bl = nul ? len - il - 1 : 0;
	struct pick_attr a;
	struct us_err err;
	int rc = pick_dict_parse(p, il, body, bl, &a, &err);

	if (rc) {
		fuzz_check_refusal(rc, &err);
	} else {
		struct pick_item it = {p, il, body, bl};
		size_t n = 0;

		FUZZ_CHECK(a.justify == 'L' || a.justify == 'R' || a.justify == 'T');
		FUZZ_CHECK(a.width >= 1 && a.width <= US_PICK_WIDTH_MAX);
		FUZZ_CHECK(pick_attr_values(&a, &it, count_value, &n) == 0 && n >= 1);
	}
}

struct wire_bounds {
	const uint8_t *p, *end;
	size_t rows;
};

static bool inside(const struct wire_bounds *b, const uint8_t *p, size_t len)
{
	return len == 0 || (p >= b->p && p + len <= b->end);
}

static int check_row(void *arg, const us_query_row_t *row)
{
	struct wire_bounds *b = arg;

	FUZZ_CHECK(inside(b, row->id, row->id_len));
	for (size_t i = 0; i < row->n_cells; i++)
		for (size_t j = 0; j < row->cells[i].n_values; j++)
			FUZZ_CHECK(inside(b, row->cells[i].values[j].p, row->cells[i].values[j].len));
	b->rows++;
	return 0;
}

static void run_wire_read(const uint8_t *p, size_t len)
{
	struct query_wire_reader r = {0};
	struct wire_bounds b = {p, p + len, 0};
	struct query_wire_end end = {0};
	struct us_err err;
	int rc = query_wire_read(&r, p, len, check_row, &b, &end, &err);

	if (rc)
		fuzz_check_refusal(rc, &err);
	query_wire_reader_release(&r);
}

struct wire_expect {
	const struct buf *cells;
	size_t n;
	bool is_seen;
};

/* The row read back: the same kind, id and cells (values split at value
 * marks). */
static int compare_row(void *arg, const us_query_row_t *row)
{
	struct wire_expect *w = arg;

	FUZZ_CHECK(!w->is_seen);
	w->is_seen = true;
	FUZZ_CHECK(row->kind == PICK_ROW_ITEM && row->id_len == 2 && memcmp(row->id, "id", 2) == 0);
	FUZZ_CHECK(row->n_cells == w->n);
	for (size_t i = 0; i < w->n; i++) {
		struct buf joined;

		buf_init(&joined);
		for (size_t j = 0; j < row->cells[i].n_values; j++) {
			if (j)
				FUZZ_CHECK(buf_append_u8(&joined, PICK_VM) == 0);
			FUZZ_CHECK(buf_append(&joined, row->cells[i].values[j].p,
					      row->cells[i].values[j].len) == 0);
		}
		FUZZ_CHECK(joined.len == w->cells[i].len &&
			   (joined.len == 0 || memcmp(joined.p, w->cells[i].p, joined.len) == 0));
		buf_release(&joined);
	}
	return 0;
}

static void run_wire_round_trip(const uint8_t *p, size_t len)
{
	struct buf cells[64], msg, row, cell;
	struct wire_expect w = {.cells = cells};
	struct query_wire_reader r = {0};
	struct query_wire_end end = {0};
	struct us_err err;

	buf_init(&msg);
	buf_init(&row);
	buf_init(&cell);
	for (const uint8_t *q = p, *stop = p + len; w.n < 64;) {
		const uint8_t *nul = memchr(q, 0, (size_t)(stop - q));
		size_t n = nul ? (size_t)(nul - q) : (size_t)(stop - q);

		buf_init(&cells[w.n]);
		FUZZ_CHECK(buf_append(&cells[w.n++], q, n) == 0);
		if (!nul)
			break;
		q = nul + 1;
	}
	FUZZ_CHECK(query_wire_append_row(&msg, &row, &cell, PICK_ROW_ITEM, (const uint8_t *)"id",
					 2, cells, w.n) == 0);
	FUZZ_CHECK(query_wire_read(&r, msg.p, msg.len, compare_row, &w, &end, &err) == 0);
	FUZZ_CHECK(w.is_seen && !end.is_done);
	for (size_t i = 0; i < w.n; i++)
		buf_release(&cells[i]);
	buf_release(&msg);
	buf_release(&row);
	buf_release(&cell);
	query_wire_reader_release(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 16384)
		return 0;
	switch (data[0] % 5) {
	case 0:
		run_sentence(data + 1, size - 1);
		break;
	case 1:
		run_conversion(data + 1, size - 1);
		break;
	case 2:
		run_dict(data + 1, size - 1);
		break;
	case 3:
		run_wire_read(data + 1, size - 1);
		break;
	default:
		run_wire_round_trip(data + 1, size - 1);
	}
	return 0;
}
