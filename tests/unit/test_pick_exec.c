/* test_pick_exec.c - lib/sorter.c and lib/pick_exec.c: the external sort
 * in memory and spilled, and queries run against a real RocksDB store in a
 * temp dir (sorting past the memory bound, breaks and totals, explicit ids,
 * refusals). The formatted output is tested end to end in
 * tests/system/test_reports.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pick_exec.h"
#include "sorter.h"
#include "store.h"
#include "us_limits.h"

static char tmpl[] = "/tmp/us-test-pick-exec-XXXXXX";

static int setup(void **state)
{
	char *dir = strdup(tmpl);

	assert_non_null(mkdtemp(dir));
	*state = dir;
	return 0;
}

static int teardown(void **state)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", (char *)*state);
	assert_int_equal(system(cmd), 0);
	free(*state);
	return 0;
}

/* ---- sorter ---- */

static int cmp_u32(void *arg, const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	uint32_t x, y;

	(void)arg;
	assert_true(al >= 4 && bl >= 4);
	memcpy(&x, a, 4);
	memcpy(&y, b, 4);
	return x < y ? -1 : x > y;
}

/* n records of a u32 key (a permutation) padded to pad bytes; read back in
 * order, each whole; returns the runs spilled. */
static size_t sort_check(const char *dir, uint32_t n, size_t pad, size_t mem)
{
	struct sorter *s = NULL;
	struct us_err err;
	uint8_t *rec = calloc(1, pad + 6);
	const uint8_t *out;
	size_t len, runs;
	uint32_t next = 0;
	int rc;

	assert_non_null(rec);
	assert_int_equal(sorter_new(&s, cmp_u32, NULL, mem, dir, &err), 0);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = (i * 7919u) % n; /* n prime to 7919: a permutation */

		memcpy(rec, &k, 4);
		memset(rec + 4, (int)(k & 0xff), pad);
		if (sorter_add(s, rec, 4 + pad + (k % 3), &err))
			fail_msg("sorter_add: %s", err.msg);
	}
	assert_int_equal(sorter_finish(s, &err), 0);
	while ((rc = sorter_next(s, &out, &len, &err)) == 1) {
		uint32_t k;

		memcpy(&k, out, 4);
		assert_int_equal(k, next);
		assert_int_equal(len, 4 + pad + (k % 3));
		for (size_t j = 0; j < pad; j++)
			assert_int_equal(out[4 + j], k & 0xff);
		next++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(next, n);
	runs = sorter_runs(s);
	sorter_free(s);
	free(rec);
	return runs;
}

static void test_sorter_memory_and_spilled(void **state)
{
	const char *dir = *state;

	assert_int_equal(sort_check(dir, 0, 10, 0), 0);
	assert_int_equal(sort_check(dir, 1000, 10, 1u << 20), 0);
	/* 20011 records of ~300 bytes in 64 KiB: many runs, merged */
	assert_true(sort_check(dir, 20011, 300, 0) > 50);
	/* a record larger than a run's read buffer */
	assert_true(sort_check(dir, 37, 100000, 0) > 1);
}

static void test_sorter_refusals(void **state)
{
	struct sorter *s = NULL;
	struct us_err err;
	const uint8_t *out;
	size_t len;

	assert_int_equal(sorter_new(&s, cmp_u32, NULL, 0, "/nonexistent-us-dir", &err), 0);
	assert_int_equal(sorter_next(s, &out, &len, &err), US_EINVAL);
	/* the first spill needs the temporary file: refused naming the dir */
	{
		uint8_t rec[1024] = {0};
		int rc = 0;

		for (int i = 0; i < 200 && rc == 0; i++)
			rc = sorter_add(s, rec, sizeof(rec), &err);
		assert_int_equal(rc, US_EIO);
		assert_non_null(strstr(err.msg, "/nonexistent-us-dir"));
	}
	sorter_free(s);
	assert_int_equal(sorter_new(&s, cmp_u32, NULL, 0, *(const char **)state, &err), 0);
	assert_int_equal(sorter_add(s, (const uint8_t *)"", US_SORTER_RECORD_MAX_BYTES + 1u, &err),
			 US_ETOOBIG);
	sorter_free(s);
	sorter_free(NULL);
}

/* ---- queries ---- */

