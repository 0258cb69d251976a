/* test_entry.c - the entry codec and journal blocks (lib/entry.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "buf.h"
#include "entry.h"
#include "us_limits.h"

static char long_account[US_ACCOUNT_MAX_LEN];
static char long_file[US_FILE_MAX_LEN];
static uint8_t long_id[US_ID_MAX_LEN];
static const uint8_t marks_body[] = "NAME\xfe" "ADDR1\xfd" "ADDR2\xfc" "SUB\xfe\xff\x00\x01";

static struct entry base(uint8_t op, bool is_end, uint64_t time_ms)
{
	struct entry e;

	memset(&e, 0, sizeof(e));
	e.op = op;
	e.is_commit_end = is_end;
	e.time_ms = time_ms;
	return e;
}

static struct entry names(struct entry e, const char *account, const char *file)
{
	e.account = account;
	e.account_len = strlen(account);
	e.file = file;
	e.file_len = strlen(file);
	return e;
}

static struct entry write_entry(bool is_end, const char *account, const char *file,
				uint8_t section, const void *id, size_t id_len,
				const void *body, size_t body_len)
{
	struct entry e = names(base(ENTRY_WRITE, is_end, 1764064800123ull), account, file);

	e.section = section;
	e.id = id;
	e.id_len = id_len;
	e.body = body;
	e.body_len = body_len;
	return e;
}

/* One of every op and the edge cases of each; n filled. */
static size_t samples(struct entry *s)
{
	size_t n = 0;
	struct entry e;

	s[n++] = write_entry(true, "SALES", "CUSTOMERS", SECTION_DATA, "C1001", 5, marks_body,
			     sizeof(marks_body));
	s[n++] = write_entry(false, "SALES", "CUSTOMERS", SECTION_DICT, "NAME", 4, "", 0);
	e = write_entry(true, "", "", SECTION_DATA, long_id, sizeof(long_id), "x", 1);
	e.account = long_account;
	e.account_len = sizeof(long_account);
	e.file = long_file;
	e.file_len = sizeof(long_file);
	s[n++] = e;
	e = names(base(ENTRY_DELETE, true, 0), "A", "F");
	e.section = SECTION_DICT;
	e.id = (const uint8_t *)"\x01\x7f\xfb";
	e.id_len = 3;
	s[n++] = e;
	e = names(base(ENTRY_CREATE_FILE, false, UINT64_MAX), "A", "F");
	e.flag = true;
	s[n++] = e;
	e = names(base(ENTRY_CREATE_FILE, true, 127), "A", "F");
	e.flag = false;
	s[n++] = e;
	e = names(base(ENTRY_CLEAR_FILE, true, 128), "acct", "file");
	e.section = SECTION_DICT;
	s[n++] = e;
	s[n++] = names(base(ENTRY_DELETE_FILE, false, 5), "acct", "file");
	e = names(base(ENTRY_SET_LOGGING, true, 5), "acct", "");
	e.flag = true;
	s[n++] = e;
	e = names(base(ENTRY_SET_LOGGING, true, 5), "acct", "file");
	e.flag = false;
	s[n++] = e;
	e = base(ENTRY_HEARTBEAT, true, 99);
	e.value = UINT64_MAX;
	s[n++] = e;
	e = base(ENTRY_CANARY, true, 99);
	e.value = 0;
	s[n++] = e;
	e = base(ENTRY_VERIFY_MARK, false, 99);
	e.value = 300;
	s[n++] = e;
	return n;
}

#define N_SAMPLES_MAX 16

static void assert_bytes(const void *a, size_t a_len, const void *b, size_t b_len)
{
	assert_int_equal(a_len, b_len);
	if (a_len)
		assert_memory_equal(a, b, a_len);
}

