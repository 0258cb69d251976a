/*
 * query_wire.c - Store.Query rows on the wire (query_wire.h).
 */
#include "query_wire.h"

#include <stdlib.h>
#include <string.h>

#include "pick_conv.h"

static int append_field(struct buf *b, uint8_t tag, const void *p, size_t len)
{
	return buf_append_u8(b, tag) || buf_append_varint(b, len) || buf_append(b, p, len);
}

/* QueryCell: each value (between value marks) as field 1. */
static int encode_cell(struct buf *out, const struct buf *cell)
{
	const uint8_t *p = cell->p ? cell->p : (const uint8_t *)"", *end = p + cell->len;

	buf_reset(out);
	for (;;) {
		const uint8_t *vm = memchr(p, PICK_VM, (size_t)(end - p));
		const uint8_t *stop = vm ? vm : end;

		if (append_field(out, 0x0a, p, (size_t)(stop - p)))
			return US_ENOMEM;
		if (!vm)
			return 0;
		p = vm + 1;
	}
}

int query_wire_append_row(struct buf *msg, struct buf *row, struct buf *cell, uint8_t kind,
			  const uint8_t *id, size_t id_len, const struct buf *cells, size_t n)
{
	buf_reset(row);
	if (buf_append_u8(row, 0x08) || buf_append_varint(row, kind) ||
	    (id_len && append_field(row, 0x12, id, id_len)))
		return US_ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (encode_cell(cell, &cells[i]) ||
		    append_field(row, 0x1a, cell->p ? cell->p : (const uint8_t *)"", cell->len))
			return US_ENOMEM;
	return append_field(msg, 0x3a, row->p ? row->p : (const uint8_t *)"", row->len);
}

/* ---- reading ---- */

struct field {
	uint32_t num;
	uint8_t type;
	uint64_t v;              /* varint */
	const uint8_t *p;        /* length-delimited */
	size_t len;
};

/* The next field of [*p, end): 1, 0 at the end, or US_ECORRUPT. */
static int next_field(const uint8_t **p, const uint8_t *end, struct field *f)
{
	uint64_t key, n;

	if (*p >= end)
		return 0;
	/* protobuf's field numbers end at 2^29 - 1 */
	if (buf_read_varint(p, end, &key) || key >> 3 > 536870911u || key >> 3 == 0)
		return US_ECORRUPT;
	f->num = (uint32_t)(key >> 3);
	f->type = (uint8_t)(key & 7);
	switch (f->type) {
	case 0:
		return buf_read_varint(p, end, &f->v) ? US_ECORRUPT : 1;
	case 1:
	case 5:
		n = f->type == 1 ? 8 : 4;
		if ((uint64_t)(end - *p) < n)
			return US_ECORRUPT;
		*p += n;
		return 1;
	case 2:
		if (buf_read_varint(p, end, &n) || n > (uint64_t)(end - *p))
			return US_ECORRUPT;
		f->p = *p;
		f->len = (size_t)n;
		*p += n;
		return 1;
	default:
		return US_ECORRUPT;
	}
}

/* Room for n values and m cells. */
static int reserve(struct query_wire_reader *r, size_t n, size_t m)
{
	if (n > r->cap_values) {
		us_bytes_t *v = realloc(r->values, n * sizeof(*v));

		if (!v)
			return US_ENOMEM;
		r->values = v;
		r->cap_values = n;
	}
	if (m > r->cap_cells) {
		us_query_cell_t *c = realloc(r->cells, m * sizeof(*c));

		if (!c)
			return US_ENOMEM;
		r->cells = c;
		r->cap_cells = m;
	}
	return 0;
}

static int read_row(struct query_wire_reader *r, const uint8_t *p, size_t len,
		    query_wire_row_fn fn, void *arg, struct us_err *err)
{
	const uint8_t *end = p + len;
	us_query_row_t row = {.id = (const uint8_t *)""};
	size_t n_values = 0, n_cells = 0;
	struct field f;
	int rc;

	/* first pass: check the row, count its cells and values */
	for (const uint8_t *q = p; (rc = next_field(&q, end, &f)) == 1;) {
		if (f.num == 3 && f.type == 2) {
			const uint8_t *cq = f.p;
			struct field cf;
			int crc;

			n_cells++;
			while ((crc = next_field(&cq, f.p + f.len, &cf)) == 1)
				n_values += cf.num == 1 && cf.type == 2;
			if (crc < 0)
				return err_set(err, US_ECORRUPT, "a Query answer holds a bad cell");
		}
	}
	if (rc < 0)
		return err_set(err, US_ECORRUPT, "a Query answer holds a bad row");
	if (reserve(r, n_values + 1, n_cells + 1))
		return err_set(err, US_ENOMEM, "out of memory");
	/* second pass: fill them in */
	n_values = 0;
	for (const uint8_t *q = p; next_field(&q, end, &f) == 1;) {
		if (f.num == 1 && f.type == 0) {
			row.kind = f.v > 255 ? -1 : (int)f.v;
		} else if (f.num == 2 && f.type == 2) {
			row.id = f.p;
			row.id_len = f.len;
		} else if (f.num == 3 && f.type == 2) {
			const uint8_t *cq = f.p;
			us_query_cell_t *cell = &r->cells[row.n_cells++];
			struct field cf;

			cell->values = &r->values[n_values];
			cell->n_values = 0;
			while (next_field(&cq, f.p + f.len, &cf) == 1)
				if (cf.num == 1 && cf.type == 2) {
					r->values[n_values++] = (us_bytes_t){cf.p, cf.len};
					cell->n_values++;
				}
		}
	}
	if (row.kind < US_ROW_ITEM || row.kind > US_ROW_MISSING)
		return err_set(err, US_ECORRUPT, "a Query answer holds a row of unknown kind %d",
			       row.kind);
	row.cells = r->cells;
	return fn(arg, &row);
}

int query_wire_read(struct query_wire_reader *r, const uint8_t *p, size_t len,
		    query_wire_row_fn fn, void *arg, struct query_wire_end *end,
		    struct us_err *err)
{
	const uint8_t *stop = p + len;
	struct field f;
	int rc;

	while ((rc = next_field(&p, stop, &f)) == 1) {
		if (f.num == 7 && f.type == 2 && (rc = read_row(r, f.p, f.len, fn, arg, err)))
			return rc;
		if (f.num == 8 && f.type == 0)
			end->is_done = f.v != 0;
		else if (f.num == 9 && f.type == 0)
			end->count = f.v;
		else if (f.num == 10 && f.type == 0)
			end->missing = f.v;
	}
	return rc < 0 ? err_set(err, US_ECORRUPT, "cannot decode a Query answer") : 0;
}

void query_wire_reader_release(struct query_wire_reader *r)
{
	free(r->values);
	free(r->cells);
	memset(r, 0, sizeof(*r));
}
