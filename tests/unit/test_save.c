/* test_save.c - the save format's writer and reader (lib/save.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lz4.h>
#include <xxhash.h>

#include "buf.h"
#include "entry.h"
#include "save.h"
#include "us_limits.h"

#define TIME_MS 1764064800123ull

static const uint8_t marks_body[] = "NAME\xfe" "ADDR1\xfd" "ADDR2\xfc" "SUB\xfe\xff\x00\x01";

static struct save_header header(uint8_t kind)
{
	struct save_header h;

	memset(&h, 0, sizeof(h));
	h.kind = kind;
	strcpy(h.ns, "site-a");
	h.generation = 3;
	h.seq = 1042;
	h.time_ms = TIME_MS;
	h.chain = 0x0123456789abcdefull;
	strcpy(h.creator, "archiver-1");
	strcpy(h.site, "0123456789abcdef0123456789abcdef");
	h.created_ms = TIME_MS + 5000;
	return h;
}

static struct entry names(uint8_t op, const char *account, const char *file)
{
	struct entry e;

	memset(&e, 0, sizeof(e));
	e.op = op;
	e.account = account;
	e.account_len = strlen(account);
	e.file = file;
	e.file_len = strlen(file);
	return e;
}

static struct entry create_file(const char *account, const char *file, bool is_logged)
{
	struct entry e = names(ENTRY_CREATE_FILE, account, file);

	e.flag = is_logged;
	return e;
}

static struct entry account_off(const char *account)
{
	return names(ENTRY_SET_LOGGING, account, "");
}

static struct entry item(const char *account, const char *file, uint8_t section, const void *id,
			 size_t id_len, const void *body, size_t body_len)
{
	struct entry e = names(ENTRY_WRITE, account, file);

	e.section = section;
	e.id = id;
	e.id_len = id_len;
	e.body = body;
	e.body_len = body_len;
	return e;
}

static void assert_bytes(const void *a, size_t a_len, const void *b, size_t b_len)
{
	assert_int_equal(a_len, b_len);
	if (a_len)
		assert_memory_equal(a, b, a_len);
}

/* e as read back: the fields written, END set and the header's time. */
static void assert_entry_read(const struct entry *want, const struct entry *got)
{
	assert_int_equal(got->op, want->op);
	assert_true(got->is_commit_end);
	assert_true(got->time_ms == TIME_MS);
	assert_bytes(want->account, want->account_len, got->account, got->account_len);
	assert_bytes(want->file, want->file_len, got->file, got->file_len);
	if (want->op == ENTRY_WRITE) {
		assert_int_equal(got->section, want->section);
		assert_bytes(want->id, want->id_len, got->id, got->id_len);
		assert_bytes(want->body, want->body_len, got->body, got->body_len);
	} else {
		assert_int_equal(got->flag, want->flag);
		assert_false(got->is_reset);
	}
}

static void assert_header_equal(const struct save_header *a, const struct save_header *b)
{
	assert_int_equal(a->kind, b->kind);
	assert_string_equal(a->ns, b->ns);
	assert_string_equal(a->scope_account, b->scope_account);
	assert_string_equal(a->scope_file, b->scope_file);
	assert_true(a->generation == b->generation);
	assert_true(a->seq == b->seq);
	assert_true(a->time_ms == b->time_ms);
	assert_true(a->chain == b->chain);
	assert_string_equal(a->creator, b->creator);
	assert_string_equal(a->site, b->site);
	assert_true(a->created_ms == b->created_ms);
}

/* Writes a save of the entries into out (appended to). */
static void write_save(const struct save_header *h, const struct entry *e, size_t n,
		       struct buf *out, struct save_summary *sum)
{
	struct save_writer *w;
	struct us_err err;

	assert_int_equal(save_writer_new(&w, h, save_buf_sink, out, &err), 0);
	for (size_t i = 0; i < n; i++) {
		int rc = save_writer_add(w, &e[i], &err);

		if (rc)
			fail_msg("entry %zu: %s", i, err.msg);
	}
	assert_int_equal(save_writer_finish(w, sum, &err), 0);
	save_writer_free(w);
}

/* Reads a whole save: 0 when read to its checked end, else the first error
 * (err filled). *n counts the entries returned; want, when not NULL, is
 * what they must be. h and sum, when not NULL, are filled. */
static int read_save(const uint8_t *p, size_t len, struct save_header *h, const struct entry *want,
		     size_t *n, struct save_summary *sum, struct us_err *err)
{
	struct save_mem_source m = { .p = p, .len = len };
	struct save_header hh;
	struct save_reader *r;
	struct entry e;
	size_t count = 0;
	int rc;

	err_clear(err);
	rc = save_reader_new(&r, save_mem_source, &m, h ? h : &hh, err);
	if (rc) {
		assert_true(rc < 0);
		assert_int_equal(err->code, rc);
		assert_null(r);
		if (n)
			*n = 0;
		return rc;
	}
	while ((rc = save_reader_next(r, &e, err)) == 1) {
		if (want)
			assert_entry_read(&want[count], &e);
		count++;
	}
	if (rc == 0) {
		assert_non_null(save_reader_summary(r));
		if (sum)
			*sum = *save_reader_summary(r);
		/* the end stays the end */
		assert_int_equal(save_reader_next(r, &e, err), 0);
	} else {
		struct us_err again;

		assert_true(rc < 0);
		assert_int_equal(err->code, rc);
		assert_null(save_reader_summary(r));
		/* an error stays an error */
		assert_int_equal(save_reader_next(r, &e, &again), rc);
		assert_string_equal(again.msg, err->msg);
	}
	if (n)
		*n = count;
	save_reader_free(r);
	return rc;
}

static void assert_msg(const struct us_err *err, const char *part)
{
	if (!strstr(err->msg, part))
		fail_msg("message '%s' lacks '%s'", err->msg, part);
}

/* Rewrites the trailer's checksum (the last 8 bytes) after an edit. */
static void reseal(uint8_t *p, size_t len)
{
	buf_put_u64le(p + len - 8, XXH64(p, len - 8, 0));
}

/* Rewrites the header's checksum after an edit. */
static void reseal_header(uint8_t *p)
{
	uint32_t len = buf_get_u32le(p + 6);

	buf_put_u32le(p + len - 4, XXH32(p, len - 4, 0));
}

/* A small save of every kind of entry: the sample of the refusal tests. */
static size_t small_entries(struct entry *e)
{
	size_t n = 0;

	e[n++] = create_file("SALES", "CUST", true);
	e[n++] = create_file("SALES", "TEMP", false);
	e[n++] = account_off("SCRATCH");
	e[n++] = create_file("SCRATCH", "X", true);
	e[n++] = item("SALES", "CUST", SECTION_DATA, "C1", 2, marks_body, sizeof(marks_body));
	e[n++] = item("SALES", "CUST", SECTION_DATA, "C2", 2, "", 0);
	e[n++] = item("SALES", "CUST", SECTION_DICT, "NAME", 4, "A\xfe" "1", 3);
	e[n++] = item("SCRATCH", "X", SECTION_DATA, "k", 1, "\xfe\xfd\xfc", 3);
	return n;
}

