/*
 * entry.c - see entry.h and docs/entry-format.md for the byte tables.
 *
 * The encoder computes an entry's exact size first and then writes it in place,
 * so that a block can put the varint length before the entry without copying
 * the body twice. Decoders borrow from the input and check every length
 * against both its SPEC bound and the bytes left before trusting it.
 */
#include "entry.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "us_limits.h"

#define CHECKSUM_BYTES 4
#define BLOCK_MIN_BYTES (ENTRY_BLOCK_HEADER_BYTES + CHECKSUM_BYTES)
#define BLOCK_COUNT_OFFSET 13
/* The smallest entry in a block: a one-byte length, op, one-byte time. */
#define BLOCK_MIN_ENTRY_BYTES 3

static const char *const op_names[] = {
	[ENTRY_WRITE] = "write",
	[ENTRY_DELETE] = "delete",
	[ENTRY_CREATE_FILE] = "create-file",
	[ENTRY_CLEAR_FILE] = "clear-file",
	[ENTRY_DELETE_FILE] = "delete-file",
	[ENTRY_SET_LOGGING] = "set-logging",
	[ENTRY_HEARTBEAT] = "heartbeat",
	[ENTRY_CANARY] = "canary",
	[ENTRY_VERIFY_MARK] = "verify-mark",
};

const char *entry_op_name(uint8_t op)
{
	if (op < 1 || op > ENTRY_OP_MAX)
		return "?";
	return op_names[op];
}

/* Which fields an op carries, in the order of the table in entry.h. */
enum {
	HAS_NAMES = 1 << 0,   /* str account, str file */
	HAS_SECTION = 1 << 1, /* u8 section */
	HAS_ID = 1 << 2,      /* bytes id */
	HAS_BODY = 1 << 3,    /* bytes body */
	HAS_FLAG = 1 << 4,    /* u8 is_logged / is_on */
	HAS_VALUE = 1 << 5,   /* varint value */
};

static const uint8_t op_fields[] = {
	[ENTRY_WRITE] = HAS_NAMES | HAS_SECTION | HAS_ID | HAS_BODY,
	[ENTRY_DELETE] = HAS_NAMES | HAS_SECTION | HAS_ID,
	[ENTRY_CREATE_FILE] = HAS_NAMES | HAS_FLAG,
	[ENTRY_CLEAR_FILE] = HAS_NAMES | HAS_SECTION,
	[ENTRY_DELETE_FILE] = HAS_NAMES,
	[ENTRY_SET_LOGGING] = HAS_NAMES | HAS_FLAG,
	[ENTRY_HEARTBEAT] = HAS_VALUE,
	[ENTRY_CANARY] = HAS_VALUE,
	[ENTRY_VERIFY_MARK] = HAS_VALUE,
};

static size_t varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static uint8_t *put_bytes(uint8_t *p, const void *s, size_t len)
{
	p = put_varint(p, len);
	if (len)
		memcpy(p, s, len);
	return p + len;
}

/* Checks what the decoder would refuse, so that nothing undecodable is ever
 * written, and returns the exact encoded size in *size. */
static int check_and_size(const struct entry *e, size_t *size, struct us_err *err)
{
	uint8_t fields;
	size_t n;

	if (e->op < 1 || e->op > ENTRY_OP_MAX)
		return err_set(err, US_EINVAL, "cannot encode entry: unknown op %u", e->op);
	fields = op_fields[e->op];
	n = 1 + varint_size(e->time_ms);
	if (fields & HAS_NAMES) {
		if (e->account_len > US_ACCOUNT_MAX_LEN || e->file_len > US_FILE_MAX_LEN)
			return err_set(err, US_EINVAL,
				       "cannot encode %s entry: account or file name over %d bytes",
				       entry_op_name(e->op), US_FILE_MAX_LEN);
		n += varint_size(e->account_len) + e->account_len;
		n += varint_size(e->file_len) + e->file_len;
	}
	if (fields & HAS_SECTION) {
		if (e->section != SECTION_DATA && e->section != SECTION_DICT)
			return err_set(err, US_EINVAL, "cannot encode %s entry: bad section %u",
				       entry_op_name(e->op), e->section);
		n += 1;
	}
	if (fields & HAS_ID) {
		if (e->id_len > US_ID_MAX_LEN)
			return err_set(err, US_EINVAL,
				       "cannot encode %s entry: id of %zu bytes over the limit of %d",
				       entry_op_name(e->op), e->id_len, US_ID_MAX_LEN);
		n += varint_size(e->id_len) + e->id_len;
	}
	if (fields & HAS_BODY) {
		if (e->body_len > US_BODY_MAX_BYTES)
			return err_set(err, US_EINVAL,
				       "cannot encode %s entry: body of %zu bytes over the limit of %u",
				       entry_op_name(e->op), e->body_len, US_BODY_MAX_BYTES);
		n += varint_size(e->body_len) + e->body_len;
	}
	if (fields & HAS_FLAG)
		n += 1;
	if (fields & HAS_VALUE)
		n += varint_size(e->value);
	*size = n;
	return 0;
}

