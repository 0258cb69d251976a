/*
 * test_pick.c - Pick output conversions and dictionary items
 * (lib/pick_conv.h, lib/pick_dict.h): golden values for each conversion,
 * chains, values a conversion cannot read, refusals naming what they
 * refuse; both kinds of dictionary item and the implicit @ID.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pick_conv.h"
#include "pick_dict.h"
#include "pick_eval.h"
#include "pick_query.h"

/* conv applied to value must give want. */
static void assert_conv(const char *conv, const char *value, const char *want)
{
	struct pick_conv c;
	struct us_err err;
	struct buf out;

	if (pick_conv_parse(conv, strlen(conv), &c, &err))
		fail_msg("%s: %s", conv, err.msg);
	buf_init(&out);
	assert_int_equal(pick_conv_apply(&c, (const uint8_t *)value, strlen(value), &out), 0);
	if (out.len != strlen(want) || (out.len && memcmp(out.p, want, out.len) != 0))
		fail_msg("%s of '%s': got '%.*s', want '%s'", conv, value, (int)out.len,
			 (const char *)out.p, want);
	buf_release(&out);
}

static void assert_refused(const char *conv)
{
	struct pick_conv c;
	struct us_err err;

	assert_int_equal(pick_conv_parse(conv, strlen(conv), &c, &err), US_EINVAL);
	if (!strstr(err.msg, "unknown conversion") && !strstr(err.msg, "steps"))
		fail_msg("%s: %s", conv, err.msg);
}

static void test_dates(void **state)
{
	(void)state;
	assert_conv("D", "0", "31 DEC 1967");
	assert_conv("D", "1", "01 JAN 1968");
	assert_conv("D", "366", "31 DEC 1968");
	assert_conv("D", "20000", "03 OCT 2022");
	assert_conv("D", "-1", "30 DEC 1967");
	assert_conv("D2", "19000", "07 JAN 20");
	assert_conv("D0", "0", "31 DEC");
	assert_conv("D2/", "0", "12/31/67");
	assert_conv("D2/", "20000", "10/03/22");
	assert_conv("D4-", "0", "12-31-1967");
	assert_conv("D/", "1", "01/01/1968");
	assert_conv("D", "", "");
	assert_conv("D", "yesterday", "yesterday"); /* not a day number: as it is */
}

static void test_times(void **state)
{
	(void)state;
	assert_conv("MT", "3600", "01:00");
	assert_conv("MT", "0", "00:00");
	assert_conv("MTS", "45296", "12:34:56");
	assert_conv("MTH", "0", "12:00AM");
	assert_conv("MTHS", "46800", "01:00:00PM");
	assert_conv("MT", "86399", "23:59");
	assert_conv("MT", "noon", "noon");
}

static void test_decimals(void **state)
{
	(void)state;
	assert_conv("MD2", "12345", "123.45");
	assert_conv("MR2", "12345", "123.45");
	assert_conv("MR2,", "1234567", "12,345.67");
	assert_conv("MD0", "5", "5");
	assert_conv("MD2", "-5", "-0.05");
	assert_conv("MD23", "12345", "12.35");   /* 12.345 rounded half away from zero */
	assert_conv("MD23", "-12345", "-12.35");
	assert_conv("MD02", "150", "2");         /* 1.50 shown with no decimals */
	assert_conv("MD2$", "100", "$1.00");
	assert_conv("MD2-", "-150", "1.50-");
	assert_conv("MR0,", "1000000", "1,000,000");
	assert_conv("MD2", "abc", "abc");
	assert_conv("MD2", "", "");
	assert_conv("MD2", "1.5", "1.5");        /* not an integer: as it is */
}

static void test_case_text_and_chains(void **state)
{
	(void)state;
	assert_conv("MCU", "abc Def", "ABC DEF");
	assert_conv("MCL", "ABC Def", "abc def");
	assert_conv("T3,4", "abcdefgh", "cdef");
	assert_conv("T2", "abc", "ab");
	assert_conv("T9,2", "abc", "");
	assert_conv("MCU]T1,2", "hello", "HE");
	assert_conv("MCU\xfdT1,2", "hello", "HE");
	assert_conv("", "as is", "as is");
	assert_refused("MX9");
	assert_refused("D5");
	assert_refused("DX");
	assert_refused("T");
	assert_refused("T0,2");
	assert_refused("T2,");
	assert_refused("MD2x");
	assert_refused("MTQ");
	assert_refused("MCX");
	assert_refused("D]D]D]D]D]D]D]D]D");
	{
		/* what is quoted stays on one line */
		struct pick_conv c;
		struct us_err err;

		assert_int_equal(pick_conv_parse("M\nX", 3, &c, &err), US_EINVAL);
		assert_string_equal(err.msg, "unknown conversion 'M\\x0AX'");
	}
}