static void assert_entry_equal(const struct entry *a, const struct entry *b)
{
	assert_int_equal(a->op, b->op);
	assert_int_equal(a->is_commit_end, b->is_commit_end);
	assert_true(a->time_ms == b->time_ms);
	switch (a->op) {
	case ENTRY_WRITE:
		assert_bytes(a->body, a->body_len, b->body, b->body_len);
		/* fall through */
	case ENTRY_DELETE:
		assert_bytes(a->id, a->id_len, b->id, b->id_len);
		/* fall through */
	case ENTRY_CLEAR_FILE:
		assert_int_equal(a->section, b->section);
		/* fall through */
	case ENTRY_DELETE_FILE:
		assert_bytes(a->account, a->account_len, b->account, b->account_len);
		assert_bytes(a->file, a->file_len, b->file, b->file_len);
		break;
	case ENTRY_CREATE_FILE:
	case ENTRY_SET_LOGGING:
		assert_bytes(a->account, a->account_len, b->account, b->account_len);
		assert_bytes(a->file, a->file_len, b->file, b->file_len);
		assert_int_equal(a->flag, b->flag);
		break;
	default:
		assert_true(a->value == b->value);
		break;
	}
}

static int setup(void **state)
{
	(void)state;
	memset(long_account, 'a', sizeof(long_account));
	memset(long_file, 'F', sizeof(long_file));
	for (size_t i = 0; i < sizeof(long_id); i++)
		long_id[i] = (uint8_t)(1 + i % 0xFB);
	return 0;
}

static void make_block(struct buf *b, uint64_t first_seq, const struct entry *e, size_t n);

/* Decodes the one entry of a one-entry block. */
static int block1_decode(const uint8_t *p, size_t len, struct entry *e, struct us_err *err)
{
	struct entry_block_reader r;
	uint64_t seq;
	int rc;

	if ((rc = entry_block_open(&r, p, len, err)))
		return rc;
	rc = entry_block_next(&r, e, &seq, err);
	return rc == 1 ? 0 : rc ? rc : US_ECORRUPT;
}

static void test_round_trip(void **state)
{
	struct entry s[N_SAMPLES_MAX], d;
	struct us_err err;
	struct buf b;
	size_t n = samples(s);

	(void)state;
	buf_init(&b);
	for (size_t i = 0; i < n; i++) {
		buf_reset(&b);
		assert_int_equal(entry_encode(&s[i], &b, &err), 0);
		assert_int_equal(b.p[0], s[i].op | (s[i].is_commit_end ? ENTRY_FLAG_END : 0));
		assert_int_equal(entry_decode(b.p, b.len, &d, &err), 0);
		assert_entry_equal(&s[i], &d);

		buf_reset(&b);
		make_block(&b, 1, &s[i], 1);
		assert_int_equal(block1_decode(b.p, b.len, &d, &err), 0);
		assert_entry_equal(&s[i], &d);
	}
	/* appending: the encoders add to what is in out */
	buf_reset(&b);
	assert_int_equal(buf_append(&b, "xyz", 3), 0);
	assert_int_equal(entry_encode(&s[0], &b, &err), 0);
	assert_int_equal(entry_decode(b.p + 3, b.len - 3, &d, &err), 0);
	assert_entry_equal(&s[0], &d);
	buf_release(&b);
}

static void test_big_body(void **state)
{
	size_t len = 1024 * 1024;
	uint8_t *body = malloc(len);
	struct entry e, d;
	struct us_err err;
	struct buf b;

	(void)state;
	assert_non_null(body);
	for (size_t i = 0; i < len; i++)
		body[i] = (uint8_t)(i * 7 + i / 251);
	buf_init(&b);
	e = write_entry(true, "A", "F", SECTION_DATA, "big", 3, body, len);
	assert_int_equal(entry_encode(&e, &b, &err), 0);
	assert_int_equal(entry_decode(b.p, b.len, &d, &err), 0);
	assert_entry_equal(&e, &d);
	buf_reset(&b);
	make_block(&b, 1, &e, 1);
	assert_int_equal(block1_decode(b.p, b.len, &d, &err), 0);
	assert_entry_equal(&e, &d);
	buf_release(&b);
	free(body);
}

