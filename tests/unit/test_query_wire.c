/* test_query_wire.c - lib/query_wire.c: rows written and read back; every
 * truncation, an oversized length, bit flips, field numbers past
 * protobuf's and rows of unknown kinds refused (never read past the end). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pick_conv.h"
#include "query_wire.h"

struct seen {
	size_t rows;
	int kind;
	char id[16];
	char cells[4][64];  /* values joined by '|' */
	size_t n_cells;
	const uint8_t *lo, *hi; /* the bytes read: every pointer inside */
};

static int on_row(void *arg, const us_query_row_t *row)
{
	struct seen *s = arg;

	assert_true(row->id_len == 0 || (row->id >= s->lo && row->id + row->id_len <= s->hi));
	s->rows++;
	s->kind = row->kind;
	memset(s->id, 0, sizeof(s->id));
	memcpy(s->id, row->id, row->id_len < 15 ? row->id_len : 15);
	s->n_cells = row->n_cells;
	for (size_t i = 0; i < row->n_cells && i < 4; i++) {
		size_t n = 0;

		memset(s->cells[i], 0, sizeof(s->cells[i]));
		for (size_t j = 0; j < row->cells[i].n_values; j++) {
			const us_bytes_t *v = &row->cells[i].values[j];

			assert_true(v->len == 0 || (v->p >= s->lo && v->p + v->len <= s->hi));
			if (j && n < 63)
				s->cells[i][n++] = '|';
			for (size_t k = 0; k < v->len && n < 63; k++)
				s->cells[i][n++] = (char)v->p[k];
		}
	}
	return 0;
}

/* A message of two rows and an end, as the daemon sends. */
static void make_answer(struct buf *msg)
{
	struct buf row, cell, cells[3];

	buf_init(&row);
	buf_init(&cell);
	for (int i = 0; i < 3; i++)
		buf_init(&cells[i]);
	buf_append(&cells[0], "C1", 2);
	buf_append(&cells[1], "555-1\xfd" "555-2\xfc" "9", 13);
	/* cells[2] empty */
	assert_int_equal(query_wire_append_row(msg, &row, &cell, US_ROW_ITEM, (const uint8_t *)"C1",
					       2, cells, 3), 0);
	assert_int_equal(query_wire_append_row(msg, &row, &cell, US_ROW_MISSING,
					       (const uint8_t *)"C9", 2, NULL, 0), 0);
	/* done = true (8), count = 1 (9), missing = 1 (10) */
	buf_append(msg, "\x40\x01\x48\x01\x50\x01", 6);
	for (int i = 0; i < 3; i++)
		buf_release(&cells[i]);
	buf_release(&row);
	buf_release(&cell);
}

static int read_all(const uint8_t *p, size_t len, struct seen *s, struct query_wire_end *end,
		    struct us_err *err)
{
	struct query_wire_reader r = {0};
	uint8_t *copy = malloc(len ? len : 1); /* exactly len: ASan sees any read past it */
	int rc;

	assert_non_null(copy);
	memcpy(copy, p, len);
	memset(s, 0, sizeof(*s));
	s->lo = copy;
	s->hi = copy + len;
	memset(end, 0, sizeof(*end));
	rc = query_wire_read(&r, copy, len, on_row, s, end, err);
	query_wire_reader_release(&r);
	free(copy);
	return rc;
}

static void test_round_trip(void **state)
{
	struct buf msg;
	struct seen s;
	struct query_wire_end end;
	struct us_err err;

	(void)state;
	buf_init(&msg);
	make_answer(&msg);
	assert_int_equal(read_all(msg.p, msg.len, &s, &end, &err), 0);
	assert_int_equal(s.rows, 2);
	assert_int_equal(s.kind, US_ROW_MISSING);
	assert_string_equal(s.id, "C9");
	assert_true(end.is_done);
	assert_int_equal(end.count, 1);
	assert_int_equal(end.missing, 1);
	buf_release(&msg);
}