#define SMALL_MAX 8

static void small_save(struct buf *b, struct entry *e, size_t *n)
{
	struct save_header h = header(SAVE_KIND_SAVE);

	*n = small_entries(e);
	buf_init(b);
	write_save(&h, e, *n, b, NULL);
}

/* The offset of the first frame (the header's end) and of the trailer's tag
 * in a save of one frame. */
static size_t frame_at(const struct buf *b)
{
	return buf_get_u32le(b->p + 6);
}

static size_t trailer_at(const struct buf *b)
{
	size_t f = frame_at(b);

	assert_int_equal(b->p[f], 'F');
	return f + SAVE_FRAME_HEADER_BYTES + buf_get_u32le(b->p + f + 5);
}

/* The smallest save: an empty namespace image, byte for byte as in
 * docs/save-format.md ("Example"). */
static const uint8_t empty_save[] = {
	0x55, 0x53, 0x53, 0x56, 0x01, 0x01, 0x4b, 0x00, 0x00, 0x00, 0x06, 0x73, 0x69, 0x74, 0x65, 0x2d,
	0x61, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x04, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x7b, 0xad, 0x74, 0xba, 0x9a, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x0a, 0x61, 0x72, 0x63, 0x68, 0x69, 0x76, 0x65, 0x72, 0x2d, 0x31, 0x00, 0x7b,
	0xad, 0x74, 0xba, 0x9a, 0x01, 0x00, 0x00, 0x71, 0x44, 0x67, 0x7b, 0x54, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x6c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9d, 0x8b, 0x45, 0x27,
	0x9f, 0x50, 0xd0, 0xc0,
};

static void test_empty(void **state)
{
	struct save_header h = header(SAVE_KIND_SAVE), got;
	struct save_summary ws, rs;
	struct us_err err;
	struct buf b;
	size_t n;

	(void)state;
	/* the header of the docs' example */
	h.generation = 1;
	h.seq = 1042;
	h.chain = 0;
	h.created_ms = TIME_MS;
	h.site[0] = '\0';
	buf_init(&b);
	write_save(&h, NULL, 0, &b, &ws);
	assert_true(ws.entries == 0 && ws.items == 0 && ws.files == 0 && ws.frames == 0);
	assert_true(ws.bytes == b.len);
	assert_int_equal(read_save(b.p, b.len, &got, NULL, &n, &rs, &err), 0);
	assert_int_equal(n, 0);
	assert_header_equal(&h, &got);
	assert_memory_equal(&ws, &rs, sizeof(ws));
	assert_true(rs.xxh64 == buf_get_u64le(b.p + b.len - 8));
	if (b.len != sizeof(empty_save) || memcmp(b.p, empty_save, b.len) != 0) {
		for (size_t i = 0; i < b.len; i++)
			fprintf(stderr, "0x%02x,%s", b.p[i], i % 16 == 15 ? "\n" : " ");
		fail_msg("the empty save is not the docs' example (%zu bytes above)", b.len);
	}
	buf_release(&b);
}

static void test_round_trip(void **state)
{
	struct save_header h = header(SAVE_KIND_SEED), got;
	char long_account[US_ACCOUNT_MAX_LEN + 1], long_file[US_FILE_MAX_LEN + 1];
	uint8_t long_id[US_ID_MAX_LEN];
	struct save_summary ws, rs;
	struct entry e[32];
	struct us_err err;
	struct buf b;
	size_t n = 0, k;

	(void)state;
	memset(long_account, 'a', US_ACCOUNT_MAX_LEN);
	long_account[US_ACCOUNT_MAX_LEN] = '\0';
	memset(long_file, 'F', US_FILE_MAX_LEN);
	long_file[US_FILE_MAX_LEN] = '\0';
	for (size_t i = 0; i < sizeof(long_id); i++)
		long_id[i] = (uint8_t)(1 + i % 0xFB);
	e[n++] = create_file("SALES", "CUST", true);
	e[n++] = create_file("SALES", "ORDERS", true);
	e[n++] = create_file("SALES", "TEMP", false);  /* an unlogged file */
	e[n++] = account_off("SCRATCH");               /* an unlogged account */
	e[n++] = create_file("SCRATCH", "WORK", true);
	e[n++] = create_file("SCRATCH", "EMPTY", false); /* a file with no items */
	e[n++] = create_file(long_account, long_file, true);
	e[n++] = account_off("NOFILES");               /* an account with no file */
	e[n++] = item("SALES", "CUST", SECTION_DICT, "NAME", 4, "A\xfe" "1", 3);
	e[n++] = item("SALES", "CUST", SECTION_DATA, "C1", 2, marks_body, sizeof(marks_body));
	e[n++] = item("SALES", "CUST", SECTION_DATA, "C2", 2, "", 0);
	e[n++] = item("SALES", "ORDERS", SECTION_DATA, "O1", 2, "\xfc\xfd\xfe", 3);
	e[n++] = item("SALES", "TEMP", SECTION_DATA, "T1", 2, "temp", 4);
	e[n++] = item("SCRATCH", "WORK", SECTION_DICT, "D", 1, "", 0);
	e[n++] = item("SCRATCH", "WORK", SECTION_DATA, "W", 1, "\xfe", 1);
	e[n++] = item(long_account, long_file, SECTION_DATA, long_id, sizeof(long_id), "x", 1);
	e[n++] = item("SALES", "CUST", SECTION_DATA, "C3", 2, "back to an earlier file", 23);
	/* the writer ignores END and time: every entry is read with both set */
	e[1].is_commit_end = true;
	e[1].time_ms = 7;
	e[9].time_ms = 99;

	buf_init(&b);
	write_save(&h, e, n, &b, &ws);
	assert_true(ws.entries == n);
	assert_true(ws.items == 9);
	assert_true(ws.files == 6);
	assert_true(ws.frames == 1);
	assert_true(ws.bytes == b.len);
	assert_int_equal(read_save(b.p, b.len, &got, e, &k, &rs, &err), 0);
	assert_int_equal(k, n);
	assert_header_equal(&h, &got);
	assert_memory_equal(&ws, &rs, sizeof(ws));
	buf_release(&b);

	/* scopes: an account, an account's file */
	h = header(SAVE_KIND_SAVE);
	strcpy(h.scope_account, "SALES");
	buf_init(&b);
	write_save(&h, e, 3, &b, NULL);
	assert_int_equal(read_save(b.p, b.len, &got, e, &k, NULL, &err), 0);
	assert_header_equal(&h, &got);
	buf_release(&b);
	strcpy(h.scope_file, "ORDERS");
	h.site[0] = '\0';
	buf_init(&b);
	write_save(&h, &e[1], 1, &b, NULL);
	assert_int_equal(read_save(b.p, b.len, &got, &e[1], &k, NULL, &err), 0);
	assert_int_equal(k, 1);
	assert_header_equal(&h, &got);
	buf_release(&b);
}