static void test_dictionary_items(void **state)
{
	struct pick_attr a;
	struct us_err err;
	const char ap[] = "A\xfe" "4\xfe" "Balance\xfe\xfe\xfe\xfe" "MR2,\xfe\xfe" "R\xfe" "12";
	const char u2[] = "D Customer name\xfe" "1\xfe" "MCU\xfe" "Name\xfe" "20L\xfe" "S";
	const char bad_conv[] = "A\xfe" "4\xfe\xfe\xfe\xfe\xfe" "MX9";
	const char idesc[] = "I\xfe" "@ID:\"x\"";

	(void)state;
	assert_int_equal(pick_dict_parse((const uint8_t *)"BALANCE", 7, (const uint8_t *)ap,
					 sizeof(ap) - 1, &a, &err),
			 0);
	assert_string_equal(a.name, "BALANCE");
	assert_int_equal(a.field, 4);
	assert_string_equal(a.heading, "Balance");
	assert_int_equal(a.conv.n, 1);
	assert_int_equal(a.correlative.n, 0);
	assert_int_equal(a.justify, 'R');
	assert_int_equal(a.width, 12);
	assert_true(a.is_multi);

	assert_int_equal(pick_dict_parse((const uint8_t *)"NAME", 4, (const uint8_t *)u2,
					 sizeof(u2) - 1, &a, &err),
			 0);
	assert_int_equal(a.field, 1);
	assert_string_equal(a.heading, "Name");
	assert_int_equal(a.conv.steps[0].kind, PICK_CONV_UPPER);
	assert_int_equal(a.width, 20);
	assert_int_equal(a.justify, 'L');
	assert_false(a.is_multi);

	/* a heading left empty is the item's name; A alone, defaults */
	assert_int_equal(pick_dict_parse((const uint8_t *)"CITY", 4, (const uint8_t *)"A\xfe" "3", 3,
					 &a, &err),
			 0);
	assert_string_equal(a.heading, "CITY");
	assert_true(a.width == 10 && a.justify == 'L' && a.field == 3);

	/* refusals name the item and what is wrong */
	assert_int_equal(pick_dict_parse((const uint8_t *)"BALANCE", 7, (const uint8_t *)bad_conv,
					 sizeof(bad_conv) - 1, &a, &err),
			 US_EINVAL);
	assert_non_null(strstr(err.msg, "BALANCE"));
	assert_non_null(strstr(err.msg, "unknown conversion 'MX9'"));
	assert_int_equal(pick_dict_parse((const uint8_t *)"FULL", 4, (const uint8_t *)idesc,
					 sizeof(idesc) - 1, &a, &err),
			 US_EINVAL);
	assert_non_null(strstr(err.msg, "dictionary item FULL: not an attribute definition"));
	assert_int_equal(pick_dict_parse((const uint8_t *)"X", 1, (const uint8_t *)"A\xfe" "four",
					 6, &a, &err),
			 US_EINVAL);
	assert_non_null(strstr(err.msg, "attribute number 'four'"));
	assert_int_equal(pick_dict_parse((const uint8_t *)"X", 1,
					 (const uint8_t *)"D\xfe" "1\xfe\xfe\xfe" "10Q", 9, &a, &err),
			 US_EINVAL);
	assert_non_null(strstr(err.msg, "format"));
	assert_int_equal(pick_dict_parse((const uint8_t *)"X", 1,
					 (const uint8_t *)"A\xfe" "1\xfe\xfe\xfe\xfe\xfe\xfe\xfe" "C", 11,
					 &a, &err),
			 US_EINVAL);
	assert_non_null(strstr(err.msg, "justification"));

	assert_int_equal(pick_dict_parse((const uint8_t *)"E", 1, (const uint8_t *)"", 0, &a, &err),
			 US_EINVAL);
	assert_non_null(strstr(err.msg, "dictionary item E: empty"));

	pick_dict_id(&a);
	assert_string_equal(a.name, "@ID");
	assert_true(a.field == 0 && a.width == 10 && a.justify == 'L');
}