static void test_cells(void **state)
{
	struct buf msg, row, cell, cells[3];
	struct seen s;
	struct query_wire_end end;
	struct us_err err;

	(void)state;
	buf_init(&msg);
	buf_init(&row);
	buf_init(&cell);
	for (int i = 0; i < 3; i++)
		buf_init(&cells[i]);
	buf_append(&cells[0], "C1", 2);
	buf_append(&cells[1], "a\xfd" "b\xfc" "c\xfd", 6);
	assert_int_equal(query_wire_append_row(&msg, &row, &cell, US_ROW_BREAK, NULL, 0, cells, 3),
			 0);
	assert_int_equal(read_all(msg.p, msg.len, &s, &end, &err), 0);
	assert_int_equal(s.kind, US_ROW_BREAK);
	assert_string_equal(s.id, "");
	assert_int_equal(s.n_cells, 3);
	assert_string_equal(s.cells[0], "C1");
	assert_string_equal(s.cells[1], "a|b\xfc" "c|"); /* values split at value marks only */
	assert_string_equal(s.cells[2], "");
	assert_false(end.is_done);
	for (int i = 0; i < 3; i++)
		buf_release(&cells[i]);
	buf_release(&msg);
	buf_release(&row);
	buf_release(&cell);
}

static void test_truncated_and_flipped(void **state)
{
	struct buf msg;
	struct seen s;
	struct query_wire_end end;
	struct us_err err;

	(void)state;
	buf_init(&msg);
	make_answer(&msg);
	/* every proper prefix: read whole or refused, never past its end */
	for (size_t n = 0; n < msg.len; n++) {
		int rc = read_all(msg.p, n, &s, &end, &err);

		assert_true(rc == 0 || rc == US_ECORRUPT);
	}
	/* every single bit flipped: the same */
	for (size_t i = 0; i < msg.len; i++)
		for (int b = 0; b < 8; b++) {
			int rc;

			msg.p[i] ^= (uint8_t)(1u << b);
			rc = read_all(msg.p, msg.len, &s, &end, &err);
			assert_true(rc == 0 || rc == US_ECORRUPT);
			msg.p[i] ^= (uint8_t)(1u << b);
		}
	buf_release(&msg);
}

static void test_refusals(void **state)
{
	struct seen s;
	struct query_wire_end end;
	struct us_err err;
	/* a row whose length runs past the end */
	static const uint8_t oversized[] = {0x3a, 0xff, 0xff, 0xff, 0x0f, 0x08, 0x01};
	/* a cell whose value's length runs past its cell */
	static const uint8_t bad_cell[] = {0x3a, 0x06, 0x08, 0x01, 0x1a, 0x02, 0x0a, 0x05};
	/* a field number past 2^29 - 1 */
	static const uint8_t big_field[] = {0xf8, 0xff, 0xff, 0xff, 0x1f, 0x01};
	/* a row of kind 9 */
	static const uint8_t bad_kind[] = {0x3a, 0x02, 0x08, 0x09};
	/* field number 0 */
	static const uint8_t zero_field[] = {0x00, 0x01};

	(void)state;
	assert_int_equal(read_all(oversized, sizeof(oversized), &s, &end, &err), US_ECORRUPT);
	assert_int_equal(read_all(bad_cell, sizeof(bad_cell), &s, &end, &err), US_ECORRUPT);
	assert_int_equal(s.rows, 0);
	assert_int_equal(read_all(big_field, sizeof(big_field), &s, &end, &err), US_ECORRUPT);
	assert_int_equal(read_all(bad_kind, sizeof(bad_kind), &s, &end, &err), US_ECORRUPT);
	assert_non_null(strstr(err.msg, "kind 9"));
	assert_int_equal(read_all(zero_field, sizeof(zero_field), &s, &end, &err), US_ECORRUPT);
	/* empty: no rows, no end */
	assert_int_equal(read_all((const uint8_t *)"", 0, &s, &end, &err), 0);
	assert_int_equal(s.rows, 0);
	assert_false(end.is_done);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_cells),
		cmocka_unit_test(test_truncated_and_flipped),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