/* Writes e at p, which has room for exactly the size check_and_size gave. */
static uint8_t *write_entry(const struct entry *e, uint8_t *p)
{
	uint8_t fields = op_fields[e->op];

	*p++ = (uint8_t)(e->op | (e->is_commit_end ? ENTRY_FLAG_END : 0));
	p = put_varint(p, e->time_ms);
	if (fields & HAS_NAMES) {
		p = put_bytes(p, e->account, e->account_len);
		p = put_bytes(p, e->file, e->file_len);
	}
	if (fields & HAS_SECTION)
		*p++ = e->section;
	if (fields & HAS_ID)
		p = put_bytes(p, e->id, e->id_len);
	if (fields & HAS_BODY)
		p = put_bytes(p, e->body, e->body_len);
	if (fields & HAS_FLAG)
		*p++ = e->op == ENTRY_CREATE_FILE && e->is_reset ? 2 : e->flag ? 1 : 0;
	if (fields & HAS_VALUE)
		p = put_varint(p, e->value);
	return p;
}

/* Appends e to out; out is unchanged on failure. Returns the entry's size in
 * *size. */
static int append_entry(const struct entry *e, struct buf *out, size_t *size,
			struct us_err *err)
{
	size_t n;
	int rc;

	rc = check_and_size(e, &n, err);
	if (rc)
		return rc;
	rc = buf_reserve(out, n);
	if (rc)
		return err_set(err, rc, "cannot encode %s entry of %zu bytes: out of memory",
			       entry_op_name(e->op), n);
	write_entry(e, out->p + out->len);
	out->len += n;
	*size = n;
	return 0;
}

int entry_encode(const struct entry *e, struct buf *out, struct us_err *err)
{
	size_t n;

	return append_entry(e, out, &n, err);
}

/* The decoder's cursor: where it is, where it must stop, and where it began
 * (for byte offsets in messages). */
struct cursor {
	const uint8_t *p;
	const uint8_t *end;
	const uint8_t *start;
};

static size_t cursor_offset(const struct cursor *c)
{
	return (size_t)(c->p - c->start);
}

static int read_varint(struct cursor *c, const char *what, uint64_t *v, struct us_err *err)
{
	/* buf_read_varint fails on fewer than 10 bytes only when every one of
	 * them continues the varint: truncated; on 10 or more, it is too long. */
	bool is_truncated = c->end - c->p < 10;

	if (!buf_read_varint(&c->p, c->end, v))
		return 0;
	return err_set(err, US_ECORRUPT, "%s at byte %zu: %s", what, cursor_offset(c),
		       is_truncated ? "truncated" : "varint over 64 bits");
}

static int read_u8(struct cursor *c, const char *what, uint8_t *v, struct us_err *err)
{
	if (c->p >= c->end)
		return err_set(err, US_ECORRUPT, "%s at byte %zu: truncated", what,
			       cursor_offset(c));
	*v = *c->p++;
	return 0;
}

/* A length-prefixed field: the length is checked against max before the
 * bytes left, so that a huge claimed length is named as such. */
static int read_bytes(struct cursor *c, const char *what, size_t max, const uint8_t **s,
		      size_t *len, struct us_err *err)
{
	size_t at = cursor_offset(c);
	bool is_short = c->end - c->p < 10; /* as read_varint: truncated, else too long */
	uint64_t n;

	/* the label is made on the way to an error only: this runs per field */
	if (buf_read_varint(&c->p, c->end, &n))
		return err_set(err, US_ECORRUPT, "%s length at byte %zu: %s", what, at,
			       is_short ? "truncated" : "varint over 64 bits");
	if (n > max)
		return err_set(err, US_ECORRUPT, "%s length %" PRIu64 " over the limit of %zu",
			       what, n, max);
	if (n > (uint64_t)(c->end - c->p))
		return err_set(err, US_ECORRUPT,
			       "%s at byte %zu: length %" PRIu64 " but only %zu bytes left",
			       what, at, n, (size_t)(c->end - c->p));
	*s = c->p;
	*len = (size_t)n;
	c->p += n;
	return 0;
}