/* Walks the frames of a save by hand (not with the reader): each one's
 * block counts entries from 1 across frames, and its raw length keeps its
 * bounds. Returns the frame count; *max_raw the largest raw length. */
static uint64_t walk_frames(const struct buf *b, uint64_t *entries, size_t *max_raw)
{
	size_t at = frame_at(b);
	uint64_t frames = 0;
	struct buf raw;

	buf_init(&raw);
	*entries = 0;
	*max_raw = 0;
	while (b->p[at] == 'F') {
		uint32_t raw_len = buf_get_u32le(b->p + at + 1);
		uint32_t comp_len = buf_get_u32le(b->p + at + 5);
		struct entry_block_reader r;
		struct us_err err;

		assert_true(raw_len <= US_SAVE_FRAME_MAX_RAW_BYTES);
		assert_true(comp_len <= (uint32_t)LZ4_compressBound((int)raw_len));
		buf_reset(&raw);
		assert_int_equal(buf_reserve(&raw, raw_len), 0);
		assert_int_equal(LZ4_decompress_safe((const char *)b->p + at + 9, (char *)raw.p,
						     (int)comp_len, (int)raw_len),
				 (int)raw_len);
		assert_int_equal(entry_block_open(&r, raw.p, raw_len, &err), 0);
		assert_true(r.first_seq == *entries + 1);
		*entries += r.count;
		if (raw_len > *max_raw)
			*max_raw = raw_len;
		frames++;
		at += SAVE_FRAME_HEADER_BYTES + comp_len;
	}
	assert_int_equal(b->p[at], 'T');
	buf_release(&raw);
	return frames;
}

static void test_many_frames(void **state)
{
	enum { ITEMS = 30000 };
	struct save_header h = header(SAVE_KIND_SAVE);
	struct save_summary ws, rs;
	struct entry *e;
	uint8_t *bodies;
	char *ids;
	struct us_err err;
	uint64_t entries;
	size_t n = 0, k, max_raw;
	struct buf b;
	uint32_t x = 2463534242u;

	(void)state;
	e = calloc(ITEMS + 2, sizeof(*e));
	bodies = malloc((size_t)ITEMS * 100);
	ids = malloc((size_t)ITEMS * 8);
	assert_non_null(e);
	assert_non_null(bodies);
	assert_non_null(ids);
	e[n++] = create_file("A", "F1", true);
	e[n++] = create_file("A", "F2", false);
	for (size_t i = 0; i < ITEMS; i++) {
		/* xorshift: bodies that LZ4 cannot squeeze to nothing */
		for (size_t j = 0; j < 100; j++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			bodies[i * 100 + j] = (uint8_t)(j % 10 == 9 ? 0xfe : 'a' + x % 26);
		}
		snprintf(ids + i * 8, 8, "%07zu", i);
		e[n++] = item("A", i % 3 ? "F1" : "F2", i % 7 ? SECTION_DATA : SECTION_DICT,
			      ids + i * 8, 7, bodies + i * 100, 1 + i % 100);
	}
	buf_init(&b);
	write_save(&h, e, n, &b, &ws);
	assert_true(ws.entries == n && ws.items == ITEMS && ws.files == 2);
	assert_true(ws.frames >= 4);
	assert_true(walk_frames(&b, &entries, &max_raw) == ws.frames);
	assert_true(entries == n);
	/* filled to the target, plus at most one (small) entry */
	assert_true(max_raw >= US_SAVE_FRAME_TARGET_BYTES && max_raw < US_SAVE_FRAME_TARGET_BYTES + 200);
	assert_int_equal(read_save(b.p, b.len, NULL, e, &k, &rs, &err), 0);
	assert_int_equal(k, n);
	assert_memory_equal(&ws, &rs, sizeof(ws));
	buf_release(&b);
	free(ids);
	free(bodies);
	free(e);
}

static void test_big_body(void **state)
{
	struct save_header h = header(SAVE_KIND_SAVE);
	size_t len = US_BODY_MAX_BYTES, k, max_raw;
	uint8_t *body = malloc(len);
	struct save_summary ws, rs;
	struct entry e[6];
	struct us_err err;
	uint64_t entries;
	struct buf b;
	uint32_t x = 88172645u;

	(void)state;
	assert_non_null(body);
	/* incompressible: the frame's LZ4 bytes are over 16 MiB too */
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		body[i] = (uint8_t)x;
	}
	e[0] = create_file("A", "BIG", true);
	e[1] = item("A", "BIG", SECTION_DATA, "small", 5, "s", 1);
	e[2] = item("A", "BIG", SECTION_DATA, "big", 3, body, len);
	e[3] = item("A", "BIG", SECTION_DICT, "big2", 4, body, len);
	e[4] = item("A", "BIG", SECTION_DATA, "after", 5, "", 0);
	buf_init(&b);
	write_save(&h, e, 5, &b, &ws);
	assert_true(ws.items == 4);
	assert_true(walk_frames(&b, &entries, &max_raw) == ws.frames);
	assert_true(entries == 5);
	assert_true(max_raw > US_BODY_MAX_BYTES && max_raw <= US_SAVE_FRAME_MAX_RAW_BYTES);
	assert_int_equal(read_save(b.p, b.len, NULL, e, &k, &rs, &err), 0);
	assert_int_equal(k, 5);
	assert_memory_equal(&ws, &rs, sizeof(ws));
	buf_release(&b);
	free(body);
}

/* Every refusal of the writer changes nothing: the entries taken still make
 * a save that reads back. */