static void test_query_parse(void **state)
{
	struct pick_query q;
	struct us_err err;

	(void)state;
	assert_int_equal(pick_query_parse("SORT CUSTOMERS WITH STATE = \"CA\" \"NY\" AND WITH "
					  "BALANCE > \"100\" BY NAME BY-DSND CITY NAME CITY TOTAL "
					  "BALANCE ID-SUPP",
					  &q, &err),
			 0);
	assert_int_equal(q.verb, PICK_SORT);
	assert_string_equal(q.file, "CUSTOMERS");
	assert_false(q.is_dict);
	assert_int_equal(q.n_conds, 2);
	assert_string_equal(q.conds[0].attr, "STATE");
	assert_int_equal(q.conds[0].op, PICK_OP_EQ);
	assert_int_equal(q.conds[0].n_values, 2);
	assert_string_equal(q.conds[0].values[1], "NY");
	assert_int_equal(q.conds[1].op, PICK_OP_GT);
	assert_false(q.conds[1].is_or);
	assert_int_equal(q.n_sorts, 2);
	assert_false(q.sorts[0].is_desc);
	assert_true(q.sorts[1].is_desc);
	assert_string_equal(q.sorts[1].attr, "CITY");
	assert_int_equal(q.n_cols, 3);
	assert_true(q.cols[2].is_total);
	assert_string_equal(q.cols[2].attr, "BALANCE");
	assert_true(q.is_id_supp);
	pick_query_release(&q);

	/* ids, DICT, lower case, OR, WITHOUT, spellings, no op */
	assert_int_equal(pick_query_parse("list dict CUST 'A1' \"B2\" \\C3\\ with NAME like \"J...\" "
					  "or without STATE ne \"CA\" with PHONE BREAK-ON STATE "
					  "HDR-SUPP COL-HDR-SUPP",
					  &q, &err),
			 0);
	assert_int_equal(q.verb, PICK_LIST);
	assert_true(q.is_dict);
	assert_int_equal(q.n_ids, 3);
	assert_string_equal(q.ids[2], "C3");
	assert_int_equal(q.n_conds, 3);
	assert_int_equal(q.conds[0].op, PICK_OP_LIKE);
	assert_true(q.conds[1].is_or && q.conds[1].is_without);
	assert_int_equal(q.conds[1].op, PICK_OP_NE);
	assert_int_equal(q.conds[2].op, PICK_OP_PRESENT);
	assert_int_equal(q.conds[2].n_values, 0);
	assert_true(q.cols[0].is_break);
	assert_true(q.is_hdr_supp && q.is_col_hdr_supp);
	pick_query_release(&q);

	assert_int_equal(pick_query_parse("COUNT ORDERS WITH TOTAL-DUE >= \"0\"", &q, &err), 0);
	assert_int_equal(q.verb, PICK_COUNT);
	pick_query_release(&q);

	/* refusals: the word and its position */
	assert_int_equal(pick_query_parse("DELETE CUSTOMERS", &q, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "unexpected 'DELETE' at position 1"));
	pick_query_release(&q);
	assert_int_equal(pick_query_parse("LIST CUSTOMERS WITH STATE = CA", &q, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "'CA' at position 29"));
	pick_query_release(&q);
	assert_int_equal(pick_query_parse("LIST CUSTOMERS BY", &q, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "ends where an attribute name after BY"));
	pick_query_release(&q);
	assert_int_equal(pick_query_parse("LIST CUSTOMERS WITH \"x\"", &q, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "position 21"));
	pick_query_release(&q);
	assert_int_equal(pick_query_parse("LIST CUSTOMERS NAME \"C1\"", &q, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "ids come right after the file name"));
	pick_query_release(&q);
	assert_int_equal(pick_query_parse("LIST CUSTOMERS WITH NAME = \"open", &q, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "position 28 is not closed"));
	pick_query_release(&q);
	assert_int_equal(pick_query_parse("LIST CUSTOMERS AND WITH X", &q, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "'AND' at position 16"));
	pick_query_release(&q);
	assert_int_equal(pick_query_parse("COUNT CUSTOMERS BY NAME", &q, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "COUNT takes selections only"));
	pick_query_release(&q);
	assert_int_equal(pick_query_parse("", &q, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "ends where LIST, SORT, COUNT or SELECT"));
	pick_query_release(&q);
}

/* Whether sentence's selections pass the item (id, body), the attributes
 * from the fixture dictionary below. */