static void test_encode_refusals(void **state)
{
	struct entry s[N_SAMPLES_MAX], e;
	struct us_err err;
	struct buf b;

	(void)state;
	samples(s);
	buf_init(&b);
	assert_int_equal(buf_append(&b, "keep", 4), 0);
	e = s[0];
	e.op = 0;
	assert_int_equal(entry_encode(&e, &b, &err), US_EINVAL);
	e.op = ENTRY_OP_MAX + 1;
	assert_int_equal(entry_encode(&e, &b, &err), US_EINVAL);
	e = s[0];
	e.section = 2;
	assert_int_equal(entry_encode(&e, &b, &err), US_EINVAL);
	e = s[0];
	e.id_len = US_ID_MAX_LEN + 1;
	e.id = long_id; /* never read: refused on its length */
	assert_int_equal(entry_encode(&e, &b, &err), US_EINVAL);
	e = s[0];
	e.account_len = US_ACCOUNT_MAX_LEN + 1;
	assert_int_equal(entry_encode(&e, &b, &err), US_EINVAL);
	e = s[0];
	e.body_len = (size_t)US_BODY_MAX_BYTES + 1;
	assert_int_equal(entry_encode(&e, &b, &err), US_EINVAL);
	assert_int_equal(b.len, 4); /* nothing appended by a refusal */
	buf_release(&b);
}

/* A block of the given entries at first_seq, appended to b. */
static void make_block(struct buf *b, uint64_t first_seq, const struct entry *e, size_t n)
{
	struct entry_block_writer w;
	struct us_err err;

	assert_int_equal(entry_block_begin(&w, b, first_seq), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(entry_block_add(&w, &e[i], &err), 0);
	assert_int_equal(entry_block_finish(&w, &err), 0);
}

/* Reads a whole block: 0 when every entry decoded and it was consumed
 * exactly, else the first error. *n counts the entries returned. */
static int drain(const uint8_t *p, size_t len, size_t *n, struct us_err *err)
{
	struct entry_block_reader r;
	struct entry e;
	uint64_t seq;
	int rc;

	*n = 0;
	rc = entry_block_open(&r, p, len, err);
	if (rc)
		return rc;
	while ((rc = entry_block_next(&r, &e, &seq, err)) == 1)
		(*n)++;
	return rc;
}

/* Rewrites the checksum of the block or record in b (the last 4 bytes). */
static void reseal(uint8_t *p, size_t len)
{
	buf_put_u32le(p + len - 4, XXH32(p, len - 4, 0));
}

static void test_block_round_trip(void **state)
{
	enum { N = 5000 };
	struct entry s[N_SAMPLES_MAX], *all, e;
	struct entry_block_reader r;
	size_t n_samples = samples(s), first_len;
	struct us_err err;
	uint64_t seq;
	struct buf b;

	(void)state;
	all = calloc(N, sizeof(*all));
	assert_non_null(all);
	for (size_t i = 0; i < N; i++) {
		all[i] = s[i % n_samples];
		all[i].is_commit_end = i % 3 == 2 || i == N - 1;
	}
	buf_init(&b);
	/* a small block first, so that the second starts past offset 0 */
	make_block(&b, 1, s, 1);
	first_len = b.len;
	make_block(&b, 1042, all, N);

	assert_int_equal(entry_block_open(&r, b.p, first_len, &err), 0);
	assert_int_equal(entry_block_next(&r, &e, &seq, &err), 1);
	assert_true(seq == 1);
	assert_entry_equal(&s[0], &e);
	assert_int_equal(entry_block_next(&r, &e, &seq, &err), 0);

	assert_memory_equal(b.p + first_len, ENTRY_BLOCK_MAGIC, 4);
	assert_int_equal(entry_block_open(&r, b.p + first_len, b.len - first_len, &err), 0);
	assert_true(r.first_seq == 1042);
	assert_int_equal(r.count, N);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(entry_block_next(&r, &e, &seq, &err), 1);
		assert_true(seq == 1042 + i);
		assert_entry_equal(&all[i], &e);
	}
	assert_int_equal(entry_block_next(&r, &e, &seq, &err), 0);
	assert_int_equal(entry_block_next(&r, &e, &seq, &err), 0);
	buf_release(&b);
	free(all);
}