static void test_writer_refusals(void **state)
{
	struct save_header h = header(SAVE_KIND_SAVE), bad;
	struct entry taken[8], e;
	struct save_writer *w;
	struct us_err err;
	size_t n = 0, k;
	struct buf b;

	(void)state;
	buf_init(&b);
	/* bad headers */
	bad = h;
	strcpy(bad.ns, "Site-A");
	assert_int_equal(save_writer_new(&w, &bad, save_buf_sink, &b, &err), US_EINVAL);
	assert_null(w);
	assert_msg(&err, "namespace");
	bad = h;
	bad.creator[0] = '\0';
	assert_int_equal(save_writer_new(&w, &bad, save_buf_sink, &b, &err), US_EINVAL);
	bad = h;
	strcpy(bad.scope_file, "CUST");
	assert_int_equal(save_writer_new(&w, &bad, save_buf_sink, &b, &err), US_EINVAL);
	assert_msg(&err, "without an account");
	bad = h;
	bad.seq = US_SEQ_MAX + 1;
	assert_int_equal(save_writer_new(&w, &bad, save_buf_sink, &b, &err), US_EINVAL);
	bad = h;
	bad.kind = 4;
	assert_int_equal(save_writer_new(&w, &bad, save_buf_sink, &b, &err), US_EINVAL);
	bad = h;
	memset(bad.site, 'x', sizeof(bad.site)); /* not terminated */
	assert_int_equal(save_writer_new(&w, &bad, save_buf_sink, &b, &err), US_EINVAL);
	assert_int_equal(b.len, 0);

	strcpy(h.scope_account, "SALES");
	assert_int_equal(save_writer_new(&w, &h, save_buf_sink, &b, &err), 0);
	/* ops that have no place in a save */
	e = names(ENTRY_DELETE, "SALES", "CUST");
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	assert_msg(&err, "a delete entry (op 2) has no place in a save");
	e = names(ENTRY_HEARTBEAT, "", "");
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	e = names(ENTRY_CLEAR_FILE, "SALES", "CUST");
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	e.op = 0;
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	/* a write before its file */
	e = item("SALES", "CUST", SECTION_DATA, "C1", 2, "x", 1);
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	assert_msg(&err, "cannot add entry 1 to a save: write to SALES/CUST, a file not declared before");
	/* declarations that are not */
	e = create_file("SALES", "CUST", true);
	e.is_reset = true;
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	e = create_file("OTHER", "CUST", true);
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	assert_msg(&err, "scope");
	e = create_file("SALES", "", true);
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	e = create_file("SALES", "BAD NAME", true);
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	e = names(ENTRY_SET_LOGGING, "SALES", "CUST"); /* a file's flag */
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	e = account_off("SALES");
	e.flag = true; /* on: the default, never declared */
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);

	taken[n] = create_file("SALES", "CUST", true);
	assert_int_equal(save_writer_add(w, &taken[n++], &err), 0);
	e = create_file("SALES", "CUST", false);
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	assert_msg(&err, "file SALES/CUST declared twice");
	taken[n] = account_off("SALES");
	assert_int_equal(save_writer_add(w, &taken[n++], &err), 0);
	e = account_off("SALES");
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	assert_msg(&err, "account SALES declared twice");
	/* bad items */
	e = item("SALES", "CUST", SECTION_DATA, "bad\xfe" "id", 6, "x", 1);
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	e = item("SALES", "CUST", SECTION_DATA, "", 0, "x", 1);
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	e = item("SALES", "CUST", 2, "id", 2, "x", 1);
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	e = item("SALES", "CUST", SECTION_DATA, "id", 2, "x", (size_t)US_BODY_MAX_BYTES + 1);
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	e = item("SALES", "", SECTION_DATA, "id", 2, "x", 1); /* the account's name */
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	taken[n] = item("SALES", "CUST", SECTION_DATA, "C1", 2, "x", 1);
	assert_int_equal(save_writer_add(w, &taken[n++], &err), 0);
	/* a declaration after the first write */
	e = create_file("SALES", "LATE", true);
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);
	assert_msg(&err, "after the first write");
	e = account_off("SALES2");
	assert_int_equal(save_writer_add(w, &e, &err), US_EINVAL);

	assert_int_equal(save_writer_finish(w, NULL, &err), 0);
	assert_int_equal(save_writer_add(w, &taken[2], &err), US_EINVAL);
	assert_int_equal(save_writer_finish(w, NULL, &err), US_EINVAL);
	save_writer_free(w);
	save_writer_free(NULL);
	assert_int_equal(read_save(b.p, b.len, NULL, taken, &k, NULL, &err), 0);
	assert_int_equal(k, n);
	buf_release(&b);
}

/* A sink that takes limit bytes, then fails. */
struct failing_sink {
	struct buf b;
	size_t limit;
};

static int failing_sink(void *arg, const uint8_t *p, size_t len, struct us_err *err)
{
	struct failing_sink *s = arg;

	if (s->b.len + len > s->limit)
		return err_set(err, US_ENOSPC, "disk full");
	return buf_append(&s->b, p, len) ? US_ENOMEM : 0;
}