static struct entry put(const char *file, uint8_t section, const char *id, const char *body)
{
	struct entry e = {.op = ENTRY_WRITE, .account = "ACC", .account_len = 3, .file = file,
			  .file_len = strlen(file), .section = section, .flag = true,
			  .id = (const uint8_t *)id, .id_len = strlen(id),
			  .body = (const uint8_t *)body, .body_len = strlen(body)};
	return e;
}

static void commit(struct store *s, struct entry *ops, size_t n)
{
	struct store_commit c = {.ops = ops, .n_ops = n};
	struct store_commit *pc = &c;
	struct us_err err;

	assert_int_equal(store_commit_group(s, &pc, 1, 1000, &err), 0);
	if (c.rc)
		fail_msg("commit: %s", c.err.msg);
}

/* A result, as text: one line a row, "KIND id|cell|cell", marks as ] and \ */
struct capture {
	char text[1 << 16];
	size_t len;
	size_t n_cols;
};

static void cap_put(struct capture *c, const char *s, size_t n)
{
	assert_true(c->len + n < sizeof(c->text));
	memcpy(c->text + c->len, s, n);
	c->len += n;
	c->text[c->len] = '\0';
}

static int cap_columns(void *arg, const struct pick_column *cols, size_t n)
{
	struct capture *c = arg;

	(void)cols;
	c->n_cols = n;
	return 0;
}

static int cap_row(void *arg, uint8_t kind, const uint8_t *id, size_t id_len,
		   const struct buf *cells, size_t n)
{
	static const char *const kinds[] = {"?", "I", "B", "T", "M"};
	struct capture *c = arg;

	cap_put(c, kinds[kind], 1);
	cap_put(c, " ", 1);
	cap_put(c, (const char *)id, id_len);
	for (size_t i = 0; i < n; i++) {
		cap_put(c, "|", 1);
		for (size_t j = 0; j < cells[i].len; j++) {
			uint8_t ch = cells[i].p[j];

			cap_put(c, ch == 0xFD ? "]" : ch == 0xFC ? "\\" : (const char *)&cells[i].p[j],
				1);
		}
	}
	cap_put(c, "\n", 1);
	return 0;
}

static bool is_one_thread;

static int run(struct store *s, const char *dir, const char *sentence, size_t mem,
	       struct capture *cap, struct pick_exec_stats *st, struct us_err *err)
{
	struct pick_sink sink = {.on_columns = cap_columns, .on_row = cap_row, .arg = cap};
	struct pick_exec_opts o = {.tmp_dir = dir, .sort_mem_bytes = mem,
				   .is_one_thread = is_one_thread};
	struct store_snap *snap = NULL;
	struct pick_query q;
	int rc;

	memset(cap, 0, sizeof(*cap));
	if ((rc = pick_query_parse(sentence, &q, err)) == 0) {
		assert_int_equal(store_snap_new(s, &snap, err), 0);
		rc = pick_exec_run(s, snap, "ACC", &q, &o, &sink, st, err);
		store_snap_free(snap);
	}
	pick_query_release(&q);
	return rc;
}

static void expect(struct store *s, const char *dir, const char *sentence, const char *want)
{
	struct capture *cap = malloc(sizeof(*cap));
	struct pick_exec_stats st;
	struct us_err err;

	assert_non_null(cap);
	if (run(s, dir, sentence, 0, cap, &st, &err))
		fail_msg("%s: %s", sentence, err.msg);
	if (strcmp(cap->text, want) != 0)
		fail_msg("%s:\n got: [%s]\nwant: [%s]", sentence, cap->text, want);
	free(cap);
}