static void test_block_writer_refusals(void **state)
{
	struct entry s[N_SAMPLES_MAX], e;
	struct entry_block_writer w;
	struct us_err err;
	struct buf b;

	(void)state;
	samples(s);
	buf_init(&b);
	assert_int_equal(buf_append(&b, "keep", 4), 0);
	assert_int_equal(entry_block_begin(&w, &b, 0), US_EINVAL);
	assert_int_equal(b.len, 4);
	assert_int_equal(entry_block_begin(&w, &b, 7), 0);
	assert_int_equal(entry_block_finish(&w, &err), US_EINVAL); /* empty */
	assert_int_equal(b.len, 4);
	assert_int_equal(entry_block_begin(&w, &b, 7), 0);
	e = s[0];
	e.section = 9;
	assert_int_equal(entry_block_add(&w, &e, &err), US_EINVAL);
	assert_int_equal(b.len, 4 + ENTRY_BLOCK_HEADER_BYTES);
	assert_int_equal(entry_block_add(&w, &s[0], &err), 0);
	assert_int_equal(entry_block_finish(&w, &err), 0);
	buf_release(&b);
}

/* The journal's way of building a block: entries already encoded, END set
 * on the last one afterwards. */
static void test_block_raw_and_end(void **state)
{
	struct entry s[N_SAMPLES_MAX], d;
	struct entry_block_writer w;
	struct entry_block_reader r;
	size_t n = samples(s);
	struct us_err err;
	struct buf one, b;
	uint64_t seq;

	(void)state;
	buf_init(&one);
	buf_init(&b);
	assert_int_equal(entry_block_begin(&w, &b, 50), 0);
	entry_block_mark_end(&w); /* no entry yet: nothing to mark */
	assert_int_equal(b.len, ENTRY_BLOCK_HEADER_BYTES);
	assert_int_equal(entry_block_add_raw(&w, (const uint8_t *)"", 0, &err), US_EINVAL);
	for (size_t i = 0; i < n; i++) {
		struct entry e = s[i];

		e.is_commit_end = false;
		buf_reset(&one);
		assert_int_equal(entry_encode(&e, &one, &err), 0);
		assert_int_equal(entry_block_add_raw(&w, one.p, one.len, &err), 0);
		if (i % 2 == 1)
			entry_block_mark_end(&w);
	}
	assert_int_equal(entry_block_finish(&w, &err), 0);
	assert_int_equal(entry_block_open(&r, b.p, b.len, &err), 0);
	for (size_t i = 0; i < n; i++) {
		struct entry want = s[i];

		want.is_commit_end = i % 2 == 1;
		assert_int_equal(entry_block_next(&r, &d, &seq, &err), 1);
		assert_true(seq == 50 + i);
		assert_entry_equal(&want, &d);
		/* the reader hands out the encoded bytes too */
		assert_int_equal(entry_decode(r.raw, r.raw_len, &d, &err), 0);
		assert_entry_equal(&want, &d);
	}
	assert_int_equal(entry_block_next(&r, &d, &seq, &err), 0);
	buf_release(&one);
	buf_release(&b);
}

static void test_truncations(void **state)
{
	struct entry s[N_SAMPLES_MAX], d;
	size_t n = samples(s), got;
	struct us_err err;
	struct buf b;

	(void)state;
	buf_init(&b);
	for (size_t i = 0; i < n; i++) {
		buf_reset(&b);
		assert_int_equal(entry_encode(&s[i], &b, &err), 0);
		for (size_t len = 0; len < b.len; len++) {
			assert_int_equal(entry_decode(b.p, len, &d, &err), US_ECORRUPT);
			assert_int_equal(err.code, US_ECORRUPT);
		}
	}
	buf_reset(&b);
	make_block(&b, 1, s, n);
	for (size_t len = 0; len < b.len; len++)
		assert_int_equal(drain(b.p, len, &got, &err), US_ECORRUPT);
	/* and with each prefix resealed, so that the checksum passes and the
	 * entry parser must find the cut itself */
	for (size_t len = ENTRY_BLOCK_HEADER_BYTES + 4; len < b.len; len++) {
		uint8_t *p = malloc(len);

		assert_non_null(p);
		memcpy(p, b.p, len);
		reseal(p, len);
		assert_int_equal(drain(p, len, &got, &err), US_ECORRUPT);
		free(p);
	}
	assert_int_equal(drain(b.p, b.len, &got, &err), 0);
	assert_int_equal(got, n);
	buf_release(&b);
}