static void test_sink_failure(void **state)
{
	struct save_header h = header(SAVE_KIND_SAVE);
	struct failing_sink s = { .limit = 10 };
	struct entry e[SMALL_MAX];
	struct save_writer *w;
	struct us_err err;
	size_t n = small_entries(e);

	(void)state;
	buf_init(&s.b);
	assert_int_equal(save_writer_new(&w, &h, failing_sink, &s, &err), US_ENOSPC);
	assert_null(w);
	s.limit = 200; /* the header, not the trailer */
	assert_int_equal(save_writer_new(&w, &h, failing_sink, &s, &err), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(save_writer_add(w, &e[i], &err), 0);
	assert_int_equal(save_writer_finish(w, NULL, &err), US_ENOSPC);
	assert_string_equal(err.msg, "disk full");
	assert_int_equal(save_writer_finish(w, NULL, &err), US_EIO);
	assert_int_equal(save_writer_add(w, &e[0], &err), US_EIO);
	assert_msg(&err, "failed earlier");
	save_writer_free(w);
	buf_release(&s.b);
}

static void test_truncations(void **state)
{
	struct entry e[SMALL_MAX];
	struct us_err err;
	size_t n, k;
	struct buf b;

	(void)state;
	small_save(&b, e, &n);
	assert_int_equal(read_save(b.p, b.len, NULL, e, &k, NULL, &err), 0);
	assert_int_equal(k, n);
	for (size_t len = 0; len < b.len; len++) {
		/* exactly len bytes, so that ASan sees a read past them */
		uint8_t *p = malloc(len ? len : 1);

		assert_non_null(p);
		memcpy(p, b.p, len);
		assert_int_equal(read_save(p, len, NULL, e, &k, NULL, &err), US_ECORRUPT);
		assert_msg(&err, "truncated save");
		assert_msg(&err, "offset");
		free(p);
	}
	/* some of them, word for word */
	assert_int_equal(read_save(b.p, 3, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_string_equal(err.msg, "truncated save: header at offset 0 wants 10 bytes, only 3 left");
	assert_int_equal(read_save(b.p, 40, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_string_equal(err.msg, "truncated save: header at offset 0 wants 107 bytes, only 40 left");
	{
		size_t f = frame_at(&b), t = trailer_at(&b);
		char want[200];

		assert_int_equal(read_save(b.p, f, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
		snprintf(want, sizeof(want), "truncated save: ends at offset %zu without its trailer", f);
		assert_string_equal(err.msg, want);
		assert_int_equal(read_save(b.p, f + 20, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
		snprintf(want, sizeof(want),
			 "truncated save: frame at offset %zu wants %zu bytes, only 20 left", f, t - f);
		assert_string_equal(err.msg, want);
		assert_int_equal(read_save(b.p, t + 30, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
		snprintf(want, sizeof(want),
			 "truncated save: trailer at offset %zu ends after 30 bytes", t);
		assert_string_equal(err.msg, want);
	}
	buf_release(&b);
}

static void test_bit_flips(void **state)
{
	struct entry e[SMALL_MAX];
	struct us_err err;
	size_t n, k, f, t;
	struct buf b;
	char want[200];

	(void)state;
	small_save(&b, e, &n);
	for (size_t bit = 0; bit < b.len * 8; bit++) {
		int rc;

		b.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		rc = read_save(b.p, b.len, NULL, NULL, &k, NULL, &err);
		if (rc != US_ECORRUPT && !(bit / 8 == 4 && rc == US_EUNIMPL))
			fail_msg("bit %zu: rc %d (%s)", bit, rc, err.msg);
		assert_msg(&err, "offset");
		b.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_int_equal(read_save(b.p, b.len, NULL, e, &k, NULL, &err), 0);

	/* some of them, word for word */
	f = frame_at(&b);
	t = trailer_at(&b);
	b.p[20] ^= 1; /* in the header */
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	snprintf(want, sizeof(want), "damaged save: header checksum mismatch at offset %zu", f - 4);
	assert_msg(&err, want);
	b.p[20] ^= 1;
	b.p[f + 30] ^= 0x10; /* in the frame's LZ4 bytes */
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	snprintf(want, sizeof(want), "damaged save: frame at offset %zu", f);
	assert_msg(&err, want);
	b.p[f + 30] ^= 0x10;
	b.p[b.len - 3] ^= 0x80; /* in the checksum */
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	snprintf(want, sizeof(want), "damaged save: checksum mismatch at offset %zu (stored", b.len - 8);
	assert_msg(&err, want);
	b.p[b.len - 3] ^= 0x80;
	b.p[t + 1] ^= 0x01; /* the entry count: the counts are checked first */
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	snprintf(want, sizeof(want), "damaged save: trailer at offset %zu counts 9 entries", t);
	assert_msg(&err, want);
	b.p[t + 1] ^= 0x01;
	b.p[t] = 'X'; /* the trailer's tag */
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	snprintf(want, sizeof(want), "damaged save: unknown tag 0x58 at offset %zu", t);
	assert_msg(&err, want);
	buf_release(&b);
}

static void test_magic_and_version(void **state)
{
	struct entry e[SMALL_MAX];
	struct us_err err;
	size_t n;
	struct buf b;

	(void)state;
	small_save(&b, e, &n);
	assert_memory_equal(b.p, "USSV", 4);
	b.p[1] = 'X';
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_string_equal(err.msg, "not a save: magic 'UXSV' at offset 0 (want 'USSV')");
	assert_int_equal(read_save((const uint8_t *)"USJB\x01", 5, NULL, NULL, NULL, NULL, &err),
			 US_ECORRUPT);
	assert_msg(&err, "not a save");
	b.p[1] = 'S';
	b.p[4] = 7;
	reseal_header(b.p); /* a newer writer's header: its own checksum is right */
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_EUNIMPL);
	assert_string_equal(err.msg,
			    "save format version 7 at offset 4 is not supported (this program reads 1)");
	b.p[4] = 0;
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_EUNIMPL);
	b.p[4] = 1;
	reseal_header(b.p);
	/* kind, header length: checked, named */
	b.p[5] = 9;
	reseal_header(b.p);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "unknown kind 9");
	b.p[5] = 1;
	reseal_header(b.p);
	buf_put_u32le(b.p + 6, US_SAVE_HEADER_MAX_BYTES + 1);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_string_equal(err.msg, "damaged save: header length 1025 at offset 6 out of 59..1024");
	buf_release(&b);
}

static void test_trailing_bytes(void **state)
{
	struct entry e[SMALL_MAX];
	struct us_err err;
	size_t n, len, k;
	struct buf b;
	char want[120];

	(void)state;
	small_save(&b, e, &n);
	len = b.len;
	assert_int_equal(buf_append_u8(&b, 0), 0);
	assert_int_equal(read_save(b.p, b.len, NULL, e, &k, NULL, &err), US_ECORRUPT);
	assert_int_equal(k, n); /* every entry, then the refusal */
	snprintf(want, sizeof(want), "damaged save: trailing bytes at offset %zu after the trailer",
		 len);
	assert_string_equal(err.msg, want);
	/* a whole second save after the first */
	b.len = len;
	assert_int_equal(buf_reserve(&b, len), 0);
	memcpy(b.p + len, b.p, len);
	b.len += len;
	assert_int_equal(read_save(b.p, b.len, NULL, e, &k, NULL, &err), US_ECORRUPT);
	assert_string_equal(err.msg, want);
	buf_release(&b);
}

/* Header + one frame with the given lengths and comp bytes, no trailer. */
static void frame_save(struct buf *b, uint32_t raw_len, uint32_t comp_len, size_t present)
{
	struct save_header h = header(SAVE_KIND_SAVE);
	struct save_writer *w;
	struct us_err err;

	buf_init(b);
	assert_int_equal(save_writer_new(&w, &h, save_buf_sink, b, &err), 0);
	save_writer_free(w);
	assert_int_equal(buf_append_u8(b, 'F'), 0);
	assert_int_equal(buf_append_u32le(b, raw_len), 0);
	assert_int_equal(buf_append_u32le(b, comp_len), 0);
	for (size_t i = 0; i < present; i++)
		assert_int_equal(buf_append_u8(b, 0x11), 0);
}

static void test_frame_lengths(void **state)
{
	struct us_err err;
	struct buf b;
	size_t f;
	char want[200];

	(void)state;
	/* refused on the length alone: the bytes behind it are never asked for */
	frame_save(&b, US_SAVE_FRAME_MAX_RAW_BYTES + 1, 1000, 0);
	f = frame_at(&b);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	snprintf(want, sizeof(want),
		 "damaged save: frame at offset %zu: raw length %u out of 24..%u", f,
		 US_SAVE_FRAME_MAX_RAW_BYTES + 1, US_SAVE_FRAME_MAX_RAW_BYTES);
	assert_string_equal(err.msg, want);
	buf_release(&b);
	frame_save(&b, UINT32_MAX, UINT32_MAX, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "raw length 4294967295 out of");
	buf_release(&b);
	frame_save(&b, 23, 10, 10);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "raw length 23 out of");
	buf_release(&b);
	/* compressed length over LZ4's bound for the raw length, or 0 */
	frame_save(&b, 1000, (uint32_t)LZ4_compressBound(1000) + 1, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "compressed length");
	buf_release(&b);
	frame_save(&b, 1000, 0, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "compressed length 0 out of");
	buf_release(&b);
	/* the largest raw length, claimed, and 100 bytes present */
	frame_save(&b, US_SAVE_FRAME_MAX_RAW_BYTES, US_SAVE_FRAME_MAX_RAW_BYTES, 100);
	f = frame_at(&b);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	snprintf(want, sizeof(want), "truncated save: frame at offset %zu wants %u bytes, only 109 left",
		 f, US_SAVE_FRAME_MAX_RAW_BYTES + SAVE_FRAME_HEADER_BYTES);
	assert_string_equal(err.msg, want);
	buf_release(&b);
	/* LZ4 bytes that do not decompress */
	frame_save(&b, 1000, 100, 100);
	f = frame_at(&b);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	snprintf(want, sizeof(want), "damaged save: frame at offset %zu does not decompress to 1000 bytes", f);
	assert_string_equal(err.msg, want);
	buf_release(&b);
}

/* The trailer's figures must be what was read: edit one, reseal, and the
 * reader names it. */
static void test_trailer_counts(void **state)
{
	struct entry e[SMALL_MAX];
	struct us_err err;
	size_t n, t, k;
	struct buf b;
	uint8_t *save;
	char want[200];

	(void)state;
	small_save(&b, e, &n);
	t = trailer_at(&b);
	save = malloc(b.len);
	assert_non_null(save);
	memcpy(save, b.p, b.len);
	/* tag, entries 8, frames 1, files 3: SALES/CUST 2 1, SALES/TEMP 0 0, SCRATCH/X 1 0 */
	assert_true(buf_get_u64le(b.p + t + 1) == 8);
	assert_true(buf_get_u64le(b.p + t + 9) == 1);
	assert_true(buf_get_u64le(b.p + t + 17) == 3);

	buf_put_u64le(b.p + t + 9, 2);
	reseal(b.p, b.len);
	assert_int_equal(read_save(b.p, b.len, NULL, e, &k, NULL, &err), US_ECORRUPT);
	assert_int_equal(k, n);
	snprintf(want, sizeof(want),
		 "damaged save: trailer at offset %zu counts 8 entries, 2 frames, 3 files; read 8, 1, 3",
		 t);
	assert_string_equal(err.msg, want);
	memcpy(b.p, save, b.len);

	buf_put_u64le(b.p + t + 17, 2);
	reseal(b.p, b.len);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "2 files; read 8, 1, 3");
	memcpy(b.p, save, b.len);

	/* SALES/CUST's DATA count: after tag 1 + 24, str 6, str 5 */
	assert_true(buf_get_u64le(b.p + t + 36) == 2);
	buf_put_u64le(b.p + t + 36, 3);
	reseal(b.p, b.len);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	snprintf(want, sizeof(want),
		 "damaged save: trailer at offset %zu counts 3 DATA and 1 DICT items in SALES/CUST; read 2 and 1",
		 t + 25);
	assert_string_equal(err.msg, want);
	memcpy(b.p, save, b.len);

	/* a file's name */
	b.p[t + 27] = 'X'; /* SALES -> SXLES */
	reseal(b.p, b.len);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "trailer's file record 1 at offset");
	assert_msg(&err, "is not SALES/CUST (declared as file 1)");
	memcpy(b.p, save, b.len);

	/* a name's length over its limit */
	b.p[t + 25] = 65;
	reseal(b.p, b.len);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "length 65 over the limit of 64");
	memcpy(b.p, save, b.len);

	/* the checksum's offset */
	buf_put_u64le(b.p + b.len - 16, b.len);
	reseal(b.p, b.len);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, NULL, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "says the checksum is at offset");
	memcpy(b.p, save, b.len);

	assert_int_equal(read_save(b.p, b.len, NULL, e, &k, NULL, &err), 0);
	free(save);
	buf_release(&b);
}

/* A save built by hand from any entries (first_seq: the frame's, 0: 1), so
 * that the reader meets what the writer never writes; trailer for the
 * entries as given (files: CREATE_FILE count, no per-file records). */
static void hand_save_kind(struct buf *b, uint8_t kind, const struct entry *e, size_t n,
			   uint64_t first_seq)
{
	struct save_header h = header(kind);
	struct entry_block_writer bw;
	struct save_writer *w;
	struct us_err err;
	struct buf raw;
	uint64_t files = 0;
	int comp;

	buf_init(b);
	buf_init(&raw);
	assert_int_equal(save_writer_new(&w, &h, save_buf_sink, b, &err), 0);
	save_writer_free(w);
	assert_int_equal(entry_block_begin(&bw, &raw, first_seq ? first_seq : 1), 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(entry_block_add(&bw, &e[i], &err), 0);
		files += e[i].op == ENTRY_CREATE_FILE;
	}
	assert_int_equal(entry_block_finish(&bw, &err), 0);
	assert_int_equal(buf_append_u8(b, 'F'), 0);
	assert_int_equal(buf_append_u32le(b, (uint32_t)raw.len), 0);
	assert_int_equal(buf_reserve(b, 4 + (size_t)LZ4_compressBound((int)raw.len)), 0);
	comp = LZ4_compress_default((const char *)raw.p, (char *)b->p + b->len + 4, (int)raw.len,
				    LZ4_compressBound((int)raw.len));
	assert_true(comp > 0);
	buf_put_u32le(b->p + b->len, (uint32_t)comp);
	b->len += 4 + (size_t)comp;
	assert_int_equal(buf_append_u8(b, 'T'), 0);
	assert_int_equal(buf_append_u64le(b, n), 0);
	assert_int_equal(buf_append_u64le(b, 1), 0);
	assert_int_equal(buf_append_u64le(b, files), 0);
	assert_int_equal(buf_append_u64le(b, b->len + 8), 0);
	assert_int_equal(buf_append_u64le(b, XXH64(b->p, b->len, 0)), 0);
	buf_release(&raw);
}

static void hand_save(struct buf *b, const struct entry *e, size_t n, uint64_t first_seq)
{
	hand_save_kind(b, SAVE_KIND_SAVE, e, n, first_seq);
}

static struct entry whole(struct entry e)
{
	e.is_commit_end = true;
	e.time_ms = TIME_MS;
	return e;
}

/* An export (kind 3) keeps a site's journaled commits as they were: any
 * data or file op, each entry's time and END; it refuses what has no place
 * in a journal's tail, and a tail that ends inside a commit, on both sides. */
static void test_export(void **state)
{
	struct save_header h = header(SAVE_KIND_EXPORT), got_h;
	struct save_mem_source m;
	struct save_summary sum, rsum;
	struct save_reader *r;
	struct save_writer *w;
	struct entry e[7], got;
	struct us_err err;
	struct buf b;
	size_t n = 0;

	(void)state;
	e[0] = create_file("ACC", "NEW", true);
	e[1] = item("ACC", "NEW", SECTION_DATA, "k1", 2, marks_body, sizeof(marks_body));
	e[2] = names(ENTRY_DELETE, "ACC", "CUST");
	e[2].id = (const uint8_t *)"old";
	e[2].id_len = 3;
	e[3] = names(ENTRY_CLEAR_FILE, "ACC", "CUST");
	e[3].section = SECTION_DICT;
	e[4] = names(ENTRY_DELETE_FILE, "ACC", "GONE");
	e[5] = names(ENTRY_SET_LOGGING, "ACC", "NEW");
	e[6] = item("ACC", "CUST", SECTION_DATA, "k2", 2, "v", 1);
	for (size_t i = 0; i < 7; i++)
		e[i].time_ms = TIME_MS + 10 * (i / 2); /* commits of two entries, then one */
	e[1].is_commit_end = e[3].is_commit_end = e[5].is_commit_end = true;
	e[6].is_commit_end = true;
	buf_init(&b);
	write_save(&h, e, 7, &b, &sum);
	assert_true(sum.entries == 7 && sum.items == 2 && sum.files == 0);

	m = (struct save_mem_source){ .p = b.p, .len = b.len };
	assert_int_equal(save_reader_new(&r, save_mem_source, &m, &got_h, &err), 0);
	assert_header_equal(&h, &got_h);
	while (save_reader_next(r, &got, &err) == 1) {
		assert_true(n < 7);
		assert_int_equal(got.op, e[n].op);
		assert_int_equal(got.is_commit_end, e[n].is_commit_end);
		assert_true(got.time_ms == e[n].time_ms);
		assert_bytes(e[n].account, e[n].account_len, got.account, got.account_len);
		assert_bytes(e[n].file, e[n].file_len, got.file, got.file_len);
		assert_bytes(e[n].id, e[n].id_len, got.id, got.id_len);
		assert_int_equal(got.section, e[n].section);
		n++;
	}
	assert_int_equal(n, 7);
	rsum = *save_reader_summary(r);
	assert_true(rsum.entries == 7 && rsum.items == 2 && rsum.xxh64 == sum.xxh64);
	save_reader_free(r);

	/* what has no place: a heartbeat; a bad id; finishing inside a commit */
	assert_int_equal(save_writer_new(&w, &h, save_buf_sink, &b, &err), 0);
	{
		struct entry hb = names(ENTRY_HEARTBEAT, "", "");
		struct entry bad = item("ACC", "F", SECTION_DATA, "", 0, "v", 1);
		struct entry open_commit = item("ACC", "F", SECTION_DATA, "k", 1, "v", 1);

		assert_int_equal(save_writer_add(w, &hb, &err), US_EINVAL);
		assert_msg(&err, "no place in an export");
		assert_int_equal(save_writer_add(w, &bad, &err), US_EINVAL);
		assert_int_equal(save_writer_add(w, &open_commit, &err), 0);
		assert_int_equal(save_writer_finish(w, NULL, &err), US_EINVAL);
		assert_msg(&err, "inside a commit");
	}
	save_writer_free(w);

	/* the reader calls an export cut inside a commit damaged (a hand-made
	 * one whose last entry has no END); the same entries with END read */
	{
		struct entry x[2];
		struct buf hb;

		x[0] = item("ACC", "F", SECTION_DATA, "k", 1, "v", 1);
		x[1] = x[0];
		x[0].time_ms = x[1].time_ms = TIME_MS - 7;
		hand_save_kind(&hb, SAVE_KIND_EXPORT, x, 2, 0);
		assert_true(read_save(hb.p, hb.len, NULL, NULL, NULL, NULL, &err) == US_ECORRUPT);
		assert_msg(&err, "ends inside a commit");
		buf_release(&hb);
		x[1].is_commit_end = true;
		hand_save_kind(&hb, SAVE_KIND_EXPORT, x, 2, 0);
		assert_int_equal(read_save(hb.p, hb.len, NULL, NULL, &n, NULL, &err), 0);
		assert_int_equal(n, 2);
		buf_release(&hb);
		/* as a save (kind 1), the same open commit is refused at once */
		hand_save_kind(&hb, SAVE_KIND_SAVE, x, 2, 0);
		assert_true(read_save(hb.p, hb.len, NULL, NULL, NULL, NULL, &err) == US_ECORRUPT);
		assert_msg(&err, "not a whole commit");
		buf_release(&hb);
	}
	buf_release(&b);
}

/* The reader checks every entry as the writer does. */
static void test_reader_checks_entries(void **state)
{
	struct entry e[4];
	struct us_err err;
	struct buf b;
	size_t k;
	char want[200];

	(void)state;
	/* the hand-built save itself is fine */
	e[0] = whole(account_off("ACC"));
	hand_save(&b, e, 1, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, e, &k, NULL, &err), 0);
	buf_release(&b);

	e[0] = whole(item("A", "F", SECTION_DATA, "i", 1, "b", 1));
	hand_save(&b, e, 1, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, &k, NULL, &err), US_ECORRUPT);
	assert_int_equal(k, 0);
	snprintf(want, sizeof(want),
		 "damaged save: entry 1 (frame at offset %zu): write to A/F, a file not declared before",
		 frame_at(&b));
	assert_string_equal(err.msg, want);
	buf_release(&b);

	e[0] = whole(create_file("A", "F", true));
	e[1] = whole(names(ENTRY_DELETE, "A", "F"));
	e[1].id = (const uint8_t *)"i";
	e[1].id_len = 1;
	hand_save(&b, e, 2, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, &k, NULL, &err), US_ECORRUPT);
	assert_int_equal(k, 1);
	assert_msg(&err, "entry 2 (frame at offset");
	assert_msg(&err, "a delete entry (op 2) has no place in a save");
	buf_release(&b);

	e[1] = whole(create_file("A", "F", false));
	hand_save(&b, e, 2, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, &k, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "file A/F declared twice");
	buf_release(&b);

	e[1] = whole(item("A", "F", SECTION_DICT, "i", 1, "", 0));
	e[2] = whole(create_file("A", "G", true));
	hand_save(&b, e, 3, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, &k, NULL, &err), US_ECORRUPT);
	assert_int_equal(k, 2);
	assert_msg(&err, "after the first write");
	buf_release(&b);

	e[1] = whole(create_file("A", "G", true));
	e[1].is_reset = true;
	hand_save(&b, e, 2, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, &k, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "reset");
	buf_release(&b);

	e[1] = whole(create_file("bad name", "G", true));
	hand_save(&b, e, 2, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, &k, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "bad account");
	buf_release(&b);

	/* not a whole commit, not at the header's time */
	e[1] = whole(create_file("A", "G", true));
	e[1].is_commit_end = false;
	hand_save(&b, e, 2, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, &k, NULL, &err), US_ECORRUPT);
	assert_msg(&err, "entry 2 (frame at offset");
	assert_msg(&err, "is not a whole commit at the header's time");
	buf_release(&b);
	e[1] = whole(create_file("A", "G", true));
	e[1].time_ms++;
	hand_save(&b, e, 2, 0);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, &k, NULL, &err), US_ECORRUPT);
	buf_release(&b);

	/* a frame that does not start where the entries before it end */
	e[1] = whole(create_file("A", "G", true));
	hand_save(&b, e, 2, 2);
	assert_int_equal(read_save(b.p, b.len, NULL, NULL, &k, NULL, &err), US_ECORRUPT);
	snprintf(want, sizeof(want), "damaged save: frame at offset %zu starts at entry 2, want 1",
		 frame_at(&b));
	assert_string_equal(err.msg, want);
	buf_release(&b);
}