static struct store *fixture(const char *dir)
{
	char path[256];
	struct store_opts o = {0};
	struct store *s = NULL;
	struct us_err err;
	/* AP items: A]no]heading]]]]conv]corr]just]width */
	struct entry dict[] = {
		put("F", SECTION_DICT, "NAME", "A\xfe" "1\xfeName\xfe\xfe\xfe\xfe\xfe\xfeL\xfe" "8"),
		put("F", SECTION_DICT, "AMT", "A\xfe" "2\xfe" "Amt\xfe\xfe\xfe\xfeMD2\xfe\xfeR\xfe" "8"),
		put("F", SECTION_DICT, "GRP", "D\xfe" "3\xfe\xfeGroup\xfe" "5L\xfeS"),
		put("F", SECTION_DICT, "N", "A\xfe" "4\xfeN\xfe\xfe\xfe\xfe\xfe\xfeR\xfe" "4"),
		put("F", SECTION_DICT, "BAD", "A\xfe" "2\xfe" "Bad\xfe\xfe\xfe\xfeQQ9\xfe\xfeR\xfe" "8"),
	};
	struct entry data[] = {
		put("F", SECTION_DATA, "1", "ann\xfe" "150\xfe" "b\xfe" "10"),
		put("F", SECTION_DATA, "2", "bob\xfe" "250\xfd" "5\xfe" "a\xfe" "9"),
		put("F", SECTION_DATA, "3", "cy\xfe-100\xfe" "a\xfe" "-1"),
		put("F", SECTION_DATA, "10", "dee\xfe\xfe" "b\xfe" "x"),
		put("F", SECTION_DATA, "4", "eve\xfe" "1\xfc" "2\xfe" "c\xfe"),
	};

	snprintf(path, sizeof(path), "%s/store", dir);
	struct entry create = {.op = ENTRY_CREATE_FILE, .account = "ACC", .account_len = 3,
			       .file = "F", .file_len = 1, .flag = true};

	if (store_open(&s, path, &o, &err))
		fail_msg("store_open: %s", err.msg);
	commit(s, &create, 1);
	commit(s, dict, sizeof(dict) / sizeof(dict[0]));
	commit(s, data, sizeof(data) / sizeof(data[0]));
	return s;
}

static void query_results(void **state)
{
	const char *dir = *state;
	struct store *s = fixture(dir);

	/* LIST: id byte order; cells through the conversions; marks kept */
	expect(s, dir, "LIST F NAME AMT",
	       "I 1|1|ann|1.50\nI 10|10|dee|\nI 2|2|bob|2.50]0.05\nI 3|3|cy|-1.00\n"
	       "I 4|4|eve|0.01\\0.02\n");
	/* SORT with no BY: by id as @ID (L) sorts, bytes */
	expect(s, dir, "SORT F ID-SUPP NAME", "I 1|ann\nI 10|dee\nI 2|bob\nI 3|cy\nI 4|eve\n");
	/* BY an R attribute: empty first, then numbers as numbers, then text */
	expect(s, dir, "SORT F BY N ID-SUPP N", "I 4|\nI 3|-1\nI 2|9\nI 1|10\nI 10|x\n");
	expect(s, dir, "SORT F BY-DSND N ID-SUPP N", "I 10|x\nI 1|10\nI 2|9\nI 3|-1\nI 4|\n");
	/* two keys; a multivalued key compares value by value */
	expect(s, dir, "SORT F BY GRP BY-DSND AMT ID-SUPP GRP AMT",
	       "I 2|a|2.50]0.05\nI 3|a|-1.00\nI 1|b|1.50\nI 10|b|\nI 4|c|0.01\\0.02\n");
	/* breaks and totals: every number summed, then converted */
	expect(s, dir, "SORT F BY GRP BREAK-ON GRP TOTAL AMT",
	       "I 2|2|a|2.50]0.05\nI 3|3|a|-1.00\nB ||***|1.55\n"
	       "I 1|1|b|1.50\nI 10|10|b|\nB ||***|1.50\n"
	       "I 4|4|c|0.01\\0.02\nB ||***|0.03\nT |***||3.08\n");
	/* selections, explicit ids in their order, a missing one */
	expect(s, dir, "LIST F \"3\" \"99\" \"1\" NAME", "I 3|3|cy\nM 99\nI 1|1|ann\n");
	expect(s, dir, "SELECT F WITH AMT > \"200\"", "I 2\n");
	/* an empty N is less than "0" as text, as in Pick */
	expect(s, dir, "SELECT F WITH GRP = \"b\" OR WITH N < \"0\" BY NAME",
	       "I 1\nI 3\nI 10\nI 4\n");
	{
		struct capture *cap = malloc(sizeof(*cap));
		struct pick_exec_stats st;
		struct us_err err;

		assert_non_null(cap);
		assert_int_equal(run(s, dir, "COUNT F WITH GRP = \"a\"", 0, cap, &st, &err), 0);
		assert_int_equal(st.items, 2);
		assert_int_equal(st.scanned, 5);
		assert_string_equal(cap->text, "");
		/* refusals: the word named, nothing shown */
		assert_int_equal(run(s, dir, "LIST F NOPE", 0, cap, &st, &err), US_EINVAL);
		assert_non_null(strstr(err.msg, "NOPE"));
		assert_int_equal(run(s, dir, "LIST F BAD", 0, cap, &st, &err), US_EINVAL);
		assert_non_null(strstr(err.msg, "QQ9"));
		assert_int_equal(run(s, dir, "LIST G NAME", 0, cap, &st, &err), US_ENOTFOUND);
		assert_int_equal(cap->len, 0);
		free(cap);
	}
	store_close(s);
}