static int read_bool(struct cursor *c, const char *what, bool *v, struct us_err *err)
{
	uint8_t b = 0;
	int rc;

	rc = read_u8(c, what, &b, err);
	if (rc)
		return rc;
	if (b > 1)
		return err_set(err, US_ECORRUPT, "bad %s byte 0x%02x (want 0 or 1)", what, b);
	*v = b;
	return 0;
}

int entry_decode(const uint8_t *p, size_t len, struct entry *out, struct us_err *err)
{
	struct cursor c = { .p = p, .end = p + len, .start = p };
	struct entry e;
	const uint8_t *s;
	uint8_t b = 0, fields;
	int rc;

	memset(&e, 0, sizeof(e));
	rc = read_u8(&c, "op", &b, err);
	if (rc)
		return rc;
	e.op = b & (uint8_t)~ENTRY_FLAG_END;
	e.is_commit_end = (b & ENTRY_FLAG_END) != 0;
	if (e.op < 1 || e.op > ENTRY_OP_MAX)
		return err_set(err, US_ECORRUPT, "unknown op 0x%02x", b);
	fields = op_fields[e.op];
	rc = read_varint(&c, "time", &e.time_ms, err);
	if (rc)
		return rc;
	if (fields & HAS_NAMES) {
		rc = read_bytes(&c, "account", US_ACCOUNT_MAX_LEN, &s, &e.account_len, err);
		if (rc)
			return rc;
		e.account = (const char *)s;
		rc = read_bytes(&c, "file", US_FILE_MAX_LEN, &s, &e.file_len, err);
		if (rc)
			return rc;
		e.file = (const char *)s;
	}
	if (fields & HAS_SECTION) {
		rc = read_u8(&c, "section", &e.section, err);
		if (rc)
			return rc;
		if (e.section != SECTION_DATA && e.section != SECTION_DICT)
			return err_set(err, US_ECORRUPT, "bad section %u (want 0 DATA or 1 DICT)",
				       e.section);
	}
	if (fields & HAS_ID) {
		rc = read_bytes(&c, "id", US_ID_MAX_LEN, &e.id, &e.id_len, err);
		if (rc)
			return rc;
	}
	if (fields & HAS_BODY) {
		rc = read_bytes(&c, "body", US_BODY_MAX_BYTES, &e.body, &e.body_len, err);
		if (rc)
			return rc;
	}
	if (fields & HAS_FLAG) {
		if (e.op == ENTRY_CREATE_FILE) {
			/* 0 or 1: is_logged; 2: a re-ship's reset (entry.h) */
			uint8_t b = 0;

			if ((rc = read_u8(&c, "is_logged", &b, err)))
				return rc;
			if (b > 2)
				return err_set(err, US_ECORRUPT,
					       "bad is_logged byte 0x%02x (want 0, 1 or 2)", b);
			e.flag = b == 1;
			e.is_reset = b == 2;
		} else if ((rc = read_bool(&c, "is_on", &e.flag, err))) {
			return rc;
		}
	}
	if (fields & HAS_VALUE) {
		rc = read_varint(&c, "value", &e.value, err);
		if (rc)
			return rc;
	}
	if (c.p != c.end)
		return err_set(err, US_ECORRUPT, "%zu trailing bytes after a %s entry of %zu bytes",
			       (size_t)(c.end - c.p), entry_op_name(e.op), cursor_offset(&c));
	*out = e;
	return 0;
}

int entry_block_begin(struct entry_block_writer *w, struct buf *out, uint64_t first_seq)
{
	size_t start = out->len;
	int rc;

	/* seqs count from 1 and the last one must fit in a u64 */
	if (first_seq == 0)
		return US_EINVAL;
	rc = buf_append(out, ENTRY_BLOCK_MAGIC, 4);
	if (!rc)
		rc = buf_append_u8(out, ENTRY_BLOCK_VERSION);
	if (!rc)
		rc = buf_append_u64le(out, first_seq);
	if (!rc)
		rc = buf_append_u32le(out, 0); /* count, written by finish */
	if (rc) {
		out->len = start;
		return rc;
	}
	w->out = out;
	w->start = start;
	w->last = 0;
	w->count = 0;
	return 0;
}

