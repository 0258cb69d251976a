/*
 * query_wire.h - the rows of a Store.Query answer on the wire, written by
 * the daemon (query_service.c) and read by the C client (client.c) without
 * protobuf-c: a report of a million rows is a million QueryRow messages,
 * and protobuf-c's pack and unpack allocate every row, cell and value on
 * its own (about 1.1 s of client CPU for 1M rows of 4 columns, which made
 * the client the slower end).
 *
 * The encoding is protobuf's, of include/understudy.proto:
 *   QueryResponse field 7 (rows):  0x3a len QueryRow
 *   QueryRow:  0x08 kind, [0x12 len id], { 0x1a len QueryCell }
 *   QueryCell: { 0x0a len value }
 * protobuf merges concatenated encodings (repeated fields appended), so
 * rows written here after the fields protobuf-c packed make one message;
 * any protobuf library reads them.
 */
#ifndef US_QUERY_WIRE_H
#define US_QUERY_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "understudy.h"

/* Appends one row to msg: cells[i] (n of them) hold a column's values
 * separated by value marks (0xFD), each kept whole (its subvalue marks
 * included). row and cell are scratch buffers of the caller's. */
int query_wire_append_row(struct buf *msg, struct buf *row, struct buf *cell, uint8_t kind,
			  const uint8_t *id, size_t id_len, const struct buf *cells, size_t n);

/* What a reader keeps between rows: arrays the rows it hands over point
 * into. Embedded struct: zero it, then query_wire_reader_release. */
struct query_wire_reader {
	us_bytes_t *values;
	size_t cap_values;
	us_query_cell_t *cells;
	size_t cap_cells;
};

/* The answer's end, when it holds one. */
struct query_wire_end {
	bool is_done;
	uint64_t count;
	uint64_t missing;
};

/* Reads the len bytes at p as a QueryResponse holding only rows, done,
 * count and missing (every answer after the first): each row goes to
 * fn (borrowed for the call; a non-zero return stops and is returned),
 * other fields set *end (left as they were when absent); fields it does not
 * use are skipped. US_ECORRUPT (err set) for bytes that are not such a
 * message (every length checked against the end, field numbers past
 * protobuf's, a row of a kind that is not a us_row_kind_t). */
typedef int (*query_wire_row_fn)(void *arg, const us_query_row_t *row);
int query_wire_read(struct query_wire_reader *r, const uint8_t *p, size_t len,
		    query_wire_row_fn fn, void *arg, struct query_wire_end *end,
		    struct us_err *err);
void query_wire_reader_release(struct query_wire_reader *r);

#endif
