/*
 * fuzz_query.c - the report parsers (lib/pick_query.h, lib/pick_conv.h,
 * lib/pick_dict.h) and the selection (lib/pick_eval.h) on arbitrary bytes.
 *
 * The first byte picks what the rest is:
 *   0: a sentence: parsed; a sentence taken has a verb and a file, every
 *      selection a name, and runs against a fixed item;
 *   1: a conversion, a NUL, a value: parsed; one taken is applied;
 *   2: a dictionary item's id, a NUL, its body: parsed; one taken is
 *      applied to its own body as an item.
 * A refusal is a US_E* code with a one-line message; everything is freed.
 */
#include <stddef.h>

#include "fuzz.h"
#include "pick_conv.h"
#include "pick_dict.h"
#include "pick_eval.h"
#include "pick_query.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 16384)
		return 0;
	switch (data[0] % 3) {
	case 0:
		run_sentence(data + 1, size - 1);
		break;
	case 1:
		run_conversion(data + 1, size - 1);
		break;
	default:
		run_dict(data + 1, size - 1);
	}
	return 0;
}