static uint64_t block_first_seq(const struct entry_block_writer *w)
{
	return buf_get_u64le(w->out->p + w->start + 5);
}

/* One more entry fits: the count and the seq. */
static int check_room(const struct entry_block_writer *w, struct us_err *err)
{
	if (w->count >= US_BLOCK_MAX_ENTRIES)
		return err_set(err, US_ETOOBIG, "block at seq %" PRIu64 " is full (%u entries)",
			       block_first_seq(w), US_BLOCK_MAX_ENTRIES);
	if (block_first_seq(w) + w->count < block_first_seq(w))
		return err_set(err, US_ERANGE, "block at seq %" PRIu64 ": seq overflows",
			       block_first_seq(w));
	return 0;
}

int entry_block_add(struct entry_block_writer *w, const struct entry *e, struct us_err *err)
{
	struct buf *out = w->out;
	size_t start = out->len;
	size_t n;
	int rc;

	if ((rc = check_room(w, err)))
		return rc;
	rc = check_and_size(e, &n, err);
	if (rc)
		return rc;
	rc = buf_reserve(out, varint_size(n) + n);
	if (rc)
		return err_set(err, rc, "cannot add a %s entry of %zu bytes to a block: out of memory",
			       entry_op_name(e->op), n);
	out->len = (size_t)(put_varint(out->p + start, n) - out->p);
	w->last = out->len;
	write_entry(e, out->p + out->len);
	out->len += n;
	w->count++;
	return 0;
}

int entry_block_add_raw(struct entry_block_writer *w, const uint8_t *p, size_t len,
			struct us_err *err)
{
	struct buf *out = w->out;
	int rc;

	if ((rc = check_room(w, err)))
		return rc;
	if (len == 0)
		return err_set(err, US_EINVAL, "empty entry");
	rc = buf_reserve(out, varint_size(len) + len);
	if (rc)
		return err_set(err, rc, "cannot add an entry of %zu bytes to a block: out of memory",
			       len);
	out->len = (size_t)(put_varint(out->p + out->len, len) - out->p);
	w->last = out->len;
	memcpy(out->p + out->len, p, len);
	out->len += len;
	w->count++;
	return 0;
}

void entry_block_mark_end(struct entry_block_writer *w)
{
	if (w->count)
		w->out->p[w->last] |= ENTRY_FLAG_END;
}

int entry_block_finish(struct entry_block_writer *w, struct us_err *err)
{
	struct buf *out = w->out;
	uint64_t first_seq = block_first_seq(w);
	int rc;

	if (w->count == 0) {
		rc = err_set(err, US_EINVAL, "cannot finish block at seq %" PRIu64 ": no entries",
			     first_seq);
		goto out_undo;
	}
	buf_put_u32le(out->p + w->start + BLOCK_COUNT_OFFSET, w->count);
	rc = buf_append_u32le(out, XXH32(out->p + w->start, out->len - w->start, 0));
	if (rc) {
		err_set(err, rc, "cannot finish block at seq %" PRIu64 ": out of memory",
			first_seq);
		goto out_undo;
	}
	return 0;

out_undo:
	out->len = w->start;
	w->count = 0;
	return rc;
}

int entry_block_open(struct entry_block_reader *r, const uint8_t *p, size_t len,
		     struct us_err *err)
{
	uint64_t first_seq;
	uint32_t count, want, got;
	size_t body;