/* A TOTAL past a long long goes on as a decimal, from the right sum. */
static void test_total_overflow(void **state)
{
	const char *dir = *state;
	struct store *s = fixture(dir);
	struct entry create = {.op = ENTRY_CREATE_FILE, .account = "ACC", .account_len = 3,
			       .file = "G", .file_len = 1, .flag = true};
	struct entry ops[] = {
		put("G", SECTION_DICT, "V", "A\xfe" "1\xfeV\xfe\xfe\xfe\xfe\xfe\xfeR\xfe" "20"),
		put("G", SECTION_DATA, "a", "9000000000000000000"),
		put("G", SECTION_DATA, "b", "900000000000000000"),
		put("G", SECTION_DATA, "c", "-2"),
	};

	commit(s, &create, 1);
	commit(s, ops, sizeof(ops) / sizeof(ops[0]));
	expect(s, dir, "LIST G ID-SUPP TOTAL V",
	       "I a|9000000000000000000\nI b|900000000000000000\nI c|-2\nT |9.9e+18\n");
	expect(s, dir, "LIST G \"b\" \"c\" ID-SUPP TOTAL V",
	       "I b|900000000000000000\nI c|-2\nT |899999999999999998\n");
	store_close(s);
}

/* Every result with the two scanning threads, then with one. */
static void test_query_results(void **state)
{
	is_one_thread = false;
	query_results(state);
	teardown(state);
	setup(state);
	is_one_thread = true;
	query_results(state);
	is_one_thread = false;
}

static void query_sort_spills(void **state)
{
	const char *dir = *state;
	struct store *s = fixture(dir);
	struct capture *cap = malloc(sizeof(*cap));
	struct pick_exec_stats st;
	struct us_err err;
	char ids[3000][8], bodies[3000][64];
	struct entry ops[3000];

	assert_non_null(cap);
	for (int i = 0; i < 3000; i++) {
		snprintf(ids[i], sizeof(ids[i]), "K%d", i);
		/* N descending with i, padded so that the records outgrow 64 KiB */
		snprintf(bodies[i], sizeof(bodies[i]), "n%d\xfe" "1\xfez\xfe%d\xfe%040d", i,
			 3000 - i, i);
		ops[i] = put("F", SECTION_DATA, ids[i], bodies[i]);
	}
	commit(s, ops, 3000);
	cap->len = 0;
	assert_int_equal(run(s, dir, "SELECT F WITH GRP = \"z\" BY N", 64 * 1024, cap, &st, &err),
			 0);
	assert_true(st.sort_runs > 1);
	assert_int_equal(st.items, 3000);
	assert_int_equal(st.scanned, 3005); /* each item read once, by one thread or two */
	{
		/* K2999 (N 1) first ... K0 (N 3000) last */
		const char *p = cap->text;

		for (int i = 2999; i >= 0; i--) {
			char want[16];
			int n = snprintf(want, sizeof(want), "I K%d\n", i);

			if (strncmp(p, want, (size_t)n) != 0)
				fail_msg("row for K%d: got %.20s", i, p);
			p += n;
		}
		assert_int_equal(*p, '\0');
	}
	/* COUNT over 3005 items in two halves: each counted once */
	assert_int_equal(run(s, dir, "COUNT F WITH N > \"1500\"", 0, cap, &st, &err), 0);
	assert_int_equal(st.items, 1500); /* "x" < "1500" right-justified */
	assert_int_equal(st.scanned, 3005);
	free(cap);
	store_close(s);
}

static void test_query_sort_spills(void **state)
{
	is_one_thread = false;
	query_sort_spills(state);
	teardown(state);
	setup(state);
	is_one_thread = true;
	query_sort_spills(state);
	is_one_thread = false;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sorter_memory_and_spilled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sorter_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_results, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_sort_spills, setup, teardown),
		cmocka_unit_test_setup_teardown(test_total_overflow, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
