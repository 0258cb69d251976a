/* test_names.c - every rule of lib/names.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "us_limits.h"
#include "names.h"

static int ns(const char *s)
{
	struct us_err err;

	return names_check_namespace(s, strlen(s), &err);
}

static void fill(char *p, size_t n, char c)
{
	memset(p, c, n);
	p[n] = '\0';
}

static void test_namespace(void **state)
{
	char s[80];
	struct us_err err;

	(void)state;
	assert_int_equal(ns("site-a"), 0);
	assert_int_equal(ns("a"), 0);
	assert_int_equal(ns("0"), 0);
	assert_int_equal(ns("9x_y.z-w"), 0);
	fill(s, 63, 'a');
	assert_int_equal(ns(s), 0);
	fill(s, 64, 'a');
	assert_int_equal(ns(s), US_EINVAL);
	assert_int_equal(ns(""), US_EINVAL);
	assert_int_equal(ns("Site"), US_EINVAL);
	assert_int_equal(ns("siTe"), US_EINVAL);
	assert_int_equal(ns("-a"), US_EINVAL);
	assert_int_equal(ns("_a"), US_EINVAL);
	assert_int_equal(ns(".a"), US_EINVAL);
	assert_int_equal(ns("a b"), US_EINVAL);
	assert_int_equal(ns("a/b"), US_EINVAL);
	assert_int_equal(names_check_namespace("a\0b", 3, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "a\\x00b"));
	assert_int_equal(ns("site\xfe"), US_EINVAL);
	/* the message names the value */
	assert_int_equal(ns("Bad"), US_EINVAL);
	assert_int_equal(names_check_namespace("Bad", 3, &err), US_EINVAL);
	assert_int_equal(err.code, US_EINVAL);
	assert_non_null(strstr(err.msg, "'Bad'"));
	assert_null(strchr(err.msg, '\n'));
}

static void check_name_rule(int (*check)(const char *, size_t, struct us_err *))
{
	const char *good = "Az09_.-";
	struct us_err err;
	char s[80];

	assert_int_equal(check(good, strlen(good), &err), 0);
	assert_int_equal(check("A", 1, &err), 0);
	assert_int_equal(check("-", 1, &err), 0); /* no first-character rule */
	assert_int_equal(check("CUSTOMERS", 9, &err), 0);
	assert_int_equal(check("customers", 9, &err), 0);
	fill(s, 64, 'Z');
	assert_int_equal(check(s, 64, &err), 0);
	fill(s, 65, 'Z');
	assert_int_equal(check(s, 65, &err), US_EINVAL);
	assert_int_equal(check("", 0, &err), US_EINVAL);
	for (int c = 0; c < 256; c++) {
		bool is_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
		char one[3] = { 'a', (char)c, 0 };

		assert_int_equal(check(one, 2, &err), is_ok ? 0 : US_EINVAL);
		if (!is_ok)
			assert_null(strchr(err.msg, '\n'));
	}
}

static void test_account(void **state)
{
	(void)state;
	check_name_rule(names_check_account);
}

static void test_file(void **state)
{
	(void)state;
	check_name_rule(names_check_file);
}

static void test_id(void **state)
{
	uint8_t id[US_ID_MAX_LEN + 1];
	struct us_err err;

	(void)state;
	memset(id, 'k', sizeof(id));
	assert_int_equal(names_check_id(id, 0, &err), US_EINVAL);
	assert_int_equal(names_check_id(id, 1, &err), 0);
	assert_int_equal(names_check_id(id, US_ID_MAX_LEN, &err), 0);
	assert_int_equal(names_check_id(id, US_ID_MAX_LEN + 1, &err), US_EINVAL);
	assert_null(strchr(err.msg, '\n'));
	assert_true(strlen(err.msg) < 300); /* the id is cut in the message */

	/* any byte but NUL and the marks: spaces, controls, 0x80..0xFB */
	for (int c = 0; c < 256; c++) {
		uint8_t one[3] = { 'x', (uint8_t)c, 'y' };
		int want = (c == 0 || c >= 0xFC) ? US_EINVAL : 0;

		assert_int_equal(names_check_id(one, 3, &err), want);
	}
	for (int c = 0xFC; c <= 0xFF; c++) {
		uint8_t one[1] = { (uint8_t)c };
		char hex[8];

		assert_int_equal(names_check_id(one, 1, &err), US_EINVAL);
		snprintf(hex, sizeof(hex), "\\x%02X", c);
		assert_non_null(strstr(err.msg, hex));
	}
	assert_int_equal(names_check_id((const uint8_t *)"\0", 1, &err), US_EINVAL);
	assert_int_equal(names_check_id((const uint8_t *)"ab\0", 3, &err), US_EINVAL);
}

static void test_body(void **state)
{
	struct us_err err;

	(void)state;
	assert_int_equal(names_check_body(0, US_BODY_MAX_BYTES, &err), 0);
	assert_int_equal(names_check_body(US_BODY_MAX_BYTES, US_BODY_MAX_BYTES, &err), 0);
	assert_int_equal(names_check_body(US_BODY_MAX_BYTES + 1, US_BODY_MAX_BYTES, &err),
			 US_ETOOBIG);
	assert_int_equal(err.code, US_ETOOBIG);
	assert_int_equal(names_check_body(1000, 1000, &err), 0);
	assert_int_equal(names_check_body(1001, 1000, &err), US_ETOOBIG);
	assert_non_null(strstr(err.msg, "1001"));
	/* a configured limit above the SPEC's is cut to it; 0 means the SPEC's */
	assert_int_equal(names_check_body(US_BODY_MAX_BYTES + 1, SIZE_MAX, &err), US_ETOOBIG);
	assert_int_equal(names_check_body(US_BODY_MAX_BYTES, 0, &err), 0);
	assert_int_equal(names_check_body(US_BODY_MAX_BYTES + 1, 0, &err), US_ETOOBIG);
}

