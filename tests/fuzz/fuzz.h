/*
 * fuzz.h - what every fuzz target of tests/fuzz checks beyond "no crash, no
 * sanitizer report, no leak": the contracts of the decoders' headers.
 *
 * A target is one LLVMFuzzerTestOneInput (libFuzzer) that hands its bytes to
 * one decoder the way a daemon does and frees everything before it returns.
 * A broken contract aborts, which libFuzzer reports as a crash with the input.
 */
#ifndef US_FUZZ_H
#define US_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "entry.h"
#include "err.h"
#include "us_limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                               \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__,    \
				__LINE__, #cond);                                      \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* A refusal: rc is a US_E* code and err holds it with a one-line message. */
static inline void fuzz_check_refusal(int rc, const struct us_err *err)
{
	size_t len = strnlen(err->msg, sizeof(err->msg));

	FUZZ_CHECK(rc < 0);
	FUZZ_CHECK(err->code == rc);
	FUZZ_CHECK(len > 0 && len < sizeof(err->msg));
	FUZZ_CHECK(!memchr(err->msg, '\n', len));
}

/* [lo, hi) holds [p, p + len): a borrowed field stays inside its input. */
static inline bool fuzz_is_inside(const void *p, size_t len, const uint8_t *lo,
				  const uint8_t *hi)
{
	const uint8_t *b = p;

	if (len == 0)
		return true;
	return b && b >= lo && b <= hi && len <= (size_t)(hi - b);
}

static inline bool fuzz_same_bytes(const void *a, size_t a_len, const void *b, size_t b_len)
{
	return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

/* An entry decoded from [lo, hi): its fields borrow from there and keep their
 * SPEC bounds, and encoding it gives bytes that decode to the same entry
 * (not necessarily the same bytes: a decoder takes over-long varints). */
static inline void fuzz_check_entry(const struct entry *e, const uint8_t *lo, const uint8_t *hi)
{
	struct buf out;
	struct us_err err;
	struct entry again;
	int rc;

	FUZZ_CHECK(e->op >= 1 && e->op <= ENTRY_OP_MAX);
	FUZZ_CHECK(e->section == SECTION_DATA || e->section == SECTION_DICT);
	FUZZ_CHECK(e->account_len <= US_ACCOUNT_MAX_LEN && e->file_len <= US_FILE_MAX_LEN);
	FUZZ_CHECK(e->id_len <= US_ID_MAX_LEN && e->body_len <= US_BODY_MAX_BYTES);
	FUZZ_CHECK(fuzz_is_inside(e->account, e->account_len, lo, hi));
	FUZZ_CHECK(fuzz_is_inside(e->file, e->file_len, lo, hi));
	FUZZ_CHECK(fuzz_is_inside(e->id, e->id_len, lo, hi));
	FUZZ_CHECK(fuzz_is_inside(e->body, e->body_len, lo, hi));

	buf_init(&out);
	rc = entry_encode(e, &out, &err);
	FUZZ_CHECK(rc == 0); /* the decoder took nothing the encoder refuses */
	FUZZ_CHECK(out.len <= (size_t)(hi - lo));
	rc = entry_decode(out.p, out.len, &again, &err);
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(again.op == e->op && again.is_commit_end == e->is_commit_end);
	FUZZ_CHECK(again.time_ms == e->time_ms);
	FUZZ_CHECK(fuzz_same_bytes(again.account, again.account_len, e->account, e->account_len));
	FUZZ_CHECK(fuzz_same_bytes(again.file, again.file_len, e->file, e->file_len));
	FUZZ_CHECK(again.section == e->section);
	FUZZ_CHECK(fuzz_same_bytes(again.id, again.id_len, e->id, e->id_len));
	FUZZ_CHECK(fuzz_same_bytes(again.body, again.body_len, e->body, e->body_len));
	FUZZ_CHECK(again.flag == e->flag && again.value == e->value);
	buf_release(&out);
}

#endif