static bool selects(const char *sentence, const char *id, const char *body)
{
	/* NAME 1 (L), STATE 2 (L), BALANCE 3 (R), PHONES 4 (multivalued),
	 * UNAME 1 through MCU (a correlative) */
	static const char *const defs[][2] = {
		{"NAME", "A\xfe" "1"},
		{"STATE", "A\xfe" "2"},
		{"BALANCE", "A\xfe" "3\xfe\xfe\xfe\xfe\xfe\xfe\xfe" "R"},
		{"PHONES", "A\xfe" "4"},
		{"UNAME", "A\xfe" "1\xfe\xfe\xfe\xfe\xfe\xfe" "MCU"},
		{"CODE", "A\xfe" "5\xfe\xfe\xfe\xfe\xfe\xfe\xfe" "R"},
	};
	struct pick_attr attrs[8], id_attr;
	const struct pick_attr *resolved[8];
	struct pick_item it = {(const uint8_t *)id, strlen(id), (const uint8_t *)body, strlen(body)};
	struct pick_query q;
	struct us_err err;
	bool r;

	for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
		assert_int_equal(pick_dict_parse((const uint8_t *)defs[i][0], strlen(defs[i][0]),
						 (const uint8_t *)defs[i][1], strlen(defs[i][1]),
						 &attrs[i], &err),
				 0);
	pick_dict_id(&id_attr);
	if (pick_query_parse(sentence, &q, &err))
		fail_msg("%s: %s", sentence, err.msg);
	assert_true(q.n_conds <= 8);
	for (size_t i = 0; i < q.n_conds; i++) {
		resolved[i] = strcmp(q.conds[i].attr, "@ID") == 0 ? &id_attr : NULL;
		for (size_t k = 0; !resolved[i] && k < sizeof(defs) / sizeof(defs[0]); k++)
			if (strcmp(q.conds[i].attr, attrs[k].name) == 0)
				resolved[i] = &attrs[k];
		assert_non_null(resolved[i]);
	}
	r = pick_select(&q, resolved, &it);
	pick_query_release(&q);
	return r;
}

static void test_selection(void **state)
{
	const char *smith = "Smith\xfe" "CA\xfe" "1500\xfe" "555-1\xfd" "555-2\xfc" "555-3\xfe" "7";

	(void)state;
	assert_true(selects("LIST C WITH STATE = \"CA\"", "C1", smith));
	assert_false(selects("LIST C WITH STATE = \"NY\"", "C1", smith));
	assert_true(selects("LIST C WITH STATE = \"NY\" \"CA\"", "C1", smith));
	assert_true(selects("LIST C WITHOUT STATE = \"NY\"", "C1", smith));
	/* numeric when both are numbers */
	assert_true(selects("LIST C WITH BALANCE > \"200\"", "C1", smith));
	assert_true(selects("LIST C WITH BALANCE >= \"1500.0\"", "C1", smith));
	assert_false(selects("LIST C WITH BALANCE LT \"1500\"", "C1", smith));
	/* text, left-justified: "Smith" < "T" */
	assert_true(selects("LIST C WITH NAME < \"T\"", "C1", smith));
	/* right-justified text: "7" < "10" padded as " 7" and "10"; "X" is text */
	assert_true(selects("LIST C WITH CODE < \"1X\"", "C1", smith));
	/* multivalues and subvalues: any one matches */
	assert_true(selects("LIST C WITH PHONES = \"555-3\"", "C1", smith));
	assert_false(selects("LIST C WITH PHONES = \"555-4\"", "C1", smith));
	assert_true(selects("LIST C WITHOUT PHONES = \"555-4\"", "C1", smith));
	/* patterns */
	assert_true(selects("LIST C WITH NAME = \"Sm]\"", "C1", smith));
	assert_true(selects("LIST C WITH NAME = \"[ith\"", "C1", smith));
	assert_true(selects("LIST C WITH NAME = \"[mit]\"", "C1", smith));
	assert_false(selects("LIST C WITH NAME = \"[xyz]\"", "C1", smith));
	assert_true(selects("LIST C WITH NAME # \"Jo]\"", "C1", smith));
	assert_true(selects("LIST C WITH NAME LIKE \"S...\"", "C1", smith));
	assert_true(selects("LIST C WITH NAME LIKE \"...mi...\"", "C1", smith));
	assert_false(selects("LIST C WITH NAME LIKE \"...son\"", "C1", smith));
	/* a correlative first; the id; presence */
	assert_true(selects("LIST C WITH UNAME = \"SMITH\"", "C1", smith));
	assert_true(selects("LIST C WITH @ID = \"C1\"", "C1", smith));
	assert_true(selects("LIST C WITH PHONES", "C1", smith));
	assert_false(selects("LIST C WITH PHONES", "C2", "Jones\xfe" "NY"));
	assert_true(selects("LIST C WITHOUT PHONES", "C2", "Jones\xfe" "NY"));
	/* AND binds closer than OR */
	assert_true(selects("LIST C WITH STATE = \"NY\" AND WITH NAME = \"x\" OR WITH STATE = \"CA\"",
			    "C1", smith));
	assert_false(selects("LIST C WITH STATE = \"CA\" AND WITH NAME = \"x\" OR WITH STATE = \"NY\"",
			     "C1", smith));
	assert_true(selects("LIST C WITH STATE = \"CA\" AND NAME = \"Smith\"", "C1", smith));
	assert_true(selects("LIST C", "C1", smith));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_decimals),
		cmocka_unit_test(test_case_text_and_chains),
		cmocka_unit_test(test_dictionary_items),
		cmocka_unit_test(test_query_parse),
		cmocka_unit_test(test_selection),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