/* Through stdio, as `understudy save -o FILE` and `dump FILE` will. */
static void test_file_io(void **state)
{
	struct save_header h = header(SAVE_KIND_SAVE), got;
	struct save_summary ws;
	struct entry e[SMALL_MAX], d;
	struct save_writer *w;
	struct save_reader *r;
	struct us_err err;
	size_t n = small_entries(e), k = 0;
	FILE *f = tmpfile();
	int rc;

	(void)state;
	assert_non_null(f);
	assert_int_equal(save_writer_new(&w, &h, save_file_sink, f, &err), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(save_writer_add(w, &e[i], &err), 0);
	assert_int_equal(save_writer_finish(w, &ws, &err), 0);
	save_writer_free(w);
	assert_int_equal(fflush(f), 0);
	assert_true(ftell(f) == (long)ws.bytes);
	rewind(f);
	assert_int_equal(save_reader_new(&r, save_file_source, f, &got, &err), 0);
	assert_header_equal(&h, &got);
	while ((rc = save_reader_next(r, &d, &err)) == 1)
		assert_entry_read(&e[k++], &d);
	assert_int_equal(rc, 0);
	assert_int_equal(k, n);
	assert_memory_equal(save_reader_summary(r), &ws, sizeof(ws));
	save_reader_free(r);
	save_reader_free(NULL);
	fclose(f);
}

/* A source that gives its first read in full, then fails. */
static int failing_source(void *arg, uint8_t *p, size_t len, size_t *got, struct us_err *err)
{
	struct save_mem_source *m = arg;

	if (m->pos)
		return err_set(err, US_EUNAVAIL, "stream broken");
	return save_mem_source(arg, p, len, got, err);
}

static void test_source_error(void **state)
{
	struct save_header h = header(SAVE_KIND_SEED), got;
	size_t len = 300 * 1024;
	uint8_t *body = malloc(len);
	struct save_mem_source m;
	struct save_reader *r;
	struct entry e[2], d;
	struct us_err err;
	struct buf b;
	uint32_t x = 1;

	(void)state;
	assert_non_null(body);
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		body[i] = (uint8_t)(x >> 16);
	}
	e[0] = create_file("A", "F", true);
	e[1] = item("A", "F", SECTION_DATA, "i", 1, body, len);
	buf_init(&b);
	write_save(&h, e, 2, &b, NULL);
	m = (struct save_mem_source){ .p = b.p, .len = b.len };
	assert_int_equal(save_reader_new(&r, failing_source, &m, &got, &err), 0);
	assert_int_equal(save_reader_next(r, &d, &err), US_EUNAVAIL);
	assert_string_equal(err.msg, "stream broken");
	assert_int_equal(save_reader_next(r, &d, &err), US_EUNAVAIL);
	save_reader_free(r);
	buf_release(&b);
	free(body);
}