static void test_bit_flips(void **state)
{
	struct entry s[N_SAMPLES_MAX], d;
	size_t n = samples(s), got;
	struct us_err err;
	struct buf b;

	(void)state;
	buf_init(&b);
	for (size_t i = 0; i < n; i++) {
		if (s[i].id_len == US_ID_MAX_LEN)
			continue; /* keep the loops small: the long sample is 1.2 KiB */
		buf_reset(&b);
		make_block(&b, 1, &s[i], 1);
		for (size_t bit = 0; bit < b.len * 8; bit++) {
			b.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			assert_int_equal(block1_decode(b.p, b.len, &d, &err), US_ECORRUPT);
			b.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		assert_int_equal(block1_decode(b.p, b.len, &d, &err), 0);
	}
	buf_reset(&b);
	make_block(&b, 1042, s, 2);
	for (size_t bit = 0; bit < b.len * 8; bit++) {
		b.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
		b.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_int_equal(drain(b.p, b.len, &got, &err), 0);
	assert_int_equal(got, 2);
	buf_release(&b);
}

/* An entry from raw bytes: WRITE "a" "f" DATA "i" then tail. */
static size_t raw_write(uint8_t *p, const uint8_t *tail, size_t tail_len)
{
	static const uint8_t head[] = { ENTRY_WRITE, 0x05, 1, 'a', 1, 'f', 0 };

	memcpy(p, head, sizeof(head));
	memcpy(p + sizeof(head), tail, tail_len);
	return sizeof(head) + tail_len;
}

static int decode_raw(const uint8_t *p, size_t len, struct us_err *err)
{
	struct entry d;

	return entry_decode(p, len, &d, err);
}

static void test_oversized(void **state)
{
	uint8_t p[2048];
	struct us_err err;
	size_t n;

	(void)state;
	/* id of 1025 bytes, all present */
	{
		uint8_t t[2 + US_ID_MAX_LEN + 1 + 1];
		size_t k = 0;

		t[k++] = 0x81; /* 1025 = 0x401: 0x81 0x08 */
		t[k++] = 0x08;
		memset(t + k, 'i', US_ID_MAX_LEN + 1);
		k += US_ID_MAX_LEN + 1;
		t[k++] = 0; /* empty body */
		n = raw_write(p, t, k);
		assert_int_equal(decode_raw(p, n, &err), US_ECORRUPT);
		assert_non_null(strstr(err.msg, "id length 1025 over the limit of 1024"));
	}
	/* id of exactly 1024 is fine */
	{
		uint8_t t[2 + US_ID_MAX_LEN + 1];
		size_t k = 0;

		t[k++] = 0x80; /* 1024 = 0x400: 0x80 0x08 */
		t[k++] = 0x08;
		memset(t + k, 'i', US_ID_MAX_LEN);
		k += US_ID_MAX_LEN;
		t[k++] = 0;
		n = raw_write(p, t, k);
		assert_int_equal(decode_raw(p, n, &err), 0);
	}
	/* a body of 16 MiB + 1 claimed, no bytes behind it */
	{
		static const uint8_t t[] = { 1, 'i', 0x81, 0x80, 0x80, 0x08 };

		n = raw_write(p, t, sizeof(t));
		assert_int_equal(decode_raw(p, n, &err), US_ECORRUPT);
		assert_non_null(strstr(err.msg, "body length 16777217 over the limit of 16777216"));
	}
	/* a body of 2^63 claimed */
	{
		static const uint8_t t[] = { 1, 'i', 0x80, 0x80, 0x80, 0x80, 0x80,
					     0x80, 0x80, 0x80, 0x80, 0x01 };

		n = raw_write(p, t, sizeof(t));
		assert_int_equal(decode_raw(p, n, &err), US_ECORRUPT);
		assert_non_null(strstr(err.msg, "over the limit"));
	}
	/* a body of exactly 16 MiB claimed, 3 bytes behind it */
	{
		static const uint8_t t[] = { 1, 'i', 0x80, 0x80, 0x80, 0x08, 'x', 'y', 'z' };

		n = raw_write(p, t, sizeof(t));
		assert_int_equal(decode_raw(p, n, &err), US_ECORRUPT);
		assert_non_null(strstr(err.msg, "only 3 bytes left"));
	}
	/* account of 65 */
	{
		uint8_t q[80] = { ENTRY_DELETE_FILE, 0, 65 };

		memset(q + 3, 'a', 65);
		q[68] = 1;
		q[69] = 'f';
		assert_int_equal(decode_raw(q, 70, &err), US_ECORRUPT);
		assert_non_null(strstr(err.msg, "account length 65 over the limit of 64"));
		q[2] = 64;
		q[67] = 1;
		q[68] = 'f';
		assert_int_equal(decode_raw(q, 69, &err), 0);
	}
	/* file of 65 */
	{
		uint8_t q[80] = { ENTRY_DELETE_FILE, 0, 1, 'a', 65 };

		memset(q + 5, 'f', 65);
		assert_int_equal(decode_raw(q, 70, &err), US_ECORRUPT);
		assert_non_null(strstr(err.msg, "file length 65"));
	}
	/* a time varint over 64 bits */
	{
		static const uint8_t q[] = { ENTRY_HEARTBEAT, 0xff, 0xff, 0xff, 0xff, 0xff,
					     0xff, 0xff, 0xff, 0xff, 0x7f, 0 };

		assert_int_equal(decode_raw(q, sizeof(q), &err), US_ECORRUPT);
	}
}

static void test_bad_fields(void **state)
{
	struct entry s[N_SAMPLES_MAX];
	struct us_err err;
	struct buf b;
	uint8_t p[64];
	size_t n;

	(void)state;
	samples(s);
	/* unknown ops, with and without END */
	static const uint8_t ops[] = { 0, ENTRY_OP_MAX + 1, 0x7f, 0x80, 0x80 | (ENTRY_OP_MAX + 1),
				       0xff };
	for (size_t i = 0; i < sizeof(ops); i++) {
		uint8_t q[] = { ops[i], 0, 0 };

		assert_int_equal(decode_raw(q, sizeof(q), &err), US_ECORRUPT);
		assert_non_null(strstr(err.msg, "unknown op"));
	}
	/* sections other than 0 and 1 */
	for (int section = 2; section < 256; section++) {
		static const uint8_t t[] = { 1, 'i', 0 };

		n = raw_write(p, t, sizeof(t));
		p[6] = (uint8_t)section;
		assert_int_equal(decode_raw(p, n, &err), US_ECORRUPT);
	}
	{
		static const uint8_t t[] = { 1, 'i', 0 };

		n = raw_write(p, t, sizeof(t));
		p[6] = 2;
		assert_int_equal(decode_raw(p, n, &err), US_ECORRUPT);
		assert_non_null(strstr(err.msg, "bad section 2"));
		p[6] = 1;
		assert_int_equal(decode_raw(p, n, &err), 0);
	}
	/* a flag byte other than 0 and 1 (CREATE_FILE: 2 is a reset) */
	{
		uint8_t q[] = { ENTRY_CREATE_FILE, 0, 1, 'a', 1, 'f', 3 };
		uint8_t r[] = { ENTRY_SET_LOGGING, 0, 1, 'a', 1, 'f', 2 };
		struct entry d;

		assert_int_equal(decode_raw(q, sizeof(q), &err), US_ECORRUPT);
		assert_non_null(strstr(err.msg, "is_logged"));
		assert_int_equal(decode_raw(r, sizeof(r), &err), US_ECORRUPT);
		assert_non_null(strstr(err.msg, "is_on"));
		q[6] = 1;
		assert_int_equal(decode_raw(q, sizeof(q), &err), 0);
		q[6] = 2;
		assert_int_equal(entry_decode(q, sizeof(q), &d, &err), 0);
		assert_true(d.is_reset);
		assert_false(d.flag);
	}
	/* a trailing byte in an entry */
	buf_init(&b);
	for (size_t i = 0; i < 3; i++) {
		struct entry d;

		buf_reset(&b);
		assert_int_equal(entry_encode(&s[i], &b, &err), 0);
		assert_int_equal(buf_append_u8(&b, 0), 0);
		assert_int_equal(entry_decode(b.p, b.len, &d, &err), US_ECORRUPT);
		assert_non_null(strstr(err.msg, "trailing"));

	}
	buf_release(&b);
}

static void test_block_malformed(void **state)
{
	struct entry s[N_SAMPLES_MAX];
	struct entry_block_writer w;
	struct us_err err;
	struct buf b;
	size_t got;

	(void)state;
	samples(s);
	buf_init(&b);

	/* zero count */
	make_block(&b, 10, s, 3);
	buf_put_u32le(b.p + 13, 0);
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
	assert_non_null(strstr(err.msg, "count 0"));

	/* a count larger than the entries present */
	buf_reset(&b);
	make_block(&b, 10, s, 3);
	buf_put_u32le(b.p + 13, 4);
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
	assert_int_equal(got, 3);
	assert_non_null(strstr(err.msg, "only 3 entries"));
	/* far larger: refused at open */
	buf_put_u32le(b.p + 13, 1000);
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
	assert_int_equal(got, 0);
	buf_put_u32le(b.p + 13, US_BLOCK_MAX_ENTRIES + 1);
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);

	/* a count smaller: the rest are trailing bytes */
	buf_put_u32le(b.p + 13, 2);
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
	assert_int_equal(got, 2);
	assert_non_null(strstr(err.msg, "trailing"));

	/* a trailing byte after the checksum */
	buf_reset(&b);
	make_block(&b, 10, s, 3);
	assert_int_equal(buf_append_u8(&b, 0), 0);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
	/* and resealed: a trailing byte after the last entry */
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
	assert_int_equal(got, 3);

	/* wrong magic, wrong version, first seq 0, seq overflow */
	buf_reset(&b);
	make_block(&b, 10, s, 3);
	b.p[0] = 'X';
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
	assert_non_null(strstr(err.msg, "magic"));
	b.p[0] = 'U';
	b.p[4] = 2;
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
	assert_non_null(strstr(err.msg, "version 2"));
	b.p[4] = ENTRY_BLOCK_VERSION;
	buf_put_u64le(b.p + 5, 0);
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
	buf_put_u64le(b.p + 5, UINT64_MAX - 1);
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
	buf_put_u64le(b.p + 5, UINT64_MAX - 2);
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), 0);

	/* an entry length pointing past the entries */
	buf_reset(&b);
	make_block(&b, 10, s + 10, 1); /* a heartbeat: short */
	b.p[ENTRY_BLOCK_HEADER_BYTES] = 0x7f;
	reseal(b.p, b.len);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);

	/* a bad third entry is named with its place and the block's seq */
	buf_reset(&b);
	assert_int_equal(entry_block_begin(&w, &b, 1042), 0);
	assert_int_equal(entry_block_add(&w, &s[0], &err), 0);
	assert_int_equal(entry_block_add(&w, &s[1], &err), 0);
	{
		/* WRITE a f DATA i, body length 99999999 with no bytes */
		static const uint8_t t[] = { 1, 'i', 0xff, 0xc1, 0xd7, 0x2f };
		uint8_t p[32];
		size_t n = raw_write(p, t, sizeof(t));

		assert_int_equal(buf_append_varint(&b, n), 0);
		assert_int_equal(buf_append(&b, p, n), 0);
		w.count++;
	}
	assert_int_equal(entry_block_finish(&w, &err), 0);
	assert_int_equal(drain(b.p, b.len, &got, &err), US_ECORRUPT);
	assert_int_equal(got, 2);
	assert_string_equal(err.msg,
			    "entry 3 of block at seq 1042: body length 99999999 over the limit of 16777216");
	buf_release(&b);
}

static void test_op_names(void **state)
{
	(void)state;
	assert_string_equal(entry_op_name(ENTRY_WRITE), "write");
	assert_string_equal(entry_op_name(ENTRY_CREATE_FILE), "create-file");
	assert_string_equal(entry_op_name(ENTRY_VERIFY_MARK), "verify-mark");
	assert_string_equal(entry_op_name(0), "?");
	assert_string_equal(entry_op_name(ENTRY_OP_MAX + 1), "?");
	assert_string_equal(entry_op_name(0x81), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_big_body),
		cmocka_unit_test(test_encode_refusals),
		cmocka_unit_test(test_block_round_trip),
		cmocka_unit_test(test_block_writer_refusals),
		cmocka_unit_test(test_block_raw_and_end),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_block_malformed),
		cmocka_unit_test(test_op_names),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