	if (len < BLOCK_MIN_BYTES)
		return err_set(err, US_ECORRUPT, "block of %zu bytes: truncated (want at least %d)",
			       len, BLOCK_MIN_BYTES);
	if (memcmp(p, ENTRY_BLOCK_MAGIC, 4) != 0)
		return err_set(err, US_ECORRUPT, "not an entry block: bad magic %02x%02x%02x%02x",
			       p[0], p[1], p[2], p[3]);
	if (p[4] != ENTRY_BLOCK_VERSION)
		return err_set(err, US_ECORRUPT, "entry block: unsupported version %u (want %d)",
			       p[4], ENTRY_BLOCK_VERSION);
	want = buf_get_u32le(p + len - CHECKSUM_BYTES);
	got = XXH32(p, len - CHECKSUM_BYTES, 0);
	if (want != got)
		return err_set(err, US_ECORRUPT,
			       "entry block of %zu bytes: checksum mismatch (stored %08x, computed %08x)",
			       len, want, got);
	first_seq = buf_get_u64le(p + 5);
	count = buf_get_u32le(p + BLOCK_COUNT_OFFSET);
	body = len - BLOCK_MIN_BYTES;
	if (first_seq == 0)
		return err_set(err, US_ECORRUPT, "entry block: first seq 0 (seqs count from 1)");
	if (count < 1 || count > US_BLOCK_MAX_ENTRIES)
		return err_set(err, US_ECORRUPT,
			       "block at seq %" PRIu64 ": count %" PRIu32 " out of 1..%u", first_seq,
			       count, US_BLOCK_MAX_ENTRIES);
	if ((uint64_t)count * BLOCK_MIN_ENTRY_BYTES > body)
		return err_set(err, US_ECORRUPT,
			       "block at seq %" PRIu64 ": count %" PRIu32 " but only %zu bytes of entries",
			       first_seq, count, body);
	if (first_seq > UINT64_MAX - (count - 1))
		return err_set(err, US_ECORRUPT,
			       "block at seq %" PRIu64 ": count %" PRIu32 " overflows the seq",
			       first_seq, count);
	r->p = p + ENTRY_BLOCK_HEADER_BYTES;
	r->end = p + len - CHECKSUM_BYTES;
	r->first_seq = first_seq;
	r->count = count;
	r->index = 0;
	return 0;
}

int entry_block_next(struct entry_block_reader *r, struct entry *e, uint64_t *seq,
		     struct us_err *err)
{
	struct cursor c = { .p = r->p, .end = r->end, .start = r->p };
	uint64_t n;
	int rc;

	if (r->index == r->count) {
		if (r->p != r->end)
			return err_set(err, US_ECORRUPT,
				       "block at seq %" PRIu64 ": %zu trailing bytes after its %" PRIu32
				       " entries",
				       r->first_seq, (size_t)(r->end - r->p), r->count);
		return 0;
	}
	if (c.p == c.end)
		return err_set(err, US_ECORRUPT,
			       "block at seq %" PRIu64 ": count %" PRIu32 " but only %" PRIu32
			       " entries present",
			       r->first_seq, r->count, r->index);
	rc = read_varint(&c, "entry length", &n, err);
	if (!rc && n > (uint64_t)(c.end - c.p))
		rc = err_set(err, US_ECORRUPT, "length %" PRIu64 " but only %zu bytes left", n,
			     (size_t)(c.end - c.p));
	if (!rc)
		rc = entry_decode(c.p, (size_t)n, e, err);
	if (rc) {
		err_wrap(err, "entry %" PRIu32 " of block at seq %" PRIu64, r->index + 1,
			 r->first_seq);
		return rc;
	}
	*seq = r->first_seq + r->index;
	r->raw = c.p;
	r->raw_len = (size_t)n;
	r->p = c.p + n;
	r->index++;
	return 1;
}

uint64_t entry_chain(uint64_t chain, const uint8_t *entry, size_t len)
{
	if (len == 0)
		return chain;
	return XXH64(entry + 1, len - 1, chain + (entry[0] & (uint8_t)~ENTRY_FLAG_END));
}

int entry_block_chain(const uint8_t *block, size_t len, uint64_t upto_seq, uint64_t *chain,
		      struct us_err *err)
{
	struct cursor c;
	uint64_t seq, c_out = *chain;
	uint32_t count;

	if (len < BLOCK_MIN_BYTES)
		return err_set(err, US_ECORRUPT, "block of %zu bytes: truncated", len);
	seq = buf_get_u64le(block + 5);
	count = buf_get_u32le(block + BLOCK_COUNT_OFFSET);
	c = (struct cursor){.p = block + ENTRY_BLOCK_HEADER_BYTES,
			    .end = block + len - CHECKSUM_BYTES,
			    .start = block + ENTRY_BLOCK_HEADER_BYTES};
	for (uint32_t i = 0; i < count && seq <= upto_seq; i++, seq++) {
		uint64_t n;
		int rc;

		if ((rc = read_varint(&c, "entry length", &n, err)))
			return rc;
		if (n > (uint64_t)(c.end - c.p))
			return err_set(err, US_ECORRUPT, "entry at seq %" PRIu64 ": length %" PRIu64
				       " but only %zu bytes left", seq, n, (size_t)(c.end - c.p));
		c_out = entry_chain(c_out, c.p, (size_t)n);
		c.p += n;
	}
	*chain = c_out;
	return 0;
}