/* Pieces as a writer's sink gets them: the header, each frame, the trailer. */
struct pieces {
	struct buf p[64];
	size_t n;
};

static int pieces_sink(void *arg, const uint8_t *p, size_t len, struct us_err *err)
{
	struct pieces *ps = arg;

	(void)err;
	assert_true(ps->n < 64);
	buf_init(&ps->p[ps->n]);
	assert_int_equal(buf_append(&ps->p[ps->n], p, len), 0);
	ps->n++;
	return 0;
}

/* A save read as it arrives (a full copy's receiver): whole pieces pushed
 * one at a time, SAVE_MORE between them, then the end; and a piece cut in
 * the middle of a frame is refused. */
static void test_fed_source(void **state)
{
	enum { ITEMS = 5000 };
	struct save_header h = header(SAVE_KIND_SEED), hr;
	struct save_summary ws;
	struct pieces ps = {.n = 0};
	struct save_writer *w;
	struct save_reader *r = NULL;
	struct save_queue q;
	struct entry *e, got;
	uint8_t *bodies;
	char ids[ITEMS][8];
	struct us_err err;
	size_t n = 0, k = 0, more = 0;
	uint32_t x = 88172645u;
	int rc;

	(void)state;
	e = calloc(ITEMS + 1, sizeof(*e));
	bodies = malloc((size_t)ITEMS * 200);
	assert_non_null(e);
	assert_non_null(bodies);
	e[n++] = create_file("A", "F", true);
	for (size_t i = 0; i < ITEMS; i++) {
		for (size_t j = 0; j < 200; j++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			bodies[i * 200 + j] = (uint8_t)('a' + x % 26);
		}
		snprintf(ids[i], sizeof(ids[i]), "%07zu", i);
		e[n++] = item("A", "F", SECTION_DATA, ids[i], 7, bodies + i * 200, 200);
	}
	assert_int_equal(save_writer_new(&w, &h, pieces_sink, &ps, &err), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(save_writer_add(w, &e[i], &err), 0);
	assert_int_equal(save_writer_finish(w, &ws, &err), 0);
	save_writer_free(w);
	assert_true(ps.n >= 4); /* header, frames, trailer */

	save_queue_init(&q);
	for (size_t i = 0; i < ps.n; i++) {
		assert_int_equal(save_queue_push(&q, ps.p[i].p, ps.p[i].len, &err), 0);
		if (i == ps.n - 1)
			save_queue_end(&q);
		if (!r) {
			assert_int_equal(save_reader_new(&r, save_queue_source, &q, &hr, &err), 0);
			assert_header_equal(&h, &hr);
			continue;
		}
		while ((rc = save_reader_next(r, &got, &err)) == 1) {
			assert_entry_read(&e[k], &got);
			k++;
		}
		if (i < ps.n - 1) {
			assert_int_equal(rc, SAVE_MORE);
			more++;
		} else {
			assert_int_equal(rc, 0);
		}
	}
	assert_int_equal(k, n);
	assert_int_equal(more, ps.n - 2);
	assert_memory_equal(save_reader_summary(r), &ws, sizeof(ws));
	save_reader_free(r);
	save_queue_release(&q);

	/* a frame handed over in two halves: refused, not waited for */
	save_queue_init(&q);
	assert_int_equal(save_queue_push(&q, ps.p[0].p, ps.p[0].len, &err), 0);
	assert_int_equal(save_reader_new(&r, save_queue_source, &q, &hr, &err), 0);
	assert_int_equal(save_queue_push(&q, ps.p[1].p, ps.p[1].len / 2, &err), 0);
	assert_int_equal(save_reader_next(r, &got, &err), US_ECORRUPT);
	assert_msg(&err, "ran dry inside");
	save_reader_free(r);
	save_queue_release(&q);

	for (size_t i = 0; i < ps.n; i++)
		buf_release(&ps.p[i]);
	free(bodies);
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_fed_source),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_many_frames),
		cmocka_unit_test(test_big_body),
		cmocka_unit_test(test_writer_refusals),
		cmocka_unit_test(test_sink_failure),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_magic_and_version),
		cmocka_unit_test(test_trailing_bytes),
		cmocka_unit_test(test_frame_lengths),
		cmocka_unit_test(test_trailer_counts),
		cmocka_unit_test(test_reader_checks_entries),
		cmocka_unit_test(test_export),
		cmocka_unit_test(test_file_io),
		cmocka_unit_test(test_source_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