static void test_escape(void **state)
{
	char out[64];

	(void)state;
	assert_string_equal(names_escape((const uint8_t *)"abc", 3, out, sizeof(out)), "abc");
	assert_string_equal(names_escape((const uint8_t *)"a\\b", 3, out, sizeof(out)),
			    "a\\\\b");
	assert_string_equal(names_escape((const uint8_t *)"\xfe\xfd\xfc\xff", 4, out,
					 sizeof(out)), "\\xFE\\xFD\\xFC\\xFF");
	assert_string_equal(names_escape((const uint8_t *)"\0\n\x7f ", 4, out, sizeof(out)),
			    "\\x00\\x0A\\x7F ");
	assert_string_equal(names_escape((const uint8_t *)"", 0, out, sizeof(out)), "");
	/* truncation keeps whole escapes and says so */
	assert_string_equal(names_escape((const uint8_t *)"abcdefghij", 10, out, 8), "abcd...");
	assert_string_equal(names_escape((const uint8_t *)"abcdefg", 7, out, 8), "abcdefg");
	assert_string_equal(names_escape((const uint8_t *)"\xfe\xfe\xfe", 3, out, 10),
			    "\\xFE...");
	assert_string_equal(names_escape((const uint8_t *)"abc", 3, out, 3), "..");
	assert_string_equal(names_escape((const uint8_t *)"abc", 3, out, 1), "");
	out[0] = 'z';
	names_escape((const uint8_t *)"abc", 3, out, 0);
	assert_int_equal(out[0], 'z');
}

static int unescape(const char *s, struct buf *b)
{
	struct us_err err;

	buf_reset(b);
	return names_unescape(s, strlen(s), b, &err);
}

static void test_unescape(void **state)
{
	struct us_err err;
	struct buf b;

	(void)state;
	buf_init(&b);
	assert_int_equal(unescape("plain", &b), 0);
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.p, "plain", 5);
	assert_int_equal(unescape("A\\xFEB\\xfdC\\xFCD", &b), 0);
	assert_int_equal(b.len, 7);
	assert_memory_equal(b.p, "A\xfe" "B\xfd" "C\xfc" "D", 7);
	assert_int_equal(unescape("\\\\\\t\\n\\r\\x00", &b), 0);
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.p, "\\\t\n\r\0", 5);
	assert_int_equal(unescape("", &b), 0);
	assert_int_equal(b.len, 0);

	/* bad escapes: US_EINVAL, the column named, out unchanged */
	static const char *const bad[] = {
		"\\", "ab\\", "\\q", "\\x", "\\x4", "\\xG0", "\\x0G", "x\\X41", "\\0",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf_reset(&b);
		assert_int_equal(buf_append(&b, "keep", 4), 0);
		assert_int_equal(names_unescape(bad[i], strlen(bad[i]), &b, &err), US_EINVAL);
		assert_int_equal(err.code, US_EINVAL);
		assert_non_null(strstr(err.msg, "column"));
		assert_int_equal(b.len, 4);
	}
	assert_int_equal(names_unescape("ab\\q", 4, &b, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "column 3"));

	/* appends to what is there */
	buf_reset(&b);
	assert_int_equal(buf_append(&b, "x", 1), 0);
	assert_int_equal(names_unescape("\\xFE", 4, &b, &err), 0);
	assert_int_equal(b.len, 2);
	assert_memory_equal(b.p, "x\xfe", 2);
	buf_release(&b);
}

static void test_round_trip(void **state)
{
	uint8_t all[256];
	char esc[256 * 4 + 1];
	struct us_err err;
	struct buf b;

	(void)state;
	buf_init(&b);
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	names_escape(all, sizeof(all), esc, sizeof(esc));
	assert_null(strchr(esc, '\n'));
	for (const char *p = esc; *p; p++)
		assert_true(*p >= 0x20 && *p < 0x7f);
	assert_int_equal(names_unescape(esc, strlen(esc), &b, &err), 0);
	assert_int_equal(b.len, sizeof(all));
	assert_memory_equal(b.p, all, sizeof(all));

	static const char *const bodies[] = {
		"a\xfe" "b\xfd" "c\xfc" "d", "\xfe\xfe\xfe", "\\\\x41", "tab\there", "",
	};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		size_t len = strlen(bodies[i]);

		names_escape((const uint8_t *)bodies[i], len, esc, sizeof(esc));
		buf_reset(&b);
		assert_int_equal(names_unescape(esc, strlen(esc), &b, &err), 0);
		assert_int_equal(b.len, len);
		if (len)
			assert_memory_equal(b.p, bodies[i], len);
	}
	buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_namespace),
		cmocka_unit_test(test_account),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_id),
		cmocka_unit_test(test_body),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_unescape),
		cmocka_unit_test(test_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
